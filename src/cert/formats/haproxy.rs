//! HAProxy: `http-request set-header X-SSL-Client-Cert %[ssl_c_der,base64]`, base64 DER;
//! with `%{+Q}` the value comes in double quotes.

use super::{FormatError, Forwarded, base64_der};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok(Forwarded::Chain(vec![base64_der(value)?]))
}
