//! The client CA bundle, read once and checked for the mistakes tutorials lead to: a
//! client's or the server's own certificate where the CA belongs, X.509 v1 CAs,
//! expired CAs.

use std::sync::Arc;

use rustls::RootCertStore;

use super::diagnostics::BundleInfo;
use super::facts::{CertificateFacts, self_signed, unix_now, utc};

/// A checked client CA bundle: the roots, and how messages name them.
#[derive(Debug, Clone)]
pub(crate) struct ClientCaBundle {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) info: BundleInfo,
    /// The certificates as read, for checking what they signed (CRLs).
    pub(crate) certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Reads the bundle (PEM or DER) named `source` in messages.
///
/// A certificate that is neither a CA nor self-signed is an error: it cannot have
/// issued any client's certificate, so it is always a mistake (often the server's or a
/// client's certificate given in place of the CA's), and leaving it would let whoever
/// holds its key issue client certificates. A self-signed non-CA certificate is kept: it
/// trusts exactly that one client. X.509 v1 and expired CAs are warnings: rustls accepts
/// a v1 trust anchor, and an expired one only refuses clients, each of which is logged.
///
/// # Errors
/// The problem, naming the certificate and what to put there instead.
pub(crate) fn load(bytes: &[u8], source: &str) -> Result<ClientCaBundle, String> {
    let certificates = super::files::certificates(bytes)?;
    let provider = crate::crypto::rustls_provider();
    let now = unix_now();
    let mut roots = RootCertStore::empty();
    let mut subjects = Vec::new();
    let mut kept = Vec::with_capacity(certificates.len());
    for (i, der) in certificates.into_iter().enumerate() {
        let n = i + 1;
        let facts = CertificateFacts::of(&der)
            .ok_or_else(|| format!("certificate {n} is not a well-formed X.509 certificate"))?;
        let subject = &facts.subject;
        if facts.version < 3 {
            tracing::warn!(
                source = %source,
                subject = %subject,
                "client CA bundle: certificate {n} ({subject}) is X.509 v1; it is used as a \
                 trust anchor, but re-issue it as v3 (`openssl req -x509` does, or \
                 `-extfile` with `basicConstraints = critical, CA:TRUE` and \
                 `keyUsage = critical, keyCertSign, cRLSign`)"
            );
        } else if !facts.is_ca {
            if facts.issued_by_itself && self_signed(&der, &provider, now) {
                tracing::info!(
                    source = %source,
                    subject = %subject,
                    thumbprint = %facts.thumbprint,
                    "client CA bundle: certificate {n} is a self-signed client certificate, \
                     trusted as itself"
                );
            } else {
                return Err(format!(
                    "certificate {n} ({subject}) is not a CA certificate (no \
                     basicConstraints CA:TRUE), so it cannot have issued client \
                     certificates; put the certificate of the CA that issued the clients' \
                     certificates here (this one was issued by {}) — the one given to \
                     `openssl x509 -req -CA`",
                    facts.issuer
                ));
            }
        }
        if facts.expired_at(now) {
            tracing::warn!(
                source = %source,
                subject = %subject,
                "client CA bundle: certificate {n} ({subject}) expired at {}; clients it \
                 issued will be refused until it is renewed",
                utc(facts.not_after)
            );
        }
        roots
            .add(der.clone())
            .map_err(|e| format!("certificate {n} ({subject}) is not a usable CA: {e}"))?;
        kept.push(der);
        subjects.push(facts.subject);
    }
    Ok(ClientCaBundle {
        roots: Arc::new(roots),
        info: BundleInfo {
            source: source.to_owned(),
            subjects,
        },
        certificates: kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example CA");
        let cert = params.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(params, key))
    }

    #[test]
    fn a_ca_is_read_in_pem_or_der() {
        let (cert, _) = ca();
        for bytes in [cert.pem().into_bytes(), cert.der().to_vec()] {
            let bundle = load(&bytes, "ca.pem").unwrap();
            assert_eq!(bundle.info.subjects, ["CN=Example CA"]);
            assert_eq!(bundle.roots.len(), 1);
        }
    }

    #[test]
    fn a_leaf_in_place_of_the_ca_is_refused_naming_its_issuer() {
        let (ca_cert, issuer) = ca();
        let mut params = rcgen::CertificateParams::new(vec!["client-a.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-a");
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &issuer).unwrap();
        let bundle = format!("{}{}", ca_cert.pem(), leaf.pem());
        let err = load(bundle.as_bytes(), "ca.pem").unwrap_err();
        assert!(err.contains("certificate 2 (CN=client-a)"), "{err}");
        assert!(
            err.contains("not a CA") && err.contains("CN=Example CA"),
            "{err}"
        );
    }

    #[test]
    fn a_self_signed_client_certificate_is_trusted_as_itself() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client-s.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(load(cert.pem().as_bytes(), "pinned.pem").is_ok());
    }

    /// `openssl x509 -req -CA ... ` without `-extfile`: an X.509 v1 certificate, here one
    /// issued by another v1 CA, so neither self-signed nor marked as a CA.
    const V1_ISSUED: &str = "-----BEGIN CERTIFICATE-----
MIIBMzCB2QIUXtmyTN/1keFzNIA49yhLGIuxjRkwCgYIKoZIzj0EAwIwGTEXMBUG
A1UEAwwOVHV0b3JpYWwgVjEgQ0EwIBcNMjYxMjAxMjEzMzE0WhgPMjEyNjExMDcy
MTMzMTRaMB0xGzAZBgNVBAMMElR1dG9yaWFsIFYxIFN1YiBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABLUeQOJ91+yEptPiGKeWTj+eS2UH6U3bOPE/3T2IV/vg
aOQUZCdf3ptBkTmQqGvnhwBLCUa5Bq/VQGBvAToH/qcwCgYIKoZIzj0EAwIDSQAw
RgIhAO3Y4KajDqHGMUAlUSmZ6eprE43dYlEpmfjXpVZravOSAiEApg20YVIAjx56
19/qT31b+jGTlFYfNnIDt8DouX/3Y6Y=
-----END CERTIFICATE-----
";

    #[test]
    fn a_v1_ca_is_kept_with_a_warning() {
        // v1 cannot say CA:TRUE; rustls takes it as a trust anchor, so it is kept.
        let bundle = load(V1_ISSUED.as_bytes(), "v1.pem").unwrap();
        assert_eq!(bundle.info.subjects, ["CN=Tutorial V1 Sub CA"]);
    }

    #[test]
    fn a_leaf_named_like_its_issuer_is_not_self_signed() {
        // Subject == issuer, but signed by the CA's key, not its own: not a pinned
        // self-signed client, so it is refused like any other leaf.
        let (ca_cert, issuer) = ca();
        let mut params = rcgen::CertificateParams::new(vec!["client-a.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Example CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &issuer).unwrap();
        let bundle = format!("{}{}", ca_cert.pem(), leaf.pem());
        let err = load(bundle.as_bytes(), "ca.pem").unwrap_err();
        assert!(
            err.contains("certificate 2") && err.contains("not a CA"),
            "{err}"
        );
    }

    #[test]
    fn what_is_not_a_certificate_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let err = load(key.serialize_pem().as_bytes(), "ca.pem").unwrap_err();
        assert!(err.contains("PRIVATE KEY"), "{err}");
    }
}
