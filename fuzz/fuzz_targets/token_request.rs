//! The token endpoint of `examples/token_service`, with a fuzzed `Content-Type` and
//! form body. See `mtls_bound_token_fuzz::token_request` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::token_request::token_request(data);
});
