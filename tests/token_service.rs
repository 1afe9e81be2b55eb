//! The example token service as a black box: its command line, the token endpoint's
//! answers (RFC 6749 §5.1/§5.2, RFC 8705 §2, RFC 9068), its JWKS and metadata, rate
//! limiting, and the whole flow into the example resource server. Real processes, real
//! sockets, real clients: curl, Python `requests` and a rustls client.

mod common;
// The service's own unit tests (how its rate limits group peer addresses, which no
// black-box test can reach over loopback) run with this suite: `cargo test` builds
// the examples but runs no tests in them.
#[path = "../examples/token_service/service.rs"]
mod service;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use common::pki::{self, Ca, Leaf, Subject};
use common::process::*;
use common::{Answer, ISSUER, World, client_config, collect, connect, leaf_identity};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// `aud` of tokens whose request names no resource (`--audience`).
const AUDIENCE: &str = "https://api.test";

/// The registered clients: one per way of registering, plus the odd ones the error
/// table and the spoofing cases need. Client A's certificate has the subject
/// `O=Example,CN=client-a` and the SANs dns `client-a.example.org`, uri
/// `spiffe://example.org/client-a`, ip `10.1.2.3` and `2001:db8::10`, email
/// `a@example.org` (see `World::new`).
const CLIENTS: &str = r#"
[[client]]
client_id = "client-a"
auth = "tls_client_auth"
san_dns = "client-a.example.org"
scopes = ["read", "admin"]

[[client]]
client_id = "client-b"
auth = "tls_client_auth"
subject_dn = "CN=client-b"
scopes = ["read"]

[[client]]
client_id = "by-dn"
auth = "tls_client_auth"
subject_dn = "O=Example,CN=client-a"
scopes = ["read"]

# The same name, written differently: an OID, a lower-case type, a space.
[[client]]
client_id = "by-dn-variant"
auth = "tls_client_auth"
subject_dn = "2.5.4.10=Example, cn=client-a"
scopes = ["read"]

[[client]]
client_id = "by-uri"
auth = "tls_client_auth"
san_uri = "spiffe://example.org/client-a"
scopes = ["read"]

[[client]]
client_id = "by-ip"
auth = "tls_client_auth"
san_ip = "10.1.2.3"
scopes = ["read"]

# Not the certificate's spelling (2001:db8::10), the same address.
[[client]]
client_id = "by-ip6"
auth = "tls_client_auth"
san_ip = "2001:db8:0:0:0:0:0:10"
scopes = ["read"]

[[client]]
client_id = "by-email"
auth = "tls_client_auth"
san_email = "a@example.org"
scopes = ["read"]

[[client]]
client_id = "by-dns-case"
auth = "tls_client_auth"
san_dns = "CLIENT-A.Example.ORG"
scopes = ["read"]

# A's DNS name, registered as a URI: A has it only as a DNS SAN.
[[client]]
client_id = "wrong-san-type"
auth = "tls_client_auth"
san_uri = "client-a.example.org"
scopes = ["read"]

# A has 10.1.2.3; the IPv4-mapped IPv6 address is another address.
[[client]]
client_id = "mapped-ip"
auth = "tls_client_auth"
san_ip = "::ffff:10.1.2.3"
scopes = ["read"]

[[client]]
client_id = "client-s"
auth = "self_signed_tls_client_auth"
jwks = "client-s.jwks.json"
scopes = ["read"]

[[client]]
client_id = "code-only"
auth = "tls_client_auth"
san_dns = "client-a.example.org"
grant_types = ["authorization_code"]
scopes = ["read"]

# May have tokens for --audience and one more resource only.
[[client]]
client_id = "reports-only"
auth = "tls_client_auth"
san_dns = "client-a.example.org"
resources = ["https://reports.test"]
scopes = ["read"]
"#;

