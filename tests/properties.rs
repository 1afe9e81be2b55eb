//! Properties that must hold for every input, not just the examples of the other tests:
//! distinguished names print and parse back; every proxy format carries a certificate
//! through unchanged; no header value makes the layer answer 5xx; thumbprints tell
//! certificates apart exactly when their DER differs.
//!
//! Case counts are modest (CI runs this on every submission); for a longer search run
//! `PROPTEST_CASES=5000 cargo test --test properties`.

#[path = "common/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::body::{Body, to_bytes};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use mtls_bound_token::cert::{DistinguishedName, HeaderFormat, ProxyCertificate};
use mtls_bound_token::{
    ClientCertificateSource, ClientIdentity, ConnectionInfo, MtlsBoundTokenLayer, PeerCertificate,
};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use pki::{Ca, Leaf, SigningKey, Subject};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tower::{Layer, ServiceExt};

const ISSUER: &str = "https://as.props.test";
const AUDIENCE: &str = "https://api.props.test";
/// The proxy: requests come from it in every test here.
const PROXY: &str = "127.0.0.1:40000";

/// `default` cases, or `PROPTEST_CASES` when set (`Config::with_cases` alone would
/// ignore it).
fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    Config::with_cases(cases)
}

// ---------------------------------------------------------------------------------
// Distinguished names

/// Attribute types as a registration may write them: RFC 4514's short names (in any
/// case), the crate's other short names, dotted OIDs with and without `OID.`.
const ATTRIBUTE_TYPES: &[&str] = &[
    "CN",
    "O",
    "OU",
    "C",
    "L",
    "ST",
    "DC",
    "UID",
    "cn",
    "oU",
    "STREET",
    "SERIALNUMBER",
    "EMAILADDRESS",
    "2.5.4.45",
    "1.3.6.1.4.1.311.60.2.1.3",
    "OID.2.5.4.3",
    "oid.0.9.2342.19200300.100.1.3",
];

/// Characters of a value: RFC 4514's specials, spaces of several kinds, controls, and
/// any Unicode scalar.
fn value_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            ',', '+', '"', '\\', '<', '>', ';', '#', '=', ' ', '\0', '\n'
        ]),
        3 => prop::char::range('a', 'z'),
        1 => prop::sample::select(vec!['\t', '\u{a0}', '\u{3000}', '\u{2028}', '\u{85}']),
        2 => any::<char>(),
    ]
}

/// One attribute value as written into the RFC 4514 text: each character raw (where
/// RFC 4514 allows it), backslash-escaped, or hex-escaped byte by byte.
#[derive(Debug, Clone)]
struct Attribute {
    kind: &'static str,
    value: Vec<(char, u8)>,
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        prop::sample::select(ATTRIBUTE_TYPES),
        prop::collection::vec((value_char(), any::<u8>()), 0..10),
    )
        .prop_map(|(kind, value)| Attribute { kind, value })
}

/// Names of 1 to 4 RDNs, each of 1 to 3 attributes (multi-valued RDNs).
fn name() -> impl Strategy<Value = Vec<Vec<Attribute>>> {
    prop::collection::vec(prop::collection::vec(attribute(), 1..4), 1..5)
}

/// This test's own RFC 4514 writer (not the crate's): specials are always escaped, and
/// so are whitespace and controls (hex), which the crate's reader would otherwise trim
/// or refuse; `choice` picks among the encodings that are allowed.
fn rfc4514(name: &[Vec<Attribute>]) -> String {
    let mut text = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                text.push('+');
            }
            text.push_str(attribute.kind);
            text.push('=');
            for &(c, choice) in &attribute.value {
                let hex = |text: &mut String| {
                    let mut bytes = [0; 4];
                    for byte in c.encode_utf8(&mut bytes).bytes() {
                        text.push_str(&format!("\\{byte:02X}"));
                    }
                };
                if c.is_whitespace() || c.is_control() || choice % 4 == 0 {
                    hex(&mut text);
                } else if ",+\"\\<>;#=".contains(c) {
                    text.push('\\');
                    text.push(c);
                } else {
                    text.push(c);
                }
            }
        }
    }
    text
}

