//! RFC 8705 §2 client authentication: every matching rule, the spoofing cases, and the
//! token endpoint's TLS handshake policy.

mod common;

use std::sync::Arc;

use common::pki::{self, Ca, Leaf, Subject};
use common::*;
use http::StatusCode;
use mtls_bound_token::PeerCertificate;
use mtls_bound_token::client_auth::{
    ClientAuthError, ClientAuthenticator, ClientRegistration, ExpectedIdentity, token_endpoint_tls,
};
use mtls_bound_token::tls::TlsServerConfig;

fn peer(leaf: &Leaf) -> Arc<PeerCertificate> {
    Arc::new(PeerCertificate::from_der(&leaf.cert_der).unwrap())
}

fn authenticator(ca: &Ca, client: ClientRegistration) -> ClientAuthenticator {
    ClientAuthenticator::builder()
        .client_ca_pem(ca.cert_pem.clone())
        .register(client)
        .build()
        .unwrap()
}

/// Whether `leaf` authenticates as a client registered with `identity`.
fn accepted(ca: &Ca, identity: ExpectedIdentity, leaf: &Leaf) -> bool {
    authenticator(ca, ClientRegistration::tls_client_auth("c", identity))
        .authenticate("c", Some(peer(leaf)))
        .is_ok()
}

fn dn(text: &str) -> ExpectedIdentity {
    ExpectedIdentity::SubjectDn(text.parse().unwrap_or_else(|e| panic!("{text}: {e}")))
}

#[test]
fn subject_dn_compares_names_not_strings() {
    let ca = Ca::root("Clients CA");
    let a = ca.client(&Subject {
        org: Some("Example".into()),
        ..Subject::cn("client-a")
    });
    for (registered, expected) in [
        ("O=Example,CN=client-a", true),
        ("o=Example, cn=client-a", true),
        ("2.5.4.10=Example,2.5.4.3=client-a", true),
        ("O=Example,CN=\\63lient-a", true),
        ("O=Example,CN=  client-a ", true),
        ("O=EXAMPLE,CN=Client-A", true),
        ("CN=client-a,O=Example", false),
        ("O=Example,CN=client-b", false),
        ("CN=client-a", false),
        ("O=Example+CN=client-a", false),
        ("O=Example,CN=client-a,C=US", false),
    ] {
        assert_eq!(
            accepted(&ca, dn(registered), &a),
            expected,
            "registered {registered}"
        );
    }
}

#[test]
fn escaped_characters_and_the_comma_spoof() {
    let ca = Ca::root("Clients CA");
    // A CN that spells out another RDN must not pass for a DN with that RDN.
    let spoof = ca.client(&Subject::cn("evil,O=Example"));
    assert!(!accepted(&ca, dn("CN=evil,O=Example"), &spoof));
    assert!(!accepted(&ca, dn("O=Example,CN=evil"), &spoof));
    assert!(accepted(&ca, dn("CN=evil\\,O=Example"), &spoof));
    assert!(accepted(&ca, dn("CN=evil\\2cO=Example"), &spoof));

    let special = ca.client(&Subject::cn("a+b \"q\" <x>;#"));
    assert!(accepted(
        &ca,
        dn("CN=a\\+b \\\"q\\\" \\<x\\>\\;#"),
        &special
    ));
    assert!(!accepted(&ca, dn("CN=a+UID=b"), &special));
}

