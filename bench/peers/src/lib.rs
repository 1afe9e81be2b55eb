//! What the peer servers share: the command line, the mTLS listener and the serve loop.
//! Each binary only decides how a request is authenticated, so that the figures differ
//! by that alone.
//!
//! The listener is the one the example server of mtls-bound-token has: rustls with the
//! aws-lc-rs provider and its safe default versions (TLS 1.3 is what the load client
//! and the server agree on), a client certificate required and verified against
//! `--client-ca` by `WebPkiClientVerifier`, ALPN `h2` and `http/1.1`, and hyper-util's
//! auto builder with HTTP/1.1 keep-alive.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Errors from start-up; they end the process with their message.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// The command line every peer server takes (the example server's names).
#[derive(Parser, Debug)]
pub struct Args {
    /// Socket address to listen on (port 0: any free port; the line `listening on
    /// ADDR` on stdout says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub tls_key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    #[arg(long)]
    pub client_ca: PathBuf,
    /// JWKS file the access tokens are verified with.
    #[arg(long)]
    pub jwks: PathBuf,
    /// Required `iss`.
    #[arg(long)]
    pub issuer: String,
    /// Required `aud`.
    #[arg(long)]
    pub audience: String,
}

/// The leaf certificate the client presented on the request's connection, as a request
/// extension. Read once per connection; every request of it shares the same bytes.
#[derive(Clone, Debug)]
pub struct ClientCertificate(pub Arc<CertificateDer<'static>>);

/// How long a client may take over its TLS handshake (the example server's default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn read(path: &Path) -> Result<Vec<u8>, BoxError> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The rustls configuration every peer uses.
pub fn tls_config(args: &Args) -> Result<Arc<rustls::ServerConfig>, BoxError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = CertificateDer::pem_slice_iter(&read(&args.tls_cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&read(&args.tls_key)?)
        .map_err(|e| format!("--tls-key: {e}"))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read(&args.client_ca)?) {
        roots
            .add(ca.map_err(|e| format!("--client-ca: {e}"))?)
            .map_err(|e| format!("--client-ca: {e}"))?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|e| format!("--client-ca: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts mTLS connections on `--listen` until the process is stopped, serving each
/// with the service `service_for` makes from that connection's client certificate.
///
/// # Errors
///
/// When the TLS files are unusable or the address cannot be bound.
pub async fn serve<M, S, B>(args: &Args, service_for: M) -> Result<(), BoxError>
where
    M: Fn(ClientCertificate) -> S + Send + Sync + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let acceptor = TlsAcceptor::from(tls_config(args)?);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    announce(&format!("listening on {}", listener.local_addr()?));
    let service_for = Arc::new(service_for);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (acceptor, service_for) = (acceptor.clone(), Arc::clone(&service_for));
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            // The verifier requires a certificate, so a finished handshake has one.
            let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                return;
            };
            let certificate = ClientCertificate(Arc::new(leaf.clone().into_owned()));
            let service = TowerToHyperService::new(service_for(certificate));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).keep_alive(true);
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

/// A server's exit: 0, or its error's message and exit code 2 (the example server's
/// convention).
pub fn exit_code(result: Result<(), BoxError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The line that tells the benchmark script the server is ready, and on which port.
fn announce(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme is case-insensitive).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}
