//! The example resource server as a black box: its command line, routes and JSON, driven
//! by curl and Python `requests`.

mod common;

use common::pki::{self, Ca, Leaf, Subject};
use common::process::*;
use common::*;
use serde_json::{Value, json};

#[test]
fn mtls_contract_with_curl_and_python() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca)]);
    assert!(server.first_line.contains("listening on"));
    let url = |path: &str| format!("https://localhost:{}{path}", server.addr.port());
    let token = world.token_for_a("read");

    let answer = curl(&url("/whoami"), Some(&f.ca), pair(&f.a), Some(&token));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        body,
        json!({
            "thumbprint": world.a.thumbprint,
            "subject": "O=Example,CN=client-a",
            "san_dns": ["client-a.example.org"],
            "san_uri": ["spiffe://example.org/client-a"],
            "san_ip": ["10.1.2.3", "2001:db8::10"],
            "san_email": ["a@example.org"],
            "sub": "client-a",
            "client_id": "client-a",
            "scopes": ["read"],
            "bound": true,
        })
    );

    let stolen = curl(&url("/whoami"), Some(&f.ca), pair(&f.b), Some(&token));
    assert_eq!(stolen.status, 401);
    assert!(
        stolen
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );

    let none = curl(&url("/whoami"), Some(&f.ca), pair(&f.a), None);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer"));

    // RFC 9728 metadata for the audience, open to anyone with a certificate.
    let metadata = curl(
        &url("/.well-known/oauth-protected-resource"),
        Some(&f.ca),
        pair(&f.a),
        None,
    );
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    let metadata: Value = serde_json::from_str(&metadata.body).unwrap();
    assert_eq!(
        metadata,
        json!({
            "resource": AUDIENCE,
            "authorization_servers": [ISSUER],
            "bearer_methods_supported": ["header"],
            "tls_client_certificate_bound_access_tokens": true,
            "scopes_supported": ["admin"],
        })
    );

    let admin = curl(&url("/admin"), Some(&f.ca), pair(&f.a), Some(&token));
    assert_eq!(admin.status, 403);
    assert!(
        admin
            .header("www-authenticate")
            .unwrap()
            .contains("scope=\"admin\"")
    );
    let admin = curl(
        &url("/admin"),
        Some(&f.ca),
        pair(&f.a),
        Some(&world.token_for_a("read admin")),
    );
    assert_eq!(admin.status, 200);

    let health = curl(&url("/healthz"), Some(&f.ca), pair(&f.a), None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(
        curl(&url("/nope"), Some(&f.ca), pair(&f.a), None).status,
        404
    );
    assert_eq!(
        curl(&url("/healthz"), Some(&f.ca), None, None).status,
        0,
        "no certificate, no handshake"
    );

    let py = python_get(&url("/whoami"), &f.ca, pair(&f.a), Some(&token));
    assert_eq!(py["status"], 200, "{py}");
    let body: Value = serde_json::from_str(py["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["thumbprint"], world.a.thumbprint);
    let py = python_get(&url("/whoami"), &f.ca, pair(&f.b), Some(&token));
    assert_eq!(py["status"], 401);
    assert!(
        py["www_authenticate"]
            .as_str()
            .unwrap()
            .contains("invalid_token")
    );
}

#[test]
fn without_client_ca_any_certificate_binds_and_none_is_required() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server_tls(&f, &["--binding", "optional"]);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let own = Leaf::self_signed(&Subject::cn("workload"));
    let own_files = (
        write(dir.path(), "own.pem", &own.cert_pem),
        write(dir.path(), "own.key", &own.key_pem),
    );
    let bound = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "w", "read", Some(&own)));

    let answer = curl(&url, Some(&f.ca), pair(&own_files), Some(&bound));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let py = python_get(&url, &f.ca, pair(&own_files), Some(&bound));
    assert_eq!(py["status"], 200);

    let answer = curl(&url, Some(&f.ca), None, Some(&bound));
    assert_eq!(answer.status, 401, "a bound token without its certificate");
    let unbound = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "w", "read", None));
    let answer = curl(&url, Some(&f.ca), None, Some(&unbound));
    assert_eq!(answer.status, 200);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["bound"], false);
    assert_eq!(body["thumbprint"], Value::Null);
}

