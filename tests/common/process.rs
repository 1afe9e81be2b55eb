//! Running the example programs as a user would: built by cargo, started as processes,
//! driven with curl and Python `requests`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Builds an example (cached by cargo) and returns its executable.
pub fn example_binary(name: &str) -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == name)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo did not report the executable of {name}"))
}

/// A running example server; killed when dropped.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub first_line: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(binary: &Path, args: &[&str]) -> Child {
    Command::new(binary)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start example")
}

/// Starts `binary args...` and waits for its `listening on ADDR` line.
pub fn start(binary: &Path, args: &[&str]) -> Running {
    let mut child = spawn(binary, args);
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let line = match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "no `listening on` line from {}: {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    };
    assert!(line.contains("listening on"), "first line: {line}");
    let addr = line
        .split_whitespace()
        .find_map(|word| word.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Running {
        child,
        addr,
        first_line: line,
    }
}

/// Runs `binary args...` that is expected to stop by itself (e.g. on a configuration
/// error), with a time limit.
pub fn run_to_end(binary: &Path, args: &[&str]) -> Output {
    let mut child = spawn(binary, args);
    for _ in 0..300 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("{} {args:?} did not stop within 30 s", binary.display());
}

/// What curl saw.
pub struct CurlAnswer {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// `GET url` with curl, presenting `cert`/`key` when given, trusting `ca`, with the
/// bearer `token` when given.
pub fn curl(
    url: &str,
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> CurlAnswer {
    let authorization = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = authorization.iter().map(String::as_str).collect();
    curl_request("GET", url, ca, client, &headers, None)
}

impl CurlAnswer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// The Python that has `requests`: `MTLS_TEST_PYTHON` (set by scripts/test), else
/// `python3` if it can import requests.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("MTLS_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let ok = Command::new("python3")
        .args(["-c", "import requests"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Python requests is missing: run scripts/test, which installs it"
    );
    PathBuf::from("python3")
}

/// One request with Python `requests` (tests/clients/call.py).
pub fn python_get(
    url: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/call.py");
    let mut command = Command::new(python());
    command.arg(script).arg(url).arg(ca);
    if let Some((cert, key)) = client {
        command.arg(cert).arg(key);
    }
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = command.output().expect("run python");
    assert!(
        output.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python client prints JSON")
}

/// Writes `content` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// `curl` with any method, extra request headers (`"Name: value"`) and an optional body
/// (sent through stdin, so that no byte of it is taken for a curl option), presenting
/// `cert`/`key` when given and trusting `ca`. Status 0: no HTTP answer (e.g. a failed
/// handshake).
pub fn curl_request(
    method: &str,
    url: &str,
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
    headers: &[&str],
    body: Option<&[u8]>,
) -> CurlAnswer {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let headers_file = dir.path().join("headers");
    let mut command = Command::new("curl");
    command
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--request",
            method,
            "--dump-header",
        ])
        .arg(&headers_file)
        .args(["--write-out", "\n%{http_code}"]);
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    for header in headers {
        command.args(["--header", header]);
    }
    if body.is_some() {
        command.args(["--data-binary", "@-"]);
    }
    let mut child = command
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed (scripts/test installs it)");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(body) = body {
        stdin.write_all(body).expect("write the body to curl");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("curl");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    CurlAnswer {
        status: status.trim().parse().unwrap_or(0),
        headers: std::fs::read_to_string(&headers_file).unwrap_or_default(),
        body: body.to_owned(),
    }
}

/// `POST url` with an `application/x-www-form-urlencoded` body, as an OAuth client
/// sends a token request.
pub fn curl_post_form(
    url: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    form: &str,
) -> CurlAnswer {
    curl_request(
        "POST",
        url,
        Some(ca),
        client,
        &["Content-Type: application/x-www-form-urlencoded"],
        Some(form.as_bytes()),
    )
}

impl CurlAnswer {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {}, body {:?}",
                self.status, self.body
            )
        })
    }
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The test world on disk, as the examples' users have it: the CA, the server's chain
/// and key, the JWKS, and clients A and B (certificate, key).
pub struct Files {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub jwks: PathBuf,
    pub a: (PathBuf, PathBuf),
    pub b: (PathBuf, PathBuf),
}

impl Files {
    pub fn new(world: &super::World) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        Self {
            ca: write(p, "ca.pem", &world.ca.cert_pem),
            server_cert: write(p, "server.pem", &world.server.chain_pem),
            server_key: write(p, "server.key", &world.server.key_pem),
            jwks: write(p, "jwks.json", &world.jwks()),
            a: leaf_files(p, "a", &world.a),
            b: leaf_files(p, "b", &world.b),
            dir,
        }
    }

    /// Another client's certificate and key, written beside the others.
    pub fn leaf(&self, name: &str, leaf: &super::pki::Leaf) -> (PathBuf, PathBuf) {
        leaf_files(self.dir.path(), name, leaf)
    }
}

fn leaf_files(dir: &Path, name: &str, leaf: &super::pki::Leaf) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.pem"), &leaf.cert_pem),
        write(dir, &format!("{name}.key"), &leaf.key_pem),
    )
}

/// A client's (certificate, key) as curl helpers take them.
pub fn pair(p: &(PathBuf, PathBuf)) -> Option<(&Path, &Path)> {
    Some((p.0.as_path(), p.1.as_path()))
}

/// The resource server example on a free port with the world's keys, plus `extra`.
pub fn start_resource_server(f: &Files, extra: &[&str]) -> Running {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--jwks",
        s(&f.jwks),
        "--issuer",
        super::ISSUER,
        "--audience",
        super::AUDIENCE,
    ];
    args.extend_from_slice(extra);
    start(&example_binary("resource_server"), &args)
}

/// The same, terminating TLS with the world's server certificate.
pub fn start_resource_server_tls(f: &Files, extra: &[&str]) -> Running {
    let mut args = vec![
        "--tls-cert",
        s(&f.server_cert),
        "--tls-key",
        s(&f.server_key),
    ];
    args.extend_from_slice(extra);
    start_resource_server(f, &args)
}

/// The lines a running server writes to stderr, read as they come (which also keeps the
/// pipe from filling up).
pub struct LogLines {
    lines: Arc<Mutex<Vec<String>>>,
}

impl LogLines {
    /// Takes over `running`'s stderr.
    pub fn follow(running: &mut Running) -> Self {
        let stderr = running.child.stderr.take().expect("stderr not taken yet");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut lines = sink.lock().unwrap();
                // Bounded: a test reads the recent lines only.
                if lines.len() < 100_000 {
                    lines.push(line);
                }
            }
        });
        Self { lines }
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits (at most `timeout`) until more than `seen` lines contain `needle`.
    pub fn wait_for(&self, needle: &str, seen: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.count(needle) > seen {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Everything so far, for a failure message.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// Serves `app` on `listener` from a thread of its own, for the rest of the test process.
pub fn serve_on_a_thread(listener: std::net::TcpListener, app: axum::Router) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
}
