//! Which client certificates are trusted: [`ClientTrust`], one object built from the
//! client CA bundle, the CRLs and the revocation policy, and shared by everything that
//! judges a client certificate — the TLS listener's handshakes, the token endpoint's
//! client authentication, and the layer's check of certificates a proxy forwards.
//!
//! ```no_run
//! use mtls_bound_token::tls::TlsServerConfig;
//! use mtls_bound_token::trust::{ClientTrust, UnknownRevocation};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = ClientTrust::builder()
//!     .ca_file("clients-ca.crt")
//!     .crl_file("clients-ca.crl")
//!     .unknown_revocation(UnknownRevocation::Deny) // the default
//!     .build()?;
//! let tls = TlsServerConfig::builder()
//!     .certificate_chain_file("server.crt")
//!     .private_key_file("server.key")
//!     .client_trust(trust.clone())
//!     .build()?;
//! // Later, e.g. on SIGHUP: every holder of `trust` (and of its clones) sees the new
//! // material at once; new handshakes use it, established connections go on.
//! trust.replace_with(&ClientTrust::builder().ca_file("clients-ca.crt").crl_file("clients-ca.crl").build()?);
//! # let _ = tls; Ok(()) }
//! ```

mod crl;
mod ocsp;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::DistinguishedName;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

pub(crate) use crl::Crl;
pub use crl::RevocationStatus;
pub use ocsp::{DEFAULT_OCSP_TIMEOUT, OcspChecker, OcspMode};

use crate::cert::PeerCertificate;
use crate::tls::{ClientCaBundle, Expectation, TlsConfigError, TlsInput, utc};

/// Which certificates of a chain the CRLs are checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RevocationDepth {
    /// Every certificate below the trust anchor: the leaf and each intermediate.
    #[default]
    Chain,
    /// The client's own certificate only.
    Leaf,
}

/// What happens to a certificate whose status no loaded CRL covers (its issuer has no
/// CRL loaded). Only matters once CRLs are loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownRevocation {
    /// Refused: fail closed.
    #[default]
    Deny,
    /// Accepted as if it were not revoked.
    Allow,
}

/// What happens to a certificate whose issuer's CRL is past its `nextUpdate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExpiredCrl {
    /// Refused until a fresh CRL is loaded (logged at start-up and on reload).
    #[default]
    Deny,
    /// The stale CRL is still used: what it revokes stays refused, the rest passes.
    Allow,
}

/// Why a certificate is refused on revocation grounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Revoked,
    Unknown,
    CrlExpired,
}

impl Refusal {
    /// What a client is told (no detail of the server's CRLs).
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Revoked => "the client certificate is revoked",
            Self::Unknown => "the revocation status of the client certificate is unknown",
            Self::CrlExpired => {
                "the revocation status of the client certificate cannot be checked now"
            }
        }
    }

    /// The TLS alert's reason.
    pub(crate) fn tls_error(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(match self {
            Self::Revoked => rustls::CertificateError::Revoked,
            Self::Unknown => rustls::CertificateError::UnknownRevocationStatus,
            Self::CrlExpired => rustls::CertificateError::ExpiredRevocationList,
        })
    }
}

/// What a [`ClientTrust`] holds at one moment; replaced whole.
pub(crate) struct Material {
    /// The CA bundle, when chains are validated here.
    pub(crate) ca: Option<ClientCaBundle>,
    pub(crate) crls: Vec<Crl>,
    unknown: UnknownRevocation,
    expired: ExpiredCrl,
    /// Chain validation (with the CRLs): webpki over the bundle, or the user's own.
    pub(crate) verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// How it was built, for [`ClientTrust::reload`]: it travels with the material, so
    /// that a reload after [`ClientTrust::replace_with`] reads what replaced it. `None`
    /// for a verifier of the user's own.
    recipe: Option<ClientTrustBuilder>,
}

