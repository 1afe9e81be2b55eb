//! A CRL file, as `ClientTrust` reads it. See `mtls_bound_token_fuzz::parsers::crl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::parsers::crl(data);
});
