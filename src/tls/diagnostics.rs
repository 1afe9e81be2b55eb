//! Why a TLS handshake failed, told to the operator: every refused client certificate
//! is logged at WARN with the peer, the certificate's subject and thumbprint, and words
//! that name the fix; each cause at most once per interval, so a client retrying in a
//! loop (or an attacker) cannot flood the log.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::facts::{CertificateFacts, unix_now, utc};

/// How often one cause of refusal is logged at most.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// CA subjects named in a message, at most.
const CAS_NAMED: usize = 3;

tokio::task_local! {
    /// The handshake being run by this task, so that the verifier, which rustls calls
    /// without any connection context, can name the peer.
    static HANDSHAKE: Handshake;
}

struct Handshake {
    peer: SocketAddr,
    /// The verifier already explained the failure; the listener need not.
    explained: Cell<bool>,
}

/// Runs `handshake` for `peer`; returns its output and whether a refusal of the
/// client's certificate was already logged for it.
pub(crate) async fn for_peer<F: Future>(peer: SocketAddr, handshake: F) -> (F::Output, bool) {
    let context = Handshake {
        peer,
        explained: Cell::new(false),
    };
    HANDSHAKE
        .scope(context, async move {
            let output = handshake.await;
            let explained = HANDSHAKE.with(|h| h.explained.get());
            (output, explained)
        })
        .await
}

fn current_peer() -> Option<SocketAddr> {
    HANDSHAKE.try_with(|h| h.peer).ok()
}

fn mark_explained() {
    let _ = HANDSHAKE.try_with(|h| h.explained.set(true));
}

/// At most one message per cause per interval; counts what it held back.
#[derive(Debug)]
pub(crate) struct Warnings {
    interval: Duration,
    causes: Mutex<HashMap<&'static str, Slot>>,
}

#[derive(Debug)]
struct Slot {
    logged_at: Instant,
    suppressed: u64,
}