impl Material {
    /// What the CRLs say of `certificate` alone: its issuer's CRL found by name.
    pub(crate) fn status_of(&self, certificate: &PeerCertificate) -> RevocationStatus {
        if self.crls.is_empty() {
            return RevocationStatus::NotChecked;
        }
        certificate
            .issuer_and_serial()
            .map_or(RevocationStatus::Unknown, |(issuer, serial)| {
                crl::status_by(&self.crls, issuer, serial, crate::tls::unix_now())
            })
    }

    /// The leaf-only revocation decision for `certificate`, by the policy.
    pub(crate) fn check_leaf(
        &self,
        certificate: &PeerCertificate,
    ) -> Result<RevocationStatus, Refusal> {
        match self.status_of(certificate) {
            RevocationStatus::Revoked => Err(Refusal::Revoked),
            RevocationStatus::Unknown if self.unknown == UnknownRevocation::Deny => {
                Err(Refusal::Unknown)
            }
            RevocationStatus::CrlExpired if self.expired == ExpiredCrl::Deny => {
                Err(Refusal::CrlExpired)
            }
            status => Ok(status),
        }
    }

    /// How messages name what chains must lead to.
    pub(crate) fn expectation(&self) -> Expectation {
        match &self.ca {
            Some(bundle) => Expectation::Ca(bundle.info.clone()),
            None => Expectation::Any,
        }
    }
}

/// Why [`ClientTrust::check_client_chain`] refused a chain: a short cause (as in the
/// handshake-failure metric) and the sentence with the fix (as in the server's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChainRefusal {
    /// `unknown_ca`, `expired`, `revoked`, `revocation_unknown`, …
    pub cause: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// The trusted client CAs, the CRLs and the revocation policy: built once, shared by the
/// TLS listener ([`TlsServerConfigBuilder::client_trust`](crate::tls::TlsServerConfigBuilder::client_trust)),
/// the token endpoint ([`ClientAuthenticatorBuilder::client_trust`](crate::client_auth::ClientAuthenticatorBuilder::client_trust))
/// and certificates forwarded by a proxy
/// ([`ProxyCertificateBuilder::check_revocation`](crate::cert::ProxyCertificateBuilder::check_revocation)).
///
/// Cheap to clone; clones share one state, which
/// [`replace_with`](Self::replace_with) swaps atomically for all of them.
#[derive(Clone)]
pub struct ClientTrust {
    shared: Arc<Shared>,
}

struct Shared {
    material: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let material = self.current();
        f.debug_struct("ClientTrust")
            .field(
                "ca",
                &material.ca.as_ref().map(|bundle| &bundle.info.subjects),
            )
            .field(
                "crls",
                &material
                    .crls
                    .iter()
                    .map(|crl| crl.issuer_text.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("unknown_revocation", &material.unknown)
            .field("expired_crl", &material.expired)
            .finish_non_exhaustive()
    }
}

impl ClientTrust {
    /// Starts a configuration: no CA, no CRLs, whole chains checked, unknown status and
    /// expired CRLs refused.
    pub fn builder() -> ClientTrustBuilder {
        ClientTrustBuilder::default()
    }

    /// Escape hatch: chains are validated by your own rustls verifier (which then also
    /// decides revocation). Leaf revocation checks (forwarded certificates) find no CRL
    /// here and pass.
    pub fn from_client_cert_verifier(verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self::from_material(Material {
            recipe: None,
            ca: None,
            crls: Vec::new(),
            unknown: UnknownRevocation::Allow,
            expired: ExpiredCrl::Allow,
            verifier: Some(verifier),
        })
    }

    fn from_material(material: Material) -> Self {
        Self {
            shared: Arc::new(Shared {
                material: RwLock::new(Arc::new(material)),
            }),
        }
    }

