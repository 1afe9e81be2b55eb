//! How a client is registered to authenticate with its certificate (RFC 8705 §2.1, §2.2).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::cert::{DistinguishedName, PeerCertificate};

/// The one value a `tls_client_auth` client is registered with (RFC 8705 §2.1.2).
#[derive(Debug, Clone)]
pub enum ExpectedIdentity {
    /// `tls_client_auth_subject_dn`: compared as names (see [`DistinguishedName`]).
    SubjectDn(DistinguishedName),
    /// `tls_client_auth_san_dns`: a `dNSName` SAN, ASCII case-insensitive, exact (a
    /// wildcard matches only the identical wildcard).
    SanDns(String),
    /// `tls_client_auth_san_uri`: a `uniformResourceIdentifier` SAN, exact.
    SanUri(String),
    /// `tls_client_auth_san_ip`: an `iPAddress` SAN, compared as binary addresses (an
    /// IPv4 address never equals an IPv4-mapped IPv6 one).
    SanIp(IpAddr),
    /// `tls_client_auth_san_email`: an `rfc822Name` SAN, exact.
    SanEmail(String),
}

impl std::fmt::Display for ExpectedIdentity {
    /// The registration metadata name and value: `tls_client_auth_san_dns client.example`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SubjectDn(dn) => write!(f, "tls_client_auth_subject_dn {dn}"),
            Self::SanDns(dns) => write!(f, "tls_client_auth_san_dns {dns}"),
            Self::SanUri(uri) => write!(f, "tls_client_auth_san_uri {uri}"),
            Self::SanIp(ip) => write!(f, "tls_client_auth_san_ip {ip}"),
            Self::SanEmail(email) => write!(f, "tls_client_auth_san_email {email}"),
        }
    }
}

impl ExpectedIdentity {
    /// Whether `certificate` carries this identity, in a SAN of this type only.
    pub fn matches(&self, certificate: &PeerCertificate) -> bool {
        match self {
            Self::SubjectDn(dn) => !dn.is_empty() && certificate.subject_name() == dn,
            Self::SanDns(dns) => certificate
                .san_dns()
                .iter()
                .any(|san| san.eq_ignore_ascii_case(dns)),
            Self::SanUri(uri) => certificate.san_uri().iter().any(|san| san == uri),
            Self::SanIp(ip) => certificate.san_ip().contains(ip),
            Self::SanEmail(email) => certificate.san_email().iter().any(|san| san == email),
        }
    }
}

/// How a client authenticates.
#[derive(Debug, Clone)]
pub enum ClientAuthMethod {
    /// `tls_client_auth`: a certificate from the trusted CAs, carrying this identity.
    TlsClientAuth(ExpectedIdentity),
    /// `self_signed_tls_client_auth`: one of these certificates (SHA-256 of their DER,
    /// from the client's JWKS `x5c`), with no chain validation.
    SelfSignedTlsClientAuth(Vec<[u8; 32]>),
    /// `self_signed_tls_client_auth` with a `jwks_uri`: one of the certificates the
    /// client publishes there now, with no chain validation.
    SelfSignedTlsClientAuthByUri(super::ClientJwks),
}

/// The key type of a certificate's public key, as a JWK names it: `kty`, and `crv` for
/// EC and OKP keys; with the values a JWK of it carries.
struct CertificateKey {
    kty: &'static str,
    crv: Option<&'static str>,
    /// `(member, big-endian value)` pairs: `n`, `e` or `x`, `y`.
    values: Vec<(&'static str, Vec<u8>)>,
}

fn certificate_key(der: &[u8]) -> Result<CertificateKey, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| "x5c[0] is not a certificate")?;
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let parsed = spki.parsed().ok();
    let strip = |bytes: &[u8]| {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        bytes[start..].to_vec()
    };
    match oid.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            let values = match parsed {
                Some(PublicKey::RSA(rsa)) => {
                    vec![("n", strip(rsa.modulus)), ("e", strip(rsa.exponent))]
                }
                _ => Vec::new(),
            };
            Ok(CertificateKey {
                kty: "RSA",
                crv: None,
                values,
            })
        }
        "1.2.840.10045.2.1" => {
            let (crv, size) = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("P-256", 32),
                Some("1.3.132.0.34") => ("P-384", 48),
                Some("1.3.132.0.35") => ("P-521", 66),
                _ => return Err("x5c[0] has an EC key on a curve JWK does not name".into()),
            };
            let values = match parsed {
                Some(PublicKey::EC(point)) => match ec_coordinates(point.data(), size) {
                    Some((x, y)) => vec![("x", x.to_vec()), ("y", y.to_vec())],
                    // Compressed (or hybrid) points: only kty and crv are compared.
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            Ok(CertificateKey {
                kty: "EC",
                crv: Some(crv),
                values,
            })
        }
        "1.3.101.112" | "1.3.101.113" => Ok(CertificateKey {
            kty: "OKP",
            crv: Some(if oid == "1.3.101.112" {
                "Ed25519"
            } else {
                "Ed448"
            }),
            values: vec![("x", spki.subject_public_key.data.to_vec())],
        }),
        _ => Err(format!(
            "x5c[0] has a key of a type JWK does not name ({oid})"
        )),
    }
}

