//! Serving an axum app to clients that may be hostile: the crate's own server loop.
//!
//! `axum::serve` has no timeouts and no connection limits, so anyone who completes a
//! handshake (anyone at all, on a listener that allows anonymous clients) can hold file
//! descriptors and buffers forever, or drip headers. [`Server`] serves the same
//! [`Router`] with:
//!
//! - a **header read timeout** (10 s): a connection's first request, and every request
//!   after its first byte, must have its headers complete within it, or the connection
//!   is closed;
//! - an **idle timeout** (60 s): a keep-alive connection without a request in flight is
//!   closed after it (HTTP/2 with a GOAWAY); a connection serving a request is never
//!   idle;
//! - **HTTP/2 keep-alive pings** (every 20 s, 20 s to answer), so a dead peer's
//!   connection is found;
//! - **connection limits**: 10,000 open connections, 256 per peer address (an IPv6 /64
//!   counts as one address, see [`AddressGroup`](crate::AddressGroup)); a connection
//!   over a limit is closed at once and logged at debug with its address;
//! - **header limits**: 100 headers and 64 KiB of request head, answered
//!   `431 Request Header Fields Too Large`;
//! - **graceful shutdown**: on the signal, no new connections, idle ones closed,
//!   requests in flight answered (for at most 30 s).
//!
//! Every request carries `ConnectInfo<ConnectionInfo>`, which the layer reads, so no
//! `into_make_service_with_connect_info` is needed. It serves a
//! [`TlsListener`](crate::tls::TlsListener) (whose handshakes have limits of their own)
//! and a plain `tokio::net::TcpListener` (behind a proxy) alike.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use mtls_bound_token::serve::Server;
//! use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let tls = TlsServerConfig::builder()
//!     .certificate_chain_file("server.crt")
//!     .private_key_file("server.key")
//!     .client_ca_file("clients-ca.crt")
//!     .build()?;
//! let listener = TlsListener::bind("127.0.0.1:8443", tls).await?;
//! Server::builder()
//!     .idle_timeout(std::time::Duration::from_secs(30))
//!     .build()?
//!     .serve(listener, app)
//!     .with_graceful_shutdown(shutdown_signal())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! An application that keeps its own server gets the same protection by configuring it
//! the same way: with hyper-util's connection builder, a `TokioTimer` on both protocols,
//! `http1().header_read_timeout(..)`, `.max_headers(..)`, `.max_buf_size(..)`,
//! `http2().keep_alive_interval(..)`, a per-address count of open connections, and a
//! task per connection that closes it when idle.

mod connection;

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ConnectionInfo;
use crate::address::{AddressGroup, Occupancy};
use crate::tls::TlsConnection;

/// Default of [`ServerBuilder::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServerBuilder::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ServerBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`ServerBuilder::max_connections_per_ip`].
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// Default of [`ServerBuilder::max_headers`].
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default of [`ServerBuilder::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Default of [`ServerBuilder::keep_alive_interval`].
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// Default of [`ServerBuilder::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The smallest request-head buffer hyper accepts.
const MIN_HEADER_BYTES: usize = 8192;

/// A server configuration the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeConfigError {
    /// A limit or timeout of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// `max_header_bytes` below what the HTTP/1 parser needs.
    #[error("max_header_bytes must be at least {MIN_HEADER_BYTES} (got {0})")]
    HeaderBytesTooSmall(usize),
}

/// The limits of one [`Server`].
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) keep_alive_interval: Duration,
    pub(crate) drain_timeout: Duration,
}

/// Builds a [`Server`]; every default is safe for a server facing the internet.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    limits: Limits,
}

impl ServerBuilder {
    /// A connection's first request, and each later one from its first byte, must have
    /// complete headers within this; default 10 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// A connection without a request in flight is closed after this; default 60 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// Open connections at most; default 10,000. Further ones are closed at once.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max;
        self
    }

    /// Open connections from one address (an IPv6 /64) at most; default 256.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.limits.max_connections_per_ip = max;
        self
    }

    /// Headers of one request at most; default 100. More get 431.
    pub fn max_headers(mut self, max: usize) -> Self {
        self.limits.max_headers = max;
        self
    }

    /// Bytes of one request's head (request line and headers; for HTTP/2 the header
    /// list) at most; default 64 KiB, at least 8 KiB. More get 431.
    pub fn max_header_bytes(mut self, max: usize) -> Self {
        self.limits.max_header_bytes = max;
        self
    }

    /// How often an HTTP/2 connection is pinged, and how long the peer has to answer
    /// before the connection is closed; default 20 s.
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.limits.keep_alive_interval = interval;
        self
    }

    /// On shutdown, how long requests in flight may take before their connections are
    /// dropped; default 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.limits.drain_timeout = timeout;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ServeConfigError`] for a zero limit or timeout, or a head buffer under 8 KiB.
    pub fn build(self) -> Result<Server, ServeConfigError> {
        let l = &self.limits;
        for (value, name) in [
            (l.header_read_timeout.is_zero(), "header_read_timeout"),
            (l.idle_timeout.is_zero(), "idle_timeout"),
            (l.max_connections == 0, "max_connections"),
            (l.max_connections_per_ip == 0, "max_connections_per_ip"),
            (l.max_headers == 0, "max_headers"),
            (l.keep_alive_interval.is_zero(), "keep_alive_interval"),
            (l.drain_timeout.is_zero(), "drain_timeout"),
        ] {
            if value {
                return Err(ServeConfigError::Zero(name));
            }
        }
        if l.max_header_bytes < MIN_HEADER_BYTES {
            return Err(ServeConfigError::HeaderBytesTooSmall(l.max_header_bytes));
        }
        Ok(Server {
            limits: Arc::new(self.limits),
        })
    }
}