/// Built once for the whole file.
fn binary(name: &'static str) -> &'static Path {
    static TOKEN_SERVICE: OnceLock<PathBuf> = OnceLock::new();
    static RESOURCE_SERVER: OnceLock<PathBuf> = OnceLock::new();
    let cell = match name {
        "token_service" => &TOKEN_SERVICE,
        "resource_server" => &RESOURCE_SERVER,
        other => panic!("no example {other}"),
    };
    cell.get_or_init(|| example_binary(name))
}

/// The certificates of the tests and the files of the token service's user.
struct Setup {
    world: World,
    /// A's certificate contents, from a CA other than `--client-ca`.
    stranger: Leaf,
    /// A's certificate contents, self-signed.
    self_a: Leaf,
    /// From the trusted CA, with the single CN `client-a,O=Example`.
    spoof: Leaf,
    /// Self-signed; in client-s's JWKS.
    s1: Leaf,
    /// Self-signed; in no JWKS.
    s2: Leaf,
    dir: TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    clients: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let world = World::new();
        let stranger = Ca::root("Someone Else's CA").client(&pki::a_subject());
        let self_a = Leaf::self_signed(&pki::a_subject());
        let spoof = world.ca.client(&Subject::cn("client-a,O=Example"));
        let s1 = Leaf::self_signed(&Subject::cn("workload-1"));
        let s2 = Leaf::self_signed(&Subject::cn("workload-2"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write(p, "client-s.jwks.json", &pki::x5c_jwks(&[&s1]));
        Self {
            ca: write(p, "ca.pem", &world.ca.cert_pem),
            server_cert: write(p, "server.pem", &world.server.chain_pem),
            server_key: write(p, "server.key", &world.server.key_pem),
            clients: write(p, "clients.toml", CLIENTS),
            world,
            stranger,
            self_a,
            spoof,
            s1,
            s2,
            dir,
        }
    }

    /// The leaf called `name`.
    fn leaf(&self, name: &str) -> &Leaf {
        match name {
            "a" => &self.world.a,
            "b" => &self.world.b,
            "stranger" => &self.stranger,
            "self_a" => &self.self_a,
            "spoof" => &self.spoof,
            "s1" => &self.s1,
            "s2" => &self.s2,
            other => panic!("no leaf {other}"),
        }
    }

    /// `name`'s certificate and key as files, for curl and Python.
    fn files(&self, name: &str) -> (PathBuf, PathBuf) {
        let leaf = self.leaf(name);
        let p = self.dir.path();
        (
            write(p, &format!("{name}.pem"), &leaf.cert_pem),
            write(p, &format!("{name}.key"), &leaf.key_pem),
        )
    }

    fn base_args(&self) -> Vec<String> {
        [
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--tls-cert",
            s(&self.server_cert),
            "--tls-key",
            s(&self.server_key),
        ]
        .map(String::from)
        .to_vec()
    }

    /// The token service with these clients and the world's CA, plus `extra`.
    fn start(&self, extra: &[&str]) -> Running {
        let mut args = self.base_args();
        args.extend(["--client-ca", s(&self.ca), "--clients", s(&self.clients)].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start(binary("token_service"), &args)
    }

    /// The example resource server, trusting the token service's `GET /jwks` answer.
    fn start_resource_server(&self, token_service: &Running) -> Running {
        let a = self.files("a");
        let jwks = curl(
            &url(token_service, "/jwks"),
            Some(&self.ca),
            Some((&a.0, &a.1)),
            None,
        );
        assert_eq!(jwks.status, 200, "{}", jwks.body);
        let jwks = write(self.dir.path(), "issuer.jwks.json", &jwks.body);
        self.start_resource_server_with(&["--jwks", s(&jwks)])
    }

    /// The example resource server with these key options.
    fn start_resource_server_with(&self, keys: &[&str]) -> Running {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(keys);
        args.extend_from_slice(&[
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
            "--tls-cert",
            s(&self.server_cert),
            "--tls-key",
            s(&self.server_key),
            "--client-ca",
            s(&self.ca),
        ]);
        start(binary("resource_server"), &args)
    }

    /// A token request with curl, presenting `leaf`'s certificate.
    fn curl_token(&self, service: &Running, leaf: &str, form: &str) -> CurlAnswer {
        let (cert, key) = self.files(leaf);
        curl_post_form(&url(service, "/token"), &self.ca, Some((&cert, &key)), form)
    }
}

fn url(server: &Running, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

/// `grant_type=client_credentials&client_id=...` and any extra parameters.
fn form(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id);
    for (name, value) in extra {
        form.append_pair(name, value);
    }
    form.finish()
}

/// A JWT's header and claims, unverified.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || -> Value {
        let text = parts.next().expect("a JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).expect("base64url")).expect("JSON")
    };
    let parts = (next(), next());
    assert_eq!(token.split('.').count(), 3, "a JWS compact serialization");
    parts
}

/// Verifies `token`'s ES256 signature with `key`, and its `iss` and `aud`.
fn verify(token: &str, key: &jsonwebtoken::DecodingKey, audience: &str) -> Value {
    mtls_bound_token::install_jwt_provider();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, key, &validation)
        .unwrap_or_else(|e| panic!("the token does not verify: {e}"))
        .claims
}

/// An RFC 6749 §5.2 error answer: this status and code, `Cache-Control: no-store`, and
/// a JSON body of exactly `error` and `error_description`.
fn assert_oauth_error(case: &str, answer: &CurlAnswer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{case}: {}", answer.body);
    assert_eq!(
        answer.header("cache-control").as_deref(),
        Some("no-store"),
        "{case}"
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{case}: {}",
        answer.headers
    );
    let body = answer.json();
    assert_eq!(body["error"], code, "{case}: {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{case}: {body}"
    );
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["error", "error_description"]),
        "{case}: {body}"
    );
}

// === A rustls client for many requests ==================================================

/// `POST /token` with this form body.
fn token_request(form: &str) -> Request<Full<Bytes>> {
    Request::post("/token")
        .header("host", "localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

/// An HTTP/1.1 connection over mutual TLS, presenting `leaf`'s certificate.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(server: &Running, ca: &Ca, leaf: &Leaf) -> Result<Self, String> {
        let config = client_config(ca, leaf_identity(leaf), &[]);
        let tls = tokio::time::timeout(Duration::from_secs(10), connect(server.addr, config))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("handshake: {e}"))?;
        Self::over(tls).await
    }

    /// From the loopback address `from` (the service keys its limits on the peer
    /// address), presenting `leaf`'s certificate or none (as a proxy may).
    async fn open_from(
        server: &Running,
        ca: &Ca,
        leaf: Option<&Leaf>,
        from: IpAddr,
    ) -> Result<Self, String> {
        let config = client_config(ca, leaf.and_then(leaf_identity), &[]);
        let handshake = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(from, 0))?;
            let tcp = socket.connect(server.addr).await?;
            TlsConnector::from(config)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        };
        let tls = tokio::time::timeout(Duration::from_secs(10), handshake)
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("handshake from {from}: {e}"))?;
        Self::over(tls).await
    }

    async fn over(tls: TlsStream<TcpStream>) -> Result<Self, String> {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, String> {
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            Ok(collect(response).await)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
    }
}

/// One token request on a fresh connection; `Err` when there is no HTTP answer (a
/// refused handshake).
async fn ask_token(server: &Running, ca: &Ca, leaf: &Leaf, form: &str) -> Result<Answer, String> {
    Connection::open(server, ca, leaf)
        .await?
        .send(token_request(form))
        .await
}

/// Like [`ask_token`], from the loopback address `from`.
async fn ask_token_from(
    server: &Running,
    ca: &Ca,
    leaf: &Leaf,
    form: &str,
    from: IpAddr,
) -> Result<Answer, String> {
    Connection::open_from(server, ca, Some(leaf), from)
        .await?
        .send(token_request(form))
        .await
}

/// A token request as a Caddy proxy forwards it: `leaf`'s certificate, base64 DER, in
/// `X-Client-Cert`.
fn forwarded_token_request(leaf: &Leaf, form: &str) -> Request<Full<Bytes>> {
    let mut request = token_request(form);
    let der = base64::engine::general_purpose::STANDARD.encode(&leaf.cert_der);
    request
        .headers_mut()
        .insert("x-client-cert", der.parse().unwrap());
    request
}

