//! The layer's builder, and the checked policy it produces.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;

use crate::binding::BindingPolicy;
use crate::cert::{ClientCertificateSource, ConnectionCertificate};
use crate::error::{ErrorResponder, Refusals};
use crate::token::{
    CachingVerifier, DEFAULT_TOKEN_CACHE_BYTES, DEFAULT_TOKEN_CACHE_ENTRIES,
    DEFAULT_TOKEN_CACHE_TTL, JwtVerifierBuilder, KeySet, KeySource, TokenVerifier,
};
use crate::{AuthError, MtlsBoundTokenLayer};

/// The default clock-skew leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway the builder accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// The default limit on the `Authorization` header's size.
pub const DEFAULT_MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// A configuration the builder refuses, with what to fix.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No issuer was set.
    #[error(
        "no issuer configured: call .issuer(\"https://issuer.example\") with the iss your tokens carry"
    )]
    MissingIssuer,
    /// No audience was set.
    #[error(
        "no audience configured: call .audience(\"...\") with this resource server's identifier"
    )]
    MissingAudience,
    /// No keys were given.
    #[error(
        "no verification keys configured: call .jwks_file(path), .jwks_json(..), .key_set(..) or .key_source(..)"
    )]
    MissingKeys,
    /// The key set could not be loaded.
    #[error("verification keys: {0}")]
    Keys(#[from] crate::token::KeyError),
    /// An empty string where a value is needed.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Leeway beyond [`MAX_LEEWAY`].
    #[error(
        "leeway of {0:?} is too large: at most {MAX_LEEWAY:?}; clocks that far apart need fixing, not tolerating"
    )]
    LeewayTooLarge(Duration),
    /// A proxy certificate source that trusts no proxy.
    #[error(
        "no trusted proxy: call .trusted_proxy(\"10.0.0.5\".parse()?) (an address or a CIDR) with exactly the proxy's addresses"
    )]
    NoTrustedProxy,
    /// Not a valid HTTP header name.
    #[error("{0:?} is not a valid HTTP header name")]
    InvalidHeaderName(String),
    /// A trusted proxy subject that is empty or not an RFC 4514 name.
    #[error(
        "trusted proxy subject {subject:?}: {problem}; give the proxy certificate's subject in \
         RFC 4514 form, e.g. \"CN=edge-proxy,O=Example\""
    )]
    InvalidProxySubject {
        /// The subject as given.
        subject: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Not an `x5t#S256` thumbprint.
    #[error("{0:?} is not an x5t#S256 thumbprint (base64url of a SHA-256, no padding)")]
    InvalidThumbprint(String),
    /// A custom verifier together with the built-in JWT verifier's options.
    #[error(
        "both .verifier(..) and JWT options (issuer, audience, keys, leeway, token types) are set: \
         configure the JWT checks on the verifier you give, or drop .verifier(..)"
    )]
    VerifierAndJwtOptions,
    /// A protected resource identifier or metadata URL that cannot be used.
    #[error(
        "resource {resource:?}: {problem}; give an absolute https URL such as \"https://api.example\""
    )]
    InvalidResource {
        /// The value as given.
        resource: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two routes of an [`IssuerRouter`](crate::token::IssuerRouter) for one issuer.
    #[error("issuer {0:?} is configured twice; give each issuer one verifier")]
    DuplicateIssuer(String),
    /// A verified-token cache TTL over a day.
    #[error("a token cache TTL of {0:?} is over the maximum of a day")]
    TokenCacheTtlTooLong(Duration),
    /// A size limit of zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Builds an [`MtlsBoundTokenLayer`]. Starts strict: tokens must be bound, `typ` must be
/// `at+jwt`, leeway is 30 s. Each weakening is a method that says so.
///
/// ```
/// # fn jwks() -> &'static str { r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"# }
/// use mtls_bound_token::MtlsBoundTokenLayer;
///
/// let layer = MtlsBoundTokenLayer::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .jwks_json(jwks())
///     .build()?;
/// # Ok::<(), mtls_bound_token::ConfigError>(())
/// ```
pub struct MtlsBoundTokenLayerBuilder {
    jwt: JwtVerifierBuilder,
    verifier: Option<Arc<dyn TokenVerifier>>,
    binding: BindingPolicy,
    max_authorization_len: usize,
    certificate_source: Arc<dyn ClientCertificateSource>,
    responder: Option<ErrorResponder>,
    resource_metadata: Option<String>,
    token_cache: bool,
}

impl std::fmt::Debug for MtlsBoundTokenLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsBoundTokenLayerBuilder")
            .field("jwt", &self.jwt)
            .field("custom_verifier", &self.verifier.is_some())
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Default for MtlsBoundTokenLayerBuilder {
    fn default() -> Self {
        Self {
            jwt: JwtVerifierBuilder::default(),
            verifier: None,
            binding: BindingPolicy::Required,
            max_authorization_len: DEFAULT_MAX_AUTHORIZATION_LEN,
            certificate_source: Arc::new(ConnectionCertificate),
            responder: None,
            resource_metadata: None,
            token_cache: true,
        }
    }
}

impl MtlsBoundTokenLayerBuilder {
    /// The `iss` every token must carry, compared exactly. Required.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.jwt = self.jwt.issuer(issuer);
        self
    }

    /// This resource server's identifier: `aud` must equal it or, as an array, contain
    /// it. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.jwt = self.jwt.audience(audience);
        self
    }

    /// Verification keys from a JWKS file, read when [`build`](Self::build) runs.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.jwt = self.jwt.jwks_file(path);
        self
    }

    /// Verification keys from a JWKS document.
    pub fn jwks_json(mut self, json: impl AsRef<[u8]>) -> Self {
        self.jwt = self.jwt.jwks_json(json);
        self
    }

    /// Verification keys from a parsed [`KeySet`].
    pub fn key_set(mut self, keys: KeySet) -> Self {
        self.jwt = self.jwt.key_set(keys);
        self
    }

    /// Verification keys from any [`KeySource`].
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.jwt = self.jwt.key_source(source);
        self
    }

    /// Verifies tokens with `verifier` instead of the built-in JWT verifier (whose
    /// methods above, issuer to token types, must then not be used). The binding and
    /// scope checks stay the layer's.
    pub fn verifier(mut self, verifier: impl TokenVerifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// Turns the verified-token cache off: every request's token is verified (its
    /// signature checked, or introspected). The cache is on by default; see
    /// [`CachingVerifier`](crate::token::CachingVerifier) for what it keeps and when it
    /// forgets.
    pub fn without_token_cache(mut self) -> Self {
        self.token_cache = false;
        self
    }

    /// Clock-skew leeway for `exp` and `nbf`; default 30 s, at most 5 minutes.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.jwt = self.jwt.leeway(leeway);
        self
    }

    /// **Weakens**: accepts tokens with no `cnf` at all as plain bearer tokens
    /// ([`ClientIdentity::is_bound`](crate::ClientIdentity::is_bound) is `false`). Such
    /// a token is as good as stolen once it leaks. Tokens that carry a `cnf` must still
    /// match the certificate.
    pub fn allow_unbound_tokens(mut self) -> Self {
        self.binding = BindingPolicy::Optional;
        self
    }

    /// Sets the binding policy directly.
    pub fn binding(mut self, policy: BindingPolicy) -> Self {
        self.binding = policy;
        self
    }

    /// **Weakens**: accepts this JOSE `typ` besides RFC 9068's `at+jwt` (e.g. `"JWT"`,
    /// which many servers put on access tokens). Without the explicit type, an ID token
    /// signed by the same issuer can be confused with an access token.
    pub fn accept_token_type(mut self, typ: impl Into<String>) -> Self {
        self.jwt = self.jwt.accept_token_type(typ);
        self
    }

    /// **Weakens**: accepts any `typ`, or none.
    pub fn accept_any_token_type(mut self) -> Self {
        self.jwt = self.jwt.accept_any_token_type();
        self
    }

    /// Largest `Authorization` header accepted; default 16 KiB. Larger → 400.
    pub fn max_authorization_len(mut self, bytes: usize) -> Self {
        self.max_authorization_len = bytes;
        self
    }

    /// Where each request's client certificate comes from; default
    /// [`ConnectionCertificate`] (the TLS handshake of the connection).
    pub fn certificate_source(mut self, source: impl ClientCertificateSource) -> Self {
        self.certificate_source = Arc::new(source);
        self
    }

    /// Makes the body of every refusal. Status, `WWW-Authenticate` and
    /// `Cache-Control: no-store` are set by the crate after `f` runs.
    ///
    /// ```
    /// use axum::{Json, response::IntoResponse};
    /// use mtls_bound_token::MtlsBoundTokenLayer;
    ///
    /// let builder = MtlsBoundTokenLayer::builder().error_response(|err| {
    ///     Json(serde_json::json!({
    ///         "type": "about:blank",
    ///         "title": err.error_code().unwrap_or("unauthorized"),
    ///         "detail": err.description(),
    ///     }))
    ///     .into_response()
    /// });
    /// ```
    pub fn error_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&AuthError) -> Response + Send + Sync + 'static,
    {
        self.responder = Some(ErrorResponder(Arc::new(f)));
        self
    }

    /// Adds RFC 9728's `resource_metadata="<url>"` to every challenge, pointing clients
    /// at this resource's metadata document (see
    /// [`ProtectedResourceMetadata::url`](crate::ProtectedResourceMetadata::url)).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    /// [`ConfigError`] saying what is missing or wrong: no issuer, audience or keys, an
    /// unreadable or unusable JWKS, a leeway over 5 minutes.
    pub fn build(self) -> Result<MtlsBoundTokenLayer, ConfigError> {
        if self.max_authorization_len == 0 {
            return Err(ConfigError::Zero("max_authorization_len"));
        }
        if let Some(url) = &self.resource_metadata {
            crate::metadata::check_metadata_url(url)?;
        }
        let verifier: Arc<dyn TokenVerifier> = match self.verifier {
            Some(_) if self.jwt.is_configured() => return Err(ConfigError::VerifierAndJwtOptions),
            Some(verifier) => verifier,
            None => {
                let jwt = self.jwt.build()?;
                tracing::info!(
                    issuer = %jwt.issuer(),
                    audience = %jwt.audience(),
                    binding = ?self.binding,
                    "access tokens: verified for this issuer and audience"
                );
                Arc::new(jwt)
            }
        };
        let (verifier, token_cache) = if self.token_cache {
            let cache = Arc::new(CachingVerifier::around(
                verifier,
                DEFAULT_TOKEN_CACHE_ENTRIES,
                DEFAULT_TOKEN_CACHE_BYTES,
                DEFAULT_TOKEN_CACHE_TTL,
            )?);
            (Arc::clone(&cache) as Arc<dyn TokenVerifier>, Some(cache))
        } else {
            (verifier, None)
        };
        Ok(MtlsBoundTokenLayer::from_policy(Policy {
            verifier,
            token_cache,
            binding: self.binding,
            max_authorization_len: self.max_authorization_len,
            certificate_source: self.certificate_source,
            refusals: Refusals {
                responder: self.responder,
                resource_metadata: self.resource_metadata.map(Into::into),
            },
        }))
    }
}

