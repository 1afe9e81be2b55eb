//! A client-certificate verifier for resource servers that rely on the token binding
//! alone (RFC 8705 §6.2): any well-formed certificate, no chain validation, but the
//! handshake signature is verified, so the client holds the certificate's private key.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::facts::{CertificateFacts, self_signed};
use crate::cert::PeerCertificate;
use crate::trust::ClientTrust;

/// The handshake-signature half of a [`ClientCertVerifier`]: the client proves it holds
/// the certificate's key, checked with `self.algorithms` (the provider's).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// An X.509 v1 (or v2) client certificate.
#[derive(Debug, thiserror::Error)]
#[error("the client certificate is not X.509 v3")]
struct NotVersion3;

fn unix_time(now: UnixTime) -> i64 {
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

#[derive(Debug)]
pub(crate) struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
    /// CRLs the leaf is checked against, when given.
    revocation: Option<ClientTrust>,
}

impl AnyCertificate {
    pub(crate) fn new(
        provider: &rustls::crypto::CryptoProvider,
        mandatory: bool,
        revocation: Option<ClientTrust>,
    ) -> Arc<Self> {
        Arc::new(Self {
            algorithms: provider.signature_verification_algorithms,
            mandatory,
            revocation,
        })
    }
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Refuse in the handshake what could not be parsed after it.
        let certificate = PeerCertificate::from_der(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        // The handshake signature check (webpki) refuses v1 certificates anyway; refusing
        // here makes it a certificate refusal, explained as such.
        if CertificateFacts::of(end_entity).is_some_and(|facts| facts.version < 3) {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotVersion3))),
            ));
        }
        if let Some(trust) = &self.revocation {
            trust
                .current()
                .check_leaf(&certificate)
                .map_err(|refusal| refusal.tls_error())?;
        }
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Certificates that chain to a [`ClientTrust`]'s CAs (CRLs included), judged by what
/// the trust holds at each handshake, so that a replaced trust takes effect for new
/// connections at once.
#[derive(Debug)]
pub(crate) struct TrustedClients {
    trust: ClientTrust,
    algorithms: WebPkiSupportedAlgorithms,
    mandatory: bool,
    /// The CA names of the certificate request, as they were at start-up.
    hints: Vec<DistinguishedName>,
}

impl TrustedClients {
    pub(crate) fn new(
        trust: ClientTrust,
        provider: &rustls::crypto::CryptoProvider,
        mandatory: bool,
    ) -> Arc<Self> {
        let hints = trust.root_hints();
        Arc::new(Self {
            trust,
            algorithms: provider.signature_verification_algorithms,
            mandatory,
            hints,
        })
    }
}

impl ClientCertVerifier for TrustedClients {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust.verify_chain(end_entity, intermediates, now)
    }

    handshake_signatures!();
}

/// For token endpoints (RFC 8705 §2): a client certificate that chains to the client
/// trust's CAs (`tls_client_auth`), or one that is self-signed
/// (`self_signed_tls_client_auth`: its signature verifies with its own key, within its
/// validity period, CA:TRUE or not — the endpoint then matches it against the
/// registration), or none. Any other certificate fails the handshake. Which of the two
/// it was is decided again by the endpoint against the client's registration.
#[derive(Debug)]
pub(crate) struct CaOrSelfSigned {
    ca: ClientTrust,
    algorithms: WebPkiSupportedAlgorithms,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl CaOrSelfSigned {
    pub(crate) fn new(ca: ClientTrust, provider: Arc<rustls::crypto::CryptoProvider>) -> Arc<Self> {
        Arc::new(Self {
            ca,
            algorithms: provider.signature_verification_algorithms,
            provider,
        })
    }
}

impl ClientCertVerifier for CaOrSelfSigned {
    /// Anonymous clients may fetch the JWKS and the metadata; the token endpoint answers
    /// them `invalid_client`.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a self-signed client must not be told to stay silent.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.ca.verify_chain(end_entity, intermediates, now) {
            Ok(verified) => Ok(verified),
            Err(_) if self_signed(end_entity, &self.provider, unix_time(now)) => {
                Ok(ClientCertVerified::assertion())
            }
            Err(error) => Err(error),
        }
    }

    handshake_signatures!();
}
