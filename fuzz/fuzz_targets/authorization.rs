//! The whole `Authorization` header through `MtlsBoundTokenLayer`. See
//! `mtls_bound_token_fuzz::layer`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::layer::authorization(data);
});
