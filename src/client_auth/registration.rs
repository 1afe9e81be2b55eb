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
    /// # Errors
    /// When the JWKS is not JSON, has no key with `x5c`, or an `x5c` is not base64.
    pub fn self_signed_tls_client_auth(
        client_id: impl Into<String>,
        jwks: &[u8],
    ) -> Result<Self, RegistrationError> {
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
                .ok_or_else(|| {
                    RegistrationError(format!("JWKS key #{i}: x5c[0] is not base64 DER"))
                })?;
            PeerCertificate::from_der(&der)
                .map_err(|e| RegistrationError(format!("JWKS key #{i}: x5c[0]: {e}")))?;
            certificates.push(crate::crypto::sha256(&der));
        }
        if certificates.is_empty() {
            return Err(RegistrationError(
                "the JWKS has no key with an x5c certificate".into(),
            ));
        }
        Ok(Self {
            client_id: client_id.into(),
            method: ClientAuthMethod::SelfSignedTlsClientAuth(certificates),
            scopes: Vec::new(),
        })
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
        let ClientAuthMethod::SelfSignedTlsClientAuth(registered) = &self.method else {
            return false;
        };
        let found = registered
            .iter()
            .fold(subtle::Choice::from(0), |found, hash| {
                found | hash.ct_eq(certificate.thumbprint_bytes())
            });
        bool::from(found)
    }
}
