//! A client certificate, parsed once: thumbprint, subject, SANs and validity.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::OnceLock;

use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Certificates larger than this are refused before parsing. Real client certificates
/// are a few KiB; the bound keeps a hostile one from costing much.
pub(crate) const MAX_CERTIFICATE_LEN: usize = 64 * 1024;

/// Why a certificate could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// No certificate at all where one was expected.
    #[error("no certificate was given")]
    Empty,
    /// Larger than this crate parses.
    #[error("the certificate is larger than {MAX_CERTIFICATE_LEN} bytes")]
    TooLarge,
    /// Not a DER-encoded X.509 certificate.
    #[error("the certificate is not a well-formed DER X.509 certificate")]
    Malformed,
}

/// A client certificate, parsed once per connection (or per distinct proxy header).
///
/// `thumbprint` is the RFC 8705 §3.1 `x5t#S256` value: base64url without padding of the
/// SHA-256 hash of the leaf's DER. Subject and SANs are as the certificate says; they
/// are trustworthy only as far as the chain was verified (see the crate's security model).
#[derive(Clone)]
pub struct PeerCertificate {
    der: Vec<u8>,
    chain: Vec<Vec<u8>>,
    thumbprint_bytes: [u8; 32],
    thumbprint: String,
    not_before: SystemTime,
    not_after: SystemTime,
    /// Subject and SANs: read with the rest of the certificate by
    /// [`from_der`](Self::from_der), or on first use for a certificate a proxy forwarded
    /// (most requests only need its thumbprint and validity).
    names: OnceLock<Names>,
    /// The issuer's name (DER) and the serial (DER INTEGER contents), read on first use:
    /// what a CRL lists a certificate by.
    revocation_key: OnceLock<Option<(Vec<u8>, Vec<u8>)>>,
}

/// What a certificate names: subject and SANs.
#[derive(Clone)]
struct Names {
    subject: String,
    subject_name: super::DistinguishedName,
    san_dns: Vec<String>,
    san_uri: Vec<String>,
    san_ip: Vec<IpAddr>,
    san_email: Vec<String>,
}