#[test]
fn plain_http_with_optional_binding() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server(&f, &["--binding", "optional"]);
    let url = format!("http://127.0.0.1:{}/whoami", server.addr.port());
    let unbound = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "c", "read", None));
    assert_eq!(curl(&url, None, None, Some(&unbound)).status, 200);
    assert_eq!(
        curl(&url, None, None, Some(&world.token_for_a("read"))).status,
        401
    );
}

#[test]
fn configuration_errors_stop_start_up_with_a_message() {
    let world = World::new();
    let f = Files::new(&world);
    let binary = example_binary("resource_server");
    let base = ["--issuer", ISSUER, "--audience", AUDIENCE];
    let garbage = write(f.jwks.parent().unwrap(), "garbage.pem", "not pem");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--jwks", "/nonexistent/jwks.json"],
            "/nonexistent/jwks.json",
        ),
        (vec!["--jwks", s(&f.ca)], "not valid JSON"),
        (
            vec!["--jwks", s(&f.jwks), "--binding", "sometimes"],
            "sometimes",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--tls-cert", s(&f.server_cert)],
            "--tls-key",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--client-ca", s(&f.ca)],
            "--tls-cert",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--tls-cert",
                s(&garbage),
                "--tls-key",
                s(&f.server_key),
            ],
            "garbage.pem",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--tls-cert",
                s(&f.server_cert),
                "--tls-key",
                s(&f.server_key),
                "--client-ca",
                s(&garbage),
            ],
            "garbage.pem",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--listen", "not-an-address"],
            "not-an-address",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--trusted-proxy", "10.0.0.0/8"],
            "--cert-header-format",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--cert-header-format", "nginx"],
            "--trusted-proxy",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--trusted-proxy",
                "nonsense",
                "--cert-header-format",
                "nginx",
            ],
            "nonsense",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--trusted-proxy",
                "127.0.0.1",
                "--cert-header-format",
                "envoy",
            ],
            "envoy",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--trusted-proxy",
                "127.0.0.1",
                "--cert-header-format",
                "nginx",
                "--cert-header",
                "bad header",
            ],
            "bad header",
        ),
        (
            vec!["--jwks", s(&f.jwks), "--crl", s(&f.ca)],
            "--crl needs --tls-cert or --trusted-proxy",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--tls-cert",
                s(&f.server_cert),
                "--tls-key",
                s(&f.server_key),
                "--crl",
                s(&f.ca),
            ],
            "holds no `X509 CRL` PEM block (it holds CERTIFICATE)",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--tls-cert",
                s(&f.server_cert),
                "--tls-key",
                s(&f.server_key),
                "--crl",
                "/nonexistent/clients.crl",
            ],
            "/nonexistent/clients.crl",
        ),
        (
            vec![
                "--jwks",
                s(&f.jwks),
                "--tls-cert",
                s(&f.server_cert),
                "--tls-key",
                s(&f.server_key),
                "--crl-unknown",
                "maybe",
            ],
            "maybe",
        ),
    ];
    for (extra, expected) in cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter());
        let output = run_to_end(&binary, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} must fail");
        assert!(
            stderr.contains(expected),
            "{extra:?}: stderr should name {expected:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let world = World::new();
    let f = Files::new(&world);
    let mut server = start_resource_server_tls(&f, &["--client-ca", s(&f.ca)]);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit}");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the server did not stop within 10 s of SIGTERM");
}

/// The status curl gets for `GET url` with the token and one extra header.
fn curl_with(
    url: &str,
    ca: Option<&std::path::Path>,
    client: Option<(&std::path::Path, &std::path::Path)>,
    token: &str,
    header: &str,
) -> u16 {
    let authorization = format!("Authorization: Bearer {token}");
    curl_request("GET", url, ca, client, &[&authorization, header], None).status
}

