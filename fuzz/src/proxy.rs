//! The proxy-header targets: a certificate header, in one of the seven formats, read by
//! `ProxyCertificate` through `ClientCertificateSource`, as the layer reads it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
use mtls_bound_token::{AuthError, ClientCertificateSource, PeerCertificate};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{Cert, Fixtures, check_peer_certificate, connect_info, peer};

/// What a source answers for one request.
pub type Outcome = Result<Option<Arc<PeerCertificate>>, AuthError>;

/// RFC 9440's second header, named here rather than asked of the crate (whose
/// `companion_header` is internal).
pub const CLIENT_CERT_CHAIN: &str = "client-cert-chain";

/// The sources of one format: the default (with its cache) and one without a cache,
/// which must answer alike.
struct Sources {
    cached: ProxyCertificate,
    uncached: ProxyCertificate,
}

fn sources(format: HeaderFormat) -> &'static Sources {
    static SOURCES: OnceLock<HashMap<HeaderFormat, Sources>> = OnceLock::new();
    let all = SOURCES.get_or_init(|| {
        let trusting = |cache: usize| {
            move |format| {
                ProxyCertificate::builder(format)
                    .trusted_proxy_addr(peer().ip())
                    .cache_capacity(cache)
                    .build()
                    .expect("a proxy source trusting PEER")
            }
        };
        HeaderFormat::ALL
            .into_iter()
            .map(|format| {
                let sources = Sources {
                    cached: trusting(mtls_bound_token::cert::DEFAULT_CACHE_CAPACITY)(format),
                    uncached: trusting(0)(format),
                };
                (format, sources)
            })
            .collect()
    });
    &all[&format]
}

/// The request headers for fuzzed bytes: one field line per `'\n'`-separated line, so
/// that a line can never hold a newline and several lines exercise repeated headers.
/// The first line is the format's header; for RFC 9440 the others are
/// `Client-Cert-Chain` lines (a list that may come on several lines), for the other
/// formats more lines of the same header. Lines that are no valid header value are
/// left out, as a server would never deliver them. Returns the headers and how many
/// lines of the format's own header they hold.
pub fn headers_from_lines(format: HeaderFormat, data: &[u8]) -> (HeaderMap, usize) {
    let main = format.default_header();
    let chain = HeaderName::from_static(CLIENT_CERT_CHAIN);
    let mut headers = HeaderMap::new();
    let mut main_lines = 0;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let Ok(value) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if i > 0 && format == HeaderFormat::Rfc9440 {
            headers.append(&chain, value);
        } else {
            headers.append(&main, value);
            main_lines += 1;
        }
    }
    (headers, main_lines)
}

/// Reads `headers` as the layer would, and checks what must hold of every answer:
/// asking twice (the second from the cache) or without a cache answers the same; the
/// same headers from a peer that is not the proxy are never read. Returns the answer.
pub fn read(format: HeaderFormat, headers: &HeaderMap) -> Outcome {
    let sources = sources(format);
    let mut extensions = Extensions::new();
    extensions.insert(connect_info(peer(), None));

    let first = sources.cached.client_certificate(headers, &extensions);
    check(&first);
    let cached = sources.cached.client_certificate(headers, &extensions);
    assert_same(&first, &cached, "the cached answer");
    let uncached = sources.uncached.client_certificate(headers, &extensions);
    assert_same(&first, &uncached, "the answer without a cache");

    let mut untrusted = Extensions::new();
    untrusted.insert(connect_info(
        crate::UNTRUSTED_PEER.parse().expect("an address"),
        None,
    ));
    let ignored = sources.cached.client_certificate(headers, &untrusted);
    assert!(
        matches!(ignored, Ok(None)),
        "headers from a peer that is not the proxy must be ignored: {ignored:?}"
    );
    first
}

/// An answer's own invariants: a refusal is the client's fault (400), or, for a
/// forwarded certificate outside its validity period, 401 `invalid_token` (see
/// `ProxyCertificate`: an expired credential, like a token past `exp`); never 5xx. A
/// certificate's thumbprint is the hash of its DER.
pub fn check(outcome: &Outcome) {
    match outcome {
        Ok(Some(cert)) => check_peer_certificate(cert),
        Ok(None) => {}
        Err(error) => check_refusal(error),
    }
}

