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
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mtls_bound_token::ConnectionInfo;
use mtls_bound_token::cert::DistinguishedName;
use mtls_bound_token::client_auth::{
    ClientAuthError, ClientAuthenticator, ClientRegistration, ExpectedIdentity, TlsClient,
};
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
    /// Token requests per minute per client certificate.
    pub rate_limit: NonZeroU32,
    pub signer: Signer,
    /// Peers whose requests carry the certificate in a header; they are not
    /// rate-limited by address (every client comes from them).
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
    #[serde(default)]
    scopes: Vec<String>,
    grant_types: Option<Vec<String>>,
    resources: Option<Vec<String>>,
}

/// Reads the clients file (TOML). Every problem names the client and what to fix.
pub fn load_clients(path: &Path) -> Result<Clients, String> {
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
        let registration = registration(&entry, base)
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

fn registration(entry: &ClientEntry, base: &Path) -> Result<ClientRegistration, String> {
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
            if entry.jwks.is_some() {
                return Err("jwks is for self_signed_tls_client_auth; tls_client_auth takes one of subject_dn, san_dns, san_uri, san_ip, san_email".into());
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
                    "self_signed_tls_client_auth takes jwks only, not a subject or SAN".into(),
                );
            }
            let jwks = entry
                .jwks
                .as_ref()
                .ok_or("self_signed_tls_client_auth needs jwks = \"file\"")?;
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
    per_certificate: DefaultKeyedRateLimiter<[u8; 32]>,
    per_peer: DefaultKeyedRateLimiter<IpAddr>,
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
        let per_minute = settings.rate_limit;
        // Several clients may share a host; unauthenticated floods still stop early.
        const FOUR: NonZeroU32 = NonZeroU32::new(4).unwrap();
        let per_peer = per_minute.saturating_mul(FOUR);
        let inner = Arc::new(Inner {
            per_certificate: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_peer: RateLimiter::keyed(Quota::per_minute(per_peer)),
            authenticator: Arc::new(authenticator),
            policies,
            settings,
        });
        // Any self-signed certificate can knock, so keys must not pile up forever.
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.per_certificate.retain_recent();
                inner.per_peer.retain_recent();
                inner.per_certificate.shrink_to_fit();
                inner.per_peer.shrink_to_fit();
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

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "slow_down",
        "too many token requests; retry later",
    );
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
    let now = DefaultClock::default().now();

    // Before anything is parsed: per peer address, except the trusted proxies.
    let peer = connection.remote_addr().ip().to_canonical();
    if !inner
        .settings
        .trusted_proxies
        .iter()
        .any(|net| net.contains(&peer))
        && let Err(not_until) = inner.per_peer.check_key(&peer)
    {
        return too_many(not_until.wait_time_from(now));
    }
    let client = match client {
        Ok(client) => client,
        Err(error) => return no_store(error.into_response()),
    };
    if let Some(certificate) = client.certificate()
        && let Err(not_until) = inner
            .per_certificate
            .check_key(certificate.thumbprint_bytes())
    {
        return too_many(not_until.wait_time_from(now));
    }

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
    let client = match client.authenticate(client_id) {
        Ok(client) => client,
        Err(error) => return no_store(error.into_response()),
    };
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
