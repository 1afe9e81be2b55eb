//! RFC 8705 §2: authenticating an OAuth client by its TLS certificate, for token
//! endpoints.
//!
//! A [`ClientRegistration`] says how a client authenticates: `tls_client_auth` with
//! exactly one expected subject DN or SAN ([`ExpectedIdentity`]), or
//! `self_signed_tls_client_auth` with the certificates of its JWKS (`x5c`). A
//! [`ClientAuthenticator`] holds the registrations and the CA bundle that
//! `tls_client_auth` certificates must chain to; handlers take a [`TlsClient`] and call
//! [`TlsClient::authenticate`] with the request's `client_id`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Form, Router, routing::post};
//! use mtls_bound_token::client_auth::{
//!     ClientAuthenticator, ClientRegistration, ExpectedIdentity, TlsClient,
//! };
//!
//! #[derive(serde::Deserialize)]
//! struct TokenRequest { client_id: String }
//!
//! async fn token(client: TlsClient, Form(request): Form<TokenRequest>) -> Result<String, mtls_bound_token::client_auth::ClientAuthError> {
//!     let client = client.authenticate(&request.client_id)?;
//!     Ok(format!("hello {}, {}", client.registration().client_id(), client.certificate().thumbprint()))
//! }
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let authenticator = ClientAuthenticator::builder()
//!     .client_ca_pem(std::fs::read("clients-ca.pem")?)
//!     .register(ClientRegistration::tls_client_auth(
//!         "client-a",
//!         ExpectedIdentity::SanDns("client-a.example.org".into()),
//!     ))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/token", post(token))
//!     .with_state(Arc::new(authenticator));
//! # Ok(()) }
//! ```

mod authenticator;
mod jwks_uri;
mod registration;

pub use authenticator::{
    AuthenticatedClient, ClientAuthConfigError, ClientAuthError, ClientAuthenticator,
    ClientAuthenticatorBuilder, TlsClient,
};
pub use jwks_uri::{ClientJwks, DEFAULT_CLIENT_JWKS_MAX_STALENESS, DEFAULT_CLIENT_JWKS_REFETCH};
pub use registration::{ClientAuthMethod, ClientRegistration, ExpectedIdentity, RegistrationError};

use crate::tls::{TlsConfigError, TlsServerConfig, TlsServerConfigBuilder};

/// The TLS configuration of a token endpoint: the handshake asks for a client
/// certificate and lets through one that chains to `client_ca_pem` or is self-signed
/// (its handshake signature verified either way), or none (for the JWKS and metadata);
/// the endpoint then decides by the client's registration. Only for token endpoints: a resource server never needs it.
///
/// # Errors
/// [`TlsConfigError`] for an unusable server certificate, key or CA bundle.
pub fn token_endpoint_tls(
    server: TlsServerConfigBuilder,
    client_ca_pem: impl Into<Vec<u8>>,
) -> Result<TlsServerConfig, TlsConfigError> {
    server.client_ca_or_self_signed_pem(client_ca_pem).build()
}

/// [`token_endpoint_tls`] with a [`ClientTrust`](crate::trust::ClientTrust) (CAs, CRLs,
/// revocation policy) shared with the endpoint's
/// [`ClientAuthenticatorBuilder::client_trust`]: the handshake and the client
/// authentication then judge a `tls_client_auth` certificate by the same material, and a
/// [`replace_with`](crate::trust::ClientTrust::replace_with) reaches both.
///
/// # Errors
/// [`TlsConfigError`] for an unusable server certificate or key, or a trust without a
/// CA bundle.
pub fn token_endpoint_tls_with_trust(
    server: TlsServerConfigBuilder,
    trust: crate::trust::ClientTrust,
) -> Result<TlsServerConfig, TlsConfigError> {
    server.client_trust_or_self_signed(trust).build()
}
