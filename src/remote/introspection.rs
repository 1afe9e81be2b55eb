//! Opaque access tokens, verified by asking the authorization server (RFC 7662).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{AuthServerClient, RemoteError};
use crate::config::{DEFAULT_LEEWAY, MAX_LEEWAY};
use crate::token::checks::{ClaimChecks, object_without_duplicates};
use crate::token::{TokenClaims, TokenVerifier, VerifyFuture};
use crate::{AuthError, AuthReason};

/// Default time an introspection answer for an active token is reused.
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default time an answer saying "inactive" is reused: junk tokens sent again cost the
/// server nothing for this long.
pub const DEFAULT_INACTIVE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default bound on the bytes the answer cache holds.
pub const DEFAULT_INTROSPECTION_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Default number of introspection requests in flight at once.
pub const DEFAULT_MAX_CONCURRENT_INTROSPECTIONS: usize = 32;
/// Default number of introspection requests per second: tokens not in the cache (junk,
/// say) cannot make this server ask the authorization server more often.
pub const DEFAULT_MAX_INTROSPECTIONS_PER_SECOND: u32 = 200;
/// How long clients are told to wait when the server cannot be asked.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How the resource server authenticates to the introspection endpoint.
#[derive(Clone)]
enum ClientAuth {
    /// RFC 6749 §2.3.1 HTTP Basic.
    SecretBasic { id: String, secret: String },
    /// RFC 6749 §2.3.1 in the form body.
    SecretPost { id: String, secret: String },
    /// RFC 8705 §2: the client certificate of the [`AuthServerClient`], and the id.
    Tls { id: String },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        match self {
            Self::SecretBasic { id, .. } => write!(f, "client_secret_basic({id})"),
            Self::SecretPost { id, .. } => write!(f, "client_secret_post({id})"),
            Self::Tls { id } => write!(f, "tls_client_auth({id})"),
        }
    }
}

/// Builds an [`IntrospectionVerifier`].
#[derive(Debug, Clone)]
pub struct IntrospectionVerifierBuilder {
    endpoint: String,
    client: Option<AuthServerClient>,
    auth: Option<ClientAuth>,
    issuer: Option<String>,
    audience: Option<String>,
    allow_missing_audience: bool,
    leeway: Duration,
    cache_ttl: Duration,
    inactive_ttl: Duration,
    cache_bytes: u64,
    max_concurrent: usize,
    per_second: u32,
}

impl IntrospectionVerifierBuilder {
    /// The client to ask with (CA bundle, client certificate, timeouts); default: an
    /// [`AuthServerClient`] with the system's roots, https only.
    pub fn client(mut self, client: AuthServerClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Authenticates with HTTP Basic (`client_secret_basic`).
    pub fn client_secret_basic(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::SecretBasic {
            id: id.into(),
            secret: secret.into(),
        });
        self
    }

