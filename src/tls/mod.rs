//! Terminating mTLS in-process with rustls, so that every request carries the client
//! certificate of its connection.
//!
//! [`TlsServerConfig`] is checked at start-up; [`TlsListener`] is an
//! [`axum::serve::Listener`] that runs handshakes concurrently, off the accept loop, each
//! with a timeout, a cap per address (64; an IPv6 /64 counts as one) and in total (1024:
//! when all slots are taken, the oldest handshake is shed), and parses the client
//! certificate once per connection. Serve it with [`Server`](crate::serve::Server) and
//! every request carries `ConnectInfo<ConnectionInfo>`, which the layer reads. (With
//! `axum::serve` and `into_make_service_with_connect_info::<ConnectionInfo>()` it works
//! too, but without the server's timeouts and connection limits.)
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mtls_bound_token::serve::Server;
//! use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsServerConfig::builder()
//!     .certificate_chain_file("server.crt")
//!     .private_key_file("server.key")
//!     .client_ca_file("clients-ca.crt")
//!     .build()?;
//! let listener = TlsListener::bind("127.0.0.1:8443", tls).await?;
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! Server::default()
//!     .serve(listener, app)
//!     .with_graceful_shutdown(shutdown_signal())
//!     .await?;
//! # Ok(()) }
//! ```

mod ca_bundle;
mod config;
mod diagnostics;
mod facts;
pub(crate) mod files;
mod listener;
mod verifier;

pub(crate) use ca_bundle::ClientCaBundle;
pub(crate) use config::Input as TlsInput;
pub use config::{TlsConfigError, TlsServerConfig, TlsServerConfigBuilder};
pub(crate) use diagnostics::{Expectation, WARNING_INTERVAL, Warnings, explain};
pub(crate) use facts::{CertificateFacts, signed_by, subject_der, unix_now, utc};
pub use listener::{TlsConnection, TlsListener};

/// Resolves on ctrl-c (SIGINT) or SIGTERM: pass it to `with_graceful_shutdown`.
///
/// The signal handlers are installed when this is called, not when the future is first
/// polled, so call it before announcing that the server is ready: a SIGTERM that comes
/// right after is then a graceful shutdown, never the default abrupt exit. Must be
/// called within a tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let terminate = async {
                match terminate {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match interrupt {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = terminate => {}
                () = interrupt => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
