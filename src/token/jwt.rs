//! JWT access token verification: signature with a key-pinned algorithm, then
//! `typ`, `iss`, `aud`, `exp` and `nbf`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

use super::checks::{ClaimChecks, Refusal, object_without_duplicates};
use super::{KeySet, KeySource, StaticKeys, TokenClaims, TokenVerifier, VerifyFuture};
use crate::config::{DEFAULT_LEEWAY, MAX_LEEWAY};
use crate::{AuthError, AuthReason, ConfigError};

/// Which JOSE `typ` header values are accepted.
#[derive(Debug, Clone)]
enum TokenTypes {
    /// RFC 9068 `at+jwt` (and `application/at+jwt`) plus these, lower-cased.
    AccessTokenJwtAnd(Vec<String>),
    /// Any `typ`, or none.
    Any,
}

impl TokenTypes {
    fn accepts(&self, typ: Option<&str>) -> bool {
        let Self::AccessTokenJwtAnd(extra) = self else {
            return true;
        };
        let Some(typ) = typ else {
            return false;
        };
        // RFC 7515 §4.1.9: media types compare case-insensitively, and the
        // "application/" prefix may be left out.
        let typ = match typ.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
            _ => typ,
        };
        typ.eq_ignore_ascii_case("at+jwt") || extra.iter().any(|t| typ.eq_ignore_ascii_case(t))
    }
}

/// Verifies JWT access tokens (RFC 9068) with keys from a [`KeySource`]: the algorithm
/// pinned by the key, `typ`, `crit`, `iss`, `aud`, `exp`, `nbf`. The layer's builder
/// makes one from its convenience methods; build one yourself to combine it with other
/// [`TokenVerifier`]s.
pub struct JwtVerifier {
    keys: Arc<dyn KeySource>,
    checks: ClaimChecks,
    token_types: TokenTypes,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.checks.issuer)
            .field("audience", &self.checks.audience)
            .field("token_types", &self.token_types)
            .finish_non_exhaustive()
    }
}

/// Where a [`JwtVerifierBuilder`]'s keys come from.
pub(crate) enum Keys {
    None,
    File(PathBuf),
    Json(Vec<u8>),
    Source(Arc<dyn KeySource>),
}

/// Builds a [`JwtVerifier`]. Starts strict: `typ` must be `at+jwt`, leeway is 30 s.
///
/// ```
/// # fn jwks() -> &'static str { r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"# }
/// use mtls_bound_token::token::JwtVerifier;
///
/// let verifier = JwtVerifier::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .jwks_json(jwks())
///     .build()?;
/// # Ok::<(), mtls_bound_token::ConfigError>(())
/// ```
pub struct JwtVerifierBuilder {
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) keys: Keys,
    leeway: Duration,
    extra_token_types: Vec<String>,
    any_token_type: bool,
}

impl Default for JwtVerifierBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            keys: Keys::None,
            leeway: DEFAULT_LEEWAY,
            extra_token_types: Vec::new(),
            any_token_type: false,
        }
    }
}