#[test]
fn san_matching_by_type() {
    let ca = Ca::root("Clients CA");
    let a = ca.client(&Subject {
        dns: vec!["client-a.example.org".into(), "*.pool.example.org".into()],
        uri: vec![
            "spiffe://example.org/client-a".into(),
            "other.example.org".into(),
        ],
        ip: vec!["10.1.2.3".parse().unwrap(), "2001:db8::10".parse().unwrap()],
        email: vec!["a@example.org".into()],
        ..Subject::cn("dns-only.example.org")
    });
    let cases = [
        (
            ExpectedIdentity::SanDns("client-a.example.org".into()),
            true,
        ),
        (
            ExpectedIdentity::SanDns("CLIENT-A.Example.ORG".into()),
            true,
        ),
        (ExpectedIdentity::SanDns("*.pool.example.org".into()), true),
        (ExpectedIdentity::SanDns("x.pool.example.org".into()), false),
        (
            ExpectedIdentity::SanDns("client-a.example.org.".into()),
            false,
        ),
        (
            ExpectedIdentity::SanDns("dns-only.example.org".into()),
            false,
        ),
        (ExpectedIdentity::SanDns("other.example.org".into()), false),
        (
            ExpectedIdentity::SanUri("spiffe://example.org/client-a".into()),
            true,
        ),
        (
            ExpectedIdentity::SanUri("SPIFFE://example.org/client-a".into()),
            false,
        ),
        (
            ExpectedIdentity::SanUri("client-a.example.org".into()),
            false,
        ),
        (ExpectedIdentity::SanIp("10.1.2.3".parse().unwrap()), true),
        (
            ExpectedIdentity::SanIp("::ffff:10.1.2.3".parse().unwrap()),
            false,
        ),
        (
            ExpectedIdentity::SanIp("2001:0db8:0:0:0:0:0:0010".parse().unwrap()),
            true,
        ),
        (ExpectedIdentity::SanIp("10.1.2.4".parse().unwrap()), false),
        (ExpectedIdentity::SanEmail("a@example.org".into()), true),
        (ExpectedIdentity::SanEmail("A@example.org".into()), false),
        (
            ExpectedIdentity::SanEmail("client-a.example.org".into()),
            false,
        ),
    ];
    for (identity, expected) in cases {
        assert_eq!(
            accepted(&ca, identity.clone(), &a),
            expected,
            "{identity:?}"
        );
    }

    let wildcard_holder = ca.client(&Subject {
        dns: vec!["x.pool.example.org".into()],
        ..Subject::cn("x")
    });
    assert!(!accepted(
        &ca,
        ExpectedIdentity::SanDns("*.pool.example.org".into()),
        &wildcard_holder
    ));
}

#[test]
fn tls_client_auth_needs_the_chain_and_the_client() {
    let ca = Ca::root("Clients CA");
    let other_ca = Ca::root("Other CA");
    let subject = Subject {
        dns: vec!["client-a.example.org".into()],
        ..Subject::cn("client-a")
    };
    let identity = ExpectedIdentity::SanDns("client-a.example.org".into());
    let auth = authenticator(
        &ca,
        ClientRegistration::tls_client_auth("client-a", identity.clone()),
    );
    assert!(
        auth.authenticate("client-a", Some(peer(&ca.client(&subject))))
            .is_ok()
    );

    let err = |r: Result<_, ClientAuthError>| r.err().map(|e| e.error_code());
    let foreign = other_ca.client(&subject);
    assert_eq!(
        err(auth.authenticate("client-a", Some(peer(&foreign)))),
        Some("invalid_client")
    );
    let expired = ca.client(&Subject {
        expired: true,
        ..subject.clone()
    });
    assert_eq!(
        err(auth.authenticate("client-a", Some(peer(&expired)))),
        Some("invalid_client")
    );
    let self_signed = Leaf::self_signed(&subject);
    assert_eq!(
        err(auth.authenticate("client-a", Some(peer(&self_signed)))),
        Some("invalid_client")
    );
    assert_eq!(
        err(auth.authenticate("client-a", None)),
        Some("invalid_client")
    );
    assert_eq!(
        err(auth.authenticate("client-b", Some(peer(&ca.client(&subject))))),
        Some("invalid_client")
    );

    // Intermediates sent with the leaf build the path.
    let issuing = ca.intermediate("Issuing CA");
    let behind = issuing.client(&subject);
    let chain =
        PeerCertificate::from_chain([behind.cert_der.clone(), issuing.cert_der.clone()]).unwrap();
    assert!(auth.authenticate("client-a", Some(Arc::new(chain))).is_ok());
    assert!(
        auth.authenticate("client-a", Some(peer(&behind))).is_err(),
        "without its intermediate"
    );
}