pub fn check_refusal(error: &AuthError) {
    let status = error.status();
    assert!(!status.is_server_error(), "5xx for a header: {error:?}");
    match status {
        StatusCode::BAD_REQUEST => assert_eq!(error.error_code(), Some("invalid_request")),
        StatusCode::UNAUTHORIZED => assert_eq!(
            error.error_code(),
            Some("invalid_token"),
            "a 401 from a certificate header is only for its validity: {error:?}"
        ),
        _ => panic!("a certificate header answered {status}: {error:?}"),
    }
}

fn assert_same(a: &Outcome, b: &Outcome, what: &str) {
    let same = match (a, b) {
        (Ok(None), Ok(None)) => true,
        (Ok(Some(x)), Ok(Some(y))) => {
            x.thumbprint() == y.thumbprint()
                && x.der() == y.der()
                && x.chain_der() == y.chain_der()
                && x.subject() == y.subject()
                && x.san_dns() == y.san_dns()
                && x.san_uri() == y.san_uri()
        }
        (Err(x), Err(y)) => x == y,
        _ => false,
    };
    assert!(same, "{what} differs: {a:?} then {b:?}");
}

/// The `proxy_header_<format>` targets.
pub fn proxy_header(format: HeaderFormat, data: &[u8]) {
    let (headers, main_lines) = headers_from_lines(format, data);
    let outcome = read(format, &headers);
    match main_lines {
        // From the proxy without the header: no certificate, never the connection's.
        0 => assert!(matches!(outcome, Ok(None)), "no header, {outcome:?}"),
        1 => assert!(!matches!(outcome, Ok(None)), "a header, but no answer"),
        _ => assert!(
            outcome
                .as_ref()
                .is_err_and(|e| e.status() == StatusCode::BAD_REQUEST),
            "a header on {main_lines} lines must be refused: {outcome:?}"
        ),
    }
}

/// nginx's `$ssl_client_escaped_cert` (and Envoy's PEM): all but unreserved escaped.
pub const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The AWS ALB leaves `+`, `=` and `/` unescaped as well.
pub const ALB_KEEPS: &AsciiSet = &URL_UNRESERVED.remove(b'+').remove(b'=').remove(b'/');

/// Percent-encoded PEM, as Envoy writes `Cert` and `Chain` and nginx its header.
pub fn escaped_pem(pem: &str) -> String {
    utf8_percent_encode(pem, URL_UNRESERVED).to_string()
}

