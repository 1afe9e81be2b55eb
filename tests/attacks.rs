//! Attacks, each aimed at one security check, asserting the specific refusal that check
//! produces. Each test here was seen to fail with its check deleted or inverted in src/:
//! a refusal that is only "some error" or a timeout would pass with the check gone, so
//! every assertion names the alert, status or description that only the check gives.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::pki::{self, Ca, Leaf, Subject};
use common::*;
use http::{Extensions, HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use mtls_bound_token::cert::{
    ClientCertificateSource, ConnectionCertificate, HeaderFormat, ProxyCertificate,
};
use mtls_bound_token::tls::TlsServerConfig;
use mtls_bound_token::token::{KeySetFuture, KeySource, KeySourceError};
use mtls_bound_token::{
    AuthError, ClientIdentity, ConnectionInfo, MtlsBoundTokenLayer, MtlsBoundTokenLayerBuilder,
    PeerCertificate,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, SupportedProtocolVersion};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower::ServiceExt;

// A TLS client that can lie (it presents any chain and signs with any key) is
// common::liar.
use common::liar::{certified_key, client};

fn version_name(version: &SupportedProtocolVersion) -> &'static str {
    if version.version == TLS12.version {
        "TLS 1.2"
    } else {
        "TLS 1.3"
    }
}

/// How one connection attempt ended.
enum Outcome {
    /// The server answered over HTTP.
    Answered { status: StatusCode, body: String },
    /// rustls ended the connection with this error, during the handshake or, in TLS
    /// 1.3 (where the client finishes first and the server judges its certificate
    /// after), on the first read.
    Refused {
        stage: &'static str,
        error: rustls::Error,
    },
    /// Anything else: a reset, an EOF without an answer, a timeout.
    Failed { stage: &'static str, error: String },
}

/// Connects, sends `GET /whoami` with `token`, and reads the answer or the refusal.
async fn attempt(addr: SocketAddr, config: Arc<rustls::ClientConfig>, token: &str) -> Outcome {
    let run = async {
        let tcp = TcpStream::connect(addr).await.expect("TCP connect");
        let mut tls = match TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
        {
            Ok(tls) => tls,
            Err(error) => return classify("handshake", &error),
        };
        let request = format!(
            "GET /whoami HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
             connection: close\r\n\r\n"
        );
        // A write may fail once the server has closed; the alert it sent before
        // closing is still queued for the read below.
        let _ = tls.write_all(request.as_bytes()).await;
        let _ = tls.flush().await;
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(error) if response.is_empty() => return classify("first read", &error),
                // A server that closes without close_notify after answering.
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        let Some(status) = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
        else {
            return Outcome::Failed {
                stage: "answer",
                error: format!("no HTTP answer: {text:?}"),
            };
        };
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned());
        Outcome::Answered { status, body }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap_or(Outcome::Failed {
            stage: "any",
            error: "timed out".into(),
        })
}

impl Outcome {
    /// For failure messages: the one thing a reader needs of each outcome.
    fn describe(&self) -> String {
        match self {
            Self::Answered { status, body } => format!("HTTP {status}: {body}"),
            Self::Refused { stage, error } => format!("rustls error in the {stage}: {error:?}"),
            Self::Failed { stage, error } => format!("failed in the {stage}: {error}"),
        }
    }
}

fn classify(stage: &'static str, error: &std::io::Error) -> Outcome {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls_error) => Outcome::Refused {
            stage,
            error: rustls_error.clone(),
        },
        None => Outcome::Failed {
            stage,
            error: error.to_string(),
        },
    }
}

/// `None` when the server refused with exactly `alert` before any HTTP answer, else
/// what happened instead. In TLS 1.2 the client waits for the server's Finished, so
/// there the refusal must come in the handshake itself.
fn alert_mismatch(
    outcome: &Outcome,
    alert: AlertDescription,
    version: &SupportedProtocolVersion,
    case: &str,
) -> Option<String> {
    let case = format!("{case} ({})", version_name(version));
    match outcome {
        Outcome::Refused {
            stage,
            error: rustls::Error::AlertReceived(got),
        } if *got == alert => (version.version == TLS12.version && *stage != "handshake")
            .then(|| format!("{case}: {alert:?}, but in the {stage}, after the handshake")),
        other => Some(format!(
            "{case}: expected the server's {alert:?} alert, got {}",
            other.describe()
        )),
    }
}