impl PeerCertificate {
    /// Parses a leaf certificate from DER.
    ///
    /// # Errors
    /// [`CertificateError`] when the bytes are empty, too large or not a certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        Self::from_chain([der])
    }

    /// Parses a chain, leaf first. The leaf is the certificate that binds; the rest is
    /// kept for [`chain_der`](Self::chain_der). Only the leaf is parsed.
    ///
    /// # Errors
    /// [`CertificateError`] when the chain is empty or the leaf cannot be parsed.
    pub fn from_chain<I, C>(chain: I) -> Result<Self, CertificateError>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut read = Self::read_lazily_chain(chain)?;
        read.names = OnceLock::from(read_names(&read.der)?);
        Ok(read)
    }

    /// A chain from a TLS handshake or a trusted proxy, leaf first: read as far as
    /// binding and the validity check need (its DER's SHA-256 and the validity period);
    /// subject and SANs only when something asks for them. A leaf whose names then
    /// cannot be read has none: it can still be bound to, but matches no registered
    /// name. (On the TLS path rustls has parsed and verified the leaf already.)
    pub(crate) fn read_lazily_chain<I, C>(chain: I) -> Result<Self, CertificateError>
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut chain = chain.into_iter();
        let leaf = chain.next().ok_or(CertificateError::Empty)?;
        let mut read = Self::read_lazily(leaf.as_ref())?;
        read.chain = chain.map(|c| c.as_ref().to_vec()).collect();
        Ok(read)
    }

    /// The thumbprint and the validity period of the leaf `der`, names unread.
    fn read_lazily(der: &[u8]) -> Result<Self, CertificateError> {
        if der.is_empty() {
            return Err(CertificateError::Empty);
        }
        if der.len() > MAX_CERTIFICATE_LEN {
            return Err(CertificateError::TooLarge);
        }
        let (not_before, not_after) = validity(der).ok_or(CertificateError::Malformed)?;
        let thumbprint_bytes = crate::crypto::sha256(der);
        Ok(Self {
            der: der.to_vec(),
            chain: Vec::new(),
            thumbprint: URL_SAFE_NO_PAD.encode(thumbprint_bytes),
            thumbprint_bytes,
            not_before,
            not_after,
            names: OnceLock::new(),
            revocation_key: OnceLock::new(),
        })
    }

    /// The issuer's name (DER) and the serial (DER INTEGER contents), read once per
    /// certificate; `None` for a certificate known only by its hash.
    pub(crate) fn issuer_and_serial(&self) -> Option<(&[u8], &[u8])> {
        self.revocation_key
            .get_or_init(|| {
                let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&self.der).ok()?;
                Some((cert.issuer().as_raw().to_vec(), cert.raw_serial().to_vec()))
            })
            .as_ref()
            .map(|(issuer, serial)| (issuer.as_slice(), serial.as_slice()))
    }

    fn names(&self) -> &Names {
        self.names
            .get_or_init(|| read_names(&self.der).unwrap_or_default())
    }

    /// A certificate known only by what a trusted proxy says of it: the SHA-256 of its
    /// DER and, if given, subject and SANs. Binding needs nothing more.
    pub(crate) fn from_attested_hash(
        hash: [u8; 32],
        subject: Option<String>,
        san_dns: Vec<String>,
        san_uri: Vec<String>,
    ) -> Self {
        Self {
            der: Vec::new(),
            chain: Vec::new(),
            thumbprint: URL_SAFE_NO_PAD.encode(hash),
            thumbprint_bytes: hash,
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
            names: OnceLock::from(Names {
                subject_name: subject
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(super::DistinguishedName::empty),
                subject: subject.unwrap_or_default(),
                san_dns,
                san_uri,
                san_ip: Vec::new(),
                san_email: Vec::new(),
            }),
            revocation_key: OnceLock::from(None),
        }
    }

    /// The RFC 8705 `x5t#S256` thumbprint: base64url, no padding.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The raw SHA-256 of the leaf's DER.
    pub fn thumbprint_bytes(&self) -> &[u8; 32] {
        &self.thumbprint_bytes
    }

    /// The subject as an RFC 4514 string, e.g. `CN=client-a,O=Example`.
    pub fn subject(&self) -> &str {
        &self.names().subject
    }

    /// The subject as a name, for comparing with a registered DN.
    pub fn subject_name(&self) -> &super::DistinguishedName {
        &self.names().subject_name
    }

    /// `dNSName` SANs.
    pub fn san_dns(&self) -> &[String] {
        &self.names().san_dns
    }

    /// `uniformResourceIdentifier` SANs.
    pub fn san_uri(&self) -> &[String] {
        &self.names().san_uri
    }

    /// `iPAddress` SANs.
    pub fn san_ip(&self) -> &[IpAddr] {
        &self.names().san_ip
    }

    /// `rfc822Name` (email) SANs.
    pub fn san_email(&self) -> &[String] {
        &self.names().san_email
    }

    /// Start of the validity period (the epoch when only a hash was attested).
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's DER; `None` when a proxy attested the certificate by its hash alone
    /// (an Envoy `x-forwarded-client-cert` element with `Hash` but no `Cert`).
    pub fn der(&self) -> Option<&[u8]> {
        (!self.der.is_empty()).then_some(self.der.as_slice())
    }

    /// The certificates that came after the leaf (intermediates), DER, in the order sent.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

// Never print the certificate itself: its thumbprint and subject identify it.
impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("thumbprint", &self.thumbprint)
            .field("subject", &self.subject())
            .field("san_dns", &self.san_dns())
            .field("san_uri", &self.san_uri())
            .field("san_ip", &self.san_ip())
            .field("san_email", &self.san_email())
            .finish_non_exhaustive()
    }
}

impl Default for Names {
    /// No names at all.
    fn default() -> Self {
        Self {
            subject: String::new(),
            subject_name: super::DistinguishedName::empty(),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
            san_ip: Vec::new(),
            san_email: Vec::new(),
        }
    }
}