/// A checked configuration, shared by every clone of the layer and its services.
pub(crate) struct Policy {
    pub(crate) verifier: Arc<dyn TokenVerifier>,
    pub(crate) token_cache: Option<Arc<CachingVerifier>>,
    pub(crate) binding: BindingPolicy,
    pub(crate) max_authorization_len: usize,
    pub(crate) certificate_source: Arc<dyn ClientCertificateSource>,
    pub(crate) refusals: Refusals,
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn error(builder: MtlsBoundTokenLayerBuilder) -> String {
        builder
            .build()
            .expect_err("configuration must be refused")
            .to_string()
    }

    #[test]
    fn refuses_incomplete_configuration_with_the_fix() {
        let full = || {
            MtlsBoundTokenLayer::builder()
                .issuer("i")
                .audience("a")
                .jwks_json(JWKS)
        };
        assert!(full().build().is_ok());
        assert!(
            error(MtlsBoundTokenLayer::builder().audience("a").jwks_json(JWKS))
                .contains(".issuer(")
        );
        assert!(
            error(MtlsBoundTokenLayer::builder().issuer("i").jwks_json(JWKS))
                .contains(".audience(")
        );
        assert!(
            error(MtlsBoundTokenLayer::builder().issuer("i").audience("a")).contains(".jwks_file(")
        );
        assert!(error(full().issuer("")).contains("issuer must not be empty"));
        assert!(error(full().leeway(Duration::from_secs(3600))).contains("too large"));
        assert!(
            error(full().jwks_file("/nonexistent/jwks.json"))
                .contains("cannot read JWKS file /nonexistent/jwks.json")
        );
        assert!(error(full().jwks_json("{}")).contains("no \"keys\" array"));
    }
}
