//! Where the certificate of a request comes from.

use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap};

use super::PeerCertificate;
use crate::{AuthError, ConnectionInfo};

/// Finds the client certificate of a request.
///
/// The layer asks its source once per request, before it looks at the token. `Ok(None)`
/// means the request has no client certificate (a bound token will then be refused);
/// an error refuses the request at once.
pub trait ClientCertificateSource: Send + Sync + 'static {
    /// The certificate of this request, if any.
    ///
    /// # Errors
    /// An [`AuthError`] when the request carries certificate data that cannot be used.
    fn client_certificate(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<Arc<PeerCertificate>>, AuthError>;
}

/// The certificate the client presented in this connection's TLS handshake, read from
/// the request's `ConnectInfo<ConnectionInfo>`. The default source.
///
/// [`Server`](crate::serve::Server) puts it there (or `axum::serve` with
/// `into_make_service_with_connect_info::<ConnectionInfo>()`); another TLS server
/// inserts `ConnectInfo(ConnectionInfo::new(..))` into each request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectionCertificate;

impl ClientCertificateSource for ConnectionCertificate {
    fn client_certificate(
        &self,
        _headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<Arc<PeerCertificate>>, AuthError> {
        match extensions.get::<ConnectInfo<ConnectionInfo>>() {
            Some(ConnectInfo(info)) => Ok(info.client_certificate().cloned()),
            None => {
                tracing::debug!(
                    "no ConnectInfo<ConnectionInfo> on the request: serve with \
                     mtls_bound_token::serve::Server, or axum::serve with \
                     into_make_service_with_connect_info::<ConnectionInfo>()"
                );
                Ok(None)
            }
        }
    }
}
