//! The `jwt-authorizer` crate (0.15, axum 0.7) with the same JWKS file, issuer and
//! audience. It verifies the signature, `iss`, `aud` and `exp`, and has no notion of a
//! certificate binding: a token bound to another certificate is accepted (the
//! benchmark records that instead of counting it as a failure).

use std::process::ExitCode;

use axum07::routing::get;
use axum07::{Json, Router};
use clap::Parser;
use jwt_authorizer::{Authorizer, IntoLayer, JwtAuthorizer, JwtClaims, Validation};
use peers_bench::{Args, BoxError, exit_code, serve};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Deserialize, Serialize)]
struct Claims {
    sub: String,
    client_id: Option<String>,
    cnf: Option<Value>,
}

async fn whoami(JwtClaims(claims): JwtClaims<Claims>) -> Json<Claims> {
    Json(claims)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let jwks = args.jwks.to_str().ok_or("--jwks: not UTF-8")?;
    let authorizer: Authorizer<Claims> = JwtAuthorizer::from_jwks(jwks)
        .validation(
            Validation::new()
                .iss(&[&args.issuer])
                .aud(&[&args.audience])
                .leeway(30),
        )
        .build()
        .await
        .map_err(|e| format!("jwt-authorizer: {e}"))?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(authorizer.into_layer());
    serve(&args, move |_certificate| app.clone()).await
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code(run(Args::parse()).await)
}
