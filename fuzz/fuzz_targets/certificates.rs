//! DER certificates, and the bytes as each input of `TlsServerConfig` (PEM or DER).
//! See `mtls_bound_token_fuzz::parsers::certificates`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::parsers::certificates(data);
});
