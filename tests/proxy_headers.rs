//! Certificates forwarded by a proxy in a header, for every format, crafted exactly as
//! each proxy writes them: trust by peer address and by the proxy's mTLS certificate,
//! and every malformed value answered with 400, never 200 or 5xx.

mod common;

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::pki::{self, Leaf, Subject};
use common::*;
use http::StatusCode;
use mtls_bound_token::MtlsBoundTokenLayer;
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The proxy's address in these tests; clients from 127.0.0.1 are not trusted.
const PROXY: &str = "127.0.0.2";

/// nginx's `$ssl_client_escaped_cert`: everything but unreserved characters escaped.
const URL_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The AWS ALB leaves `+`, `=` and `/` unescaped as well.
const ALB_KEEPS: &AsciiSet = &URL_UNRESERVED.remove(b'+').remove(b'=').remove(b'/');
/// Go's `url.QueryEscape` (Traefik 2 up to 2.9.3) on base64 text.
const QUERY_ESCAPE: &AsciiSet = URL_UNRESERVED;

/// The header value `format` carries for `chain` (leaf first), as the proxy writes it.
fn encode(format: HeaderFormat, chain: &[&Leaf]) -> String {
    let pem: String = chain.iter().map(|l| l.cert_pem.as_str()).collect();
    let b64 = |l: &Leaf| STANDARD.encode(&l.cert_der);
    match format {
        HeaderFormat::Nginx => utf8_percent_encode(&chain[0].cert_pem, URL_UNRESERVED).to_string(),
        HeaderFormat::Xfcc => format!(
            "By=spiffe://cluster.local/ns/a/sa/b;Hash={};Cert=\"{}\";Subject=\"CN=ignored\";URI=;DNS=x.example",
            hex(&chain[0].cert_der),
            utf8_percent_encode(&chain[0].cert_pem, URL_UNRESERVED)
        ),
        HeaderFormat::Rfc9440 => format!(":{}:", b64(chain[0])),
        HeaderFormat::Traefik => chain.iter().map(|l| b64(l)).collect::<Vec<_>>().join(","),
        HeaderFormat::Haproxy | HeaderFormat::Caddy => b64(chain[0]),
        HeaderFormat::AwsAlb => utf8_percent_encode(&pem, ALB_KEEPS).to_string(),
        _ => unreachable!("a new format needs an encoder here"),
    }
}

