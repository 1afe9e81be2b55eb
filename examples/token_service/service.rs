//! The token service's routes: `POST /token` (client credentials, RFC 8705 client
//! authentication, certificate-bound RFC 9068 access tokens), `GET /jwks`, RFC 8414
//! metadata, `GET /healthz`. Shared by `main.rs` and the demo.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mtls_bound_token::AddressGroup;
use mtls_bound_token::ConnectionInfo;
use mtls_bound_token::cert::DistinguishedName;
use mtls_bound_token::client_auth::{
    ClientAuthError, ClientAuthenticator, ClientJwks, ClientRegistration, ExpectedIdentity,
    TlsClient,
};
use mtls_bound_token::remote::AuthServerClient;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Token requests are small; anything larger is refused before parsing.
const MAX_TOKEN_REQUEST: usize = 16 * 1024;

/// The ES256 key tokens are signed with, and its public JWK.
pub struct Signer {
    encoding: EncodingKey,
    kid: String,
    jwk: Value,
}

impl Signer {
    /// From an EC P-256 private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        if pem.contains("BEGIN EC PRIVATE KEY") {
            return Err(
                "a SEC1 key (BEGIN EC PRIVATE KEY); convert it to PKCS#8 with \
                        `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8.pem`"
                    .into(),
            );
        }
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| format!("not a private key: {e}"))?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err("not an EC P-256 key (ES256 needs P-256)".into());
        }
        Self::from_key(&key)
    }

    /// A new key, for this run only.
    pub fn generate() -> Result<Self, String> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| e.to_string())?;
        Self::from_key(&key)
    }

    fn from_key(key: &rcgen::KeyPair) -> Result<Self, String> {
        let point = key.public_key_raw();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        // RFC 7638 thumbprint as the kid: stable for the key, unique enough across keys.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        let encoding =
            EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"});
        Ok(Self { encoding, kid, jwk })
    }

    /// `{"keys": [...]}`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

/// What the service is configured with.
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    pub token_ttl: Duration,
    /// Authenticated token requests per minute per client certificate; the other
    /// limits are multiples of it (see [`Limits`]).
    pub rate_limit: NonZeroU32,
    pub signer: Signer,
    /// Peers whose requests carry the certificate in a header; they are not
    /// rate-limited by address (every client comes from them), only by the global
    /// budget of failed authentications.
    pub trusted_proxies: Vec<IpNet>,
}

/// The registered clients as the clients file describes them.
pub struct Clients {
    pub registrations: Vec<ClientRegistration>,
    /// What each client may ask for, by client_id.
    pub policies: HashMap<String, ClientPolicy>,
}

/// What a client may ask for besides its scopes.
pub struct ClientPolicy {
    /// Grant types; `client_credentials` unless the file says otherwise.
    pub grant_types: Vec<String>,
    /// Audiences it may name with `resource`/`audience` besides `--audience`; `None`
    /// (no `resources` in the file) lets it name any.
    pub resources: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    client: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    auth: String,
    subject_dn: Option<String>,
    san_dns: Option<String>,
    san_uri: Option<String>,
    san_ip: Option<String>,
    san_email: Option<String>,
    jwks: Option<String>,
    jwks_uri: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    grant_types: Option<Vec<String>>,
    resources: Option<Vec<String>>,
}

