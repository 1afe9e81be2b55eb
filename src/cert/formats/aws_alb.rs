//! AWS Application Load Balancer mTLS: `X-Amzn-Mtls-Clientcert` (passthrough mode, the
//! whole chain, leaf first) or `X-Amzn-Mtls-Clientcert-Leaf` (verify mode, the leaf;
//! configure that header name);
//! PEM, URL-encoded except for `+`, `=` and `/`, which the ALB leaves as they are. Never
//! form-decode: a `+` of the base64 must stay a `+`.

use super::{FormatError, Forwarded, pem_chain, percent_decode};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    Ok(Forwarded::Chain(pem_chain(&percent_decode(value)?)?))
}
