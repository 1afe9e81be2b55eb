//! OCSP against a real responder (`openssl ocsp`, run here on loopback): the example
//! resource server asks it about each new client certificate, refuses what it says is
//! revoked, and in hard-fail mode refuses what it cannot vouch for.

mod common;

use std::path::Path;
use std::time::Duration;

use common::pki::{self, Leaf, Subject};
use common::process::*;
use common::*;

/// The responder, killed when dropped.
struct Responder(std::process::Child);

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl ocsp` on `port`, answering from the index `index`, signing with the CA.
/// Ready once it says so: it serves one connection at a time, and a probe connection
/// that sends nothing stalls it.
fn start_responder(dir: &Path, port: u16, ca: &Path, ca_key: &Path, index: &Path) -> Responder {
    start_responder_signed(dir, port, ca, ca, ca_key, index)
}

/// [`start_responder`] whose answers `signer` signs.
fn start_responder_signed(
    dir: &Path,
    port: u16,
    ca: &Path,
    signer: &Path,
    signer_key: &Path,
    index: &Path,
) -> Responder {
    use std::io::BufRead;
    let mut child = std::process::Command::new("openssl")
        .arg("ocsp")
        .arg("-index")
        .arg(index)
        .args(["-port", &port.to_string(), "-nmin", "60"])
        .arg("-rsigner")
        .arg(signer)
        .arg("-rkey")
        .arg(signer_key)
        .arg("-CA")
        .arg(ca)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is installed (scripts/test installs it)");
    let stderr = child.stderr.take().unwrap();
    let (ready, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("waiting for OCSP client connections") {
                let _ = ready.send(());
            }
        }
    });
    let responder = Responder(child);
    waiting
        .recv_timeout(Duration::from_secs(10))
        .expect("openssl ocsp did not start within 10 s");
    responder
}

/// An `openssl ca` index line: status, expiry, revocation time, serial, file, subject.
fn index_line(status: char, leaf: &Leaf, cn: &str) -> String {
    let serial = pki::serial_of(&leaf.cert_der);
    let serial: String = serial
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02X}"))
        .collect();
    let revoked = if status == 'R' { "200601000000Z" } else { "" };
    format!("{status}\t491231235959Z\t{revoked}\t{serial}\tunknown\t/CN={cn}\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_responder_decides_in_soft_and_hard_mode() {
    let world = World::new();
    let f = Files::new(&world);
    let dir = f.dir.path();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let leaf = |cn: &str| {
        world.ca.client(&Subject {
            ocsp_url: Some(url.clone()),
            ..Subject::cn(cn)
        })
    };
    let (good, revoked, unknown) = (leaf("good"), leaf("revoked"), leaf("unknown"));
    let index = write(
        dir,
        "index.txt",
        &format!(
            "{}{}",
            index_line('V', &good, "good"),
            index_line('R', &revoked, "revoked")
        ),
    );
    let ca_key = write(dir, "ca.key", &world.ca.key_pem());
    let responder = start_responder(dir, port, &f.ca, &ca_key, &index);
    let files: Vec<_> = [
        ("good", &good),
        ("revoked", &revoked),
        ("unknown", &unknown),
    ]
    .into_iter()
    .map(|(name, leaf)| (f.leaf(name, leaf), leaf))
    .collect();

    for (mode, expected) in [("soft", [200, 0, 200]), ("hard", [200, 0, 0])] {
        let mut server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca), "--ocsp", mode]);
        let logs = LogLines::follow(&mut server);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        for ((files, leaf), expected) in files.iter().zip(expected) {
            let token =
                world
                    .key
                    .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)));
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let answer = curl(&url, Some(&f.ca), pair(files), Some(&token));
                assert_eq!(
                    answer.status,
                    expected,
                    "{mode} {}: {}\n{}",
                    files.0.display(),
                    answer.body,
                    logs.text()
                );
            }
        }
    }

    // A responder whose answers another CA signs is no responder: a forged "good"
    // does not let a client through in hard mode.
    drop(responder);
    let forger = pki::Ca::root("Someone Else's CA");
    let forger_cert = write(dir, "forger.pem", &forger.cert_pem);
    let forger_key = write(dir, "forger.key", &forger.key_pem());
    let (good_files, _) = &files[0];
    let fresh = leaf("good-too");
    let fresh_files = f.leaf("good-too", &fresh);
    let fresh_line = index_line('V', &fresh, "good-too");
    std::fs::write(
        &index,
        format!("{}{fresh_line}", std::fs::read_to_string(&index).unwrap()),
    )
    .unwrap();
    // Known to the responder (it reads the index when it starts): only the signature
    // is wrong.
    let forged = start_responder_signed(dir, port, &f.ca, &forger_cert, &forger_key, &index);
    let token = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&fresh),
    ));
    let server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca), "--ocsp", "hard"]);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&fresh_files), Some(&token)).status,
        0,
        "forged answer"
    );
    let _ = good_files;
    drop(forged);

    // Without a responder: soft lets a new client through, hard does not.
    let late = leaf("late");
    let late_files = f.leaf("late", &late);
    let token = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&late),
    ));
    for (mode, expected) in [("soft", 200), ("hard", 0)] {
        let server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca), "--ocsp", mode]);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        let answer = curl(&url, Some(&f.ca), pair(&late_files), Some(&token));
        assert_eq!(
            answer.status, expected,
            "{mode}, responder down: {}",
            answer.body
        );
    }
}

#[test]
fn ocsp_needs_the_tls_handshake() {
    let world = World::new();
    let f = Files::new(&world);
    let output = run_to_end(
        &example_binary("resource_server"),
        &[
            "--jwks",
            s(&f.jwks),
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--trusted-proxy",
            "127.0.0.1",
            "--cert-header-format",
            "nginx",
            "--ocsp",
            "soft",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--ocsp checks client certificates in the TLS handshake"),
        "{stderr}"
    );
}
