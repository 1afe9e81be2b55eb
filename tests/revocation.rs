//! Revocation by CRL: one `ClientTrust` judges client certificates in the handshake, at
//! the token endpoint and when a proxy forwards them; unknown status and expired CRLs
//! follow its policy; replacing its material reaches every holder at once; and files
//! that are not what they should be stop the build with what to fix.

mod common;

use std::sync::Arc;

use common::pki::{self, Ca, Leaf, Subject};
use common::*;
use http::StatusCode;
use mtls_bound_token::MtlsBoundTokenLayer;
use mtls_bound_token::cert::{HeaderFormat, PeerCertificate, ProxyCertificate};
use mtls_bound_token::client_auth::{ClientAuthenticator, ClientRegistration, ExpectedIdentity};
use mtls_bound_token::tls::{TlsConfigError, TlsServerConfig};
use mtls_bound_token::trust::{
    ClientTrust, ExpiredCrl, RevocationDepth, RevocationStatus, UnknownRevocation,
};

fn token_for(world: &World, leaf: &Leaf) -> String {
    world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)))
}

/// The world's TLS settings with `trust` in place of the CA bundle.
fn tls_with(world: &World, trust: ClientTrust) -> TlsServerConfig {
    TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
        .client_trust(trust)
        .build()
        .expect("tls")
}

