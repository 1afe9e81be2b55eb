//! The health probe example as a black box, over real loopback sockets with curl:
//! `/healthz` open to clients without a certificate, `/whoami` still bound to one, and
//! an optional plain-HTTP probe listener that serves `/healthz` only.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::pki::{Ca, Subject};
use common::process::{Files, curl, example_binary, pair, run_to_end, s};
use common::*;
use serde_json::Value;

/// The running example; killed when dropped.
struct Server {
    child: Child,
    /// The TLS listener, from the `listening on ADDR` line.
    addr: SocketAddr,
    /// The plain-HTTP probe listener, from the `probes on ADDR` line.
    probe_addr: Option<SocketAddr>,
    /// Kept so that stdout stays open for whatever the server prints later.
    _lines: Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first socket address in a line such as `listening on 127.0.0.1:4000 (https)`.
fn address_in(line: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The example's options for the world on disk, with `client_ca` as --client-ca.
fn args<'a>(f: &'a Files, client_ca: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--jwks",
        s(&f.jwks),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        "--tls-cert",
        s(&f.server_cert),
        "--tls-key",
        s(&f.server_key),
        "--client-ca",
        s(client_ca),
    ];
    args.extend_from_slice(extra);
    args
}

/// Starts the example on free loopback ports and waits (bounded) for its ready lines:
/// `listening on`, then `probes on` when `--probe-listen` is given.
fn start(f: &Files, with_probe_listener: bool) -> Server {
    let extra: &[&str] = if with_probe_listener {
        &["--probe-listen", "127.0.0.1:0"]
    } else {
        &[]
    };
    let mut child = Command::new(example_binary("health_probe"))
        .args(args(f, &f.ca, extra))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the example");
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut next_line = |what: &str| match lines.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no `{what}` line from the health_probe example within 60 s");
        }
    };
    let first = next_line("listening on");
    assert!(first.starts_with("listening on "), "first line: {first}");
    assert!(first.contains("https"), "first line: {first}");
    let probe_addr = with_probe_listener.then(|| {
        let second = next_line("probes on");
        assert!(second.starts_with("probes on "), "second line: {second}");
        assert!(second.contains("(http)"), "second line: {second}");
        address_in(&second)
    });
    Server {
        addr: address_in(&first),
        probe_addr,
        child,
        _lines: lines,
    }
}

/// What curl says about `GET url` over TLS (10 s at most): its exit code, the HTTP
/// status (`000` for none) and its error message.
fn curl_failure(
    url: &str,
    ca: &Path,
    client: (&Path, &Path),
    extra: &[&str],
) -> (i32, String, String) {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--output",
            "/dev/null",
            "--max-time",
            "10",
        ])
        .args(["--write-out", "%{http_code}"])
        .args(extra)
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(client.0)
        .arg("--key")
        .arg(client.1)
        .arg(url)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    (
        output
            .status
            .code()
            .expect("curl exited, not killed by a signal"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn probes_without_a_certificate_see_healthz_and_nothing_else() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start(&f, true);
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr.port());
    let token = world.token_for_a("read");

    let health = curl(&url("/healthz"), Some(&f.ca), None, None);
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "ok"),
        "a probe without a certificate completes the handshake and gets /healthz"
    );

    let anonymous = curl(&url("/whoami"), Some(&f.ca), None, None);
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(
        anonymous.header("www-authenticate").as_deref(),
        Some("Bearer")
    );

    let replayed = curl(&url("/whoami"), Some(&f.ca), None, Some(&token));
    assert_eq!(
        replayed.status, 401,
        "a bound token without its certificate: {}",
        replayed.body
    );
    assert!(
        replayed
            .header("www-authenticate")
            .unwrap_or_default()
            .starts_with("Bearer error=\"invalid_token\""),
        "{:?}",
        replayed.header("www-authenticate")
    );

    let bound = curl(&url("/whoami"), Some(&f.ca), pair(&f.a), Some(&token));
    assert_eq!(bound.status, 200, "{}", bound.body);
    let body: Value = serde_json::from_str(&bound.body).unwrap();
    assert_eq!(body["thumbprint"], world.a.thumbprint);
    assert_eq!(body["bound"], true);

    let with_certificate = curl(&url("/healthz"), Some(&f.ca), pair(&f.a), None);
    assert_eq!(
        (with_certificate.status, with_certificate.body.as_str()),
        (200, "ok")
    );
    assert_eq!(curl(&url("/nope"), Some(&f.ca), None, None).status, 404);

    // Anonymous clients are allowed; certificates from other CAs still are not. In
    // TLS 1.2 the server refuses the certificate inside the handshake: curl exit 35.
    let stranger = f.leaf(
        "stranger",
        &Ca::root("Unknown CA").client(&Subject::cn("stranger")),
    );
    let stranger = pair(&stranger).unwrap();
    let (code, status, error) =
        curl_failure(&url("/healthz"), &f.ca, stranger, &["--tls-max", "1.2"]);
    assert_eq!(
        (code, status.as_str()),
        (35, "000"),
        "TLS 1.2, unknown CA: {error}"
    );
    // In TLS 1.3 the client's side of the handshake is over before the server checks the
    // certificate, so curl meets the refusal (an alert, then a closed connection) while
    // connecting (35), sending the request (55) or reading the answer (56). Never an
    // HTTP answer, never a timeout (28).
    for _ in 0..5 {
        let (code, status, error) = curl_failure(&url("/healthz"), &f.ca, stranger, &[]);
        assert!(
            [35, 55, 56].contains(&code) && status == "000",
            "TLS 1.3, unknown CA: curl exit {code}, HTTP {status}: {error}"
        );
    }
}

#[test]
fn the_probe_listener_serves_healthz_over_plain_http_only() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start(&f, true);
    let probe = server.probe_addr.expect("a probe listener");
    assert_ne!(probe, server.addr);
    let url = |path: &str| format!("http://{probe}{path}");

    let health = curl(&url("/healthz"), None, None, None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    let whoami = curl(
        &url("/whoami"),
        None,
        None,
        Some(&world.token_for_a("read")),
    );
    assert_eq!(
        whoami.status, 404,
        "the probe listener must not serve protected routes"
    );
    assert_eq!(curl(&url("/nope"), None, None, None).status, 404);
}

#[test]
fn without_probe_listen_there_is_one_listener() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start(&f, false);
    assert_eq!(server.probe_addr, None);
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let health = curl(&url, Some(&f.ca), None, None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
}

#[test]
fn sigterm_stops_both_listeners_gracefully() {
    let world = World::new();
    let f = Files::new(&world);
    let mut server = start(&f, true);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the example did not stop within 10 s of SIGTERM");
}

#[test]
fn configuration_errors_exit_2_naming_the_problem() {
    let world = World::new();
    let f = Files::new(&world);
    let binary = example_binary("health_probe");
    let missing = f.ca.with_file_name("missing-ca.pem");
    // Held for the whole test, so that the probe listener cannot bind its address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&Path, &[&str], &str); 3] = [
        (&missing, &[], "missing-ca.pem"),
        (
            &f.ca,
            &["--probe-listen", "not-an-address"],
            "not-an-address",
        ),
        (&f.ca, &["--probe-listen", &taken], "--probe-listen"),
    ];
    for (client_ca, extra, expected) in cases {
        let output = run_to_end(&binary, &args(&f, client_ca, extra));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{extra:?}: stderr should name {expected:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}
