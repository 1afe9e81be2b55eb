//! The access token: where it is read from, the keys that verify it, and what it claims.

mod bearer;
mod cache;
pub(crate) mod checks;
mod claims;
mod jwt;
mod keys;
mod router;
mod verifier;

pub(crate) use claims::Confirmation;
pub use claims::TokenClaims;
pub use keys::{JwksFile, KeyError, KeySet, KeySetFuture, KeySource, KeySourceError, StaticKeys};

pub(crate) use bearer::bearer_token;
pub use cache::{
    CachingVerifier, DEFAULT_TOKEN_CACHE_BYTES, DEFAULT_TOKEN_CACHE_ENTRIES,
    DEFAULT_TOKEN_CACHE_TTL, MAX_TOKEN_CACHE_TTL, TokenCacheStats,
};
pub use jwt::{JwtVerifier, JwtVerifierBuilder};
pub use router::{IssuerRouter, IssuerRouterBuilder, IssuerVerifier};
pub use verifier::{TokenVerifier, VerifyFuture};
