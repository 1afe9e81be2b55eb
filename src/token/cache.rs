//! The verified-token cache: a service client sends the same token for minutes, so its
//! signature (or introspection) need not be checked on every request.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::request::Parts;
use tokio::time::Instant;

use super::{TokenClaims, TokenVerifier, VerifyFuture};
use crate::ConfigError;

/// Default number of verified tokens kept.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 10_000;
/// Default bound on the bytes the verified-token cache holds.
pub const DEFAULT_TOKEN_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// Default longest time a verification is reused (never past the token's `exp`).
pub const DEFAULT_TOKEN_CACHE_TTL: Duration = Duration::from_secs(300);
/// Longest TTL a cache may be given.
pub const MAX_TOKEN_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// What an entry costs besides its claims.
const ENTRY_OVERHEAD: u64 = 256;

#[derive(Clone)]
struct Entry {
    claims: TokenClaims,
    until: Instant,
    weight: u64,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<[u8; 32], Entry> for Weight {
    fn weight(&self, _key: &[u8; 32], entry: &Entry) -> u64 {
        entry.weight
    }
}

/// Hits and misses of a [`CachingVerifier`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TokenCacheStats {
    /// Requests whose token was found verified.
    pub hits: u64,
    /// Requests whose token was verified by the inner verifier.
    pub misses: u64,
    /// Verified tokens held now.
    pub entries: usize,
}

