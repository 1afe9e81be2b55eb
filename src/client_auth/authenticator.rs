//! The registered clients, checked against the certificate of a token request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use rustls::pki_types::{CertificateDer, UnixTime};

use super::{ClientAuthMethod, ClientRegistration, ExpectedIdentity};
use crate::cert::{ClientCertificateSource, ConnectionCertificate, PeerCertificate};
use crate::tls::{CertificateFacts, WARNING_INTERVAL, Warnings, explain, unix_now};
use crate::trust::ClientTrust;

/// A token request refused before a token is issued (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// 401 `invalid_client`: unknown client, no certificate, or one that does not fit
    /// the registration.
    #[error("invalid_client: {0}")]
    InvalidClient(Cow<'static, str>),
    /// 400 `invalid_request`: certificate data that cannot be read.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
}

impl ClientAuthError {
    /// The RFC 6749 error code.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }
}

impl IntoResponse for ClientAuthError {
    fn into_response(self) -> Response {
        let (status, description) = match &self {
            Self::InvalidClient(d) => (StatusCode::UNAUTHORIZED, d.clone().into_owned()),
            Self::InvalidRequest(d) => (StatusCode::BAD_REQUEST, d.clone()),
        };
        let body =
            serde_json::json!({"error": self.error_code(), "error_description": description});
        let mut response = (status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The clients of a token endpoint and how their certificates are checked.
pub struct ClientAuthenticator {
    clients: HashMap<String, ClientRegistration>,
    ca: Option<Ca>,
    source: Arc<dyn ClientCertificateSource>,
    /// Refusals worth an operator's attention, once a minute per cause.
    warnings: Arc<Warnings>,
}

impl std::fmt::Debug for ClientAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthenticator")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What `tls_client_auth` certificates must chain to.
struct Ca {
    trust: ClientTrust,
}

/// Builds a [`ClientAuthenticator`].
#[derive(Default)]
pub struct ClientAuthenticatorBuilder {
    clients: Vec<ClientRegistration>,
    ca_pem: Option<Vec<u8>>,
    trust: Option<ClientTrust>,
    source: Option<Arc<dyn ClientCertificateSource>>,
}

impl std::fmt::Debug for ClientAuthenticatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuthenticatorBuilder")
            .field(
                "clients",
                &self
                    .clients
                    .iter()
                    .map(ClientRegistration::client_id)
                    .collect::<Vec<_>>(),
            )
            .field("ca", &(self.ca_pem.is_some() || self.trust.is_some()))
            .finish_non_exhaustive()
    }
}

/// Why an authenticator cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ClientAuthConfigError(String);

impl ClientAuthenticator {
    /// Starts a configuration.
    pub fn builder() -> ClientAuthenticatorBuilder {
        ClientAuthenticatorBuilder::default()
    }

    /// The registration of `client_id`, if any.
    pub fn client(&self, client_id: &str) -> Option<&ClientRegistration> {
        self.clients.get(client_id)
    }

    /// Authenticates `client_id` by `certificate`, the one of the token request.
    ///
    /// # Errors
    /// [`ClientAuthError::InvalidClient`] when the client is unknown, presented no
    /// certificate, or one that does not fit its registration (for `tls_client_auth`:
    /// not chaining to the CA bundle, or without the registered identity).
    pub fn authenticate(
        &self,
        client_id: &str,
        certificate: Option<Arc<PeerCertificate>>,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        let refuse = |why: &'static str| ClientAuthError::InvalidClient(Cow::Borrowed(why));
        let registration = self
            .clients
            .get(client_id)
            .ok_or_else(|| refuse("unknown client"))?;
        let certificate =
            certificate.ok_or_else(|| refuse("no client certificate was presented"))?;
        match registration.method() {
            ClientAuthMethod::TlsClientAuth(identity) => {
                if let Err(error) = self.chains_to_ca(&certificate) {
                    self.explain_chain(client_id, &certificate, &error);
                    return Err(refuse(
                        "the client certificate does not chain to a trusted CA",
                    ));
                }
                if !identity.matches(&certificate) {
                    return Err(self.mismatch(client_id, identity, &certificate));
                }
            }
            ClientAuthMethod::SelfSignedTlsClientAuth(_)
            | ClientAuthMethod::SelfSignedTlsClientAuthByUri(_) => {
                if !registration.is_registered_certificate(&certificate) {
                    return Err(refuse(
                        "the client certificate is not one the client registered",
                    ));
                }
            }
        }
        tracing::debug!(
            client_id,
            thumbprint = certificate.thumbprint(),
            "client authenticated"
        );
        Ok(AuthenticatedClient {
            registration: registration.clone(),
            certificate,
        })
    }