/// The values the name holds, exactly: what the crate's name must hold too.
fn values(name: &[Vec<Attribute>]) -> Vec<Vec<String>> {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| a.value.iter().map(|(c, _)| c).collect())
                .collect()
        })
        .collect()
}

fn parse(text: &str) -> DistinguishedName {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"))
}

proptest! {
    #![proptest_config(cases(512))]

    /// parse(print(dn)) == dn, and print(parse(print(dn))) == print(dn).
    #[test]
    fn distinguished_names_print_and_parse_back(name in name()) {
        let text = rfc4514(&name);
        let dn = parse(&text);
        let printed = dn.to_string();
        let again = parse(&printed);
        prop_assert_eq!(&again, &dn, "{:?} printed as {:?}", text, printed);
        prop_assert_eq!(again.to_string(), printed.clone(), "printing {:?} is not stable", text);
        prop_assert!(!dn.equals_in_other_order(&again));
        // The printed form says exactly what the values are: read back with this test's
        // own writer's inverse, every value is the one generated.
        let read_back = unescape_values(&printed);
        prop_assert_eq!(read_back, values(&name), "{:?} printed as {:?}", text, printed);
    }

    /// The same name in two different escapings is one name.
    #[test]
    fn escaping_does_not_change_a_name(name in name(), seed in any::<u8>()) {
        let rechosen: Vec<Vec<Attribute>> = name
            .iter()
            .map(|rdn| rdn.iter().map(|a| Attribute {
                kind: a.kind,
                value: a.value.iter().map(|&(c, choice)| (c, choice ^ seed)).collect(),
            }).collect())
            .collect();
        prop_assert_eq!(parse(&rfc4514(&name)), parse(&rfc4514(&rechosen)));
    }
}

/// A reader of the crate's printed names for this test only: splits at unescaped `,`
/// and `+`, drops each type, undoes `\c` and `\XX`. Enough for what the crate writes
/// (its printed values are strings, never `#hex`, for the names generated here).
fn unescape_values(printed: &str) -> Vec<Vec<String>> {
    let mut rdns = vec![vec![]];
    let mut bytes: Vec<u8> = Vec::new();
    let mut in_value = false;
    let mut chars = printed.char_indices().peekable();
    let finish = |bytes: &mut Vec<u8>| String::from_utf8(std::mem::take(bytes)).expect("UTF-8");
    while let Some((i, c)) = chars.next() {
        match c {
            '=' if !in_value => in_value = true,
            _ if !in_value => {}
            '\\' => {
                let (_, next) = chars.next().expect("an escape is complete");
                let hex = printed.get(i + 1..i + 3).filter(|h| {
                    h.bytes().all(|b| b.is_ascii_hexdigit()) && next.is_ascii_hexdigit()
                });
                match hex {
                    Some(pair) => {
                        chars.next();
                        bytes.push(u8::from_str_radix(pair, 16).expect("hex"));
                    }
                    None => bytes.extend_from_slice(next.to_string().as_bytes()),
                }
            }
            ',' | '+' => {
                let value = finish(&mut bytes);
                rdns.last_mut().expect("an RDN").push(value);
                if c == ',' {
                    rdns.push(vec![]);
                }
                in_value = false;
            }
            c => bytes.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    rdns.last_mut().expect("an RDN").push(finish(&mut bytes));
    rdns
}

// ---------------------------------------------------------------------------------
// Proxy formats

/// Certificates made once (key generation is too slow for every case): clients with
/// subjects and SANs that stress the encodings, some issued by an intermediate.
struct Pki {
    root: Ca,
    intermediate: Ca,
    /// Each client with its chain: the leaf, then its issuers up to the root.
    clients: Vec<(Leaf, Vec<Vec<u8>>, Vec<String>)>,
    key: SigningKey,
}

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let root = Ca::root("Props Root CA");
    let intermediate = root.intermediate("Props Issuing CA");
    let subjects = [
        Subject::cn("plain"),
        Subject {
            org: Some("Example, \"Inc\"".into()),
            dns: vec!["a.example".into(), "b.example".into()],
            ..Subject::cn("quote\" comma, plus+ semicolon;")
        },
        Subject {
            uri: vec!["spiffe://example.org/ns/a/sa/b".into()],
            ip: vec!["10.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            ..Subject::cn(" leading and trailing ")
        },
        Subject {
            email: vec!["unicode@example.org".into()],
            ..Subject::cn("ünïcødé ✓ 中文")
        },
        Subject::cn("#hash=equals\\backslash<>"),
        Subject {
            org: Some("O".into()),
            dns: vec!["*.wild.example".into()],
            ..Subject::cn("x")
        },
        Subject::cn("via the intermediate"),
        Subject {
            uri: vec!["urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66".into()],
            ..Subject::cn("also via the intermediate")
        },
    ];
    let clients = subjects
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            let (leaf, issuers) = if i < 6 {
                (root.client(subject), vec![root.cert_pem.clone()])
            } else {
                (
                    intermediate.client(subject),
                    vec![intermediate.cert_pem.clone(), root.cert_pem.clone()],
                )
            };
            let mut chain = vec![leaf.cert_der.clone()];
            chain.extend(issuers.iter().map(|pem| der_of(pem)));
            let mut pems = vec![leaf.cert_pem.clone()];
            pems.extend(issuers);
            (leaf, chain, pems)
        })
        .collect();
    Pki {
        root,
        intermediate,
        clients,
        key: SigningKey::es256("k"),
    }
});

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM")
        .to_vec()
}