/// Reads the clients file (TOML), fetching the `jwks_uri` of clients registered by one
/// with `fetcher`. Every problem names the client and what to fix.
pub async fn load_clients(path: &Path, fetcher: &AuthServerClient) -> Result<Clients, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read clients file {}: {e}", path.display()))?;
    let file: ClientsFile =
        toml::from_str(&text).map_err(|e| format!("clients file {}: {e}", path.display()))?;
    if file.client.is_empty() {
        return Err(format!(
            "clients file {}: no [[client]] is registered",
            path.display()
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut clients = Clients {
        registrations: Vec::new(),
        policies: HashMap::new(),
    };
    for entry in file.client {
        let id = entry.client_id.clone();
        let registration = registration(&entry, base, fetcher)
            .await
            .map_err(|e| format!("clients file {}: client {id:?}: {e}", path.display()))?;
        let policy = ClientPolicy {
            grant_types: entry
                .grant_types
                .unwrap_or_else(|| vec!["client_credentials".into()]),
            resources: entry.resources,
        };
        if clients.policies.insert(id.clone(), policy).is_some() {
            return Err(format!(
                "clients file {}: client {id:?} is registered twice",
                path.display()
            ));
        }
        clients
            .registrations
            .push(registration.with_scopes(entry.scopes));
    }
    Ok(clients)
}

async fn registration(
    entry: &ClientEntry,
    base: &Path,
    fetcher: &AuthServerClient,
) -> Result<ClientRegistration, String> {
    let values = [
        ("subject_dn", &entry.subject_dn),
        ("san_dns", &entry.san_dns),
        ("san_uri", &entry.san_uri),
        ("san_ip", &entry.san_ip),
        ("san_email", &entry.san_email),
    ];
    let given: Vec<_> = values.iter().filter(|(_, v)| v.is_some()).collect();
    match entry.auth.as_str() {
        "tls_client_auth" => {
            if entry.jwks.is_some() || entry.jwks_uri.is_some() {
                return Err("jwks and jwks_uri are for self_signed_tls_client_auth; tls_client_auth takes one of subject_dn, san_dns, san_uri, san_ip, san_email".into());
            }
            let [(name, Some(value))] = given.as_slice() else {
                return Err(format!(
                    "tls_client_auth needs exactly one of subject_dn, san_dns, san_uri, san_ip, san_email (found {})",
                    given.len()
                ));
            };
            let identity = match *name {
                "subject_dn" => ExpectedIdentity::SubjectDn(
                    value
                        .parse::<DistinguishedName>()
                        .map_err(|e| format!("subject_dn {value:?}: {e}"))?,
                ),
                "san_dns" => ExpectedIdentity::SanDns(value.clone()),
                "san_uri" => ExpectedIdentity::SanUri(value.clone()),
                "san_ip" => ExpectedIdentity::SanIp(
                    value
                        .parse::<IpAddr>()
                        .map_err(|_| format!("san_ip {value:?} is not an IP address"))?,
                ),
                _ => ExpectedIdentity::SanEmail(value.clone()),
            };
            Ok(ClientRegistration::tls_client_auth(
                &entry.client_id,
                identity,
            ))
        }
        "self_signed_tls_client_auth" => {
            if !given.is_empty() {
                return Err(
                    "self_signed_tls_client_auth takes jwks or jwks_uri, not a subject or SAN"
                        .into(),
                );
            }
            let jwks = match (&entry.jwks, &entry.jwks_uri) {
                (Some(_), Some(_)) => {
                    return Err("give jwks or jwks_uri, not both".into());
                }
                (None, Some(uri)) => {
                    let jwks = ClientJwks::fetch(uri.clone(), fetcher.clone())
                        .await
                        .map_err(|e| format!("jwks_uri: {e}"))?;
                    return Ok(ClientRegistration::self_signed_tls_client_auth_jwks_uri(
                        &entry.client_id,
                        jwks,
                    ));
                }
                (Some(jwks), None) => jwks,
                (None, None) => {
                    return Err("self_signed_tls_client_auth needs jwks = \"file\" or \
                                jwks_uri = \"https://...\""
                        .into());
                }
            };
            let jwks_path = base.join(jwks);
            let bytes = std::fs::read(&jwks_path)
                .map_err(|e| format!("cannot read jwks {}: {e}", jwks_path.display()))?;
            ClientRegistration::self_signed_tls_client_auth(&entry.client_id, &bytes)
                .map_err(|e| format!("jwks {}: {e}", jwks_path.display()))
        }
        other => Err(format!(
            "unknown auth method {other:?} (expected tls_client_auth or self_signed_tls_client_auth)"
        )),
    }
}

struct Inner {
    settings: Settings,
    authenticator: Arc<ClientAuthenticator>,
    policies: HashMap<String, ClientPolicy>,
    limits: Limits,
}

/// The token endpoint's rate limits, each a multiple of `--rate-limit` N:
///
/// | limit                | a minute | keyed by            | counts                            |
/// |----------------------|----------|---------------------|-----------------------------------|
/// | `per_group`          | 4N       | address group       | every request of a direct peer    |
/// | `per_certificate`    | N        | client certificate  | requests that authenticated       |
/// | `failures_per_group` | N        | address group       | failed authentications, direct    |
/// | `failures`           | 16N      | nothing: one budget | failed authentications, all peers |
///
/// Over any of them the answer is 429 with `Retry-After`; for the two failure budgets
/// that is instead of the 401 `invalid_client`. Each is a GCRA bucket: a burst of its
/// whole minute's worth, then one more every 60/rate seconds. `per_group` is checked
/// before anything is parsed, the others once authentication has succeeded or
/// failed. Why these, in this order:
///
/// - **The certificate limit comes after authentication.** Before it, anyone could
///   make a certificate per request (self-signed ones pass the handshake) and each
///   would get a fresh bucket, and a key in the limiter's map. Now only certificates
///   that authenticated get one, which the registrations bound.
/// - **The address group** ([`AddressGroup`]) is the IPv4 address, or the IPv6 /64:
///   a /64 is the smallest block anyone is assigned (a phone gets one, a site a /56
///   or a /48), and its hosts pick their own 64-bit interface identifiers (privacy
///   addresses change all the time), so one host can come from 2^64 addresses.
///   IPv4-mapped IPv6 is the IPv4 address it maps. The 4N leaves room for several
///   clients on one host. A trusted proxy's address is every client's, so requests
///   from it are not limited by address at all.
/// - **Failures are limited only once authentication has failed**: the budgets are
///   checked (and spent) by the answer that would have been 401, which becomes 429.
///   So no success is ever refused by failure limiting, whoever else fails and how
///   often: a good client at address Y is served while X's failures are refused,
///   and while the global budget is spent. The price: a failing attempt is still
///   authenticated before it is refused: a lookup, a comparison or one chain
///   validation, cheaper than the TLS handshake before it (which no limit here can
///   spare either). What the budgets bound is how fast anyone who cannot
///   authenticate learns anything about the registrations (which client_ids exist,
///   whether a certificate fits one) and fills the log with refusals.
/// - **N failures per address group**, not 4N: a direct peer's failures already count
///   towards its 4N requests, so a 4N failure budget would never be the one to
///   refuse. N (as many failures as one certificate may have successes) is far more
///   than a misconfigured client retrying needs; one that honours `Retry-After` then
///   leaves its group's other clients 3N requests. (A group that ignores the 429s
///   spends its 4N and is refused as a whole: it is one host or one site.)
/// - **16N failures in all** bounds what the per-group budget cannot: traffic from a
///   trusted proxy (which forwards everyone; the forwarded certificate is no key, as
///   any can be made afresh) and attempts spread over many address groups (16 at
///   their full rate; a /48 holds 65536 of them). Only failures spend it, and when it
///   is spent only failures are refused: their clients get 429 instead of a 401
///   saying why, which is all they lose. The group's budget is checked first, so a
///   group over its own budget spends none of the global one: it takes 16 groups to
///   exhaust it.
/// - **Not counted as failures**: refusals before authentication (400 for a malformed
///   request or an unreadable forwarded certificate). They tell nothing about the
///   registrations and cost no more than a 429; a direct peer's are within its 4N,
///   and behind a proxy the raw request rate is the proxy's to bound, since the
///   service cannot tell the proxy's clients apart.
struct Limits {
    per_certificate: DefaultKeyedRateLimiter<[u8; 32]>,
    per_group: DefaultKeyedRateLimiter<AddressGroup>,
    failures_per_group: DefaultKeyedRateLimiter<AddressGroup>,
    failures: DefaultDirectRateLimiter,
    /// One warning a minute while the global failure budget is spent: it means an
    /// attack, or many clients misconfigured at once (a CA rotated, say).
    failures_warning: DefaultDirectRateLimiter,
}

impl Limits {
    fn new(per_minute: NonZeroU32) -> Self {
        const FOUR: NonZeroU32 = NonZeroU32::new(4).unwrap();
        const SIXTEEN: NonZeroU32 = NonZeroU32::new(16).unwrap();
        Self {
            per_certificate: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_group: RateLimiter::keyed(Quota::per_minute(per_minute.saturating_mul(FOUR))),
            failures_per_group: RateLimiter::keyed(Quota::per_minute(per_minute)),
            failures: RateLimiter::direct(Quota::per_minute(per_minute.saturating_mul(SIXTEEN))),
            failures_warning: RateLimiter::direct(Quota::per_minute(NonZeroU32::MIN)),
        }
    }

    /// Drops the keys of buckets that are full again: keys come from anyone who can
    /// connect, so they must not pile up.
    fn forget_idle(&self) {
        for limiter in [&self.per_group, &self.failures_per_group] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.per_certificate.retain_recent();
        self.per_certificate.shrink_to_fit();
    }

    /// The answer to a failed authentication: `refusal` (the 401) while the budgets
    /// last, 429 once the group's (`None` for a trusted proxy) or the global one is
    /// spent. Called only for failures, so successes never spend or meet these.
    fn failed(&self, group: Option<AddressGroup>, refusal: ClientAuthError) -> Response {
        const TOO_MANY_FAILURES: &str = "too many failed client authentications; retry later";
        if let Some(group) = group
            && let Err(not_until) = self.failures_per_group.check_key(&group)
        {
            tracing::debug!(%group, "failed client authentications over the group's budget");
            return too_many(not_until, TOO_MANY_FAILURES);
        }
        if let Err(not_until) = self.failures.check() {
            if self.failures_warning.check().is_ok() {
                tracing::warn!(
                    "failed client authentications are over their global budget (16 times \
                     --rate-limit a minute): failures are answered 429 until it refills; \
                     clients that authenticate are still served"
                );
            }
            return too_many(not_until, TOO_MANY_FAILURES);
        }
        no_store(refusal.into_response())
    }
}

/// The service's state.
#[derive(Clone)]
pub struct TokenService(Arc<Inner>);

impl FromRef<TokenService> for Arc<ClientAuthenticator> {
    fn from_ref(service: &TokenService) -> Self {
        Arc::clone(&service.0.authenticator)
    }
}

impl TokenService {
    pub fn new(
        settings: Settings,
        authenticator: ClientAuthenticator,
        policies: HashMap<String, ClientPolicy>,
    ) -> Self {
        let inner = Arc::new(Inner {
            limits: Limits::new(settings.rate_limit),
            authenticator: Arc::new(authenticator),
            policies,
            settings,
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.limits.forget_idle();
            }
        });
        Self(inner)
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/healthz", get(|| async { "ok" }))
            .layer(DefaultBodyLimit::max(MAX_TOKEN_REQUEST))
            .with_state(self)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.0.settings.issuer.trim_end_matches('/'))
    }
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response(),
    )
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// 429, with the whole seconds until `not_until` in `Retry-After`.
fn too_many(not_until: NotUntil<<DefaultClock as Clock>::Instant>, description: &str) -> Response {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", description);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

async fn token(
    State(service): State<TokenService>,
    ConnectInfo(connection): ConnectInfo<ConnectionInfo>,
    client: Result<TlsClient, ClientAuthError>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = &service.0;
    let limits = &inner.limits;
    const TOO_MANY: &str = "too many token requests; retry later";

    // Before anything is parsed: per address group, except for the trusted proxies
    // (`None`), whose address is every client's. See `Limits`.
    let peer = connection.remote_addr().ip().to_canonical();
    let trusted = inner
        .settings
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer));
    let group = (!trusted).then(|| AddressGroup::of(peer));
    if let Some(group) = group
        && let Err(not_until) = limits.per_group.check_key(&group)
    {
        return too_many(not_until, TOO_MANY);
    }
    let client = match client {
        Ok(client) => client,
        Err(error) => return no_store(error.into_response()),
    };

    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body must be application/x-www-form-urlencoded",
        );
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        // RFC 6749 §3.2: parameters must not be repeated.
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("the parameter {name} is repeated"),
            );
        }
    }
    let Some(client_id) = params.get("client_id").filter(|id| !id.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id is required",
        );
    };
    let client = match client.authenticate_fresh(client_id).await {
        Ok(client) => client,
        Err(error) => return limits.failed(group, error),
    };
    // Only now, so that only certificates that authenticated get a bucket.
    if let Err(not_until) = limits
        .per_certificate
        .check_key(client.certificate().thumbprint_bytes())
    {
        return too_many(not_until, TOO_MANY);
    }
    match params.get("grant_type").map(String::as_str) {
        None | Some("") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }
    let registration = client.registration();
    let policy = inner.policies.get(registration.client_id());
    let allowed = policy.is_some_and(|p| p.grant_types.iter().any(|g| g == "client_credentials"));
    if !allowed {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "the client may not use client_credentials",
        );
    }
    let scopes: Vec<&str> = match params
        .get("scope")
        .map(|s| s.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>())
    {
        Some(requested) if !requested.is_empty() => requested,
        _ => registration.scopes().iter().map(String::as_str).collect(),
    };
    if let Some(scope) = scopes
        .iter()
        .find(|s| !registration.scopes().iter().any(|a| a == *s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("the client may not request the scope {scope}"),
        );
    }
    let audience = params
        .get("resource")
        .or_else(|| params.get("audience"))
        .filter(|a| !a.is_empty())
        .unwrap_or(&inner.settings.audience);
    let permitted = *audience == inner.settings.audience
        || policy
            .and_then(|p| p.resources.as_ref())
            .is_none_or(|resources| resources.contains(audience));
    if !permitted {
        // RFC 8707 §2: the client may not have tokens for that resource.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "the client may not request tokens for that resource",
        );
    }

    let Some(jti) = jti() else {
        tracing::error!("no OS randomness for a jti");
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token could not be issued",
        );
    };
    let issued_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let ttl = inner.settings.token_ttl.as_secs();
    let scope = scopes.join(" ");
    let claims = json!({
        "iss": inner.settings.issuer,
        "aud": audience,
        "sub": registration.client_id(),
        "client_id": registration.client_id(),
        "scope": scope,
        "iat": issued_at,
        "exp": issued_at + ttl,
        "jti": jti,
        "cnf": {"x5t#S256": client.certificate().thumbprint()},
    });
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(inner.settings.signer.kid.clone());
    let access_token = match jsonwebtoken::encode(&header, &claims, &inner.settings.signer.encoding)
    {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "signing failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be signed",
            );
        }
    };
    tracing::info!(
        client_id = registration.client_id(),
        thumbprint = client.certificate().thumbprint(),
        scope,
        "token issued"
    );
    no_store(
        Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope,
        }))
        .into_response(),
    )
}

/// 128 random bits, base64url; `None` when the OS has no randomness to give.
fn jti() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

async fn jwks(State(service): State<TokenService>) -> Json<Value> {
    Json(service.0.settings.signer.jwks())
}

async fn metadata(State(service): State<TokenService>) -> Json<Value> {
    let token_endpoint = service.endpoint("/token");
    Json(json!({
        "issuer": service.0.settings.issuer,
        "token_endpoint": token_endpoint,
        "jwks_uri": service.endpoint("/jwks"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["tls_client_auth", "self_signed_tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "mtls_endpoint_aliases": {"token_endpoint": token_endpoint},
    }))
}