    /// [`authenticate`](Self::authenticate), after fetching the `jwks_uri` of a client
    /// registered by one when `certificate` is not in its set (or the set is no longer
    /// fresh), at most once per [`DEFAULT_CLIENT_JWKS_REFETCH`](super::DEFAULT_CLIENT_JWKS_REFETCH):
    /// a client that publishes a new certificate can use it at once.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn authenticate_fresh(
        &self,
        client_id: &str,
        certificate: Option<Arc<PeerCertificate>>,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        if let (Some(registration), Some(certificate)) = (self.clients.get(client_id), &certificate)
            && let ClientAuthMethod::SelfSignedTlsClientAuthByUri(jwks) = registration.method()
        {
            jwks.refresh_for(certificate).await;
        }
        self.authenticate(client_id, certificate)
    }

    /// Chain validation is the endpoint's own, whatever the TLS layer or a proxy did.
    fn chains_to_ca(&self, certificate: &PeerCertificate) -> Result<(), rustls::Error> {
        let (Some(ca), Some(leaf)) = (&self.ca, certificate.der()) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let intermediates: Vec<CertificateDer<'_>> = certificate
            .chain_der()
            .iter()
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        ca.trust
            .verify_chain(&CertificateDer::from(leaf), &intermediates, UnixTime::now())
            .map(|_| ())
    }

    /// Logs why a `tls_client_auth` certificate does not chain, in the words the TLS
    /// listener uses for the same refusal.
    fn explain_chain(&self, client_id: &str, certificate: &PeerCertificate, error: &rustls::Error) {
        let Some(ca) = &self.ca else { return };
        let facts = certificate.der().and_then(CertificateFacts::of);
        let expectation = ca.trust.current().expectation();
        let explanation = explain(facts.as_ref(), error, &expectation, unix_now());
        if let Some(suppressed) = self.warnings.admit(explanation.cause) {
            tracing::warn!(
                client_id,
                subject = certificate.subject(),
                thumbprint = certificate.thumbprint(),
                cause = explanation.cause,
                suppressed,
                "tls_client_auth refused: {}",
                explanation.message
            );
        }
    }

    /// The refusal of a certificate that does not carry the registered identity. When a
    /// registered subject DN has the certificate's RDNs in another order (openssl's
    /// display order, where RFC 4514's is meant), it says so, naming the certificate's
    /// order: that tells the client nothing it does not know (its own certificate's
    /// subject, and no attribute of the registration that the certificate lacks), and it
    /// is the one mistake that is invisible when the two are compared by eye. Otherwise
    /// the client learns nothing of the registration; the log tells the operator both.
    fn mismatch(
        &self,
        client_id: &str,
        identity: &ExpectedIdentity,
        certificate: &PeerCertificate,
    ) -> ClientAuthError {
        if let ExpectedIdentity::SubjectDn(registered) = identity
            && registered.equals_in_other_order(certificate.subject_name())
        {
            if self.warnings.admit("subject_dn_order").is_some() {
                tracing::warn!(
                    client_id,
                    registered = %registered,
                    certificate = certificate.subject(),
                    "client {client_id:?} refused only because its registered subject_dn \
                     lists the RDNs in another order: register it as {}",
                    certificate.subject()
                );
            }
            return ClientAuthError::InvalidClient(Cow::Owned(format!(
                "the client certificate's subject has the registered \
                 tls_client_auth_subject_dn's attributes in another order; RFC 4514 writes \
                 the certificate's subject as {} (the reverse of openssl's display order)",
                certificate.subject()
            )));
        }
        if let Some(suppressed) = self.warnings.admit("identity_mismatch") {
            tracing::warn!(
                client_id,
                registered = %identity,
                subject = certificate.subject(),
                san_dns = ?certificate.san_dns(),
                san_uri = ?certificate.san_uri(),
                san_ip = ?certificate.san_ip(),
                san_email = ?certificate.san_email(),
                thumbprint = certificate.thumbprint(),
                suppressed,
                "tls_client_auth refused: the certificate does not carry the identity the \
                 client is registered with (compare `registered` with the certificate's \
                 subject and SANs)"
            );
        }
        ClientAuthError::InvalidClient(Cow::Borrowed(
            "the client certificate does not match the client's registration",
        ))
    }
}

impl ClientAuthenticatorBuilder {
    /// Registers a client.
    pub fn register(mut self, client: ClientRegistration) -> Self {
        self.clients.push(client);
        self
    }

    /// The CA bundle (PEM or DER) that `tls_client_auth` certificates must chain to;
    /// checked at [`build`](Self::build) as the TLS listener's is.
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// What `tls_client_auth` certificates must chain to, CRLs included: give it the
    /// same [`ClientTrust`] as the TLS listener, so that both judge a certificate alike
    /// and a [`replace_with`](ClientTrust::replace_with) reaches both. In place of
    /// [`client_ca_pem`](Self::client_ca_pem).
    pub fn client_trust(mut self, trust: ClientTrust) -> Self {
        self.trust = Some(trust);
        self
    }

