//! JWT access token verification: signature with a key-pinned algorithm, then
//! `typ`, `iss`, `aud`, `exp` and `nbf`.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{AlgorithmFamily, Validation};
use serde_json::{Map, Value};

use super::{KeySource, TokenClaims};
use crate::{AuthError, AuthReason};

/// The asymmetric algorithm families this crate verifies. HMAC and `none` are never
/// among them.
const FAMILIES: [AlgorithmFamily; 3] = [
    AlgorithmFamily::Rsa,
    AlgorithmFamily::Ec,
    AlgorithmFamily::Ed,
];

/// Which JOSE `typ` header values are accepted.
#[derive(Debug, Clone)]
pub(crate) enum TokenTypes {
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

/// Verifies JWT access tokens against a key source.
pub(crate) struct JwtVerifier {
    keys: Arc<dyn KeySource>,
    /// One per entry of [`FAMILIES`]: jsonwebtoken wants the algorithms of a validation
    /// to be of one family.
    validations: [Validation; 3],
    token_types: TokenTypes,
}

impl JwtVerifier {
    pub(crate) fn new(
        keys: Arc<dyn KeySource>,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        token_types: TokenTypes,
    ) -> Self {
        let validations = FAMILIES.map(|family| {
            // The header's algorithm is checked against its key before decoding; this
            // list only keeps jsonwebtoken from ever taking an HMAC or `none` path.
            let mut validation = Validation::new_for_family(family);
            validation.set_issuer(&[issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_nbf = true;
            validation.leeway = leeway.as_secs();
            validation
        });
        Self {
            keys,
            validations,
            token_types,
        }
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<TokenClaims, AuthError> {
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
        TokenClaims::from_claims(data.claims)
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
