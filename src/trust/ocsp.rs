//! OCSP (RFC 6960) for client certificates: after the handshake, the listener asks the
//! responder named in the certificate's Authority Information Access (or a configured
//! one) whether the certificate is revoked, checks the answer's signature (by the issuing
//! CA, or by a responder certificate that CA issued for OCSP signing) and its time, and
//! keeps it until its `nextUpdate`. `soft` refuses only a certificate the responder says
//! is revoked; `hard` also refuses when no good answer comes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{Null, OctetString};
use der::{Decode, Encode};
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus,
};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::ClientTrust;
use crate::remote::AuthServerClient;

/// When OCSP is asked, and what an unanswered question means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OcspMode {
    /// Not asked.
    #[default]
    Off,
    /// Refuses only a certificate the responder says is revoked.
    Soft,
    /// Refuses unless the responder says the certificate is good.
    Hard,
}

/// How long one OCSP exchange may take, by default.
pub const DEFAULT_OCSP_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers are kept at most this long (and never past their `nextUpdate`).
const MAX_CACHE: Duration = Duration::from_secs(3600);
/// An answer without `nextUpdate` is kept this long.
const NO_NEXT_UPDATE: Duration = Duration::from_secs(300);
/// A question that got no usable answer is not asked again for this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Clock skew tolerated in `thisUpdate` and `nextUpdate`.
const SKEW: i64 = 300;
/// Certificates whose answers are kept.
const CACHE_ENTRIES: usize = 10_000;
/// Exchanges in flight at once; beyond, a question counts as unanswered.
const MAX_IN_FLIGHT: usize = 32;
/// The largest answer read.
const MAX_RESPONSE: usize = 64 * 1024;

/// What the responder said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Good,
    Revoked,
    /// The responder does not know the certificate.
    Unknown,
    /// No usable answer: no responder, unreachable, not signed by the CA, stale.
    None,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::None => "no_answer",
        }
    }
}

/// OCSP for the client certificates of a listener; see
/// [`TlsServerConfigBuilder::ocsp`](crate::tls::TlsServerConfigBuilder::ocsp).
#[derive(Clone)]
pub struct OcspChecker {
    inner: Arc<Inner>,
}

struct Inner {
    mode: OcspMode,
    responder: Option<String>,
    client: AuthServerClient,
    cache: quick_cache::sync::Cache<[u8; 32], (Answer, Instant)>,
    in_flight: tokio::sync::Semaphore,
}

impl std::fmt::Debug for OcspChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspChecker")
            .field("mode", &self.inner.mode)
            .field("responder", &self.inner.responder)
            .finish_non_exhaustive()
    }
}

