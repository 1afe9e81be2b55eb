//! Traefik `passTLSClientCert` with `pem: true`: `X-Forwarded-Tls-Client-Cert`, the
//! base64 DER of each certificate (PEM without its armour), comma-separated, leaf first.
//! Traefik 3 sends it bare; Traefik 2 up to 2.9.3 percent-escaped it. Base64 has no `%`,
//! so a `%` means the escaped form; a bare `+` is base64 and stays a `+`.

use super::{FormatError, Forwarded, base64_der, percent_decode};

pub(super) fn parse(value: &str) -> Result<Forwarded, FormatError> {
    let decoded;
    let value = if value.contains('%') {
        decoded = String::from_utf8(percent_decode(value)?)
            .map_err(|_| "the certificate header is not ASCII after percent-decoding")?;
        decoded.as_str()
    } else {
        value
    };
    let chain = value
        .split(',')
        .map(base64_der)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Forwarded::Chain(chain))
}