    /// Reads the CA bundle and CRL files it was built from again, checks them as
    /// [`build`](ClientTrustBuilder::build) does, and puts them in place as
    /// [`replace_with`](Self::replace_with) does. Material given in memory is used again
    /// as it was; a trust made by
    /// [`from_client_cert_verifier`](Self::from_client_cert_verifier) has nothing to
    /// reload.
    ///
    /// # Errors
    /// What [`build`](ClientTrustBuilder::build) reports; the old material stays.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        crate::reload::one_at_a_time(|| {
            let commit = self.prepare_reload()?;
            commit();
            Ok(())
        })
    }

    /// Reads and checks the files; the returned step puts them in place.
    pub(crate) fn prepare_reload(
        &self,
    ) -> Result<Box<dyn FnOnce() + Send + 'static>, TlsConfigError> {
        let Some(recipe) = self.current().recipe.clone() else {
            return Ok(Box::new(|| {}));
        };
        let next = recipe.build()?;
        let this = self.clone();
        Ok(Box::new(move || this.replace_with(&next)))
    }

    /// The files it reads (CA bundle and CRLs), for watching.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.current()
            .recipe
            .as_ref()
            .map_or_else(Vec::new, |recipe| {
                recipe
                    .ca
                    .iter()
                    .chain(&recipe.crls)
                    .filter_map(TlsInput::path)
                    .collect()
            })
    }

    /// Replaces what this trust (and every clone of it) holds with what `other` holds,
    /// at once: the next handshake, token request or forwarded certificate is judged by
    /// the new CAs and CRLs. Connections established before keep going.
    pub fn replace_with(&self, other: &ClientTrust) {
        let new = other.current();
        match self.shared.material.write() {
            Ok(mut guard) => *guard = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// What it holds now.
    pub(crate) fn current(&self) -> Arc<Material> {
        match self.shared.material.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Whether chains are validated here (a CA bundle or a verifier of your own).
    pub fn validates_chains(&self) -> bool {
        self.current().verifier.is_some()
    }

    /// How many CRLs are loaded.
    pub fn crl_count(&self) -> usize {
        self.current().crls.len()
    }

    /// What the loaded CRLs say of `certificate` alone (no chain is built: its issuer's
    /// CRL is found by name).
    pub fn revocation_status(&self, certificate: &PeerCertificate) -> RevocationStatus {
        self.current().status_of(certificate)
    }

    /// Validates a client certificate chain (leaf first) now, as a handshake would, CRLs
    /// included; a refusal comes with the explanation the server logs for it. For
    /// tools (see the `cert_check` example) and tests: the listener and the token
    /// endpoint call this themselves.
    ///
    /// # Errors
    /// [`ChainRefusal`] saying why, and what to do about it.
    pub fn check_client_chain(&self, chain: &[CertificateDer<'_>]) -> Result<(), ChainRefusal> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(ChainRefusal {
                cause: "no_certificate",
                message: "no certificate was given".into(),
            });
        };
        let error = match self.verify_chain(leaf, intermediates, UnixTime::now()) {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let facts = crate::tls::CertificateFacts::of(leaf);
        let explanation = crate::tls::explain(
            facts.as_ref(),
            &error,
            &self.current().expectation(),
            crate::tls::unix_now(),
        );
        Err(ChainRefusal {
            cause: explanation.cause,
            message: explanation.message,
        })
    }

    /// Validates `end_entity` and its chain now, CRLs included.
    pub(crate) fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.current().verifier {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    /// The CAs' ends and the CRLs' `nextUpdate`s, as they are now.
    pub(crate) fn expiring(&self) -> Vec<crate::expiry::Expiring> {
        let material = self.current();
        let mut items = Vec::new();
        if let Some(bundle) = &material.ca {
            for der in &bundle.certificates {
                if let Some(facts) = crate::tls::CertificateFacts::of(der) {
                    items.push(crate::expiry::Expiring {
                        kind: "client_ca",
                        name: facts.subject,
                        thumbprint: Some(facts.thumbprint),
                        at: facts.not_after,
                    });
                }
            }
        }
        for crl in &material.crls {
            if let Some(at) = crl.next_update {
                items.push(crate::expiry::Expiring {
                    kind: "crl_next_update",
                    name: crl.issuer_text.clone(),
                    thumbprint: None,
                    at,
                });
            }
        }
        items
    }

    /// The CA subjects a server names in its certificate request, as they are now.
    pub(crate) fn root_hints(&self) -> Vec<DistinguishedName> {
        self.current()
            .verifier
            .as_ref()
            .map(|verifier| verifier.root_hint_subjects().to_vec())
            .unwrap_or_default()
    }
}

/// Builds a [`ClientTrust`].
#[derive(Default, Clone)]
pub struct ClientTrustBuilder {
    ca: Option<TlsInput>,
    crls: Vec<TlsInput>,
    depth: RevocationDepth,
    unknown: UnknownRevocation,
    expired: ExpiredCrl,
}

impl std::fmt::Debug for ClientTrustBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTrustBuilder")
            .field("ca", &self.ca.as_ref().map(TlsInput::name))
            .field(
                "crls",
                &self.crls.iter().map(TlsInput::name).collect::<Vec<_>>(),
            )
            .field("depth", &self.depth)
            .field("unknown", &self.unknown)
            .field("expired", &self.expired)
            .finish()
    }
}

