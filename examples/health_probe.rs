//! Health probes for a server that wants client certificates.
//!
//! A load balancer or Kubernetes probe rarely has a client certificate. When the TLS
//! handshake requires one, the probe fails before HTTP starts and the server looks
//! dead. The pattern: let clients without a certificate finish the handshake, keep
//! `/healthz` outside the token layer, and put every other route behind it. The layer
//! refuses a bound token from a client without a certificate, so nothing protected
//! opens up; a certificate that is presented is still chain-validated in the handshake.
//! For probes that cannot speak TLS at all, `--probe-listen` adds a plain-HTTP listener
//! that serves `/healthz` and nothing else.
//!
//! ```text
//! cargo run --example health_probe -- \
//!     --jwks jwks.json --issuer https://as.example --audience https://api.example \
//!     --tls-cert server.crt --tls-key server.key --client-ca clients-ca.crt \
//!     --probe-listen 127.0.0.1:8080
//! ```
//!
//! Routes: `GET /healthz` (open, with or without a certificate), `GET /whoami` (the
//! caller's identity as JSON; needs a certificate and a token bound to it).

#[path = "common/cli.rs"]
#[allow(dead_code)] // the proxy options are for the other examples
mod cli;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use cli::{announce, exit_code, init_tracing};
use mtls_bound_token::serve::Server;
use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer};

#[derive(Parser, Debug)]
#[command(about = "Serve /whoami to certificate-bound tokens, and /healthz to probes without one")]
struct Args {
    /// Socket address of the TLS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// JWKS file that access tokens are verified with.
    #[arg(long)]
    jwks: PathBuf,
    /// Required `iss` of access tokens.
    #[arg(long)]
    issuer: String,
    /// Required `aud` of access tokens (a string, or an array containing it).
    #[arg(long)]
    audience: String,
    /// The server's certificate chain (PEM or DER).
    #[arg(long)]
    tls_cert: PathBuf,
    /// The private key of --tls-cert (PEM or DER).
    #[arg(long)]
    tls_key: PathBuf,
    /// A client certificate, when one is presented, must chain to this CA bundle (PEM or DER).
    #[arg(long)]
    client_ca: PathBuf,
    /// Also serve `/healthz`, and only that, over plain HTTP on this address.
    #[arg(long, value_name = "ADDR")]
    probe_listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // One per listener, both before the ready lines: a SIGTERM right after them must
    // stop each listener gracefully, not kill the process.
    let shutdown = shutdown_signal();
    let probe_shutdown = shutdown_signal();

    let auth = MtlsBoundTokenLayer::builder()
        .issuer(args.issuer)
        .audience(args.audience)
        .jwks_file(args.jwks)
        .build()?;

    // `route_layer` protects only the routes added before it, so `/healthz`, added
    // after, answers without a certificate or a token.
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(auth)
        .route("/healthz", get(healthz));
    // The crate's server: header and idle timeouts, connection limits per address.
    let http = Server::default();

    let tls = TlsServerConfig::builder()
        .certificate_chain_file(args.tls_cert)
        .private_key_file(args.tls_key)
        // Not `accept_any_client_certificate()`: a certificate that is presented must
        // still come from this CA, or the handshake fails.
        .client_ca_file(args.client_ca)
        // Lets the probe, which has no certificate, complete the handshake.
        .allow_anonymous_clients()
        .build()?;

    // Bind everything before announcing, so that "listening on" means ready.
    let listener = TlsListener::bind(args.listen, tls)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let probe_listener = match args.probe_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on --probe-listen {addr}: {e}"))?,
        ),
        None => None,
    };

    announce(&format!(
        "listening on {} (https, client certificate verified when presented; /healthz open)",
        listener.local_addr()
    ));
    let server = http.serve(listener, app).with_graceful_shutdown(shutdown);
    let Some(probe_listener) = probe_listener else {
        server.await?;
        return Ok(());
    };
    announce(&format!(
        "probes on {} (http)",
        probe_listener.local_addr()?
    ));
    // A router of its own, so that nothing but `/healthz` is ever reachable without TLS.
    let probes = Router::new().route("/healthz", get(healthz));
    let probe_server = http
        .serve(probe_listener, probes)
        .with_graceful_shutdown(probe_shutdown);
    // If either listener fails, stop: half a server is worse than none.
    tokio::try_join!(server.into_future(), probe_server.into_future())?;
    Ok(())
}

/// Says only that the process serves requests; it reveals nothing about clients.
async fn healthz() -> &'static str {
    "ok"
}

/// The caller's identity; its JSON shape is `ClientIdentity`'s `Serialize`.
async fn whoami(identity: ClientIdentity) -> Json<ClientIdentity> {
    Json(identity)
}
