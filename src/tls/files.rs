//! Reading certificates and private keys as people hand them over: PEM or DER, told
//! apart by content (never by file name), and a message naming what was found when a
//! file holds something else.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The DER certificates in `bytes`: every `CERTIFICATE` block of PEM, or one or more
/// concatenated DER certificates.
///
/// # Errors
/// What the input holds instead, in words that name the fix.
pub(crate) fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if is_pem(bytes) {
        let certs = CertificateDer::pem_slice_iter(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not valid PEM: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "holds no CERTIFICATE block{}",
                pem_instead(bytes, Wanted::Certificate)
            ));
        }
        return Ok(certs);
    }
    let mut rest = bytes;
    let mut certs = Vec::new();
    while !rest.is_empty() {
        match X509Certificate::from_der(rest) {
            Ok((after, _)) => {
                certs.push(CertificateDer::from(
                    rest[..rest.len() - after.len()].to_vec(),
                ));
                rest = after;
            }
            Err(_) if certs.is_empty() => {
                return Err(der_instead(bytes, Wanted::Certificate));
            }
            Err(_) => {
                return Err(format!(
                    "holds {} DER certificate(s) followed by bytes that are not a certificate",
                    certs.len()
                ));
            }
        }
    }
    if certs.is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(certs)
}

/// The private key in `bytes`: the first PKCS#8, PKCS#1 or SEC1 key of PEM, or one DER
/// key of any of those forms.
///
/// # Errors
/// What the input holds instead, in words that name the fix.
pub(crate) fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if is_pem(bytes) {
        return match PrivateKeyDer::from_pem_slice(bytes) {
            Ok(key) => Ok(key),
            Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(format!(
                "holds no PKCS#8, PKCS#1 or SEC1 private key{}",
                pem_instead(bytes, Wanted::Key)
            )),
            Err(e) => Err(format!("not valid PEM: {e}")),
        };
    }
    if looks_like_pkcs12(bytes) {
        return Err(der_instead(bytes, Wanted::Key));
    }
    match PrivateKeyDer::try_from(bytes) {
        Ok(key) => Ok(key.clone_key()),
        Err(_) => Err(der_instead(bytes, Wanted::Key)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Certificate,
    Key,
}

pub(crate) fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The labels of the PEM blocks in `bytes`, in order, at most a few.
pub(crate) fn pem_labels(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
                .map(str::to_owned)
        })
        .take(8)
        .collect()
}

/// ": it holds ... instead", for PEM without the wanted block.
fn pem_instead(bytes: &[u8], wanted: Wanted) -> String {
    let labels = pem_labels(bytes);
    let Some(first) = labels.first() else {
        return String::new();
    };
    let found = labels.join(", ");
    let hint = match (wanted, first.as_str()) {
        (Wanted::Certificate, l) if l.contains("PRIVATE KEY") => {
            " — this is a private key: were the certificate and key files swapped?"
        }
        (Wanted::Key, "CERTIFICATE") => {
            " — this is a certificate: were the certificate and key files swapped?"
        }
        (_, "ENCRYPTED PRIVATE KEY") => {
            " — the key is encrypted; write it unencrypted with \
             `openssl pkey -in KEY -out KEY.plain` and keep that file private"
        }
        (Wanted::Certificate, "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") => {
            " — this is a signing request (CSR); sign it into a certificate first, with \
             `openssl x509 -req -in CSR -CA ca.crt -CAkey ca.key -extfile EXT -out CRT`"
        }
        (_, "PUBLIC KEY") => " — a public key alone is not enough",
        _ => "",
    };
    format!(": it holds {found} instead{hint}")
}

/// For bytes that are not PEM and not the wanted DER: what they are, as far as can be told.
fn der_instead(bytes: &[u8], wanted: Wanted) -> String {
    if bytes.is_empty() {
        return "is empty".to_owned();
    }
    let is_certificate = X509Certificate::from_der(bytes).is_ok();
    let is_key = PrivateKeyDer::try_from(bytes).is_ok();
    let is_csr =
        x509_parser::certification_request::X509CertificationRequest::from_der(bytes).is_ok();
    match wanted {
        _ if looks_like_pkcs12(bytes) => pkcs12(wanted),
        Wanted::Key if is_certificate => "holds a DER certificate, not a private key: were \
                                          the certificate and key files swapped?"
            .to_owned(),
        Wanted::Certificate if is_key => "holds a DER private key, not a certificate: were \
                                          the certificate and key files swapped?"
            .to_owned(),
        Wanted::Certificate if is_csr => "holds a DER certificate signing request (CSR); sign \
                                          it into a certificate first, with `openssl x509 -req`"
            .to_owned(),
        _ if bytes.first() == Some(&b'{') => "looks like JSON, not a certificate or key".to_owned(),
        Wanted::Certificate => {
            "is neither PEM (no -----BEGIN CERTIFICATE-----) nor a DER certificate".to_owned()
        }
        Wanted::Key => "is neither PEM (no -----BEGIN PRIVATE KEY-----) nor a DER PKCS#8, \
                        PKCS#1 or SEC1 private key"
            .to_owned(),
    }
}