impl ClientTrustBuilder {
    /// Client certificates must chain to one of these CA certificates: a PEM bundle or
    /// DER, told apart by content; checked as
    /// [`client_ca_file`](crate::tls::TlsServerConfigBuilder::client_ca_file) checks it.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca = Some(TlsInput::File(path.into()));
        self
    }

    pub(crate) fn ca(mut self, input: TlsInput) -> Self {
        self.ca = Some(input);
        self
    }

    /// The CA bundle from memory, PEM or DER.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(TlsInput::Memory(pem.into()));
        self
    }

    /// A CRL file: PEM `X509 CRL` blocks (one or more) or one DER CRL. Repeatable.
    pub fn crl_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.crls.push(TlsInput::File(path.into()));
        self
    }

    /// A CRL from memory, PEM or DER. Repeatable.
    pub fn crl(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.crls.push(TlsInput::Memory(bytes.into()));
        self
    }

    /// Which certificates of a chain are checked against the CRLs; default
    /// [`RevocationDepth::Chain`]. Certificates a proxy forwards are checked as leaves.
    pub fn revocation_depth(mut self, depth: RevocationDepth) -> Self {
        self.depth = depth;
        self
    }

    /// A certificate whose issuer has no CRL loaded; default
    /// [`UnknownRevocation::Deny`].
    pub fn unknown_revocation(mut self, policy: UnknownRevocation) -> Self {
        self.unknown = policy;
        self
    }

    /// A certificate whose issuer's CRL is past its `nextUpdate`; default
    /// [`ExpiredCrl::Deny`].
    pub fn expired_crl(mut self, policy: ExpiredCrl) -> Self {
        self.expired = policy;
        self
    }

    /// Reads and checks everything.
    ///
    /// Without a CA bundle the trust validates no chain; its CRLs then serve the checks
    /// of leaf certificates (forwarded by a proxy, or accepted for binding only), and
    /// their signatures cannot be checked: they are trusted as configuration, as the
    /// bundle would be. With a bundle, a CRL whose issuer is one of its CAs must be
    /// signed by that CA.
    ///
    /// # Errors
    /// [`TlsConfigError::Input`] naming the file and the problem: unreadable, not a CRL
    /// (saying what it is instead), a CRL not signed by the bundle's CA of its name, a
    /// CA bundle problem as the TLS builder reports it.
    pub fn build(self) -> Result<ClientTrust, TlsConfigError> {
        let recipe = self.clone();
        let provider = crate::crypto::rustls_provider();
        let ca = self.ca.as_ref().map(TlsInput::client_ca).transpose()?;
        let mut crls = Vec::new();
        for input in &self.crls {
            let what = "CRL";
            let bytes = input.read_bounded(what, crl::MAX_CRL_LEN)?;
            let read = crl::read(&bytes).map_err(|problem| input.error(what, problem))?;
            for crl in &read {
                check_crl(crl, ca.as_ref(), &provider).map_err(|p| input.error(what, p))?;
                log_crl(crl, &input.name(), self.expired);
            }
            crls.extend(read);
        }
        let crls = crl::newest_per_issuer(crls);
        if let Some(bundle) = &ca {
            refuse_revoked_anchors(bundle, &crls)?;
        }
        let verifier = match &ca {
            Some(bundle) => {
                let mut builder = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(&bundle.roots),
                    Arc::clone(&provider),
                );
                if !crls.is_empty() {
                    builder = builder.with_crls(crls.iter().map(|crl| crl.der.clone()));
                    if self.depth == RevocationDepth::Leaf {
                        builder = builder.only_check_end_entity_revocation();
                    }
                    if self.unknown == UnknownRevocation::Allow {
                        builder = builder.allow_unknown_revocation_status();
                    }
                    if self.expired == ExpiredCrl::Deny {
                        builder = builder.enforce_revocation_expiration();
                    }
                }
                Some(
                    builder
                        .build()
                        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?,
                )
            }
            None => None,
        };
        Ok(ClientTrust::from_material(Material {
            recipe: Some(recipe),
            ca,
            crls,
            unknown: self.unknown,
            expired: self.expired,
            verifier,
        }))
    }
}

