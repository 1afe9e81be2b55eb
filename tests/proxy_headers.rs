//! Certificates forwarded by a proxy in a header, for every format, crafted exactly as
//! each proxy writes them: trust by peer address and by the proxy's mTLS certificate,
//! and every malformed value answered with 400, never 200 or 5xx.

mod common;

use std::net::SocketAddr;

use axum::Router;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::pki::{self, Leaf, Subject};
use common::*;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
use mtls_bound_token::{ConnectionInfo, MtlsBoundTokenLayer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::net::{TcpListener, TcpSocket};

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

/// A plain-HTTP server, as behind a TLS-terminating proxy.
async fn serve_plain(app: Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ConnectionInfo>(),
        )
        .await
        .unwrap();
    });
    TestServer::new(addr, task)
}

/// One request over plain HTTP from `from` (an address on the loopback network).
async fn send_from(
    from: &str,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(server).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(get_request(path, headers))
        .await
        .unwrap();
    collect(response).await
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
    let answer = send(format!("hash={hash_a};subject=\"CN=client-a,O=Example \\\"Inc\\\"\";uri=spiffe://example.org/client-a;dns=client-a.example.org")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["thumbprint"], world.a.thumbprint);
    assert_eq!(body["subject"], "CN=client-a,O=Example \"Inc\"");
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
