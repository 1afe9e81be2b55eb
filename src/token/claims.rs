//! What a verified access token says: RFC 9068 claims, scopes and the `cnf` binding.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::{AuthError, AuthReason};

/// The claims of a verified access token. Cheap to clone: the claims are shared.
#[derive(Clone)]
pub struct TokenClaims {
    read: Arc<Read>,
    /// The key that verified the token, when a key did (not for introspection).
    pub(crate) key_life: Option<super::keys::KeyLife>,
}

/// What [`TokenClaims::from_json`] read, once.
struct Read {
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
    scopes: Vec<String>,
    confirmation: Confirmation,
    all: Map<String, Value>,
}

/// The token's `cnf` member (RFC 8705 §3.1), as far as this crate can use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// No `cnf` at all: a plain bearer token.
    Absent,
    /// `cnf.x5t#S256`, decoded: the SHA-256 of the certificate the token is bound to.
    X5tS256([u8; 32]),
    /// A `cnf` of any other shape. Never accepted: a token that says it is bound, in a
    /// way this resource server cannot check, must not pass as unbound.
    Unusable(&'static str),
}

impl TokenClaims {
    /// The claims of a token a [`TokenVerifier`](super::TokenVerifier) has verified: a
    /// JWT's payload, or an introspection answer. Reads `iss` (required), `sub`,
    /// `client_id`, `scope` / `scp`, and `cnf` (RFC 8705 §3.1), which the layer then
    /// checks against the request's certificate. Does not check `exp`: verifying is the
    /// verifier's work.
    ///
    /// # Errors
    /// 401 `invalid_token` ([`AuthReason::InvalidClaim`]) when one of those claims has
    /// the wrong type, or `iss` is missing.
    pub fn from_json(all: Map<String, Value>) -> Result<Self, AuthError> {
        let string = |name: &'static str| -> Result<Option<String>, AuthError> {
            match all.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(AuthError::invalid_token_because(
                    AuthReason::InvalidClaim,
                    format!("the {name} claim is not a string"),
                )),
            }
        };
        let issuer = string("iss")?.ok_or_else(|| {
            AuthError::invalid_token_because(AuthReason::InvalidClaim, "the token has no iss claim")
        })?;
        let subject = string("sub")?;
        let client_id = string("client_id")?;

        let mut scopes: Vec<String> = Vec::new();
        let mut add = |scope: &str| {
            if !scope.is_empty() && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_owned());
            }
        };
        if let Some(scope) = string("scope")? {
            scope.split(' ').for_each(&mut add);
        }
        match all.get("scp") {
            None => {}
            Some(Value::String(s)) => s.split(' ').for_each(&mut add),
            Some(Value::Array(items)) => {
                for item in items {
                    let scope = item.as_str().ok_or_else(|| {
                        AuthError::invalid_token_because(
                            AuthReason::InvalidClaim,
                            "the scp claim holds a non-string",
                        )
                    })?;
                    add(scope);
                }
            }
            Some(_) => {
                return Err(AuthError::invalid_token_because(
                    AuthReason::InvalidClaim,
                    "the scp claim is neither a string nor an array",
                ));
            }
        }

        Ok(Self {
            read: Arc::new(Read {
                confirmation: Confirmation::of(all.get("cnf")),
                issuer,
                subject,
                client_id,
                scopes,
                all,
            }),
            key_life: None,
        })
    }

    /// What `cnf` says of the binding.
    pub(crate) fn confirmation(&self) -> &Confirmation {
        &self.read.confirmation
    }

    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.read.issuer
    }

    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.read.subject.as_deref()
    }

    /// `client_id` (RFC 9068 §2.2).
    pub fn client_id(&self) -> Option<&str> {
        self.read.client_id.as_deref()
    }

    /// The scopes granted: `scope` split on spaces, plus `scp` when present.
    pub fn scopes(&self) -> &[String] {
        &self.read.scopes
    }

    /// Whether `scope` was granted. Exact match: `administrator` does not grant `admin`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.read.scopes.iter().any(|s| s == scope)
    }

    /// `exp`, when it is a number of seconds since the epoch.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        // RFC 7519 NumericDate: seconds, possibly with a fraction (which is dropped).
        let seconds = super::checks::numeric_date(self.read.all.get("exp")?, false)?;
        std::time::SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(seconds))
    }

    /// One claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.read.all.get(name)
    }

    /// All claims.
    pub fn all(&self) -> &Map<String, Value> {
        &self.read.all
    }
}

