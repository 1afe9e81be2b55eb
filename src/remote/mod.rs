//! Authorization servers over the network: verification keys from a `jwks_uri`
//! ([`RemoteJwks`]), opaque tokens by introspection ([`IntrospectionVerifier`]), and
//! the server's own metadata ([`discover`]).
//!
//! Everything here goes through one [`AuthServerClient`]: rustls on this build's crypto
//! provider, https only unless plain http is allowed by name, the system's roots or a
//! given CA bundle, an optional client certificate, a timeout and a bound on every
//! answer's size. Nothing a client sends can make the crate fetch more than once per
//! refresh interval.

mod client;
mod discovery;
mod introspection;
mod jwks;

pub use client::{
    AuthServerClient, AuthServerClientBuilder, DEFAULT_MAX_DOCUMENT_LEN, DEFAULT_TIMEOUT,
};
pub use discovery::{AuthServerMetadata, discover};
pub use introspection::{
    DEFAULT_INACTIVE_CACHE_TTL, DEFAULT_INTROSPECTION_CACHE_BYTES, DEFAULT_INTROSPECTION_CACHE_TTL,
    DEFAULT_MAX_CONCURRENT_INTROSPECTIONS, DEFAULT_MAX_INTROSPECTIONS_PER_SECOND,
    IntrospectionVerifier, IntrospectionVerifierBuilder,
};
pub(crate) use jwks::{DEFAULT_MAX_AGE, DEFAULT_MAX_MAX_AGE, DEFAULT_MIN_MAX_AGE, max_age};
pub use jwks::{RemoteJwks, RemoteJwksBuilder, RemoteJwksStats};

/// Why talking to an authorization server failed, or why its configuration cannot be
/// used. The message names the URL or setting.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    message: String,
}

impl RemoteError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    pub(crate) fn fetch(url: &str, problem: impl std::fmt::Display) -> Self {
        Self {
            message: format!("{url}: {problem}"),
        }
    }
}
