//! `huskarl-axum` 0.1 over `huskarl-resource-server` 0.11: its RFC 9068 validator (`typ`
//! `at+jwt`, `iss`, `aud`, `exp`, `iat`, `sub`, `client_id`) with `require_mtls`, so
//! that a token must carry `cnf.x5t#S256` and it must be the SHA-256 of the client
//! certificate. The keys are the JWKS file's, in a `MultiKeyVerifier` (no refresh).
//!
//! huskarl-axum reads the certificate from the request extension `ClientCertDer(Vec<u8>)`
//! that the TLS acceptor is expected to insert; it owns its bytes, so every request gets
//! a copy of the connection's certificate.

use std::process::ExitCode;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use huskarl_axum::extensions::ClientCertDer;
use huskarl_axum::extractors::ValidatedToken;
use huskarl_axum::layers::ValidatorLayer;
use huskarl_resource_server::core::crypto::verifier::{
    JwsVerifier, JwsVerifierFactory, JwsVerifierPlatform, MultiKeyVerifier,
};
use huskarl_resource_server::core::jwk::{Jwks, PublicJwks};
use huskarl_resource_server::core::platform::MaybeSendBoxFuture;
use huskarl_resource_server::core::{EndpointUrl, Error};
use huskarl_resource_server::validator::rfc9068::{Rfc9068AccessTokenClaims, Rfc9068Validator};
use peers_bench::{Args, BoxError, exit_code, serve};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The keys of a JWKS file, fixed for the life of the process.
struct StaticJwks(PublicJwks);

impl JwsVerifierFactory for StaticJwks {
    fn build(
        &self,
        _jwks_uri: Option<&EndpointUrl>,
        platform: Arc<dyn JwsVerifierPlatform>,
    ) -> MaybeSendBoxFuture<'static, Result<Arc<dyn JwsVerifier>, Error>> {
        let keys = self.0.clone();
        Box::pin(async move {
            let verifier = MultiKeyVerifier::from_jwks(&keys, platform.as_ref()).await?;
            Ok(Arc::new(verifier) as Arc<dyn JwsVerifier>)
        })
    }
}

async fn whoami(token: ValidatedToken<Rfc9068AccessTokenClaims>) -> Json<Value> {
    Json(json!({
        "sub": token.sub,
        "client_id": token.claims.client_id,
        "cnf": token.cnf.as_ref().and_then(|c| c.x5t_s256.clone()),
    }))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let text = std::fs::read(&args.jwks).map_err(|e| format!("{}: {e}", args.jwks.display()))?;
    let jwks: Jwks = serde_json::from_slice(&text).map_err(|e| format!("--jwks: {e}"))?;
    let validator = Rfc9068Validator::builder()
        .issuer(args.issuer.clone())
        .audience(args.audience.clone())
        .allowed_signing_algorithms(vec!["ES256".to_owned()])
        .clock_leeway(std::time::Duration::from_secs(30))
        .require_mtls(true)
        .jws_verifier_factory(StaticJwks(jwks.into()))
        .build()
        .await
        .map_err(|e| format!("huskarl validator: {e}"))?;
    let auth = ValidatorLayer::builder().validator(validator).build();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(auth.authenticated());
    serve(&args, move |certificate| {
        let der = ClientCertDer(certificate.0.to_vec());
        app.clone()
            .map_request(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(der.clone());
                request
            })
    })
    .await
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code(run(Args::parse()).await)
}
