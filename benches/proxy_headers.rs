//! Per-request cost of reading the client certificate from a trusted proxy's header
//! ([`ProxyCertificate`]), for every [`HeaderFormat`].
//!
//! One criterion group per format, each with two benchmarks of
//! `ClientCertificateSource::client_certificate` on the same request (headers and
//! `ConnectInfo` of a trusted proxy, built outside the timed part), and a floor:
//!
//! - `cold`: a source with its cache turned off, so every call decodes the header,
//!   finds the leaf's validity period and computes its `x5t#S256` thumbprint (subject
//!   and SANs are read only when asked for): a cache miss.
//! - `cache_hit`: a source with the default cache, warmed with one call, so every call
//!   finds the header value's certificate in the cache.
//! - `decode_and_sha256`: the floor, written here without the crate: percent-decoding
//!   and base64 of the value as the proxy wrote it, then SHA-256 of the DER.
//!
//! The client certificate is an RSA-2048 leaf with a few SANs, about 1 KiB of DER (the
//! exact size is printed during setup). Before measuring, each group checks that both
//! sources return that certificate (same thumbprint), that the cached source returns
//! the very same parsed certificate again and the cold one a fresh parse, so the numbers
//! can come neither from a refusal path nor from the wrong side of the cache.
//!
//! Targets: `cold` ≤ 1.5 × `decode_and_sha256`, `cache_hit` ≤ 0.5 µs, for a 1 KiB
//! certificate.
//!
//! Run with `cargo bench --bench proxy_headers`; a single format with e.g.
//! `cargo bench --bench proxy_headers -- nginx/`.

#[path = "../tests/common/pki.rs"]
mod pki;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Extensions, HeaderMap, HeaderValue};
use mtls_bound_token::cert::{ClientCertificateSource, HeaderFormat, ProxyCertificate};
use mtls_bound_token::{ConnectionInfo, PeerCertificate};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use pki::{Ca, Leaf, Subject};
use sha2::{Digest, Sha256};

/// The proxy: the TCP peer of every request, and the only trusted address.
const PROXY_PEER: &str = "127.0.0.2:5000";
const PROXY_NET: &str = "127.0.0.2/32";

/// nginx's `$ssl_client_escaped_cert`: everything but unreserved characters escaped.
const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The AWS ALB leaves `+`, `=` and `/` unescaped as well.
const ALB_KEEPS: &AsciiSet = &URL_UNRESERVED.remove(b'+').remove(b'=').remove(b'/');

/// The header value `format` carries for `leaf`, as the proxy writes it (the same
/// encodings as `encode` in `tests/proxy_headers.rs`, for a single certificate).
fn encode(format: HeaderFormat, leaf: &Leaf) -> String {
    let b64 = STANDARD.encode(&leaf.cert_der);
    let escaped_pem = |keep: &'static AsciiSet| utf8_percent_encode(&leaf.cert_pem, keep);
    match format {
        HeaderFormat::Nginx => escaped_pem(URL_UNRESERVED).to_string(),
        HeaderFormat::Xfcc => format!(
            "By=spiffe://cluster.local/ns/a/sa/b;Hash={};Cert=\"{}\";Subject=\"CN=ignored\";URI=;DNS=x.example",
            hex::encode(Sha256::digest(&leaf.cert_der)),
            escaped_pem(URL_UNRESERVED)
        ),
        HeaderFormat::Rfc9440 => format!(":{b64}:"),
        HeaderFormat::Traefik | HeaderFormat::Haproxy | HeaderFormat::Caddy => b64,
        HeaderFormat::AwsAlb => escaped_pem(ALB_KEEPS).to_string(),
        _ => unreachable!("a new format needs an encoder here"),
    }
}

