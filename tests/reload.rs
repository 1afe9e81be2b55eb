//! Hot reload: the server certificate, the client trust's CA bundle and CRLs, and JWKS
//! files are read again on request or when they change, put in place only when all of it
//! reads, and used by new handshakes and requests while established connections go on.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::pki::{self, Leaf, SigningKey};
use common::*;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use mtls_bound_token::MtlsBoundTokenLayer;
use mtls_bound_token::reload::Reloader;
use mtls_bound_token::tls::TlsServerConfig;
use mtls_bound_token::token::JwksFile;
use mtls_bound_token::trust::ClientTrust;

/// Replaces `path` as deployments do: a new file renamed over the old one.
fn replace(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    crl: PathBuf,
    jwks: PathBuf,
}

impl Files {
    fn new(world: &World) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let write = |name: &str, content: &str| {
            let path = p.join(name);
            std::fs::write(&path, content).unwrap();
            path
        };
        Self {
            cert: write("server.pem", &world.server.chain_pem),
            key: write("server.key", &world.server.key_pem),
            ca: write("ca.pem", &world.ca.cert_pem),
            crl: write("ca.crl", &world.ca.crl(&[], false)),
            jwks: write("jwks.json", &world.jwks()),
            _dir: dir,
        }
    }

    fn tls(&self) -> TlsServerConfig {
        let trust = ClientTrust::builder()
            .ca_file(&self.ca)
            .crl_file(&self.crl)
            .build()
            .unwrap();
        TlsServerConfig::builder()
            .certificate_chain_file(&self.cert)
            .private_key_file(&self.key)
            .client_trust(trust)
            .build()
            .unwrap()
    }
}

async fn status_of(server: &TestServer, world: &World, leaf: &Leaf) -> Option<StatusCode> {
    let token = world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)));
    try_call(server, &world.ca, leaf_identity(leaf), "/whoami", &token)
        .await
        .ok()
        .map(|answer| answer.status)
}

/// The leaf certificate the server presents to a new connection.
async fn served_certificate(server: &TestServer, world: &World) -> Vec<u8> {
    let tls = connect(
        server.addr,
        client_config(&world.ca, leaf_identity(&world.a), &[]),
    )
    .await
    .unwrap();
    let (_, connection) = tls.get_ref();
    connection.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn a_reload_rotates_the_server_certificate_and_revokes_for_new_handshakes_only() {
    let world = World::new();
    let files = Files::new(&world);
    let tls = files.tls();
    let server = serve_tls(app(world.layer()), tls.clone()).await;
    assert_eq!(
        served_certificate(&server, &world).await,
        world.server.cert_der
    );
    assert_eq!(
        status_of(&server, &world, &world.b).await,
        Some(StatusCode::OK)
    );

    // b's connection, open before the reload.
    let token_b = world.key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&world.b),
    ));
    let stream = connect(
        server.addr,
        client_config(&world.ca, leaf_identity(&world.b), &[]),
    )
    .await
    .unwrap();
    let (mut open, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    // A first answer: the server has finished the handshake (in TLS 1.3 it reads the
    // client's certificate after the client thinks the handshake done).
    let first = open
        .send_request(get_request(
            "/whoami",
            &[("authorization", &bearer(&token_b))],
        ))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    let rotated = world.ca.server();
    replace(&files.cert, &rotated.chain_pem);
    replace(&files.key, &rotated.key_pem);
    replace(&files.crl, &world.ca.crl(&[&world.b.cert_der], false));
    tls.reload().unwrap();

    assert_eq!(served_certificate(&server, &world).await, rotated.cert_der);
    assert_eq!(
        status_of(&server, &world, &world.b).await,
        None,
        "b is revoked now"
    );
    assert_eq!(
        status_of(&server, &world, &world.a).await,
        Some(StatusCode::OK)
    );
    // The connection established before goes on.
    let answer = open
        .send_request(get_request(
            "/whoami",
            &[("authorization", &bearer(&token_b))],
        ))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reload_that_does_not_read_changes_nothing() {
    let world = World::new();
    let files = Files::new(&world);
    let tls = files.tls();
    let server = serve_tls(app(world.layer()), tls.clone()).await;
    let other = world.ca.server();
    let cases: [(&str, &Path, String, &str); 3] = [
        ("a garbage CRL", &files.crl, "garbage".into(), "ca.crl"),
        (
            "a key that is not the certificate's",
            &files.key,
            other.key_pem.clone(),
            "TLS configuration",
        ),
        ("an empty CA bundle", &files.ca, String::new(), "ca.pem"),
    ];
    for (case, path, content, named) in cases {
        let good = std::fs::read_to_string(path).unwrap();
        // Half-good material too: the CRL revoking a is fine, the broken file is not.
        if path != files.crl.as_path() {
            replace(&files.crl, &world.ca.crl(&[&world.a.cert_der], false));
        }
        replace(path, &content);
        let error = tls.reload().unwrap_err().to_string();
        assert!(error.contains(named), "{case}: {error}");
        assert_eq!(
            status_of(&server, &world, &world.a).await,
            Some(StatusCode::OK),
            "{case}: the old material stays, all of it"
        );
        assert_eq!(
            served_certificate(&server, &world).await,
            world.server.cert_der
        );
        replace(path, &good);
        replace(&files.crl, &world.ca.crl(&[], false));
    }
}

#[tokio::test]
async fn a_reloaded_jwks_file_retires_the_keys_it_no_longer_holds_and_what_they_verified() {
    let world = World::new();
    let files = Files::new(&world);
    let keys = JwksFile::open(&files.jwks).unwrap();
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(keys.clone())
        .build()
        .unwrap();
    let server = serve_tls(app(layer.clone()), world.tls()).await;
    let old_token = world.token_for_a("read");
    let call_with = |token: String| {
        let server = &server;
        let world = &world;
        async move {
            try_call(
                server,
                &world.ca,
                leaf_identity(&world.a),
                "/whoami",
                &token,
            )
            .await
            .unwrap()
            .status
        }
    };
    // Twice: the second is served from the verified-token cache.
    assert_eq!(call_with(old_token.clone()).await, StatusCode::OK);
    assert_eq!(call_with(old_token.clone()).await, StatusCode::OK);
    assert_eq!(layer.token_cache_stats().unwrap().hits, 1);

    let k2 = SigningKey::es256("k2");
    replace(&files.jwks, &pki::jwks(&[&k2]));
    keys.reload().unwrap();
    assert_eq!(
        call_with(old_token).await,
        StatusCode::UNAUTHORIZED,
        "k1 is gone"
    );
    let new_token = k2.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client",
        "read",
        Some(&world.a),
    ));
    assert_eq!(call_with(new_token).await, StatusCode::OK);

    replace(&files.jwks, "{ not json");
    let error = keys.reload().unwrap_err().to_string();
    assert!(error.contains("jwks.json"), "{error}");
}

