//! Interop with a real authorization server: the npm `oidc-provider` (tests/oidc/,
//! installed by scripts/test from its lock file) behind a real nginx that terminates
//! mTLS and hands it the client certificate. Clients get certificate-bound tokens from
//! it with curl (`tls_client_auth` by SAN and by subject DN), JWTs for one resource and
//! opaque tokens for another; the example resource server verifies them by discovery,
//! remote keys and introspection, directly over mTLS and behind a second nginx.

mod common;

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::World;
use common::pki;
use common::process::*;
use serde_json::{Value, json};

const JWT_RESOURCE: &str = "https://api.jwt.test";
const OPAQUE_RESOURCE: &str = "https://api.opaque.test";
const INTROSPECTOR: (&str, &str) = ("resource-server", "rs-secret");

fn oidc_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "oidc-provider is not installed: run scripts/test (npm ci in tests/oidc)"
    );
    dir
}

fn node() -> PathBuf {
    std::env::var_os("MTLS_TEST_NODE")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("node"), PathBuf::from)
}

fn nginx() -> PathBuf {
    std::env::var_os("MTLS_TEST_NGINX")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/usr/sbin/nginx"), PathBuf::from)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An EC P-256 signing key made by node: its private JWK and its PKCS#8 PEM.
fn ec_key(kid: &str) -> (Value, String) {
    let script = "const c=require('crypto');\
        const {privateKey}=c.generateKeyPairSync('ec',{namedCurve:'P-256'});\
        const jwk=privateKey.export({format:'jwk'});\
        Object.assign(jwk,{kid:process.argv[1],alg:'ES256',use:'sig'});\
        console.log(JSON.stringify({jwk,pem:privateKey.export({format:'pem',type:'pkcs8'})}));";
    let out = Command::new(node())
        .args(["-e", script, kid])
        .output()
        .expect("node is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    (key["jwk"].clone(), key["pem"].as_str().unwrap().to_owned())
}

/// A process killed when dropped, its output in a file.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The test world on disk, the authorization server's ports and keys.
struct Site {
    world: World,
    f: Files,
    /// nginx in front of oidc-provider: the issuer's port.
    as_port: u16,
    /// oidc-provider itself (plain HTTP, loopback).
    provider_port: u16,
}

impl Site {
    fn new() -> Self {
        let world = World::new();
        let f = Files::new(&world);
        Self {
            world,
            f,
            as_port: free_port(),
            provider_port: free_port(),
        }
    }

    fn issuer(&self) -> String {
        format!("https://localhost:{}", self.as_port)
    }

    fn dir(&self) -> &Path {
        self.f.dir.path()
    }

    /// Starts oidc-provider signing with the first of `keys`, publishing all.
    fn start_provider(&self, keys: &[&Value]) -> Daemon {
        let config = json!({
            "issuer": self.issuer(),
            "listen_port": self.provider_port,
            "certificate_header": "x-ssl-client-cert",
            "jwks": {"keys": keys},
            "clients": [
                {"client_id": "client-a", "tls_client_auth_san_dns": "client-a.example.org"},
                {"client_id": "client-b", "tls_client_auth_subject_dn": "CN=client-b"},
            ],
            "introspection_client": {"client_id": INTROSPECTOR.0, "client_secret": INTROSPECTOR.1},
            "resources": {JWT_RESOURCE: "jwt", OPAQUE_RESOURCE: "opaque"},
        });
        let path = write(self.dir(), "provider.json", &config.to_string());
        let log = self.dir().join("provider.log");
        let out = File::create(&log).unwrap();
        let mut child = Command::new(node())
            .arg(oidc_dir().join("server.mjs"))
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(out)
            .spawn()
            .expect("node is installed (scripts/test installs it)");
        let mut stdout = child.stdout.take().unwrap();
        let daemon = Daemon { child, log };
        // The ready line, within 30 s.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            let _ = sender.send(String::from_utf8_lossy(&line).into_owned());
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_default();
        assert!(
            line.starts_with("listening on"),
            "oidc-provider did not start ({line:?}):\n{}",
            daemon.log()
        );
        daemon
    }

    /// nginx terminating TLS on `port` in front of `upstream`, forwarding the client
    /// certificate; `verify` is nginx's `ssl_verify_client`.
    fn start_nginx(&self, name: &str, servers: &[(u16, u16, &str)]) -> Daemon {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        let mut conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n\
             client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;\n\
             uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n"
        );
        for (port, upstream, verify) in servers {
            conf.push_str(&format!(
                "  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name localhost;\n\
                 ssl_certificate {cert}; ssl_certificate_key {key};\n\
                 ssl_client_certificate {ca}; ssl_verify_client {verify};\n\
                 location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n\
                 proxy_set_header X-Forwarded-Proto https;\n\
                 proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;\n    }}\n  }}\n",
                cert = s(&self.f.server_cert),
                key = s(&self.f.server_key),
                ca = s(&self.f.ca),
            ));
        }
        conf.push_str("}\n");
        let conf_path = write(&dir, "nginx.conf", &conf);
        let log = dir.join("nginx.log");
        let out = File::create(&log).unwrap();
        let child = Command::new(nginx())
            .args(["-e", "stderr", "-p", d, "-c"])
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("nginx is installed (scripts/test installs it)");
        let daemon = Daemon { child, log };
        for (port, _, _) in servers {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen:\n{}",
                    daemon.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        daemon
    }

    /// A token from the authorization server for `client_id`, presenting `leaf`.
    fn token(&self, client_id: &str, leaf: &(PathBuf, PathBuf), resource: &str) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={client_id}&scope=read&resource={}",
            form_urlencoded::byte_serialize(resource.as_bytes()).collect::<String>()
        );
        let url = format!("{}/token", self.issuer());
        let answer = curl_post_form(&url, &self.f.ca, pair(leaf), &form);
        assert_eq!(answer.status, 200, "token for {client_id}: {}", answer.body);
        answer.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// The example resource server for `audience`, by discovery (with introspection
    /// credentials for the opaque resource): over mTLS itself, or in plain HTTP for a
    /// trusted proxy on loopback.
    fn resource_server(&self, audience: &str, behind_proxy: bool) -> Running {
        let issuer = self.issuer();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--discovery",
            "--issuer",
            &issuer,
            "--audience",
            audience,
            "--as-ca",
            s(&self.f.ca),
        ];
        if audience == OPAQUE_RESOURCE {
            args.extend([
                "--introspection-client-id",
                INTROSPECTOR.0,
                "--introspection-client-secret",
                INTROSPECTOR.1,
            ]);
        }
        if behind_proxy {
            args.extend([
                "--trusted-proxy",
                "127.0.0.1",
                "--cert-header-format",
                "nginx",
            ]);
        } else {
            args.extend([
                "--tls-cert",
                s(&self.f.server_cert),
                "--tls-key",
                s(&self.f.server_key),
                "--client-ca",
                s(&self.f.ca),
            ]);
        }
        start(&example_binary("resource_server"), &args)
    }
}