impl OcspChecker {
    /// Asks in `mode`, each exchange within `timeout`, the responder of each
    /// certificate's AIA extension, or `responder` when given (for every certificate).
    ///
    /// # Errors
    /// [`RemoteError`](crate::remote::RemoteError) when the HTTP client cannot be built or
    /// `responder` is not an http(s) URL.
    pub fn new(
        mode: OcspMode,
        responder: Option<String>,
        timeout: Duration,
    ) -> Result<Self, crate::remote::RemoteError> {
        let client = AuthServerClient::builder()
            .timeout(timeout)
            .max_document_len(MAX_RESPONSE)
            .plain_http_anywhere()
            .build()?;
        if let Some(url) = &responder {
            client.check_url(url)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                mode,
                responder,
                client,
                cache: quick_cache::sync::Cache::new(CACHE_ENTRIES),
                in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            }),
        })
    }

    /// The mode.
    pub fn mode(&self) -> OcspMode {
        self.inner.mode
    }

    /// Whether a connection with the client `chain` (leaf first) may go on; `Err` says
    /// why not. `trust` supplies the issuer when the client did not send it.
    pub(crate) async fn admit(
        &self,
        chain: &[CertificateDer<'_>],
        trust: Option<&ClientTrust>,
    ) -> Result<(), String> {
        if self.inner.mode == OcspMode::Off || chain.is_empty() {
            return Ok(());
        }
        let answer = self.answer(chain, trust).await;
        crate::telemetry::ocsp(answer.as_str());
        match (answer, self.inner.mode) {
            (Answer::Good, _) => Ok(()),
            (Answer::Revoked, _) => {
                Err("the OCSP responder says the client certificate is revoked".into())
            }
            (_, OcspMode::Hard) => Err(format!(
                "no good OCSP answer for the client certificate ({}), and OCSP is hard-fail",
                answer.as_str()
            )),
            _ => Ok(()),
        }
    }

    async fn answer(&self, chain: &[CertificateDer<'_>], trust: Option<&ClientTrust>) -> Answer {
        let key = crate::crypto::sha256(&chain[0]);
        let now = Instant::now();
        if let Some((answer, until)) = self.inner.cache.get(&key)
            && until > now
        {
            return answer;
        }
        let (answer, keep) = match self.inner.in_flight.try_acquire() {
            Ok(_permit) => self.ask(chain, trust).await,
            Err(_) => (Answer::None, Duration::ZERO),
        };
        if !keep.is_zero() {
            self.inner
                .cache
                .insert(key, (answer, now + keep.min(MAX_CACHE)));
        }
        answer
    }

    /// One exchange: the answer, and how long it may be kept.
    async fn ask(
        &self,
        chain: &[CertificateDer<'_>],
        trust: Option<&ClientTrust>,
    ) -> (Answer, Duration) {
        let failed = |why: &str| {
            tracing::debug!("OCSP: {why}");
            (Answer::None, RETRY_AFTER_FAILURE)
        };
        let Ok((_, leaf)) = X509Certificate::from_der(&chain[0]) else {
            return failed("the client certificate cannot be read");
        };
        // A self-signed certificate (registered as itself) has no CA to ask.
        if leaf.issuer().as_raw() == leaf.subject().as_raw() {
            return (Answer::Good, MAX_CACHE);
        }
        let Some(issuer) = issuer_of(&leaf, chain, trust) else {
            return failed("the issuer of the client certificate is not known");
        };
        let Ok((_, issuer_cert)) = X509Certificate::from_der(&issuer) else {
            return failed("the issuer certificate cannot be read");
        };
        let Some(url) = self.inner.responder.clone().or_else(|| responder_of(&leaf)) else {
            return failed("the client certificate names no OCSP responder");
        };
        let Ok(id) = cert_id(&leaf, &issuer_cert) else {
            return failed("the OCSP question cannot be written");
        };
        let request = OcspRequest {
            tbs_request: x509_ocsp::TbsRequest {
                request_list: vec![x509_ocsp::Request {
                    req_cert: id.clone(),
                    single_request_extensions: None,
                }],
                ..Default::default()
            },
            optional_signature: None,
        };
        let Ok(body) = request.to_der() else {
            return failed("the OCSP question cannot be encoded");
        };
        let fetched = match self
            .inner
            .client
            .post_bytes(&url, "application/ocsp-request", body)
            .await
        {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(responder = %url, "OCSP responder unreachable: {error}");
                return (Answer::None, RETRY_AFTER_FAILURE);
            }
        };
        match read_answer(&fetched.body, &id, &issuer, unix_now()) {
            Ok(answer) => answer,
            Err(why) => {
                tracing::warn!(responder = %url, "OCSP answer unusable: {why}");
                (Answer::None, RETRY_AFTER_FAILURE)
            }
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The issuer's certificate: the next in the client's chain, or the trust's CA of the
/// leaf's issuer name.
fn issuer_of(
    leaf: &X509Certificate<'_>,
    chain: &[CertificateDer<'_>],
    trust: Option<&ClientTrust>,
) -> Option<Vec<u8>> {
    let wanted = leaf.issuer().as_raw();
    let named = |der: &[u8]| {
        X509Certificate::from_der(der).is_ok_and(|(_, cert)| cert.subject().as_raw() == wanted)
    };
    if let Some(next) = chain.get(1).filter(|der| named(der)) {
        return Some(next.to_vec());
    }
    let material = trust?.current();
    let bundle = material.ca.as_ref()?;
    bundle
        .certificates
        .iter()
        .find(|der| named(der))
        .map(|der| der.to_vec())
}

/// The first http(s) OCSP responder of the AIA extension.
fn responder_of(leaf: &X509Certificate<'_>) -> Option<String> {
    leaf.extensions().iter().find_map(|extension| {
        let ParsedExtension::AuthorityInfoAccess(aia) = extension.parsed_extension() else {
            return None;
        };
        aia.iter().find_map(|description| {
            let ocsp = description.access_method
                == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_OCSP;
            match &description.access_location {
                GeneralName::URI(uri)
                    if ocsp && (uri.starts_with("http://") || uri.starts_with("https://")) =>
                {
                    Some((*uri).to_owned())
                }
                _ => None,
            }
        })
    })
}

/// The CertID of `leaf`: SHA-256 of the issuer's name and key, and the leaf's serial.
fn cert_id(leaf: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<CertId, der::Error> {
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: der::oid::db::rfc5912::ID_SHA_256,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(crate::crypto::sha256(leaf.issuer().as_raw()).to_vec())?,
        issuer_key_hash: OctetString::new(
            crate::crypto::sha256(&issuer.public_key().subject_public_key.data).to_vec(),
        )?,
        serial_number: x509_cert::serial_number::SerialNumber::new(leaf.raw_serial())?,
    })
}

/// Reads the responder's answer about `id`, checking it is signed by `issuer` (or by a
/// responder certificate `issuer` issued for OCSP signing) and current at `now`.
fn read_answer(
    body: &[u8],
    id: &CertId,
    issuer: &[u8],
    now: i64,
) -> Result<(Answer, Duration), String> {
    let response =
        OcspResponse::from_der(body).map_err(|e| format!("not an OCSP response: {e}"))?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            response.response_status
        ));
    }
    let bytes = response
        .response_bytes
        .ok_or("a successful answer without a response")?;
    if bytes.response_type != der::oid::db::rfc6960::ID_PKIX_OCSP_BASIC {
        return Err(format!(
            "an answer of type {} (not basic)",
            bytes.response_type
        ));
    }
    let signed = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(signed)
        .map_err(|e| format!("not a basic OCSP response: {e}"))?;
    if !signed_by_issuer_or_its_responder(signed, &basic, issuer) {
        return Err(
            "the answer is not signed by the client certificate's CA or a responder it authorized"
                .into(),
        );
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|single| same_certificate(&single.cert_id, id))
        .ok_or("the answer is about another certificate")?;
    let this_update = seconds(&single.this_update);
    if this_update > now + SKEW {
        return Err("the answer is from the future (check the clocks)".into());
    }
    let keep = match &single.next_update {
        Some(next) => {
            let next = seconds(next);
            if next + SKEW < now {
                return Err("the answer is past its nextUpdate".into());
            }
            Duration::from_secs(u64::try_from(next - now).unwrap_or(0).max(1))
        }
        None => NO_NEXT_UPDATE,
    };
    let answer = match single.cert_status {
        CertStatus::Good(_) => Answer::Good,
        CertStatus::Revoked(_) => Answer::Revoked,
        CertStatus::Unknown(_) => Answer::Unknown,
    };
    Ok((answer, keep))
}

fn seconds(time: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    i64::try_from(time.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// The same certificate, whatever the responder wrote for the hash's parameters.
fn same_certificate(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

fn signed_by_issuer_or_its_responder(
    signed: &[u8],
    basic: &BasicOcspResponse,
    issuer: &[u8],
) -> bool {
    let provider = crate::crypto::rustls_provider();
    if crate::tls::signed_by(signed, issuer, &provider) {
        return true;
    }
    // A delegated responder (RFC 6960 §4.2.2.2): issued by the CA, for OCSP signing.
    basic.certs.iter().flatten().any(|responder| {
        let Ok(der) = responder.to_der() else {
            return false;
        };
        let for_ocsp = X509Certificate::from_der(&der).is_ok_and(|(_, cert)| {
            cert.extended_key_usage()
                .ok()
                .flatten()
                .is_some_and(|eku| eku.value.ocsp_signing)
        });
        for_ocsp
            && crate::tls::signed_by(&der, issuer, &provider)
            && crate::tls::signed_by(signed, &der, &provider)
    })
}
