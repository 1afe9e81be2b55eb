//! What an operator is told when a handshake fails: every refused client certificate is
//! logged at WARN with the peer, the certificate's subject and thumbprint, and the fix;
//! each cause once per interval. And the certificates tutorials make are accepted
//! where they should be: a self-signed CA:TRUE client certificate for binding only and
//! at the token endpoint.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::pki::{self, Ca, Leaf, Subject};
use common::*;
use http::StatusCode;
use mtls_bound_token::tls::TlsServerConfig;
use tracing_subscriber::fmt::MakeWriter;

/// Everything the subscriber writes, for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Installs a WARN-level subscriber for this thread (the tests run on tokio's
    /// current-thread runtime, so the server's tasks log here too).
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        Self::install_at(tracing::Level::WARN)
    }

    fn install_at(level: tracing::Level) -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(level)
            .with_ansi(false)
            .finish();
        (
            captured.clone(),
            tracing::subscriber::set_default(subscriber),
        )
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains("WARN"))
            .map(str::to_owned)
            .collect()
    }
}

fn token_for(world: &World, leaf: &Leaf) -> String {
    world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)))
}

async fn refused(server: &TestServer, world: &World, leaf: Option<&Leaf>) {
    let result = try_call(
        server,
        &world.ca,
        leaf.and_then(leaf_identity),
        "/whoami",
        &world.token_for_a("read"),
    )
    .await;
    assert!(result.is_err(), "the handshake must fail, got {result:?}");
}

/// The one WARN line with `needle`, asserting it carries the peer and the certificate.
fn line_with(captured: &Captured, needle: &str, leaf: Option<&Leaf>) -> String {
    let lines: Vec<String> = captured
        .warnings()
        .into_iter()
        .filter(|line| line.contains(needle))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line with {needle:?} in:\n{}",
        captured.text()
    );
    let line = lines[0].clone();
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    if let Some(leaf) = leaf {
        assert!(
            line.contains(&format!("thumbprint={}", leaf.thumbprint)),
            "{line}"
        );
    }
    line
}

#[tokio::test]
async fn an_unknown_ca_names_the_expected_bundle() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    refused(&server, &world, Some(&stranger)).await;
    let line = line_with(&captured, "cause=\"unknown_ca\"", Some(&stranger));
    assert!(line.contains("subject=CN=stranger"), "{line}");
    assert!(line.contains("issued by CN=Someone Else's CA"), "{line}");
    assert!(line.contains("CN=Test Root CA"), "the bundle's CAs: {line}");
}

#[tokio::test]
async fn an_expired_certificate_says_when_it_expired() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let expired = world.ca.client(&Subject {
        expired: true,
        ..Subject::cn("expired")
    });
    refused(&server, &world, Some(&expired)).await;
    let line = line_with(&captured, "cause=\"expired\"", Some(&expired));
    assert!(
        line.contains("expired at 2021-01-01 00:00:00 UTC"),
        "{line}"
    );
}

#[tokio::test]
async fn a_ca_certificate_as_client_is_explained() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let tutorial = Leaf::self_signed_ca(&Subject::cn("tutorial"));
    refused(&server, &world, Some(&tutorial)).await;
    // Self-signed and CA:TRUE: webpki gives up on it as an unknown issuer.
    let line = line_with(&captured, "TLS handshake refused", Some(&tutorial));
    assert!(
        line.contains("cause=\"self_signed\"") || line.contains("cause=\"ca_as_client\""),
        "{line}"
    );
}

#[tokio::test]
async fn no_certificate_is_explained() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    refused(&server, &world, None).await;
    let line = line_with(&captured, "cause=\"no_certificate\"", None);
    assert!(line.contains("curl --cert"), "{line}");
}

#[tokio::test]
async fn each_cause_is_logged_once_a_minute() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    for _ in 0..3 {
        refused(&server, &world, Some(&stranger)).await;
    }
    refused(&server, &world, None).await;
    let warnings = captured.warnings();
    assert_eq!(
        warnings.iter().filter(|l| l.contains("unknown_ca")).count(),
        1,
        "{warnings:#?}"
    );
    assert_eq!(
        warnings
            .iter()
            .filter(|l| l.contains("no_certificate"))
            .count(),
        1,
        "another cause still gets its line: {warnings:#?}"
    );
    // A good client is unaffected, and nothing is logged for it.
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", &bearer(&world.token_for_a("read")))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(captured.warnings().len(), 2);
}

#[tokio::test]
async fn an_accepted_request_is_logged_with_the_clients_thumbprint_and_subject() {
    let (captured, _guard) = Captured::install_at(tracing::Level::DEBUG);
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = bearer(&world.token_for_a("read"));
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let text = captured.text();
    let line = text
        .lines()
        .find(|line| line.contains("request authorized"))
        .unwrap_or_else(|| panic!("no authorization logged: {text}"));
    assert!(line.contains("outcome=\"accepted\""), "{line}");
    assert!(
        line.contains(&format!("client.thumbprint=\"{}\"", world.a.thumbprint)),
        "{line}"
    );
    assert!(
        line.contains("client.subject=\"O=Example,CN=client-a\""),
        "{line}"
    );
}