#[test]
fn proxy_mode_over_plain_http_and_over_mtls() {
    use base64::Engine;
    let world = World::new();
    let f = Files::new(&world);
    let token = world.token_for_a("read");
    let a_der = base64::engine::general_purpose::STANDARD.encode(&world.a.cert_der);

    let plain = start_resource_server(
        &f,
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--cert-header-format",
            "caddy",
        ],
    );
    let url = format!("http://127.0.0.1:{}/whoami", plain.addr.port());
    assert_eq!(
        curl_with(&url, None, None, &token, &format!("X-Client-Cert: {a_der}")),
        200
    );
    assert_eq!(
        curl_with(&url, None, None, &token, "X-Other: 1"),
        401,
        "no header, no certificate"
    );
    assert_eq!(
        curl_with(&url, None, None, &token, "X-Client-Cert: AAAA"),
        400
    );

    // Over mTLS, the proxy authenticates with its own certificate and forwards A's.
    let tls = start_resource_server_tls(
        &f,
        &[
            "--client-ca",
            s(&f.ca),
            "--trusted-proxy",
            "127.0.0.1/32",
            "--cert-header-format",
            "haproxy",
            "--cert-header",
            "X-Client-Der",
        ],
    );
    let url = format!("https://localhost:{}/whoami", tls.addr.port());
    assert_eq!(
        curl_with(
            &url,
            Some(&f.ca),
            pair(&f.b),
            &token,
            &format!("X-Client-Der: \"{a_der}\"")
        ),
        200
    );
    assert_eq!(
        curl_with(&url, Some(&f.ca), pair(&f.a), &token, "X-Other: 1"),
        401,
        "the proxy's own certificate is never the client's"
    );
}

