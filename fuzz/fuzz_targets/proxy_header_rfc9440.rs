//! The RFC 9440 `Client-Cert` header (first line) and `Client-Cert-Chain` lines (the
//! others), read from the trusted proxy. See
//! `mtls_bound_token_fuzz::proxy::proxy_header` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtls_bound_token::cert::HeaderFormat;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::proxy::proxy_header(HeaderFormat::Rfc9440, data);
});