/// The subject and SANs of `der`, checked as [`PeerCertificate::from_der`] promises.
fn read_names(der: &[u8]) -> Result<Names, CertificateError> {
    // x509-parser checks the outer tag's number, not its class: a certificate is a
    // universal, constructed SEQUENCE, and bytes that only look like one would get
    // a thumbprint no real certificate has.
    if der.first() != Some(&0x30) {
        return Err(CertificateError::Malformed);
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|_| CertificateError::Malformed)?;
    if !rest.is_empty() {
        return Err(CertificateError::Malformed);
    }
    let typeless = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_attributes().any(|attribute| {
            // No type (a zero-length OID), or one with no RFC 4514 form (a single
            // arc): the name could not be written, compared or registered.
            attribute.attr_type().as_bytes().is_empty()
                || !crate::cert::dn::is_numeric_oid(&attribute.attr_type().to_id_string())
        })
    };
    if typeless(cert.subject()) || typeless(cert.issuer()) {
        return Err(CertificateError::Malformed);
    }
    let mut names = Names::default();
    let san = cert
        .subject_alternative_name()
        .map_err(|_| CertificateError::Malformed)?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => names.san_dns.push((*dns).to_owned()),
            GeneralName::URI(uri) => names.san_uri.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => names.san_email.push((*email).to_owned()),
            GeneralName::IPAddress(bytes) => names.san_ip.push(ip_from_bytes(bytes)?),
            _ => {}
        }
    }
    names.subject_name = super::DistinguishedName::from_x509(cert.subject());
    names.subject = names.subject_name.to_string();
    Ok(names)
}

