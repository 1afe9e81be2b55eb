//! Caddy: `header_up X-Client-Cert {http.request.tls.client.certificate_der_base64}`,
//! base64 DER of the leaf.

use super::{FormatError, Forwarded, base64_der};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    Ok(Forwarded::Chain(vec![base64_der(value)?]))
}