/// Whether `leaf` (sent with its chain) gets through the handshake and is answered 200.
async fn admitted(server: &TestServer, world: &World, leaf: &Leaf) -> bool {
    let answer = try_call(
        server,
        &world.ca,
        Some((&leaf.chain_pem, &leaf.key_pem)),
        "/whoami",
        &token_for(world, leaf),
    )
    .await;
    match answer {
        Ok(answer) => {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            true
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_revoked_client_fails_the_handshake_and_the_others_pass() {
    let world = World::new();
    let trust = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .crl(world.ca.crl(&[&world.b.cert_der], false))
        .build()
        .unwrap();
    assert_eq!(trust.crl_count(), 1);
    assert!(trust.validates_chains());
    let server = serve_tls(app(world.layer()), tls_with(&world, trust)).await;
    assert!(
        admitted(&server, &world, &world.a).await,
        "a is not revoked"
    );
    assert!(!admitted(&server, &world, &world.b).await, "b is revoked");
}

#[tokio::test]
async fn a_status_no_crl_covers_is_refused_unless_allowed() {
    let world = World::new();
    let other_ca = Ca::root("Other Client CA");
    let other = other_ca.client(&Subject::cn("other"));
    // Both CAs are trusted, but only the world's CA has a CRL loaded.
    let bundle = format!("{}{}", world.ca.cert_pem, other_ca.cert_pem);
    let crl = world.ca.crl(&[], false);
    for (policy, other_admitted) in [
        (UnknownRevocation::Deny, false),
        (UnknownRevocation::Allow, true),
    ] {
        let trust = ClientTrust::builder()
            .ca_pem(bundle.clone())
            .crl(crl.clone())
            .unknown_revocation(policy)
            .build()
            .unwrap();
        let server = serve_tls(app(world.layer()), tls_with(&world, trust)).await;
        assert!(admitted(&server, &world, &world.a).await, "{policy:?}: a");
        assert_eq!(
            admitted(&server, &world, &other).await,
            other_admitted,
            "{policy:?}: a client of the CA without a CRL"
        );
    }
}

#[tokio::test]
async fn an_expired_crl_refuses_what_it_covers_unless_allowed() {
    let world = World::new();
    let stale = world.ca.crl(&[&world.b.cert_der], true);
    for (policy, a_admitted) in [(ExpiredCrl::Deny, false), (ExpiredCrl::Allow, true)] {
        let trust = ClientTrust::builder()
            .ca_pem(world.ca.cert_pem.clone())
            .crl(stale.clone())
            .expired_crl(policy)
            .build()
            .unwrap();
        let server = serve_tls(app(world.layer()), tls_with(&world, trust)).await;
        assert_eq!(
            admitted(&server, &world, &world.a).await,
            a_admitted,
            "{policy:?}: a, which the stale CRL does not list"
        );
        assert!(
            !admitted(&server, &world, &world.b).await,
            "{policy:?}: b stays revoked"
        );
    }
}

#[tokio::test]
async fn a_revoked_intermediate_refuses_its_clients_unless_only_leaves_are_checked() {
    let world = World::new();
    let intermediate = world.ca.intermediate("Issuing CA");
    let leaf = intermediate.client(&Subject::cn("behind-intermediate"));
    let crls = [
        world.ca.crl(&[&intermediate.cert_der], false),
        intermediate.crl(&[], false),
    ];
    for (depth, expected) in [
        (RevocationDepth::Chain, false),
        (RevocationDepth::Leaf, true),
    ] {
        let mut trust = ClientTrust::builder()
            .ca_pem(world.ca.cert_pem.clone())
            .revocation_depth(depth);
        for crl in &crls {
            trust = trust.crl(crl.clone());
        }
        let server = serve_tls(app(world.layer()), tls_with(&world, trust.build().unwrap())).await;
        assert_eq!(
            admitted(&server, &world, &leaf).await,
            expected,
            "{depth:?}"
        );
    }
}

#[tokio::test]
async fn replacing_the_trust_reaches_new_handshakes_at_once() {
    let world = World::new();
    let trust = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls_with(&world, trust.clone())).await;
    assert!(admitted(&server, &world, &world.a).await);
    assert_eq!(
        trust.revocation_status(&peer(&world.a)),
        RevocationStatus::NotChecked
    );

    let revoking_a = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .crl(world.ca.crl(&[&world.a.cert_der], false))
        .build()
        .unwrap();
    trust.replace_with(&revoking_a);
    assert_eq!(
        trust.crl_count(),
        1,
        "the clone held by the server sees it too"
    );
    assert_eq!(
        trust.revocation_status(&peer(&world.a)),
        RevocationStatus::Revoked
    );
    assert_eq!(
        trust.revocation_status(&peer(&world.b)),
        RevocationStatus::Good
    );
    assert!(
        !admitted(&server, &world, &world.a).await,
        "a is revoked now"
    );
    assert!(admitted(&server, &world, &world.b).await, "b is not");
    // A reload reads what replaced the material, not what the trust was built from.
    trust.reload().unwrap();
    assert_eq!(
        trust.revocation_status(&peer(&world.a)),
        RevocationStatus::Revoked
    );
}

fn peer(leaf: &Leaf) -> PeerCertificate {
    PeerCertificate::from_der(&leaf.cert_der).unwrap()
}

#[tokio::test]
async fn any_certificate_for_binding_but_not_a_revoked_one() {
    let world = World::new();
    let crls_only = ClientTrust::builder()
        .crl(world.ca.crl(&[&world.b.cert_der], false))
        .build()
        .unwrap();
    assert!(!crls_only.validates_chains());
    let tls = TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
        .accept_any_client_certificate_unless_revoked(crls_only.clone())
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    assert!(admitted(&server, &world, &world.a).await);
    assert!(!admitted(&server, &world, &world.b).await, "b is revoked");
    // A self-signed certificate has no issuer with a CRL: unknown, refused by default.
    let self_signed = Leaf::self_signed(&Subject::cn("self"));
    assert!(!admitted(&server, &world, &self_signed).await);
    assert_eq!(
        crls_only.revocation_status(&peer(&self_signed)),
        RevocationStatus::Unknown
    );
}

#[test]
fn a_trust_must_fit_where_it_is_used() {
    let world = World::new();
    let builder = || {
        TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone())
    };
    let crls_only = ClientTrust::builder()
        .crl(world.ca.crl(&[], false))
        .build()
        .unwrap();
    let with_ca = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .build()
        .unwrap();
    let error = builder().client_trust(crls_only).build().unwrap_err();
    assert!(matches!(error, TlsConfigError::TrustWithoutCa), "{error}");
    assert!(error.to_string().contains(".ca_file(path)"), "{error}");
    let error = builder()
        .accept_any_client_certificate_unless_revoked(with_ca)
        .build()
        .unwrap_err();
    assert!(matches!(error, TlsConfigError::TrustCaUnused), "{error}");
}

#[test]
fn files_that_are_not_crls_stop_the_build_naming_the_problem() {
    let world = World::new();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage",
            b"not a crl".to_vec(),
            "not a DER certificate revocation list",
        ),
        (
            "a certificate",
            world.a.cert_der.clone(),
            "is a certificate, not a CRL",
        ),
        (
            "PEM without a CRL",
            world.a.cert_pem.clone().into_bytes(),
            "holds no `X509 CRL` PEM block (it holds CERTIFICATE)",
        ),
        (
            "a CRL in the CA's name by another key",
            Ca::root("Test Root CA").crl(&[], false).into_bytes(),
            "signature does not verify",
        ),
    ];
    for (case, bytes, expected) in cases {
        let error = ClientTrust::builder()
            .ca_pem(world.ca.cert_pem.clone())
            .crl(bytes)
            .build()
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains(expected), "{case}: {message}");
        assert!(message.starts_with("CRL"), "{case}: {message}");
    }
    let missing = ClientTrust::builder()
        .crl_file("/nonexistent/clients.crl")
        .build()
        .unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent/clients.crl"),
        "{missing}"
    );
}