impl std::fmt::Debug for JwtVerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtVerifierBuilder {
    /// The `iss` every token must carry, compared exactly. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// This resource server's identifier: `aud` must equal it or, as an array, contain
    /// it. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Verification keys from a JWKS file, read when [`build`](Self::build) runs.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys = Keys::File(path.into());
        self
    }

    /// Verification keys from a JWKS document.
    pub fn jwks_json(mut self, json: impl AsRef<[u8]>) -> Self {
        self.keys = Keys::Json(json.as_ref().to_vec());
        self
    }

    /// Verification keys from a parsed [`KeySet`].
    pub fn key_set(self, keys: KeySet) -> Self {
        self.key_source(StaticKeys::new(keys))
    }

    /// Verification keys from any [`KeySource`].
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.keys = Keys::Source(Arc::new(source));
        self
    }

    /// Clock-skew leeway for `exp` and `nbf`; default 30 s, at most 5 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// **Weakens**: accepts this JOSE `typ` besides RFC 9068's `at+jwt` (e.g. `"JWT"`,
    /// which many servers put on access tokens). Without the explicit type, an ID token
    /// signed by the same issuer can be confused with an access token.
    pub fn accept_token_type(mut self, typ: impl Into<String>) -> Self {
        let typ = typ.into().to_ascii_lowercase();
        let typ = typ.strip_prefix("application/").unwrap_or(&typ).to_owned();
        self.extra_token_types.push(typ);
        self
    }

    /// **Weakens**: accepts any `typ`, or none.
    pub fn accept_any_token_type(mut self) -> Self {
        self.any_token_type = true;
        self
    }

    /// Whether anything of a JWT verifier was configured.
    pub(crate) fn is_configured(&self) -> bool {
        self.issuer.is_some()
            || self.audience.is_some()
            || !matches!(self.keys, Keys::None)
            || !self.extra_token_types.is_empty()
            || self.any_token_type
            || self.leeway != DEFAULT_LEEWAY
    }

    /// Checks the configuration and builds the verifier.
    ///
    /// # Errors
    /// [`ConfigError`] saying what is missing or wrong: no issuer, audience or keys, an
    /// unreadable or unusable JWKS, a leeway over 5 minutes.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        crate::crypto::install_jwt_provider();
        let issuer = self.issuer.ok_or(ConfigError::MissingIssuer)?;
        if issuer.is_empty() {
            return Err(ConfigError::Empty("issuer"));
        }
        let audience = self.audience.ok_or(ConfigError::MissingAudience)?;
        if audience.is_empty() {
            return Err(ConfigError::Empty("audience"));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::LeewayTooLarge(self.leeway));
        }
        let keys: Arc<dyn KeySource> = match self.keys {
            Keys::None => return Err(ConfigError::MissingKeys),
            Keys::File(path) => Arc::new(super::JwksFile::open(path)?),
            Keys::Json(json) => Arc::new(StaticKeys::new(KeySet::from_jwks_json(&json)?)),
            Keys::Source(source) => source,
        };
        let token_types = if self.any_token_type {
            TokenTypes::Any
        } else {
            TokenTypes::AccessTokenJwtAnd(self.extra_token_types)
        };
        Ok(JwtVerifier::new(
            keys,
            issuer,
            audience,
            self.leeway,
            token_types,
        ))
    }
}

impl JwtVerifier {
    /// Starts a configuration.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder::default()
    }

    fn new(
        keys: Arc<dyn KeySource>,
        issuer: String,
        audience: String,
        leeway: Duration,
        token_types: TokenTypes,
    ) -> Self {
        Self {
            keys,
            checks: ClaimChecks {
                issuer,
                audience,
                leeway,
                require_exp: true,
                require_aud: true,
            },
            token_types,
        }
    }

    /// The issuer this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.checks.issuer
    }

    /// The audience this verifier accepts.
    pub fn audience(&self) -> &str {
        &self.checks.audience
    }

    /// Verifies `token`; see the type's documentation for what is checked.
    ///
    /// # Errors
    /// 401 `invalid_token` with its [`AuthReason`]; 503 when the key source has no keys.
    pub async fn verify_token(&self, token: &str) -> Result<TokenClaims, AuthError> {
        let refuse =
            |(reason, description): Refusal| AuthError::invalid_token_because(reason, description);
        // The header is read once, here; what jsonwebtoken does for us is the signature.
        let jws = Jws::split(token).ok_or_else(|| {
            refuse((
                AuthReason::MalformedToken,
                "the access token is not a well-formed signed JWT",
            ))
        })?;
        let header = &jws.header;
        if !self.token_types.accepts(header.typ.as_deref()) {
            return Err(refuse((
                AuthReason::WrongType,
                "the token's typ is not at+jwt (RFC 9068)",
            )));
        }
        if header.crit {
            return Err(refuse((
                AuthReason::CriticalHeader,
                "the token has critical header parameters this server does not understand",
            )));
        }
        let keys = self
            .keys
            .key_set(header.kid.as_deref())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "verification keys unavailable");
                AuthError::unavailable(
                    "the token cannot be verified now: the verification keys are unavailable",
                    e.retry_after(),
                )
            })?;
        let key = keys.select(header.kid.as_deref())?;
        // Pinned by the key: never HMAC, never `none`, never another family's.
        if !key.algorithms.contains(&header.alg) {
            return Err(refuse((
                AuthReason::WrongAlgorithm,
                "the token's alg is not one its key allows",
            )));
        }
        match jsonwebtoken::crypto::verify(
            jws.signature,
            jws.signing_input.as_bytes(),
            &key.key,
            header.alg,
        ) {
            Ok(true) => {}
            Ok(false) => {
                return Err(refuse((
                    AuthReason::BadSignature,
                    "the token's signature does not verify",
                )));
            }
            Err(e) => return Err(refuse(describe(e.kind()))),
        }
        let payload = URL_SAFE_NO_PAD
            .decode(jws.payload)
            .ok()
            .and_then(|json| object_without_duplicates(&json))
            .ok_or_else(|| {
                refuse((
                    AuthReason::MalformedToken,
                    "the token's payload is not a JSON object",
                ))
            })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.checks.check(&payload, now).map_err(refuse)?;
        let mut claims = TokenClaims::from_json(payload)?;
        claims.key_life = Some(key.life.clone());
        Ok(claims)
    }
}