/// nginx's `$ssl_client_escaped_cert` and Envoy's PEM: all but unreserved escaped.
const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The AWS ALB leaves `+`, `=` and `/` unescaped as well.
const ALB_KEEPS: &AsciiSet = &URL_UNRESERVED.remove(b'+').remove(b'=').remove(b'/');

/// How a proxy writes a certificate, with the choices a deployment has.
#[derive(Debug, Clone)]
struct Encoding {
    format: HeaderFormat,
    client: usize,
    /// Certificates sent, leaf first, where the format carries a chain.
    chain_len: usize,
    /// HAProxy `%{+Q}`, Traefik 2's escaping, Envoy's `Chain` rather than `Cert`.
    variant: bool,
    /// RFC 9440: `Client-Cert-Chain` split over this many field lines at most.
    lines: usize,
    /// XFCC: a hop before ours (the last element is the one that counts).
    earlier_hop: Option<usize>,
}

fn encoding() -> impl Strategy<Value = Encoding> {
    (
        prop::sample::select(HeaderFormat::ALL.to_vec()),
        0..8usize,
        1..=3usize,
        any::<bool>(),
        1..=3usize,
        prop::option::of(0..8usize),
    )
        .prop_map(
            |(format, client, chain_len, variant, lines, earlier_hop)| Encoding {
                format,
                client,
                chain_len,
                variant,
                lines,
                earlier_hop,
            },
        )
}

impl Encoding {
    /// The leaf and what of its chain is sent.
    fn chain(&self) -> (&'static [Vec<u8>], &'static [String]) {
        let (_, chain, pems) = &PKI.clients[self.client];
        let n = self.chain_len.min(chain.len());
        (&chain[..n], &pems[..n])
    }

    /// Whether the format carries more than the leaf.
    fn carries_chain(&self) -> bool {
        matches!(
            self.format,
            HeaderFormat::Traefik | HeaderFormat::AwsAlb | HeaderFormat::Rfc9440
        ) || (self.format == HeaderFormat::Xfcc && self.variant)
    }