fn assert_alert(
    outcome: &Outcome,
    alert: AlertDescription,
    version: &SupportedProtocolVersion,
    case: &str,
) {
    if let Some(mismatch) = alert_mismatch(outcome, alert, version, case) {
        panic!("{mismatch}");
    }
}

fn assert_answered(outcome: &Outcome, expected: StatusCode, case: &str) {
    match outcome {
        Outcome::Answered { status, .. } if *status == expected => {}
        other => panic!(
            "{case}: expected an HTTP {expected}, got {}",
            other.describe()
        ),
    }
}

fn token_bound_to(world: &World, leaf: &Leaf) -> String {
    world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)))
}

fn any_certificate_tls(world: &World) -> TlsServerConfig {
    TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
        .accept_any_client_certificate()
        .build()
        .expect("binding-only TLS")
}

fn token_endpoint_tls(world: &World) -> TlsServerConfig {
    mtls_bound_token::client_auth::token_endpoint_tls(
        TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone()),
        world.ca.cert_pem.clone(),
    )
    .expect("token endpoint TLS")
}

// ---------------------------------------------------------------------------------
// 1. Proof of possession: the handshake signature must verify with the certificate's
//    key. Without that check a certificate is public data, and so is every token
//    bound to it.
// ---------------------------------------------------------------------------------

/// `x` presented with its own key gets 200 with a token bound to it (so the listener
/// and the token are fine); `x` presented with `thief_key_pem` (same key type, so the
/// signature scheme fits and only the signature itself is wrong) gets `decrypt_error`
/// (RFC 8446 §6.2: "a handshake cryptographic operation failed, including being unable
/// to correctly verify a signature"), in TLS 1.3 and in TLS 1.2.
async fn possession_is_proven(tls: TlsServerConfig, world: &World, x: &Leaf, thief_key_pem: &str) {
    let server = serve_tls(app(world.layer()), tls).await;
    let token = token_bound_to(world, x);
    for version in [&TLS13, &TLS12] {
        let genuine = attempt(
            server.addr,
            client(
                &world.ca,
                Some(certified_key(&x.chain_pem, &x.key_pem)),
                version,
            ),
            &token,
        )
        .await;
        assert_answered(&genuine, StatusCode::OK, "the certificate with its own key");

        let forged = attempt(
            server.addr,
            client(
                &world.ca,
                Some(certified_key(&x.chain_pem, thief_key_pem)),
                version,
            ),
            &token,
        )
        .await;
        assert_alert(
            &forged,
            AlertDescription::DecryptError,
            version,
            "the certificate, signed with another key",
        );
    }
}

#[tokio::test]
async fn binding_only_listener_requires_the_certificates_private_key() {
    let world = World::new();
    let x = Leaf::self_signed(&Subject::cn("workload"));
    let thief = Leaf::self_signed(&Subject::cn("thief"));
    possession_is_proven(any_certificate_tls(&world), &world, &x, &thief.key_pem).await;
}

#[tokio::test]
async fn token_endpoint_listener_requires_the_certificates_private_key() {
    let world = World::new();
    let x = Leaf::self_signed(&Subject::cn("self-signed-client"));
    let thief = Leaf::self_signed(&Subject::cn("thief"));
    possession_is_proven(token_endpoint_tls(&world), &world, &x, &thief.key_pem).await;
}

#[tokio::test]
async fn ca_listener_requires_the_certificates_private_key() {
    // B holds A's certificate (it is public) and its own key, from the same CA.
    let world = World::new();
    possession_is_proven(world.tls(), &world, &world.a, &world.b.key_pem).await;
}

