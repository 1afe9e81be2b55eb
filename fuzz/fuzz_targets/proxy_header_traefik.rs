//! The Traefik certificate header, read from the trusted proxy. See
//! `mtls_bound_token_fuzz::proxy::proxy_header` for what must hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mtls_bound_token::cert::HeaderFormat;

fuzz_target!(|data: &[u8]| {
    mtls_bound_token_fuzz::proxy::proxy_header(HeaderFormat::Traefik, data);
});
