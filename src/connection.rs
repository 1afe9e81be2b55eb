//! What is known about a connection, produced once per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;

use crate::cert::PeerCertificate;

/// Facts about one connection: the TCP peer and, when TLS was terminated here, the
/// certificate the client presented, parsed once at the end of the handshake.
///
/// Served by [`Server`](crate::serve::Server) (or `axum::serve` with
/// `into_make_service_with_connect_info::<ConnectionInfo>()`), every request
/// carries it as `ConnectInfo<ConnectionInfo>`; handlers can extract it too.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    remote_addr: SocketAddr,
    client_certificate: Option<Arc<PeerCertificate>>,
    chain_validated: bool,
}

impl ConnectionInfo {
    /// For a TLS server other than [`TlsListener`](crate::tls::TlsListener): insert
    /// `ConnectInfo(ConnectionInfo::new(peer, certificate))` into each request's
    /// extensions, with the certificate whose possession the handshake proved. Nothing
    /// is assumed about its chain: the subject and SANs count as the client's own words
    /// (proxy trust by subject, say, does not accept it). When your server validated the
    /// chain against its CAs, say so with
    /// [`with_validated_certificate`](Self::with_validated_certificate).
    pub fn new(remote_addr: SocketAddr, client_certificate: Option<Arc<PeerCertificate>>) -> Self {
        Self {
            remote_addr,
            client_certificate,
            chain_validated: false,
        }
    }

    /// Like [`new`](Self::new), for a certificate whose chain the server validated
    /// against its CAs in the handshake: its subject and SANs are the CA's word.
    pub fn with_validated_certificate(
        remote_addr: SocketAddr,
        client_certificate: Option<Arc<PeerCertificate>>,
    ) -> Self {
        Self {
            remote_addr,
            client_certificate,
            chain_validated: true,
        }
    }

    /// The same as [`new`](Self::new): a certificate whose possession the handshake
    /// proved but whose chain nobody validated (self-signed, or any certificate accepted
    /// for binding alone).
    pub fn with_unvalidated_certificate(
        remote_addr: SocketAddr,
        client_certificate: Option<Arc<PeerCertificate>>,
    ) -> Self {
        Self::new(remote_addr, client_certificate)
    }

    /// Whether the client certificate's chain was validated against a CA (so its subject
    /// and SANs are the CA's word, not only the client's).
    pub fn client_certificate_validated(&self) -> bool {
        self.chain_validated && self.client_certificate.is_some()
    }

    /// The TCP peer.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The certificate the client presented in the TLS handshake.
    pub fn client_certificate(&self) -> Option<&Arc<PeerCertificate>> {
        self.client_certificate.as_ref()
    }
}

/// Plain TCP: the peer address, no certificate.
impl Connected<IncomingStream<'_, TcpListener>> for ConnectionInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self::new(*stream.remote_addr(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate() -> Arc<PeerCertificate> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Arc::new(PeerCertificate::from_der(cert.der()).unwrap())
    }

    #[test]
    fn only_the_server_that_validated_a_chain_says_so() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(!ConnectionInfo::new(peer, Some(certificate())).client_certificate_validated());
        assert!(
            !ConnectionInfo::with_unvalidated_certificate(peer, Some(certificate()))
                .client_certificate_validated()
        );
        assert!(
            ConnectionInfo::with_validated_certificate(peer, Some(certificate()))
                .client_certificate_validated()
        );
        // Nothing is validated where there is no certificate.
        assert!(
            !ConnectionInfo::with_validated_certificate(peer, None).client_certificate_validated()
        );
    }
}
