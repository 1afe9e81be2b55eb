//! The floor: the same mTLS listener and axum router, no authentication at all. Every
//! other server's cost is measured above this one; with a new connection per request it
//! is also the cost of the TLS handshake alone.

use std::process::ExitCode;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use peers_bench::{Args, exit_code, serve};
use serde_json::{Value, json};

async fn whoami() -> Json<Value> {
    Json(json!({"authenticated": false}))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let app = Router::new().route("/whoami", get(whoami));
    exit_code(serve(&args, move |_certificate| app.clone()).await)
}