/// A second loopback address to be another peer from (Linux routes all of 127/8 to
/// the loopback interface; other systems may not), or `None` when this host has none.
fn other_loopback() -> Option<IpAddr> {
    let other = IpAddr::from([127, 0, 0, 2]);
    match std::net::TcpListener::bind(SocketAddr::new(other, 0)) {
        Ok(_) => Some(other),
        Err(error) => {
            eprintln!("no second loopback address ({other}: {error}); that part is skipped");
            None
        }
    }
}

/// `count` self-signed certificates registered nowhere: what anyone can make afresh for
/// every request. Made before a burst, so that the burst is not spread out by key
/// generation (the limits earn cells back over time).
fn fresh_certificates(count: usize) -> Vec<Leaf> {
    (0..count)
        .map(|n| Leaf::self_signed(&Subject::cn(&format!("probe-{n}"))))
        .collect()
}

/// The `Retry-After` of a 429, in seconds, checked to be within `range`.
fn retry_after(answer: &Answer, range: std::ops::RangeInclusive<u64>) -> u64 {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert!(answer.json()["error"].is_string(), "{}", answer.body);
    let seconds: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(range.contains(&seconds), "Retry-After: {seconds}");
    seconds
}

/// 401 `invalid_client`.
fn assert_invalid_client(case: &str, answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        answer.body
    );
    assert_eq!(answer.json()["error"], "invalid_client", "{case}");
}

// === The tests ==========================================================================

#[test]
fn the_token_endpoint_error_table() {
    let setup = Setup::new();
    let service = setup.start(&["--rate-limit", "1000"]);
    const FORM: &str = "application/x-www-form-urlencoded";
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "wrong content type",
            "application/json",
            r#"{"grant_type":"client_credentials","client_id":"client-a"}"#,
            400,
            "invalid_request",
        ),
        (
            "repeated parameter",
            FORM,
            "grant_type=client_credentials&client_id=client-a&scope=read&scope=read",
            400,
            "invalid_request",
        ),
        (
            "missing client_id",
            FORM,
            "grant_type=client_credentials&scope=read",
            400,
            "invalid_request",
        ),
        (
            "empty client_id",
            FORM,
            "grant_type=client_credentials&client_id=",
            400,
            "invalid_request",
        ),
        (
            "unknown client",
            FORM,
            "grant_type=client_credentials&client_id=nobody",
            401,
            "invalid_client",
        ),
        (
            "missing grant_type",
            FORM,
            "client_id=client-a&scope=read",
            400,
            "invalid_request",
        ),
        (
            "password grant",
            FORM,
            "grant_type=password&client_id=client-a&username=u&password=p",
            400,
            "unsupported_grant_type",
        ),
        (
            "a client registered without client_credentials",
            FORM,
            "grant_type=client_credentials&client_id=code-only",
            400,
            "unauthorized_client",
        ),
        (
            "a scope the client may not have",
            FORM,
            "grant_type=client_credentials&client_id=client-a&scope=read+write",
            400,
            "invalid_scope",
        ),
        (
            "another client's certificate",
            FORM,
            "grant_type=client_credentials&client_id=client-b",
            401,
            "invalid_client",
        ),
    ];
    let (cert, key) = setup.files("a");
    let token_url = url(&service, "/token");
    std::thread::scope(|scope| {
        for (case, content_type, body, status, code) in cases {
            let (cert, key, token_url, ca) = (&cert, &key, &token_url, &setup.ca);
            scope.spawn(move || {
                let answer = curl_request(
                    "POST",
                    token_url,
                    Some(ca),
                    Some((cert, key)),
                    &[&format!("Content-Type: {content_type}")],
                    Some(body.as_bytes()),
                );
                assert_oauth_error(case, &answer, *status, code);
            });
        }
    });
}

#[test]
fn a_token_bound_to_the_presented_certificate() {
    let setup = Setup::new();
    let service = setup.start(&["--token-ttl", "120", "--rate-limit", "1000"]);
    let a = &setup.world.a;

    let answer = setup.curl_token(&service, "a", &form("client-a", &[("scope", "read")]));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(answer.header("pragma").as_deref(), Some("no-cache"));
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["expires_in"], 120, "{body}");
    assert_eq!(body["scope"], "read", "{body}");
    let token = body["access_token"].as_str().expect("access_token");

    let (header, claims) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    let kid = header["kid"].as_str().expect("kid");

    let (cert, key) = setup.files("a");
    let jwks = curl(
        &url(&service, "/jwks"),
        Some(&setup.ca),
        Some((&cert, &key)),
        None,
    );
    assert_eq!(jwks.status, 200);
    let jwks = jwks.json();
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in {jwks}"));
    assert_eq!((&jwk["kty"], &jwk["crv"]), (&json!("EC"), &json!("P-256")));
    assert!(
        jwk.get("d").is_none(),
        "the JWKS must not hold the private key"
    );
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let verified = verify(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        AUDIENCE,
    );
    assert_eq!(verified, claims);

    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "client-a");
    assert_eq!(claims["client_id"], "client-a");
    assert_eq!(claims["scope"], "read");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!((iat - pki::now()).abs() <= 60, "iat {iat}");
    assert_eq!(claims["exp"].as_i64(), Some(iat + 120));
    let jti = claims["jti"].as_str().expect("jti");
    assert!(jti.len() >= 16, "jti {jti}");
    assert_eq!(claims["cnf"], json!({"x5t#S256": a.thumbprint}));

    // Another request: another jti. No scope asked: every registered scope.
    let again = setup
        .curl_token(&service, "a", &form("client-a", &[]))
        .json();
    let (_, again) = jwt_parts(again["access_token"].as_str().unwrap());
    assert_ne!(again["jti"], jti);
    assert_eq!(again["scope"], "read admin");

    // RFC 8707 `resource` (or `audience`) sets `aud`.
    for name in ["resource", "audience"] {
        let answer = setup.curl_token(
            &service,
            "a",
            &form(
                "client-a",
                &[("scope", "admin"), (name, "https://other.test")],
            ),
        );
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        let token = answer.json()["access_token"].as_str().unwrap().to_owned();
        let claims = verify(
            &token,
            &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            "https://other.test",
        );
        assert_eq!(claims["aud"], "https://other.test", "{name}");
        assert_eq!(claims["scope"], "admin", "{name}");
        assert_eq!(claims["cnf"]["x5t#S256"], a.thumbprint.as_str(), "{name}");
    }

    // A client registered with `resources` gets tokens for those and --audience only.
    for (resource, status) in [
        ("https://reports.test", 200),
        (AUDIENCE, 200),
        ("https://other.test", 400),
    ] {
        let answer = setup.curl_token(
            &service,
            "a",
            &form("reports-only", &[("resource", resource)]),
        );
        assert_eq!(answer.status, status, "{resource}: {}", answer.body);
        if status == 400 {
            assert_eq!(answer.json()["error"], "invalid_target");
        }
    }
}

