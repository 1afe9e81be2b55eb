//! This crate's own serving stack (`TlsListener` and `Server`: handshake and connection
//! caps, header read and idle timeouts) with the handler of `bare`, and with or without
//! `MtlsBoundTokenLayer` (`--with-layer`, verified-token cache on): the pair that
//! measures the layer alone, on the same server.

use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use mtls_bound_token::serve::Server;
use mtls_bound_token::tls::{TlsListener, TlsServerConfig};
use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Command {
    #[command(flatten)]
    args: peers_bench::Args,
    /// Put the layer in front of the handler.
    #[arg(long)]
    with_layer: bool,
}

async fn whoami(identity: Option<ClientIdentity>) -> Json<Value> {
    Json(json!({"authenticated": identity.is_some()}))
}

async fn run(command: Command) -> Result<(), peers_bench::BoxError> {
    let args = &command.args;
    let mut app = Router::new().route("/whoami", get(whoami));
    if command.with_layer {
        let layer = MtlsBoundTokenLayer::builder()
            .issuer(&args.issuer)
            .audience(&args.audience)
            .jwks_file(&args.jwks)
            .build()?;
        app = app.layer(layer);
    }
    let tls = TlsServerConfig::builder()
        .certificate_chain_file(&args.tls_cert)
        .private_key_file(&args.tls_key)
        .client_ca_file(&args.client_ca)
        .build()?;
    let listener = TlsListener::bind(args.listen, tls).await?;
    println!("listening on {}", listener.local_addr());
    Server::default().serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    peers_bench::exit_code(run(Command::parse()).await)
}
