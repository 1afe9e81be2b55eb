//! Which crypto backend this build uses, chosen once by the crate features.

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "mtls-bound-token needs a crypto backend: enable the `aws-lc-rs` feature (the default) \
     or the `rust-crypto` feature"
);

use std::sync::{Arc, OnceLock};

use rustls::SupportedCipherSuite;
use rustls::crypto::hash::{Hash, HashAlgorithm};
use sha2::Digest;

/// The rustls provider of this build. `aws-lc-rs` wins when both features are on.
pub(crate) fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// Selects jsonwebtoken's process-wide crypto backend to match this crate's features.
///
/// Layers call it when they are built. Call it yourself before signing or verifying
/// with jsonwebtoken elsewhere in the process (a token service, say): with both of
/// jsonwebtoken's backends compiled in (e.g. `--all-features`), jsonwebtoken otherwise
/// panics on first use. A provider the application installed first is left in place.
pub fn install_jwt_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // An error only means a provider is already installed, which is the application's choice.
    let _ = provider.install_default();
}

/// SHA-256 by the TLS backend's own implementation (assembly in aws-lc-rs and ring),
/// clearly faster than a portable one on CPUs without SHA instructions: the thumbprint
/// of every forwarded certificate goes through it.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    static SHA256: OnceLock<Option<&'static dyn Hash>> = OnceLock::new();
    let backend = SHA256.get_or_init(|| {
        rustls_provider().cipher_suites.iter().find_map(|suite| {
            let hash = match suite {
                SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider,
                SupportedCipherSuite::Tls12(suite) => suite.common.hash_provider,
            };
            (hash.algorithm() == HashAlgorithm::SHA256).then_some(hash)
        })
    });
    backend
        .and_then(|hash| <[u8; 32]>::try_from(hash.hash(data).as_ref()).ok())
        .unwrap_or_else(|| sha2::Sha256::digest(data).into())
}