fn hex(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn layer(world: &World, source: ProxyCertificate) -> MtlsBoundTokenLayer {
    MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .certificate_source(source)
        .build()
        .unwrap()
}

fn trusting(format: HeaderFormat) -> ProxyCertificate {
    ProxyCertificate::builder(format)
        .trusted_proxy(PROXY.parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn every_format_binds_the_forwarded_certificate() {
    let world = World::new();
    let token = world.token_for_a("read");
    for format in HeaderFormat::ALL {
        let server = serve_plain(app(layer(&world, trusting(format)))).await;
        let header = format.default_header();
        let value = encode(format, &[&world.a]);
        let from_proxy = |value: String, token: String| {
            let header = header.clone();
            async move {
                send_from(
                    PROXY,
                    server.addr,
                    "/whoami",
                    &[
                        (header.as_str(), value.as_bytes()),
                        ("authorization", &bearer(&token)),
                    ],
                )
                .await
            }
        };

        let answer = from_proxy(value.clone(), token.clone()).await;
        assert_eq!(answer.status, StatusCode::OK, "{format}: {}", answer.body);
        assert_eq!(answer.json()["thumbprint"], world.a.thumbprint, "{format}");
        assert_eq!(
            answer.json()["subject"],
            "O=Example,CN=client-a",
            "{format}"
        );

        let stolen = from_proxy(encode(format, &[&world.b]), token.clone()).await;
        assert_eq!(
            stolen.status,
            StatusCode::UNAUTHORIZED,
            "{format}: B's certificate, A's token"
        );

        // The same header straight from a client that is not the proxy is ignored.
        let direct = send_from(
            "127.0.0.1",
            server.addr,
            "/whoami",
            &[
                (header.as_str(), value.as_bytes()),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
        assert_eq!(
            direct.status,
            StatusCode::UNAUTHORIZED,
            "{format}: untrusted peer"
        );
        assert!(
            direct.challenge().contains("presented none"),
            "{format}: {}",
            direct.challenge()
        );

        // From the proxy without the header: no certificate, no fallback.
        let bare = send_from(
            PROXY,
            server.addr,
            "/whoami",
            &[("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(bare.status, StatusCode::UNAUTHORIZED, "{format}: no header");

        let twice = send_from(
            PROXY,
            server.addr,
            "/whoami",
            &[
                (header.as_str(), value.as_bytes()),
                (header.as_str(), value.as_bytes()),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
        assert_eq!(
            twice.status,
            StatusCode::BAD_REQUEST,
            "{format}: header twice"
        );
    }
}

#[tokio::test]
async fn malformed_headers_get_400_never_200() {
    let world = World::new();
    let token = world.token_for_a("read");
    let not_a_cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    for format in HeaderFormat::ALL {
        let server = serve_plain(app(layer(&world, trusting(format)))).await;
        let good = encode(format, &[&world.a]);
        let mut bad: Vec<(&str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("whitespace", b"   ".to_vec()),
            ("garbage", b"garbage!".to_vec()),
            ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
            ("bad percent-encoding", b"%E0%A4%A".to_vec()),
            ("bad base64", b"@@@@".to_vec()),
            (
                "base64 of not a certificate",
                STANDARD.encode(b"hello world, not DER").into_bytes(),
            ),
            (
                "PEM of not a certificate",
                utf8_percent_encode(not_a_cert_pem, URL_UNRESERVED)
                    .to_string()
                    .into_bytes(),
            ),
            ("non-UTF-8", b"\xff\xfe\xfd".to_vec()),
            ("oversized", vec![b'A'; 17 * 1024]),
        ];
        if format == HeaderFormat::Rfc9440 {
            bad.push((
                "byte sequence of not a certificate",
                format!(":{}:", STANDARD.encode(b"nope")).into_bytes(),
            ));
        }
        for (case, value) in bad {
            let answer = send_from(
                PROXY,
                server.addr,
                "/whoami",
                &[
                    (format.default_header().as_str(), &value),
                    ("authorization", &bearer(&token)),
                ],
            )
            .await;
            assert!(
                answer.status == StatusCode::BAD_REQUEST
                    || answer.status == StatusCode::UNAUTHORIZED,
                "{format}, {case}: {} {}",
                answer.status,
                answer.body
            );
            if answer.status == StatusCode::BAD_REQUEST {
                assert!(
                    answer.challenge().contains("invalid_request"),
                    "{format}, {case}"
                );
            }
        }
    }
}

#[tokio::test]
async fn chains_bind_their_leaf() {
    let world = World::new();
    let intermediate = world.ca.intermediate("Issuing CA");
    let c = intermediate.client(&Subject::cn("client-c"));
    let inter_leaf = leaf_of(&intermediate.cert_pem, &intermediate.cert_der);
    let token = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client-c", "read", Some(&c)));
    let chain_cases: Vec<(HeaderFormat, Vec<(String, String)>)> = vec![
        (
            HeaderFormat::Traefik,
            vec![(
                "x-forwarded-tls-client-cert".into(),
                encode(HeaderFormat::Traefik, &[&c, &inter_leaf]),
            )],
        ),
        (
            HeaderFormat::AwsAlb,
            vec![(
                "x-amzn-mtls-clientcert".into(),
                encode(HeaderFormat::AwsAlb, &[&c, &inter_leaf]),
            )],
        ),
        (
            HeaderFormat::Rfc9440,
            vec![
                (
                    "client-cert".into(),
                    format!(":{}:", STANDARD.encode(&c.cert_der)),
                ),
                (
                    "client-cert-chain".into(),
                    format!(":{}:", STANDARD.encode(&intermediate.cert_der)),
                ),
            ],
        ),
        (
            HeaderFormat::Xfcc,
            vec![(
                "x-forwarded-client-cert".into(),
                format!(
                    "Chain=\"{}\"",
                    utf8_percent_encode(&c.chain_pem, URL_UNRESERVED)
                ),
            )],
        ),
    ];
    for (format, headers) in chain_cases {
        let server = serve_plain(app(layer(&world, trusting(format)))).await;
        let mut all: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let auth = bearer(&token);
        all.push(("authorization", &auth));
        let answer = send_from(PROXY, server.addr, "/whoami", &all).await;
        assert_eq!(answer.status, StatusCode::OK, "{format}: {}", answer.body);
        assert_eq!(
            answer.json()["thumbprint"],
            c.thumbprint,
            "{format}: the leaf binds"
        );
    }
}

fn leaf_of(pem: &str, der: &[u8]) -> Leaf {
    Leaf {
        cert_pem: pem.to_owned(),
        cert_der: der.to_vec(),
        key_pem: String::new(),
        chain_pem: pem.to_owned(),
        thumbprint: pki::thumbprint(der),
    }
}

#[tokio::test]
async fn envoy_xfcc_as_envoy_sends_it() {
    let world = World::new();
    let token = world.token_for_a("read");
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    let send = |value: String| {
        let token = token.clone();
        async move {
            send_from(
                PROXY,
                server.addr,
                "/whoami",
                &[
                    ("x-forwarded-client-cert", value.as_bytes()),
                    ("authorization", &bearer(&token)),
                ],
            )
            .await
        }
    };
    let hash_a = hex(&world.a.cert_der);
    let cert_a = utf8_percent_encode(&world.a.cert_pem, URL_UNRESERVED).to_string();

    // Two hops: the last element is the one nearest to us.
    let answer = send(format!(
        "By=spiffe://outer;Hash={};Cert=\"{}\",By=spiffe://inner;Hash={hash_a};Cert=\"{cert_a}\"",
        hex(&world.b.cert_der),
        utf8_percent_encode(&world.b.cert_pem, URL_UNRESERVED)
    ))
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);
    let answer = send(format!(
        "By=spiffe://outer;Hash={hash_a};Cert=\"{cert_a}\",By=spiffe://inner;Hash={}",
        hex(&world.b.cert_der)
    ))
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "the nearest hop is B"
    );

    // Hash alone binds; Subject, URI and DNS describe it. Keys are case-insensitive.
    // The Subject is RFC 2253 text as OpenSSL writes it (`\"` is the DN's own escape),
    // and the identity's subject is that name written as RFC 4514.
    let answer = send(format!("hash={hash_a};subject=\"CN=client-a,O=Example \\\"Inc\\\"\";uri=spiffe://example.org/client-a;dns=client-a.example.org")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["thumbprint"], world.a.thumbprint);
    assert_eq!(body["subject"], r#"CN=client-a,O=Example \"Inc\""#);
    assert_eq!(
        body["san_uri"],
        serde_json::json!(["spiffe://example.org/client-a"])
    );

    for (case, value) in [
        (
            "Hash and Cert disagree",
            format!("Hash={};Cert=\"{cert_a}\"", hex(&world.b.cert_der)),
        ),
        ("Cert twice", format!("Cert=\"{cert_a}\";Cert=\"{cert_a}\"")),
        ("Hash twice", format!("Hash={hash_a};Hash={hash_a}")),
        ("no Cert or Hash", "By=spiffe://x;URI=spiffe://y".to_owned()),
        (
            "unterminated quote",
            format!("Hash={hash_a};Subject=\"CN=x"),
        ),
    ] {
        let answer = send(value).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{case}: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn aws_alb_passthrough_and_verify_modes() {
    let world = World::new();
    let token = world.token_for_a("read");
    let value = encode(HeaderFormat::AwsAlb, &[&world.a]);
    assert!(!value.contains("%2B") && !value.contains("%2F") && !value.contains("%3D"));
    let passthrough = serve_plain(app(layer(&world, trusting(HeaderFormat::AwsAlb)))).await;
    let verify_mode = ProxyCertificate::builder(HeaderFormat::AwsAlb)
        .header("X-Amzn-Mtls-Clientcert-Leaf")
        .trusted_proxy(PROXY.parse().unwrap())
        .build()
        .unwrap();
    let verify = serve_plain(app(layer(&world, verify_mode))).await;
    for (server, header, other) in [
        (
            &passthrough,
            "x-amzn-mtls-clientcert",
            "x-amzn-mtls-clientcert-leaf",
        ),
        (
            &verify,
            "x-amzn-mtls-clientcert-leaf",
            "x-amzn-mtls-clientcert",
        ),
    ] {
        let answer = send_from(
            PROXY,
            server.addr,
            "/whoami",
            &[
                (header, value.as_bytes()),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{header}: {}", answer.body);
        assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);
        // Only the configured mode's header counts: the other one is never read.
        let other_mode = send_from(
            PROXY,
            server.addr,
            "/whoami",
            &[
                (other, value.as_bytes()),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
        assert_eq!(
            other_mode.status,
            StatusCode::UNAUTHORIZED,
            "{other} is not read"
        );
    }
    let server = passthrough;
    // Form-decoding would turn the base64's '+' into ' '; a '+' must stay a '+'.
    let spaced = value.replace('+', " ");
    if spaced != value {
        let answer = send_from(
            PROXY,
            server.addr,
            "/whoami",
            &[
                ("x-amzn-mtls-clientcert", spaced.as_bytes()),
                ("authorization", &bearer(&token)),
            ],
        )
        .await;
        assert_ne!(answer.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn traefik_2_escaped_and_haproxy_quoted_values() {
    let world = World::new();
    let token = world.token_for_a("read");
    let traefik = serve_plain(app(layer(&world, trusting(HeaderFormat::Traefik)))).await;
    let escaped =
        utf8_percent_encode(&encode(HeaderFormat::Traefik, &[&world.a]), QUERY_ESCAPE).to_string();
    let answer = send_from(
        PROXY,
        traefik.addr,
        "/whoami",
        &[
            ("x-forwarded-tls-client-cert", escaped.as_bytes()),
            ("authorization", &bearer(&token)),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    let haproxy = serve_plain(app(layer(&world, trusting(HeaderFormat::Haproxy)))).await;
    let quoted = format!("\"{}\"", encode(HeaderFormat::Haproxy, &[&world.a]));
    let answer = send_from(
        PROXY,
        haproxy.addr,
        "/whoami",
        &[
            ("x-ssl-client-cert", quoted.as_bytes()),
            ("authorization", &bearer(&token)),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn custom_header_name_and_trust_by_proxy_certificate_on_one_tls_listener() {
    let world = World::new();
    let proxy = world.ca.client(&Subject::cn("edge-proxy"));
    let source = ProxyCertificate::builder(HeaderFormat::Caddy)
        .header("X-Client-Der")
        .trusted_proxy_certificate(proxy.thumbprint.clone())
        .build()
        .unwrap();
    let server = serve_tls(app(layer(&world, source)), world.tls()).await;
    let a_value = encode(HeaderFormat::Caddy, &[&world.a]);
    let a_token = world.token_for_a("read");

    // The proxy, recognised by its certificate, forwards A.
    let via_proxy = call(
        &server,
        &world,
        Some(&proxy),
        "/whoami",
        &[
            ("x-client-der", a_value.as_bytes()),
            ("authorization", &bearer(&a_token)),
        ],
    )
    .await;
    assert_eq!(via_proxy.status, StatusCode::OK, "{}", via_proxy.body);
    assert_eq!(via_proxy.json()["thumbprint"], world.a.thumbprint);

    // The proxy without a header: its own certificate is never used for the client.
    let proxy_token = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "proxy",
        "read",
        Some(&proxy),
    ));
    let no_header = call(
        &server,
        &world,
        Some(&proxy),
        "/whoami",
        &[("authorization", &bearer(&proxy_token))],
    )
    .await;
    assert_eq!(no_header.status, StatusCode::UNAUTHORIZED);

    // A direct client uses its handshake certificate; a header it sends is ignored.
    let direct = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[
            (
                "x-client-der",
                encode(HeaderFormat::Caddy, &[&world.b]).as_bytes(),
            ),
            ("authorization", &bearer(&a_token)),
        ],
    )
    .await;
    assert_eq!(direct.status, StatusCode::OK);
    assert_eq!(direct.json()["thumbprint"], world.a.thumbprint);
    let b_token = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client-b",
        "read",
        Some(&world.b),
    ));
    let forged = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[
            (
                "x-client-der",
                encode(HeaderFormat::Caddy, &[&world.b]).as_bytes(),
            ),
            ("authorization", &bearer(&b_token)),
        ],
    )
    .await;
    assert_eq!(
        forged.status,
        StatusCode::UNAUTHORIZED,
        "a direct client cannot claim B"
    );
}

#[test]
fn proxy_configuration_errors_say_what_to_fix() {
    let err = |b: mtls_bound_token::cert::ProxyCertificateBuilder| {
        b.build().expect_err("refused").to_string()
    };
    assert!(err(ProxyCertificate::builder(HeaderFormat::Nginx)).contains(".trusted_proxy("));
    let trusted = || {
        ProxyCertificate::builder(HeaderFormat::Nginx).trusted_proxy("10.0.0.5/32".parse().unwrap())
    };
    assert!(err(trusted().header("bad header")).contains("not a valid HTTP header name"));
    assert!(err(trusted().trusted_proxy_certificate("abc")).contains("x5t#S256"));
    assert!(err(trusted().max_header_len(0)).contains("max_header_len must be at least 1"));
}

#[tokio::test]
async fn trust_by_subject_needs_a_ca_validated_proxy_certificate() {
    let world = World::new();
    let proxy = world.ca.client(&Subject::cn("edge-proxy"));
    let impostor = Leaf::self_signed(&Subject::cn("edge-proxy"));
    let source = || {
        ProxyCertificate::builder(HeaderFormat::Caddy)
            .trusted_proxy_subject("CN=edge-proxy")
            .build()
            .unwrap()
    };
    let a_value = encode(HeaderFormat::Caddy, &[&world.a]);
    let token = world.token_for_a("read");
    let headers: [(&str, &[u8]); 2] = [
        ("x-client-cert", a_value.as_bytes()),
        ("authorization", &bearer(&token)),
    ];

    // CA-validated proxy certificate with the trusted subject: trusted.
    let validated = serve_tls(app(layer(&world, source())), world.tls()).await;
    let answer = call(&validated, &world, Some(&proxy), "/whoami", &headers).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);

    // A listener that lets any certificate through: the same subject, self-signed, is not.
    let any = mtls_bound_token::tls::TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
        .accept_any_client_certificate()
        .build()
        .unwrap();
    let unvalidated = serve_tls(app(layer(&world, source())), any).await;
    let answer = call(&unvalidated, &world, Some(&impostor), "/whoami", &headers).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "self-signed impostor"
    );

    // Nor on a token endpoint's listener, which lets self-signed certificates through.
    let endpoint_tls = mtls_bound_token::client_auth::token_endpoint_tls(
        mtls_bound_token::tls::TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone()),
        world.ca.cert_pem.clone(),
    )
    .unwrap();
    let endpoint = serve_tls(app(layer(&world, source())), endpoint_tls).await;
    let answer = call(&endpoint, &world, Some(&impostor), "/whoami", &headers).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "self-signed impostor on a token endpoint"
    );
    let answer = call(&endpoint, &world, Some(&proxy), "/whoami", &headers).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the CA-issued proxy on a token endpoint"
    );
}

/// Envoy's `Cert` and `Chain` values: PEM, percent-encoded.
fn envoy_pem(pem: &str) -> String {
    utf8_percent_encode(pem, URL_UNRESERVED).to_string()
}

/// One request from the proxy carrying `xfcc` and `token`.
async fn send_xfcc(server: &TestServer, xfcc: &str, token: &str) -> Answer {
    send_from(
        PROXY,
        server.addr,
        "/whoami",
        &[
            ("x-forwarded-client-cert", xfcc.as_bytes()),
            ("authorization", &bearer(token)),
        ],
    )
    .await
}

/// A 400 `invalid_request` whose description contains `reason`.
fn assert_refused(answer: &Answer, reason: &str, case: &str) {
    assert_eq!(
        answer.status,
        StatusCode::BAD_REQUEST,
        "{case}: {}",
        answer.body
    );
    assert!(answer.challenge().contains("invalid_request"), "{case}");
    let description = answer.json()["error_description"].clone();
    assert!(
        description.as_str().is_some_and(|d| d.contains(reason)),
        "{case}: expected a description with {reason:?}, got {description}"
    );
}

/// A token for `client_id` bound to the certificate whose SHA-256 is `hex_hash`.
fn token_bound_to_hash(world: &World, client_id: &str, hex_hash: &str) -> String {
    let mut claims = pki::claims(ISSUER, AUDIENCE, client_id, "read", None);
    let hash = hex::decode(hex_hash).unwrap();
    claims["cnf"] = serde_json::json!({
        "x5t#S256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)
    });
    world.key.sign(&claims)
}

/// Under APPEND_FORWARD, Envoy appends `,<its element>` to the header the client sent.
/// A client that ends its header inside an open quote turns Envoy's quoted values inside
/// out; with a certificate whose subject (or SAN) holds a `"` the quotes balance again,
/// and a lenient parser reads one element carrying the victim's Hash (or Cert). Every
/// such header must be refused: 400, never 200.
#[tokio::test]
async fn xfcc_quote_parity_forgeries_are_refused() {
    let world = World::new();
    // The attacker holds A's stolen token and a certificate of its own.
    let stolen = world.token_for_a("read");
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    let victim = hex(&world.a.cert_der);
    let victim_pem = envoy_pem(&world.a.cert_pem);

    // Envoy with cert and subject details: the attacker's subject is `CN=q"`, which
    // OpenSSL's RFC 2253 writes as `CN=q\"`.
    let quoted_cn = world.ca.client(&Subject::cn("q\""));
    let envoy_cert_subject = format!(
        "By=spiffe://envoy;Hash={};Cert=\"{}\";Subject=\"CN=q\\\"\"",
        hex(&quoted_cn.cert_der),
        envoy_pem(&quoted_cn.cert_pem)
    );
    // Envoy with chain and subject details.
    let envoy_chain_subject = format!(
        "By=spiffe://envoy;Hash={};Chain=\"{}\";Subject=\"CN=q\\\"\"",
        hex(&quoted_cn.cert_der),
        envoy_pem(&quoted_cn.chain_pem)
    );
    // Envoy with uri details only: the attacker's URI SAN holds the quote.
    let quoted_uri = world.ca.client(&Subject {
        uri: vec!["spiffe://q\"".into()],
        ..Subject::cn("q")
    });
    let envoy_uri = format!(
        "By=spiffe://envoy;Hash={};URI=spiffe://q\"",
        hex(&quoted_uri.cert_der)
    );
    // A URI SAN that ends a quote and starts an element naming the victim's Hash.
    let comma_san = format!("q\",Hash={victim}");
    let quote_comma = world.ca.client(&Subject {
        uri: vec![comma_san.clone()],
        ..Subject::cn("q")
    });
    let envoy_uri_comma = format!(
        "By=spiffe://envoy;Hash={};URI={comma_san}",
        hex(&quote_comma.cert_der)
    );

    let cases = [
        // The exact input of the finding.
        (
            "open quote in an unknown key",
            format!("Hash={victim};x=\""),
            &envoy_cert_subject,
            "key Envoy never writes",
        ),
        (
            "open Cert holding the victim's PEM",
            format!("Hash={victim};Cert=\"{victim_pem}"),
            &envoy_cert_subject,
            "closing quote",
        ),
        (
            "open Chain holding the victim's PEM",
            format!("Hash={victim};Chain=\"{victim_pem}"),
            &envoy_chain_subject,
            "closing quote",
        ),
        (
            "open Subject",
            format!("Hash={victim};Subject=\""),
            &envoy_cert_subject,
            "closing quote",
        ),
        (
            "a quote in a key",
            format!("Hash={victim};x\"="),
            &envoy_cert_subject,
            "quote in a key",
        ),
        (
            "open Subject closed by a quote in a URI SAN",
            format!("Hash={victim};Subject=\""),
            &envoy_uri,
            "unescaped ';'",
        ),
        (
            "open URI closed by a quote in a URI SAN",
            format!("Hash={victim};URI=\""),
            &envoy_uri,
            "which Envoy never does",
        ),
        (
            "open By closed by a quote in a URI SAN",
            format!("Hash={victim};By=\""),
            &envoy_uri,
            "which Envoy never does",
        ),
        (
            "open By closed by a URI SAN's quote and comma",
            "By=\"".to_owned(),
            &envoy_uri_comma,
            "which Envoy never does",
        ),
        (
            "open URI closed by a URI SAN's quote and comma",
            "By=x;URI=\"".to_owned(),
            &envoy_uri_comma,
            "which Envoy never does",
        ),
        (
            "open Cert closed by a quote in a URI SAN",
            format!("Hash={victim};Cert=\"{victim_pem}"),
            &envoy_uri,
            "percent-encoded PEM never has",
        ),
        (
            "open Chain closed by a quote in a URI SAN",
            format!("Hash={victim};Chain=\"{victim_pem}"),
            &envoy_uri,
            "percent-encoded PEM never has",
        ),
    ];
    for (case, from_client, envoy, reason) in cases {
        // APPEND_FORWARD: what the client sent, a comma, Envoy's element.
        let forwarded = format!("{from_client},{envoy}");
        let answer = send_xfcc(&server, &forwarded, &stolen).await;
        assert_refused(&answer, reason, case);
    }

    // Envoy's own elements, alone (SANITIZE_SET), still bind their certificate.
    let own_token = |leaf: &Leaf| {
        world
            .key
            .sign(&pki::claims(ISSUER, AUDIENCE, "q", "read", Some(leaf)))
    };
    for (envoy, leaf) in [
        (&envoy_cert_subject, &quoted_cn),
        (&envoy_chain_subject, &quoted_cn),
    ] {
        let answer = send_xfcc(&server, envoy, &own_token(leaf)).await;
        assert_eq!(answer.status, StatusCode::OK, "{envoy}: {}", answer.body);
        assert_eq!(answer.json()["thumbprint"], leaf.thumbprint);
        assert_eq!(answer.json()["subject"], "CN=q\\\"");
    }
    // A quote in an unquoted URI is a quote Envoy did not escape: refused even alone.
    let answer = send_xfcc(&server, &envoy_uri, &own_token(&quoted_uri)).await;
    assert_refused(
        &answer,
        "quote inside an unquoted value",
        "URI SAN with a quote",
    );

    // SANITIZE_SET with uri details: Envoy's element alone, for a certificate whose URI
    // SAN is `"q",Hash=<victim>`. It reads like a quoted SAN in an earlier element and a
    // last element with the victim's Hash, so quoted SANs are refused wherever they are.
    let starts_quoted = world.ca.client(&Subject {
        uri: vec![format!("\"q\",Hash={victim}")],
        ..Subject::cn("q")
    });
    let envoy_alone = format!(
        "By=spiffe://envoy;Hash={};URI=\"q\",Hash={victim}",
        hex(&starts_quoted.cert_der)
    );
    let answer = send_xfcc(&server, &envoy_alone, &stolen).await;
    assert_refused(
        &answer,
        "which Envoy never does",
        "a SAN starting with a quote",
    );
}

/// The identity read from `Subject` is the certificate's real subject: the RFC 2253
/// text's escapes are the DN parser's, never undone before it.
#[tokio::test]
async fn xfcc_subject_means_what_the_certificate_says() {
    let world = World::new();
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    // A CN that is literally backslash, '6', '1', "lice": OpenSSL's RFC 2253 (what
    // Envoy writes) escapes the backslash, `CN=\\61lice`.
    let leaf = world.ca.client(&Subject::cn("\\61lice"));
    let real = mtls_bound_token::PeerCertificate::from_der(&leaf.cert_der).unwrap();
    assert_eq!(real.subject(), "CN=\\\\61lice");
    let token = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "x", "read", Some(&leaf)));

    let hash_only = format!(
        "By=spiffe://envoy;Hash={};Subject=\"CN=\\\\61lice\"",
        hex(&leaf.cert_der)
    );
    let answer = send_xfcc(&server, &hash_only, &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["subject"], real.subject());
    assert_ne!(answer.json()["subject"], "CN=alice");

    // OpenSSL escapes `"` and `;` as well: `O=a\;b,CN=q\"`.
    let leaf_2 = world.ca.client(&Subject {
        org: Some("a;b".into()),
        ..Subject::cn("q\"")
    });
    let real_2 = mtls_bound_token::PeerCertificate::from_der(&leaf_2.cert_der).unwrap();
    let hash_only_2 = format!(
        "By=spiffe://envoy;Hash={};Subject=\"O=a\\;b,CN=q\\\"\"",
        hex(&leaf_2.cert_der)
    );
    let token_2 = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "x", "read", Some(&leaf_2)));
    let answer = send_xfcc(&server, &hash_only_2, &token_2).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{hash_only_2}: {}",
        answer.body
    );
    assert_eq!(answer.json()["subject"], real_2.subject());

    // With Cert, the subject is the certificate's own, whatever Subject says.
    let with_cert = format!(
        "By=spiffe://envoy;Hash={};Cert=\"{}\";Subject=\"CN=\\\\61lice\"",
        hex(&leaf.cert_der),
        envoy_pem(&leaf.cert_pem)
    );
    let answer = send_xfcc(&server, &with_cert, &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["subject"], real.subject());
}

/// Envoy's documentation's XFCC examples (configuration/http/http_conn_man/headers),
/// verbatim: the single-element ones bind by their Hash. The two-element one carries a
/// URI in its first element, which Envoy writes unquoted: its boundaries cannot be known,
/// quoted or not, so it is refused; without the URIs, its last element is the client.
#[tokio::test]
async fn envoy_documented_xfcc_examples() {
    const ONE_URI: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com";
    const TWO_HOPS: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com";
    const URI_AND_DNS: &str = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com";
    let world = World::new();
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    let first = token_bound_to_hash(
        &world,
        "testclient",
        "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688",
    );
    let second = token_bound_to_hash(
        &world,
        "frontend",
        "9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e",
    );

    for (example, dns) in [
        (ONE_URI, serde_json::json!([])),
        (URI_AND_DNS, serde_json::json!(["lyft.com", "www.lyft.com"])),
    ] {
        let answer = send_xfcc(&server, example, &first).await;
        assert_eq!(answer.status, StatusCode::OK, "{example}: {}", answer.body);
        let body = answer.json();
        assert_eq!(
            body["san_uri"],
            serde_json::json!(["http://testclient.lyft.com"])
        );
        assert_eq!(body["san_dns"], dns);
        // openssl's one-line form is not RFC 4514 and cannot be read as it without
        // guessing (`/` and `=` are not escaped in it): the identity has no subject.
        assert_eq!(body["subject"], serde_json::Value::Null, "{example}");
    }

    let answer = send_xfcc(&server, TWO_HOPS, &second).await;
    assert_refused(
        &answer,
        "before the last has a URI or DNS value",
        "the two-hop example",
    );
    // Quoting the first element's URI does not help: Envoy never quotes a SAN, so a
    // quoted one may be a SAN of the last element's client that holds the quotes.
    let quoted = TWO_HOPS.replacen(
        "URI=http://testclient.lyft.com",
        "URI=\"http://testclient.lyft.com\"",
        1,
    );
    let answer = send_xfcc(&server, &quoted, &second).await;
    assert_refused(
        &answer,
        "which Envoy never does",
        "quoted URI in the first hop",
    );

    // Without URI details, two hops split one way: the last element is the client.
    let hops = TWO_HOPS
        .replace(";URI=http://testclient.lyft.com", "")
        .replace(";URI=http://frontend.lyft.com", "");
    let answer = send_xfcc(&server, &hops, &second).await;
    assert_eq!(answer.status, StatusCode::OK, "{hops}: {}", answer.body);
    let answer = send_xfcc(&server, &hops, &first).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "the earlier hop's Hash never binds"
    );
}

/// Every refusal of an XFCC header names its own reason.
#[tokio::test]
async fn xfcc_refusals_say_why() {
    let world = World::new();
    let token = world.token_for_a("read");
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    let hash_a = hex(&world.a.cert_der);
    let cert_a = envoy_pem(&world.a.cert_pem);
    let cert_b = envoy_pem(&world.b.cert_pem);
    let two = format!("{}{}", world.a.cert_pem, world.b.cert_pem);
    for (value, reason) in [
        (format!("Hash={hash_a};;URI=x"), "empty pair"),
        (format!("Hash={hash_a},,Hash={hash_a}"), "empty pair"),
        ("By".to_owned(), "no '='"),
        (format!("Hash={hash_a};SAN=x"), "key Envoy never writes"),
        (
            format!("Hash={hash_a};Subject=\"CN=x"),
            "unterminated quote",
        ),
        (
            format!("Hash={hash_a};Subject=\"CN=x\\\""),
            "unterminated quote",
        ),
        (format!("Hash={hash_a};Subject=\"CN=x\"y"), "closing quote"),
        (
            format!("Hash={hash_a};URI=a\"b"),
            "quote inside an unquoted value",
        ),
        (format!("Hash=\"{hash_a}\"x"), "closing quote"),
        ("Hash=zz".to_owned(), "Hash is not a hex SHA-256"),
        (format!("Hash={hash_a};Hash={hash_a}"), "Hash twice"),
        (format!("Cert=\"{cert_a}\";cert=\"{cert_a}\""), "Cert twice"),
        (
            format!("Chain=\"{cert_a}\";Chain=\"{cert_a}\""),
            "Chain twice",
        ),
        (
            format!("Hash={hash_a};Subject=\"CN=a\";Subject=\"CN=a\""),
            "Subject twice",
        ),
        (
            format!("Cert=\"{cert_a};\""),
            "percent-encoded PEM never has",
        ),
        ("Cert=\"%zz\"".to_owned(), "Cert has a bad percent-encoding"),
        (
            "Chain=\"%zz\"".to_owned(),
            "Chain has a bad percent-encoding",
        ),
        (
            "Cert=\"not-pem\"".to_owned(),
            "Cert holds no PEM certificate",
        ),
        (
            "Chain=\"not-pem\"".to_owned(),
            "Chain holds no PEM certificate",
        ),
        (
            format!("Cert=\"{}\"", envoy_pem(&two)),
            "Cert holds more than one certificate",
        ),
        (
            format!(
                "Cert=\"{}\"",
                envoy_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            ),
            "Cert is not a valid certificate",
        ),
        (
            format!(
                "Chain=\"{}\"",
                envoy_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            ),
            "Chain is not a valid certificate",
        ),
        (
            format!("Hash={};Cert=\"{cert_a}\"", hex(&world.b.cert_der)),
            "Hash and Cert disagree",
        ),
        (
            format!("Hash={};Chain=\"{cert_a}\"", hex(&world.b.cert_der)),
            "Hash and Chain disagree",
        ),
        (
            format!("Cert=\"{cert_b}\";Chain=\"{cert_a}\""),
            "Cert and Chain disagree",
        ),
        (
            "By=spiffe://x;URI=spiffe://y".to_owned(),
            "no Cert, Chain or Hash",
        ),
        (
            format!("By=x;Hash={hash_a};DNS=a.example,Hash={hash_a}"),
            "before the last has a URI or DNS value",
        ),
        (
            format!("Hash={hash_a};URI=\"spiffe://a\""),
            "which Envoy never does",
        ),
        (
            format!("Hash={hash_a};DNS=\"a.example\""),
            "which Envoy never does",
        ),
        (format!("By=\"x\";Hash={hash_a}"), "which Envoy never does"),
        (format!("Hash=\"{hash_a}\""), "which Envoy never does"),
    ] {
        let answer = send_xfcc(&server, &value, &token).await;
        assert_refused(&answer, reason, &value);
    }
}

/// RFC 9440 §2.3: `Client-Cert-Chain` is an sf List and may arrive on several field
/// lines, which are one list joined in order (RFC 9110 §5.3); `Client-Cert` is a
/// singleton.
#[tokio::test]
async fn rfc9440_chain_on_several_field_lines() {
    use axum::Json;
    use axum::routing::get;

    async fn chain(identity: mtls_bound_token::ClientIdentity) -> Json<Vec<String>> {
        let chain = identity.certificate().map_or(&[][..], |c| c.chain_der());
        Json(chain.iter().map(|der| pki::thumbprint(der)).collect())
    }

    let world = World::new();
    let first = world.ca.intermediate("Issuing CA 1");
    let second = first.intermediate("Issuing CA 2");
    let c = second.client(&Subject::cn("client-c"));
    let token = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client-c", "read", Some(&c)));
    let app = Router::new()
        .route("/chain", get(chain))
        .route_layer(layer(&world, trusting(HeaderFormat::Rfc9440)));
    let server = serve_plain(app).await;
    let item = |der: &[u8]| format!(":{}:", STANDARD.encode(der));
    let leaf = item(&c.cert_der);
    let auth = bearer(&token);
    let order = [
        pki::thumbprint(&second.cert_der),
        pki::thumbprint(&first.cert_der),
        pki::thumbprint(&world.ca.cert_der),
    ];

    for lines in [
        vec![
            item(&second.cert_der),
            item(&first.cert_der),
            item(&world.ca.cert_der),
        ],
        vec![
            format!("{}, {}", item(&second.cert_der), item(&first.cert_der)),
            item(&world.ca.cert_der),
        ],
    ] {
        let mut headers: Vec<(&str, &[u8])> =
            vec![("client-cert", leaf.as_bytes()), ("authorization", &auth)];
        headers.extend(lines.iter().map(|l| ("client-cert-chain", l.as_bytes())));
        let answer = send_from(PROXY, server.addr, "/chain", &headers).await;
        assert_eq!(answer.status, StatusCode::OK, "{lines:?}: {}", answer.body);
        assert_eq!(
            answer.json(),
            serde_json::json!(order),
            "in field-line order"
        );
    }

    // Each line is within the bound, together they are not.
    let half = format!(":{}:", "A".repeat(9 * 1024));
    let answer = send_from(
        PROXY,
        server.addr,
        "/chain",
        &[
            ("client-cert", leaf.as_bytes()),
            ("client-cert-chain", half.as_bytes()),
            ("client-cert-chain", half.as_bytes()),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("too large"), "{}", answer.body);

    // Client-Cert itself stays a singleton.
    let answer = send_from(
        PROXY,
        server.addr,
        "/chain",
        &[
            ("client-cert", leaf.as_bytes()),
            ("client-cert", leaf.as_bytes()),
            ("authorization", &auth),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("more than once"), "{}", answer.body);
}

/// A self-signed client certificate valid from `not_before` to `not_after`.
fn valid_between(
    cn: &str,
    not_before: std::time::SystemTime,
    not_after: std::time::SystemTime,
) -> Leaf {
    let since_epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
    let cert = params.self_signed(&key).unwrap();
    leaf_of(&cert.pem(), cert.der())
}

/// A forwarded certificate outside its validity period is refused (401
/// `invalid_token`: the credential is unusable, the request itself is well-formed), in
/// every format, unless `allow_expired_certificates()` says otherwise.
#[tokio::test]
async fn forwarded_certificates_outside_their_validity() {
    use std::time::{Duration, SystemTime};

    let world = World::new();
    let expired = world.ca.client(&Subject {
        expired: true,
        ..Subject::cn("expired")
    });
    let year = Duration::from_secs(365 * 24 * 3600);
    let not_yet = valid_between(
        "not-yet",
        SystemTime::now() + year,
        SystemTime::now() + 2 * year,
    );
    let bound_to = |leaf: &Leaf| {
        world
            .key
            .sign(&pki::claims(ISSUER, AUDIENCE, "c", "read", Some(leaf)))
    };
    for format in HeaderFormat::ALL {
        let header = format.default_header();
        let strict = serve_plain(app(layer(&world, trusting(format)))).await;
        let weakened = ProxyCertificate::builder(format)
            .trusted_proxy(PROXY.parse().unwrap())
            .allow_expired_certificates()
            .build()
            .unwrap();
        let weakened = serve_plain(app(layer(&world, weakened))).await;
        for (leaf, why) in [(&expired, "has expired"), (&not_yet, "is not valid yet")] {
            let value = encode(format, &[leaf]);
            let token = bound_to(leaf);
            let headers: [(&str, &[u8]); 2] = [
                (header.as_str(), value.as_bytes()),
                ("authorization", &bearer(&token)),
            ];
            let answer = send_from(PROXY, strict.addr, "/whoami", &headers).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{format}, {why}");
            assert!(answer.challenge().contains("invalid_token"), "{format}");
            assert!(answer.body.contains(why), "{format}: {}", answer.body);
            let answer = send_from(PROXY, weakened.addr, "/whoami", &headers).await;
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "{format}, {why}: {}",
                answer.body
            );
        }
    }

    // A Hash-only XFCC element carries no validity period: nothing to check.
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Xfcc)))).await;
    let hash_only = format!("Hash={}", hex(&expired.cert_der));
    let answer = send_xfcc(&server, &hash_only, &bound_to(&expired)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// The validity is checked on every request, not only when the header is parsed: a
/// certificate that expires while its parsed form is cached is refused from then on.
#[tokio::test]
async fn a_cached_forwarded_certificate_expires_too() {
    use std::time::{Duration, SystemTime};

    let world = World::new();
    let now = SystemTime::now();
    let leaf = valid_between(
        "short-lived",
        now - Duration::from_secs(60),
        now + Duration::from_secs(3),
    );
    let token = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "c", "read", Some(&leaf)));
    let server = serve_plain(app(layer(&world, trusting(HeaderFormat::Haproxy)))).await;
    let value = encode(HeaderFormat::Haproxy, &[&leaf]);
    let headers: [(&str, &[u8]); 2] = [
        ("x-ssl-client-cert", value.as_bytes()),
        ("authorization", &bearer(&token)),
    ];
    let answer = send_from(PROXY, server.addr, "/whoami", &headers).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    // X.509 times have whole seconds: wait until the end is surely past.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let answer = send_from(PROXY, server.addr, "/whoami", &headers).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(answer.body.contains("has expired"), "{}", answer.body);
}