/// Serves a [`Router`] with timeouts and connection limits; see the [module](self).
#[derive(Debug, Clone)]
pub struct Server {
    limits: Arc<Limits>,
}

impl Default for Server {
    /// The defaults of [`ServerBuilder`].
    fn default() -> Self {
        Self {
            limits: Arc::new(Self::builder().limits),
        }
    }
}

impl Server {
    /// Starts a configuration with the defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            limits: Limits {
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
                max_headers: DEFAULT_MAX_HEADERS,
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            },
        }
    }

    /// Serves `app` on `listener` until the future is dropped or, with
    /// [`Serve::with_graceful_shutdown`], its signal resolves.
    pub fn serve<L>(&self, listener: L, app: Router) -> Serve<L>
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
        L::Io: Accepted,
    {
        Serve {
            limits: Arc::clone(&self.limits),
            listener,
            app,
            signal: Box::pin(std::future::pending()),
        }
    }
}

/// A connection [`Server`] can serve: a byte stream that knows what the layer needs to
/// know about it.
pub trait Accepted: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The facts of this connection, given its peer.
    fn connection_info(&self, remote_addr: SocketAddr) -> ConnectionInfo;

    /// Whether HTTP/2 was negotiated (ALPN); `false` when unknown.
    fn negotiated_h2(&self) -> bool {
        false
    }

    /// Called once before the connection is served (socket options and the like).
    fn prepare(&self) {}
}

impl Accepted for TcpStream {
    fn connection_info(&self, remote_addr: SocketAddr) -> ConnectionInfo {
        ConnectionInfo::new(remote_addr, None)
    }

    fn prepare(&self) {
        let _ = self.set_nodelay(true);
    }
}

impl Accepted for TlsConnection {
    fn connection_info(&self, _remote_addr: SocketAddr) -> ConnectionInfo {
        self.info().clone()
    }

    fn negotiated_h2(&self) -> bool {
        self.alpn_protocol() == Some(b"h2")
    }
}

/// The future of [`Server::serve`]; `.await` it.
pub struct Serve<L> {
    limits: Arc<Limits>,
    listener: L,
    app: Router,
    signal: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<L> std::fmt::Debug for Serve<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<L> Serve<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: Accepted,
{
    /// Stops accepting when `signal` resolves, closes idle connections, lets requests in
    /// flight finish (within the drain timeout), then returns.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Box::pin(signal);
        self
    }

    async fn run(self) -> io::Result<()> {
        let Self {
            limits,
            mut listener,
            app,
            mut signal,
        } = self;
        let connections = Occupancy::new(limits.max_connections, limits.max_connections_per_ip);
        let (stop, stopping) = watch::channel(false);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                (io, peer) = listener.accept() => {
                    let place = match connections.enter(AddressGroup::of(peer.ip())) {
                        Ok(place) => place,
                        Err(full) => {
                            tracing::debug!(%peer, ?full, "connection over the limit: closed");
                            continue;
                        }
                    };
                    io.prepare();
                    let info = io.connection_info(peer);
                    tasks.spawn(connection::serve(
                        io,
                        info,
                        app.clone(),
                        Arc::clone(&limits),
                        stopping.clone(),
                        place,
                    ));
                }
                () = &mut signal => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(limits.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = tasks.len(),
                "shutdown: requests still in flight after the drain timeout; dropping them"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}

impl<L> IntoFuture for Serve<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: Accepted,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        // The accept loop runs as a task of its own, on a worker with the connections
        // it starts, not wherever the caller awaits (often the thread of
        // `#[tokio::main]`): every new connection would otherwise cross threads twice.
        let task = AbortOnDrop(tokio::spawn(self.run()));
        Box::pin(async move {
            let mut task = task;
            match (&mut task.0).await {
                Ok(result) => result,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => Err(io::Error::other(error)),
            }
        })
    }
}

/// A task that ends with its handle: dropping the future of [`Serve`] stops serving.
struct AbortOnDrop(tokio::task::JoinHandle<io::Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
