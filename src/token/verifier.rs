//! The extension point of verification: whatever turns a token into verified claims.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;

use super::TokenClaims;
use crate::AuthError;

/// The future a [`TokenVerifier`] returns.
pub type VerifyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<TokenClaims, AuthError>> + Send + 'a>>;

/// Turns an access token into verified claims: signature (or introspection), issuer,
/// audience, lifetime. The layer then checks the binding (`cnf`) against the request's
/// certificate and puts a [`ClientIdentity`](crate::ClientIdentity) into the request;
/// a verifier never decides the binding.
///
/// [`JwtVerifier`](crate::token::JwtVerifier) is the built-in one; set another with
/// [`MtlsBoundTokenLayerBuilder::verifier`](crate::MtlsBoundTokenLayerBuilder::verifier).
/// Refuse with [`AuthError::invalid_token_because`] (401) for a token that is not good,
/// and [`AuthError::unavailable`] (503) when it cannot be told now.
///
/// ```
/// use mtls_bound_token::token::{TokenClaims, TokenVerifier, VerifyFuture};
/// use mtls_bound_token::{AuthError, AuthReason};
///
/// /// Accepts one fixed token (a test double; never do this in production).
/// struct OneToken(TokenClaims);
///
/// impl TokenVerifier for OneToken {
///     fn verify<'a>(&'a self, token: &'a str, _: &'a http::request::Parts) -> VerifyFuture<'a> {
///         Box::pin(async move {
///             if token == "let-me-in" {
///                 Ok(self.0.clone())
///             } else {
///                 Err(AuthError::invalid_token_because(AuthReason::Inactive, "unknown token"))
///             }
///         })
///     }
/// }
///
/// let claims = serde_json::json!({"iss": "https://as.example", "sub": "svc", "exp": 4102444800u64});
/// let verifier = OneToken(TokenClaims::from_json(claims.as_object().unwrap().clone())?);
/// let layer = mtls_bound_token::MtlsBoundTokenLayer::builder()
///     .verifier(verifier)
///     .allow_unbound_tokens()
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verifies `token`, the bearer token of the request whose head is `request`.
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a>;
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Arc<T> {
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a> {
        (**self).verify(token, request)
    }
}

impl<T: TokenVerifier + ?Sized> TokenVerifier for Box<T> {
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a> {
        (**self).verify(token, request)
    }
}