/// The layer behind a proxy at 127.0.0.2 (RFC 9440 header), forwarded certificates
/// checked against `trust`.
fn proxied_layer(world: &World, trust: ClientTrust) -> MtlsBoundTokenLayer {
    let source = ProxyCertificate::builder(HeaderFormat::Rfc9440)
        .trusted_proxy("127.0.0.2".parse().unwrap())
        .check_revocation(trust)
        .build()
        .unwrap();
    MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .certificate_source(source)
        .build()
        .unwrap()
}

async fn forwarded(server: &TestServer, world: &World, leaf: &Leaf) -> Answer {
    use base64::Engine;
    let header = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&leaf.cert_der)
    );
    send_from(
        "127.0.0.2",
        server.addr,
        "/whoami",
        &[
            ("client-cert", header.as_bytes()),
            ("authorization", &bearer(&token_for(world, leaf))),
        ],
    )
    .await
}

#[tokio::test]
async fn a_trusted_proxy_forwarding_a_revoked_certificate_gets_401() {
    let world = World::new();
    let other_ca = Ca::root("Other Client CA");
    let other = other_ca.client(&Subject::cn("other"));
    let trust = ClientTrust::builder()
        .crl(world.ca.crl(&[&world.b.cert_der], false))
        .build()
        .unwrap();
    let server = serve_plain(app(proxied_layer(&world, trust.clone()))).await;
    let answer = forwarded(&server, &world, &world.a).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    for (case, leaf, description) in [
        ("revoked", &world.b, "the client certificate is revoked"),
        (
            "no CRL of its issuer",
            &other,
            "the revocation status of the client certificate is unknown",
        ),
    ] {
        // Twice: the second comes from the proxy source's certificate cache.
        for attempt in 0..2 {
            let answer = forwarded(&server, &world, leaf).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{case} {attempt}");
            assert!(answer.challenge().contains("invalid_token"), "{case}");
            assert_eq!(
                answer.json()["error_description"],
                description,
                "{case} {attempt}"
            );
        }
    }
    // A replaced trust applies to the cached certificates too.
    trust.replace_with(
        &ClientTrust::builder()
            .crl(world.ca.crl(&[&world.a.cert_der], false))
            .unknown_revocation(UnknownRevocation::Allow)
            .build()
            .unwrap(),
    );
    assert_eq!(
        forwarded(&server, &world, &world.a).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        forwarded(&server, &world, &world.b).await.status,
        StatusCode::OK
    );
    assert_eq!(
        forwarded(&server, &world, &other).await.status,
        StatusCode::OK
    );
}

#[test]
fn the_token_endpoint_refuses_a_revoked_tls_client_auth_certificate() {
    let world = World::new();
    let trust = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .crl(world.ca.crl(&[&world.b.cert_der], false))
        .build()
        .unwrap();
    let authenticator = ClientAuthenticator::builder()
        .client_trust(trust)
        .register(ClientRegistration::tls_client_auth(
            "a",
            ExpectedIdentity::SanDns("client-a.example.org".into()),
        ))
        .register(ClientRegistration::tls_client_auth(
            "b",
            ExpectedIdentity::SubjectDn("CN=client-b".parse().unwrap()),
        ))
        .build()
        .unwrap();
    let certificate = |leaf: &Leaf| Some(Arc::new(peer(leaf)));
    assert!(
        authenticator
            .authenticate("a", certificate(&world.a))
            .is_ok()
    );
    let error = authenticator
        .authenticate("b", certificate(&world.b))
        .unwrap_err();
    assert_eq!(error.error_code(), "invalid_client");

    let both = ClientAuthenticator::builder()
        .client_ca_pem(world.ca.cert_pem.clone())
        .client_trust(
            ClientTrust::builder()
                .ca_pem(world.ca.cert_pem.clone())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert!(
        both.to_string().contains("give the client CA once"),
        "{both}"
    );
}

/// One request over a new connection made with `config` (which keeps its sessions).
async fn status_with(
    server: &TestServer,
    config: &Arc<rustls::ClientConfig>,
    token: &str,
) -> Result<(StatusCode, bool), String> {
    use hyper_util::rt::TokioIo;
    let stream = connect(server.addr, Arc::clone(config))
        .await
        .map_err(|e| e.to_string())?;
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioIo::new(stream))
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(get_request("/whoami", &[("authorization", &bearer(token))]))
        .await
        .map_err(|e| e.to_string())?;
    Ok((response.status(), resumed))
}