#[tokio::test]
async fn a_self_signed_ca_true_certificate_binds_when_any_certificate_is_accepted() {
    let world = World::new();
    let tls = world
        .tls_builder()
        .accept_any_client_certificate()
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    let tutorial = Leaf::self_signed_ca(&Subject::cn("tutorial"));
    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&tutorial),
        "/whoami",
        &token_for(&world, &tutorial),
    )
    .await
    .expect("a CA:TRUE self-signed certificate completes the handshake");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], tutorial.thumbprint);
}

#[tokio::test]
async fn a_self_signed_ca_true_certificate_reaches_the_token_endpoint() {
    let world = World::new();
    let tls = mtls_bound_token::client_auth::token_endpoint_tls(
        world_server_builder(&world),
        world.ca.cert_pem.clone(),
    )
    .unwrap();
    let app = axum::Router::new().route(
        "/whoami",
        axum::routing::get(
            |axum::extract::ConnectInfo(info): axum::extract::ConnectInfo<
                mtls_bound_token::ConnectionInfo,
            >| async move {
                info.client_certificate()
                    .map(|c| c.thumbprint().to_owned())
                    .unwrap_or_default()
            },
        ),
    );
    let server = serve_tls(app, tls).await;
    let tutorial = Leaf::self_signed_ca(&Subject::cn("tutorial"));
    let answer = try_call(&server, &world.ca, leaf_identity(&tutorial), "/whoami", "x")
        .await
        .expect("the token endpoint lets a CA:TRUE self-signed certificate through");
    assert_eq!(answer.body, tutorial.thumbprint);

    // Still not any certificate: one issued by an unknown CA is refused.
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    let result = try_call(&server, &world.ca, leaf_identity(&stranger), "/whoami", "x").await;
    assert!(result.is_err(), "{result:?}");
}

fn world_server_builder(world: &World) -> mtls_bound_token::tls::TlsServerConfigBuilder {
    TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
}

#[test]
fn the_token_endpoint_explains_refused_registrations_to_the_operator() {
    use mtls_bound_token::PeerCertificate;
    use mtls_bound_token::client_auth::{
        ClientAuthenticator, ClientRegistration, ExpectedIdentity,
    };

    let (captured, _guard) = Captured::install();
    let world = World::new();
    let authenticator = ClientAuthenticator::builder()
        .client_ca_pem(world.ca.cert_pem.clone())
        .register(ClientRegistration::tls_client_auth(
            "client-a",
            ExpectedIdentity::SanDns("client-a.example.org".into()),
        ))
        .build()
        .unwrap();
    let peer = |leaf: &Leaf| Some(Arc::new(PeerCertificate::from_der(&leaf.cert_der).unwrap()));

    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    assert!(
        authenticator
            .authenticate("client-a", peer(&stranger))
            .is_err()
    );
    let line = captured
        .warnings()
        .into_iter()
        .find(|l| l.contains("tls_client_auth refused"))
        .unwrap_or_else(|| panic!("no warning in:\n{}", captured.text()));
    assert!(
        line.contains("cause=\"unknown_ca\"") && line.contains("CN=Someone Else's CA"),
        "{line}"
    );
    assert!(line.contains(&stranger.thumbprint), "{line}");

    // B chains, but is not client-a: the operator sees both sides.
    assert!(
        authenticator
            .authenticate("client-a", peer(&world.b))
            .is_err()
    );
    let line = captured
        .warnings()
        .into_iter()
        .find(|l| l.contains("does not carry the identity"))
        .unwrap_or_else(|| panic!("no warning in:\n{}", captured.text()));
    assert!(
        line.contains("tls_client_auth_san_dns client-a.example.org"),
        "{line}"
    );
    assert!(line.contains("CN=client-b"), "{line}");
}

#[test]
fn start_up_warns_of_server_certificates_clients_will_refuse() {
    let (captured, _guard) = Captured::install();
    let key = rcgen::KeyPair::generate().unwrap();
    // `openssl req -x509 -subj /CN=localhost`: no SAN, CA:TRUE.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    TlsServerConfig::builder()
        .certificate_chain_pem(cert.pem())
        .private_key_pem(key.serialize_pem())
        .accept_any_client_certificate()
        .build()
        .expect("warnings, not errors: some clients accept this certificate");
    let warnings = captured.warnings().join("\n");
    assert!(warnings.contains("no subjectAltName"), "{warnings}");
    assert!(warnings.contains("CA:TRUE"), "{warnings}");
    assert!(
        warnings.contains("subjectAltName = DNS:"),
        "the fix: {warnings}"
    );

    // A v1 certificate (`openssl x509 -req` without -extfile), which rustls refuses to
    // serve, is named as such before the error.
    let (captured, _guard) = Captured::install();
    let err = TlsServerConfig::builder()
        .certificate_chain_pem(include_str!("fixtures/v1-client.crt"))
        .private_key_pem(include_str!("fixtures/v1-client.key"))
        .accept_any_client_certificate()
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("UnsupportedCertVersion"), "{err}");
    let warnings = captured.warnings().join("\n");
    assert!(warnings.contains("X.509 v1"), "{warnings}");
    assert!(
        !warnings.contains("certificate has no subjectAltName"),
        "{warnings}"
    );

    // A good certificate: not a word.
    let (captured, _guard) = Captured::install();
    let world = World::new();
    world.tls();
    assert!(captured.warnings().is_empty(), "{}", captured.text());
}