impl Warnings {
    pub(crate) fn new(interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            interval,
            causes: Mutex::new(HashMap::new()),
        })
    }

    /// `Some(n)` when a message for `cause` may be logged now (`n` held back since the
    /// last one), `None` when it is to be held back.
    pub(crate) fn admit(&self, cause: &'static str) -> Option<u64> {
        let now = Instant::now();
        let mut causes = self
            .causes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match causes.get_mut(cause) {
            Some(slot) if now.duration_since(slot.logged_at) < self.interval => {
                slot.suppressed += 1;
                None
            }
            Some(slot) => {
                let suppressed = slot.suppressed;
                *slot = Slot {
                    logged_at: now,
                    suppressed: 0,
                };
                Some(suppressed)
            }
            None => {
                causes.insert(
                    cause,
                    Slot {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// Which client certificates a listener accepts, for the messages.
#[derive(Debug, Clone)]
pub(crate) enum Expectation {
    /// Certificates that chain to this bundle.
    Ca(BundleInfo),
    /// Any well-formed certificate (binding only).
    Any,
    /// Chaining to the bundle, or self-signed (token endpoints).
    CaOrSelfSigned(BundleInfo),
}

impl Expectation {
    /// One line for the start-up log.
    pub(crate) fn summary(&self, required: bool) -> String {
        let need = if required { "required" } else { "optional" };
        match self {
            Self::Ca(bundle) => format!("{need}, chaining to {}", bundle.describe()),
            Self::Any => format!("{need}, any (not chain-validated: binding only)"),
            Self::CaOrSelfSigned(bundle) => {
                format!("{need}, chaining to {} or self-signed", bundle.describe())
            }
        }
    }
}

/// A client CA bundle as the messages name it.
#[derive(Debug, Clone)]
pub(crate) struct BundleInfo {
    /// The file, or `<memory>`.
    pub(crate) source: String,
    /// The subjects of its certificates.
    pub(crate) subjects: Vec<String>,
}

impl BundleInfo {
    fn describe(&self) -> String {
        let mut named: Vec<&str> = self
            .subjects
            .iter()
            .take(CAS_NAMED)
            .map(String::as_str)
            .collect();
        let more = self.subjects.len().saturating_sub(CAS_NAMED);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        if named.is_empty() {
            named.push("no certificates");
        }
        format!("{} (which holds {}{more})", self.source, named.join("; "))
    }
}

/// What the operator is told about one refusal: a short cause for filtering, and the
/// sentence with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Explanation {
    pub(crate) cause: &'static str,
    pub(crate) message: String,
}

/// Explains why `error` refused a client certificate with these `facts` (`None`: it
/// could not be parsed).
pub(crate) fn explain(
    facts: Option<&CertificateFacts>,
    error: &rustls::Error,
    expectation: &Expectation,
    now: i64,
) -> Explanation {
    let bundle = match expectation {
        Expectation::Ca(bundle) | Expectation::CaOrSelfSigned(bundle) => Some(bundle),
        Expectation::Any => None,
    };
    let Some(facts) = facts else {
        return Explanation {
            cause: "malformed",
            message: "the client certificate cannot be parsed as a DER X.509 certificate".into(),
        };
    };
    let certificate_error = match error {
        rustls::Error::InvalidCertificate(e) => Some(e),
        _ => None,
    };
    if facts.version < 3 {
        return Explanation {
            cause: "x509_v1",
            message: "the client certificate is X.509 v1, which cannot carry extensions and \
                      which TLS libraries refuse; re-sign it as v3: `openssl x509 -req ... \
                      -extfile client.ext`, with `basicConstraints = CA:FALSE` and \
                      `extendedKeyUsage = clientAuth` in client.ext (without -extfile, \
                      openssl writes v1)"
                .into(),
        };
    }
    let unexpected = matches!(certificate_error, Some(CertificateError::Other(_)));
    if facts.is_ca && unexpected {
        return Explanation {
            cause: "ca_as_client",
            message: format!(
                "the client certificate is a CA certificate (basicConstraints CA:TRUE, as \
                 `openssl req -x509` makes them), and a client certificate that must chain \
                 to {} cannot be a CA; issue the client a certificate with \
                 `basicConstraints = CA:FALSE` from that CA (a self-signed client \
                 certificate is for self_signed_tls_client_auth or \
                 accept_any_client_certificate())",
                bundle.map_or_else(|| "a CA".to_owned(), BundleInfo::describe)
            ),
        };
    }
    let (cause, message) = match certificate_error {
        Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
            if facts.expired_at(now) =>
        {
            let days = (now - facts.not_after) / 86_400;
            (
                "expired",
                format!(
                    "the client certificate expired at {} ({days} day{} ago); issue the \
                     client a new one",
                    utc(facts.not_after),
                    if days == 1 { "" } else { "s" }
                ),
            )
        }
        Some(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. })
        | Some(CertificateError::Expired | CertificateError::ExpiredContext { .. })
            if facts.not_yet_valid_at(now) =>
        {
            (
                "not_yet_valid",
                format!(
                    "the client certificate is valid only from {}; check the clock of \
                     this server and of the machine that issued it",
                    utc(facts.not_before)
                ),
            )
        }
        Some(CertificateError::UnknownIssuer) => match (facts.issued_by_itself, bundle) {
            (true, Some(bundle)) => (
                "self_signed",
                format!(
                    "the client certificate is self-signed ({}), and this listener accepts \
                     only certificates issued by a CA in its client CA bundle {}; issue the \
                     client a certificate from that CA, or register the certificate itself \
                     (self_signed_tls_client_auth at a token endpoint, \
                     accept_any_client_certificate() for binding only)",
                    facts.subject,
                    bundle.describe()
                ),
            ),
            (_, Some(bundle)) => (
                "unknown_ca",
                format!(
                    "the client certificate was issued by {}, which is not in the client CA \
                     bundle {}; give the server the CA certificate that signed it, or the \
                     client a certificate from one of those CAs",
                    facts.issuer,
                    bundle.describe()
                ),
            ),
            (_, None) => (
                "unknown_ca",
                format!(
                    "the client certificate was issued by {}, an unknown CA",
                    facts.issuer
                ),
            ),
        },
        Some(CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }) => {
            (
                "wrong_purpose",
                "the client certificate's extendedKeyUsage does not allow client \
             authentication; re-sign it with `extendedKeyUsage = clientAuth` in the \
             -extfile"
                    .into(),
            )
        }
        #[allow(deprecated)]
        Some(
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
        ) => (
            "bad_signature",
            format!(
                "the client certificate's signature does not verify with the key of its \
                 issuer {} (another CA of the same name?), or uses an algorithm this server \
                 does not support",
                facts.issuer
            ),
        ),
        Some(CertificateError::BadEncoding) => (
            "malformed",
            "the client certificate is not well-formed DER".into(),
        ),
        Some(CertificateError::UnhandledCriticalExtension) => (
            "critical_extension",
            "the client certificate has a critical extension this server does not \
             understand; issue it without that extension or mark it non-critical"
                .into(),
        ),
        Some(CertificateError::Revoked) => (
            "revoked",
            format!(
                "the client certificate (serial issued by {}) is revoked by a loaded CRL; \
                 issue the client a new certificate",
                facts.issuer
            ),
        ),
        Some(CertificateError::UnknownRevocationStatus) => (
            "revocation_unknown",
            format!(
                "no loaded CRL is from {}, the issuer of the client certificate (or of a \
                 certificate in its chain), and an unknown revocation status is refused; \
                 load that CA's CRL, or allow unknown status (`--crl-unknown allow`)",
                facts.issuer
            ),
        ),
        Some(
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. },
        ) => (
            "crl_expired",
            format!(
                "the CRL of {} is past its nextUpdate, and certificates it covers are \
                 refused until a fresh CRL is loaded (reload the server after replacing \
                 the file)",
                facts.issuer
            ),
        ),
        _ => (
            "other",
            format!("the client certificate was refused: {error}"),
        ),
    };
    Explanation { cause, message }
}

/// Wraps the listener's client-certificate verifier: the same decisions, explained.
#[derive(Debug)]
pub(crate) struct Diagnosed {
    inner: Arc<dyn ClientCertVerifier>,
    expectation: Expectation,
    warnings: Arc<Warnings>,
}

impl Diagnosed {
    pub(crate) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        expectation: Expectation,
        warnings: Arc<Warnings>,
    ) -> Arc<Self> {
        Arc::new(Self {
            inner,
            expectation,
            warnings,
        })
    }

    fn refused(&self, end_entity: &CertificateDer<'_>, error: &rustls::Error) {
        mark_explained();
        let facts = CertificateFacts::of(end_entity);
        let explanation = explain(facts.as_ref(), error, &self.expectation, unix_now());
        crate::telemetry::handshake_failure(explanation.cause);
        let Some(suppressed) = self.warnings.admit(explanation.cause) else {
            return;
        };
        let (subject, thumbprint) = facts
            .as_ref()
            .map_or(("?", "?"), |f| (f.subject.as_str(), f.thumbprint.as_str()));
        let peer = current_peer().map_or_else(|| "?".to_owned(), |p| p.to_string());
        tracing::warn!(
            peer = %peer,
            subject = %subject,
            thumbprint = %thumbprint,
            cause = explanation.cause,
            suppressed,
            "TLS handshake refused: {}",
            explanation.message
        );
    }

    fn bad_handshake_signature(&self, cert: &CertificateDer<'_>, error: &rustls::Error) {
        mark_explained();
        let Some(suppressed) = self.warnings.admit("bad_handshake_signature") else {
            return;
        };
        let thumbprint = CertificateFacts::of(cert).map_or_else(|| "?".into(), |f| f.thumbprint);
        let peer = current_peer().map_or_else(|| "?".to_owned(), |p| p.to_string());
        tracing::warn!(
            peer = %peer,
            thumbprint = %thumbprint,
            cause = "bad_handshake_signature",
            suppressed,
            %error,
            "TLS handshake refused: the client's handshake signature does not verify with \
             the certificate it sent (it does not hold that certificate's private key, or \
             signed with an algorithm that does not fit the key)"
        );
    }
}

