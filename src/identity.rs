//! [`ClientIdentity`]: who called, as the layer established it; and its extractor.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::AuthError;
use crate::cert::PeerCertificate;
use crate::error::AuthRejection;
use crate::token::TokenClaims;

/// The authenticated caller of a request that passed
/// [`MtlsBoundTokenLayer`](crate::MtlsBoundTokenLayer): its certificate and its token's
/// claims. Cheap to clone.
///
/// ```
/// use axum::Json;
/// use mtls_bound_token::ClientIdentity;
///
/// async fn whoami(identity: ClientIdentity) -> Json<serde_json::Value> {
///     Json(serde_json::json!({
///         "thumbprint": identity.thumbprint(),
///         "client_id": identity.client_id(),
///         "bound": identity.is_bound(),
///     }))
/// }
/// ```
///
/// As an extractor it refuses with 401 when the request did not pass the layer (a
/// routing mistake, failing closed); `Option<ClientIdentity>` gives `None` instead.
#[derive(Clone)]
pub struct ClientIdentity(Arc<Inner>);

struct Inner {
    certificate: Option<Arc<PeerCertificate>>,
    claims: TokenClaims,
    bound: bool,
}

impl ClientIdentity {
    pub(crate) fn new(
        certificate: Option<Arc<PeerCertificate>>,
        claims: TokenClaims,
        bound: bool,
    ) -> Self {
        Self(Arc::new(Inner {
            certificate,
            claims,
            bound,
        }))
    }

    /// The client certificate of the request; `None` only for an unbound token
    /// presented without one.
    pub fn certificate(&self) -> Option<&PeerCertificate> {
        self.0.certificate.as_deref()
    }

    /// The certificate's `x5t#S256` thumbprint.
    pub fn thumbprint(&self) -> Option<&str> {
        self.certificate().map(PeerCertificate::thumbprint)
    }

    /// The certificate's subject, RFC 4514.
    pub fn subject(&self) -> Option<&str> {
        self.certificate()
            .map(PeerCertificate::subject)
            .filter(|subject| !subject.is_empty())
    }

    /// Whether the token is bound to the certificate (`cnf.x5t#S256` matched). `false`
    /// only under [`BindingPolicy::Optional`](crate::BindingPolicy::Optional).
    pub fn is_bound(&self) -> bool {
        self.0.bound
    }

    /// The token's claims.
    pub fn claims(&self) -> &TokenClaims {
        &self.0.claims
    }

    /// The token's `sub`.
    pub fn token_subject(&self) -> Option<&str> {
        self.0.claims.subject()
    }

    /// The token's `client_id`.
    pub fn client_id(&self) -> Option<&str> {
        self.0.claims.client_id()
    }

    /// The token's `iss`.
    pub fn issuer(&self) -> &str {
        self.0.claims.issuer()
    }

    /// The scopes the token grants.
    pub fn scopes(&self) -> &[String] {
        self.0.claims.scopes()
    }

    /// Whether the token grants `scope` (exact match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.claims.has_scope(scope)
    }

    /// `Ok` when the token grants `scope`, else the 403 `insufficient_scope` error.
    ///
    /// # Errors
    /// [`AuthError::InsufficientScope`] naming `scope`.
    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::insufficient_scope(scope.to_owned()))
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("thumbprint", &self.thumbprint())
            .field("subject", &self.subject())
            .field("client_id", &self.client_id())
            .field("token_subject", &self.token_subject())
            .field("scopes", &self.scopes())
            .field("bound", &self.is_bound())
            .finish()
    }
}

/// Serializes as the identity summary handlers usually answer with:
///
/// ```json
/// {"thumbprint": "...", "subject": "CN=client-a,O=Example",
///  "san_dns": [], "san_uri": [], "san_ip": ["2001:db8::10"], "san_email": [],
///  "sub": "...", "client_id": "...", "scopes": ["read"], "bound": true}
/// ```
///
/// Certificate fields are `null` / empty without a certificate. Claims beyond these are
/// left out; reach them with [`claims`](Self::claims).
impl Serialize for ClientIdentity {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        let cert = self.certificate();
        let empty: &[String] = &[];
        let ips: Vec<String> = cert
            .map(|c| c.san_ip().iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let mut map = serializer.serialize_map(Some(10))?;
        map.serialize_entry("thumbprint", &self.thumbprint())?;
        map.serialize_entry("subject", &self.subject())?;
        map.serialize_entry("san_dns", cert.map_or(empty, |c| c.san_dns()))?;
        map.serialize_entry("san_uri", cert.map_or(empty, |c| c.san_uri()))?;
        map.serialize_entry("san_ip", &ips)?;
        map.serialize_entry("san_email", cert.map_or(empty, |c| c.san_email()))?;
        map.serialize_entry("sub", &self.token_subject())?;
        map.serialize_entry("client_id", &self.client_id())?;
        map.serialize_entry("scopes", self.scopes())?;
        map.serialize_entry("bound", &self.is_bound())?;
        map.end()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIdentity {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIdentity>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!(
                    "ClientIdentity extracted on a route without MtlsBoundTokenLayer; refusing"
                );
                AuthRejection::new(AuthError::MissingCredentials, &parts.extensions)
            })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientIdentity {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIdentity>().cloned())
    }
}