#[tokio::test]
async fn a_spawned_reloader_follows_the_files() {
    let world = World::new();
    let files = Files::new(&world);
    let tls = files.tls();
    let keys = JwksFile::open(&files.jwks).unwrap();
    let reloader = Reloader::new()
        .tls(&tls)
        .jwks_file(&keys)
        .settle(Duration::from_millis(50));
    let mut watched = reloader.files();
    watched.sort();
    let mut expected = vec![
        files.cert.clone(),
        files.key.clone(),
        files.ca.clone(),
        files.crl.clone(),
        files.jwks.clone(),
    ];
    expected.sort();
    assert_eq!(watched, expected);
    let _handle = reloader.spawn().unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    assert_eq!(
        status_of(&server, &world, &world.b).await,
        Some(StatusCode::OK)
    );

    replace(&files.crl, &world.ca.crl(&[&world.b.cert_der], false));
    let mut refused = false;
    for _ in 0..100 {
        if status_of(&server, &world, &world.b).await.is_none() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused,
        "b is still admitted 5 s after its CRL entry was written"
    );
    assert_eq!(
        status_of(&server, &world, &world.a).await,
        Some(StatusCode::OK)
    );
}

#[test]
fn the_loaded_material_is_warned_about_within_the_window() {
    let world = World::new();
    let files = Files::new(&world);
    // A CRL past its nextUpdate (2021): within any window.
    replace(&files.crl, &world.ca.crl(&[], true));
    let tls = files.tls();
    let reloader = Reloader::new().tls(&tls);
    assert_eq!(
        reloader
            .clone()
            .expiry_warning(Duration::ZERO)
            .check_expiry(),
        1,
        "the stale CRL only"
    );
    // rcgen's certificates end in 4096: a window of three thousand years reaches them.
    let millennia = Duration::from_secs(3_000 * 366 * 86_400);
    assert_eq!(
        reloader.expiry_warning(millennia).check_expiry(),
        3,
        "server certificate, client CA, CRL"
    );
}