/// The validity period of the certificate `der`, found without reading the rest of it:
/// a universal constructed SEQUENCE with nothing after it, whose TBSCertificate holds
/// (version,) serialNumber, signature, issuer, then validity (RFC 5280 §4.1).
fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let sequence = |any: &Any<'_>| {
        any.class() == Class::Universal && any.header.is_constructed() && any.tag() == Tag::Sequence
    };
    let (rest, certificate) = Any::from_der(der).ok()?;
    if !rest.is_empty() || !sequence(&certificate) {
        return None;
    }
    let (_, tbs) = Any::from_der(certificate.data).ok()?;
    if !sequence(&tbs) {
        return None;
    }
    let mut fields = tbs.data;
    let (after_version, first) = Any::from_der(fields).ok()?;
    if first.class() == Class::ContextSpecific && first.tag() == Tag(0) {
        fields = after_version;
    }
    for _ in 0..3 {
        (fields, _) = Any::from_der(fields).ok()?;
    }
    let (_, validity) = x509_parser::certificate::Validity::from_der(fields).ok()?;
    Some((
        system_time(validity.not_before.timestamp()),
        system_time(validity.not_after.timestamp()),
    ))
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, CertificateError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::from(v6))
    } else {
        Err(CertificateError::Malformed)
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let offset = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate with a subject and one SAN of each kind.
    fn named_certificate() -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-a");
        params.subject_alt_names.extend([
            rcgen::SanType::URI("spiffe://example/a".try_into().unwrap()),
            rcgen::SanType::IpAddress("192.0.2.7".parse().unwrap()),
            rcgen::SanType::Rfc822Name("a@example.org".try_into().unwrap()),
        ]);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// Where the contents of the DER element at `at` start.
    fn contents(der: &[u8], at: usize) -> usize {
        let length = der[at + 1];
        if length < 0x80 {
            at + 2
        } else {
            at + 2 + usize::from(length & 0x7f)
        }
    }

    #[test]
    fn a_lazily_read_certificate_has_what_binding_needs_and_its_names_when_asked() {
        let der = named_certificate();
        let eager = PeerCertificate::from_der(&der).unwrap();
        let lazy = PeerCertificate::read_lazily_chain([&der[..], b"intermediate"]).unwrap();
        assert!(lazy.names.get().is_none(), "names unread until asked");
        assert_eq!(lazy.thumbprint(), eager.thumbprint());
        assert_eq!(lazy.thumbprint_bytes(), &crate::crypto::sha256(&der));
        assert_eq!(lazy.not_before(), eager.not_before());
        assert_eq!(lazy.not_after(), eager.not_after());
        assert_eq!(lazy.der(), Some(&der[..]));
        assert_eq!(lazy.chain_der(), [b"intermediate".to_vec()]);
        assert_eq!(lazy.subject(), "CN=client-a");
        assert!(lazy.names.get().is_some());
        assert_eq!(lazy.subject_name().to_string(), "CN=client-a");
        assert_eq!(lazy.san_dns(), ["a.example"]);
        assert_eq!(lazy.san_uri(), ["spiffe://example/a"]);
        assert_eq!(lazy.san_ip(), ["192.0.2.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(lazy.san_email(), ["a@example.org"]);
        assert_eq!(eager.san_email(), lazy.san_email());

        // Names that cannot be read (a dNSName turned into a 9-byte iPAddress): refused
        // by from_der; forwarded, bound by its hash, with no names to match.
        let mut bad = der.clone();
        let at = bad
            .windows(11)
            .position(|w| w == b"\x82\x09a.example")
            .unwrap();
        bad[at] = 0x87;
        assert_eq!(
            PeerCertificate::from_der(&bad).err(),
            Some(CertificateError::Malformed)
        );
        let lazy = PeerCertificate::read_lazily_chain([&bad]).unwrap();
        assert_eq!(lazy.thumbprint_bytes(), &crate::crypto::sha256(&bad));
        assert_eq!(lazy.subject(), "");
        assert!(lazy.san_dns().is_empty() && lazy.san_uri().is_empty());
        assert!(lazy.san_ip().is_empty() && lazy.san_email().is_empty());

        let none: [&[u8]; 0] = [];
        assert_eq!(
            PeerCertificate::read_lazily_chain(none).unwrap_err(),
            CertificateError::Empty
        );
        assert_eq!(
            PeerCertificate::read_lazily_chain([&vec![0x30; MAX_CERTIFICATE_LEN + 1]]).unwrap_err(),
            CertificateError::TooLarge
        );
    }

    #[test]
    fn the_validity_is_found_only_where_a_certificate_has_it() {
        let der = named_certificate();
        let eager = PeerCertificate::from_der(&der).unwrap();
        assert_eq!(
            validity(&der),
            Some((eager.not_before(), eager.not_after()))
        );
        let tbs = contents(&der, 0);
        let version = contents(&der, tbs);
        assert_eq!(
            der[version], 0xa0,
            "a v3 certificate opens with its version"
        );
        // The certificate and its TBSCertificate must each be a universal, constructed
        // SEQUENCE: not primitive, not context-specific, not a SET.
        for at in [0, tbs] {
            for byte in [0x10, 0xb0, 0x31] {
                let mut changed = der.clone();
                changed[at] = byte;
                assert_eq!(validity(&changed), None, "{byte:#x} at {at}");
            }
        }
        // A field [1] where the version [0] may be is not skipped as one.
        let mut changed = der.clone();
        changed[version] = 0xa1;
        assert_eq!(validity(&changed), None);
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(validity(&trailing), None);
        assert_eq!(validity(&der[..der.len() - 1]), None);
        assert_eq!(validity(b""), None);
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert_eq!(
            PeerCertificate::from_der(b"").err(),
            Some(CertificateError::Empty)
        );
        assert_eq!(
            PeerCertificate::from_der(b"not a certificate").err(),
            Some(CertificateError::Malformed)
        );
        assert_eq!(
            PeerCertificate::from_der(&vec![0x30; MAX_CERTIFICATE_LEN + 1]).err(),
            Some(CertificateError::TooLarge)
        );
        let none: [&[u8]; 0] = [];
        assert_eq!(
            PeerCertificate::from_chain(none).unwrap_err(),
            CertificateError::Empty
        );
    }

    #[test]
    fn the_size_bound_is_inclusive() {
        // Exactly the bound is parsed (and is no certificate); one byte more is not.
        assert_eq!(
            PeerCertificate::from_der(&vec![0x30; MAX_CERTIFICATE_LEN]).err(),
            Some(CertificateError::Malformed)
        );
        assert_eq!(
            PeerCertificate::from_der(&vec![0x30; MAX_CERTIFICATE_LEN + 1]).err(),
            Some(CertificateError::TooLarge)
        );
    }

    #[test]
    fn certificates_of_tens_of_kilobytes_are_read() {
        // A certificate with a thousand SANs: far above a typical client's, well within
        // the bound.
        let names: Vec<String> = (0..1000)
            .map(|i| format!("service-{i:04}.example.internal"))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names.clone())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der();
        assert!((20 * 1024..MAX_CERTIFICATE_LEN).contains(&der.len()));
        let peer = PeerCertificate::from_der(der).unwrap();
        assert_eq!(peer.san_dns(), names.as_slice());
    }

    #[test]
    fn validity_before_1970_is_read() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(1960, 1, 1);
        params.not_after = rcgen::date_time_ymd(1969, 12, 31);
        let cert = params.self_signed(&key).unwrap();
        let peer = PeerCertificate::from_der(cert.der()).unwrap();
        let day = 24 * 60 * 60;
        assert_eq!(
            peer.not_before(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(3653 * day)
        );
        assert_eq!(
            peer.not_after(),
            SystemTime::UNIX_EPOCH - Duration::from_secs(day)
        );
    }
}