    /// Authenticates with the credentials in the form body (`client_secret_post`).
    pub fn client_secret_post(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::SecretPost {
            id: id.into(),
            secret: secret.into(),
        });
        self
    }

    /// Authenticates with the client certificate of the [`client`](Self::client)
    /// (`tls_client_auth` or `self_signed_tls_client_auth`), sending `id` as
    /// `client_id`.
    pub fn tls_client_auth(mut self, id: impl Into<String>) -> Self {
        self.auth = Some(ClientAuth::Tls { id: id.into() });
        self
    }

    /// The issuer whose tokens these are. An answer naming another `iss` is refused; an
    /// answer without `iss` is taken as this issuer's. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// This resource server's identifier: the answer's `aud` must be it or contain it.
    /// Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// **Weakens**: accepts answers without `aud` (RFC 7662 makes it optional). Then
    /// any active token of the issuer is accepted, whichever resource it was for.
    pub fn allow_missing_audience(mut self) -> Self {
        self.allow_missing_audience = true;
        self
    }

    /// Clock-skew leeway for `exp` and `nbf`; default 30 s, at most 5 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long an answer for an active token is reused (never past the token's
    /// `exp`), and one for an inactive token; defaults 60 s and 10 s. Zero turns that
    /// caching off: a revoked token is then refused at once.
    pub fn cache_ttl(mut self, active: Duration, inactive: Duration) -> Self {
        self.cache_ttl = active;
        self.inactive_ttl = inactive;
        self
    }

    /// Bound on the bytes the answer cache holds; default 16 MiB.
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Introspection requests in flight at once; default 32. Requests beyond wait (for
    /// at most the client's timeout), then get 503.
    pub fn max_concurrent(mut self, requests: usize) -> Self {
        self.max_concurrent = requests;
        self
    }

    /// Introspection requests per second at most (default 200); tokens beyond it that
    /// are not in the cache get 503 with `Retry-After: 1`.
    pub fn max_per_second(mut self, requests: u32) -> Self {
        self.per_second = requests;
        self
    }

    /// Checks the configuration and builds the verifier.
    ///
    /// # Errors
    /// [`RemoteError`] naming the missing or wrong setting.
    pub fn build(self) -> Result<IntrospectionVerifier, RemoteError> {
        let client = match self.client {
            Some(client) => client,
            None => AuthServerClient::builder().build()?,
        };
        client.check_url(&self.endpoint)?;
        let issuer = self
            .issuer
            .filter(|i| !i.is_empty())
            .ok_or_else(|| RemoteError::config("introspection needs the issuer of its tokens"))?;
        let audience = self
            .audience
            .filter(|a| !a.is_empty())
            .ok_or_else(|| RemoteError::config("introspection needs this server's audience"))?;
        let auth = self.auth.ok_or_else(|| {
            RemoteError::config(
                "introspection needs client credentials: client_secret_basic, \
                 client_secret_post or tls_client_auth",
            )
        })?;
        if self.leeway > MAX_LEEWAY {
            return Err(RemoteError::config("the leeway must be at most 5 minutes"));
        }
        if self.max_concurrent == 0 {
            return Err(RemoteError::config("max_concurrent must be at least 1"));
        }
        if self.cache_ttl > Duration::from_secs(24 * 3600)
            || self.inactive_ttl > Duration::from_secs(24 * 3600)
        {
            return Err(RemoteError::config(
                "introspection cache TTLs must be at most a day",
            ));
        }
        if self.per_second == 0 {
            return Err(RemoteError::config("max_per_second must be at least 1"));
        }
        let cache = (self.cache_bytes > 0
            && !(self.cache_ttl.is_zero() && self.inactive_ttl.is_zero()))
        .then(|| {
            // Entries weigh at least ENTRY_OVERHEAD bytes.
            let items = usize::try_from(self.cache_bytes / ENTRY_OVERHEAD)
                .unwrap_or(usize::MAX)
                .max(1);
            AnswerCache::with_weighter(items, self.cache_bytes, AnswerWeight)
        });
        Ok(IntrospectionVerifier {
            inner: Arc::new(Inner {
                endpoint: self.endpoint,
                client,
                auth,
                checks: ClaimChecks {
                    issuer,
                    audience,
                    leeway: self.leeway,
                    require_exp: false,
                    require_aud: !self.allow_missing_audience,
                },
                cache_ttl: self.cache_ttl,
                inactive_ttl: self.inactive_ttl,
                cache,
                permits: Semaphore::new(self.max_concurrent),
                per_second: self.per_second,
                window: std::sync::Mutex::new((Instant::now(), 0)),
            }),
        })
    }
}

/// A cached answer: the verified claims, or the refusal, and until when it holds.
#[derive(Clone)]
struct Entry {
    answer: Result<TokenClaims, AuthError>,
    until: Instant,
    weight: u64,
}

/// What an entry costs besides the answer's own bytes.
const ENTRY_OVERHEAD: u64 = 256;