/// The header value `format` carries for `chain` (leaf first), as each proxy writes
/// it (as tests/proxy_headers.rs crafts them), and for RFC 9440 the
/// `Client-Cert-Chain` value when the chain has more than the leaf.
pub fn encode(format: HeaderFormat, chain: &[&Cert]) -> (String, Option<String>) {
    let b64 = |c: &Cert| STANDARD.encode(&c.der);
    let pem: String = chain.iter().map(|c| c.pem.as_str()).collect();
    let value = match format {
        HeaderFormat::Nginx => escaped_pem(&chain[0].pem),
        HeaderFormat::Xfcc if chain.len() > 1 => format!(
            "By=spiffe://cluster.local/ns/a/sa/b;Hash={};Chain=\"{}\"",
            chain[0].hash_hex,
            escaped_pem(&pem)
        ),
        HeaderFormat::Xfcc => format!(
            "By=spiffe://cluster.local/ns/a/sa/b;Hash={};Cert=\"{}\";Subject=\"CN=ignored\";URI=;DNS=x.example",
            chain[0].hash_hex,
            escaped_pem(&chain[0].pem)
        ),
        HeaderFormat::Rfc9440 => format!(":{}:", b64(chain[0])),
        HeaderFormat::Traefik => chain.iter().map(|c| b64(c)).collect::<Vec<_>>().join(","),
        HeaderFormat::Haproxy | HeaderFormat::Caddy => b64(chain[0]),
        HeaderFormat::AwsAlb => utf8_percent_encode(&pem, ALB_KEEPS).to_string(),
        other => panic!("no encoder for {other}: add one here"),
    };
    let companion = (format == HeaderFormat::Rfc9440 && chain.len() > 1).then(|| {
        chain[1..]
            .iter()
            .map(|c| format!(":{}:", b64(c)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    (value, companion)
}

/// Short names the `xfcc` target's inputs use for the fixtures' certificates, so that
/// the fuzzer can move whole certificates around in a few bytes: `{C?}` is the
/// certificate as Envoy's `Cert` (percent-encoded PEM), `{H?}` its `Hash`, `{XC}` C's
/// chain as `Chain`.
pub fn placeholders() -> &'static [(&'static str, String)] {
    static PLACEHOLDERS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    PLACEHOLDERS.get_or_init(|| {
        let f = Fixtures::get();
        let mut all = Vec::new();
        for (name, cert) in [
            ("A", &f.a),
            ("B", &f.b),
            ("C", &f.c),
            ("Q", &f.q),
            ("U", &f.u),
        ] {
            all.push((leak(format!("{{C{name}}}")), escaped_pem(&cert.pem)));
            all.push((leak(format!("{{H{name}}}")), cert.hash_hex.clone()));
        }
        all.push(("{XC}", escaped_pem(&f.c_chain_pem)));
        all
    })
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `text` with every placeholder replaced.
pub fn expand(text: &str) -> String {
    placeholders()
        .iter()
        .fold(text.to_owned(), |text, (name, value)| {
            text.replace(name, value)
        })
}

/// Envoy's own element for the certificate of its client, as APPEND_FORWARD appends it
/// after `,` to whatever the client sent, with the certificate it describes. The
/// attacker's certificates are Q (a quote in its subject) and U (a quote in its URI
/// SAN), which is what turns quoted values inside out; B is an ordinary one.
pub fn envoy_elements() -> &'static [(String, &'static Cert)] {
    static ELEMENTS: OnceLock<Vec<(String, &'static Cert)>> = OnceLock::new();
    ELEMENTS.get_or_init(|| {
        let f = Fixtures::get();
        vec![
            (
                r#"By=spiffe://envoy;Hash={HQ};Cert="{CQ}";Subject="CN=q\"""#.to_owned(),
                &f.q,
            ),
            (
                r#"By=spiffe://envoy;Hash={HQ};Chain="{CQ}";Subject="CN=q\"""#.to_owned(),
                &f.q,
            ),
            (r#"By=spiffe://envoy;Hash={HU};URI=spiffe://q""#.to_owned(), &f.u),
            (
                r#"By=spiffe://envoy;Hash={HB};Cert="{CB}";Subject="CN=client-b";URI=spiffe://example.org/b;DNS=b.example"#.to_owned(),
                &f.b,
            ),
            (r#"By=spiffe://envoy;Hash={HB}"#.to_owned(), &f.b),
            (
                r#"By=spiffe://envoy;Hash={HB};Subject="CN=client-b""#.to_owned(),
                &f.b,
            ),
        ]
        .into_iter()
        .map(|(element, cert)| (expand(&element), cert))
        .collect()
    })
}

/// The `xfcc` target. The first byte picks the mode: 0 reads the rest (placeholders
/// expanded) as the whole header; k > 0 reads it as what a client sent, followed by
/// Envoy's element k (APPEND_FORWARD). Then the certificate must be the one Envoy's
/// element names, the nearest hop, or the header refused: a client's prefix that
/// makes any other certificate come out is a forgery of someone else's binding.
pub fn xfcc(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let elements = envoy_elements();
    let mode = usize::from(mode) % (elements.len() + 1);
    let client_part = expand(text);
    let (value, expected) = match mode {
        0 => (client_part, None),
        k => {
            let (element, cert) = &elements[k - 1];
            (format!("{client_part},{element}"), Some(*cert))
        }
    };
    let Ok(value) = HeaderValue::from_str(&value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(HeaderFormat::Xfcc.default_header(), value.clone());
    let outcome = read(HeaderFormat::Xfcc, &headers);
    let cert = match outcome {
        Ok(Some(cert)) => cert,
        Ok(None) => panic!("an XFCC header, but no answer"),
        Err(_) => return,
    };
    match expected {
        Some(expected) => assert_eq!(
            cert.thumbprint(),
            expected.thumbprint,
            "a client's prefix made another certificate than Envoy's element come out: {value:?}"
        ),
        // A certificate attested by hash alone must be a hash the header holds.
        None if cert.der().is_none() => {
            let hash = crate::hex(cert.thumbprint_bytes());
            let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
            assert!(
                text.contains(&hash),
                "an attested hash that is not in the header: {hash}"
            );
        }
        None => {}
    }
}
