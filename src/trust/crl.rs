//! Certificate revocation lists, read once and indexed by issuer and serial, for the
//! checks that have a leaf certificate but no chain to validate (a certificate a proxy
//! forwarded, or one accepted for binding only).

use std::collections::HashSet;

use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::tls::{files, unix_now};

/// The largest CRL file read: a CRL of a million entries is about 40 MB; one of this
/// size holds some hundred thousand.
pub(crate) const MAX_CRL_LEN: usize = 16 * 1024 * 1024;

/// One CRL as the leaf check uses it.
#[derive(Debug, Clone)]
pub(crate) struct Crl {
    /// The issuer's name, DER, as certificates carry it in their `issuer`.
    pub(crate) issuer: Vec<u8>,
    /// The issuer as people read it (RFC 4514).
    pub(crate) issuer_text: String,
    /// The raw serials (DER INTEGER contents) of the revoked certificates.
    revoked: HashSet<Vec<u8>>,
    /// `nextUpdate`, Unix seconds; `None` when the CRL names none.
    pub(crate) next_update: Option<i64>,
    /// `thisUpdate`, Unix seconds: of two CRLs of one issuer, the later one counts.
    pub(crate) this_update: i64,
    /// Whether it lists every revoked certificate of its issuer: a CRL with an issuing
    /// distribution point covers only part of them, so not being listed there proves
    /// nothing.
    complete: bool,
    /// The CRL as read, for rustls.
    pub(crate) der: CertificateRevocationListDer<'static>,
}

impl Crl {
    /// Whether the CRL's `nextUpdate` has passed at `now` (Unix seconds).
    pub(crate) fn expired_at(&self, now: i64) -> bool {
        self.next_update.is_some_and(|next| now > next)
    }

    /// How many certificates it revokes.
    pub(crate) fn len(&self) -> usize {
        self.revoked.len()
    }
}

/// Reads the CRLs of one file: PEM `X509 CRL` blocks, or one DER CRL.
pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Crl>, String> {
    if bytes.len() > MAX_CRL_LEN {
        return Err(format!(
            "is {} bytes, more than the {MAX_CRL_LEN} bytes a CRL may have here",
            bytes.len()
        ));
    }
    let ders: Vec<CertificateRevocationListDer<'static>> = if files::is_pem(bytes) {
        let ders = CertificateRevocationListDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not valid PEM: {e}"))?;
        if ders.is_empty() {
            return Err(format!(
                "holds no `X509 CRL` PEM block (it holds {}); make a CRL with \
                 `openssl ca -gencrl`",
                files::pem_labels(bytes).join(", ")
            ));
        }
        ders
    } else {
        vec![CertificateRevocationListDer::from(bytes.to_vec())]
    };
    ders.into_iter()
        .enumerate()
        .map(|(i, der)| parse(der).map_err(|problem| format!("CRL {}: {problem}", i + 1)))
        .collect()
}

fn parse(der: CertificateRevocationListDer<'static>) -> Result<Crl, String> {
    let (rest, crl) = CertificateRevocationList::from_der(der.as_ref()).map_err(|_| {
        if X509Certificate::from_der(der.as_ref()).is_ok() {
            "is a certificate, not a CRL".to_owned()
        } else {
            "is not a DER certificate revocation list".to_owned()
        }
    })?;
    if !rest.is_empty() {
        return Err("has bytes after the CRL".to_owned());
    }
    // What the handshakes' webpki refuses (delta and indirect CRLs, unknown critical
    // extensions) is refused here too, for every use.
    webpki::OwnedCertRevocationList::from_der(der.as_ref())
        .map_err(|e| format!("cannot be used: {e:?}"))?;
    let complete = !crl.extensions().iter().any(|extension| {
        extension.oid == x509_parser::oid_registry::OID_X509_EXT_ISSUER_DISTRIBUTION_POINT
    });
    let issuer = crl.issuer().as_raw().to_vec();
    let issuer_text = crate::cert::DistinguishedName::from_x509(crl.issuer()).to_string();
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| entry.raw_serial().to_vec())
        .collect();
    let next_update = crl.next_update().map(|t| t.timestamp());
    let this_update = crl.last_update().timestamp();
    drop(crl);
    Ok(Crl {
        issuer,
        issuer_text,
        revoked,
        next_update,
        this_update,
        complete,
        der,
    })
}

/// Of several CRLs of one issuer, the one with the latest `thisUpdate` (the later given
/// on a tie): the handshakes' webpki reads only one per issuer, and this makes it the
/// newest for both.
pub(crate) fn newest_per_issuer(crls: Vec<Crl>) -> Vec<Crl> {
    let mut kept: Vec<Crl> = Vec::with_capacity(crls.len());
    for crl in crls {
        match kept.iter_mut().find(|k| k.issuer == crl.issuer) {
            Some(older) if older.this_update <= crl.this_update => {
                tracing::info!(issuer = %crl.issuer_text, "two CRLs of one issuer: the newer one is used");
                *older = crl;
            }
            Some(_) => {
                tracing::info!(issuer = %crl.issuer_text, "two CRLs of one issuer: the newer one is used");
            }
            None => kept.push(crl),
        }
    }
    kept
}

/// What the loaded CRLs say of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationStatus {
    /// No CRL is loaded: nothing was checked.
    NotChecked,
    /// A CRL of the certificate's issuer is loaded, current, and does not list it.
    Good,
    /// A CRL of the certificate's issuer lists it.
    Revoked,
    /// No loaded CRL is its issuer's (or the certificate cannot be read, or only its
    /// hash was forwarded).
    Unknown,
    /// Its issuer's CRL does not list it, but that CRL's `nextUpdate` has passed.
    CrlExpired,
}

impl RevocationStatus {
    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotChecked => "not_checked",
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unknown => "unknown",
            Self::CrlExpired => "crl_expired",
        }
    }
}

/// The status of the leaf `der` by `crls`, at `now` (Unix seconds). `der` is within the
/// certificate size bound already: every caller holds a `PeerCertificate` or a CA of a
/// loaded bundle.
pub(crate) fn status_of(crls: &[Crl], der: &[u8], now: i64) -> RevocationStatus {
    let Ok((_, certificate)) = X509Certificate::from_der(der) else {
        return RevocationStatus::Unknown;
    };
    status_by(
        crls,
        certificate.issuer().as_raw(),
        certificate.raw_serial(),
        now,
    )
}

/// The status of the certificate of `serial` from `issuer` (DER name) by `crls`.
pub(crate) fn status_by(crls: &[Crl], issuer: &[u8], serial: &[u8], now: i64) -> RevocationStatus {
    if crls.is_empty() {
        return RevocationStatus::NotChecked;
    }
    let mut status = RevocationStatus::Unknown;
    for crl in crls.iter().filter(|crl| crl.issuer == issuer) {
        if crl.revoked.contains(serial) {
            return RevocationStatus::Revoked;
        }
        if !crl.complete {
            // Not listed in a partial CRL: still unknown.
        } else if crl.expired_at(now) {
            if status == RevocationStatus::Unknown {
                status = RevocationStatus::CrlExpired;
            }
        } else {
            status = RevocationStatus::Good;
        }
    }
    status
}

/// [`status_of`] now.
pub(crate) fn status_now(crls: &[Crl], der: &[u8]) -> RevocationStatus {
    status_of(crls, der, unix_now())
}
