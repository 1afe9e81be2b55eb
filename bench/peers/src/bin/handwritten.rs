//! What a service writes for itself when it has no library: `Authorization: Bearer`,
//! `jsonwebtoken::decode` with the one ES256 key of the JWKS (`iss`, `aud`, `exp`
//! checked), then the SHA-256 of the connection's client certificate, base64url, against
//! `cnf.x5t#S256` in constant time. No token cache; the thumbprint is hashed on every
//! request. It does not check `typ`, `nbf` or `kid`.

use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use peers_bench::{Args, BoxError, ClientCertificate, bearer_token, exit_code, serve};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::ServiceExt;

#[derive(Deserialize)]
struct Claims {
    sub: String,
    client_id: Option<String>,
    cnf: Option<Confirmation>,
}

#[derive(Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// What the handler learns about the caller.
#[derive(Clone, Serialize)]
struct Caller {
    sub: String,
    client_id: Option<String>,
    #[serde(rename = "x5t#S256")]
    thumbprint: String,
}

struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    fn new(args: &Args) -> Result<Self, BoxError> {
        let text =
            std::fs::read(&args.jwks).map_err(|e| format!("{}: {e}", args.jwks.display()))?;
        let set: JwkSet = serde_json::from_slice(&text).map_err(|e| format!("--jwks: {e}"))?;
        let jwk = set
            .keys
            .iter()
            .find(|k| {
                matches!(&k.algorithm, AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256)
            })
            .ok_or("--jwks: no P-256 key")?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&args.issuer]);
        validation.set_audience(&[&args.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = 30;
        Ok(Self {
            key: DecodingKey::from_jwk(jwk)?,
            validation,
        })
    }

    /// The caller, when the token verifies and is bound to `certificate`.
    fn check(&self, token: &str, certificate: &ClientCertificate) -> Option<Caller> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .ok()?
            .claims;
        let expected = claims.cnf?.x5t_s256?;
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.0.as_ref()));
        if !bool::from(thumbprint.as_bytes().ct_eq(expected.as_bytes())) {
            return None;
        }
        Some(Caller {
            sub: claims.sub,
            client_id: claims.client_id,
            thumbprint,
        })
    }
}

async fn authenticate(
    State(verifier): State<Arc<Verifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match (
        bearer_token(request.headers()),
        request.extensions().get::<ClientCertificate>(),
    ) {
        (Some(token), Some(certificate)) => verifier.check(token, certificate),
        _ => None,
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response(),
    }
}

async fn whoami(Extension(caller): Extension<Caller>) -> Json<Caller> {
    Json(caller)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let verifier = Arc::new(Verifier::new(&args)?);
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route_layer(from_fn_with_state(verifier, authenticate));
    serve(&args, move |certificate| {
        app.clone()
            .map_request(move |mut request: axum::http::Request<_>| {
                request.extensions_mut().insert(certificate.clone());
                request
            })
    })
    .await
}

#[tokio::main]
async fn main() -> ExitCode {
    exit_code(run(Args::parse()).await)
}