type AnswerCache = quick_cache::sync::Cache<[u8; 32], Entry, AnswerWeight>;

#[derive(Clone)]
struct AnswerWeight;

impl quick_cache::Weighter<[u8; 32], Entry> for AnswerWeight {
    fn weight(&self, _key: &[u8; 32], entry: &Entry) -> u64 {
        entry.weight
    }
}

/// Verifies opaque access tokens at the authorization server's introspection endpoint
/// (RFC 7662): `token_type_hint=access_token`, client authentication, then `active`,
/// `iss`, `aud`, `exp` and `nbf` checked here and `scope`, `client_id`, `sub` and
/// `cnf` (RFC 8705 §3.2) handed to the layer, which checks the binding and scopes as
/// for a JWT.
///
/// Answers are cached by the SHA-256 of the token (never the token), no longer than
/// the token's `exp` and the configured TTL, bounded in bytes. An unreachable server,
/// or one that refuses our credentials, is a 503 with `Retry-After`, never a 401.
///
/// ```no_run
/// use mtls_bound_token::remote::IntrospectionVerifier;
///
/// let verifier = IntrospectionVerifier::builder("https://as.example/introspect")
///     .client_secret_basic("resource-server", "s3cret")
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .build()?;
/// let layer = mtls_bound_token::MtlsBoundTokenLayer::builder()
///     .verifier(verifier)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IntrospectionVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    client: AuthServerClient,
    auth: ClientAuth,
    /// `iss`, `aud`, `exp` and `nbf`, as for a JWT, but `exp` may be left out.
    checks: ClaimChecks,
    cache_ttl: Duration,
    inactive_ttl: Duration,
    cache: Option<AnswerCache>,
    permits: Semaphore,
    per_second: u32,
    /// The current one-second window and the introspections started in it.
    window: std::sync::Mutex<(Instant, u32)>,
}

impl fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("IntrospectionVerifier")
            .field("endpoint", &inner.endpoint)
            .field("auth", &inner.auth)
            .field("issuer", &inner.checks.issuer)
            .field("audience", &inner.checks.audience)
            .field("cached", &inner.cache.as_ref().map_or(0, AnswerCache::len))
            .finish_non_exhaustive()
    }
}

impl IntrospectionVerifier {
    /// Starts a configuration for the introspection endpoint at `endpoint`.
    pub fn builder(endpoint: impl Into<String>) -> IntrospectionVerifierBuilder {
        IntrospectionVerifierBuilder {
            endpoint: endpoint.into(),
            client: None,
            auth: None,
            issuer: None,
            audience: None,
            allow_missing_audience: false,
            leeway: DEFAULT_LEEWAY,
            cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
            inactive_ttl: DEFAULT_INACTIVE_CACHE_TTL,
            cache_bytes: DEFAULT_INTROSPECTION_CACHE_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT_INTROSPECTIONS,
            per_second: DEFAULT_MAX_INTROSPECTIONS_PER_SECOND,
        }
    }

    /// The issuer whose tokens this verifier introspects.
    pub fn issuer(&self) -> &str {
        &self.inner.checks.issuer
    }