impl fmt::Debug for TokenClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClaims")
            .field("issuer", &self.read.issuer)
            .field("subject", &self.read.subject)
            .field("client_id", &self.read.client_id)
            .field("scopes", &self.read.scopes)
            .finish_non_exhaustive()
    }
}

impl Confirmation {
    fn of(cnf: Option<&Value>) -> Self {
        let Some(cnf) = cnf else {
            return Self::Absent;
        };
        let Some(object) = cnf.as_object() else {
            return Self::Unusable("the cnf claim is not a JSON object");
        };
        let Some(thumbprint) = object.get("x5t#S256") else {
            return Self::Unusable("the cnf claim has no x5t#S256 certificate thumbprint");
        };
        let Some(thumbprint) = thumbprint.as_str() else {
            return Self::Unusable("cnf x5t#S256 is not a string");
        };
        match URL_SAFE_NO_PAD
            .decode(thumbprint)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        {
            Some(hash) => Self::X5tS256(hash),
            None => Self::Unusable("cnf x5t#S256 is not a base64url SHA-256 thumbprint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_read_whole_or_fractional_within_range() {
        let exp = |value: serde_json::Value| {
            let all = serde_json::json!({"iss": "i", "exp": value});
            TokenClaims::from_json(all.as_object().unwrap().clone())
                .unwrap()
                .expires_at()
        };
        let at = |s: u64| Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(exp(serde_json::json!(1_700_000_000)), at(1_700_000_000));
        assert_eq!(exp(serde_json::json!(1_700_000_000.9)), at(1_700_000_000));
        assert_eq!(
            exp(serde_json::json!(999_999_999_999_999.0)),
            at(999_999_999_999_999)
        );
        for unreadable in [
            serde_json::json!(-5.0),
            serde_json::json!(1e15),
            serde_json::json!(1e16),
            serde_json::json!("1700000000"),
        ] {
            assert_eq!(exp(unreadable.clone()), None, "{unreadable}");
        }
    }
    use serde_json::json;

    fn claims(value: Value) -> Result<TokenClaims, AuthError> {
        TokenClaims::from_json(value.as_object().unwrap().clone())
    }

    #[test]
    fn scopes_come_from_scope_and_scp_without_duplicates() {
        let c =
            claims(json!({"iss": "i", "scope": "read  admin", "scp": ["admin", "write"]})).unwrap();
        assert_eq!(c.scopes(), ["read", "admin", "write"]);
        assert!(c.has_scope("admin"));
        assert!(!c.has_scope("adm"));
        assert!(claims(json!({"iss": "i", "scope": ["read"]})).is_err());
        assert!(claims(json!({"iss": "i", "scp": [1]})).is_err());
    }

    #[test]
    fn claims_are_read_as_given() {
        let c = claims(json!({
            "iss": "https://as.example", "sub": "svc", "client_id": "c1", "exp": 4102444800u64,
            "custom": {"team": "x"},
        }))
        .unwrap();
        assert_eq!(c.issuer(), "https://as.example");
        assert_eq!(c.subject(), Some("svc"));
        assert_eq!(c.client_id(), Some("c1"));
        assert_eq!(c.get("custom"), Some(&json!({"team": "x"})));
        assert_eq!(c.get("nothing"), None);
        assert_eq!(c.all().len(), 5);
        assert_eq!(
            c.expires_at(),
            Some(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(4102444800))
        );
        let without = claims(json!({"iss": "i", "exp": "soon"})).unwrap();
        assert_eq!(without.subject(), None);
        assert_eq!(without.expires_at(), None);
        assert_eq!(
            claims(json!({"sub": "x"})).unwrap_err().reason(),
            AuthReason::InvalidClaim
        );
    }

    #[test]
    fn cnf_shapes() {
        let hash = [9u8; 32];
        let good = URL_SAFE_NO_PAD.encode(hash);
        let of = |v: Value| Confirmation::of(Some(&v));
        assert_eq!(Confirmation::of(None), Confirmation::Absent);
        assert_eq!(of(json!({"x5t#S256": good})), Confirmation::X5tS256(hash));
        for bad in [
            json!("x"),
            json!(1),
            json!(null),
            json!([]),
            json!({}),
            json!({"jkt": good}),
            json!({"x5t#S256": 5}),
            json!({"x5t#S256": hex(&hash)}),
            json!({"x5t#S256": format!("{good}=")}),
            json!({"x5t#S256": URL_SAFE_NO_PAD.encode([9u8; 20])}),
        ] {
            assert!(
                matches!(of(bad.clone()), Confirmation::Unusable(_)),
                "{bad}"
            );
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