// ---------------------------------------------------------------------------------
// 2. Handshake refusals at a CA listener, each with the alert of its cause.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn ca_listener_refusals_name_their_cause() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    let expired = world.ca.client(&Subject {
        expired: true,
        ..Subject::cn("expired")
    });
    let self_signed = Leaf::self_signed(&Subject::cn("self-signed"));
    let self_signed_ca = Leaf::self_signed_ca(&Subject::cn("openssl-req-x509"));
    let cases: [(&str, Option<&Leaf>, AlertDescription); 5] = [
        ("unknown CA", Some(&stranger), AlertDescription::UnknownCA),
        (
            "expired",
            Some(&expired),
            AlertDescription::CertificateExpired,
        ),
        (
            "self-signed",
            Some(&self_signed),
            AlertDescription::UnknownCA,
        ),
        // webpki refuses a CA:TRUE end entity (CaUsedAsEndEntity) before it looks
        // for an issuer; rustls reports that as CertificateError::Other, which is
        // certificate_unknown on the wire.
        (
            "self-signed CA:TRUE",
            Some(&self_signed_ca),
            AlertDescription::CertificateUnknown,
        ),
        (
            "no certificate",
            None,
            AlertDescription::CertificateRequired,
        ),
    ];
    // Every case is tried before failing, so that a broken check shows all it lets in.
    let mut mismatches = Vec::new();
    for version in [&TLS13, &TLS12] {
        for (case, leaf, alert) in &cases {
            // Each token is bound to the certificate presented: a handshake that
            // wrongly succeeded would answer 200, never a refusal.
            let token =
                leaf.map_or_else(|| world.token_for_a("read"), |l| token_bound_to(&world, l));
            let identity = leaf.map(|l| certified_key(&l.chain_pem, &l.key_pem));
            let outcome = attempt(server.addr, client(&world.ca, identity, version), &token).await;
            mismatches.extend(alert_mismatch(&outcome, *alert, version, case));
        }
        // The server is unharmed: A still gets in.
        let a = attempt(
            server.addr,
            client(
                &world.ca,
                Some(certified_key(&world.a.chain_pem, &world.a.key_pem)),
                version,
            ),
            &world.token_for_a("read"),
        )
        .await;
        assert_answered(&a, StatusCode::OK, "client A");
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

// ---------------------------------------------------------------------------------
// 3, 4. Who may speak for a client in a header.
// ---------------------------------------------------------------------------------

fn layer_with(world: &World, source: ProxyCertificate) -> MtlsBoundTokenLayer {
    builder(world).certificate_source(source).build().unwrap()
}

fn builder(world: &World) -> MtlsBoundTokenLayerBuilder {
    MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
}

/// Caddy's header: the leaf as base64 DER.
fn caddy_value(leaf: &Leaf) -> String {
    STANDARD.encode(&leaf.cert_der)
}

#[tokio::test]
async fn trust_by_subject_is_not_trust_in_every_client_of_the_ca() {
    let world = World::new();
    let proxy = world.ca.client(&Subject::cn("edge-proxy"));
    let source = ProxyCertificate::builder(HeaderFormat::Caddy)
        .trusted_proxy_subject("cn=edge-proxy") // compared as a name, not a string
        .build()
        .unwrap();
    let server = serve_tls(app(layer_with(&world, source)), world.tls()).await;
    let forged_a = caddy_value(&world.a);
    let a_token = world.token_for_a("read");
    let headers: [(&str, &[u8]); 2] = [
        ("x-client-cert", forged_a.as_bytes()),
        ("authorization", &bearer(&a_token)),
    ];

    // The proxy, by its subject, forwards A.
    let answer = call(&server, &world, Some(&proxy), "/whoami", &headers).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);

    // B chains to the same CA but is not the proxy: its header naming A is ignored,
    // so A's stolen token meets B's own certificate.
    let answer = call(&server, &world, Some(&world.b), "/whoami", &headers).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(
        answer.json()["error_description"],
        "the token is bound to a different certificate"
    );
    // ... and B's own token binds to B's handshake certificate, header or not.
    let b_token = token_bound_to(&world, &world.b);
    let answer = call(
        &server,
        &world,
        Some(&world.b),
        "/whoami",
        &[
            ("x-client-cert", forged_a.as_bytes()),
            ("authorization", &bearer(&b_token)),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], world.b.thumbprint);
}

/// A CA-issued client certificate with an empty subject, as SPIFFE X.509-SVIDs and
/// other SAN-only certificates are, and the PEM of the CA that issued it.
fn empty_subject_client() -> (Leaf, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Workload CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut svid = CertificateParams::new(Vec::<String>::new()).unwrap();
    svid.distinguished_name = DistinguishedName::new();
    svid.subject_alt_names = vec![SanType::URI(
        "spiffe://example.org/workload".try_into().unwrap(),
    )];
    svid.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = svid.signed_by(&key, &issuer).unwrap();
    let leaf = Leaf {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        chain_pem: cert.pem(),
        thumbprint: pki::thumbprint(cert.der()),
    };
    (leaf, ca_pem)
}

