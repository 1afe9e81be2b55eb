//! A JWKS, as a key set and as a self-signed client's registration. See
//! `mtls_bound_token_fuzz::parsers::jwks`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::parsers::jwks(data);
});
