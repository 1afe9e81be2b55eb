//! One connection: hyper serving the app, and a watchdog that closes the connection
//! when its headers are too slow or it has been idle too long.
//!
//! hyper's own HTTP/1 header read timeout starts whenever the connection waits for a
//! request, so it would also close every idle keep-alive connection after the (short)
//! header timeout. The two timeouts are kept apart here instead: what the watchdog sees
//! is the connection's phase, moved on by the bytes it reads and by the requests the app
//! serves.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use bytes::Bytes;
use http::Request;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower_service::Service;

use super::{Accepted, Limits};
use crate::ConnectionInfo;
use crate::address::Place;

/// After a graceful close was asked for, how long the connection may take to end.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The HTTP/2 connection preface, by which a plain-TCP HTTP/2 client is recognised.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Serves one connection until it ends, times out, or the server shuts down.
pub(super) async fn serve<I: Accepted>(
    io: I,
    info: ConnectionInfo,
    app: Router,
    limits: Arc<Limits>,
    mut stopping: watch::Receiver<bool>,
    _place: Place,
) {
    let peer = info.remote_addr();
    let phase = Arc::new(Phases::new(io.negotiated_h2()));
    let io = Watched {
        inner: io,
        phase: Arc::clone(&phase),
        first_read: true,
    };
    let service = PerConnection {
        app,
        info,
        phase: Arc::clone(&phase),
    };

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog enforces it, apart from the idle timeout (see the module doc).
        .header_read_timeout(None)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_interval)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);

    let mut closing: Option<Instant> = None;
    loop {
        let deadline = match closing {
            Some(at) => Some(at),
            None => phase.deadline(&limits),
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if closing.is_some() {
                    tracing::debug!(%peer, "connection did not close in time: dropped");
                    return;
                }
                match phase.expired(&limits, Instant::now()) {
                    Some(Expired::Headers) => {
                        // A request is half read: nothing to finish gracefully.
                        tracing::debug!(%peer, "request headers too slow: connection closed");
                        return;
                    }
                    Some(Expired::Idle) => {
                        tracing::debug!(%peer, "idle connection closed");
                        connection.as_mut().graceful_shutdown();
                        closing = Some(Instant::now() + CLOSE_GRACE);
                    }
                    None => {}
                }
            }
            () = phase.changed.notified() => {}
            changed = stopping.changed(), if closing.is_none() => {
                if changed.is_err() || *stopping.borrow() {
                    connection.as_mut().graceful_shutdown();
                    // The server's drain timeout bounds what follows.
                    closing = Some(Instant::now() + limits.drain_timeout);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its timeouts.
struct Phases {
    phase: Mutex<Phase>,
    /// Wakes the watchdog when the phase changes (a deadline may have moved).
    changed: Notify,
    /// HTTP/2: bytes between requests are pings and window updates, not a new request.
    h2: AtomicBool,
    /// Idle between HTTP/1 requests: the next byte read starts a request. Lets every
    /// other read skip the lock.
    between_requests: AtomicBool,
}

struct Phase {
    in_flight: usize,
    /// Since when a request's headers are awaited (from the connection's start, or from
    /// the first byte of a request on a kept-alive connection).
    awaiting_headers_since: Option<Instant>,
    idle_since: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Headers,
    Idle,
}

impl Phases {
    fn new(h2: bool) -> Self {
        let now = Instant::now();
        Self {
            phase: Mutex::new(Phase {
                in_flight: 0,
                awaiting_headers_since: Some(now),
                idle_since: now,
            }),
            changed: Notify::new(),
            h2: AtomicBool::new(h2),
            between_requests: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the watchdog must look again; `None` while a request is served.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let phase = self.lock();
        if phase.in_flight > 0 {
            return None;
        }
        Some(match phase.awaiting_headers_since {
            Some(since) => since + limits.header_read_timeout,
            None => phase.idle_since + limits.idle_timeout,
        })
    }

    fn expired(&self, limits: &Limits, now: Instant) -> Option<Expired> {
        let phase = self.lock();
        if phase.in_flight > 0 {
            return None;
        }
        match phase.awaiting_headers_since {
            Some(since) if now >= since + limits.header_read_timeout => Some(Expired::Headers),
            Some(_) => None,
            None if now >= phase.idle_since + limits.idle_timeout => Some(Expired::Idle),
            None => None,
        }
    }

    /// Bytes arrived: on an HTTP/1 connection between requests, a request has begun.
    fn bytes_read(&self) {
        if self.h2.load(Ordering::Relaxed) || !self.between_requests.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut phase = self.lock();
        if phase.in_flight == 0 && phase.awaiting_headers_since.is_none() {
            phase.awaiting_headers_since = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// The app was handed a request: its headers are in.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut phase = self.lock();
        self.between_requests.store(false, Ordering::Release);
        phase.in_flight += 1;
        phase.awaiting_headers_since = None;
        drop(phase);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }
}

/// A request being served: from the app's call until its response body is done (or
/// dropped, when the client goes away).
struct InFlight(Arc<Phases>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.lock();
        phase.in_flight = phase.in_flight.saturating_sub(1);
        if phase.in_flight == 0 {
            phase.idle_since = Instant::now();
            self.0.between_requests.store(true, Ordering::Release);
        }
        drop(phase);
        self.0.changed.notify_one();
    }
}

/// The connection's bytes, watched for the start of each HTTP/1 request.
struct Watched<I> {
    inner: I,
    phase: Arc<Phases>,
    first_read: bool,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let read = &buf.filled()[before..];
            if !read.is_empty() {
                if this.first_read {
                    this.first_read = false;
                    if read.starts_with(H2_PREFACE) {
                        this.phase.h2.store(true, Ordering::Relaxed);
                    }
                }
                this.phase.bytes_read();
            }
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The app as this connection's service: every request gets the connection's
/// `ConnectInfo`, and is counted in flight until its response body ends.
#[derive(Clone)]
struct PerConnection {
    app: Router,
    info: ConnectionInfo,
    phase: Arc<Phases>,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = self.phase.begin();
        request
            .extensions_mut()
            .insert(ConnectInfo::<ConnectionInfo>(self.info.clone()));
        // Also for handlers that extract the bare address, as with axum::serve.
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(self.info.remote_addr()));
        let mut app = self.app.clone();
        Box::pin(async move {
            let Ok(response) = app.call(request).await;
            Ok(response.map(|body| {
                Body::new(Counted {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is done or dropped.
struct Counted {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        super::super::Server::builder().limits
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_must_send_its_headers_in_time() {
        let limits = limits();
        let phases = Arc::new(Phases::new(false));
        let start = Instant::now();
        assert_eq!(
            phases.deadline(&limits),
            Some(start + limits.header_read_timeout)
        );
        assert_eq!(phases.expired(&limits, start), None);
        assert_eq!(
            phases.expired(&limits, start + limits.header_read_timeout),
            Some(Expired::Headers)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_timed_out_and_then_idles() {
        let limits = limits();
        let phases = Arc::new(Phases::new(false));
        let in_flight = phases.begin();
        assert_eq!(phases.deadline(&limits), None);
        tokio::time::advance(limits.idle_timeout * 2).await;
        assert_eq!(phases.expired(&limits, Instant::now()), None);
        drop(in_flight);
        let idle = Instant::now();
        assert_eq!(phases.deadline(&limits), Some(idle + limits.idle_timeout));
        assert_eq!(
            phases.expired(&limits, idle + limits.idle_timeout),
            Some(Expired::Idle)
        );
        // The next request's first byte starts its header clock.
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        phases.bytes_read();
        let first_byte = Instant::now();
        assert_eq!(
            phases.deadline(&limits),
            Some(first_byte + limits.header_read_timeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_traffic_between_requests_is_not_a_request() {
        let limits = limits();
        let phases = Arc::new(Phases::new(true));
        drop(phases.begin());
        let idle = Instant::now();
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        phases.bytes_read(); // a ping's answer
        assert_eq!(phases.deadline(&limits), Some(idle + limits.idle_timeout));
    }
}
