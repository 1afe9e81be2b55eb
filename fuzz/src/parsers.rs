//! The `dn`, `jwks` and `certificates` targets: parsers of configuration and of
//! certificates, which see what clients send (a certificate, an XFCC `Subject`) or
//! what a registration holds (a JWKS).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mtls_bound_token::cert::DistinguishedName;
use mtls_bound_token::client_auth::{ClientAuthMethod, ClientRegistration};
use mtls_bound_token::tls::TlsServerConfig;
use mtls_bound_token::token::KeySet;
use mtls_bound_token::{MtlsBoundTokenLayer, PeerCertificate};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Fixtures, check_peer_certificate};

/// The `dn` target. A name that parses prints as RFC 4514 text that parses back to the
/// same name and prints the same again; comparisons hold as relations. A `'\n'` splits
/// the input into two names to compare as well.
pub fn dn(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let whole = round_trip(text);
    if let Some((left, right)) = text.split_once('\n') {
        let (left, right) = (round_trip(left), round_trip(right));
        if let (Some(a), Some(b)) = (&left, &right) {
            compare(a, b);
        }
        if let (Some(a), Some(b)) = (&whole, &left) {
            compare(a, b);
        }
    }
}

/// Parses `text`; when it parses, checks printing and reparsing, and returns the name.
pub fn round_trip(text: &str) -> Option<DistinguishedName> {
    let name: DistinguishedName = text.parse().ok()?;
    let printed = name.to_string();
    let reparsed: DistinguishedName = printed.parse().unwrap_or_else(|e| {
        panic!("{text:?} parsed, but its printed form {printed:?} does not: {e}")
    });
    assert_eq!(
        reparsed, name,
        "{text:?} printed as {printed:?}, which parses to another name"
    );
    assert_eq!(
        reparsed.to_string(),
        printed,
        "printing {text:?} is not stable"
    );
    assert_eq!(name.is_empty(), printed.is_empty());
    compare(&name, &reparsed);
    Some(name)
}


/// Equality is an equivalence; "the same RDNs in another order" is symmetric and never
/// holds of equal names.
#[allow(clippy::eq_op, reason = "reflexivity and symmetry are what is checked")]
pub fn compare(a: &DistinguishedName, b: &DistinguishedName) {
    assert!(a == a, "equality is not reflexive: {a}");
    assert_eq!(a == b, b == a, "equality is not symmetric");
    let (ab, ba) = (a.equals_in_other_order(b), b.equals_in_other_order(a));
    assert_eq!(ab, ba, "equals_in_other_order is not symmetric: {a} / {b}");
    assert!(!(ab && a == b), "equal names said to be in another order");
    assert!(!a.equals_in_other_order(a));
}

/// The `jwks` target: as a resource server's key set and as a self-signed client's
/// registration. Neither may panic; what they accept must be usable.
pub fn jwks(data: &[u8]) {
    if let Ok(keys) = KeySet::from_jwks_json(data) {
        assert!(!keys.is_empty(), "an empty key set parsed");
        MtlsBoundTokenLayer::new(crate::ISSUER, crate::AUDIENCE, keys)
            .expect("a parsed key set builds a layer");
    }
    if let Ok(registration) = ClientRegistration::self_signed_tls_client_auth("c", data) {
        assert_eq!(registration.client_id(), "c");
        let ClientAuthMethod::SelfSignedTlsClientAuth(registered) = registration.method() else {
            panic!("a self-signed registration of another method");
        };
        assert!(
            !registered.is_empty(),
            "a registration without certificates"
        );
        // Every registered certificate is the first x5c of one of the document's keys.
        let first_x5c: HashSet<[u8; 32]> = serde_json::from_slice::<Value>(data)
            .ok()
            .and_then(|doc| doc.get("keys")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|key| {
                key.get("x5c")?
                    .as_array()?
                    .first()?
                    .as_str()
                    .map(str::to_owned)
            })
            .filter_map(|b64| STANDARD.decode(b64).ok())
            .map(|der| Sha256::digest(der).into())
            .collect();
        for hash in registered {
            assert!(
                first_x5c.contains(hash),
                "a registered certificate that is no key's x5c[0]"
            );
        }
    }
}

/// The `certificates` target: a client certificate as the TLS layer parses it, and the
/// bytes as each input of `TlsServerConfig` (which reads PEM or DER by content).
pub fn certificates(data: &[u8]) {
    if let Ok(cert) = PeerCertificate::from_der(data) {
        check_peer_certificate(&cert);
        assert_eq!(cert.der(), Some(data), "the DER kept is the DER parsed");
        assert!(cert.chain_der().is_empty());
        // The subject as text is the RFC 4514 form of the subject name.
        let subject: DistinguishedName = cert.subject().parse().unwrap_or_else(|e| {
            panic!(
                "the certificate's subject {:?} does not parse: {e}",
                cert.subject()
            )
        });
        assert_eq!(&subject, cert.subject_name(), "{:?}", cert.subject());
        assert_eq!(cert.subject(), cert.subject_name().to_string());
    }
    let f = Fixtures::get();
    let server = || {
        TlsServerConfig::builder()
            .certificate_chain_pem(f.server.pem.clone())
            .private_key_pem(f.server_key_pem.clone())
            .client_ca_pem(f.ca.pem.clone())
    };
    // Errors are the answer to bad bytes; only a panic is a finding.
    let _ = server().certificate_chain_pem(data.to_vec()).build();
    let _ = server().private_key_pem(data.to_vec()).build();
    let _ = server().client_ca_pem(data.to_vec()).build();
}

/// A CRL file (PEM blocks or DER): read or refused with a reason, never a panic; a file
/// that reads holds at least one CRL.
pub fn crl(data: &[u8]) {
    match mtls_bound_token::trust::ClientTrust::builder()
        .crl(data.to_vec())
        .build()
    {
        Ok(trust) => {
            assert!(trust.crl_count() >= 1, "a CRL file that holds no CRL was read");
            assert!(!trust.validates_chains(), "CRLs alone validate no chain");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}