/// `GET /whoami` on `port` of localhost with `leaf`'s certificate and `token`.
fn whoami(site: &Site, port: u16, leaf: &(PathBuf, PathBuf), token: &str) -> CurlAnswer {
    let url = format!("https://localhost:{port}/whoami");
    curl(&url, Some(&site.f.ca), pair(leaf), Some(token))
}

/// Asks until the answer is `want` (at most `limit`), and returns the last status.
fn until(limit: Duration, want: u16, mut ask: impl FnMut() -> u16) -> u16 {
    let deadline = Instant::now() + limit;
    loop {
        let status = ask();
        if status == want || Instant::now() >= deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stderr_of(mut running: Running) -> String {
    let _ = running.child.kill();
    let _ = running.child.wait();
    let mut text = String::new();
    if let Some(mut stderr) = running.child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

#[test]
fn tokens_of_a_real_authorization_server_are_bound_verified_and_rotated() {
    let site = Site::new();
    let (k1, _) = ec_key("k1");
    let (k2, _) = ec_key("k2");
    let (_, k3_pem) = ec_key("k3");
    let provider = site.start_provider(&[&k1]);
    let _as_front = site.start_nginx(
        "as-nginx",
        &[(site.as_port, site.provider_port, "optional")],
    );

    // The resource servers: by JWT and by introspection, directly and behind nginx.
    let jwt_direct = site.resource_server(JWT_RESOURCE, false);
    let opaque_direct = site.resource_server(OPAQUE_RESOURCE, false);
    let jwt_behind = site.resource_server(JWT_RESOURCE, true);
    let opaque_behind = site.resource_server(OPAQUE_RESOURCE, true);
    let (jwt_front, opaque_front) = (free_port(), free_port());
    let _rs_front = site.start_nginx(
        "rs-nginx",
        &[
            (jwt_front, jwt_behind.addr.port(), "on"),
            (opaque_front, opaque_behind.addr.port(), "on"),
        ],
    );
    let jwt_ports = [jwt_direct.addr.port(), jwt_front];
    let opaque_ports = [opaque_direct.addr.port(), opaque_front];
    let (a, b) = (&site.f.a, &site.f.b);

    // A JWT (at+jwt with cnf) for A, by SAN; for B, by subject DN.
    let a_jwt = site.token("client-a", a, JWT_RESOURCE);
    let b_jwt = site.token("client-b", b, JWT_RESOURCE);
    for port in jwt_ports {
        let answer = whoami(&site, port, a, &a_jwt);
        assert_eq!(answer.status, 200, "{port}: {}", answer.body);
        assert_eq!(answer.json()["client_id"], "client-a");
        assert_eq!(
            answer.json()["thumbprint"],
            site.world.a.thumbprint.as_str()
        );
        assert_eq!(answer.json()["bound"], true);
        assert_eq!(whoami(&site, port, b, &a_jwt).status, 401, "{port}: stolen");
        let answer = whoami(&site, port, b, &b_jwt);
        assert_eq!(answer.status, 200, "{port}: {}", answer.body);
        assert_eq!(answer.json()["client_id"], "client-b");
        assert_eq!(whoami(&site, port, a, &b_jwt).status, 401, "{port}: stolen");
    }

    // An opaque token through introspection; a revoked one is refused.
    let a_opaque = site.token("client-a", a, OPAQUE_RESOURCE);
    assert!(!a_opaque.contains('.'), "opaque: {a_opaque}");
    for port in opaque_ports {
        let answer = whoami(&site, port, a, &a_opaque);
        assert_eq!(answer.status, 200, "{port}: {}", answer.body);
        assert_eq!(answer.json()["client_id"], "client-a");
        assert_eq!(answer.json()["scopes"], json!(["read"]));
        assert_eq!(
            whoami(&site, port, b, &a_opaque).status,
            401,
            "{port}: stolen"
        );
        // The JWT is for the other resource.
        assert_eq!(
            whoami(&site, port, a, &a_jwt).status,
            401,
            "{port}: other audience"
        );
    }
    let revoked = site.token("client-a", a, OPAQUE_RESOURCE);
    let url = format!("{}/token/revocation", site.issuer());
    let form = format!("client_id=client-a&token={revoked}");
    let answer = curl_post_form(&url, &site.f.ca, pair(a), &form);
    assert_eq!(answer.status, 200, "revocation: {}", answer.body);
    for port in opaque_ports {
        assert_eq!(
            whoami(&site, port, a, &revoked).status,
            401,
            "{port}: revoked"
        );
    }

    // Key rotation at the authorization server: k2 signs, k1 is still published. The
    // new key is picked up without a restart (within the 10 s refetch interval), the
    // old one still verifies.
    drop(provider);
    let provider = site.start_provider(&[&k2, &k1]);
    let rotated = site.token("client-a", a, JWT_RESOURCE);
    for port in jwt_ports {
        let status = until(Duration::from_secs(20), 200, || {
            whoami(&site, port, a, &rotated).status
        });
        assert_eq!(status, 200, "{port}: a token of the rotated key");
        assert_eq!(
            whoami(&site, port, a, &a_jwt).status,
            200,
            "{port}: the old key"
        );
    }

    // The authorization server stops: cached keys keep working (for a token no
    // resource server has seen yet, so not from the token cache); a token that needs a
    // key nobody can fetch is refused (401, or 503 while keys cannot be had); the
    // server keeps running, and its log says why.
    let unseen = site.token("client-a", a, JWT_RESOURCE);
    drop(provider);
    let unknown_key = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k3".into());
        let claims = pki::claims(
            &site.issuer(),
            JWT_RESOURCE,
            "client-a",
            "read",
            Some(&site.world.a),
        );
        mtls_bound_token::install_jwt_provider();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(k3_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    for port in jwt_ports {
        assert_eq!(
            whoami(&site, port, a, &unseen).status,
            200,
            "{port}: cached key, unseen token"
        );
        assert_eq!(
            whoami(&site, port, a, &rotated).status,
            200,
            "{port}: cached key"
        );
        assert_eq!(
            whoami(&site, port, a, &a_jwt).status,
            200,
            "{port}: cached key"
        );
    }
    // Past the refetch interval, so that the unknown kid makes a fetch (which fails).
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        for port in jwt_ports {
            let status = whoami(&site, port, a, &unknown_key).status;
            assert!(status == 401 || status == 503, "{port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    let health = curl(
        &format!("https://localhost:{}/healthz", jwt_direct.addr.port()),
        Some(&site.f.ca),
        pair(a),
        None,
    );
    assert_eq!(health.status, 200);
    let log = stderr_of(jwt_direct);
    assert!(log.contains("cannot refresh the JWKS"), "{log}");
    drop((opaque_direct, jwt_behind, opaque_behind));
}
