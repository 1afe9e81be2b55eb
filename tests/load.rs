//! The mTLS load client as a black box, against the example resource server: every
//! kind of token gets the answer it must, over HTTP/1.1, h2 and fresh connections.

mod common;

use common::process::*;
use common::*;

#[test]
fn the_load_client_drives_every_kind_of_request() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca)]);
    let key = write(f.dir.path(), "issuer.key", &world.key.private_pem);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    let pid = server.child.id().to_string();
    let load = example_binary("load");
    for mode in [
        &["--connections", "4"][..],
        &["--connections", "2", "--http2", "--streams", "4"][..],
        &["--connections", "2", "--new-connection-per-request"][..],
    ] {
        let mut args = vec![
            "--url",
            &url,
            "--ca",
            s(&f.ca),
            "--cert",
            s(&f.a.0),
            "--key",
            s(&f.a.1),
            "--signing-key",
            s(&key),
            "--kid",
            "k1",
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--duration",
            "1",
            "--mix",
            "valid=6,stolen=1,expired=1,junk=1,none=1",
            "--distinct-tokens",
            "3",
            "--server-pid",
            &pid,
            "--json",
        ];
        args.extend_from_slice(mode);
        let out = run_to_end(&load, &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert!(report["requests"].as_u64().unwrap() > 20, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        for kind in ["valid", "stolen", "expired", "junk", "none"] {
            assert!(
                report["by_kind"][kind]["requests"].as_u64().unwrap() > 0,
                "{kind}: {report}"
            );
            assert_eq!(report["by_kind"][kind]["wrong"], 0, "{kind}: {report}");
        }
        assert!(report["by_status"]["200"].as_u64().unwrap() > 0, "{report}");
        assert!(report["by_status"]["401"].as_u64().unwrap() > 0, "{report}");
        assert!(report["server_cpu_seconds"].as_f64().is_some(), "{report}");
    }

    // Against a server that verifies with another key, valid tokens are wrong answers:
    // the load client says so in its exit code.
    let other = World::new();
    let g = Files::new(&other);
    let elsewhere = start_resource_server_tls(&g, &["--client-ca", s(&g.ca)]);
    let url = format!("https://localhost:{}/whoami", elsewhere.addr.port());
    let out = run_to_end(
        &load,
        &[
            "--url",
            &url,
            "--ca",
            s(&g.ca),
            "--cert",
            s(&g.a.0),
            "--key",
            s(&g.a.1),
            "--signing-key",
            s(&key),
            "--kid",
            "k1",
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--duration",
            "1",
            "--connections",
            "1",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