#[test]
fn metadata_jwks_and_health() {
    let setup = Setup::new();
    let service = setup.start(&[]);
    let (cert, key) = setup.files("a");
    let get = |path: &str| {
        curl(
            &url(&service, path),
            Some(&setup.ca),
            Some((&cert, &key)),
            None,
        )
    };

    let metadata = get("/.well-known/oauth-authorization-server");
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let metadata = metadata.json();
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(metadata["token_endpoint"], format!("{ISSUER}/token"));
    assert_eq!(metadata["jwks_uri"], format!("{ISSUER}/jwks"));
    assert_eq!(
        metadata["grant_types_supported"],
        json!(["client_credentials"])
    );
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .expect("token_endpoint_auth_methods_supported");
    for method in ["tls_client_auth", "self_signed_tls_client_auth"] {
        assert!(methods.contains(&json!(method)), "{metadata}");
    }
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        metadata["mtls_endpoint_aliases"]["token_endpoint"],
        format!("{ISSUER}/token")
    );

    let jwks = get("/jwks").json();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0]["kid"].is_string());

    let health = get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(get("/nope").status, 404);

    // Without a client certificate the JWKS and metadata stay public; tokens do not.
    let anonymous = curl(&url(&service, "/jwks"), Some(&setup.ca), None, None);
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    let token = curl_post_form(
        &url(&service, "/token"),
        &setup.ca,
        None,
        "grant_type=client_credentials&client_id=client-a",
    );
    assert_eq!(token.status, 401);
    assert_eq!(token.json()["error"], "invalid_client");
}

/// Who asks, with which certificate, and what must come of it.
#[derive(Clone, Copy)]
enum Want {
    /// 200 and a token bound to the presented certificate.
    Token,
    /// 401 `invalid_client`.
    InvalidClient,
    /// No token, however refused: 401 `invalid_client` or a failed handshake.
    Refused,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_authenticate_by_their_registered_identity() {
    let setup = Setup::new();
    let service = setup.start(&["--rate-limit", "1000"]);
    use Want::*;
    let cases: &[(&str, &str, Want)] = &[
        // Each way of registering, with the right certificate.
        ("client-a", "a", Token),
        ("by-dn", "a", Token),
        ("by-dn-variant", "a", Token),
        ("by-uri", "a", Token),
        ("by-ip", "a", Token),
        ("by-ip6", "a", Token),
        ("by-email", "a", Token),
        ("by-dns-case", "a", Token),
        ("client-b", "b", Token),
        ("client-s", "s1", Token),
        // A genuine certificate of the CA, without the registered identity.
        ("client-a", "b", InvalidClient),
        ("by-dn", "b", InvalidClient),
        ("by-dn-variant", "b", InvalidClient),
        ("by-uri", "b", InvalidClient),
        ("by-ip", "b", InvalidClient),
        ("by-ip6", "b", InvalidClient),
        ("by-email", "b", InvalidClient),
        // Another registered client's certificate.
        ("client-b", "a", InvalidClient),
        ("client-s", "a", InvalidClient),
        ("client-a", "s1", InvalidClient),
        // Spoofing: a CN that contains ",O=Example".
        ("by-dn", "spoof", InvalidClient),
        ("client-a", "spoof", InvalidClient),
        // The value, but in a SAN of another type, or as another address.
        ("wrong-san-type", "a", InvalidClient),
        ("mapped-ip", "a", InvalidClient),
        // A's very identity, but self-signed: the handshake lets it through (it could be
        // a self_signed_tls_client_auth client), the endpoint does not.
        ("client-a", "self_a", InvalidClient),
        ("by-dn", "self_a", InvalidClient),
        ("by-uri", "self_a", InvalidClient),
        ("by-ip", "self_a", InvalidClient),
        ("by-email", "self_a", InvalidClient),
        // A's very identity from a CA other than --client-ca.
        ("client-a", "stranger", Refused),
        ("by-dn", "stranger", Refused),
        ("by-uri", "stranger", Refused),
        ("by-ip", "stranger", Refused),
        ("by-email", "stranger", Refused),
        // Self-signed, but not the registered certificate.
        ("client-s", "s2", InvalidClient),
    ];
    let service = Arc::new(service);
    let setup = Arc::new(setup);
    let mut tasks = Vec::new();
    for &(client_id, leaf, want) in cases {
        let (service, setup) = (Arc::clone(&service), Arc::clone(&setup));
        let (client_id, leaf) = (client_id.to_owned(), leaf.to_owned());
        tasks.push(tokio::spawn(async move {
            let case = format!("{client_id} with {leaf}'s certificate");
            let certificate = setup.leaf(&leaf);
            let result = ask_token(
                &service,
                &setup.world.ca,
                certificate,
                &form(&client_id, &[("scope", "read")]),
            )
            .await;
            let refused = |answer: &Answer| {
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{case}: {}",
                    answer.body
                );
                assert_eq!(answer.json()["error"], "invalid_client", "{case}");
                assert_eq!(answer.headers["cache-control"], "no-store", "{case}");
            };
            match (want, result) {
                (Token, Ok(answer)) => {
                    assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.body);
                    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
                    let (_, claims) = jwt_parts(&token);
                    assert_eq!(claims["client_id"], client_id.as_str(), "{case}");
                    assert_eq!(
                        claims["cnf"]["x5t#S256"],
                        certificate.thumbprint.as_str(),
                        "{case}: bound to the presented certificate"
                    );
                }
                (InvalidClient | Refused, Ok(answer)) => refused(&answer),
                (Refused, Err(_)) => {}
                (_, Err(error)) => panic!("{case}: no answer: {error}"),
            }
        }));
    }
    for task in tasks {
        if let Err(error) = task.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

#[test]
fn self_signed_clients_with_curl() {
    let setup = Setup::new();
    let service = setup.start(&[]);

    let answer = setup.curl_token(&service, "s1", &form("client-s", &[]));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["scope"], "read");
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "client-s");
    assert_eq!(claims["cnf"]["x5t#S256"], setup.s1.thumbprint.as_str());

    let answer = setup.curl_token(&service, "s2", &form("client-s", &[]));
    assert_oauth_error(
        "another self-signed certificate",
        &answer,
        401,
        "invalid_client",
    );
    let answer = setup.curl_token(&service, "a", &form("client-s", &[]));
    assert_oauth_error("a CA-issued certificate", &answer, 401, "invalid_client");
}