/// Remembers successful verifications of an inner [`TokenVerifier`], keyed by the
/// SHA-256 of the token (never the token itself).
///
/// - What is cached is the verified claims, not the decision: the layer still checks
///   the binding to *this* request's certificate and the route's scopes on every
///   request, so a cached token presented with another certificate is still 401.
/// - An entry lives no longer than the token's `exp` and the TTL (default 5 minutes),
///   and never longer than the key that verified it stays in its key set: a key that
///   leaves the JWKS of a [`RemoteJwks`](crate::remote::RemoteJwks) evicts what it
///   verified.
/// - Bounded in entries (default 10,000) and in bytes (default 32 MiB); refusals are
///   never cached.
/// - Only claims that a key verified are kept (a [`JwtVerifier`](super::JwtVerifier),
///   directly or inside an [`IssuerRouter`](super::IssuerRouter) or a verifier of
///   yours): introspected tokens follow the
///   [`IntrospectionVerifier`](crate::remote::IntrospectionVerifier)'s own cache,
///   whose TTLs bound how long a revoked token passes.
/// - A hit does not call the inner verifier: a verifier whose decision depends on the
///   request head beyond the token (a header, the path) needs
///   [`without_token_cache`](crate::MtlsBoundTokenLayerBuilder::without_token_cache).
///
/// The layer builder puts one around its verifier unless told
/// [`without_token_cache`](crate::MtlsBoundTokenLayerBuilder::without_token_cache).
pub struct CachingVerifier {
    inner: Arc<dyn TokenVerifier>,
    cache: quick_cache::sync::Cache<[u8; 32], Entry, Weight>,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for CachingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingVerifier")
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CachingVerifier {
    /// A cache with the default bounds around `inner`.
    pub fn new(inner: impl TokenVerifier) -> Self {
        Self::with_bounds(
            inner,
            DEFAULT_TOKEN_CACHE_ENTRIES,
            DEFAULT_TOKEN_CACHE_BYTES,
            DEFAULT_TOKEN_CACHE_TTL,
        )
        .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// A cache of at most `entries` tokens and `bytes` bytes, each kept at most `ttl`.
    ///
    /// # Errors
    /// [`ConfigError::Zero`] for a bound of zero.
    pub fn with_bounds(
        inner: impl TokenVerifier,
        entries: usize,
        bytes: u64,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        Self::around(Arc::new(inner), entries, bytes, ttl)
    }

    pub(crate) fn around(
        inner: Arc<dyn TokenVerifier>,
        entries: usize,
        bytes: u64,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        if entries == 0 {
            return Err(ConfigError::Zero("token cache entries"));
        }
        if bytes == 0 {
            return Err(ConfigError::Zero("token cache bytes"));
        }
        if ttl.is_zero() {
            return Err(ConfigError::Zero("token cache TTL"));
        }
        if ttl > MAX_TOKEN_CACHE_TTL {
            return Err(ConfigError::TokenCacheTtlTooLong(ttl));
        }
        Ok(Self {
            inner,
            cache: quick_cache::sync::Cache::with_weighter(entries, bytes, Weight),
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Hits, misses and entries so far.
    pub fn stats(&self) -> TokenCacheStats {
        TokenCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.len(),
        }
    }

    async fn verify_cached(
        &self,
        token: &str,
        request: &Parts,
    ) -> Result<TokenClaims, crate::AuthError> {
        let key = crate::crypto::sha256(token.as_bytes());
        let now = Instant::now();
        if let Some(entry) = self.cache.get(&key) {
            let key_retired = entry
                .claims
                .key_life
                .as_ref()
                .is_some_and(|l| l.is_retired());
            if entry.until > now && !key_retired {
                self.hits.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::token_cache(true);
                return Ok(entry.claims);
            }
            self.cache.remove(&key);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::token_cache(false);
        let claims = self.inner.verify(token, request).await?;
        // Only what a key verified: claims from introspection (or a verifier of yours
        // that does not verify by key) follow their verifier's own caching, which knows
        // about revocation.
        if claims.key_life.is_none() {
            return Ok(claims);
        }
        // Until exp, when sooner than the TTL; a token without exp gets the TTL, one
        // whose exp cannot be read is not kept.
        let lifetime = match (claims.expires_at(), claims.get("exp")) {
            (Some(exp), _) => exp
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .min(self.ttl),
            (None, None) => self.ttl,
            (None, Some(_)) => Duration::ZERO,
        };
        if !lifetime.is_zero() {
            let weight = ENTRY_OVERHEAD + claims_weight(&claims);
            self.cache.insert(
                key,
                Entry {
                    claims: claims.clone(),
                    until: now + lifetime,
                    weight,
                },
            );
        }
        Ok(claims)
    }
}

/// About the bytes the claims hold.
fn claims_weight(claims: &TokenClaims) -> u64 {
    fn value(v: &serde_json::Value) -> u64 {
        match v {
            serde_json::Value::String(s) => s.len() as u64 + 24,
            serde_json::Value::Array(items) => items.iter().map(value).sum::<u64>() + 24,
            serde_json::Value::Object(map) => {
                map.iter()
                    .map(|(k, v)| k.len() as u64 + 48 + value(v))
                    .sum::<u64>()
                    + 24
            }
            _ => 16,
        }
    }
    // The claims are held twice: parsed fields and the map of all.
    2 * claims
        .all()
        .iter()
        .map(|(k, v)| k.len() as u64 + 48 + value(v))
        .sum::<u64>()
}

impl TokenVerifier for CachingVerifier {
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a> {
        Box::pin(self.verify_cached(token, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> TokenClaims {
        TokenClaims::from_json(value.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn claims_weigh_what_they_hold() {
        // Each member: its name, 48 bytes of map entry, and its value (a string its
        // length and 24, a number 16, an array or object its items and 24); all twice.
        let weigh = |value: serde_json::Value| claims_weight(&claims(value));
        assert_eq!(weigh(json!({"iss": "i"})), 2 * (3 + 48 + 25));
        assert_eq!(weigh(json!({"iss": "i", "n": 5})), 2 * (76 + 1 + 48 + 16));
        assert_eq!(
            weigh(json!({"iss": "i", "a": ["yy"]})),
            2 * (76 + 1 + 48 + 26 + 24)
        );
        assert_eq!(
            weigh(json!({"iss": "i", "o": {"k": "z"}})),
            2 * (76 + 1 + 48 + (1 + 48 + 25) + 24)
        );
        // Held twice (the parsed fields and the map), so at least twice the text.
        for big in [
            json!({"iss": "i", "s": "x".repeat(4000)}),
            json!({"iss": "i", "a": vec!["y".repeat(200); 20]}),
            json!({"iss": "i", "o": {"k": "z".repeat(4000)}}),
        ] {
            let weight = claims_weight(&claims(big.clone()));
            assert!(weight >= 8000, "{weight} for {}", &big.to_string()[..40]);
        }
    }
}