    /// The headers the proxy sends, as tests/proxy_headers.rs crafts each format.
    fn headers(&self) -> HeaderMap {
        let (chain, pems) = self.chain();
        let (chain, pems) = if self.carries_chain() {
            (chain, pems)
        } else {
            (&chain[..1], &pems[..1])
        };
        let b64: Vec<String> = chain.iter().map(|der| STANDARD.encode(der)).collect();
        let pem: String = pems.concat();
        let escaped = |pem: &str| utf8_percent_encode(pem, URL_UNRESERVED).to_string();
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: String| {
            headers.append(
                HeaderName::try_from(name).expect("a header name"),
                HeaderValue::try_from(value).expect("a header value"),
            );
        };
        let name = self.format.default_header();
        let name = name.as_str();
        match self.format {
            HeaderFormat::Nginx => add(name, escaped(&pems[0])),
            HeaderFormat::Xfcc => {
                let hash = hex_sha256(&chain[0]);
                let ours = if self.variant {
                    format!("By=spiffe://props;Hash={hash};Chain=\"{}\"", escaped(&pem))
                } else {
                    format!(
                        "By=spiffe://props;Hash={hash};Cert=\"{}\";Subject=\"CN=ignored\";URI=;DNS=x.example",
                        escaped(&pems[0])
                    )
                };
                let value = match self.earlier_hop {
                    Some(other) => {
                        let (leaf, _, _) = &PKI.clients[other];
                        format!(
                            "By=spiffe://outer;Hash={};Cert=\"{}\",{ours}",
                            hex_sha256(&leaf.cert_der),
                            escaped(&leaf.cert_pem)
                        )
                    }
                    None => ours,
                };
                add(name, value);
            }
            HeaderFormat::Rfc9440 => {
                add(name, format!(":{}:", b64[0]));
                let items: Vec<String> = b64[1..].iter().map(|b| format!(":{b}:")).collect();
                if !items.is_empty() {
                    let per_line = items.len().div_ceil(self.lines);
                    for line in items.chunks(per_line) {
                        add("client-cert-chain", line.join(", "));
                    }
                }
            }
            HeaderFormat::Traefik => {
                let value = b64.join(",");
                add(
                    name,
                    if self.variant {
                        utf8_percent_encode(&value, URL_UNRESERVED).to_string()
                    } else {
                        value
                    },
                );
            }
            HeaderFormat::Haproxy => add(
                name,
                if self.variant {
                    format!("\"{}\"", b64[0])
                } else {
                    b64[0].clone()
                },
            ),
            HeaderFormat::Caddy => add(name, b64[0].clone()),
            HeaderFormat::AwsAlb => add(name, utf8_percent_encode(&pem, ALB_KEEPS).to_string()),
            other => panic!("no encoder for {other}: add one here"),
        }
        headers
    }
}

fn hex_sha256(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn trusting(format: HeaderFormat) -> ProxyCertificate {
    ProxyCertificate::builder(format)
        .trusted_proxy_addr(proxy().ip())
        .build()
        .expect("a proxy source")
}

/// One source per format, built once: as a server keeps it, cache and all.
static SOURCES: LazyLock<Vec<(HeaderFormat, ProxyCertificate)>> = LazyLock::new(|| {
    HeaderFormat::ALL
        .into_iter()
        .map(|format| (format, trusting(format)))
        .collect()
});

fn source(format: HeaderFormat) -> &'static ProxyCertificate {
    &SOURCES
        .iter()
        .find(|(f, _)| *f == format)
        .expect("every format")
        .1
}

fn proxy() -> SocketAddr {
    PROXY.parse().expect("an address")
}

fn from_proxy() -> http::Extensions {
    let mut extensions = http::Extensions::new();
    extensions.insert(axum::extract::ConnectInfo(ConnectionInfo::new(
        proxy(),
        None,
    )));
    extensions
}