#[tokio::test]
async fn a_v1_certificate_is_explained_even_where_any_certificate_binds() {
    // Made by tutorial commands: `openssl x509 -req ... -CA ...` without -extfile.
    const V1_CERT: &str = include_str!("fixtures/v1-client.crt");
    const V1_KEY: &str = include_str!("fixtures/v1-client.key");
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let tls = world
        .tls_builder()
        .accept_any_client_certificate()
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    // rustls' client refuses to present a v1 certificate; the lying client does not.
    // TLS 1.2, so that the refusal ends the handshake itself.
    let config = common::liar::client(
        &world.ca,
        Some(common::liar::certified_key(V1_CERT, V1_KEY)),
        &rustls::version::TLS12,
    );
    let attempt = async {
        let mut connection = Http1::open(server.addr, config).await.ok()?;
        Some(connection.send(get_request("/healthz", &[])).await)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), attempt)
        .await
        .expect("no hang");
    assert!(
        answer.is_none(),
        "a v1 certificate fails the handshake: {answer:?}"
    );
    let line = line_with(&captured, "cause=\"x509_v1\"", None);
    assert!(line.contains("subject=CN=tutorial-client"), "{line}");
}

/// Waits (at most 2 s) until a line with `needle` was logged.
async fn wait_for(captured: &Captured, needle: &str) {
    for _ in 0..100 {
        if captured.text().contains(needle) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One request over a connection made with `config`; `None` when the handshake (or the
/// exchange) fails. Bounded: 10 s.
async fn attempt(server: &TestServer, config: Arc<rustls::ClientConfig>) -> Option<Answer> {
    let attempt = async {
        let mut connection = Http1::open(server.addr, config).await.ok()?;
        Some(connection.send(get_request("/healthz", &[])).await)
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), attempt)
        .await
        .expect("no hang")
}

#[tokio::test]
async fn a_client_without_its_certificates_key_is_explained() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    // A's certificate, B's key: the handshake signature cannot verify.
    let config = common::liar::client(
        &world.ca,
        Some(common::liar::certified_key(
            &world.a.chain_pem,
            &world.b.key_pem,
        )),
        &rustls::version::TLS12,
    );
    assert!(attempt(&server, config).await.is_none());
    wait_for(&captured, "bad_handshake_signature").await;
    let line = line_with(&captured, "cause=\"bad_handshake_signature\"", None);
    assert!(line.contains(&world.a.thumbprint), "{line}");
    assert!(line.contains("private key"), "{line}");
}

#[tokio::test]
async fn a_client_that_refuses_the_server_certificate_is_explained() {
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    // The client trusts another CA than the one that issued the server's certificate.
    let other = Ca::root("Not The Server's CA");
    let config = common::liar::client(
        &other,
        Some(common::liar::certified_key(
            &world.a.chain_pem,
            &world.a.key_pem,
        )),
        &rustls::version::TLS13,
    );
    assert!(attempt(&server, config).await.is_none());
    // The server reads the client's alert after the client has given up.
    wait_for(&captured, "client_refused_server_certificate").await;
    let line = line_with(
        &captured,
        "cause=\"client_refused_server_certificate\"",
        None,
    );
    assert!(line.contains("--cacert"), "{line}");
}

/// Presents A's key, recording the CA names the server asked for.
#[derive(Debug)]
struct RecordsHints {
    key: Arc<rustls::sign::CertifiedKey>,
    hints: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl rustls::client::ResolvesClientCert for RecordsHints {
    fn resolve(
        &self,
        hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        *self.hints.lock().unwrap() = hints.iter().map(|h| h.to_vec()).collect();
        Some(Arc::clone(&self.key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_server_names_its_client_cas_in_the_handshake() {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let hints = Arc::new(Mutex::new(Vec::new()));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            world.ca.cert_der.clone(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(common::liar::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(RecordsHints {
            key: common::liar::certified_key(&world.a.chain_pem, &world.a.key_pem),
            hints: Arc::clone(&hints),
        }));
    let answer = attempt(&server, Arc::new(config)).await.expect("handshake");
    assert_eq!(answer.status, StatusCode::OK);
    let (_, ca) = X509Certificate::from_der(&world.ca.cert_der).unwrap();
    // rustls gives the names as DER of the Name, without its outer SEQUENCE.
    let name = ca.subject().as_raw();
    let hints = hints.lock().unwrap().clone();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert!(name.ends_with(&hints[0]), "{hints:?}");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_explained() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (captured, _guard) = Captured::install();
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    wait_for(&captured, "not_tls").await;
    let line = line_with(&captured, "cause=\"not_tls\"", None);
    assert!(line.contains("https://"), "{line}");
}
