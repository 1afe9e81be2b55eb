//! A TLS client that can lie: it presents any chain and signs with any key, even ones
//! rustls' own client configuration would refuse (a mismatched pair, an X.509 v1
//! certificate).

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{SignatureScheme, SupportedProtocolVersion};

use super::pki::Ca;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// `chain_pem` as the certificate, `key_pem` as the signing key, whether or not the two
/// belong together. rustls' own `with_client_auth_cert` refuses a mismatched pair, which
/// is exactly the pair the attacker needs.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Arc<CertifiedKey> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let key = provider()
        .key_provider
        .load_private_key(key)
        .expect("signing key");
    Arc::new(CertifiedKey::new(chain, key))
}

/// Always presents the same certified key.
#[derive(Debug)]
pub struct Presents(Arc<CertifiedKey>);

impl ResolvesClientCert for Presents {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client trusting `ca` for the server, speaking only `version`.
pub fn client(
    ca: &Ca,
    identity: Option<Arc<CertifiedKey>>,
    version: &'static SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der.clone()))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .expect("version")
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(key) => builder.with_client_cert_resolver(Arc::new(Presents(key))),
        None => builder.with_no_client_auth(),
    })
}