    /// Answers held in the cache.
    pub fn cached_answers(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, AnswerCache::len)
    }

    /// Verifies `token` by introspection; see the type's documentation.
    ///
    /// # Errors
    /// 401 `invalid_token` with its [`AuthReason`] (`Inactive` for a token the server
    /// does not know as active); 503 when the server cannot be asked.
    pub async fn verify_token(&self, token: &str) -> Result<TokenClaims, AuthError> {
        let inner = &*self.inner;
        let key = crate::crypto::sha256(token.as_bytes());
        let now = Instant::now();
        if let Some(entry) = inner.cache.as_ref().and_then(|c| c.get(&key))
            && entry.until > now
        {
            return entry.answer;
        }
        if !inner.admit(now) {
            return Err(AuthError::unavailable(
                "the token cannot be verified now: too many introspections this second",
                Duration::from_secs(1),
            ));
        }
        let permit = tokio::time::timeout(inner.client.timeout(), inner.permits.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                AuthError::unavailable(
                    "the token cannot be verified now: too many introspections in flight",
                    RETRY_AFTER,
                )
            })?;
        let fetched = inner.ask(token).await;
        drop(permit);
        let fetched = fetched.map_err(|e| {
            tracing::warn!(endpoint = %inner.endpoint, error = %e, "introspection failed");
            AuthError::unavailable(
                "the token cannot be verified now: the introspection endpoint is unavailable",
                RETRY_AFTER,
            )
        })?;
        let answer = object_without_duplicates(&fetched.body).ok_or_else(|| {
            tracing::warn!(endpoint = %inner.endpoint, "introspection answer is not a JSON object, or names a member twice");
            AuthError::unavailable(
                "the token cannot be verified now: the introspection answer is unusable",
                RETRY_AFTER,
            )
        })?;
        let weight = ENTRY_OVERHEAD + fetched.body.len() as u64;
        let (answer, ttl) = inner.judge(answer, SystemTime::now());
        if let (Some(cache), false) = (&inner.cache, ttl.is_zero()) {
            cache.insert(
                key,
                Entry {
                    answer: answer.clone(),
                    until: Instant::now() + ttl,
                    weight,
                },
            );
        }
        answer
    }
}

impl Inner {
    /// Whether one more introspection fits in this second.
    fn admit(&self, now: Instant) -> bool {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.duration_since(window.0) >= Duration::from_secs(1) {
            *window = (now, 0);
        }
        if window.1 >= self.per_second {
            return false;
        }
        window.1 += 1;
        true
    }

    async fn ask(&self, token: &str) -> Result<super::client::Fetched, RemoteError> {
        let mut form = vec![("token", token), ("token_type_hint", "access_token")];
        let basic = match &self.auth {
            ClientAuth::SecretBasic { id, secret } => Some((id.as_str(), secret.as_str())),
            ClientAuth::SecretPost { id, secret } => {
                form.push(("client_id", id));
                form.push(("client_secret", secret));
                None
            }
            ClientAuth::Tls { id } => {
                form.push(("client_id", id));
                None
            }
        };
        self.client.post_form(&self.endpoint, &form, basic).await
    }

    /// The claims of an introspection answer or why it is refused, and how long that
    /// may be reused.
    fn judge(
        &self,
        mut answer: Map<String, Value>,
        now: SystemTime,
    ) -> (Result<TokenClaims, AuthError>, Duration) {
        let refuse = |reason, description: &'static str, ttl| {
            (
                Err(AuthError::invalid_token_because(reason, description)),
                ttl,
            )
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return refuse(
                AuthReason::Inactive,
                "the token is not active",
                self.inactive_ttl,
            );
        }
        // RFC 7662 §2.2: `iss` is optional; without it the answer speaks for our issuer.
        if !answer.contains_key("iss") {
            answer.insert("iss".into(), Value::String(self.checks.issuer.clone()));
        }
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let exp = match self.checks.check(&answer, now_secs) {
            Ok(exp) => exp,
            Err((reason, description)) => {
                // A token not valid yet may be soon: that refusal is not kept.
                let ttl = if reason == AuthReason::NotYetValid {
                    Duration::ZERO
                } else {
                    self.inactive_ttl
                };
                return refuse(reason, description, ttl);
            }
        };
        let ttl = match exp {
            Some(exp) => self.cache_ttl.min(Duration::from_secs(
                exp.saturating_add(self.checks.leeway.as_secs())
                    .saturating_sub(now_secs),
            )),
            None => self.cache_ttl,
        };
        match TokenClaims::from_json(answer) {
            Ok(claims) => (Ok(claims), ttl),
            Err(e) => (Err(e), self.inactive_ttl),
        }
    }
}