#[tokio::test]
async fn an_empty_subject_names_no_proxy() {
    // A trusted subject read from an unset setting is "", and so is the subject of
    // every SAN-only client certificate: "" is refused at start-up, and a client
    // without a subject is no proxy.
    let err = ProxyCertificate::builder(HeaderFormat::Caddy)
        .trusted_proxy_subject("")
        .build()
        .expect_err("an empty subject names no proxy")
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let err = ProxyCertificate::builder(HeaderFormat::Caddy)
        .trusted_proxy_subject("/CN=edge-proxy")
        .build()
        .expect_err("not RFC 4514")
        .to_string();
    assert!(err.contains("RFC 4514"), "{err}");
    let world = World::new();
    let (workload, workload_ca) = empty_subject_client();
    let source = ProxyCertificate::builder(HeaderFormat::Caddy)
        .trusted_proxy_subject("CN=edge-proxy")
        .build()
        .unwrap();
    let tls = world
        .tls_builder()
        .client_ca_pem(workload_ca)
        .build()
        .unwrap();
    let server = serve_tls(app(layer_with(&world, source)), tls).await;
    let forged_a = caddy_value(&world.a);

    let answer = call(
        &server,
        &world,
        Some(&workload),
        "/whoami",
        &[
            ("x-client-cert", forged_a.as_bytes()),
            ("authorization", &bearer(&world.token_for_a("read"))),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert_eq!(
        answer.json()["error_description"],
        "the token is bound to a different certificate"
    );
    // The workload itself is served, by its handshake certificate (CA-validated, so
    // the subject check, not the chain check, is what refused it above).
    let answer = call(
        &server,
        &world,
        Some(&workload),
        "/whoami",
        &[
            ("x-client-cert", forged_a.as_bytes()),
            ("authorization", &bearer(&token_bound_to(&world, &workload))),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], workload.thumbprint);
    assert_eq!(
        answer.json()["subject"],
        Value::Null,
        "no subject to speak of"
    );
}

/// A request as a server without `ConnectInfo` hands it to the layer.
fn bare_request(headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut builder = Request::get("/whoami");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(axum::body::Body::empty()).unwrap()
}

fn with_peer(
    mut request: Request<axum::body::Body>,
    peer: &str,
    certificate: Option<&Leaf>,
) -> Request<axum::body::Body> {
    let certificate =
        certificate.map(|l| Arc::new(PeerCertificate::from_der(&l.cert_der).unwrap()));
    request
        .extensions_mut()
        .insert(ConnectInfo(ConnectionInfo::new(
            peer.parse().unwrap(),
            certificate,
        )));
    request
}

/// The layer's answer, as a client would read it.
async fn answer_of(router: &Router, request: Request<axum::body::Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

fn whoami_router(layer: MtlsBoundTokenLayer) -> Router {
    Router::new().route("/whoami", get(whoami)).layer(layer)
}

const PROXY_PEER: &str = "10.0.0.5:4000";

fn trusting_proxy_peer(format: HeaderFormat) -> mtls_bound_token::cert::ProxyCertificateBuilder {
    ProxyCertificate::builder(format).trusted_proxy("10.0.0.5".parse().unwrap())
}

#[tokio::test]
async fn without_connect_info_no_header_is_believed() {
    let world = World::new();
    let router = whoami_router(layer_with(
        &world,
        trusting_proxy_peer(HeaderFormat::Caddy).build().unwrap(),
    ));
    let value = caddy_value(&world.a);
    let auth = format!("Bearer {}", world.token_for_a("read"));
    let headers = [
        ("x-client-cert", value.as_str()),
        ("authorization", auth.as_str()),
    ];

    // From the trusted proxy the very same request binds: the header is readable.
    let (status, body) =
        answer_of(&router, with_peer(bare_request(&headers), PROXY_PEER, None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["thumbprint"], world.a.thumbprint);

    // Without ConnectInfo nobody is known to be the proxy: no certificate at all.
    let (status, body) = answer_of(&router, bare_request(&headers)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["error_description"],
        "tokens must be bound to a certificate, but the request presented none"
    );
}

// ---------------------------------------------------------------------------------
// 5. Token header and key source.
// ---------------------------------------------------------------------------------

/// A JWT with exactly this header JSON, signed by the world's key.
fn signed_with_header(world: &World, header: &Value, claims: &Value) -> String {
    signed_raw(world, &header.to_string(), &claims.to_string())
}

/// A token signed by the world's key over exactly these header and payload texts.
fn signed_raw(world: &World, header: &str, claims: &str) -> String {
    mtls_bound_token::install_jwt_provider();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &world.key.encoding, world.key.alg)
            .expect("sign");
    format!("{input}.{signature}")
}

fn a_request(world: &World, token: &str) -> Request<axum::body::Body> {
    with_peer(
        bare_request(&[("authorization", &format!("Bearer {token}"))]),
        "127.0.0.1:4000",
        Some(&world.a),
    )
}

fn challenge_of(response: &axum::response::Response) -> String {
    response.headers()[http::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn critical_header_parameters_are_refused() {
    let world = World::new();
    let router = whoami_router(world.layer());
    let claims = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});

    // The same hand-made header without crit passes: only crit refuses below.
    let plain = signed_with_header(&world, &header, &claims);
    let (status, body) = answer_of(&router, a_request(&world, &plain)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A header that only mentions "crit" in a value has no crit member.
    let mut mentions = header.clone();
    mentions["x-note"] = json!("not crit at all");
    let token = signed_with_header(&world, &mentions, &claims);
    let (status, body) = answer_of(&router, a_request(&world, &token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // An extension the issuer says must be understood, which this server does not
    // know: RFC 7515 §4.1.11 says the JWS is then invalid.
    let mut critical = header.clone();
    critical["crit"] = json!(["urn:example:must-understand"]);
    critical["urn:example:must-understand"] = json!(true);
    let token = signed_with_header(&world, &critical, &claims);
    let response = router.oneshot(a_request(&world, &token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = challenge_of(&response);
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\"") && challenge.contains("critical"),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_crit_member_of_any_value_is_refused() {
    let world = World::new();
    let router = whoami_router(world.layer());
    let claims = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    for crit in [json!(null), json!([])] {
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1", "crit": crit});
        let token = signed_with_header(&world, &header, &claims);
        let (status, body) = answer_of(&router, a_request(&world, &token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "crit {crit}: {body}");
        assert_eq!(body["error"], "invalid_token", "crit {crit}");
    }
}

/// A key source whose keys cannot be had (a jwks_uri that is down).
struct Unreachable {
    asked: Arc<AtomicUsize>,
}

impl KeySource for Unreachable {
    fn key_set<'a>(&'a self, _kid: Option<&'a str>) -> KeySetFuture<'a> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Err(KeySourceError::new(
            "GET https://as.internal/jwks: connection refused",
        )
        .with_retry_after(Duration::from_secs(7)))))
    }
}

#[tokio::test]
async fn unavailable_keys_refuse_and_say_so() {
    let world = World::new();
    let asked = Arc::new(AtomicUsize::new(0));
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(Unreachable {
            asked: Arc::clone(&asked),
        })
        .build()
        .unwrap();
    let router = whoami_router(layer);
    let (status, body) = answer_of(&router, a_request(&world, &world.token_for_a("read"))).await;
    assert_eq!(asked.load(Ordering::SeqCst), 1, "the source was asked");
    let response = router
        .clone()
        .oneshot(a_request(&world, &world.token_for_a("read")))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["retry-after"],
        "7",
        "the source's retry time"
    );
    assert!(!response.headers().contains_key("www-authenticate"));
    // 503, never 401 invalid_token: the token may be good. The description says that
    // the keys, not the token, are the problem.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(
        body["error_description"],
        "the token cannot be verified now: the verification keys are unavailable"
    );
    assert!(
        !body.to_string().contains("as.internal"),
        "the source's error stays in the log: {body}"
    );
}

// ---------------------------------------------------------------------------------
// 6. Size bounds: refused for their size exactly above the bound, and only then.
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn proxy_header_size_bound_is_exact() {
    let world = World::new();
    let value = caddy_value(&world.a);
    let auth = format!("Bearer {}", world.token_for_a("read"));
    let request = || {
        with_peer(
            bare_request(&[("x-client-cert", &value), ("authorization", &auth)]),
            PROXY_PEER,
            None,
        )
    };
    let bounded = |max: usize| {
        whoami_router(layer_with(
            &world,
            trusting_proxy_peer(HeaderFormat::Caddy)
                .max_header_len(max)
                .build()
                .unwrap(),
        ))
    };

    let (status, body) = answer_of(&bounded(value.len()), request()).await;
    assert_eq!(status, StatusCode::OK, "exactly the bound: {body}");
    let (status, body) = answer_of(&bounded(value.len() - 1), request()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one byte over: {body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the client certificate header is too large"
    );

    // The default bound, 16 KiB: exactly that much is read (and found not to be a
    // certificate), one byte more is refused for its size.
    let default = whoami_router(layer_with(
        &world,
        trusting_proxy_peer(HeaderFormat::Caddy).build().unwrap(),
    ));
    for (len, description) in [
        (16 * 1024, None),
        (
            16 * 1024 + 1,
            Some("the client certificate header is too large"),
        ),
    ] {
        let junk = "A".repeat(len);
        let request = with_peer(
            bare_request(&[("x-client-cert", &junk), ("authorization", &auth)]),
            PROXY_PEER,
            None,
        );
        let (status, body) = answer_of(&default, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{len} bytes: {body}");
        match description {
            Some(description) => assert_eq!(body["error_description"], description, "{len}"),
            None => assert_ne!(
                body["error_description"], "the client certificate header is too large",
                "{len} bytes is within the bound"
            ),
        }
    }
}

#[tokio::test]
async fn authorization_size_bound_is_exact() {
    let world = World::new();
    let token = world.token_for_a("read");
    let value = format!("Bearer {token}");
    let bounded =
        |max: usize| whoami_router(builder(&world).max_authorization_len(max).build().unwrap());

    let (status, body) = answer_of(&bounded(value.len()), a_request(&world, &token)).await;
    assert_eq!(status, StatusCode::OK, "exactly the bound: {body}");
    let (status, body) = answer_of(&bounded(value.len() - 1), a_request(&world, &token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "one byte over: {body}");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(
        body["error_description"],
        "the Authorization header is too large"
    );

    // The default bound, 16 KiB, on a header of exactly that length and one more:
    // the first is read (and is no JWT: 401), the second refused for its size.
    let default = whoami_router(world.layer());
    for (len, status, description) in [
        (
            16 * 1024,
            StatusCode::UNAUTHORIZED,
            "the access token is not a well-formed signed JWT",
        ),
        (
            16 * 1024 + 1,
            StatusCode::BAD_REQUEST,
            "the Authorization header is too large",
        ),
    ] {
        let junk = "a".repeat(len - "Bearer ".len());
        let (got, body) = answer_of(&default, a_request(&world, &junk)).await;
        assert_eq!(got, status, "{len} bytes: {body}");
        assert_eq!(body["error_description"], description, "{len} bytes");
    }
}

// ---------------------------------------------------------------------------------
// 7. Envoy's x-forwarded-client-cert with both Cert and Chain.
// ---------------------------------------------------------------------------------

/// Envoy's percent-encoding of PEM (everything but unreserved characters).
fn envoy_pem(pem: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(pem, UNRESERVED).to_string()
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn xfcc_cert_is_the_leaf_and_chain_only_follows_it() {
    let world = World::new();
    let intermediate = world.ca.intermediate("Issuing CA");
    let c = intermediate.client(&Subject::cn("client-c"));
    let router = Router::new()
        .route(
            "/whoami",
            get(|identity: ClientIdentity| async move {
                let certificate = identity.certificate().expect("a certificate");
                axum::Json(json!({
                    "thumbprint": certificate.thumbprint(),
                    "chain": certificate.chain_der().iter().map(|d| pki::thumbprint(d)).collect::<Vec<_>>(),
                }))
            }),
        )
        .layer(layer_with(
            &world,
            trusting_proxy_peer(HeaderFormat::Xfcc).build().unwrap(),
        ));
    let send = |value: String, token: String| {
        let router = router.clone();
        async move {
            let auth = format!("Bearer {token}");
            let request = with_peer(
                bare_request(&[
                    ("x-forwarded-client-cert", &value),
                    ("authorization", &auth),
                ]),
                PROXY_PEER,
                None,
            );
            answer_of(&router, request).await
        }
    };
    let c_token = token_bound_to(&world, &c);

    // As Envoy writes it with SET_CURRENT_CLIENT_CERT_DETAILS Cert and Chain: Chain
    // repeats the leaf. The leaf binds, and the chain after it holds the leaf once
    // not twice.
    let envoy = format!(
        "By=spiffe://cluster.local/ns/a/sa/api;Hash={};Cert=\"{}\";Chain=\"{}\"",
        sha256_hex(&c.cert_der),
        envoy_pem(&c.cert_pem),
        envoy_pem(&c.chain_pem)
    );
    let (status, body) = send(envoy, c_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["thumbprint"], c.thumbprint);
    assert_eq!(
        body["chain"],
        json!([pki::thumbprint(&intermediate.cert_der)]),
        "the chain after the leaf is the intermediate alone"
    );

    // Cert says C, Chain starts with A: Chain never chooses the certificate that
    // binds, so A's token does not pass as C's request.
    let mixed = format!(
        "Cert=\"{}\";Chain=\"{}\"",
        envoy_pem(&c.cert_pem),
        envoy_pem(&world.a.chain_pem)
    );
    let (status, body) = send(mixed.clone(), world.token_for_a("read")).await;
    assert_ne!(status, StatusCode::OK, "{body}");
    assert!(status.is_client_error(), "{status}: {body}");

    // Hash must agree with Cert even when Chain is there too.
    let wrong_hash = format!(
        "Hash={};Cert=\"{}\";Chain=\"{}\"",
        sha256_hex(&world.a.cert_der),
        envoy_pem(&c.cert_pem),
        envoy_pem(&c.chain_pem)
    );
    let (status, body) = send(wrong_hash, world.token_for_a("read")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error_description"],
        "the x-forwarded-client-cert Hash and Cert disagree"
    );
}

// ---------------------------------------------------------------------------------
// 8. An identity planted in the extensions before the layer runs.
// ---------------------------------------------------------------------------------

/// The handshake certificate, noting whether an identity was already in the request
/// when the layer asked: what a source that consults other extensions would see.
struct Observing {
    saw_identity: Arc<AtomicBool>,
}

impl ClientCertificateSource for Observing {
    fn client_certificate(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<Arc<PeerCertificate>>, AuthError> {
        if extensions.get::<ClientIdentity>().is_some() {
            self.saw_identity.store(true, Ordering::SeqCst);
        }
        ConnectionCertificate.client_certificate(headers, extensions)
    }
}

/// A genuine identity (the layer made it) for A with scope admin, to plant.
async fn admin_identity_of_a(world: &World) -> ClientIdentity {
    let captured = Arc::new(std::sync::Mutex::new(None));
    let sink = Arc::clone(&captured);
    let router = Router::new()
        .route(
            "/whoami",
            get(move |identity: ClientIdentity| {
                let sink = Arc::clone(&sink);
                async move {
                    *sink.lock().unwrap() = Some(identity);
                }
            }),
        )
        .layer(world.layer());
    let response = router
        .oneshot(a_request(world, &world.token_for_a("admin")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    captured.lock().unwrap().take().expect("captured")
}

#[tokio::test]
async fn a_planted_identity_is_gone_before_authorization_starts() {
    let world = World::new();
    let planted = admin_identity_of_a(&world).await;
    assert!(planted.has_scope("admin"));
    let saw_identity = Arc::new(AtomicBool::new(false));
    let layer = builder(&world)
        .certificate_source(Observing {
            saw_identity: Arc::clone(&saw_identity),
        })
        .build()
        .unwrap();
    let router = Router::new()
        .route(
            "/whoami",
            get(|identity: ClientIdentity| async move { identity.scopes().join(" ") }),
        )
        .layer(layer);

    let mut request = a_request(&world, &world.token_for_a("read"));
    request.extensions_mut().insert(planted);
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let scopes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &scopes[..],
        b"read",
        "the handler sees the layer's identity"
    );
    assert!(
        !saw_identity.load(Ordering::SeqCst),
        "the certificate source saw an identity the layer did not make"
    );
}

#[tokio::test]
async fn a_binding_only_listener_requires_a_certificate_unless_told_otherwise() {
    // accept_any_client_certificate() drops chain validation, not the certificate: a
    // client without one fails the handshake; only allow_anonymous_clients() lets it in
    // (and then its bound token still gets 401).
    let world = World::new();
    let required = serve_tls(app(world.layer()), any_certificate_tls(&world)).await;
    let anonymous = serve_tls(
        app(world.layer()),
        TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone())
            .accept_any_client_certificate()
            .allow_anonymous_clients()
            .build()
            .unwrap(),
    )
    .await;
    for version in [&TLS13, &TLS12] {
        let outcome = attempt(
            required.addr,
            client(&world.ca, None, version),
            &world.token_for_a("read"),
        )
        .await;
        assert_alert(
            &outcome,
            AlertDescription::CertificateRequired,
            version,
            "binding only, no certificate",
        );
        let outcome = attempt(
            anonymous.addr,
            client(&world.ca, None, version),
            &world.token_for_a("read"),
        )
        .await;
        assert_answered(
            &outcome,
            StatusCode::UNAUTHORIZED,
            "binding only with anonymous clients, no certificate",
        );
    }
}

#[tokio::test]
async fn a_member_named_twice_is_refused_wherever_it_is() {
    // Two readers of the same signed text must not see two tokens: the issuer may have
    // meant the first cnf, or checked the first typ. Refused in the header and in the
    // payload, at the top level and inside cnf.
    let world = World::new();
    let router = whoami_router(world.layer());
    let good_header = r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#;
    let good = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    let good_text = good.to_string();
    let (status, _) = answer_of(
        &router,
        a_request(&world, &signed_raw(&world, good_header, &good_text)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the raw signing itself works");

    let thumbprint = good["cnf"]["x5t#S256"].as_str().unwrap().to_owned();
    let other = "A".repeat(43);
    let body = good_text.trim_end_matches('}');
    let cases = [
        (
            "cnf named twice, ours last",
            good_header.to_owned(),
            format!(r#"{body},"cnf":{{"x5t#S256":"{thumbprint}"}}}}"#),
            "the token's payload is not a JSON object",
        ),
        (
            "x5t#S256 named twice inside cnf",
            good_header.to_owned(),
            good_text.replace(
                &format!(r#""x5t#S256":"{thumbprint}""#),
                &format!(r#""x5t#S256":"{other}","x5t#S256":"{thumbprint}""#),
            ),
            "the token's payload is not a JSON object",
        ),
        (
            "typ named twice in the header",
            r#"{"alg":"ES256","typ":"JWT","kid":"k1","typ":"at+jwt"}"#.to_owned(),
            good_text.clone(),
            "the access token is not a well-formed signed JWT",
        ),
    ];
    for (case, header, claims, description) in cases {
        assert!(
            (header.as_str(), claims.as_str()) != (good_header, good_text.as_str()),
            "{case}: the case changes the payload or the header"
        );
        let token = signed_raw(&world, &header, &claims);
        let (status, body) = answer_of(&router, a_request(&world, &token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error_description"], description, "{case}");
    }
}

#[tokio::test]
async fn each_claim_refusal_says_which_claim() {
    // The status is 401 for all of these; what tells a client (and an operator reading
    // its report) which rule it broke is the description, so each is pinned.
    let world = World::new();
    let router = whoami_router(world.layer());
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let good = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    let now = pki::now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        edit(&mut claims);
        claims
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now - 3600)),
            "the token has expired",
        ),
        (
            "nbf in the future",
            with(&|c| c["nbf"] = json!(now + 3600)),
            "the token is not valid yet (nbf)",
        ),
        (
            "another issuer",
            with(&|c| c["iss"] = json!("https://other.test")),
            "the token's issuer is not the expected one",
        ),
        (
            "another audience",
            with(&|c| c["aud"] = json!("https://other.test")),
            "the token is not for this audience",
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "the token has no exp claim",
        ),
        (
            "no iss",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            "the token has no iss claim",
        ),
        (
            "no aud",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            "the token has no aud claim",
        ),
        (
            "exp of the wrong type",
            with(&|c| c["exp"] = json!("tomorrow")),
            "the token's exp is not a number",
        ),
        (
            "nbf of the wrong type",
            with(&|c| c["nbf"] = json!("tomorrow")),
            "the token's nbf is not a number",
        ),
        (
            "a payload that is not an object",
            json!(["claims"]),
            "the token's payload is not a JSON object",
        ),
    ];
    for (case, claims, description) in cases {
        let token = signed_with_header(&world, &header, &claims);
        let (status, body) = answer_of(&router, a_request(&world, &token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error_description"], description, "{case}");
    }

    // A signature by another key of the same kind, under our kid.
    let other = pki::SigningKey::es256("k1");
    let forged = other.sign(&good);
    let (status, body) = answer_of(&router, a_request(&world, &forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["error_description"],
        "the token's signature does not verify"
    );

    // Segments that do not make a JWS: a signature that is not base64url, and four or
    // five segments (a JWE) instead of three.
    let token = world.token_for_a("read");
    let (input, _) = token.rsplit_once('.').unwrap();
    let (header_segment, _) = token.split_once('.').unwrap();
    for (case, bad, description) in [
        (
            "signature not base64url",
            format!("{input}.A"),
            "the token's signature is not base64url",
        ),
        (
            "four segments",
            format!("{token}.x"),
            "the access token is not a well-formed signed JWT",
        ),
        (
            "the payload's dot",
            format!("{header_segment}.a.b.c.d"),
            "the access token is not a well-formed signed JWT",
        ),
    ] {
        let (status, body) = answer_of(&router, a_request(&world, &bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(body["error_description"], description, "{case}");
    }
}
