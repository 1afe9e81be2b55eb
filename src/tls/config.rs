//! The TLS side of the server: certificate, key and client-certificate policy, checked
//! once at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use super::verifier::{AnyCertificate, CaOrSelfSigned};

/// The default time a client has to complete its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on handshakes in flight.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// A TLS configuration the builder refuses, with what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No server certificate chain.
    #[error("no server certificate: call .certificate_chain_pem_file(path)")]
    MissingCertificate,
    /// No server private key.
    #[error("no server private key: call .private_key_pem_file(path)")]
    MissingPrivateKey,
    /// No client-certificate policy was chosen.
    #[error(
        "no client certificate policy: call .client_ca_pem_file(path) to require certificates \
         from a CA, or .accept_any_client_certificate() to rely on token binding alone"
    )]
    NoClientAuth,
    /// A PEM input could not be read or holds nothing usable.
    #[error("{what} ({source_name}): {problem}")]
    Pem {
        /// Which input: server certificate, private key, client CA.
        what: &'static str,
        /// The file, or `<memory>`.
        source_name: String,
        /// What is wrong.
        problem: String,
    },
    /// rustls refused the combination (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// A limit of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Pem {
    fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Memory(_) => "<memory>".to_owned(),
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
        match self {
            Self::File(path) => std::fs::read(path).map_err(|e| self.error(what, e.to_string())),
            Self::Memory(bytes) => Ok(bytes.clone()),
        }
    }

    fn error(&self, what: &'static str, problem: impl Into<String>) -> TlsConfigError {
        TlsConfigError::Pem {
            what,
            source_name: self.name(),
            problem: problem.into(),
        }
    }

    fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        let bytes = self.read(what)?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(what, format!("not valid PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.error(what, "holds no CERTIFICATE block"));
        }
        Ok(certs)
    }

    fn roots(&self) -> Result<RootCertStore, TlsConfigError> {
        let what = "client CA bundle";
        let mut roots = RootCertStore::empty();
        for cert in self.certificates(what)? {
            roots
                .add(cert)
                .map_err(|e| self.error(what, format!("not a usable CA certificate: {e}")))?;
        }
        Ok(roots)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
        let what = "server private key";
        let bytes = self.read(what)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            self.error(
                what,
                format!("no usable PKCS#8, PKCS#1 or SEC1 private key: {e}"),
            )
        })
    }
}

enum ClientAuth {
    Unset,
    Ca(Pem),
    Any,
    /// Token endpoints only: see `client_auth::token_endpoint_tls`.
    CaOrSelfSigned(Pem),
}

