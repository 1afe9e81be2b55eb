//! What a certificate says about itself, as far as operators need it to understand a
//! refusal: version, CA or not, self-signed or not, validity, names. Read for
//! diagnostics and start-up checks, never for a trust decision other than
//! [`self_signed`].

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use x509_parser::der_parser::asn1_rs::Any;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::DistinguishedName;

/// The facts of one certificate.
#[derive(Debug, Clone)]
pub(crate) struct CertificateFacts {
    /// 1 or 3 (or 2).
    pub(crate) version: u32,
    /// basicConstraints CA:TRUE.
    pub(crate) is_ca: bool,
    /// Subject and issuer are the same name.
    pub(crate) issued_by_itself: bool,
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) has_san: bool,
    /// `None` when there is no extendedKeyUsage (any use is allowed).
    pub(crate) server_auth_allowed: Option<bool>,
    pub(crate) thumbprint: String,
}

impl CertificateFacts {
    /// The facts, or `None` when `der` is not a certificate.
    pub(crate) fn of(der: &[u8]) -> Option<Self> {
        if der.len() > crate::cert::MAX_CERTIFICATE_LEN {
            return None;
        }
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let eku = cert.extended_key_usage().ok().flatten();
        Some(Self {
            version: cert.version().0 + 1,
            is_ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca),
            issued_by_itself: cert.subject().as_raw() == cert.issuer().as_raw(),
            subject: DistinguishedName::from_x509(cert.subject()).to_string(),
            issuer: DistinguishedName::from_x509(cert.issuer()).to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            has_san: cert.subject_alternative_name().ok().flatten().is_some(),
            server_auth_allowed: eku.as_ref().map(|e| e.value.any || e.value.server_auth),
            thumbprint: {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::crypto::sha256(der))
            },
        })
    }

    /// Whether the certificate is outside its validity period at `now`.
    pub(crate) fn expired_at(&self, now: i64) -> bool {
        now > self.not_after
    }

    /// Whether the certificate is not yet valid at `now`.
    pub(crate) fn not_yet_valid_at(&self, now: i64) -> bool {
        now < self.not_before
    }
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-12-01 20:10:30 UTC`.
pub(crate) fn utc(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    let secs = timestamp.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Whether `der` is a self-signed certificate: its subject is its issuer, its
/// signature verifies with its own public key (with an algorithm `provider` supports),
/// and it is within its validity period at `now`.
///
/// Unlike chain validation this does not care whether the certificate says CA:TRUE:
/// `openssl req -x509` writes self-signed certificates that way, and for a certificate
/// that is registered as itself (RFC 8705 §2.2) nothing about issuing matters.
pub(crate) fn self_signed(der: &[u8], provider: &CryptoProvider, now: i64) -> bool {
    if der.len() > crate::cert::MAX_CERTIFICATE_LEN {
        return false;
    }
    let Ok((rest, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    if !rest.is_empty()
        || cert.subject().as_raw() != cert.issuer().as_raw()
        || now < cert.validity().not_before.timestamp()
        || now > cert.validity().not_after.timestamp()
    {
        return false;
    }
    signed_by(der, der, provider)
}

/// Whether `signed` (a certificate or a CRL: `SEQUENCE { tbs, signatureAlgorithm,
/// signature }`) carries a valid signature by the key of the certificate `issuer`.
pub(crate) fn signed_by(signed: &[u8], issuer: &[u8], provider: &CryptoProvider) -> bool {
    let Ok((_, issuer)) = X509Certificate::from_der(issuer) else {
        return false;
    };
    let Some(key_alg) = algorithm_contents(issuer.public_key().raw) else {
        return false;
    };
    let key = issuer.public_key().subject_public_key.data.as_ref();
    let Some((tbs, signature_alg, signature)) = signed_parts(signed) else {
        return false;
    };
    provider
        .signature_verification_algorithms
        .all
        .iter()
        .filter(|alg| {
            alg.signature_alg_id().as_ref() == signature_alg
                && alg.public_key_alg_id().as_ref() == key_alg
        })
        .any(|alg| alg.verify_signature(key, tbs, signature).is_ok())
}

/// The subject of the certificate `der`, as DER (what CRLs and certificates name their
/// issuer with).
pub(crate) fn subject_der(der: &[u8]) -> Option<Vec<u8>> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    Some(certificate.subject().as_raw().to_vec())
}

/// The signed bytes (the whole `tbs` element), the signature algorithm's contents, and
/// the signature (the BIT STRING's bits, which a signature uses whole).
fn signed_parts(signed: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (_, outer) = Any::from_der(signed).ok()?;
    let (rest, _) = Any::from_der(outer.data).ok()?;
    let tbs = &outer.data[..outer.data.len() - rest.len()];
    let (rest, algorithm) = Any::from_der(rest).ok()?;
    let (_, signature) = Any::from_der(rest).ok()?;
    match signature.data.split_first() {
        Some((0, bits)) => Some((tbs, algorithm.data, bits)),
        _ => None,
    }
}

