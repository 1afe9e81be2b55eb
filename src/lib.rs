//! Accept only access tokens bound to the client's TLS certificate (OAuth 2.0 Mutual-TLS,
//! [RFC 8705]) in axum and tower services.
//!
//! A bearer token works for whoever holds it. A certificate-bound token carries
//! `cnf.x5t#S256`, the SHA-256 thumbprint of the certificate it was issued to; this
//! crate's [`MtlsBoundTokenLayer`] lets a request through only when that thumbprint is
//! the certificate the client proved possession of in this TLS connection. A stolen
//! token, replayed from another client, gets 401.
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
//! use mtls_bound_token::serve::Server;
//! use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer, RequireScopeLayer};
//!
//! async fn whoami(identity: ClientIdentity) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({
//!         "thumbprint": identity.thumbprint(),
//!         "subject": identity.subject(),
//!         "scopes": identity.scopes(),
//!     }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = MtlsBoundTokenLayer::builder()
//!     .issuer("https://as.example")
//!     .audience("https://api.example")
//!     .jwks_file("jwks.json")
//!     .build()?; // a wrong configuration stops here, with what to fix
//!
//! let app = Router::new()
//!     .route("/whoami", get(whoami))
//!     .route("/admin", get(whoami).route_layer(RequireScopeLayer::new("admin")))
//!     .route_layer(auth)
//!     .route("/healthz", get(|| async { "ok" }));
//!
//! let tls = TlsServerConfig::builder()
//!     .certificate_chain_file("server.crt")
//!     .private_key_file("server.key")
//!     .client_ca_file("clients-ca.crt")
//!     .build()?;
//! let listener = TlsListener::bind("127.0.0.1:8443", tls).await?;
//! Server::default()
//!     .serve(listener, app)
//!     .with_graceful_shutdown(shutdown_signal())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Per request the layer: takes the client certificate of the connection; reads
//! `Authorization: Bearer`; verifies the JWT (signature with the algorithm its key
//! pins, `typ`, `iss`, `aud`, `exp`, `nbf`); compares `cnf.x5t#S256` with the
//! certificate in constant time; and puts a [`ClientIdentity`] into the request's
//! extensions. Failures answer as RFC 6750 §3 says; nothing reaches the handler.
//!
//! # Crate features
//! - `aws-lc-rs` (default): aws-lc-rs for JWT signatures and TLS.
//! - `rust-crypto`: RustCrypto for JWT signatures; TLS then uses rustls' `ring` provider.
//!
//! One of them must be on; with both, `aws-lc-rs` is used.
//!
//! [RFC 8705]: https://www.rfc-editor.org/rfc/rfc8705

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod address;
mod binding;
pub mod cert;
pub mod client_auth;
mod config;
mod connection;
mod crypto;
mod error;
pub mod expiry;
mod identity;
mod layer;
mod metadata;
pub mod reload;
pub mod remote;
mod scope;
pub mod serve;
pub mod telemetry;
pub mod tls;
pub mod token;
pub mod trust;

pub use address::AddressGroup;
pub use binding::BindingPolicy;
pub use cert::{ClientCertificateSource, PeerCertificate};
pub use config::{
    ConfigError, DEFAULT_LEEWAY, DEFAULT_MAX_AUTHORIZATION_LEN, MAX_LEEWAY,
    MtlsBoundTokenLayerBuilder,
};
pub use connection::ConnectionInfo;
pub use crypto::install_jwt_provider;
pub use error::{AuthError, AuthReason, AuthRejection, ErrorResponder};
pub use identity::ClientIdentity;
pub use layer::{MtlsBoundToken, MtlsBoundTokenLayer, ResponseFuture};
pub use metadata::ProtectedResourceMetadata;
pub use scope::{RequireScope, RequireScopeLayer, RequiredScope, WithScope};

/// The README's code blocks, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
