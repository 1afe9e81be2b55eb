//! The TLS side of the server: certificate, key and client-certificate policy, checked
//! once at start-up.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use super::ca_bundle::{self, ClientCaBundle};
use super::diagnostics::{Diagnosed, Expectation, WARNING_INTERVAL, Warnings};
use super::facts::{CertificateFacts, unix_now, utc};
use super::files;
use super::verifier::{AnyCertificate, CaOrSelfSigned, TrustedClients};
use crate::expiry::ClientExpiryWarnings;
use crate::trust::ClientTrust;

/// The default time a client has to complete its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on handshakes in flight.
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;
/// The default bound on handshakes in flight from one address (an IPv6 /64).
pub const DEFAULT_MAX_HANDSHAKES_PER_IP: usize = 64;

/// A TLS configuration the builder refuses, with what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// No server certificate chain.
    #[error("no server certificate: call .certificate_chain_file(path)")]
    MissingCertificate,
    /// No server private key.
    #[error("no server private key: call .private_key_file(path)")]
    MissingPrivateKey,
    /// No client-certificate policy was chosen.
    #[error(
        "no client certificate policy: call .client_ca_file(path) to require certificates \
         from a CA, or .accept_any_client_certificate() to rely on token binding alone"
    )]
    NoClientAuth,
    /// A certificate, key or CA input could not be read, holds something else, or holds
    /// a certificate that cannot serve (a non-CA certificate in the client CA bundle).
    #[error("{what} ({source_name}): {problem}")]
    Input {
        /// Which input: server certificate, private key, client CA bundle.
        what: &'static str,
        /// The file, or `<memory>`.
        source_name: String,
        /// What is wrong, and what to do about it.
        problem: String,
    },
    /// rustls refused the combination (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// A limit of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A [`ClientTrust`] without a CA bundle where chains must be validated.
    #[error(
        "the client trust has no CA bundle, so it validates no chain: give it \
         .ca_file(path), or use .accept_any_client_certificate_unless_revoked(trust) to \
         check only revocation"
    )]
    TrustWithoutCa,
    /// A [`ClientTrust`] with a CA bundle where no chain is validated.
    #[error(
        "accept_any_client_certificate_unless_revoked() validates no chain, but the client \
         trust has a CA bundle: use .client_trust(trust) to validate chains against it"
    )]
    TrustCaUnused,
}

/// A certificate or key, from a file or from memory; PEM or DER, told apart by content.
#[derive(Clone)]
pub(crate) enum Input {
    File(PathBuf),
    Memory(Vec<u8>),
}