/// A plain-HTTP authorization server on loopback serving fixed documents by path, for
/// the rest of the test process.
fn serve_documents(docs: impl FnOnce(&str) -> Vec<(String, String)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut app = axum::Router::new();
    for (path, body) in docs(&base) {
        app = app.route(
            &path,
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
    }
    serve_on_a_thread(listener, app);
    base
}

#[test]
fn keys_by_url_and_by_discovery() {
    let world = World::new();
    let f = Files::new(&world);
    let issuer = serve_documents(|base| {
        vec![
            (
                "/.well-known/oauth-authorization-server".into(),
                json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
            ),
            ("/jwks".into(), world.jwks()),
        ]
    });
    let token = world.key.sign(&pki::claims(
        &issuer,
        AUDIENCE,
        "client-a",
        "read",
        Some(&world.a),
    ));
    let tls = |extra: &[&str]| {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            s(&f.server_cert),
            "--tls-key",
            s(&f.server_key),
            "--client-ca",
            s(&f.ca),
            "--issuer",
            &issuer,
            "--audience",
            AUDIENCE,
        ];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let binary = example_binary("resource_server");
    let jwks_url = format!("{issuer}/jwks");
    for keys in [
        vec!["--discovery", "--allow-http-keys"],
        vec!["--jwks", &jwks_url, "--allow-http-keys"],
    ] {
        let args = tls(&keys);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = start(&binary, &args);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        let answer = curl(&url, Some(&f.ca), pair(&f.a), Some(&token));
        assert_eq!(answer.status, 200, "{keys:?}: {}", answer.body);
        let stolen = curl(&url, Some(&f.ca), pair(&f.b), Some(&token));
        assert_eq!(stolen.status, 401, "{keys:?}");
    }

    // Plain http without the option, and a discovery document for another issuer, stop
    // start-up with a message that says what to fix.
    let refused = |extra: &[&str], says: &str| {
        let args = tls(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_to_end(&binary, &args);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    };
    refused(&["--jwks", &jwks_url], "plain http");
    refused(&["--discovery"], "plain http");
    let other = serve_documents(|base| {
        vec![(
            "/.well-known/openid-configuration".into(),
            json!({"issuer": "https://someone.else", "jwks_uri": format!("{base}/jwks")})
                .to_string(),
        )]
    });
    let args = tls(&["--discovery", "--allow-http-keys"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let at = args.iter().position(|a| *a == "--issuer").unwrap();
    args[at + 1] = &other;
    let out = run_to_end(&binary, &args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("instead of"), "{stderr}");
    assert!(stderr.contains("someone.else"), "{stderr}");
    refused(&["--jwks", "x", "--discovery"], "cannot be used with");
}

/// An introspection endpoint on loopback for the rest of the test process: `opaque-a`
/// is active and bound to `thumbprint`, for client `rs` with secret `pw`.
fn serve_introspection(issuer_thumbprint: (&str, &str)) -> String {
    let (issuer, thumbprint) = (
        issuer_thumbprint.0.to_owned(),
        issuer_thumbprint.1.to_owned(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let (issuer, thumbprint) = (issuer.clone(), thumbprint.clone());
            async move {
                // "rs:pw" in Basic.
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Basic cnM6cHc=")
                {
                    return (axum::http::StatusCode::UNAUTHORIZED, String::new());
                }
                let active = body.split('&').any(|field| field == "token=opaque-a");
                let answer = match active {
                    true => json!({
                        "active": true, "iss": issuer, "aud": AUDIENCE, "sub": "client-a",
                        "client_id": "client-a", "scope": "read",
                        "exp": pki::now() + 300, "cnf": {"x5t#S256": thumbprint},
                    }),
                    false => json!({"active": false}),
                };
                (axum::http::StatusCode::OK, answer.to_string())
            }
        }),
    );
    serve_on_a_thread(listener, app);
    url
}

#[test]
fn opaque_tokens_by_introspection_alone_or_beside_jwts() {
    let world = World::new();
    let f = Files::new(&world);
    let introspection = serve_introspection((ISSUER, &world.a.thumbprint));
    let jwt = world.token_for_a("read");
    let credentials = [
        "--introspection-url",
        introspection.as_str(),
        "--introspection-client-id",
        "rs",
        "--introspection-client-secret",
        "pw",
        "--allow-http-keys",
    ];
    let binary = example_binary("resource_server");
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&f.server_cert),
        "--tls-key",
        s(&f.server_key),
        "--client-ca",
        s(&f.ca),
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ];
    let alone: Vec<&str> = base.iter().chain(&credentials).copied().collect();
    let mut beside = alone.clone();
    beside.extend(["--jwks", s(&f.jwks)]);
    for (args, jwt_status) in [(alone, 401), (beside, 200)] {
        let server = start(&binary, &args);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        let answer = curl(&url, Some(&f.ca), pair(&f.a), Some("opaque-a"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["client_id"], "client-a");
        assert_eq!(body["sub"], "client-a");
        assert_eq!(body["scopes"], json!(["read"]));
        assert_eq!(body["bound"], true);
        let stolen = curl(&url, Some(&f.ca), pair(&f.b), Some("opaque-a"));
        assert_eq!(stolen.status, 401);
        let unknown = curl(&url, Some(&f.ca), pair(&f.a), Some("opaque-b"));
        assert_eq!(unknown.status, 401);
        // A JWT is verified by key when --jwks is there; alone, it is introspected (and
        // unknown to this endpoint).
        let answer = curl(&url, Some(&f.ca), pair(&f.a), Some(&jwt));
        assert_eq!(answer.status, jwt_status, "{}", answer.body);
    }

    // Credentials are required, and wrong ones are a 503, not a 401.
    let mut missing: Vec<&str> = base.to_vec();
    missing.extend([
        "--introspection-url",
        introspection.as_str(),
        "--allow-http-keys",
    ]);
    let out = run_to_end(&binary, &missing);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--introspection-client-id"), "{stderr}");
    let mut wrong: Vec<&str> = base.to_vec();
    wrong.extend(credentials);
    let at = wrong.iter().position(|a| *a == "pw").unwrap();
    wrong[at] = "nope";
    let server = start(&binary, &wrong);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    let answer = curl(&url, Some(&f.ca), pair(&f.a), Some("opaque-a"));
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.header("retry-after").as_deref(), Some("5"));
}

#[test]
fn with_or_without_the_token_cache_stolen_tokens_stay_refused() {
    let world = World::new();
    let f = Files::new(&world);
    let token = world.token_for_a("read");
    for extra in [&[][..], &["--no-token-cache"][..]] {
        let mut args = vec!["--client-ca", s(&f.ca)];
        args.extend_from_slice(extra);
        let server = start_resource_server_tls(&f, &args);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        for _ in 0..3 {
            assert_eq!(
                curl(&url, Some(&f.ca), pair(&f.a), Some(&token)).status,
                200
            );
            assert_eq!(
                curl(&url, Some(&f.ca), pair(&f.b), Some(&token)).status,
                401
            );
        }
        let admin = format!("https://localhost:{}/admin", server.addr.port());
        assert_eq!(
            curl(&admin, Some(&f.ca), pair(&f.a), Some(&token)).status,
            403
        );
    }
}

#[test]
fn crls_refuse_revoked_clients_in_the_handshake_and_behind_a_proxy() {
    use base64::Engine;
    use rustls::pki_types::pem::PemObject;
    let world = World::new();
    let f = Files::new(&world);
    let dir = f.dir.path();
    // A PEM CRL of the world's CA revoking b, and the same in DER.
    let crl_pem = world.ca.crl(&[&world.b.cert_der], false);
    let crl = write(dir, "ca.crl", &crl_pem);
    let der = rustls::pki_types::CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes())
        .unwrap();
    let crl_der = dir.join("ca.crl.der");
    std::fs::write(&crl_der, der.as_ref()).unwrap();
    // A second trusted CA, for which no CRL is loaded.
    let other_ca = Ca::root("Other Client CA");
    let other = other_ca.client(&Subject::cn("other"));
    let other_files = f.leaf("other", &other);
    let both = write(
        dir,
        "both.pem",
        &format!("{}{}", world.ca.cert_pem, other_ca.cert_pem),
    );
    let token = |leaf: &Leaf| {
        world
            .key
            .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)))
    };

    for (crl_file, unknown, other_status) in [
        (&crl, None, 0),
        (&crl_der, Some("deny"), 0),
        (&crl, Some("allow"), 200),
    ] {
        let mut args = vec!["--client-ca", s(&both), "--crl", s(crl_file)];
        if let Some(unknown) = unknown {
            args.extend(["--crl-unknown", unknown]);
        }
        let server = start_resource_server_tls(&f, &args);
        let url = format!("https://localhost:{}/whoami", server.addr.port());
        let case = format!("{} {unknown:?}", crl_file.display());
        let a = curl(&url, Some(&f.ca), pair(&f.a), Some(&token(&world.a)));
        assert_eq!(a.status, 200, "{case}: a {}", a.body);
        let b = curl(&url, Some(&f.ca), pair(&f.b), Some(&token(&world.b)));
        assert_eq!(b.status, 0, "{case}: revoked b must fail the handshake");
        let other = curl(&url, Some(&f.ca), pair(&other_files), Some(&token(&other)));
        assert_eq!(other.status, other_status, "{case}: the CA without a CRL");
    }

    // Behind a trusted proxy: the forwarded certificate meets the same CRL.
    let proxied = start_resource_server(
        &f,
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--cert-header-format",
            "rfc9440",
            "--crl",
            s(&crl),
        ],
    );
    let url = format!("http://127.0.0.1:{}/whoami", proxied.addr.port());
    let forward = |leaf: &Leaf| {
        let header = format!(
            "Client-Cert: :{}:",
            base64::engine::general_purpose::STANDARD.encode(&leaf.cert_der)
        );
        let authorization = format!("Authorization: Bearer {}", token(leaf));
        curl_request("GET", &url, None, None, &[&authorization, &header], None)
    };
    assert_eq!(forward(&world.a).status, 200);
    let b = forward(&world.b);
    assert_eq!(b.status, 401, "{}", b.body);
    let challenge = b.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert!(b.body.contains("revoked"), "{}", b.body);
    assert_eq!(
        forward(&other).status,
        401,
        "unknown status is denied by default"
    );
}