/// A compact JWS, split, with its header read (RFC 7515 §7.1).
struct Jws<'t> {
    header: JoseHeader,
    /// `header.payload`, what the signature covers.
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
}

impl<'t> Jws<'t> {
    /// Exactly three base64url segments (a JWE's five, or anything else, is `None`)
    /// and a header that is a JSON object with an `alg` this crate knows.
    fn split(token: &'t str) -> Option<Self> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        if payload.contains('.') {
            return None;
        }
        // An object (not an array, which serde would also read into the struct),
        // naming no member twice.
        let json = URL_SAFE_NO_PAD.decode(header).ok()?;
        let header = object_without_duplicates(&json)?;
        let header = JoseHeader::deserialize(Value::Object(header)).ok()?;
        Some(Self {
            header,
            signing_input,
            payload,
            signature,
        })
    }
}

/// The members of a JOSE header this crate reads.
#[derive(serde::Deserialize)]
struct JoseHeader {
    alg: jsonwebtoken::Algorithm,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Whether there is a `crit` member at all, even `"crit": null`: RFC 7515 §4.1.11
    /// allows it only as a non-empty array of extensions, none of which this crate
    /// understands.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str, _request: &'a Parts) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}

/// Why jsonwebtoken could not check a signature: a signature segment that is not
/// base64url is a malformed token; anything else is about the key.
fn describe(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::Base64(_) => (
            AuthReason::MalformedToken,
            "the token's signature is not base64url",
        ),
        _ => (
            AuthReason::BadSignature,
            "the token cannot be verified with its key",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn a_jws_is_three_segments_and_a_header_with_a_known_alg() {
        let header = segment(r#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#);
        let token = format!("{header}.cGF5.c2ln");
        let jws = Jws::split(&token).unwrap();
        assert_eq!(jws.header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(jws.header.kid.as_deref(), Some("k"));
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert!(!jws.header.crit);
        assert_eq!(jws.signing_input, format!("{header}.cGF5"));
        assert_eq!((jws.payload, jws.signature), ("cGF5", "c2ln"));
        for bad in [
            format!("{header}.cGF5"),
            format!("{header}.cGF5.c2ln.eA"),
            format!("{header}.a.b.c.d"),
            "eyJ.cGF5.c2ln".to_owned(),
            format!("{}.cGF5.c2ln", segment(r#"{"alg":"none"}"#)),
            format!("{}.cGF5.c2ln", segment(r#"{"kid":"k"}"#)),
            format!("{}.cGF5.c2ln", segment(r#"{"alg":"ES256","kid":7}"#)),
            format!("{}.cGF5.c2ln", segment(r#"{"alg":"ES256","alg":"ES256"}"#)),
            format!("{}.cGF5.c2ln", segment(r#"["ES256"]"#)),
            format!("{}.cGF5.c2ln", segment(r#"{"alg":"ES256","x":1,"x":2}"#)),
        ] {
            assert!(Jws::split(&bad).is_none(), "{bad}");
        }
        for crit in [r#""crit":null"#, r#""crit":[]"#, r#""crit":["b64"]"#] {
            let header = segment(&format!(r#"{{"alg":"ES256",{crit}}}"#));
            assert!(
                Jws::split(&format!("{header}.cGF5.c2ln"))
                    .unwrap()
                    .header
                    .crit,
                "{crit}"
            );
        }
    }

    #[test]
    fn typ_policy() {
        let strict = TokenTypes::AccessTokenJwtAnd(Vec::new());
        assert!(strict.accepts(Some("at+jwt")));
        assert!(strict.accepts(Some("application/AT+JWT")));
        assert!(!strict.accepts(Some("JWT")));
        assert!(!strict.accepts(None));
        let jwt_too = TokenTypes::AccessTokenJwtAnd(vec!["jwt".into()]);
        assert!(jwt_too.accepts(Some("JWT")));
        assert!(TokenTypes::Any.accepts(None));
    }
}