impl Input {
    /// The file, when it is one.
    pub(crate) fn path(&self) -> Option<PathBuf> {
        match self {
            Self::File(path) => Some(path.clone()),
            Self::Memory(_) => None,
        }
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Memory(_) => "(given in memory)".to_owned(),
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>, TlsConfigError> {
        match self {
            Self::File(path) => std::fs::read(path).map_err(|e| self.error(what, e.to_string())),
            Self::Memory(bytes) => Ok(bytes.clone()),
        }
    }

    /// [`read`](Self::read), refusing a file larger than `max` bytes before reading it.
    pub(crate) fn read_bounded(
        &self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<u8>, TlsConfigError> {
        if let Self::File(path) = self {
            let len = std::fs::metadata(path)
                .map_err(|e| self.error(what, e.to_string()))?
                .len();
            if len > max as u64 {
                return Err(self.error(
                    what,
                    format!("is {len} bytes, more than the {max} bytes it may have"),
                ));
            }
        }
        self.read(what)
    }

    pub(crate) fn error(&self, what: &'static str, problem: impl Into<String>) -> TlsConfigError {
        TlsConfigError::Input {
            what,
            source_name: self.name(),
            problem: problem.into(),
        }
    }

    fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
        files::certificates(&self.read(what)?).map_err(|problem| self.error(what, problem))
    }

    pub(crate) fn client_ca(&self) -> Result<ClientCaBundle, TlsConfigError> {
        let what = "client CA bundle";
        ca_bundle::load(&self.read(what)?, &self.name())
            .map_err(|problem| self.error(what, problem))
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
        let what = "server private key";
        files::private_key(&self.read(what)?).map_err(|problem| self.error(what, problem))
    }
}

enum ClientAuth {
    Unset,
    Ca(Input),
    Trust(ClientTrust),
    /// Any certificate; its leaf checked against the trust's CRLs, when given.
    Any(Option<ClientTrust>),
    /// Token endpoints only: see `client_auth::token_endpoint_tls`.
    CaOrSelfSigned(Input),
    TrustOrSelfSigned(ClientTrust),
}

/// Builds a [`TlsServerConfig`]. Strict by default: a client certificate is required and
/// must chain to the configured CA bundle (expired or unknown-CA certificates fail the
/// handshake); the client's intermediates are used for path building.
pub struct TlsServerConfigBuilder {
    chain: Option<Input>,
    key: Option<Input>,
    client_auth: ClientAuth,
    anonymous: bool,
    handshake_timeout: Duration,
    max_handshakes: usize,
    max_handshakes_per_ip: usize,
    expiry_warning: Duration,
    ocsp: Option<crate::trust::OcspChecker>,
}

impl std::fmt::Debug for TlsServerConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfigBuilder")
            .field("certificate_chain", &self.chain.as_ref().map(Input::name))
            .field("anonymous", &self.anonymous)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish_non_exhaustive()
    }
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain, leaf first: a file of PEM `CERTIFICATE` blocks,
    /// or DER (one certificate, or several concatenated), told apart by content.
    pub fn certificate_chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.chain = Some(Input::File(path.into()));
        self
    }

    /// Same as [`certificate_chain_file`](Self::certificate_chain_file) (which also
    /// reads DER).
    pub fn certificate_chain_pem_file(self, path: impl Into<PathBuf>) -> Self {
        self.certificate_chain_file(path)
    }

    /// The server's certificate chain from memory, PEM or DER.
    pub fn certificate_chain_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.chain = Some(Input::Memory(pem.into()));
        self
    }

    /// The server's private key: PKCS#8, PKCS#1 or SEC1, PEM or DER, told apart by
    /// content.
    pub fn private_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(Input::File(path.into()));
        self
    }

    /// Same as [`private_key_file`](Self::private_key_file) (which also reads DER).
    pub fn private_key_pem_file(self, path: impl Into<PathBuf>) -> Self {
        self.private_key_file(path)
    }

    /// The server's private key from memory, PEM or DER.
    pub fn private_key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Input::Memory(pem.into()));
        self
    }

    /// Client certificates must chain to one of these CA certificates: a PEM bundle or
    /// DER, told apart by content. Checked at [`build`](Self::build): a certificate
    /// that is not a CA (and not self-signed) is refused there, naming the CA to use
    /// instead.
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_auth = ClientAuth::Ca(Input::File(path.into()));
        self
    }

    /// Same as [`client_ca_file`](Self::client_ca_file) (which also reads DER).
    pub fn client_ca_pem_file(self, path: impl Into<PathBuf>) -> Self {
        self.client_ca_file(path)
    }

    /// Client certificates must chain to one of these CA certificates (PEM or DER
    /// bytes).
    pub fn client_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_auth = ClientAuth::Ca(Input::Memory(pem.into()));
        self
    }

    /// Client certificates must chain to the CAs of `trust`, and pass its CRLs and
    /// revocation policy; judged by what `trust` holds at each handshake, so that
    /// [`ClientTrust::replace_with`] applies to new connections at once. Share the same
    /// trust with the token endpoint's
    /// [`ClientAuthenticatorBuilder::client_trust`](crate::client_auth::ClientAuthenticatorBuilder::client_trust).
    /// The CA names the server sends in its certificate request are those of the
    /// trust at [`build`](Self::build).
    pub fn client_trust(mut self, trust: ClientTrust) -> Self {
        self.client_auth = ClientAuth::Trust(trust);
        self
    }

    /// Like [`accept_any_client_certificate`](Self::accept_any_client_certificate)
    /// (**weakens** in the same way), but a leaf that the CRLs of `trust` revoke fails
    /// the handshake, as one whose status they do not cover does under
    /// [`UnknownRevocation::Deny`](crate::trust::UnknownRevocation::Deny). `trust` must
    /// hold CRLs and no CA bundle.
    pub fn accept_any_client_certificate_unless_revoked(mut self, trust: ClientTrust) -> Self {
        self.client_auth = ClientAuth::Any(Some(trust));
        self
    }

    /// **Weakens**: accepts any well-formed client certificate without chain validation.
    /// The handshake still proves the client holds the certificate's private key, which
    /// is all the token binding needs (RFC 8705 §6.2); but the certificate's subject and
    /// SANs are then whatever the client chose, so do not authorize on them. Self-signed
    /// certificates are accepted whether or not they say CA:TRUE (`openssl req -x509`
    /// makes them so); X.509 v1 certificates are not (TLS libraries refuse them).
    pub fn accept_any_client_certificate(mut self) -> Self {
        self.client_auth = ClientAuth::Any(None);
        self
    }

    /// For token endpoints (RFC 8705 §2.2): clients whose certificate chains to the CA
    /// bundle, or is self-signed. Deliberately not public: only
    /// [`token_endpoint_tls`](crate::client_auth::token_endpoint_tls) uses it, so that a
    /// resource server cannot be configured this way by accident.
    pub(crate) fn client_ca_or_self_signed_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.client_auth = ClientAuth::CaOrSelfSigned(Input::Memory(pem.into()));
        self
    }

    /// [`client_ca_or_self_signed_pem`](Self::client_ca_or_self_signed_pem) with a
    /// shared [`ClientTrust`].
    pub(crate) fn client_trust_or_self_signed(mut self, trust: ClientTrust) -> Self {
        self.client_auth = ClientAuth::TrustOrSelfSigned(trust);
        self
    }

    /// **Weakens**: lets clients without a certificate complete the handshake; the
    /// layer then refuses their bound tokens, and accepts unbound ones only if told to.
    /// This is the way to serve health probes that have no certificate on the same
    /// listener: keep `/healthz` outside the layer and every other route behind it.
    pub fn allow_anonymous_clients(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Time a client has to complete its handshake; default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Handshakes in flight at most; default 1024. Accepting never waits for a slot:
    /// when all are taken, the oldest handshake in flight is shed (closed) to make room,
    /// so stalled sockets cannot keep new clients out, and a real handshake, which takes
    /// milliseconds, is never the oldest for long.
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max;
        self
    }

    /// Asks OCSP about each new connection's client certificate once its handshake is
    /// done (answers kept until their `nextUpdate`), and closes the connection when
    /// `checker`'s mode says so; see [`OcspChecker`](crate::trust::OcspChecker). The
    /// issuer comes from the client's chain or the client trust.
    pub fn ocsp(mut self, checker: crate::trust::OcspChecker) -> Self {
        self.ocsp = Some(checker);
        self
    }

    /// A client certificate presented within this time of its end is logged at WARN
    /// (subject, thumbprint, days left), once per certificate per day; default 14 days.
    pub fn expiry_warning(mut self, window: Duration) -> Self {
        self.expiry_warning = window;
        self
    }

    /// Handshakes in flight from one address (an IPv6 /64) at most; default 64. A
    /// connection beyond it is closed at once, so one address cannot take the slots of
    /// everyone else.
    pub fn max_handshakes_per_ip(mut self, max: usize) -> Self {
        self.max_handshakes_per_ip = max;
        self
    }

    /// Checks everything and builds the configuration.
    ///
    /// Problems that some clients tolerate are logged as warnings rather than refused:
    /// a server certificate without subjectAltName (rustls, Go, browsers and Python
    /// check names only there; curl still falls back to the CN), an X.509 v1 or CA:TRUE
    /// server certificate (refused by rustls clients), or an expired one. They never
    /// weaken what the server accepts, and refusing to start would break deployments
    /// whose clients work.
    ///
    /// # Errors
    /// [`TlsConfigError`] naming the input and the problem: a missing or unreadable
    /// file, a file without a certificate or key (saying what it holds instead), a key
    /// that does not fit the certificate, a client CA bundle holding a certificate that
    /// is not a CA, no client-certificate policy.
    pub fn build(self) -> Result<TlsServerConfig, TlsConfigError> {
        let provider = crate::crypto::rustls_provider();
        let chain_input = self.chain.ok_or(TlsConfigError::MissingCertificate)?;
        let key_input = self.key.ok_or(TlsConfigError::MissingPrivateKey)?;
        let (certified, subject) = certified_key(&chain_input, &key_input, &provider)?;
        if self.handshake_timeout.is_zero() {
            return Err(TlsConfigError::Zero("handshake_timeout"));
        }
        if self.max_handshakes == 0 {
            return Err(TlsConfigError::Zero("max_concurrent_handshakes"));
        }
        if self.max_handshakes_per_ip == 0 {
            return Err(TlsConfigError::Zero("max_handshakes_per_ip"));
        }
        let mut chains = ChainCheck::Validated;
        let client_auth = match self.client_auth {
            ClientAuth::Ca(input) => ClientAuth::Trust(ClientTrust::builder().ca(input).build()?),
            ClientAuth::CaOrSelfSigned(input) => {
                ClientAuth::TrustOrSelfSigned(ClientTrust::builder().ca(input).build()?)
            }
            other => other,
        };
        let mut trust_used = None;
        let (verifier, expectation): (Arc<dyn ClientCertVerifier>, Expectation) = match client_auth
        {
            ClientAuth::Unset => return Err(TlsConfigError::NoClientAuth),
            ClientAuth::Ca(_) | ClientAuth::CaOrSelfSigned(_) => {
                unreachable!("turned into a trust above")
            }
            ClientAuth::Any(revocation) => {
                if revocation
                    .as_ref()
                    .is_some_and(ClientTrust::validates_chains)
                {
                    return Err(TlsConfigError::TrustCaUnused);
                }
                chains = ChainCheck::NotValidated;
                trust_used.clone_from(&revocation);
                (
                    AnyCertificate::new(&provider, !self.anonymous, revocation),
                    Expectation::Any,
                )
            }
            ClientAuth::Trust(trust) => {
                if !trust.validates_chains() {
                    return Err(TlsConfigError::TrustWithoutCa);
                }
                let expectation = trust.current().expectation();
                trust_used = Some(trust.clone());
                (
                    TrustedClients::new(trust, &provider, !self.anonymous),
                    expectation,
                )
            }
            ClientAuth::TrustOrSelfSigned(trust) => {
                if !trust.validates_chains() {
                    return Err(TlsConfigError::TrustWithoutCa);
                }
                let expectation = match trust.current().expectation() {
                    Expectation::Ca(info) => Expectation::CaOrSelfSigned(info),
                    other => other,
                };
                chains = ChainCheck::PerConnection(trust.clone());
                trust_used = Some(trust.clone());
                (
                    CaOrSelfSigned::new(trust, Arc::clone(&provider)),
                    expectation,
                )
            }
        };
        let requires_certificate = verifier.client_auth_mandatory();
        tracing::info!(
            certificate = %chain_input.name(),
            subject = %subject,
            client_certificates = %expectation.summary(requires_certificate),
            "TLS: server certificate and client certificate policy"
        );
        let warnings = Warnings::new(WARNING_INTERVAL);
        let verifier: Arc<dyn ClientCertVerifier> =
            Diagnosed::new(verifier, expectation, Arc::clone(&warnings));

        let certificate = Arc::new(ServerCertificate {
            current: RwLock::new(Arc::new(certified)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            .with_client_cert_verifier(Arc::clone(&verifier))
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsServerConfig {
            rustls: Arc::new(config),
            certificate,
            certificate_inputs: Arc::new((chain_input, key_input)),
            trust: trust_used,
            client_expiry: Arc::new(ClientExpiryWarnings::new(self.expiry_warning)),
            verifier,
            ocsp: self.ocsp,
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
            max_handshakes_per_ip: self.max_handshakes_per_ip,
            chains,
            warnings,
            requires_certificate,
        })
    }
}

/// Reads the server's chain and key, checks that they fit, and warns about what clients
/// will refuse; with the leaf's subject, for the log.
fn certified_key(
    chain_input: &Input,
    key_input: &Input,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(CertifiedKey, String), TlsConfigError> {
    let chain = chain_input.certificates("server certificate")?;
    let key = key_input.private_key()?;
    check_server_certificate(&chain[0], &chain_input.name());
    let subject = CertificateFacts::of(&chain[0])
        .map(|f| f.subject)
        .unwrap_or_default();
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    Ok((certified, subject))
}

/// The server's certificate and key, as the handshakes find them: swapped whole by a
/// reload.
#[derive(Debug)]
pub(crate) struct ServerCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertificate {
    fn get(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn set(&self, next: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Warns about a server certificate that clients will refuse, saying how to fix it.
fn check_server_certificate(leaf: &CertificateDer<'_>, source: &str) {
    let Some(facts) = CertificateFacts::of(leaf) else {
        // rustls refuses it when the configuration is built.
        return;
    };
    let subject = facts.subject.as_str();
    let fix = "re-issue it with `-extfile` holding `subjectAltName = DNS:<host>, \
               IP:<address>`, `basicConstraints = CA:FALSE` and \
               `extendedKeyUsage = serverAuth`";
    if facts.version < 3 {
        tracing::warn!(
            source = %source,
            subject = %subject,
            "server certificate is X.509 v1: rustls clients refuse it, and it has no \
             subjectAltName for the others to check; {fix}"
        );
    } else if !facts.has_san {
        tracing::warn!(
            source = %source,
            subject = %subject,
            "server certificate has no subjectAltName: rustls, Go, browsers and Python \
             clients match the host name only against it and will refuse the certificate; \
             {fix}"
        );
    }
    if facts.version >= 3 && facts.is_ca {
        tracing::warn!(
            source = %source,
            subject = %subject,
            "server certificate says basicConstraints CA:TRUE (as `openssl req -x509` \
             makes it): rustls clients refuse a CA certificate as a server's; {fix}"
        );
    }
    if facts.server_auth_allowed == Some(false) {
        tracing::warn!(
            source = %source,
            subject = %subject,
            "server certificate's extendedKeyUsage does not include serverAuth: clients \
             refuse it; {fix}"
        );
    }
    let now = unix_now();
    if facts.expired_at(now) {
        tracing::warn!(
            source = %source,
            subject = %subject,
            "server certificate expired at {}: clients refuse it; issue a new one",
            utc(facts.not_after)
        );
    }
}

/// A checked server TLS configuration, for [`TlsListener`](super::TlsListener).
#[derive(Clone)]
pub struct TlsServerConfig {
    pub(crate) rustls: Arc<rustls::ServerConfig>,
    certificate: Arc<ServerCertificate>,
    /// Where the chain and the key came from, for a reload.
    certificate_inputs: Arc<(Input, Input)>,
    /// The client trust the handshakes use, when there is one.
    trust: Option<ClientTrust>,
    /// Warnings about client certificates close to their end.
    pub(crate) client_expiry: Arc<ClientExpiryWarnings>,
    /// The handshake's verifier, for resumed sessions: rustls does not call it for
    /// them, and the trust may have changed since the session began.
    pub(crate) verifier: Arc<dyn ClientCertVerifier>,
    /// OCSP for client certificates, when asked for.
    pub(crate) ocsp: Option<crate::trust::OcspChecker>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) max_handshakes_per_ip: usize,
    pub(crate) chains: ChainCheck,
    /// Refusals logged once per cause per interval, shared with the verifier.
    pub(crate) warnings: Arc<Warnings>,
    /// Whether a handshake without a client certificate fails.
    pub(crate) requires_certificate: bool,
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .field("requires_certificate", &self.requires_certificate)
            .finish_non_exhaustive()
    }
}

/// Whether a connection's client certificate chains to a configured CA.
#[derive(Clone)]
pub(crate) enum ChainCheck {
    /// The handshake only completes with a validated chain (or no certificate).
    Validated,
    /// Any certificate passes the handshake.
    NotValidated,
    /// Self-signed ones pass too: validate again, once per connection.
    PerConnection(ClientTrust),
}

impl ChainCheck {
    pub(crate) fn validated(&self, chain: &[rustls::pki_types::CertificateDer<'_>]) -> bool {
        match self {
            Self::Validated => true,
            Self::NotValidated => false,
            Self::PerConnection(ca) => chain.split_first().is_some_and(|(leaf, intermediates)| {
                ca.verify_chain(leaf, intermediates, rustls::pki_types::UnixTime::now())
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
            max_handshakes_per_ip: DEFAULT_MAX_HANDSHAKES_PER_IP,
            expiry_warning: crate::expiry::DEFAULT_EXPIRY_WARNING,
            ocsp: None,
        }
    }

    /// The rustls configuration, e.g. for another TLS server.
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.rustls)
    }

    /// Reads the server certificate chain and key again (files are read anew; material
    /// given in memory is used as it was), checks them as
    /// [`build`](TlsServerConfigBuilder::build) does, and reloads the client trust's
    /// files (CA bundle, CRLs; see [`ClientTrust::reload`]). Only once everything has
    /// been read and checked is it put in place: new handshakes use it, established
    /// connections keep going. On an error nothing changes.
    ///
    /// # Errors
    /// [`TlsConfigError`] naming the file and the problem.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        crate::reload::one_at_a_time(|| {
            let commit = self.prepare_reload()?;
            commit();
            Ok(())
        })
    }

    /// Reads and checks everything; the returned step puts it in place.
    pub(crate) fn prepare_reload(
        &self,
    ) -> Result<Box<dyn FnOnce() + Send + 'static>, TlsConfigError> {
        let (chain, key) = &*self.certificate_inputs;
        let (certified, _) = certified_key(chain, key, &crate::crypto::rustls_provider())?;
        let trust = match &self.trust {
            Some(trust) => Some(trust.prepare_reload()?),
            None => None,
        };
        let certificate = Arc::clone(&self.certificate);
        Ok(Box::new(move || {
            certificate.set(certified);
            if let Some(commit) = trust {
                commit();
            }
        }))
    }

    /// The files a reload reads: the chain, the key, and the client trust's.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        let (chain, key) = &*self.certificate_inputs;
        let mut files: Vec<PathBuf> = [chain, key].into_iter().filter_map(Input::path).collect();
        if let Some(trust) = &self.trust {
            files.extend(trust.files());
        }
        files
    }

    /// The server certificate's end, and the client trust's CAs and CRLs.
    pub(crate) fn expiring(&self) -> Vec<crate::expiry::Expiring> {
        let leaf = self.certificate.get().cert[0].clone();
        let mut items: Vec<_> = CertificateFacts::of(&leaf)
            .map(|facts| crate::expiry::Expiring {
                kind: "server_certificate",
                name: facts.subject,
                thumbprint: Some(facts.thumbprint),
                at: facts.not_after,
            })
            .into_iter()
            .collect();
        if let Some(trust) = &self.trust {
            items.extend(trust.expiring());
        }
        items
    }

    /// The client trust the handshakes use, if any.
    pub fn client_trust(&self) -> Option<&ClientTrust> {
        self.trust.as_ref()
    }
}
