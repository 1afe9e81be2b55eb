//! Several issuers behind one layer: a token goes to the verifier of the issuer it
//! names, and is verified only with that issuer's keys.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use serde_json::{Map, Value};

use super::{TokenVerifier, VerifyFuture};
use crate::{AuthError, AuthReason, ConfigError};

/// Chooses a [`TokenVerifier`] by the `iss` of a JWS token, read before any check, and
/// lets that verifier do every check (its keys, audience, lifetime, and `iss` again),
/// so that a token naming issuer A is never verified with issuer B's keys.
///
/// A token that is not a JWS naming a configured issuer goes to the
/// [`otherwise`](IssuerRouterBuilder::otherwise) verifier (introspection, typically);
/// without one it is refused: 401 `invalid_token` (`UnknownIssuer` for a JWS naming an
/// unknown issuer, `MalformedToken` for anything else).
///
/// ```
/// # fn jwks() -> &'static str { r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"# }
/// use mtls_bound_token::token::{IssuerRouter, JwtVerifier};
///
/// let jwt = |issuer: &str| {
///     JwtVerifier::builder()
///         .issuer(issuer)
///         .audience("https://api.example")
///         .jwks_json(jwks())
///         .build()
/// };
/// let router = IssuerRouter::builder()
///     .issuer(jwt("https://as-1.example")?)
///     .issuer(jwt("https://as-2.example")?)
///     .build()?;
/// let layer = mtls_bound_token::MtlsBoundTokenLayer::builder().verifier(router).build()?;
/// # Ok::<(), mtls_bound_token::ConfigError>(())
/// ```
pub struct IssuerRouter {
    routes: Vec<(String, Arc<dyn TokenVerifier>)>,
    otherwise: Option<Arc<dyn TokenVerifier>>,
}

impl fmt::Debug for IssuerRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerRouter")
            .field(
                "issuers",
                &self.routes.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            )
            .field("otherwise", &self.otherwise.is_some())
            .finish()
    }
}

/// A verifier that knows which issuer's tokens it verifies.
pub trait IssuerVerifier: TokenVerifier {
    /// The issuer (`iss`) whose tokens this verifier takes.
    fn issuer(&self) -> &str;
}

impl IssuerVerifier for super::JwtVerifier {
    fn issuer(&self) -> &str {
        super::JwtVerifier::issuer(self)
    }
}

impl IssuerVerifier for crate::remote::IntrospectionVerifier {
    fn issuer(&self) -> &str {
        crate::remote::IntrospectionVerifier::issuer(self)
    }
}

/// Builds an [`IssuerRouter`].
#[derive(Default)]
pub struct IssuerRouterBuilder {
    routes: Vec<(String, Arc<dyn TokenVerifier>)>,
    otherwise: Option<Arc<dyn TokenVerifier>>,
}

impl fmt::Debug for IssuerRouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerRouterBuilder")
            .field(
                "issuers",
                &self.routes.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl IssuerRouterBuilder {
    /// Tokens naming `verifier`'s issuer go to it.
    pub fn issuer(self, verifier: impl IssuerVerifier) -> Self {
        let issuer = verifier.issuer().to_owned();
        self.issuer_with(issuer, verifier)
    }

    /// Tokens naming `issuer` go to `verifier`, which must check `iss` itself.
    pub fn issuer_with(mut self, issuer: impl Into<String>, verifier: impl TokenVerifier) -> Self {
        self.routes.push((issuer.into(), Arc::new(verifier)));
        self
    }

    /// Tokens that are not a JWS naming a configured issuer (opaque tokens) go to
    /// `verifier`.
    pub fn otherwise(mut self, verifier: impl TokenVerifier) -> Self {
        self.otherwise = Some(Arc::new(verifier));
        self
    }

    /// Checks the routes and builds the router.
    ///
    /// # Errors
    /// [`ConfigError`] for no route at all, or an issuer given twice.
    pub fn build(self) -> Result<IssuerRouter, ConfigError> {
        if self.routes.is_empty() && self.otherwise.is_none() {
            return Err(ConfigError::MissingIssuer);
        }
        for (i, (issuer, _)) in self.routes.iter().enumerate() {
            if issuer.is_empty() {
                return Err(ConfigError::Empty("issuer"));
            }
            if self.routes[..i].iter().any(|(other, _)| other == issuer) {
                return Err(ConfigError::DuplicateIssuer(issuer.clone()));
            }
        }
        Ok(IssuerRouter {
            routes: self.routes,
            otherwise: self.otherwise,
        })
    }
}

impl IssuerRouter {
    /// Starts a configuration.
    pub fn builder() -> IssuerRouterBuilder {
        IssuerRouterBuilder::default()
    }
}

impl TokenVerifier for IssuerRouter {
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a> {
        let claimed = claimed_issuer(token);
        let route = claimed
            .as_deref()
            .and_then(|iss| self.routes.iter().find(|(issuer, _)| issuer == iss));
        match (route, &self.otherwise, claimed) {
            (Some((_, verifier)), _, _) => verifier.verify(token, request),
            (None, Some(otherwise), _) => otherwise.verify(token, request),
            (None, None, Some(_)) => {
                Box::pin(std::future::ready(Err(AuthError::invalid_token_because(
                    AuthReason::UnknownIssuer,
                    "the token's issuer is not one this server trusts",
                ))))
            }
            (None, None, None) => {
                Box::pin(std::future::ready(Err(AuthError::invalid_token_because(
                    AuthReason::MalformedToken,
                    "the access token is not a well-formed signed JWT",
                ))))
            }
        }
    }
}

/// The `iss` a compact JWS claims, unverified: three base64url segments, a header
/// object with `alg`, a payload object with a string `iss`.
pub(crate) fn claimed_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    header.get("alg")?.as_str()?;
    let payload: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match payload.get("iss") {
        Some(Value::String(iss)) => Some(iss.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn the_claimed_issuer_of_a_jws() {
        let alg = r#"{"alg":"ES256"}"#;
        assert_eq!(
            claimed_issuer(&jws(alg, r#"{"iss":"https://a"}"#)).as_deref(),
            Some("https://a")
        );
        assert_eq!(claimed_issuer(&jws(alg, r#"{"iss":7}"#)), None);
        assert_eq!(claimed_issuer(&jws(alg, r#"{"sub":"x"}"#)), None);
        assert_eq!(
            claimed_issuer(&jws(r#"{"typ":"JWT"}"#, r#"{"iss":"https://a"}"#)),
            None
        );
        assert_eq!(claimed_issuer("opaque-token"), None);
        assert_eq!(
            claimed_issuer(&format!("{}.x", jws(alg, r#"{"iss":"a"}"#))),
            None
        );
        assert_eq!(claimed_issuer("a.b.c"), None);
    }
}