/// The value of the first metric line named `name` carrying every label of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_count_what_happened_and_a_soon_expiring_client_is_warned_about_once() {
    let world = World::new();
    let f = Files::new(&world);
    let soon = world.ca.client(&Subject {
        ends_in_days: Some(3),
        ..Subject::cn("soon")
    });
    let soon_files = f.leaf("soon", &soon);
    let stranger = Ca::root("Someone Else's CA").client(&Subject::cn("stranger"));
    let stranger_files = f.leaf("stranger", &stranger);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let mut server = start_resource_server_tls(
        &f,
        &[
            "--client-ca",
            s(&f.ca),
            "--metrics-listen",
            &metrics_addr,
            "--expiry-warning-days",
            "5",
        ],
    );
    let logs = LogLines::follow(&mut server);
    let url = format!("https://localhost:{}/whoami", server.addr.port());
    let token_a = world.token_for_a("read");
    let token_soon = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&soon),
    ));
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.a), Some(&token_a)).status,
        200
    );
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.a), Some(&token_a)).status,
        200
    );
    assert_eq!(curl(&url, Some(&f.ca), pair(&f.a), None).status, 401);
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&f.b), Some(&token_a)).status,
        401
    );
    assert_eq!(
        curl(&url, Some(&f.ca), pair(&stranger_files), Some(&token_a)).status,
        0
    );
    for _ in 0..2 {
        let answer = curl(&url, Some(&f.ca), pair(&soon_files), Some(&token_soon));
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert!(
        logs.wait_for(
            "client certificate expires in",
            0,
            std::time::Duration::from_secs(5)
        ),
        "{}",
        logs.text()
    );
    let warning = logs.text();
    let line = warning
        .lines()
        .find(|line| line.contains("client certificate expires in"))
        .unwrap();
    assert!(line.contains(&soon.thumbprint), "{line}");
    assert!(line.contains("CN=soon"), "{line}");
    assert!(line.contains("days_left"), "{line}");
    assert_eq!(
        logs.count("client certificate expires in"),
        1,
        "once a day: {warning}"
    );

    let scraped = curl(&format!("http://{metrics_addr}/metrics"), None, None, None);
    assert_eq!(scraped.status, 200);
    let text = &scraped.body;
    let requests = "mtls_bound_token_requests_total";
    let count = |labels: &[&str]| metric(text, requests, labels);
    assert_eq!(
        count(&["outcome=\"accepted\"", "reason=\"accepted\""]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        count(&["reason=\"missing_credentials\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        count(&["reason=\"other_certificate\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            text,
            "mtls_bound_token_handshake_failures_total",
            &["cause=\"unknown_ca\""]
        ),
        Some(1.0),
        "{text}"
    );
    // a's token twice, b's attempt with it (verified before the binding fails), soon's
    // token twice: two misses, three hits.
    assert_eq!(
        metric(text, "mtls_bound_token_token_cache_misses_total", &[]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(text, "mtls_bound_token_token_cache_hits_total", &[]),
        Some(3.0),
        "{text}"
    );
    let soonest = metric(
        text,
        "mtls_bound_token_soonest_expiry_timestamp_seconds",
        &["kind=\"server_certificate\""],
    )
    .unwrap_or_else(|| panic!("no expiry gauge: {text}"));
    assert!(
        soonest > 4.0e9,
        "rcgen's default end is far away: {soonest}"
    );
}