/// The floor of reading `value`: decoding it to DER the plainest way, and its SHA-256.
fn decode_and_sha256(format: HeaderFormat, value: &str) -> [u8; 32] {
    let der = match format {
        HeaderFormat::Nginx | HeaderFormat::AwsAlb | HeaderFormat::Xfcc => {
            let escaped = match format {
                HeaderFormat::Xfcc => value
                    .split("Cert=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .expect("an XFCC Cert"),
                _ => value,
            };
            let pem = percent_decode_str(escaped)
                .decode_utf8()
                .expect("UTF-8 PEM");
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            STANDARD.decode(body)
        }
        HeaderFormat::Rfc9440 => STANDARD.decode(value.trim_matches(':')),
        _ => STANDARD.decode(value),
    }
    .expect("base64 DER");
    Sha256::digest(&der).into()
}

/// A client certificate of about 1 KiB DER: an RSA-2048 key and a few SANs.
fn client_certificate() -> Leaf {
    let ca = Ca::root("Bench Root CA");
    let subject = Subject {
        cn: "bench-client.payments.example.com".into(),
        org: Some("Example Payments Ltd".into()),
        dns: vec![
            "bench-client.payments.example.com".into(),
            "bench-client.internal.example.net".into(),
            "bench-client.eu-west-1.payments.example.com".into(),
            "bench-client.us-east-1.payments.example.com".into(),
            "bench-client.ap-south-1.payments.example.com".into(),
            "bench-client.sa-east-1.payments.example.com".into(),
        ],
        uri: vec![
            "spiffe://example.com/ns/payments/sa/bench-client".into(),
            "https://payments.example.com/clients/bench-client".into(),
            "urn:example:client:bench".into(),
        ],
        email: vec!["ops@payments.example.com".into()],
        ip: vec![[10, 20, 30, 40].into()],
        ..Subject::default()
    };
    ca.client_rsa(&subject)
}

/// One format's request and its two sources, made before anything is measured.
struct Fixture {
    format: HeaderFormat,
    headers: HeaderMap,
    extensions: Extensions,
    /// Cache off: every call parses.
    cold: ProxyCertificate,
    /// Default cache, warmed by [`Fixture::check`].
    cached: ProxyCertificate,
}

impl Fixture {
    fn new(format: HeaderFormat, leaf: &Leaf) -> Self {
        let value = encode(format, leaf);
        let mut headers = HeaderMap::new();
        headers.insert(
            format.default_header(),
            HeaderValue::try_from(value).expect("header value"),
        );
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(ConnectionInfo::new(
            PROXY_PEER.parse().expect("proxy address"),
            None,
        )));
        let source = |capacity: Option<usize>| {
            let builder = ProxyCertificate::builder(format)
                .trusted_proxy(PROXY_NET.parse().expect("proxy network"));
            match capacity {
                Some(capacity) => builder.cache_capacity(capacity),
                None => builder,
            }
            .build()
            .expect("proxy source")
        };
        Self {
            format,
            headers,
            extensions,
            cold: source(Some(0)),
            cached: source(None),
        }
    }

    /// One request's certificate from `source`, as the layer asks for it.
    fn read(&self, source: &ProxyCertificate) -> Option<Arc<PeerCertificate>> {
        source
            .client_certificate(black_box(&self.headers), black_box(&self.extensions))
            .unwrap_or_else(|e| panic!("{}: header refused: {e:?}", self.format))
    }

    fn floor(&self) -> [u8; 32] {
        let value = self.headers[self.format.default_header()]
            .to_str()
            .expect("ASCII");
        decode_and_sha256(self.format, black_box(value))
    }

    /// Both sources return `leaf`; the cached one from its cache (which this warms),
    /// the cold one parsed anew each time.
    fn check(&self, leaf: &Leaf) {
        let name = self.format;
        let read = |source| {
            let cert = self
                .read(source)
                .unwrap_or_else(|| panic!("{name}: no certificate from a trusted proxy"));
            assert_eq!(cert.thumbprint(), leaf.thumbprint, "{name}: thumbprint");
            cert
        };
        assert_eq!(
            self.floor(),
            *read(&self.cold).thumbprint_bytes(),
            "{name}: the floor decodes the same certificate"
        );
        let (first, second) = (read(&self.cold), read(&self.cold));
        assert!(!Arc::ptr_eq(&first, &second), "{name}: cold source cached");
        let (first, second) = (read(&self.cached), read(&self.cached));
        assert!(Arc::ptr_eq(&first, &second), "{name}: cache missed");
    }
}

fn proxy_headers(c: &mut Criterion) {
    let leaf = client_certificate();
    eprintln!(
        "client certificate: RSA-2048 leaf, {} bytes DER",
        leaf.cert_der.len()
    );
    for format in HeaderFormat::ALL {
        let fixture = Fixture::new(format, &leaf);
        fixture.check(&leaf);
        let header = &fixture.headers[format.default_header()];
        eprintln!("{format}: header value of {} bytes", header.len());

        let mut group = c.benchmark_group(format.name());
        group.bench_function("cold", |b| b.iter(|| fixture.read(&fixture.cold)));
        group.bench_function("cache_hit", |b| b.iter(|| fixture.read(&fixture.cached)));
        group.bench_function("decode_and_sha256", |b| b.iter(|| fixture.floor()));
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = proxy_headers
}
criterion_main!(benches);