fn pkcs12(wanted: Wanted) -> String {
    let (what, options) = match wanted {
        Wanted::Key => ("key", "-nocerts -nodes"),
        Wanted::Certificate => ("certificates", "-nokeys"),
    };
    format!(
        "looks like a PKCS#12 bundle (.p12/.pfx), which is not read; extract the {what} \
         with `openssl pkcs12 -in FILE {options} -out OUT.pem`"
    )
}

/// PFX (RFC 7292): `SEQUENCE { INTEGER 3, ContentInfo, ... }`.
fn looks_like_pkcs12(bytes: &[u8]) -> bool {
    use x509_parser::der_parser::asn1_rs::{Any, FromDer as _, Tag};
    let Ok((_, outer)) = Any::from_der(bytes) else {
        return false;
    };
    if outer.tag() != Tag::Sequence {
        return false;
    }
    matches!(Any::from_der(outer.data), Ok((_, version)) if version.tag() == Tag::Integer && version.data == [3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n").into_bytes()
    }

    fn material() -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    #[test]
    fn pem_and_der_are_both_read() {
        let (cert, key) = material();
        assert_eq!(
            certificates(&pem("CERTIFICATE", &cert)).unwrap()[0].as_ref(),
            cert
        );
        assert_eq!(certificates(&cert).unwrap()[0].as_ref(), cert);
        let two = [cert.clone(), cert.clone()].concat();
        assert_eq!(certificates(&two).unwrap().len(), 2);
        assert!(private_key(&pem("PRIVATE KEY", &key)).is_ok());
        assert_eq!(private_key(&key).unwrap().secret_der(), key);
    }

    #[test]
    fn the_wrong_file_says_what_it_holds() {
        let (cert, key) = material();
        let err = certificates(&pem("PRIVATE KEY", &key)).unwrap_err();
        assert!(
            err.contains("PRIVATE KEY instead") && err.contains("swapped"),
            "{err}"
        );
        let err = certificates(&key).unwrap_err();
        assert!(err.contains("DER private key"), "{err}");
        let err = private_key(&pem("CERTIFICATE", &cert)).unwrap_err();
        assert!(
            err.contains("CERTIFICATE instead") && err.contains("swapped"),
            "{err}"
        );
        let err = private_key(&cert).unwrap_err();
        assert!(err.contains("DER certificate"), "{err}");
        let err = private_key(&pem("ENCRYPTED PRIVATE KEY", &key)).unwrap_err();
        assert!(
            err.contains("encrypted") && err.contains("openssl pkey"),
            "{err}"
        );
        let err = certificates(&pem("CERTIFICATE REQUEST", &key)).unwrap_err();
        assert!(
            err.contains("CSR") && err.contains("openssl x509 -req"),
            "{err}"
        );
        let csr = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .serialize_request(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let err = certificates(csr.der()).unwrap_err();
        assert!(err.contains("DER certificate signing request"), "{err}");
        assert_eq!(certificates(b"").unwrap_err(), "is empty");
        let err = certificates(b"{\"keys\": []}").unwrap_err();
        assert!(err.contains("JSON"), "{err}");
        let err = certificates(b"hello").unwrap_err();
        assert!(err.contains("neither PEM"), "{err}");
        let err = private_key(b"hello").unwrap_err();
        assert!(
            err.contains("neither PEM") && err.contains("PKCS#8"),
            "{err}"
        );
        let err = certificates(&pem("PUBLIC KEY", &key)).unwrap_err();
        assert!(err.contains("a public key alone is not enough"), "{err}");
        let err = private_key(&pem("PUBLIC KEY", &key)).unwrap_err();
        assert!(err.contains("a public key alone is not enough"), "{err}");
        let err = certificates(&[cert.as_slice(), b"junk"].concat()).unwrap_err();
        assert!(err.contains("followed by bytes"), "{err}");
    }

    #[test]
    fn pkcs12_is_recognised() {
        // SEQUENCE { INTEGER 3, SEQUENCE {} }
        let pfx = [0x30, 0x05, 0x02, 0x01, 0x03, 0x30, 0x00];
        let err = certificates(&pfx).unwrap_err();
        assert!(err.contains("PKCS#12") && err.contains("-nokeys"), "{err}");
        let err = private_key(&pfx).unwrap_err();
        assert!(err.contains("PKCS#12") && err.contains("-nocerts"), "{err}");
    }
}
