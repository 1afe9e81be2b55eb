//! The certificate headers proxies send, one module per format.
//!
//! Each format turns the header's text into the DER certificates it carries (leaf
//! first), or an error that says what is wrong with it. Adding a format is one file
//! here and one arm in [`HeaderFormat`].

mod aws_alb;
mod caddy;
mod haproxy;
mod nginx;
mod rfc9440;
mod traefik;
mod xfcc;

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderName;

use super::PeerCertificate;

/// What a format found in the header.
pub(crate) enum Forwarded {
    /// Certificates, DER, leaf first.
    Chain(Vec<Vec<u8>>),
    /// A certificate already parsed (or attested by hash alone), e.g. from Envoy's XFCC.
    Certificate(Box<PeerCertificate>),
}

/// Why a header value was refused; the text goes to the client as `error_description`.
pub(crate) type FormatError = &'static str;

/// How a proxy writes the client certificate into a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderFormat {
    /// nginx `$ssl_client_escaped_cert`: percent-encoded PEM.
    Nginx,
    /// Envoy / Istio `x-forwarded-client-cert`: the last element's (the hop nearest to
    /// the service) `Cert` or `Chain` (percent-encoded PEM) and/or `Hash` (hex SHA-256 of
    /// the DER). A header whose elements could split more than one way is refused.
    Xfcc,
    /// RFC 9440 `Client-Cert: :base64-DER:` (exactly once) and `Client-Cert-Chain` (a
    /// list, on one field line or several).
    Rfc9440,
    /// Traefik `passTLSClientCert` with `pem: true`: base64 DER, comma-separated chain,
    /// bare (Traefik 3) or percent-escaped (Traefik 2 up to 2.9.3).
    Traefik,
    /// HAProxy `%[ssl_c_der,base64]`, optionally in double quotes.
    Haproxy,
    /// AWS ALB mTLS: percent-encoded PEM (`+`, `=`, `/` left as they are). Passthrough
    /// mode sends the chain in `X-Amzn-Mtls-Clientcert` (the default header); for verify
    /// mode set the header to `X-Amzn-Mtls-Clientcert-Leaf`. Only the configured header
    /// is read, so a client cannot slip in the other mode's header.
    AwsAlb,
    /// Caddy `{http.request.tls.client.certificate_der_base64}`: base64 DER.
    Caddy,
}

impl HeaderFormat {
    /// Every format, in the order of the command-line names.
    pub const ALL: [HeaderFormat; 7] = [
        Self::Nginx,
        Self::Xfcc,
        Self::Rfc9440,
        Self::Traefik,
        Self::Haproxy,
        Self::AwsAlb,
        Self::Caddy,
    ];

    /// The name used on command lines: `nginx`, `xfcc`, `rfc9440`, `traefik`, `haproxy`,
    /// `aws-alb`, `caddy`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Xfcc => "xfcc",
            Self::Rfc9440 => "rfc9440",
            Self::Traefik => "traefik",
            Self::Haproxy => "haproxy",
            Self::AwsAlb => "aws-alb",
            Self::Caddy => "caddy",
        }
    }

    /// The header this format is read from unless another is configured.
    pub fn default_header(self) -> HeaderName {
        HeaderName::from_static(match self {
            Self::Nginx | Self::Haproxy => "x-ssl-client-cert",
            Self::Xfcc => "x-forwarded-client-cert",
            Self::Rfc9440 => "client-cert",
            Self::Traefik => "x-forwarded-tls-client-cert",
            Self::AwsAlb => "x-amzn-mtls-clientcert",
            Self::Caddy => "x-client-cert",
        })
    }

    /// A second header read with the first: RFC 9440's `Client-Cert-Chain`, whose field
    /// lines are joined into one list.
    pub(crate) fn companion_header(self) -> Option<HeaderName> {
        match self {
            Self::Rfc9440 => Some(HeaderName::from_static("client-cert-chain")),
            _ => None,
        }
    }

    /// Reads the certificate from the header's value (and the companion header's lines,
    /// joined).
    pub(crate) fn parse(
        self,
        value: &str,
        companion: Option<&str>,
    ) -> Result<Forwarded, FormatError> {
        match self {
            Self::Nginx => nginx::parse(value),
            Self::Xfcc => xfcc::parse(value),
            Self::Rfc9440 => rfc9440::parse(value, companion),
            Self::Traefik => traefik::parse(value),
            Self::Haproxy => haproxy::parse(value),
            Self::AwsAlb => aws_alb::parse(value),
            Self::Caddy => caddy::parse(value),
        }
    }
}

impl fmt::Display for HeaderFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown certificate header format {0:?}: expected one of nginx, xfcc, rfc9440, traefik, haproxy, aws-alb, caddy"
)]
pub struct UnknownHeaderFormat(String);

impl FromStr for HeaderFormat {
    type Err = UnknownHeaderFormat;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownHeaderFormat(name.to_owned()))
    }
}