/// Builds a [`TlsServerConfig`]. Strict by default: a client certificate is required and
/// must chain to the configured CA bundle (expired or unknown-CA certificates fail the
/// handshake); the client's intermediates are used for path building.
pub struct TlsServerConfigBuilder {
    chain: Option<Pem>,
    key: Option<Pem>,
    client_auth: ClientAuth,
    anonymous: bool,
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain, PEM, leaf first.
    pub fn certificate_chain_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.chain = Some(Pem::File(path.into()));
        self
    }

    /// The server's certificate chain, PEM bytes.
    pub fn certificate_chain_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.chain = Some(Pem::Memory(pem.into()));
        self
    }

    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub fn private_key_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(Pem::File(path.into()));
        self
    }

    /// The server's private key, PEM bytes.
    pub fn private_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Pem::Memory(pem.into()));
        self
    }

    /// Client certificates must chain to one of these CA certificates (PEM bundle).
    pub fn client_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_auth = ClientAuth::Ca(Pem::File(path.into()));
        self
    }

    /// Client certificates must chain to one of these CA certificates (PEM bytes).
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_auth = ClientAuth::Ca(Pem::Memory(pem.into()));
        self
    }

    /// **Weakens**: accepts any well-formed client certificate without chain validation.
    /// The handshake still proves the client holds the certificate's private key, which
    /// is all the token binding needs (RFC 8705 §6.2); but the certificate's subject and
    /// SANs are then whatever the client chose, so do not authorize on them.
    pub fn accept_any_client_certificate(mut self) -> Self {
        self.client_auth = ClientAuth::Any;
        self
    }

    /// For token endpoints (RFC 8705 §2.2): clients whose certificate chains to the CA
    /// bundle, or is self-signed. Deliberately not public: only
    /// [`token_endpoint_tls`](crate::client_auth::token_endpoint_tls) uses it, so that a
    /// resource server cannot be configured this way by accident.
    pub(crate) fn client_ca_or_self_signed_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_auth = ClientAuth::CaOrSelfSigned(Pem::Memory(pem.into()));
        self
    }

    /// **Weakens**: lets clients without a certificate complete the handshake; the
    /// layer then refuses their bound tokens, and accepts unbound ones only if told to.
    pub fn allow_anonymous_clients(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Time a client has to complete its handshake; default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Handshakes in flight at most; further connections wait to be accepted. Default 1024.
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max;
        self
    }

    /// Checks everything and builds the configuration.
    ///
    /// # Errors
    /// [`TlsConfigError`] naming the input and the problem: a missing or unreadable
    /// file, PEM without a certificate or key, a key that does not fit the certificate,
    /// no client-certificate policy.
    pub fn build(self) -> Result<TlsServerConfig, TlsConfigError> {
        let provider = crate::crypto::rustls_provider();
        let chain = self
            .chain
            .ok_or(TlsConfigError::MissingCertificate)?
            .certificates("server certificate")?;
        let key = self
            .key
            .ok_or(TlsConfigError::MissingPrivateKey)?
            .private_key()?;
        if self.handshake_timeout.is_zero() {
            return Err(TlsConfigError::Zero("handshake_timeout"));
        }
        if self.max_handshakes == 0 {
            return Err(TlsConfigError::Zero("max_concurrent_handshakes"));
        }

        let mut chains = ChainCheck::Validated;
        let verifier: Arc<dyn ClientCertVerifier> = match self.client_auth {
            ClientAuth::Unset => return Err(TlsConfigError::NoClientAuth),
            ClientAuth::Any => {
                chains = ChainCheck::NotValidated;
                AnyCertificate::new(&provider, !self.anonymous)
            }
            ClientAuth::Ca(pem) => {
                let builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(pem.roots()?),
                    Arc::clone(&provider),
                );
                let builder = if self.anonymous {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder
                    .build()
                    .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            }
            ClientAuth::CaOrSelfSigned(pem) => {
                let (verifier, ca) =
                    CaOrSelfSigned::new(Arc::new(pem.roots()?), Arc::clone(&provider))
                        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
                chains = ChainCheck::PerConnection(ca);
                verifier
            }
        };

        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsServerConfig {
            rustls: Arc::new(config),
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
            chains,
        })
    }
}

/// A checked server TLS configuration, for [`TlsListener`](super::TlsListener).
#[derive(Clone)]
pub struct TlsServerConfig {
    pub(crate) rustls: Arc<rustls::ServerConfig>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) chains: ChainCheck,
}

/// Whether a connection's client certificate chains to a configured CA.
#[derive(Clone)]
pub(crate) enum ChainCheck {
    /// The handshake only completes with a validated chain (or no certificate).
    Validated,
    /// Any certificate passes the handshake.
    NotValidated,
    /// Self-signed ones pass too: validate again, once per connection.
    PerConnection(Arc<dyn ClientCertVerifier>),
}

impl ChainCheck {
    pub(crate) fn validated(&self, chain: &[rustls::pki_types::CertificateDer<'_>]) -> bool {
        match self {
            Self::Validated => true,
            Self::NotValidated => false,
            Self::PerConnection(ca) => chain.split_first().is_some_and(|(leaf, intermediates)| {
                ca.verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
                    .is_ok()
            }),
        }
    }
}

impl TlsServerConfig {
    /// Starts a configuration: required client certificates, 10 s handshake timeout.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder {
            chain: None,
            key: None,
            client_auth: ClientAuth::Unset,
            anonymous: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }

    /// The rustls configuration, e.g. for another TLS server.
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.rustls)
    }
}
