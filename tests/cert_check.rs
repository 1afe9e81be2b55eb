//! The `cert_check` tool as an operator runs it: on files and against a running server.

mod common;

use common::pki::{Ca, Subject};
use common::process::*;
use common::*;

fn check(args: &[&str]) -> (i32, String) {
    let output = run_to_end(&example_binary("cert_check"), args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn files_and_endpoints_are_described_and_checked() {
    let world = World::new();
    let f = Files::new(&world);
    let crl = write(
        f.dir.path(),
        "ca.crl",
        &world.ca.crl(&[&world.b.cert_der], false),
    );
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    let stranger_files = f.leaf("stranger", &stranger);

    let (code, out) = check(&["--cert", s(&f.a.0), "--ca", s(&f.ca), "--crl", s(&crl)]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        "subject:   O=Example,CN=client-a",
        "DNS:client-a.example.org",
        "IP:10.1.2.3",
        &format!("x5t#S256:  {}", world.a.thumbprint),
        "days left",
        "chain:     valid against",
        "revocation: good",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }

    let (code, out) = check(&["--cert", s(&f.b.0), "--ca", s(&f.ca), "--crl", s(&crl)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("revocation: revoked"), "{out}");

    let (code, out) = check(&["--cert", s(&stranger_files.0), "--ca", s(&f.ca)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chain:     refused (unknown_ca)"), "{out}");
    assert!(out.contains("Someone Else's CA"), "{out}");

    let (code, out) = check(&["--cert", "/nonexistent/client.pem"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/client.pem"), "{out}");

    let server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca)]);
    let endpoint = format!("localhost:{}", server.addr.port());
    let (code, out) = check(&[
        "--connect",
        &endpoint,
        "--ca",
        s(&f.ca),
        "--client-cert",
        s(&f.a.0),
        "--client-key",
        s(&f.a.1),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("handshake: completed"), "{out}");
    assert!(out.contains("subject:   CN=localhost"), "{out}");
    assert!(
        out.contains(&format!("x5t#S256:  {}", world.server.thumbprint)),
        "{out}"
    );

    let (code, out) = check(&[
        "--connect",
        &endpoint,
        "--ca",
        s(&f.ca),
        "--client-cert",
        s(&stranger_files.0),
        "--client-key",
        s(&stranger_files.1),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("handshake: refused"), "{out}");
}