/// A CA of the bundle that a loaded CRL revokes would still be trusted (a trust anchor's
/// revocation is never checked): that is a configuration to fix, not to run with.
fn refuse_revoked_anchors(bundle: &ClientCaBundle, crls: &[Crl]) -> Result<(), TlsConfigError> {
    for (i, der) in bundle.certificates.iter().enumerate() {
        if crl::status_now(crls, der) == RevocationStatus::Revoked {
            return Err(TlsConfigError::Input {
                what: "client CA bundle",
                source_name: bundle.info.source.clone(),
                problem: format!(
                    "certificate {} ({}) is revoked by a loaded CRL, and a CA in the bundle \
                     is trusted as it is; take it out of the bundle",
                    i + 1,
                    bundle.info.subjects.get(i).map_or("?", String::as_str)
                ),
            });
        }
    }
    Ok(())
}

/// A CRL whose issuer is one of the bundle's CAs must carry that CA's signature.
fn check_crl(
    crl: &Crl,
    ca: Option<&ClientCaBundle>,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(), String> {
    let Some(bundle) = ca else { return Ok(()) };
    let issuers: Vec<&CertificateDer<'static>> = bundle
        .certificates
        .iter()
        .filter(|der| crate::tls::subject_der(der).is_some_and(|s| s == crl.issuer.as_slice()))
        .collect();
    if issuers.is_empty() {
        // An intermediate's CRL: its signature is checked by the handshakes whose chain
        // holds that intermediate.
        return Ok(());
    }
    if issuers
        .iter()
        .any(|issuer| crate::tls::signed_by(crl.der.as_ref(), issuer, provider))
    {
        Ok(())
    } else {
        Err(format!(
            "is issued in the name of {}, but its signature does not verify with the key \
             of the CA of that name in the client CA bundle; give the CRL that CA signed \
             (`openssl ca -gencrl` with that CA's key)",
            crl.issuer_text
        ))
    }
}

/// One line per CRL at start-up, and a warning for one already past `nextUpdate`.
fn log_crl(crl: &Crl, source: &str, expired: ExpiredCrl) {
    let now = crate::tls::unix_now();
    if crl.expired_at(now) {
        let next = crl.next_update.map(utc).unwrap_or_default();
        match expired {
            ExpiredCrl::Deny => tracing::warn!(
                source,
                issuer = %crl.issuer_text,
                "CRL expired at {next}: certificates of {} are refused until a fresh CRL \
                 is loaded",
                crl.issuer_text
            ),
            ExpiredCrl::Allow => tracing::warn!(
                source,
                issuer = %crl.issuer_text,
                "CRL expired at {next}; still used, as configured (revocations issued \
                 since are not known)"
            ),
        }
    } else {
        tracing::info!(
            source,
            issuer = %crl.issuer_text,
            revoked = crl.len(),
            next_update = %crl.next_update.map(utc).unwrap_or_else(|| "none".into()),
            "CRL loaded"
        );
    }
}
