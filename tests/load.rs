//! The mTLS load client as a black box, against the example resource server: every
//! kind of token gets the answer it must, over HTTP/1.1, h2 and fresh connections.

mod common;

use std::time::Duration;

use common::pki;
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
        let mut args = client_args(&url, &f, &key);
        args.extend(
            [
                "--duration",
                "1",
                "--mix",
                "valid=6,stolen=1,expired=1,junk=1,none=1",
                "--distinct-tokens",
                "3",
                "--server-pid",
                &pid,
                "--json",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .chain(mode.iter().copied())
            .collect();
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
    // Files of another world, but the first world's signing key.
    let mut args = client_args(&url, &g, &key);
    args.extend(["--duration", "1", "--connections", "1"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_to_end(&load, &args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The load client's options for `url`: the world's CA, client A's certificate, and
/// tokens signed with `key` for this world's issuer and audience.
fn client_args(url: &str, f: &Files, key: &std::path::Path) -> Vec<String> {
    [
        "--url",
        url,
        "--ca",
        s(&f.ca),
        "--cert",
        s(&f.a.0),
        "--key",
        s(&f.a.1),
        "--signing-key",
        s(key),
        "--kid",
        "k1",
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ]
    .map(String::from)
    .to_vec()
}

/// Sends SIGHUP to `pid`.
fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn reloads_under_load_lose_no_request_and_take_effect() {
    let world = World::new();
    let f = Files::new(&world);
    let crl = write(f.dir.path(), "ca.crl", &world.ca.crl(&[], false));
    let mut server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca), "--crl", s(&crl)]);
    let logs = LogLines::follow(&mut server);
    let key = write(f.dir.path(), "issuer.key", &world.key.private_pem);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    let pid = server.child.id();
    let load = example_binary("load");
    let run_load = |mode: &'static [&'static str]| {
        let mut args = client_args(&url, &f, &key);
        args.extend(["--duration", "3", "--mix", "valid=1", "--json"].map(String::from));
        args.extend(mode.iter().map(|a| a.to_string()));
        let load = load.clone();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_to_end(&load, &args)
        })
    };
    let keep_alive = run_load(&["--connections", "4"]);
    let handshakes = run_load(&["--connections", "2", "--new-connection-per-request"]);
    // Reloads while both run: by signal, and by a file written anew.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..10 {
        if i == 5 {
            replace(&crl, &world.ca.crl(&[], false));
        } else {
            hangup(pid);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, run) in [("keep-alive", keep_alive), ("new connections", handshakes)] {
        let out = run.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert!(
            report["requests"].as_u64().unwrap() > 10,
            "{name}: {report}"
        );
        assert_eq!(report["errors"], 0, "{name}: {report}");
        let statuses: Vec<&String> = report["by_status"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["200"], "{name}: {report}");
    }
    // Signals that arrive while a reload runs are one (as with any signal handler).
    assert!(
        logs.wait_for("reloaded", 4, Duration::from_secs(5)),
        "at least five of the ten reloads: {}",
        logs.text()
    );
    assert_eq!(logs.count("reload failed"), 0, "{}", logs.text());

    // A client revoked by a rewritten CRL is refused once the reload is logged.
    let token_b = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&world.b),
    ));
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.b), Some(&token_b)).status,
        200
    );
    let reloads = logs.count("reloaded");
    replace(&crl, &world.ca.crl(&[&world.b.cert_der], false));
    assert!(
        logs.wait_for("reloaded", reloads, Duration::from_secs(5)),
        "{}",
        logs.text()
    );
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.b), Some(&token_b)).status,
        0
    );

    // A file that does not read: logged with the reason, the old material stays.
    replace(&crl, "garbage");
    assert!(
        logs.wait_for("reload failed", 0, Duration::from_secs(5)),
        "{}",
        logs.text()
    );
    let failed = logs.text();
    assert!(failed.contains("ca.crl"), "{failed}");
    let token_a = world.token_for_a("read");
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.a), Some(&token_a)).status,
        200
    );
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.b), Some(&token_b)).status,
        0
    );
    hangup(pid);
    assert!(
        logs.wait_for("reload failed", 1, Duration::from_secs(5)),
        "{}",
        logs.text()
    );
}

/// Replaces `path` as deployments do: a new file renamed over the old one.
fn replace(path: &std::path::Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}
