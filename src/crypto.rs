//! Which crypto backend this build uses, chosen once by the crate features.

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "mtls-bound-token needs a crypto backend: enable the `aws-lc-rs` feature (the default) \
     or the `rust-crypto` feature"
);

use std::sync::Arc;

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