/// The `x` and `y` of an uncompressed SEC 1 point (`04 || x || y`) on a curve whose
/// coordinates have `size` bytes; `None` for any other encoding.
fn ec_coordinates(point: &[u8], size: usize) -> Option<(&[u8], &[u8])> {
    match point.split_first() {
        Some((4, coordinates)) if coordinates.len() == 2 * size => Some(coordinates.split_at(size)),
        _ => None,
    }
}

/// Whether the JWK `key` describes the key of its own certificate `der`.
fn jwk_fits_certificate(key: &Value, der: &[u8]) -> Result<(), String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let expected = certificate_key(der)?;
    let described = match expected.crv {
        Some(crv) => format!("an {} {crv} key", expected.kty),
        None => format!("an {} key", expected.kty),
    };
    let Some(kty) = key.get("kty").and_then(Value::as_str) else {
        return Err(format!(
            "has no \"kty\"; its x5c certificate has {described}, so add \"kty\": \"{}\"",
            expected.kty
        ));
    };
    if kty != expected.kty {
        return Err(format!(
            "says \"kty\": {kty:?}, but its x5c certificate has {described}"
        ));
    }
    if let (Some(crv), Some(expected_crv)) = (key.get("crv"), expected.crv)
        && crv.as_str() != Some(expected_crv)
    {
        return Err(format!(
            "says \"crv\": {crv}, but its x5c certificate has {described}"
        ));
    }
    for (member, value) in &expected.values {
        let Some(given) = key.get(*member) else {
            continue;
        };
        let decoded = given.as_str().and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        let fits = decoded.is_some_and(|d| {
            let start = d.iter().position(|b| *b != 0).unwrap_or(d.len());
            let significant = if expected.kty == "RSA" {
                &d[start..]
            } else {
                &d[..]
            };
            significant == value.as_slice()
        });
        if !fits {
            return Err(format!(
                "its \"{member}\" is not the public key of its x5c certificate (is the \
                 x5c the certificate of another key?)"
            ));
        }
    }
    Ok(())
}

/// A client of the token endpoint.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    client_id: String,
    method: ClientAuthMethod,
    scopes: Vec<String>,
}

/// Why a registration cannot be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RegistrationError(String);

impl ClientRegistration {
    /// A `tls_client_auth` client.
    pub fn tls_client_auth(client_id: impl Into<String>, identity: ExpectedIdentity) -> Self {
        Self {
            client_id: client_id.into(),
            method: ClientAuthMethod::TlsClientAuth(identity),
            scopes: Vec::new(),
        }
    }

    /// A `self_signed_tls_client_auth` client, registered with a JWKS whose keys carry
    /// `x5c`; the first certificate of each key's `x5c` is the one it may present.
    ///
    /// Each such key must say what it is: a `kty` that fits the certificate's key (`EC`
    /// with the certificate's `crv`, `RSA`, or `OKP` for Ed25519/Ed448), and, where it
    /// gives them, the public key values (`x`/`y`, `n`/`e`) of that certificate: a JWK
    /// that contradicts its own `x5c` is a publishing mistake to catch at start-up.
    ///
    /// # Errors
    /// When the JWKS is not JSON, has no key with `x5c`, an `x5c` is not base64 DER of a
    /// certificate, or a key's `kty`, `crv` or key values do not fit its certificate.
    pub fn self_signed_tls_client_auth(
        client_id: impl Into<String>,
        jwks: &[u8],
    ) -> Result<Self, RegistrationError> {
        let certificates = x5c_thumbprints(jwks)?;
        Ok(Self {
            client_id: client_id.into(),
            method: ClientAuthMethod::SelfSignedTlsClientAuth(certificates),
            scopes: Vec::new(),
        })
    }