    /// Where the request's certificate comes from; default: the TLS connection. A
    /// [`ProxyCertificate`](crate::cert::ProxyCertificate) serves behind a proxy.
    pub fn certificate_source(mut self, source: impl ClientCertificateSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// A duplicate `client_id`, a CA bundle without certificates (or with a certificate
    /// that is not a CA), `tls_client_auth` clients without a CA bundle, an empty
    /// registered subject DN; the message names the client.
    pub fn build(self) -> Result<ClientAuthenticator, ClientAuthConfigError> {
        let trust = match (self.trust, &self.ca_pem) {
            (Some(_), Some(_)) => {
                return Err(ClientAuthConfigError(
                    "give the client CA once: .client_ca_pem(..) or .client_trust(..)".into(),
                ));
            }
            (Some(trust), None) => Some(trust),
            (None, Some(bytes)) => Some(
                ClientTrust::builder()
                    .ca_pem(bytes.clone())
                    .build()
                    .map_err(|e| ClientAuthConfigError(format!("client CA bundle: {e}")))?,
            ),
            (None, None) => None,
        };
        if trust.as_ref().is_some_and(|t| !t.validates_chains()) {
            return Err(ClientAuthConfigError(
                "the client trust has no CA bundle, so tls_client_auth certificates could \
                 chain to nothing: give it .ca_file(path)"
                    .into(),
            ));
        }
        let ca = trust.map(|trust| Ca { trust });
        let mut clients = HashMap::new();
        for client in self.clients {
            if ca.is_none() && matches!(client.method(), ClientAuthMethod::TlsClientAuth(_)) {
                return Err(ClientAuthConfigError(format!(
                    "client {:?} uses tls_client_auth, which needs a client CA bundle",
                    client.client_id()
                )));
            }
            if let ClientAuthMethod::TlsClientAuth(ExpectedIdentity::SubjectDn(dn)) =
                client.method()
                && dn.is_empty()
            {
                return Err(ClientAuthConfigError(format!(
                    "client {:?}: the registered subject DN is empty, which no certificate \
                     can match",
                    client.client_id()
                )));
            }
            let id = client.client_id().to_owned();
            if clients.insert(id.clone(), client).is_some() {
                return Err(ClientAuthConfigError(format!(
                    "client {id:?} is registered twice"
                )));
            }
        }
        Ok(ClientAuthenticator {
            clients,
            ca,
            source: self
                .source
                .unwrap_or_else(|| Arc::new(ConnectionCertificate)),
            warnings: Warnings::new(WARNING_INTERVAL),
        })
    }
}

/// A client authenticated by its certificate.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    registration: ClientRegistration,
    certificate: Arc<PeerCertificate>,
}

impl AuthenticatedClient {
    /// The client's registration.
    pub fn registration(&self) -> &ClientRegistration {
        &self.registration
    }

    /// The certificate it authenticated with: the one to bind its tokens to.
    pub fn certificate(&self) -> &PeerCertificate {
        &self.certificate
    }
}

/// The certificate of a token request, ready to authenticate a `client_id` from the
/// request body. Needs `Arc<ClientAuthenticator>` in the router state.
pub struct TlsClient {
    certificate: Option<Arc<PeerCertificate>>,
    authenticator: Arc<ClientAuthenticator>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// See [`ClientAuthenticator::authenticate`].
    ///
    /// # Errors
    /// [`ClientAuthError::InvalidClient`].
    pub fn authenticate(&self, client_id: &str) -> Result<AuthenticatedClient, ClientAuthError> {
        self.authenticator
            .authenticate(client_id, self.certificate.clone())
    }

    /// [`ClientAuthenticator::authenticate_fresh`] with this request's certificate: use
    /// it when clients are registered by `jwks_uri`.
    ///
    /// # Errors
    /// As [`authenticate`](Self::authenticate).
    pub async fn authenticate_fresh(
        &self,
        client_id: &str,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        self.authenticator
            .authenticate_fresh(client_id, self.certificate.clone())
            .await
    }

    /// The certificate of the request, before any client is authenticated.
    pub fn certificate(&self) -> Option<&PeerCertificate> {
        self.certificate.as_deref()
    }
}

impl<S> FromRequestParts<S> for TlsClient
where
    Arc<ClientAuthenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ClientAuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authenticator = Arc::<ClientAuthenticator>::from_ref(state);
        let certificate = authenticator
            .source
            .client_certificate(&parts.headers, &parts.extensions)
            .map_err(|e| ClientAuthError::InvalidRequest(e.description().into_owned()))?;
        Ok(Self {
            certificate,
            authenticator,
        })
    }
}
