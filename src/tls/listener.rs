//! [`TlsListener`]: TCP accept, concurrent bounded handshakes (per address and in
//! total, the oldest shed when all slots are taken), finished connections handed to the
//! server.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{TlsServerConfig, diagnostics};
use crate::ConnectionInfo;
use crate::address::{AddressGroup, Occupancy};
use crate::cert::PeerCertificate;

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// An [`axum::serve::Listener`] that yields connections whose TLS handshake is done.
///
/// A background task accepts TCP connections and spawns one handshake task each, so a
/// client that never sends its ClientHello delays nobody else. Each handshake has a
/// timeout; the handshakes in flight from one address are capped (a connection beyond
/// the cap is closed at once), and so are all of them, by shedding the oldest when a new
/// one needs a slot: accepting never stops, and no new client waits for a stalled one to
/// time out. The client certificate is parsed once, when the handshake ends. Dropping
/// the listener stops accepting.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local_addr: SocketAddr,
    accept_task: AbortHandle,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Binds a TCP listener at `addr` and serves TLS on it.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, config: TlsServerConfig) -> io::Result<Self> {
        Self::from_tcp(TcpListener::bind(addr).await?, config)
    }

    /// Serves TLS on an already bound TCP listener. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// When the listener's local address cannot be read.
    pub fn from_tcp(listener: TcpListener, config: TlsServerConfig) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let accept_task = tokio::spawn(accept_loop(listener, config, sender)).abort_handle();
        Ok(Self {
            ready,
            local_addr,
            accept_task,
        })
    }
}

impl TlsListener {
    /// The address the listener is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: TlsServerConfig,
    ready: mpsc::Sender<(TlsConnection, SocketAddr)>,
) {
    let acceptor = TlsAcceptor::from(Arc::clone(&config.rustls));
    let per_address = Occupancy::new(usize::MAX, config.max_handshakes_per_ip);
    let in_flight = Handshakes::new(config.max_handshakes);
    // Accepting never waits for a handshake slot: a full house sheds its oldest
    // handshake instead, so stalled sockets cannot stop new clients from connecting.
    loop {
        let (tcp, remote_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let place = match per_address.enter(AddressGroup::of(remote_addr.ip())) {
            Ok(place) => place,
            Err(_) => {
                crate::telemetry::handshake_failure("over_limit_per_address");
                tracing::debug!(%remote_addr, "handshakes from this address over the limit: closed");
                continue;
            }
        };
        let (slot, shed) = in_flight.admit(remote_addr);
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let timeout = config.handshake_timeout;
        let chains = config.chains.clone();
        let warnings = Arc::clone(&config.warnings);
        let requires_certificate = config.requires_certificate;
        let client_expiry = Arc::clone(&config.client_expiry);
        let verifier = Arc::clone(&config.verifier);
        let ocsp = config.ocsp.clone();
        let trust = config.client_trust().cloned();
        tokio::spawn(async move {
            let handshake = diagnostics::for_peer(
                remote_addr,
                tokio::time::timeout(timeout, acceptor.accept(tcp)),
            );
            let (handshake, explained) = tokio::select! {
                done = handshake => done,
                _ = shed => {
                    crate::telemetry::handshake_failure("shed");
                    tracing::debug!(%remote_addr, "handshake shed: the oldest in flight when all slots were taken");
                    return;
                }
            };
            drop(slot);
            drop(place);
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) if explained => {
                    tracing::debug!(%remote_addr, %error, "TLS handshake failed");
                    return;
                }
                Ok(Err(error)) => {
                    diagnostics::handshake_failed(
                        remote_addr,
                        &error,
                        &warnings,
                        requires_certificate,
                    );
                    return;
                }
                Err(_) => {
                    crate::telemetry::handshake_failure("timeout");
                    tracing::debug!(%remote_addr, "TLS handshake timed out");
                    return;
                }
            };
            // A resumed session skipped the verifier: what it accepted then, the trust
            // (its CRLs, its CAs) may refuse now.
            if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
                && let Some((leaf, intermediates)) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.split_first())
            {
                let (verified, _) = diagnostics::for_peer(remote_addr, async {
                    verifier.verify_client_cert(
                        leaf,
                        intermediates,
                        rustls::pki_types::UnixTime::now(),
                    )
                })
                .await;
                if verified.is_err() {
                    tracing::debug!(%remote_addr, "resumed session refused: its client certificate is not accepted now");
                    return;
                }
            }
            if let (Some(ocsp), Some(chain)) = (&ocsp, stream.get_ref().1.peer_certificates())
                && let Err(why) = ocsp.admit(chain, trust.as_ref()).await
            {
                crate::telemetry::handshake_failure("ocsp");
                if let Some(suppressed) = warnings.admit("ocsp") {
                    tracing::warn!(%remote_addr, suppressed, "TLS connection closed: {why}");
                }
                return;
            }
            let info = match stream.get_ref().1.peer_certificates() {
                Some(chain) if !chain.is_empty() => match PeerCertificate::read_lazily_chain(chain)
                {
                    Ok(certificate) => {
                        let validated = chains.validated(chain);
                        // Only for chains a CA vouched for: anyone can make self-signed
                        // certificates about to expire, one warning each.
                        if validated {
                            client_expiry.check(&certificate, "tls");
                        }
                        let certificate = Some(Arc::new(certificate));
                        if validated {
                            ConnectionInfo::with_validated_certificate(remote_addr, certificate)
                        } else {
                            ConnectionInfo::with_unvalidated_certificate(remote_addr, certificate)
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%remote_addr, %error, "client certificate unusable; closing");
                        return;
                    }
                },
                _ => ConnectionInfo::new(remote_addr, None),
            };
            let _ = ready
                .send((TlsConnection { stream, info }, remote_addr))
                .await;
        });
    }
}

/// The handshakes in flight, oldest first; at most `max` of them.
struct Handshakes {
    max: usize,
    table: Mutex<HandshakeTable>,
}

#[derive(Default)]
struct HandshakeTable {
    next: u64,
    /// By start order: the first is the oldest.
    running: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Handshakes {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            table: Mutex::new(HandshakeTable::default()),
        })
    }

    /// A slot for a new handshake, shedding the oldest one when all are taken; the
    /// receiver fires when this one is shed in turn.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> (HandshakeSlot, oneshot::Receiver<()>) {
        let (shed, shed_me) = oneshot::channel();
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        while table.running.len() >= self.max {
            let Some((_, oldest)) = table.running.pop_first() else {
                break;
            };
            tracing::debug!(%peer, "all handshake slots taken: shedding the oldest");
            let _ = oldest.send(());
        }
        let id = table.next;
        table.next += 1;
        table.running.insert(id, shed);
        (
            HandshakeSlot {
                id,
                handshakes: Arc::clone(self),
            },
            shed_me,
        )
    }
}

/// One handshake's slot; freed on drop.
struct HandshakeSlot {
    id: u64,
    handshakes: Arc<Handshakes>,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut table = self
            .handshakes
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table.running.remove(&self.id);
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// A TLS connection whose handshake is complete, with its [`ConnectionInfo`].
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    info: ConnectionInfo,
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl TlsConnection {
    /// What is known about the connection: peer address and client certificate.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The negotiated ALPN protocol, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.stream.get_ref().1.alpn_protocol()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.io().info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