#[tokio::test]
async fn a_burst_from_one_certificate_is_slowed_down_then_recovers() {
    let setup = Setup::new();
    let service = setup.start(&["--rate-limit", "30"]);
    let ca = &setup.world.ca;
    let request = || token_request(&form("client-a", &[("scope", "read")]));

    let mut connection = Connection::open(&service, ca, &setup.world.a)
        .await
        .unwrap();
    let mut limited = None;
    for n in 1..=40 {
        let answer = connection.send(request()).await.unwrap();
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, answer));
            break;
        }
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {n}: {}",
            answer.body
        );
    }
    let (n, answer) = limited.expect("no 429 within 40 requests at --rate-limit 30");
    assert!(n > 25, "limited already at request {n}");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let retry_after: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    // 30 a minute: one more every 2 s.
    assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
    assert!(answer.json()["error"].is_string(), "{}", answer.body);

    // Another certificate is not held back by A's burst.
    let b = ask_token(&service, ca, &setup.world.b, &form("client-b", &[]))
        .await
        .unwrap();
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let answer = ask_token(&service, ca, &setup.world.a, &form("client-a", &[]))
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "after Retry-After: {}",
        answer.body
    );
}

#[tokio::test]
async fn many_certificates_from_one_address_are_slowed_down_too() {
    // --rate-limit 1: one request a minute per certificate, four per peer address.
    let setup = Setup::new();
    let service = setup.start(&["--rate-limit", "1"]);
    let ca = &setup.world.ca;
    for (leaf, client_id) in [("a", "client-a"), ("b", "client-b"), ("s1", "client-s")] {
        let answer = ask_token(&service, ca, setup.leaf(leaf), &form(client_id, &[]))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{leaf}: {}", answer.body);
    }
    let answer = ask_token(&service, ca, &setup.s2, &form("client-s", &[]))
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    // A certificate never seen before, but the fifth request from this address.
    let answer = ask_token(&service, ca, &setup.self_a, &form("client-a", &[]))
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn fresh_certificates_from_one_address_run_out_of_failed_authentications() {
    // --rate-limit 5: 5 failed authentications a minute per address group (one earned
    // back every 12 s), 20 requests a minute per address group (this test makes at most
    // 15 from 127.0.0.1, so every 429 here is the failure budget's). A certificate made
    // afresh for each request must not get a fresh budget each time.
    let setup = Setup::new();
    let service = setup.start(&["--rate-limit", "5"]);
    let ca = &setup.world.ca;
    let local = IpAddr::from([127, 0, 0, 1]);
    let probes = fresh_certificates(11);
    let mut probes = probes.iter().enumerate().map(|(n, leaf)| (n + 1, leaf));
    let probe_form = form("client-s", &[]);

    let mut limited = None;
    for (n, probe) in probes.by_ref().take(8) {
        let answer = ask_token_from(&service, ca, probe, &probe_form, local)
            .await
            .unwrap();
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, answer));
            break;
        }
        // Until the budget is spent, a bad certificate is told so as ever.
        assert_invalid_client(&format!("fresh certificate {n}"), &answer);
    }
    let (n, answer) = limited.expect("no 429 within 8 fresh certificates at 5 failures a minute");
    assert!(n > 5, "limited already at failure {n}");
    retry_after(&answer, 1..=12);

    // Meanwhile the registered clients at the same address are served, between more
    // attempts that stay refused.
    for (client_id, leaf) in [("client-a", "a"), ("client-b", "b"), ("client-s", "s1")] {
        let (_, probe) = probes.next().unwrap();
        let answer = ask_token_from(&service, ca, probe, &probe_form, local)
            .await
            .unwrap();
        retry_after(&answer, 1..=12);
        let answer = ask_token_from(&service, ca, setup.leaf(leaf), &form(client_id, &[]), local)
            .await
            .unwrap();
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{client_id}: {}",
            answer.body
        );
    }
    // A registered certificate failing to authenticate is a failure like any other.
    let answer = ask_token_from(&service, ca, &setup.world.a, &form("client-b", &[]), local)
        .await
        .unwrap();
    retry_after(&answer, 1..=12);

    // Another address has its own budget: its failures are still answered 401.
    if let Some(other) = other_loopback() {
        let answer = ask_token_from(&service, ca, &setup.s2, &probe_form, other)
            .await
            .unwrap();
        assert_invalid_client("a failure from another address", &answer);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_failed_authentications_have_a_global_budget() {
    // --rate-limit 1: 16 failed authentications a minute in all (one earned back every
    // 3.75 s). The proxy forwards everyone, so neither its address nor the forwarded
    // certificate (made afresh for each request) can key a budget.
    let setup = Setup::new();
    let service = setup.start(&[
        "--rate-limit",
        "1",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--cert-header-format",
        "caddy",
    ]);
    let ca = &setup.world.ca;
    let local = IpAddr::from([127, 0, 0, 1]);
    // One connection, without a certificate of its own, as a proxy keeps them.
    let mut proxy = Connection::open_from(&service, ca, None, local)
        .await
        .unwrap();
    let probe_form = form("client-s", &[]);

    let mut limited = None;
    for (n, probe) in fresh_certificates(26).iter().enumerate() {
        let n = n + 1;
        let answer = proxy
            .send(forwarded_token_request(probe, &probe_form))
            .await
            .unwrap();
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, answer));
            break;
        }
        assert_invalid_client(&format!("forwarded fresh certificate {n}"), &answer);
    }
    let (n, answer) =
        limited.expect("no 429 within 26 forwarded fresh certificates at 16 failures a minute");
    assert!(n > 16, "limited already at failure {n}");
    retry_after(&answer, 1..=4);

    // Registered clients behind the proxy are served all the same.
    for (client_id, leaf) in [("client-s", &setup.s1), ("client-a", &setup.world.a)] {
        let answer = proxy
            .send(forwarded_token_request(leaf, &form(client_id, &[])))
            .await
            .unwrap();
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{client_id}: {}",
            answer.body
        );
    }
    // The budget is global: a direct peer's failure is refused too, its success not.
    if let Some(other) = other_loopback() {
        let answer = ask_token_from(&service, ca, &setup.s2, &probe_form, other)
            .await
            .unwrap();
        retry_after(&answer, 1..=4);
        let answer = ask_token_from(&service, ca, &setup.world.b, &form("client-b", &[]), other)
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
}