    /// A `self_signed_tls_client_auth` client that publishes its certificates at a
    /// `jwks_uri`: each key's `x5c[0]` there, checked as
    /// [`self_signed_tls_client_auth`](Self::self_signed_tls_client_auth) checks them, is
    /// one it may present; the set is kept fresh as [`ClientJwks`](super::ClientJwks)
    /// says, so the client rotates its certificate by publishing the new one.
    pub fn self_signed_tls_client_auth_jwks_uri(
        client_id: impl Into<String>,
        jwks: super::ClientJwks,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            method: ClientAuthMethod::SelfSignedTlsClientAuthByUri(jwks),
            scopes: Vec::new(),
        }
    }

    /// The scopes this client may be issued.
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The client's `client_id`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// How it authenticates.
    pub fn method(&self) -> &ClientAuthMethod {
        &self.method
    }

    /// The scopes it may be issued.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// For `self_signed_tls_client_auth`: whether `certificate` is a registered one
    /// (constant-time over every registered certificate).
    pub(crate) fn is_registered_certificate(&self, certificate: &PeerCertificate) -> bool {
        match &self.method {
            ClientAuthMethod::SelfSignedTlsClientAuth(registered) => holds(registered, certificate),
            ClientAuthMethod::SelfSignedTlsClientAuthByUri(jwks) => {
                holds(&jwks.thumbprints(), certificate)
            }
            ClientAuthMethod::TlsClientAuth(_) => false,
        }
    }
}

/// Whether `certificate` is one of `registered` (constant-time over all of them).
pub(crate) fn holds(registered: &[[u8; 32]], certificate: &PeerCertificate) -> bool {
    let found = registered
        .iter()
        .fold(subtle::Choice::from(0), |found, hash| {
            found | hash.ct_eq(certificate.thumbprint_bytes())
        });
    bool::from(found)
}