/// Percent-decoding as URLs have it: `%XX` only. `+` stays `+` (never form decoding);
/// a `%` not followed by two hex digits is an error rather than passed through.
fn percent_decode(value: &str) -> Result<Vec<u8>, FormatError> {
    let mut decoded = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    // Runs between escapes are copied whole.
    while let Some(percent) = memchr::memchr(b'%', rest) {
        decoded.extend_from_slice(&rest[..percent]);
        let digit = |at: usize| rest.get(at).and_then(|d| char::from(*d).to_digit(16));
        let (Some(high), Some(low)) = (digit(percent + 1), digit(percent + 2)) else {
            return Err("the certificate header has a bad percent-encoding");
        };
        // Two hex digits: at most 0xff.
        decoded.push((high * 16 + low) as u8);
        rest = &rest[percent + 3..];
    }
    decoded.extend_from_slice(rest);
    Ok(decoded)
}

/// PEM certificates, leaf first (RFC 7468 `CERTIFICATE` blocks, their base64 lines
/// joined). Text outside them, other blocks included, is ignored. A certificate is
/// public: a plain base64 decoder (not a constant-time one, as for keys) reads it.
fn pem_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, FormatError> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    const NOT_PEM: FormatError = "the certificate header is not valid PEM";
    let mut chain = Vec::new();
    let mut body = Vec::with_capacity(pem.len());
    let mut rest = pem;
    while let Some(start) = memchr::memmem::find(rest, BEGIN) {
        rest = &rest[start + BEGIN.len()..];
        let end = memchr::memmem::find(rest, END).ok_or(NOT_PEM)?;
        body.clear();
        for line in rest[..end].split(u8::is_ascii_whitespace) {
            body.extend_from_slice(line);
        }
        chain.push(STANDARD.decode(&body).map_err(|_| NOT_PEM)?);
        rest = &rest[end + END.len()..];
    }
    if chain.is_empty() {
        return Err("the certificate header holds no PEM certificate");
    }
    Ok(chain)
}

/// Standard base64 (with padding) of one DER certificate.
fn base64_der(value: &str) -> Result<Vec<u8>, FormatError> {
    let value = value.trim_matches(|c: char| c == ' ' || c == '\t');
    if value.is_empty() {
        return Err("the certificate header holds an empty certificate");
    }
    STANDARD
        .decode(value)
        .map_err(|_| "the certificate header is not valid base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in HeaderFormat::ALL {
            assert_eq!(format.name().parse::<HeaderFormat>().unwrap(), format);
        }
        assert!(
            "envoy"
                .parse::<HeaderFormat>()
                .unwrap_err()
                .to_string()
                .contains("aws-alb")
        );
    }

    #[test]
    fn formats_display_as_their_names() {
        for format in HeaderFormat::ALL {
            assert_eq!(format.to_string(), format.name());
        }
        assert_eq!(HeaderFormat::AwsAlb.to_string(), "aws-alb");
    }

    #[test]
    fn base64_certificates_may_be_padded_with_spaces_and_tabs() {
        assert_eq!(base64_der(" \tAQID\t ").unwrap(), [1, 2, 3]);
        assert_eq!(base64_der("\tAQID").unwrap(), [1, 2, 3]);
        assert!(base64_der(" \t ").is_err());
        assert!(base64_der("AQ ID").is_err());
    }

    #[test]
    fn percent_decoding_is_strict_and_keeps_plus() {
        assert_eq!(percent_decode("a%2Bb+c%3D").unwrap(), b"a+b+c=");
        assert_eq!(
            percent_decode("%ff%00%7e%7E").unwrap(),
            [0xff, 0, 0x7e, 0x7e]
        );
        assert_eq!(percent_decode("").unwrap(), b"");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("a%2g").is_err());
        assert!(percent_decode("%%41").is_err());
    }

    #[test]
    fn pem_blocks_are_found_decoded_and_checked() {
        let block =
            |b64: &str| format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
        assert_eq!(
            pem_chain(block("AQID").as_bytes()).unwrap(),
            [vec![1, 2, 3]]
        );
        // Lines joined, other text and blocks ignored, order kept.
        let two = format!(
            "intro\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{}{}",
            block("AQ\r\nID"),
            block("BAUG")
        );
        assert_eq!(
            pem_chain(two.as_bytes()).unwrap(),
            [vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert_eq!(
            pem_chain(b"no pem here").unwrap_err(),
            "the certificate header holds no PEM certificate"
        );
        for bad in [
            "-----BEGIN CERTIFICATE-----\nAQID\n".to_owned(),
            block("AQ!D"),
            block("AQI"),
            format!("{}-----BEGIN CERTIFICATE-----\nAQID", block("AQID")),
            "-----BEGIN CERTIFICATE-----\nAQID\n-----END PRIVATE KEY-----\n".to_owned(),
        ] {
            assert_eq!(
                pem_chain(bad.as_bytes()).unwrap_err(),
                "the certificate header is not valid PEM",
                "{bad:?}"
            );
        }
    }
}
