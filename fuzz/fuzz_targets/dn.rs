//! RFC 4514 distinguished names: print, reparse, compare. See
//! `mtls_bound_token_fuzz::parsers::dn`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::parsers::dn(data);
});