#[tokio::test]
async fn a_resumed_session_is_judged_by_the_trust_as_it_is_now() {
    let world = World::new();
    let trust = ClientTrust::builder()
        .ca_pem(world.ca.cert_pem.clone())
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls_with(&world, trust.clone())).await;
    let config = client_config(&world.ca, leaf_identity(&world.a), &[]);
    let token = world.token_for_a("read");
    assert_eq!(
        status_with(&server, &config, &token).await.unwrap(),
        (StatusCode::OK, false)
    );
    // The session resumes, and is accepted while the trust accepts the certificate.
    assert_eq!(
        status_with(&server, &config, &token).await.unwrap(),
        (StatusCode::OK, true)
    );
    trust.replace_with(
        &ClientTrust::builder()
            .ca_pem(world.ca.cert_pem.clone())
            .crl(world.ca.crl(&[&world.a.cert_der], false))
            .build()
            .unwrap(),
    );
    let resumed = status_with(&server, &config, &token).await;
    assert!(
        resumed.is_err(),
        "a resumed session of a revoked client: {resumed:?}"
    );
}

#[tokio::test]
async fn of_two_crls_of_one_issuer_the_newer_counts_in_either_order() {
    let world = World::new();
    let old = world.ca.crl_with(&[], false, 2020, None);
    let new = world.ca.crl_with(&[&world.a.cert_der], false, 2022, None);
    for (case, first, second) in [("old, new", &old, &new), ("new, old", &new, &old)] {
        let trust = ClientTrust::builder()
            .ca_pem(world.ca.cert_pem.clone())
            .crl(first.clone())
            .crl(second.clone())
            .build()
            .unwrap();
        assert_eq!(trust.crl_count(), 1, "{case}");
        assert_eq!(
            trust.revocation_status(&peer(&world.a)),
            RevocationStatus::Revoked,
            "{case}"
        );
        let server = serve_tls(app(world.layer()), tls_with(&world, trust)).await;
        assert!(
            !admitted(&server, &world, &world.a).await,
            "{case}: a is revoked"
        );
        assert!(
            admitted(&server, &world, &world.b).await,
            "{case}: b is not"
        );
    }
}

#[test]
fn a_ca_of_the_bundle_that_a_crl_revokes_stops_the_build() {
    let world = World::new();
    let intermediate = world.ca.intermediate("Issuing CA");
    let error = ClientTrust::builder()
        .ca_pem(format!("{}{}", world.ca.cert_pem, intermediate.cert_pem))
        .crl(world.ca.crl(&[&intermediate.cert_der], false))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("certificate 2 (CN=Issuing CA) is revoked"),
        "{error}"
    );
}

#[test]
fn a_partial_crl_revokes_what_it_lists_and_vouches_for_nothing_else() {
    let world = World::new();
    let partial = world.ca.crl_with(
        &[&world.b.cert_der],
        false,
        2020,
        Some("http://crl.example/part1.crl"),
    );
    let trust = ClientTrust::builder().crl(partial).build().unwrap();
    assert_eq!(
        trust.revocation_status(&peer(&world.b)),
        RevocationStatus::Revoked
    );
    assert_eq!(
        trust.revocation_status(&peer(&world.a)),
        RevocationStatus::Unknown
    );
}

#[tokio::test]
async fn an_expired_crl_follows_its_policy_for_leaves_too() {
    let world = World::new();
    let stale = world.ca.crl(&[&world.b.cert_der], true);
    for (policy, a_admitted) in [(ExpiredCrl::Deny, false), (ExpiredCrl::Allow, true)] {
        let crls_only = ClientTrust::builder()
            .crl(stale.clone())
            .expired_crl(policy)
            .build()
            .unwrap();
        assert_eq!(
            crls_only.revocation_status(&peer(&world.a)),
            RevocationStatus::CrlExpired
        );
        let tls = TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone())
            .accept_any_client_certificate_unless_revoked(crls_only)
            .build()
            .unwrap();
        let server = serve_tls(app(world.layer()), tls).await;
        assert_eq!(
            admitted(&server, &world, &world.a).await,
            a_admitted,
            "{policy:?}: a, which the stale CRL does not list"
        );
        assert!(!admitted(&server, &world, &world.b).await, "{policy:?}: b");
    }
}