proptest! {
    #![proptest_config(cases(256))]

    /// What the proxy encodes is what the layer reads: the same DER, thumbprint and
    /// subject, and for the formats that carry one, the same chain.
    #[test]
    fn every_format_carries_the_certificate_unchanged(encoding in encoding()) {
        let headers = encoding.headers();
        let (chain, _) = encoding.chain();
        let read = source(encoding.format)
            .client_certificate(&headers, &from_proxy())
            .unwrap_or_else(|e| panic!("{encoding:?}: {e}"))
            .unwrap_or_else(|| panic!("{encoding:?}: no certificate"));
        let expected = PeerCertificate::from_der(&chain[0]).expect("the leaf");
        prop_assert_eq!(read.der(), Some(&chain[0][..]), "{:?}", encoding);
        prop_assert_eq!(read.thumbprint(), pki::thumbprint(&chain[0]));
        prop_assert_eq!(read.thumbprint(), expected.thumbprint());
        prop_assert_eq!(read.subject(), expected.subject());
        prop_assert_eq!(read.san_dns(), expected.san_dns());
        prop_assert_eq!(read.san_uri(), expected.san_uri());
        prop_assert_eq!(read.san_ip(), expected.san_ip());
        if encoding.carries_chain() && encoding.format != HeaderFormat::Xfcc {
            prop_assert_eq!(read.chain_der(), &chain[1..], "{:?}", encoding);
        }
    }
}

// ---------------------------------------------------------------------------------
// No header value makes the layer fail

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// A token for each client, bound to its certificate.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    PKI.clients
        .iter()
        .map(|(leaf, _, _)| {
            PKI.key
                .sign(&pki::claims(ISSUER, AUDIENCE, "c", "read", Some(leaf)))
        })
        .collect()
});

/// The status the layer (reading `format`'s header from the proxy) answers, and the
/// thumbprint the handler saw when it was reached.
fn through_layer(format: HeaderFormat, headers: HeaderMap) -> (StatusCode, String) {
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(pki::jwks(&[&PKI.key]))
        .certificate_source(trusting(format))
        .build()
        .expect("a layer");
    let service = layer.layer(tower::service_fn(|request: Request<Body>| async move {
        let identity = request.extensions().get::<ClientIdentity>().cloned();
        let thumbprint = identity
            .and_then(|i| i.thumbprint().map(str::to_owned))
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(thumbprint.into_response())
    }));
    let mut request = Request::get("/").body(Body::empty()).expect("a request");
    *request.headers_mut() = headers;
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(ConnectionInfo::new(
            proxy(),
            None,
        )));
    RUNTIME.block_on(async {
        let response = service
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

/// Byte edits: at a position (modulo the length), flip, insert or delete.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    // Half unedited, so that valid headers and tokens meet often enough to reach 200.
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec((any::<usize>(), 0..3u8, any::<u8>()), 1..4),
    ]
}

fn edit(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        let at = at % (bytes.len() + 1);
        match op {
            0 if at < bytes.len() => bytes[at] ^= byte | 1,
            1 => bytes.insert(at, byte),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
    bytes
}

/// A certificate header: arbitrary bytes, or a real encoding with a few bytes edited.
fn certificate_header() -> impl Strategy<Value = (Encoding, Vec<u8>)> {
    (
        encoding(),
        edits(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(encoding, edits, arbitrary, random)| {
            let value = if arbitrary {
                random
            } else {
                let headers = encoding.headers();
                let first = headers
                    .get(encoding.format.default_header())
                    .expect("the header")
                    .as_bytes()
                    .to_vec();
                edit(first, &edits)
            };
            (encoding, value)
        })
}

/// An `Authorization` value: arbitrary bytes, or a real token (of the client whose
/// certificate the header carries, or of any client), edited or not.
#[derive(Debug, Clone)]
enum Authorization {
    Random(Vec<u8>),
    Token {
        client: Option<usize>,
        edits: Vec<(usize, u8, u8)>,
    },
}

fn authorization() -> impl Strategy<Value = Authorization> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Authorization::Random),
        (prop::option::of(0..8usize), edits())
            .prop_map(|(client, edits)| Authorization::Token { client, edits }),
    ]
}