#[test]
fn a_crl_revokes_tls_client_auth_certificates_and_leaves_self_signed_clients_alone() {
    let setup = Setup::new();
    let crl = write(
        setup.dir.path(),
        "ca.crl",
        &setup.world.ca.crl(&[&setup.world.b.cert_der], false),
    );
    let service = setup.start(&["--crl", s(&crl)]);
    let a = setup.curl_token(&service, "a", &form("client-a", &[]));
    assert_eq!(a.status, 200, "{}", a.body);
    let b = setup.curl_token(&service, "b", &form("client-b", &[]));
    assert_eq!(b.status, 0, "revoked b must fail the handshake: {}", b.body);
    let self_signed = setup.curl_token(&service, "s1", &form("client-s", &[]));
    assert_eq!(self_signed.status, 200, "{}", self_signed.body);

    // Without --client-ca there is nothing a CRL could revoke.
    let mut args = setup.base_args();
    args.extend(["--clients", s(&setup.clients), "--crl", s(&crl)].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_to_end(binary("token_service"), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--crl needs --client-ca"), "{stderr}");
}

#[test]
fn a_self_signed_client_registered_by_jwks_uri_rotates_by_publishing() {
    let setup = Setup::new();
    // The client's JWKS, served over plain HTTP on loopback; the test changes it.
    let published = Arc::new(std::sync::Mutex::new(pki::x5c_jwks(&[&setup.s1])));
    let served = Arc::clone(&published);
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let served = Arc::clone(&served);
            async move { served.lock().unwrap().clone() }
        }),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let jwks_uri = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    serve_on_a_thread(listener, app);
    let clients = write(
        setup.dir.path(),
        "by-uri.toml",
        &format!(
            "[[client]]\nclient_id = \"client-u\"\nauth = \"self_signed_tls_client_auth\"\n\
             jwks_uri = \"{jwks_uri}\"\nscopes = [\"read\"]\n"
        ),
    );
    let mut args = setup.base_args();
    args.extend(["--clients", s(&clients), "--allow-http-jwks-uri"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let service = start(binary("token_service"), &args);
    // It fetched the JWKS before it printed its listening line.
    let started = std::time::Instant::now();

    let s1 = setup.curl_token(&service, "s1", &form("client-u", &[]));
    assert_eq!(s1.status, 200, "{}", s1.body);
    let (_, claims) = jwt_parts(s1.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["x5t#S256"], setup.s1.thumbprint.as_str());
    let s2 = setup.curl_token(&service, "s2", &form("client-u", &[]));
    assert_oauth_error("not published", &s2, 401, "invalid_client");

    // The client rotates: it publishes s2 in place of s1. The next request with s2
    // after the refetch interval (10 s since the last fetch) fetches the new set.
    *published.lock().unwrap() = pki::x5c_jwks(&[&setup.s2]);
    let interval = Duration::from_millis(10_500);
    std::thread::sleep(interval.saturating_sub(started.elapsed()));
    let s2 = setup.curl_token(&service, "s2", &form("client-u", &[]));
    assert_eq!(s2.status, 200, "{}", s2.body);
    let s1 = setup.curl_token(&service, "s1", &form("client-u", &[]));
    assert_oauth_error("no longer published", &s1, 401, "invalid_client");

    // A jwks_uri that does not answer stops start-up, naming it.
    let dead = write(
        setup.dir.path(),
        "dead.toml",
        "[[client]]\nclient_id = \"client-d\"\nauth = \"self_signed_tls_client_auth\"\n\
         jwks_uri = \"http://127.0.0.1:9/jwks.json\"\n",
    );
    let mut args = setup.base_args();
    args.extend(["--clients", s(&dead), "--allow-http-jwks-uri"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_to_end(binary("token_service"), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("client-d") && stderr.contains("http://127.0.0.1:9/jwks.json"),
        "{stderr}"
    );
}

#[test]
fn configuration_errors_stop_start_up_with_a_message() {
    let setup = Setup::new();
    let p = setup.dir.path();
    let clients = |name: &str, toml: &str| s(&write(p, name, toml)).to_owned();
    write(
        p,
        "no-x5c.jwks.json",
        r#"{"keys": [{"kty": "EC", "crv": "P-256"}]}"#,
    );
    write(p, "not-json.jwks.json", "{ nope");
    let garbage = s(&write(p, "garbage.pem", "not a key")).to_owned();
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p384 = s(&write(p, "p384.pem", &p384.serialize_pem())).to_owned();
    let entry = |id: &str, body: &str| {
        format!("[[client]]\nclient_id = \"{id}\"\nscopes = [\"read\"]\n{body}\n")
    };

    // (client file, extra options, what stderr must name)
    let sec1 = s(&write(
        p,
        "sec1.pem",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
    ))
    .to_owned();
    let cases: Vec<(String, Vec<String>, Vec<&str>)> = vec![
        (
            clients(
                "method.toml",
                &entry("bad-method", "auth = \"client_secret_basic\""),
            ),
            vec![],
            vec![
                "\"bad-method\"",
                "unknown auth method",
                "client_secret_basic",
            ],
        ),
        (
            clients(
                "zero.toml",
                &entry("no-value", "auth = \"tls_client_auth\""),
            ),
            vec![],
            vec!["\"no-value\"", "exactly one", "found 0"],
        ),
        (
            clients(
                "two.toml",
                &entry(
                    "two-values",
                    "auth = \"tls_client_auth\"\nsan_dns = \"a.example\"\nsan_uri = \"urn:a\"",
                ),
            ),
            vec![],
            vec!["\"two-values\"", "exactly one", "found 2"],
        ),
        (
            clients(
                "dn.toml",
                &entry("bad-dn", "auth = \"tls_client_auth\"\nsubject_dn = \"CN\""),
            ),
            vec![],
            vec!["\"bad-dn\"", "subject_dn", "RFC 4514"],
        ),
        (
            clients(
                "ip.toml",
                &entry("bad-ip", "auth = \"tls_client_auth\"\nsan_ip = \"10.1.2\""),
            ),
            vec![],
            vec!["\"bad-ip\"", "san_ip", "10.1.2"],
        ),
        (
            clients(
                "nojwks.toml",
                &entry(
                    "unreadable-jwks",
                    "auth = \"self_signed_tls_client_auth\"\njwks = \"missing.jwks.json\"",
                ),
            ),
            vec![],
            vec![
                "\"unreadable-jwks\"",
                "cannot read jwks",
                "missing.jwks.json",
            ],
        ),
        (
            clients(
                "notjson.toml",
                &entry(
                    "garbled-jwks",
                    "auth = \"self_signed_tls_client_auth\"\njwks = \"not-json.jwks.json\"",
                ),
            ),
            vec![],
            vec!["\"garbled-jwks\"", "not-json.jwks.json", "JSON"],
        ),
        (
            clients(
                "nox5c.toml",
                &entry(
                    "no-x5c",
                    "auth = \"self_signed_tls_client_auth\"\njwks = \"no-x5c.jwks.json\"",
                ),
            ),
            vec![],
            vec!["\"no-x5c\"", "x5c"],
        ),
        (
            clients(
                "twice.toml",
                &format!(
                    "{}{}",
                    entry(
                        "twin",
                        "auth = \"tls_client_auth\"\nsan_dns = \"a.example\""
                    ),
                    entry(
                        "twin",
                        "auth = \"tls_client_auth\"\nsan_dns = \"b.example\""
                    )
                ),
            ),
            vec![],
            vec!["\"twin\"", "twice"],
        ),
        (
            clients(
                "typo.toml",
                &entry(
                    "typo",
                    "auth = \"tls_client_auth\"\nsan_dsn = \"a.example\"",
                ),
            ),
            vec![],
            vec!["san_dsn"],
        ),
        (
            s(&p.join("nonexistent.toml")).to_owned(),
            vec![],
            vec!["cannot read clients file", "nonexistent.toml"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--signing-key".into(), garbage.clone()],
            vec!["--signing-key", "garbage.pem"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--signing-key".into(), p384.clone()],
            vec!["--signing-key", "p384.pem", "P-256"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--signing-key".into(), s(&p.join("absent.pem")).to_owned()],
            vec!["--signing-key", "absent.pem"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--signing-key".into(), sec1.clone()],
            vec!["--signing-key", "sec1.pem", "openssl pkcs8"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--client-ca".into(), garbage.clone()],
            vec!["client CA bundle"],
        ),
        (
            s(&setup.clients).to_owned(),
            vec!["--rate-limit".into(), "0".into()],
            vec!["--rate-limit"],
        ),
    ];
    let binary = binary("token_service");
    std::thread::scope(|scope| {
        for (clients_file, extra, expected) in &cases {
            let mut args = setup.base_args();
            if !extra.iter().any(|a| a == "--client-ca") {
                args.extend(["--client-ca".to_owned(), s(&setup.ca).to_owned()]);
            }
            args.extend(["--clients".to_owned(), clients_file.clone()]);
            args.extend(extra.iter().cloned());
            scope.spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let output = run_to_end(binary, &args);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let case = format!("{clients_file} {extra:?}");
                assert!(!output.status.success(), "{case}: must fail");
                for name in expected {
                    assert!(
                        stderr.contains(name),
                        "{case}: stderr should name {name:?}: {stderr}"
                    );
                }
                assert!(!stderr.contains("panicked"), "{case}: {stderr}");
            });
        }
    });

    // tls_client_auth clients need --client-ca.
    let mut args = setup.base_args();
    args.extend(["--clients".to_owned(), s(&setup.clients).to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_to_end(binary, &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("\"client-a\"") && stderr.contains("CA"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_signing_key_from_a_file_signs_the_tokens() {
    let setup = Setup::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(key.serialize_pem().contains("BEGIN PRIVATE KEY"), "PKCS#8");
    let key_file = write(setup.dir.path(), "signing.pem", &key.serialize_pem());
    let point = key.public_key_raw();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    );
    let (cert, key_pem) = setup.files("a");

    let mut kids = Vec::new();
    for _ in 0..2 {
        let service = setup.start(&["--signing-key", s(&key_file)]);
        let jwks = curl(
            &url(&service, "/jwks"),
            Some(&setup.ca),
            Some((&cert, &key_pem)),
            None,
        )
        .json();
        let jwk = &jwks["keys"][0];
        assert_eq!((&jwk["x"], &jwk["y"]), (&json!(x), &json!(y)), "{jwks}");
        // The kid is the key's RFC 7638 thumbprint.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        assert_eq!(
            jwk["kid"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        kids.push(jwk["kid"].clone());

        let answer = setup.curl_token(&service, "a", &form("client-a", &[]));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let token = answer.json()["access_token"].as_str().unwrap().to_owned();
        let public =
            jsonwebtoken::DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap();
        let claims = verify(&token, &public, AUDIENCE);
        assert_eq!(claims["sub"], "client-a");
    }
    assert_eq!(kids[0], kids[1], "the same key across restarts");
}

#[test]
fn end_to_end_token_service_then_resource_server() {
    let setup = Setup::new();
    let service = setup.start(&[]);
    let api = setup.start_resource_server(&service);
    let (a, b) = (setup.files("a"), setup.files("b"));
    let whoami = format!("https://localhost:{}/whoami", api.addr.port());

    let answer = setup.curl_token(&service, "a", &form("client-a", &[("scope", "read")]));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();

    let answer = curl(&whoami, Some(&setup.ca), Some((&a.0, &a.1)), Some(&token));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["thumbprint"], setup.world.a.thumbprint.as_str());
    assert_eq!(body["client_id"], "client-a");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["bound"], true);

    // The same token, presented with B's certificate.
    let answer = curl(&whoami, Some(&setup.ca), Some((&b.0, &b.1)), Some(&token));
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(
        answer
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\"")),
        "{}",
        answer.headers
    );

    // A token for another audience is no good here.
    let answer = setup.curl_token(
        &service,
        "a",
        &form("client-a", &[("resource", "https://other.test")]),
    );
    let other = answer.json()["access_token"].as_str().unwrap().to_owned();
    let answer = curl(&whoami, Some(&setup.ca), Some((&a.0, &a.1)), Some(&other));
    assert_eq!(answer.status, 401, "{}", answer.body);

    // "admin" at the token service, then at /admin.
    let admin = format!("https://localhost:{}/admin", api.addr.port());
    assert_eq!(
        curl(&admin, Some(&setup.ca), Some((&a.0, &a.1)), Some(&token)).status,
        403
    );
    let answer = setup.curl_token(&service, "a", &form("client-a", &[("scope", "read admin")]));
    let admin_token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let answer = curl(
        &admin,
        Some(&setup.ca),
        Some((&a.0, &a.1)),
        Some(&admin_token),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn the_resource_server_fetches_the_token_services_jwks_over_https() {
    let setup = Setup::new();
    let service = setup.start(&[]);
    let jwks_url = url(&service, "/jwks");
    let api = setup.start_resource_server_with(&["--jwks", &jwks_url, "--as-ca", s(&setup.ca)]);
    let (a, b) = (setup.files("a"), setup.files("b"));
    let whoami = format!("https://localhost:{}/whoami", api.addr.port());

    let answer = setup.curl_token(&service, "a", &form("client-a", &[("scope", "read")]));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    let answer = curl(&whoami, Some(&setup.ca), Some((&a.0, &a.1)), Some(&token));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["client_id"], "client-a");
    let answer = curl(&whoami, Some(&setup.ca), Some((&b.0, &b.1)), Some(&token));
    assert_eq!(answer.status, 401, "{}", answer.body);

    // Without --as-ca the system's roots do not know the test CA: start-up stops and
    // says why.
    let out = run_to_end(
        binary("resource_server"),
        &[
            "--jwks",
            &jwks_url,
            "--issuer",
            ISSUER,
            "--audience",
            AUDIENCE,
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&jwks_url), "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
}

/// Runs examples/python_client.py: its exit code, stdout and stderr.
fn python_client(args: &[String]) -> (Option<i32>, String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python_client.py");
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_python_client_runs_the_whole_flow() {
    let setup = Setup::new();
    let service = setup.start(&[]);
    let api = setup.start_resource_server(&service);
    let (a, b) = (setup.files("a"), setup.files("b"));
    let whoami = format!("https://localhost:{}/whoami", api.addr.port());
    let args = |token_url: &str, (cert, key): &(PathBuf, PathBuf), extra: &[&str]| {
        let mut args = [
            "--token-url",
            token_url,
            "--resource-url",
            &whoami,
            "--cert",
            s(cert),
            "--key",
            s(key),
            "--ca",
            s(&setup.ca),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let token_url = url(&service, "/token");

    let (code, stdout, stderr) = python_client(&args(
        &token_url,
        &a,
        &["--client-id", "client-a", "--scope", "read"],
    ));
    assert_eq!(
        code,
        Some(0),
        "python_client.py failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(&setup.world.a.thumbprint), "{stdout}");
    assert!(
        stdout.contains("the token is bound to this certificate"),
        "{stdout}"
    );
    let json_start = stdout.find("\n{").expect("the final JSON") + 1;
    let body: Value = serde_json::from_str(&stdout[json_start..]).expect("the final JSON");
    assert_eq!(body["thumbprint"], setup.world.a.thumbprint.as_str());
    assert_eq!(body["client_id"], "client-a");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["bound"], true);

    // B's certificate is not client-a's: refused at the token endpoint.
    let (code, stdout, stderr) = python_client(&args(&token_url, &b, &["--client-id", "client-a"]));
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("401"), "{stdout}");
    assert!(stderr.contains("invalid_client"), "{stderr}");

    // A scope client-a may not have.
    let (code, _, stderr) = python_client(&args(
        &token_url,
        &a,
        &["--client-id", "client-a", "--scope", "write"],
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("invalid_scope"), "{stderr}");

    // Nothing listening: a network failure, exit code 2.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!(
        "https://localhost:{}/token",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let (code, _, stderr) = python_client(&args(&nowhere, &a, &["--client-id", "client-a"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("FAILED: token request"), "{stderr}");
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let setup = Setup::new();
    let mut service = setup.start(&[]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(exit) = service.child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit}");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the token service did not stop within 10 s of SIGTERM");
}