#[test]
fn self_signed_clients_present_a_registered_certificate() {
    let own = Leaf::self_signed(&Subject::cn("workload"));
    let second = Leaf::self_signed(&Subject::cn("workload"));
    let imposter = Leaf::self_signed(&Subject::cn("workload"));
    let registration = ClientRegistration::self_signed_tls_client_auth(
        "client-s",
        pki::x5c_jwks(&[&own, &second]).as_bytes(),
    )
    .unwrap();
    let auth = ClientAuthenticator::builder()
        .register(registration)
        .build()
        .unwrap();
    assert_eq!(
        auth.authenticate("client-s", Some(peer(&own)))
            .unwrap()
            .certificate()
            .thumbprint(),
        own.thumbprint
    );
    assert!(auth.authenticate("client-s", Some(peer(&second))).is_ok());
    assert!(
        auth.authenticate("client-s", Some(peer(&imposter)))
            .is_err(),
        "same subject, other key"
    );

    for bad in [
        "not json",
        "{}",
        r#"{"keys": [{"kty": "EC"}]}"#,
        r#"{"keys": [{"x5c": ["%%%"]}]}"#,
        r#"{"keys": [{"x5c": ["AAAA"]}]}"#,
    ] {
        assert!(
            ClientRegistration::self_signed_tls_client_auth("s", bad.as_bytes()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn configuration_errors_name_the_client() {
    let ca = Ca::root("Clients CA");
    let tls_client =
        || ClientRegistration::tls_client_auth("client-a", ExpectedIdentity::SanDns("a".into()));
    let err = ClientAuthenticator::builder()
        .register(tls_client())
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("client-a") && err.contains("client CA"),
        "{err}"
    );
    let err = ClientAuthenticator::builder()
        .client_ca_pem(ca.cert_pem.clone())
        .register(tls_client())
        .register(tls_client())
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("registered twice"), "{err}");
}

#[tokio::test]
async fn token_endpoint_handshake_lets_through_ca_issued_self_signed_or_none() {
    let world = World::new();
    let tls = token_endpoint_tls(
        TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone()),
        world.ca.cert_pem.clone(),
    )
    .unwrap();
    let server = serve_tls(
        axum::Router::new().route("/", axum::routing::get(|| async { "in" })),
        tls,
    )
    .await;
    let ok = |leaf: &Leaf| {
        let identity = (leaf.chain_pem.clone(), leaf.key_pem.clone());
        let server = &server;
        let ca = &world.ca;
        async move {
            try_call(server, ca, Some((&identity.0, &identity.1)), "/", "x")
                .await
                .map(|a| a.status)
        }
    };
    assert_eq!(
        ok(&world.a).await,
        Ok(StatusCode::OK),
        "issued by the client CA"
    );
    assert_eq!(
        ok(&Leaf::self_signed(&Subject::cn("s"))).await,
        Ok(StatusCode::OK),
        "self-signed"
    );
    let stranger = Ca::root("Stranger CA").client(&Subject::cn("x"));
    assert!(
        ok(&stranger).await.is_err(),
        "issued by an unknown CA: no handshake"
    );
    let expired = world.ca.client(&Subject {
        expired: true,
        ..Subject::cn("old")
    });
    assert!(ok(&expired).await.is_err(), "expired: no handshake");
    let anonymous = try_call(&server, &world.ca, None, "/", "x").await;
    assert_eq!(
        anonymous.map(|a| a.status),
        Ok(StatusCode::OK),
        "no certificate: public routes stay reachable"
    );
}

#[test]
fn a_dn_registered_in_openssl_order_is_explained() {
    let ca = Ca::root("Clients CA");
    let a = ca.client(&Subject {
        org: Some("Example".into()),
        ..Subject::cn("client-a")
    });
    // The certificate's subject in RFC 4514 order is O=Example,CN=client-a.
    let reversed = authenticator(
        &ca,
        ClientRegistration::tls_client_auth("c", dn("CN=client-a,O=Example")),
    );
    let Err(ClientAuthError::InvalidClient(description)) =
        reversed.authenticate("c", Some(peer(&a)))
    else {
        panic!("the reversed DN must not match");
    };
    assert!(description.contains("another order"), "{description}");
    assert!(
        description.contains("O=Example,CN=client-a"),
        "{description}"
    );

    // A DN that differs in content gets the plain answer: no hint that would help a
    // client guess the registration.
    let other = authenticator(
        &ca,
        ClientRegistration::tls_client_auth("c", dn("CN=client-b,O=Example")),
    );
    let Err(ClientAuthError::InvalidClient(description)) = other.authenticate("c", Some(peer(&a)))
    else {
        panic!("another DN must not match");
    };
    assert!(!description.contains("order"), "{description}");
}

#[test]
fn an_empty_dn_registration_is_refused() {
    let ca = Ca::root("Clients CA");
    let err = ClientAuthenticator::builder()
        .client_ca_pem(ca.cert_pem.clone())
        .register(ClientRegistration::tls_client_auth("c", dn("")))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"c\"") && err.contains("empty"), "{err}");
}

