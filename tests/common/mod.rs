//! Shared test harness: a resource server on a real loopback socket behind the layer,
//! and a real rustls client.
#![allow(dead_code)]

pub mod liar;
pub mod pki;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mtls_bound_token::tls::{TlsListener, TlsServerConfig};
use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer, RequireScopeLayer};
use pki::{Ca, Leaf, SigningKey, Subject};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const ISSUER: &str = "https://as.test";
pub const AUDIENCE: &str = "https://api.test";

/// One CA, a server certificate, clients A and B, and an ES256 signing key.
pub struct World {
    pub ca: Ca,
    pub server: Leaf,
    pub a: Leaf,
    pub b: Leaf,
    pub key: SigningKey,
}

impl World {
    pub fn new() -> Self {
        let ca = Ca::root("Test Root CA");
        let server = ca.server();
        let a = ca.client(&pki::a_subject());
        let b = ca.client(&Subject::cn("client-b"));
        Self {
            ca,
            server,
            a,
            b,
            key: SigningKey::es256("k1"),
        }
    }

    /// A token from `key` for client A, bound to A's certificate, with `scope`.
    pub fn token_for_a(&self, scope: &str) -> String {
        self.key.sign(&pki::claims(
            ISSUER,
            AUDIENCE,
            "client-a",
            scope,
            Some(&self.a),
        ))
    }

    pub fn jwks(&self) -> String {
        pki::jwks(&[&self.key])
    }

    /// The strict layer, verifying with this world's key.
    pub fn layer(&self) -> MtlsBoundTokenLayer {
        let keys =
            mtls_bound_token::token::KeySet::from_jwks_json(self.jwks().as_bytes()).expect("jwks");
        MtlsBoundTokenLayer::new(ISSUER, AUDIENCE, keys).expect("layer")
    }

    /// TLS requiring client certificates from this world's CA.
    pub fn tls(&self) -> TlsServerConfig {
        self.tls_builder().build().expect("tls")
    }

    pub fn tls_builder(&self) -> mtls_bound_token::tls::TlsServerConfigBuilder {
        TlsServerConfig::builder()
            .certificate_chain_pem(self.server.chain_pem.clone())
            .private_key_pem(self.server.key_pem.clone())
            .client_ca_pem(self.ca.cert_pem.clone())
    }
}

/// The identity as JSON (the shape the example server answers with).
pub async fn whoami(identity: ClientIdentity) -> Json<ClientIdentity> {
    Json(identity)
}

/// `/whoami`, `/admin` (scope `admin`) behind `layer`, and an open `/healthz`.
pub fn app(layer: MtlsBoundTokenLayer) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(whoami).route_layer(RequireScopeLayer::new("admin")),
        )
        .route_layer(layer)
        .route("/healthz", get(|| async { "ok" }))
}

/// A server on a free loopback port; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn new(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Self {
        Self { addr, task }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve_tls(app: Router, tls: TlsServerConfig) -> TestServer {
    let listener = TlsListener::bind("127.0.0.1:0", tls).await.expect("bind");
    let addr = listener.local_addr();
    let task = tokio::spawn(async move {
        mtls_bound_token::serve::Server::default()
            .serve(listener, app)
            .await
            .expect("serve");
    });
    TestServer { addr, task }
}

/// A rustls client trusting `ca`, presenting `identity` (chain PEM, key PEM) if given.
pub fn client_config(
    ca: &Ca,
    identity: Option<(&str, &str)>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der.clone()))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("chain");
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

pub fn leaf_identity(leaf: &Leaf) -> Option<(&str, &str)> {
    Some((leaf.cert_pem.as_str(), leaf.key_pem.as_str()))
}

/// Opens a TLS connection to the server.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A response as the test sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn challenge(&self) -> &str {
        self.headers
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// An HTTP/1.1 connection over TLS, for several requests.
pub struct Http1 {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Http1 {
    pub async fn open(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Self> {
        let tls = connect(addr, config).await?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    pub async fn send(&mut self, request: Request<Empty<Bytes>>) -> Answer {
        self.sender.ready().await.expect("ready");
        let response = self.sender.send_request(request).await.expect("response");
        collect(response).await
    }
}

pub async fn collect(response: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` with these extra header lines (name, raw bytes).
pub fn get_request(path: &str, headers: &[(&str, &[u8])]) -> Request<Empty<Bytes>> {
    let mut builder = Request::get(path).header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(
            *name,
            http::HeaderValue::from_bytes(value).expect("header value"),
        );
    }
    builder.body(Empty::new()).expect("request")
}

pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

/// One request on a fresh connection presenting `client`'s certificate.
pub async fn call(
    server: &TestServer,
    world: &World,
    client: Option<&Leaf>,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Answer {
    let config = client_config(&world.ca, client.and_then(leaf_identity), &[]);
    let mut connection = Http1::open(server.addr, config).await.expect("connect");
    tokio::time::timeout(
        Duration::from_secs(10),
        connection.send(get_request(path, headers)),
    )
    .await
    .expect("answer in time")
}

/// Like [`call`], but a failed handshake or connection is an `Err`, not a panic.
pub async fn try_call(
    server: &TestServer,
    ca: &Ca,
    identity: Option<(&str, &str)>,
    path: &str,
    token: &str,
) -> Result<Answer, String> {
    let attempt = async {
        let config = client_config(ca, identity, &[]);
        let tls = connect(server.addr, config)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(get_request(path, &[("authorization", &bearer(token))]))
            .await
            .map_err(|e| format!("request: {e}"))?;
        Ok(collect(response).await)
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// A plain-HTTP server, as behind a TLS-terminating proxy.
pub async fn serve_plain(app: Router) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<mtls_bound_token::ConnectionInfo>(),
        )
        .await
        .unwrap();
    });
    TestServer::new(addr, task)
}

/// One request over plain HTTP from `from` (an address on the loopback network).
pub async fn send_from(
    from: &str,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(server).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(get_request(path, headers))
        .await
        .unwrap();
    collect(response).await
}
