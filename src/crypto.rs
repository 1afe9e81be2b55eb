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

/// Selects jsonwebtoken's backend explicitly, so that a build with both features on
/// (for example `--all-features`) still verifies tokens instead of panicking inside
/// jsonwebtoken. Called when a layer is built; a provider already installed by the
/// application is left in place.
pub(crate) fn install_jwt_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    // An error only means a provider is already installed, which is the application's choice.
    let _ = provider.install_default();
}
