//! A client certificate, parsed once: thumbprint, subject, SANs and validity.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    subject: String,
    subject_name: super::DistinguishedName,
    san_dns: Vec<String>,
    san_uri: Vec<String>,
    san_ip: Vec<IpAddr>,
    san_email: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
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
        let mut chain = chain.into_iter();
        let leaf = chain.next().ok_or(CertificateError::Empty)?;
        let mut parsed = Self::parse_leaf(leaf.as_ref())?;
        parsed.chain = chain.map(|c| c.as_ref().to_vec()).collect();
        Ok(parsed)
    }

    fn parse_leaf(der: &[u8]) -> Result<Self, CertificateError> {
        if der.is_empty() {
            return Err(CertificateError::Empty);
        }
        if der.len() > MAX_CERTIFICATE_LEN {
            return Err(CertificateError::TooLarge);
        }
        // x509-parser checks the outer tag's number, not its class: a certificate is a
        // universal, constructed SEQUENCE, and bytes that only look like one would get
        // a thumbprint no real certificate has.
        if der.first() != Some(&0x30) {
            return Err(CertificateError::Malformed);
        }
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|_| CertificateError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertificateError::Malformed);
        }
        // An attribute without a type (a zero-length OID) is no name at all, and has
        // no RFC 4514 form.
        let typeless = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_attributes().any(|attribute| {
                // No type, or one with no RFC 4514 form (a single arc): the name
                // could not be written, compared or registered.
                attribute.attr_type().as_bytes().is_empty()
                    || !crate::cert::dn::is_numeric_oid(&attribute.attr_type().to_id_string())
            })
        };
        if typeless(cert.subject()) || typeless(cert.issuer()) {
            return Err(CertificateError::Malformed);
        }

        let mut san_dns = Vec::new();
        let mut san_uri = Vec::new();
        let mut san_ip = Vec::new();
        let mut san_email = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|_| CertificateError::Malformed)?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => san_dns.push((*dns).to_owned()),
                GeneralName::URI(uri) => san_uri.push((*uri).to_owned()),
                GeneralName::RFC822Name(email) => san_email.push((*email).to_owned()),
                GeneralName::IPAddress(bytes) => san_ip.push(ip_from_bytes(bytes)?),
                _ => {}
            }
        }

        let subject_name = super::DistinguishedName::from_x509(cert.subject());
        let thumbprint_bytes = crate::crypto::sha256(der);
        let validity = cert.validity();
        Ok(Self {
            der: der.to_vec(),
            chain: Vec::new(),
            thumbprint: URL_SAFE_NO_PAD.encode(thumbprint_bytes),
            thumbprint_bytes,
            subject: subject_name.to_string(),
            subject_name,
            san_dns,
            san_uri,
            san_ip,
            san_email,
            not_before: system_time(validity.not_before.timestamp()),
            not_after: system_time(validity.not_after.timestamp()),
        })
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
            subject_name: subject
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(super::DistinguishedName::empty),
            subject: subject.unwrap_or_default(),
            san_dns,
            san_uri,
            san_ip: Vec::new(),
            san_email: Vec::new(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
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
        &self.subject
    }

    /// The subject as a name, for comparing with a registered DN.
    pub fn subject_name(&self) -> &super::DistinguishedName {
        &self.subject_name
    }

    /// `dNSName` SANs.
    pub fn san_dns(&self) -> &[String] {
        &self.san_dns
    }

    /// `uniformResourceIdentifier` SANs.
    pub fn san_uri(&self) -> &[String] {
        &self.san_uri
    }

    /// `iPAddress` SANs.
    pub fn san_ip(&self) -> &[IpAddr] {
        &self.san_ip
    }

    /// `rfc822Name` (email) SANs.
    pub fn san_email(&self) -> &[String] {
        &self.san_email
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
            .field("subject", &self.subject)
            .field("san_dns", &self.san_dns)
            .field("san_uri", &self.san_uri)
            .field("san_ip", &self.san_ip)
            .field("san_email", &self.san_email)
            .finish_non_exhaustive()
    }
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
