//! [`MtlsBoundTokenLayer`] and its service: certificate, bearer token, verification,
//! binding, identity — in that order, and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::Response;
use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument, field};

use crate::binding::{BindingPolicy, check_binding};
use crate::config::{MtlsBoundTokenLayerBuilder, Policy};
use crate::token::{KeySet, bearer_token};
use crate::{AuthError, AuthReason, ClientIdentity};

/// Lets through only requests whose access token is valid and bound to the client
/// certificate of the request (RFC 8705 §3), and gives handlers a [`ClientIdentity`].
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use mtls_bound_token::serve::Server;
/// use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer};
/// use mtls_bound_token::tls::{TlsListener, TlsServerConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let auth = MtlsBoundTokenLayer::builder()
///     .issuer("https://as.example")
///     .audience("https://api.example")
///     .jwks_file("jwks.json")
///     .build()?;
/// let app = Router::new()
///     .route("/whoami", get(|id: ClientIdentity| async move { format!("{id:?}") }))
///     .layer(auth);
///
/// let tls = TlsServerConfig::builder()
///     .certificate_chain_file("server.crt")
///     .private_key_file("server.key")
///     .client_ca_file("ca.crt")
///     .build()?;
/// let listener = TlsListener::bind("127.0.0.1:8443", tls).await?;
/// Server::default().serve(listener, app).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MtlsBoundTokenLayer {
    policy: Arc<Policy>,
}

impl std::fmt::Debug for MtlsBoundTokenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsBoundTokenLayer")
            .field("binding", &self.policy.binding)
            .finish_non_exhaustive()
    }
}

impl MtlsBoundTokenLayer {
    /// Starts a configuration with strict defaults.
    pub fn builder() -> MtlsBoundTokenLayerBuilder {
        MtlsBoundTokenLayerBuilder::default()
    }

    /// Hits and misses of the verified-token cache; `None` when it is off.
    pub fn token_cache_stats(&self) -> Option<crate::token::TokenCacheStats> {
        self.policy.token_cache.as_ref().map(|cache| cache.stats())
    }

    /// The strict layer in one call: tokens from `issuer`, for `audience`, verified with
    /// `keys`, bound to the connection's client certificate. Same as
    /// `builder().issuer(..).audience(..).key_set(..).build()`.
    ///
    /// # Errors
    /// [`ConfigError`](crate::ConfigError) when `issuer` or `audience` is empty.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: KeySet,
    ) -> Result<Self, crate::ConfigError> {
        Self::builder()
            .issuer(issuer)
            .audience(audience)
            .key_set(keys)
            .build()
    }

    pub(crate) fn from_policy(policy: Policy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for MtlsBoundTokenLayer {
    type Service = MtlsBoundToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MtlsBoundToken {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The service [`MtlsBoundTokenLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct MtlsBoundToken<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for MtlsBoundToken<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsBoundToken")
            .field("inner", &self.inner)
            .field("binding", &self.policy.binding)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for MtlsBoundToken<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = Arc::clone(&self.policy);
        // DEBUG, as tower-http's TraceLayer has its spans: at the usual INFO, a span per
        // request (and the formatting of its fields) would cost more than a cache hit.
        // Made only when a subscriber takes DEBUG: axum's default `tower-log` feature
        // turns on tracing's `log` bridge, and with it every span would be built and
        // handed to `log` even when nothing records it.
        let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "mtls_bound_token",
                outcome = field::Empty,
                client.thumbprint = field::Empty,
                client.subject = field::Empty,
                client_id = field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let future = async move {
            // Whatever the client or an outer layer put there is not ours to trust.
            request.extensions_mut().remove::<ClientIdentity>();
            let (parts, body) = request.into_parts();
            let outcome = authorize(&policy, &parts).await;
            let mut request = Request::from_parts(parts, body);
            match outcome {
                Ok(identity) => {
                    crate::telemetry::request("accepted", "accepted");
                    let span = tracing::Span::current();
                    span.record("outcome", "accepted");
                    if let Some(thumbprint) = identity.thumbprint() {
                        span.record("client.thumbprint", thumbprint);
                    }
                    // A forwarded certificate's subject is read on first use: not
                    // for a span that goes nowhere.
                    if !span.is_disabled()
                        && let Some(subject) = identity.subject()
                    {
                        span.record("client.subject", subject);
                    }
                    if let Some(client_id) = identity.client_id() {
                        span.record("client_id", client_id);
                    }
                    tracing::debug!(bound = identity.is_bound(), "request authorized");
                    let extensions = request.extensions_mut();
                    extensions.insert(identity);
                    if !policy.refusals.is_default() {
                        extensions.insert(policy.refusals.clone());
                    }
                    inner.call(request).await
                }
                Err(error) => {
                    crate::telemetry::request("refused", error.reason().as_str());
                    tracing::Span::current().record("outcome", "refused");
                    tracing::debug!(
                        status = error.status().as_u16(),
                        error = error.error_code().unwrap_or("none"),
                        reason = error.reason().as_str(),
                        description = %error.description(),
                        "request refused"
                    );
                    Ok(error.to_response_with(&policy.refusals))
                }
            }
        };
        ResponseFuture {
            inner: Box::pin(future.instrument(span)),
        }
    }
}

/// The five steps for one request.
async fn authorize(policy: &Policy, request: &Parts) -> Result<ClientIdentity, AuthError> {
    let certificate = policy
        .certificate_source
        .client_certificate(&request.headers, &request.extensions)?;
    let token = bearer_token(&request.headers, policy.max_authorization_len)?;
    // Without a certificate no token can pass a required binding: refuse before the
    // verifier spends a signature check or an introspection on it.
    if certificate.is_none() && policy.binding == BindingPolicy::Required {
        return Err(AuthError::invalid_token_because(
            AuthReason::NoCertificate,
            "tokens must be bound to a certificate, but the request presented none",
        ));
    }
    let claims = policy.verifier.verify(token, request).await?;
    let bound = check_binding(policy.binding, &claims, certificate.as_deref())?;
    Ok(ClientIdentity::new(certificate, claims, bound))
}

/// The future of [`MtlsBoundToken`]: authorization, then the inner service.
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>,
}

impl<E> std::fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