#[test]
fn the_authenticator_reads_a_der_ca_and_refuses_a_leaf_as_ca() {
    let ca = Ca::root("Clients CA");
    let a = ca.client(&Subject::cn("client-a"));
    let by_der = ClientAuthenticator::builder()
        .client_ca_pem(ca.cert_der.clone())
        .register(ClientRegistration::tls_client_auth("c", dn("CN=client-a")))
        .build()
        .unwrap();
    assert!(by_der.authenticate("c", Some(peer(&a))).is_ok());
    let err = ClientAuthenticator::builder()
        .client_ca_pem(a.cert_pem.clone())
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a CA certificate") && err.contains("CN=Clients CA"),
        "{err}"
    );
}

#[tokio::test]
async fn refusals_answer_as_rfc_6749_says_and_registrations_are_looked_up() {
    let ca = Ca::root("Clients CA");
    let identity = ExpectedIdentity::SanDns("client-a.example.org".into());
    let auth = authenticator(
        &ca,
        ClientRegistration::tls_client_auth("client-a", identity),
    );
    assert_eq!(auth.client("client-a").unwrap().client_id(), "client-a");
    assert!(auth.client("client-b").is_none());

    let refused = auth.authenticate("client-b", None).unwrap_err();
    let response = axum::response::IntoResponse::into_response(refused);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );

    let response =
        axum::response::IntoResponse::into_response(ClientAuthError::InvalidRequest("bad".into()));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["error_description"], "bad");
}

#[tokio::test]
async fn the_tls_client_extractor_reads_the_configured_certificate_source() {
    use axum::extract::ConnectInfo;
    use mtls_bound_token::ConnectionInfo;
    use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
    use mtls_bound_token::client_auth::TlsClient;
    use tower::ServiceExt;

    let ca = Ca::root("Clients CA");
    let subject = Subject {
        dns: vec!["client-a.example.org".into()],
        ..Subject::cn("client-a")
    };
    let leaf = ca.client(&subject);
    let auth = ClientAuthenticator::builder()
        .client_ca_pem(ca.cert_pem.clone())
        .register(ClientRegistration::tls_client_auth(
            "client-a",
            ExpectedIdentity::SanDns("client-a.example.org".into()),
        ))
        .certificate_source(
            ProxyCertificate::builder(HeaderFormat::Nginx)
                .trusted_proxy("127.0.0.9".parse().unwrap())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(|client: TlsClient| async move {
                let thumbprint = client
                    .certificate()
                    .map(|c| c.thumbprint().to_owned())
                    .unwrap_or_default();
                match client.authenticate("client-a") {
                    Ok(_) => thumbprint,
                    Err(e) => format!("refused {thumbprint}: {e}"),
                }
            }),
        )
        .with_state(Arc::new(auth));
    let header =
        percent_encoding::utf8_percent_encode(&leaf.cert_pem, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let request = |from: &str| {
        let mut request = http::Request::post("/token")
            .header("x-ssl-client-cert", header.as_str())
            .body(axum::body::Body::empty())
            .unwrap();
        let info = ConnectionInfo::new(format!("{from}:4000").parse().unwrap(), None);
        request.extensions_mut().insert(ConnectInfo(info));
        request
    };
    let body = |response: axum::response::Response| async move {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    };

    // From the trusted proxy: the header's certificate, which authenticates client-a.
    let response = app.clone().oneshot(request("127.0.0.9")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, peer(&leaf).thumbprint());

    // From anyone else: no certificate, so no client.
    let response = app.oneshot(request("127.0.0.10")).await.unwrap();
    assert!(body(response).await.starts_with("refused : invalid_client"));
}
