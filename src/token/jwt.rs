//! JWT access token verification: signature with a key-pinned algorithm, then
//! `typ`, `iss`, `aud`, `exp` and `nbf`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, Validation};
use serde_json::{Map, Value};

use super::{KeySet, KeySource, StaticKeys, TokenClaims, TokenVerifier, VerifyFuture};
use crate::config::{DEFAULT_LEEWAY, MAX_LEEWAY};
use crate::{AuthError, AuthReason, ConfigError};

/// The asymmetric algorithm families this crate verifies. HMAC and `none` are never
/// among them.
const FAMILIES: [AlgorithmFamily; 3] = [
    AlgorithmFamily::Rsa,
    AlgorithmFamily::Ec,
    AlgorithmFamily::Ed,
];

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
    /// One per entry of [`FAMILIES`]: jsonwebtoken wants the algorithms of a validation
    /// to be of one family.
    validations: [Validation; 3],
    token_types: TokenTypes,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
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
            Keys::File(path) => Arc::new(StaticKeys::new(KeySet::from_jwks_file(path)?)),
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
        let validations = FAMILIES.map(|family| {
            // The header's algorithm is checked against its key before decoding; this
            // list only keeps jsonwebtoken from ever taking an HMAC or `none` path.
            let mut validation = Validation::new_for_family(family);
            validation.set_issuer(&[&issuer]);
            validation.set_audience(&[&audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_nbf = true;
            validation.leeway = leeway.as_secs();
            validation
        });
        Self {
            keys,
            validations,
            token_types,
            issuer,
            audience,
        }
    }

    /// The issuer this verifier accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience this verifier accepts.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies `token`; see the type's documentation for what is checked.
    ///
    /// # Errors
    /// 401 `invalid_token` with its [`AuthReason`]; 503 when the key source has no keys.
    pub async fn verify_token(&self, token: &str) -> Result<TokenClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            AuthError::invalid_token_because(
                AuthReason::MalformedToken,
                "the access token is not a well-formed signed JWT",
            )
        })?;
        if !self.token_types.accepts(header.typ.as_deref()) {
            return Err(AuthError::invalid_token_because(
                AuthReason::WrongType,
                "the token's typ is not at+jwt (RFC 9068)",
            ));
        }
        if header.crit.is_some() || has_crit_member(token) {
            return Err(AuthError::invalid_token_because(
                AuthReason::CriticalHeader,
                "the token has critical header parameters this server does not understand",
            ));
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
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthError::invalid_token_because(
                AuthReason::WrongAlgorithm,
                "the token's alg is not one its key allows",
            ));
        }
        let family = header.alg.family();
        let Some(validation) = FAMILIES
            .iter()
            .position(|f| *f == family)
            .map(|i| &self.validations[i])
        else {
            return Err(AuthError::invalid_token_because(
                AuthReason::WrongAlgorithm,
                "the token's alg is not accepted",
            ));
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| {
                let (reason, description) = describe(e.kind());
                AuthError::invalid_token_because(reason, description)
            })?;
        let mut claims = TokenClaims::from_json(data.claims)?;
        claims.key_life = Some(key.life.clone());
        Ok(claims)
    }
}

impl TokenVerifier for JwtVerifier {
    fn verify<'a>(&'a self, token: &'a str, _request: &'a Parts) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}

/// Whether the JOSE header has a `crit` member at all: `"crit": null` reads as no `crit`
/// in jsonwebtoken's `Header`, yet RFC 7515 §4.1.11 allows it only as a non-empty array,
/// so any `crit` is refused.
fn has_crit_member(token: &str) -> bool {
    use base64::Engine;
    let Some(segment) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
        // decode_header already accepted it; whatever jsonwebtoken read is what counts.
        return false;
    };
    // Only a header that mentions "crit" somewhere is parsed a second time.
    json.windows(4).any(|w| w == b"crit")
        && serde_json::from_slice::<Map<String, Value>>(&json)
            .is_ok_and(|header| header.contains_key("crit"))
}

fn describe(kind: &ErrorKind) -> (AuthReason, &'static str) {
    use AuthReason as R;
    match kind {
        ErrorKind::InvalidSignature => (R::BadSignature, "the token's signature does not verify"),
        ErrorKind::ExpiredSignature => (R::Expired, "the token has expired"),
        ErrorKind::ImmatureSignature => (R::NotYetValid, "the token is not valid yet (nbf)"),
        ErrorKind::InvalidIssuer => (R::WrongIssuer, "the token's issuer is not the expected one"),
        ErrorKind::InvalidAudience => (R::WrongAudience, "the token is not for this audience"),
        ErrorKind::MissingRequiredClaim(claim) => (
            R::InvalidClaim,
            match claim.as_str() {
                "exp" => "the token has no exp claim",
                "iss" => "the token has no iss claim",
                "aud" => "the token has no aud claim",
                _ => "the token lacks a required claim",
            },
        ),
        ErrorKind::InvalidAlgorithm => (R::WrongAlgorithm, "the token's alg is not accepted"),
        ErrorKind::InvalidClaimFormat(_) => {
            (R::InvalidClaim, "a claim of the token has the wrong type")
        }
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => {
            (R::BadSignature, "the token cannot be verified with its key")
        }
        _ => (R::MalformedToken, "the access token is malformed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