impl TokenVerifier for IntrospectionVerifier {
    fn verify<'a>(&'a self, token: &'a str, _request: &'a Parts) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier() -> IntrospectionVerifier {
        IntrospectionVerifier::builder("https://as.example/introspect")
            .client_secret_basic("rs", "s3cr3t-value")
            .issuer("https://as.example")
            .audience("https://api.example")
            .build()
            .unwrap()
    }

    fn judge(answer: Value) -> (Result<TokenClaims, AuthError>, Duration) {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        verifier()
            .inner
            .judge(answer.as_object().unwrap().clone(), now)
    }

    fn reason(answer: Value) -> AuthReason {
        judge(answer).0.unwrap_err().reason()
    }

    #[test]
    fn active_answers_for_this_audience_become_claims() {
        let (claims, ttl) = judge(json!({
            "active": true, "aud": ["https://api.example", "x"], "exp": 1_000_030,
            "client_id": "svc", "scope": "read write", "cnf": {"x5t#S256": "abc"},
        }));
        let claims = claims.unwrap();
        assert_eq!(claims.issuer(), "https://as.example");
        assert_eq!(claims.client_id(), Some("svc"));
        assert_eq!(claims.scopes(), ["read", "write"]);
        // Cached until exp (with the leeway), as it is sooner than the TTL.
        assert_eq!(ttl, Duration::from_secs(60));
        let (_, ttl) = judge(json!({"active": true, "aud": "https://api.example", "exp": 999_990}));
        assert_eq!(ttl, Duration::from_secs(20));
        let (_, ttl) = judge(json!({"active": true, "aud": "https://api.example"}));
        assert_eq!(ttl, DEFAULT_INTROSPECTION_CACHE_TTL);
    }

    #[test]
    fn inactive_foreign_and_expired_answers_are_refused() {
        let aud = "https://api.example";
        assert_eq!(
            reason(json!({"active": false, "aud": aud})),
            AuthReason::Inactive
        );
        assert_eq!(
            reason(json!({"active": "true", "aud": aud})),
            AuthReason::Inactive
        );
        assert_eq!(reason(json!({"aud": aud})), AuthReason::Inactive);
        assert_eq!(
            reason(json!({"active": true, "aud": aud, "iss": "https://other"})),
            AuthReason::WrongIssuer
        );
        assert_eq!(reason(json!({"active": true})), AuthReason::InvalidClaim);
        assert_eq!(
            reason(json!({"active": true, "aud": "x"})),
            AuthReason::WrongAudience
        );
        assert_eq!(
            reason(json!({"active": true, "aud": 7})),
            AuthReason::WrongAudience
        );
        assert_eq!(
            reason(json!({"active": true, "aud": aud, "exp": 999_970})),
            AuthReason::Expired
        );
        assert_eq!(
            reason(json!({"active": true, "aud": aud, "nbf": 1_000_031})),
            AuthReason::NotYetValid
        );
        assert_eq!(
            reason(json!({"active": true, "aud": aud, "exp": "soon"})),
            AuthReason::InvalidClaim
        );
        // Within the leeway.
        assert!(
            judge(json!({"active": true, "aud": aud, "exp": 999_971}))
                .0
                .is_ok()
        );
        assert!(
            judge(json!({"active": true, "aud": aud, "nbf": 1_000_030}))
                .0
                .is_ok()
        );
    }

    #[test]
    fn missing_settings_are_named() {
        let err = IntrospectionVerifier::builder("https://as.example/introspect")
            .issuer("https://as.example")
            .audience("https://api.example")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("client credentials"), "{err}");
        let err = IntrospectionVerifier::builder("http://as.example/introspect")
            .client_secret_post("rs", "s")
            .issuer("https://as.example")
            .audience("https://api.example")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
        let debug = format!("{:?}", verifier());
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
    }
}
