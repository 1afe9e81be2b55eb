//! Scope gating behind [`MtlsBoundTokenLayer`](crate::MtlsBoundTokenLayer): a layer for
//! routes ([`RequireScopeLayer`]) and an extractor for handlers ([`WithScope`]).
//!
//! ```
//! use axum::{Router, routing::get};
//! use mtls_bound_token::{RequireScopeLayer, RequiredScope, WithScope};
//!
//! struct Admin;
//! impl RequiredScope for Admin {
//!     const SCOPE: &'static str = "admin";
//! }
//!
//! async fn admin(caller: WithScope<Admin>) -> String {
//!     format!("hello {:?}", caller.client_id())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/admin", get(admin))
//!     .route("/reports", get(|| async { "..." }).route_layer(RequireScopeLayer::new("reports")));
//! ```
//!
//! Both answer 403 `insufficient_scope` with `scope="..."` when the token lacks the
//! scope, and 401 when the request did not pass the authentication layer at all.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::AuthRejection;
use crate::{AuthError, ClientIdentity};

/// Refuses requests whose token lacks one scope.
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    scope: Arc<str>,
}

impl RequireScopeLayer {
    /// Requires `scope`, matched exactly against the token's scopes.
    pub fn new(scope: impl Into<Arc<str>>) -> Self {
        Self {
            scope: scope.into(),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            scope: Arc::clone(&self.scope),
        }
    }
}

/// The service of [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope<S> {
    inner: S,
    scope: Arc<str>,
}

impl<S, B> Service<Request<B>> for RequireScope<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check(request.extensions(), &self.scope) {
            Ok(_) => Either::Left(self.inner.call(request)),
            Err(rejection) => Either::Right(ready(Ok(rejection.into_response()))),
        }
    }
}

fn check(extensions: &http::Extensions, scope: &str) -> Result<ClientIdentity, AuthRejection> {
    let error = match extensions.get::<ClientIdentity>() {
        Some(identity) => match identity.require_scope(scope) {
            Ok(()) => return Ok(identity.clone()),
            Err(error) => error,
        },
        None => AuthError::MissingCredentials,
    };
    crate::telemetry::request("refused", error.reason().as_str());
    tracing::debug!(scope, %error, "request refused by scope check");
    Err(AuthRejection::new(error, extensions))
}

/// Names a scope for [`WithScope`]: a unit type per scope, so that a handler's
/// signature says which scope it needs.
///
/// ```
/// use mtls_bound_token::RequiredScope;
///
/// /// Tokens that may read reports.
/// pub struct ReportsRead;
/// impl RequiredScope for ReportsRead {
///     const SCOPE: &'static str = "reports:read";
/// }
/// ```
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope, matched exactly.
    const SCOPE: &'static str;
}

/// Extracts the [`ClientIdentity`] of a request whose token grants `S::SCOPE`; refuses
/// with 403 `insufficient_scope` otherwise. Derefs to the identity. Use it on routes
/// behind [`MtlsBoundTokenLayer`](crate::MtlsBoundTokenLayer).
///
/// ```
/// use axum::{Router, routing::get};
/// use mtls_bound_token::{RequiredScope, WithScope};
///
/// struct Admin;
/// impl RequiredScope for Admin {
///     const SCOPE: &'static str = "admin";
/// }
///
/// // 403 with `scope="admin"` unless the token grants it; then the identity derefs.
/// async fn rotate_keys(caller: WithScope<Admin>) -> String {
///     format!("{} may rotate keys", caller.client_id().unwrap_or("?"))
/// }
///
/// let app: Router = Router::new().route("/admin/rotate", get(rotate_keys));
/// ```
pub struct WithScope<S> {
    identity: ClientIdentity,
    _scope: PhantomData<fn() -> S>,
}

impl<S: RequiredScope> std::fmt::Debug for WithScope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithScope")
            .field("scope", &S::SCOPE)
            .field("identity", &self.identity)
            .finish()
    }
}

impl<S> WithScope<S> {
    /// The identity.
    pub fn into_inner(self) -> ClientIdentity {
        self.identity
    }
}

impl<S> Deref for WithScope<S> {
    type Target = ClientIdentity;

    fn deref(&self) -> &ClientIdentity {
        &self.identity
    }
}

impl<St: Send + Sync, S: RequiredScope> FromRequestParts<St> for WithScope<S> {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        let identity = check(&parts.extensions, S::SCOPE)?;
        Ok(Self {
            identity,
            _scope: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use axum::body::Body;
    use axum::response::Response;
    use http::Request;
    use tower_layer::Layer;
    use tower_service::Service;

    use super::RequireScopeLayer;

    /// A service that is not ready yet.
    struct Busy;

    impl Service<Request<Body>> for Busy {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Pending
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            std::future::ready(Ok(Response::new(Body::empty())))
        }
    }

    #[test]
    fn readiness_is_the_inner_services() {
        // Backpressure must pass through: claiming readiness the inner service does not
        // have would make callers call a service that is not ready.
        let mut service = RequireScopeLayer::new("admin").layer(Busy);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(service.poll_ready(&mut cx).is_pending());
    }
}
