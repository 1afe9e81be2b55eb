//! nginx: `proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;`, the leaf as
//! percent-encoded PEM.

use super::{FormatError, Forwarded, pem_chain, percent_decode};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    Ok(Forwarded::Chain(pem_chain(&percent_decode(value)?)?))
}