impl Authorization {
    /// The value, and the client whose certificate it may pass with (an unedited token).
    fn value(&self, header_client: usize) -> (Vec<u8>, Option<usize>) {
        match self {
            Self::Random(bytes) => (bytes.clone(), None),
            Self::Token { client, edits } => {
                let client = client.unwrap_or(header_client);
                let token = format!("Bearer {}", TOKENS[client]).into_bytes();
                let edited = edit(token.clone(), edits);
                let valid = (edited == token).then_some(client);
                (edited, valid)
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// 200, 400, 401 or 403, and never 5xx nor a panic; 200 only with the certificate
    /// the token is bound to.
    #[test]
    fn no_header_value_makes_the_layer_fail(
        (encoding, certificate) in certificate_header(),
        authorization in authorization(),
    ) {
        let (authorization, client) = authorization.value(encoding.client);
        let mut headers = HeaderMap::new();
        // A value that is no header value never reaches a service.
        if let Ok(value) = HeaderValue::from_bytes(&certificate) {
            headers.insert(encoding.format.default_header(), value);
        }
        if let Ok(value) = HeaderValue::from_bytes(&authorization) {
            headers.insert(header::AUTHORIZATION, value);
        }
        let (status, thumbprint) = through_layer(encoding.format, headers);
        prop_assert!(
            matches!(status.as_u16(), 200 | 400 | 401 | 403),
            "{} for {:?} / {:?}", status, encoding, String::from_utf8_lossy(&authorization)
        );
        if status == StatusCode::OK {
            let client = client.expect("200 for an edited or random token");
            prop_assert_eq!(thumbprint, PKI.clients[client].0.thumbprint.clone());
        }
    }
}

// ---------------------------------------------------------------------------------
// Thumbprints

/// A client's DER with a few bytes flipped: in the signature (the last bytes), where
/// the result stays a well-formed certificate, or anywhere.
fn mutated_der() -> impl Strategy<Value = Vec<u8>> {
    (
        0..8usize,
        prop::collection::vec((any::<bool>(), any::<usize>(), 1..=255u8), 0..3),
    )
        .prop_map(|(client, flips)| {
            let mut der = PKI.clients[client].0.cert_der.clone();
            let len = der.len();
            for (in_signature, at, mask) in flips {
                let at = if in_signature {
                    len - 1 - at % 24
                } else {
                    at % len
                };
                der[at] ^= mask;
            }
            der
        })
}

proptest! {
    #![proptest_config(cases(512))]

    /// Equal thumbprints exactly when the DER is equal, for certificates that parse.
    #[test]
    fn equal_thumbprints_are_equal_der(
        a in mutated_der(),
        b in mutated_der(),
        same in any::<bool>(),
    ) {
        let b = if same { a.clone() } else { b };
        let (Ok(x), Ok(y)) = (PeerCertificate::from_der(&a), PeerCertificate::from_der(&b)) else {
            return Ok(());
        };
        prop_assert_eq!(x.thumbprint() == y.thumbprint(), a == b);
        prop_assert_eq!(x.thumbprint_bytes() == y.thumbprint_bytes(), a == b);
        prop_assert_eq!(x.thumbprint(), pki::thumbprint(&a));
        prop_assert_eq!(y.thumbprint(), pki::thumbprint(&b));
    }
}

/// The PKI's CAs are used only through their clients' chains; this keeps them named.
#[test]
fn the_pki_chains_are_what_they_say() {
    let root = der_of(&PKI.root.cert_pem);
    let intermediate = der_of(&PKI.intermediate.cert_pem);
    for (i, (_, chain, _)) in PKI.clients.iter().enumerate() {
        assert_eq!(chain.last(), Some(&root), "client {i}");
        assert_eq!(chain.len() == 3, chain[1] == intermediate, "client {i}");
    }
}