impl ClientCertVerifier for Diagnosed {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|error| self.refused(end_entity, error))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, cert, dss)
            .inspect_err(|error| self.bad_handshake_signature(cert, error))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, cert, dss)
            .inspect_err(|error| self.bad_handshake_signature(cert, error))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Explains a handshake that failed for a reason the verifier did not see: no
/// certificate, the client refusing the server's certificate, not TLS at all. Other
/// failures (timeouts, resets, protocol mismatches) stay at debug: they are the normal
/// noise of a listener.
pub(crate) fn handshake_failed(
    peer: SocketAddr,
    error: &std::io::Error,
    warnings: &Warnings,
    requires_certificate: bool,
) {
    let rustls_error = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let explanation = match rustls_error {
        Some(rustls::Error::NoCertificatesPresented) if requires_certificate => Some((
            "no_certificate",
            "the client sent no certificate, and this listener requires one; give the \
             client its certificate and key (curl --cert client.crt --key client.key, \
             requests cert=(crt, key)); for health probes see allow_anonymous_clients()"
                .to_owned(),
        )),
        Some(rustls::Error::AlertReceived(alert)) => {
            use rustls::AlertDescription as A;
            match alert {
                A::UnknownCA | A::BadCertificate | A::CertificateUnknown => Some((
                    "client_refused_server_certificate",
                    format!(
                        "the client refused this server's certificate ({alert:?}): it does \
                         not trust the CA that issued it, or the name it connected to is \
                         not in the certificate's subjectAltName; give the client the CA \
                         certificate (curl --cacert ca.crt, requests verify=\"ca.crt\") and \
                         connect by a name the certificate carries"
                    ),
                )),
                _ => None,
            }
        }
        Some(rustls::Error::InvalidMessage(_)) => Some((
            "not_tls",
            "a client sent something that is not TLS: plain HTTP to this https port? \
             Use https:// URLs"
                .to_owned(),
        )),
        _ => None,
    };
    crate::telemetry::handshake_failure(explanation.as_ref().map_or("tls_error", |e| e.0));
    match explanation {
        Some((cause, message)) => {
            if let Some(suppressed) = warnings.admit(cause) {
                tracing::warn!(
                    peer = %peer,
                    cause,
                    suppressed,
                    "TLS handshake failed: {message}"
                );
            }
        }
        None => tracing::debug!(%peer, %error, "TLS handshake failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CertificateFacts {
        CertificateFacts {
            version: 3,
            is_ca: false,
            issued_by_itself: false,
            subject: "CN=client-a".into(),
            issuer: "CN=Other CA".into(),
            not_before: 1_700_000_000,
            not_after: 1_800_000_000,
            has_san: true,
            server_auth_allowed: None,
            thumbprint: "t".into(),
        }
    }

    fn bundle() -> Expectation {
        Expectation::Ca(BundleInfo {
            source: "clients-ca.pem".into(),
            subjects: vec!["CN=Example CA".into()],
        })
    }

    fn cert_error(e: CertificateError) -> rustls::Error {
        rustls::Error::InvalidCertificate(e)
    }

    fn other() -> rustls::Error {
        cert_error(CertificateError::Other(rustls::OtherError(Arc::new(
            std::io::Error::other("webpki"),
        ))))
    }

    #[test]
    fn each_cause_names_its_fix() {
        let now = 1_750_000_000;
        let mut v1 = facts();
        v1.version = 1;
        let e = explain(Some(&v1), &other(), &bundle(), now);
        assert_eq!(e.cause, "x509_v1");
        assert!(e.message.contains("X.509 v1") && e.message.contains("-extfile"));

        let mut ca = facts();
        ca.is_ca = true;
        let e = explain(Some(&ca), &other(), &bundle(), now);
        assert_eq!(e.cause, "ca_as_client");
        assert!(e.message.contains("CA:FALSE") && e.message.contains("clients-ca.pem"));

        let e = explain(
            Some(&facts()),
            &cert_error(CertificateError::UnknownIssuer),
            &bundle(),
            now,
        );
        assert_eq!(e.cause, "unknown_ca");
        assert!(e.message.contains("CN=Other CA") && e.message.contains("CN=Example CA"));
        assert!(e.message.contains("clients-ca.pem"));

        let mut own = facts();
        own.issued_by_itself = true;
        let e = explain(
            Some(&own),
            &cert_error(CertificateError::UnknownIssuer),
            &bundle(),
            now,
        );
        assert_eq!(e.cause, "self_signed");

        let late = 1_800_000_000 + 3 * 86_400 + 5;
        let e = explain(
            Some(&facts()),
            &cert_error(CertificateError::Expired),
            &bundle(),
            late,
        );
        assert_eq!(e.cause, "expired");
        assert!(e.message.contains(&utc(1_800_000_000)) && e.message.contains("3 days ago"));

        let early = 1_600_000_000;
        let e = explain(
            Some(&facts()),
            &cert_error(CertificateError::NotValidYet),
            &bundle(),
            early,
        );
        assert_eq!(e.cause, "not_yet_valid");
        assert!(e.message.contains(&utc(1_700_000_000)));

        let e = explain(
            Some(&facts()),
            &cert_error(CertificateError::InvalidPurpose),
            &bundle(),
            now,
        );
        assert_eq!(e.cause, "wrong_purpose");
        assert!(e.message.contains("clientAuth"));

        let e = explain(
            None,
            &cert_error(CertificateError::BadEncoding),
            &bundle(),
            now,
        );
        assert_eq!(e.cause, "malformed");
    }

    #[test]
    #[allow(deprecated)]
    fn the_rarer_refusals_are_named_too() {
        let now = 1_750_000_000;
        let cause = |e: CertificateError| explain(Some(&facts()), &cert_error(e), &bundle(), now);
        let e = cause(CertificateError::BadSignature);
        assert_eq!(e.cause, "bad_signature");
        assert!(e.message.contains("CN=Other CA"), "{}", e.message);
        assert_eq!(
            cause(CertificateError::UnsupportedSignatureAlgorithm).cause,
            "bad_signature"
        );
        assert_eq!(cause(CertificateError::BadEncoding).cause, "malformed");
        assert_eq!(
            cause(CertificateError::UnhandledCriticalExtension).cause,
            "critical_extension"
        );
        assert_eq!(cause(CertificateError::Revoked).cause, "revoked");
        let e = cause(CertificateError::NotValidForName);
        assert_eq!(e.cause, "other");
        assert!(e.message.contains("refused"), "{}", e.message);
        // rustls says expired or not yet valid, but by the certificate's own dates it is
        // neither at our clock: no date is made up, the refusal is reported as it came.
        assert_eq!(cause(CertificateError::Expired).cause, "other");
        assert_eq!(cause(CertificateError::NotValidYet).cause, "other");
    }

    #[test]
    fn the_start_up_line_says_what_clients_must_present() {
        let info = BundleInfo {
            source: "ca.pem".into(),
            subjects: vec!["CN=Root".into()],
        };
        assert_eq!(
            Expectation::Ca(info.clone()).summary(true),
            "required, chaining to ca.pem (which holds CN=Root)"
        );
        assert_eq!(
            Expectation::CaOrSelfSigned(info).summary(false),
            "optional, chaining to ca.pem (which holds CN=Root) or self-signed"
        );
        assert_eq!(
            Expectation::Any.summary(true),
            "required, any (not chain-validated: binding only)"
        );
        let empty = BundleInfo {
            source: "<memory>".into(),
            subjects: Vec::new(),
        };
        assert_eq!(empty.describe(), "<memory> (which holds no certificates)");
    }

    #[test]
    fn a_bundle_names_a_few_of_its_cas() {
        let info = BundleInfo {
            source: "ca.pem".into(),
            subjects: (1..=5).map(|i| format!("CN=CA {i}")).collect(),
        };
        let text = info.describe();
        assert!(
            text.contains("CN=CA 3") && !text.contains("CN=CA 4"),
            "{text}"
        );
        assert!(text.contains("and 2 more"), "{text}");
        let three = BundleInfo {
            source: "ca.pem".into(),
            subjects: (1..=CAS_NAMED).map(|i| format!("CN=CA {i}")).collect(),
        };
        assert_eq!(
            three.describe(),
            "ca.pem (which holds CN=CA 1; CN=CA 2; CN=CA 3)"
        );
    }

    #[test]
    fn each_cause_is_logged_once_per_interval() {
        let warnings = Warnings::new(Duration::from_millis(50));
        assert_eq!(warnings.admit("a"), Some(0));
        assert_eq!(warnings.admit("a"), None);
        assert_eq!(warnings.admit("a"), None);
        assert_eq!(warnings.admit("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(warnings.admit("a"), Some(2));
        assert_eq!(warnings.admit("a"), None);
    }
}
