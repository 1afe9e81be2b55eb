//! Test PKI and token issuing, shared by the tests, the demo and the benchmarks
//! (included with `#[path]`): a CA, intermediates, server and client certificates
//! (rcgen), signing keys with their JWKS, and signed access tokens (jsonwebtoken).
#![allow(dead_code)]

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A certificate authority that issues leaves and intermediates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// This CA's certificate, PEM.
    pub cert_pem: String,
    /// This CA's certificate, DER.
    pub cert_der: Vec<u8>,
    /// Intermediates between this CA and the root, PEM, nearest first (empty for a root).
    chain_pem: String,
}

/// What a client certificate says about its holder.
#[derive(Clone, Default)]
pub struct Subject {
    pub cn: String,
    pub org: Option<String>,
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub ip: Vec<IpAddr>,
    pub email: Vec<String>,
    pub expired: bool,
    /// Valid from yesterday until this many days from today (midnight UTC).
    pub ends_in_days: Option<i64>,
    /// An OCSP responder in the Authority Information Access extension.
    pub ocsp_url: Option<String>,
}

impl Subject {
    pub fn cn(cn: &str) -> Self {
        Self {
            cn: cn.into(),
            ..Self::default()
        }
    }
}

/// A certificate and its key.
pub struct Leaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub key_pem: String,
    /// The leaf followed by the intermediates of its issuer, PEM.
    pub chain_pem: String,
    /// `x5t#S256` of the leaf.
    pub thumbprint: String,
}

impl Ca {
    /// A self-signed root.
    pub fn root(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
            chain_pem: String::new(),
        }
    }

    /// An intermediate CA under this one.
    pub fn intermediate(&self, name: &str) -> Self {
        let key = KeyPair::generate().expect("intermediate key");
        let params = ca_params(name);
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Self {
            chain_pem: format!("{}{}", cert.pem(), self.chain_pem),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate.
    pub fn client(&self, subject: &Subject) -> Leaf {
        self.issue(client_params(subject))
    }

    /// A client certificate with an RSA-2048 key (the other leaves are P-256), for
    /// certificates of a realistic size (about 1 KiB DER).
    pub fn client_rsa(&self, subject: &Subject) -> Leaf {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("RSA leaf key");
        let cert = client_params(subject)
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        Leaf::new(
            cert.pem(),
            cert.der().to_vec(),
            key.serialize_pem(),
            &self.chain_pem,
        )
    }

    /// This CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A CRL signed by this CA that revokes the certificates `revoked` (DER);
    /// `expired` puts its nextUpdate in the past (2021), otherwise it is 2099.
    pub fn crl(&self, revoked: &[&[u8]], expired: bool) -> String {
        self.crl_with(revoked, expired, 2020, None)
    }

    /// [`crl`](Self::crl) issued in `year` (its thisUpdate), and with an issuing
    /// distribution point (a partial CRL) when `distribution_point` is given.
    pub fn crl_with(
        &self,
        revoked: &[&[u8]],
        expired: bool,
        year: i32,
        distribution_point: Option<&str>,
    ) -> String {
        let revoked_certs = revoked
            .iter()
            .map(|der| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&serial_of(der)),
                revocation_time: rcgen::date_time_ymd(2020, 6, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(year, 1, 1),
            next_update: rcgen::date_time_ymd(if expired { 2021 } else { 2099 }, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: distribution_point.map(|uri| {
                rcgen::CrlIssuingDistributionPoint {
                    distribution_point: rcgen::CrlDistributionPoint {
                        uris: vec![uri.to_owned()],
                    },
                    scope: None,
                }
            }),
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }

    fn issue(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf::new(
            cert.pem(),
            cert.der().to_vec(),
            key.serialize_pem(),
            &self.chain_pem,
        )
    }
}

impl Leaf {
    fn new(cert_pem: String, cert_der: Vec<u8>, key_pem: String, chain: &str) -> Self {
        Self {
            chain_pem: format!("{cert_pem}{chain}"),
            thumbprint: thumbprint(&cert_der),
            cert_pem,
            cert_der,
            key_pem,
        }
    }

    /// A self-signed client certificate, issued by no CA.
    pub fn self_signed(subject: &Subject) -> Self {
        let key = KeyPair::generate().expect("key");
        let cert = client_params(subject)
            .self_signed(&key)
            .expect("self-signed");
        Self::new(cert.pem(), cert.der().to_vec(), key.serialize_pem(), "")
    }
}

impl Leaf {
    /// A self-signed client certificate that says CA:TRUE, as `openssl req -x509` makes
    /// them.
    pub fn self_signed_ca(subject: &Subject) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = client_params(subject);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signed CA:TRUE");
        Self::new(cert.pem(), cert.der().to_vec(), key.serialize_pem(), "")
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn client_params(subject: &Subject) -> CertificateParams {
    let mut params = CertificateParams::new(subject.dns.clone()).expect("client params");
    params
        .distinguished_name
        .push(DnType::CommonName, subject.cn.as_str());
    if let Some(org) = &subject.org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org.as_str());
    }
    for uri in &subject.uri {
        params
            .subject_alt_names
            .push(SanType::URI(uri.as_str().try_into().expect("uri")));
    }
    for ip in &subject.ip {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for email in &subject.email {
        params.subject_alt_names.push(SanType::Rfc822Name(
            email.as_str().try_into().expect("email"),
        ));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if subject.expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    if let Some(url) = &subject.ocsp_url {
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                authority_info_access(url),
            ));
    }
    if let Some(days) = subject.ends_in_days {
        let (y, m, d) = date_from_today(-1);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = date_from_today(days);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    params
}

/// DER of an AuthorityInfoAccess naming `url` as the OCSP responder.
fn authority_info_access(url: &str) -> Vec<u8> {
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            len @ 0..=127 => out.push(len as u8),
            len @ 128..=255 => out.extend([0x81, len as u8]),
            len => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend_from_slice(content);
        out
    }
    let id_ad_ocsp = tlv(0x06, &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01]);
    let location = tlv(0x86, url.as_bytes());
    tlv(0x30, &tlv(0x30, &[id_ad_ocsp, location].concat()))
}

/// The date (UTC) `days` from today, as the crate writes dates.
pub fn date_from_today(days: i64) -> (i32, u8, u8) {
    let offset = std::time::Duration::from_secs(days.unsigned_abs() * 86_400);
    let now = std::time::SystemTime::now();
    let day = if days < 0 { now - offset } else { now + offset };
    let text = mtls_bound_token::expiry::format_utc(day);
    let mut parts = text[..10].split('-').map(|p| p.parse::<u32>().unwrap());
    let (y, m, d) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    (y as i32, m as u8, d as u8)
}

/// RFC 8705 `x5t#S256`: base64url (no padding) of SHA-256 over the DER.
/// The serial number of the certificate `der`, as its DER INTEGER's contents.
pub fn serial_of(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).expect("certificate");
    cert.raw_serial().to_vec()
}

pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// A token signing key and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
    /// The public key as PEM (SPKI), e.g. for the RSA-as-HMAC-secret attack.
    pub public_pem: String,
    /// The private key as PKCS#8 PEM, for tools that sign (the load client).
    pub private_pem: String,
}

impl SigningKey {
    pub fn es256(kid: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
        let point = key.public_key_raw();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("EC pem");
        Self::new(Algorithm::ES256, kid, encoding, jwk, &key)
    }

    pub fn rs256(kid: &str) -> Self {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .expect("RSA key");
        let der = key.subject_public_key_info();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&der).expect("spki");
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            panic!("not an RSA key");
        };
        let strip = |b: &[u8]| {
            b.iter()
                .copied()
                .skip_while(|x| *x == 0)
                .collect::<Vec<_>>()
        };
        let jwk = json!({
            "kty": "RSA", "kid": kid, "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(strip(rsa.modulus)),
            "e": URL_SAFE_NO_PAD.encode(strip(rsa.exponent)),
        });
        let encoding = EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()).expect("RSA pem");
        Self::new(Algorithm::RS256, kid, encoding, jwk, &key)
    }

    pub fn eddsa(kid: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519 key");
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(key.public_key_raw()),
        });
        let encoding = EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).expect("Ed pem");
        Self::new(Algorithm::EdDSA, kid, encoding, jwk, &key)
    }

    fn new(alg: Algorithm, kid: &str, encoding: EncodingKey, jwk: Value, key: &KeyPair) -> Self {
        Self {
            alg,
            kid: kid.into(),
            encoding,
            jwk,
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        }
    }

    /// The RFC 9068 header this key signs with: `typ: at+jwt`, its `alg` and `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(self.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(self.kid.clone());
        header
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        mtls_bound_token::install_jwt_provider();
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// `{"keys": [...]}` of these keys.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// RFC 9068 claims for `client_id`, bound to `cert` when given.
pub fn claims(
    issuer: &str,
    audience: &str,
    client_id: &str,
    scope: &str,
    cert: Option<&Leaf>,
) -> Value {
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        "client_id": client_id,
        "scope": scope,
        "iat": now(),
        "exp": now() + 300,
        "jti": format!("{client_id}-{}", now()),
    });
    if let Some(cert) = cert {
        claims["cnf"] = json!({ "x5t#S256": cert.thumbprint });
    }
    claims
}

/// A JWKS whose keys carry `x5c`: what a `self_signed_tls_client_auth` client registers.
pub fn x5c_jwks(leaves: &[&Leaf]) -> String {
    let keys: Vec<Value> = leaves
        .iter()
        .map(|leaf| {
            let key = KeyPair::from_pem(&leaf.key_pem).expect("leaf key");
            let point = key.public_key_raw();
            json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
                "x5c": [STANDARD.encode(&leaf.cert_der)],
            })
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Client A's certificate contents: the subject `O=Example,CN=client-a` and one SAN of
/// every type (two IP addresses).
pub fn a_subject() -> Subject {
    Subject {
        cn: "client-a".into(),
        org: Some("Example".into()),
        dns: vec!["client-a.example.org".into()],
        uri: vec!["spiffe://example.org/client-a".into()],
        ip: vec!["10.1.2.3".parse().unwrap(), "2001:db8::10".parse().unwrap()],
        email: vec!["a@example.org".into()],
        expired: false,
        ends_in_days: None,
        ocsp_url: None,
    }
}