/// The contents of the AlgorithmIdentifier that opens a SubjectPublicKeyInfo.
fn algorithm_contents(spki: &[u8]) -> Option<&[u8]> {
    let (_, outer) = Any::from_der(spki).ok()?;
    let (_, algorithm) = Any::from_der(outer.data).ok()?;
    Some(algorithm.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> std::sync::Arc<CryptoProvider> {
        crate::crypto::rustls_provider()
    }

    fn params(ca: bool) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        params
    }

    #[test]
    fn self_signed_whether_ca_or_not() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            for ca in [false, true] {
                let cert = params(ca).self_signed(&key).unwrap();
                assert!(
                    self_signed(cert.der(), &provider(), unix_now()),
                    "{alg:?} ca={ca}"
                );
                let facts = CertificateFacts::of(cert.der()).unwrap();
                assert_eq!(facts.is_ca, ca);
                assert!(facts.issued_by_itself);
                assert_eq!(facts.version, 3);
            }
        }
    }

    #[test]
    fn issued_or_tampered_or_expired_is_not_self_signed() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_params = params(true);
        let ca = ca_params.clone().self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = params(false).signed_by(&leaf_key, &issuer).unwrap();
        assert!(!self_signed(leaf.der(), &provider(), unix_now()));

        // Same name as its issuer, signed by the issuer: not self-signed.
        let mut same_name = params(false);
        same_name.distinguished_name = rcgen::DistinguishedName::new();
        let ca_same = {
            let mut p = params(true);
            p.distinguished_name = rcgen::DistinguishedName::new();
            p
        };
        let same_issuer = rcgen::Issuer::new(ca_same, &ca_key);
        let impostor = same_name.signed_by(&leaf_key, &same_issuer).unwrap();
        assert!(!self_signed(impostor.der(), &provider(), unix_now()));

        // Signed with its own key, but naming another issuer: not self-signed either.
        let mut other_name = params(false);
        other_name
            .distinguished_name
            .push(rcgen::DnType::CommonName, "not the issuer");
        let own_key_other_name = other_name.signed_by(&ca_key, &issuer).unwrap();
        assert!(!self_signed(
            own_key_other_name.der(),
            &provider(),
            unix_now()
        ));

        let mut tampered = ca.der().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(!self_signed(&tampered, &provider(), unix_now()));

        // The outer signatureAlgorithm says ECDSA with SHA-384 over a SHA-256 signature:
        // only the algorithm it names may verify it.
        let ecdsa_sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let mut relabelled = ca.der().to_vec();
        let at = relabelled
            .windows(ecdsa_sha256.len())
            .rposition(|w| w == ecdsa_sha256)
            .expect("an ECDSA-SHA256 certificate");
        relabelled[at + ecdsa_sha256.len() - 1] = 0x03;
        assert!(!self_signed(&relabelled, &provider(), unix_now()));

        // Valid from not_before to not_after, both included.
        let facts = CertificateFacts::of(ca.der()).unwrap();
        for (now, valid) in [
            (facts.not_before - 1, false),
            (facts.not_before, true),
            (facts.not_after, true),
            (facts.not_after + 1, false),
        ] {
            assert_eq!(self_signed(ca.der(), &provider(), now), valid, "{now}");
        }

        // rcgen's certificates are valid from 1975.
        assert!(!self_signed(ca.der(), &provider(), 0));
        assert!(self_signed(ca.der(), &provider(), unix_now()));
        assert!(!self_signed(b"junk", &provider(), unix_now()));
    }

    /// A self-signed Ed25519 certificate (fixed-length signature) of exactly `len`
    /// bytes, padded by a private extension.
    fn certificate_of_len(len: usize) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut pad = len - 1000;
        for _ in 0..10 {
            let mut params = params(false);
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 32473, 1],
                    vec![0u8; pad],
                ));
            let der = params.self_signed(&key).unwrap().der().to_vec();
            if der.len() == len {
                return der;
            }
            pad = (pad + len)
                .checked_sub(der.len())
                .expect("the padding fits");
        }
        panic!("no certificate of {len} bytes");
    }

    #[test]
    fn certificates_up_to_the_bound_are_read() {
        let max = crate::cert::MAX_CERTIFICATE_LEN;
        let at_bound = certificate_of_len(max);
        assert_eq!(at_bound.len(), max);
        assert!(CertificateFacts::of(&at_bound).is_some());
        assert!(self_signed(&at_bound, &provider(), unix_now()));
        let over = certificate_of_len(max + 1);
        assert!(CertificateFacts::of(&over).is_none());
        assert!(!self_signed(&over, &provider(), unix_now()));
    }

    #[test]
    fn the_validity_period_includes_both_ends() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = params(false).self_signed(&key).unwrap().der().to_vec();
        let facts = CertificateFacts::of(&der).unwrap();
        let (from, to) = (facts.not_before, facts.not_after);
        assert!(from < to);
        assert!(!facts.not_yet_valid_at(from) && facts.not_yet_valid_at(from - 1));
        assert!(!facts.expired_at(to) && facts.expired_at(to + 1));
        let middle = from + (to - from) / 2;
        assert!(!facts.not_yet_valid_at(middle) && !facts.expired_at(middle));
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_155_830), "2026-12-01 20:10:30 UTC");
        assert_eq!(utc(951_825_600), "2000-02-29 12:00:00 UTC");
        // Century and era boundaries: 2100 is no leap year, 2400 is.
        for (timestamp, text) in [
            (4_107_542_399, "2100-02-28 23:59:59 UTC"),
            (4_107_542_400, "2100-03-01 00:00:00 UTC"),
            (13_569_379_200, "2399-12-31 00:00:00 UTC"),
            (13_574_563_200, "2400-02-29 00:00:00 UTC"),
            (13_574_649_600, "2400-03-01 00:00:00 UTC"),
            (-2_203_891_200, "1900-03-01 00:00:00 UTC"),
            (3_155_760_000, "2070-01-01 00:00:00 UTC"),
        ] {
            assert_eq!(utc(timestamp), text, "{timestamp}");
        }
    }
}