/// The SHA-256 of each key's `x5c[0]` in the JWKS `jwks`, each checked against its JWK.
pub(crate) fn x5c_thumbprints(jwks: &[u8]) -> Result<Vec<[u8; 32]>, RegistrationError> {
    let doc: Value = serde_json::from_slice(jwks)
        .map_err(|e| RegistrationError(format!("the JWKS is not valid JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| RegistrationError("the JWKS has no \"keys\" array".into()))?;
    let mut certificates = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(first) = key
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            continue;
        };
        let der = first
            .as_str()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .ok_or_else(|| RegistrationError(format!("JWKS key #{i}: x5c[0] is not base64 DER")))?;
        PeerCertificate::from_der(&der)
            .map_err(|e| RegistrationError(format!("JWKS key #{i}: x5c[0]: {e}")))?;
        jwk_fits_certificate(key, &der)
            .map_err(|e| RegistrationError(format!("JWKS key #{i}: {e}")))?;
        certificates.push(crate::crypto::sha256(&der));
    }
    if certificates.is_empty() {
        return Err(RegistrationError(
            "the JWKS has no key with an x5c certificate".into(),
        ));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    use super::*;

    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client-s.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.der().to_vec(), key)
    }

    fn register(key: &Value) -> Result<ClientRegistration, RegistrationError> {
        let jwks = json!({ "keys": [key] }).to_string();
        ClientRegistration::self_signed_tls_client_auth("client-s", jwks.as_bytes())
    }

    fn ec_jwk(der: &[u8], key: &rcgen::KeyPair) -> Value {
        curve_jwk("P-256", der, key)
    }

    fn curve_jwk(crv: &str, der: &[u8], key: &rcgen::KeyPair) -> Value {
        let point = key.public_key_raw();
        let size = (point.len() - 1) / 2;
        json!({
            "kty": "EC", "crv": crv,
            "x": URL_SAFE_NO_PAD.encode(&point[1..=size]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
            "x5c": [STANDARD.encode(der)],
        })
    }

    #[test]
    fn every_jwk_curve_is_named_and_checked() {
        for (alg, crv, other) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "P-256", "P-384"),
            (&rcgen::PKCS_ECDSA_P384_SHA384, "P-384", "P-521"),
            (&rcgen::PKCS_ECDSA_P521_SHA512, "P-521", "P-256"),
        ] {
            let (der, key) = self_signed(alg);
            let good = curve_jwk(crv, &der, &key);
            assert!(register(&good).is_ok(), "{crv}");
            let mut wrong = good.clone();
            wrong["crv"] = json!(other);
            let err = register(&wrong).unwrap_err().to_string();
            assert!(err.contains(&format!("EC {crv} key")), "{crv}: {err}");
            let (_, another) = self_signed(alg);
            let mut swapped = curve_jwk(crv, &der, &another);
            swapped["x5c"] = good["x5c"].clone();
            assert!(register(&swapped).is_err(), "{crv}: another key's x and y");
        }
    }

    #[test]
    fn ec_coordinates_keep_their_leading_zeros_and_rsa_integers_may_lose_them() {
        // EC coordinates are fixed-size octet strings (RFC 7518 §6.2.1.2): one that
        // starts with a zero byte is compared whole. A key whose x does is one in 256.
        let (der, key) = (0..5000)
            .map(|_| self_signed(&rcgen::PKCS_ECDSA_P256_SHA256))
            .find(|(_, key)| key.public_key_raw()[1] == 0)
            .expect("a key whose x starts with 0x00");
        assert!(register(&ec_jwk(&der, &key)).is_ok());

        // RSA integers are compared by value: a modulus given with a leading zero byte
        // is the same modulus.
        let (der, _) = self_signed(&rcgen::PKCS_RSA_SHA256);
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
        let spki = cert.public_key().parsed().unwrap();
        let x509_parser::public_key::PublicKey::RSA(rsa) = spki else {
            panic!("an RSA key");
        };
        let start = rsa.modulus.iter().position(|b| *b != 0).unwrap();
        let padded = [&[0u8][..], &rsa.modulus[start..]].concat();
        let jwk = json!({
            "kty": "RSA", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(padded),
            "x5c": [STANDARD.encode(&der)],
        });
        assert!(register(&jwk).is_ok());
    }

    #[test]
    fn a_certificate_registered_twice_still_authenticates() {
        // The same certificate under two keys of the JWKS (a rotation that re-used it).
        let (der, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut first = ec_jwk(&der, &key);
        first["kid"] = json!("one");
        let mut second = first.clone();
        second["kid"] = json!("two");
        let (other, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let jwks = json!({ "keys": [first, second] }).to_string();
        let registration =
            ClientRegistration::self_signed_tls_client_auth("client-s", jwks.as_bytes()).unwrap();
        let peer = PeerCertificate::from_der(&der).unwrap();
        assert!(registration.is_registered_certificate(&peer));
        let other = PeerCertificate::from_der(&other).unwrap();
        assert!(!registration.is_registered_certificate(&other));
    }

    #[test]
    fn scopes_are_kept_as_registered() {
        let registration =
            ClientRegistration::tls_client_auth("c", ExpectedIdentity::SanDns("c.example".into()))
                .with_scopes(["read", "write"]);
        assert_eq!(registration.scopes(), ["read", "write"]);
        assert_eq!(registration.client_id(), "c");
    }

    #[test]
    fn only_uncompressed_points_have_coordinates() {
        let uncompressed = [[4u8].as_slice(), &[1; 32], &[2; 32]].concat();
        assert_eq!(
            ec_coordinates(&uncompressed, 32),
            Some(([1; 32].as_slice(), [2; 32].as_slice()))
        );
        assert_eq!(ec_coordinates(&uncompressed, 48), None);
        let compressed = [[2u8].as_slice(), &[1; 32]].concat();
        assert_eq!(ec_coordinates(&compressed, 32), None);
        let hybrid = [[6u8].as_slice(), &[1; 32], &[2; 32]].concat();
        assert_eq!(ec_coordinates(&hybrid, 32), None);
        assert_eq!(ec_coordinates(&uncompressed[..64], 32), None);
        assert_eq!(ec_coordinates(&[], 32), None);
    }

    #[test]
    fn a_jwk_that_fits_its_certificate_registers() {
        let (der, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(register(&ec_jwk(&der, &key)).is_ok());
        let minimal = json!({ "kty": "EC", "x5c": [STANDARD.encode(&der)] });
        assert!(register(&minimal).is_ok());
        let (der, _) = self_signed(&rcgen::PKCS_ED25519);
        assert!(
            register(&json!({ "kty": "OKP", "crv": "Ed25519", "x5c": [STANDARD.encode(&der)] }))
                .is_ok()
        );
        let (der, _) = self_signed(&rcgen::PKCS_RSA_SHA256);
        assert!(
            register(&json!({ "kty": "RSA", "e": "AQAB", "x5c": [STANDARD.encode(&der)] })).is_ok()
        );
    }

    #[test]
    fn a_jwk_that_contradicts_its_certificate_is_refused() {
        let (der, key) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let good = ec_jwk(&der, &key);
        let message = |key: Value| register(&key).unwrap_err().to_string();

        let mut no_kty = good.clone();
        no_kty.as_object_mut().unwrap().remove("kty");
        let err = message(no_kty);
        assert!(
            err.contains("no \"kty\"") && err.contains("\"kty\": \"EC\""),
            "{err}"
        );

        let mut rsa = good.clone();
        rsa["kty"] = json!("RSA");
        let err = message(rsa);
        assert!(err.contains("\"RSA\"") && err.contains("EC P-256"), "{err}");

        let mut p384 = good.clone();
        p384["crv"] = json!("P-384");
        assert!(message(p384).contains("\"crv\""));

        let (_, other) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let mut swapped = ec_jwk(&der, &other);
        swapped["x5c"] = good["x5c"].clone();
        let err = message(swapped);
        assert!(err.contains("not the public key of its x5c"), "{err}");

        let (rsa_der, _) = self_signed(&rcgen::PKCS_RSA_SHA256);
        let err = message(json!({ "kty": "RSA", "e": "AQAA", "x5c": [STANDARD.encode(&rsa_der)] }));
        assert!(err.contains("\"e\""), "{err}");
    }
}
