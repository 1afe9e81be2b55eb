//! Envoy's XFCC, structure-aware: placeholders for whole certificates, and a client's
//! prefix under APPEND_FORWARD. See `mtls_bound_token_fuzz::proxy::xfcc`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::proxy::xfcc(data);
});
