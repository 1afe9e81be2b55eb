//! The TLS side: client-certificate policy in the handshake, chains with intermediates,
//! and handshakes that cannot stall the server.

mod common;

use std::time::Duration;

use common::pki::{self, Ca, Leaf, Subject};
use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn token_for(world: &World, leaf: &Leaf) -> String {
    world
        .key
        .sign(&pki::claims(ISSUER, AUDIENCE, "client", "read", Some(leaf)))
}

#[tokio::test]
async fn required_client_certificates_are_checked_in_the_handshake() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;

    let stranger_ca = Ca::root("Someone Else's CA");
    let stranger = stranger_ca.client(&Subject::cn("stranger"));
    let expired = world.ca.client(&Subject {
        expired: true,
        ..Subject::cn("expired")
    });
    let self_signed = Leaf::self_signed(&Subject::cn("self-signed"));
    for (case, leaf) in [
        ("unknown CA", &stranger),
        ("expired", &expired),
        ("self-signed", &self_signed),
    ] {
        let result = try_call(
            &server,
            &world.ca,
            leaf_identity(leaf),
            "/whoami",
            &token_for(&world, leaf),
        )
        .await;
        assert!(
            result.is_err(),
            "{case}: the handshake must fail, got {result:?}"
        );
    }
    let result = try_call(
        &server,
        &world.ca,
        None,
        "/whoami",
        &world.token_for_a("read"),
    )
    .await;
    assert!(
        result.is_err(),
        "no certificate: the handshake must fail, got {result:?}"
    );

    // The server is unharmed by all that.
    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&world.a),
        "/whoami",
        &world.token_for_a("read"),
    )
    .await;
    assert_eq!(answer.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn intermediates_sent_by_the_client_build_the_path() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let intermediate = world.ca.intermediate("Issuing CA");
    let leaf = intermediate.client(&Subject::cn("behind-intermediate"));
    let token = token_for(&world, &leaf);

    let answer = try_call(
        &server,
        &world.ca,
        Some((&leaf.chain_pem, &leaf.key_pem)),
        "/whoami",
        &token,
    )
    .await
    .expect("leaf + intermediate is accepted");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.json()["thumbprint"],
        leaf.thumbprint,
        "the leaf binds, not the intermediate"
    );

    let result = try_call(&server, &world.ca, leaf_identity(&leaf), "/whoami", &token).await;
    assert!(
        result.is_err(),
        "without its intermediate the leaf does not chain: {result:?}"
    );
}

#[tokio::test]
async fn any_certificate_mode_binds_self_signed_certificates() {
    let world = World::new();
    let tls = mtls_bound_token::tls::TlsServerConfig::builder()
        .certificate_chain_pem(world.server.chain_pem.clone())
        .private_key_pem(world.server.key_pem.clone())
        .accept_any_client_certificate()
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    let own = Leaf::self_signed(&Subject::cn("workload"));
    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&own),
        "/whoami",
        &token_for(&world, &own),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["thumbprint"], own.thumbprint);

    let thief = Leaf::self_signed(&Subject::cn("workload"));
    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&thief),
        "/whoami",
        &token_for(&world, &own),
    )
    .await
    .unwrap();
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "same subject, different key"
    );
}

#[tokio::test]
async fn idle_sockets_do_not_delay_other_clients() {
    let world = World::new();
    let tls = world
        .tls_builder()
        .handshake_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap(); // a ClientHello that stops

    // Far below the 60 s handshake timeout: nobody waits for the idle sockets.
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        try_call(
            &server,
            &world.ca,
            leaf_identity(&world.a),
            "/whoami",
            &world.token_for_a("read"),
        ),
    )
    .await
    .expect("a normal client is answered while 51 sockets stall")
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    drop(idle);
}

#[tokio::test]
async fn stalled_handshakes_time_out_and_garbage_is_dropped() {
    let world = World::new();
    let tls = world
        .tls_builder()
        .handshake_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let server = serve_tls(app(world.layer()), tls).await;

    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the server closes a connection that never handshakes");
    assert!(matches!(read, Ok(0) | Err(_)), "closed, got {read:?}");

    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut all = Vec::new();
        let _ = garbage.read_to_end(&mut all).await;
        all
    })
    .await
    .expect("plain HTTP on the TLS port is closed");
    assert!(!String::from_utf8_lossy(&read).contains("200 OK"));

    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&world.a),
        "/whoami",
        &world.token_for_a("read"),
    )
    .await;
    assert_eq!(answer.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn der_certificates_keys_and_cas_are_read_like_pem() {
    use rustls::pki_types::pem::PemObject;
    let world = World::new();
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(world.server.key_pem.as_bytes())
        .unwrap()
        .secret_der()
        .to_vec();
    let tls = mtls_bound_token::tls::TlsServerConfig::builder()
        .certificate_chain_pem(world.server.cert_der.clone())
        .private_key_pem(key_der)
        .client_ca_pem(world.ca.cert_der.clone())
        .build()
        .expect("DER is read");
    let server = serve_tls(app(world.layer()), tls).await;
    let answer = try_call(
        &server,
        &world.ca,
        leaf_identity(&world.a),
        "/whoami",
        &world.token_for_a("read"),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}

#[test]
fn tls_configuration_errors_say_what_to_fix() {
    let world = World::new();
    let err = |b: mtls_bound_token::tls::TlsServerConfigBuilder| {
        b.build().expect_err("refused").to_string()
    };
    let base = || {
        mtls_bound_token::tls::TlsServerConfig::builder()
            .certificate_chain_pem(world.server.chain_pem.clone())
            .private_key_pem(world.server.key_pem.clone())
    };
    assert!(err(base()).contains("client_ca_file"));
    assert!(err(base().client_ca_pem_file("/nonexistent/ca.pem")).contains("/nonexistent/ca.pem"));
    assert!(err(base().client_ca_pem("garbage")).contains("neither PEM"));
    // A client's certificate where the CA belongs: refused, naming the CA to use.
    let e = err(base().client_ca_pem(world.a.cert_pem.clone()));
    assert!(
        e.contains("not a CA certificate") && e.contains("CN=Test Root CA"),
        "{e}"
    );
    // Certificate and key swapped.
    let e = err(mtls_bound_token::tls::TlsServerConfig::builder()
        .certificate_chain_pem(world.server.key_pem.clone())
        .private_key_pem(world.server.cert_pem.clone())
        .client_ca_pem(world.ca.cert_pem.clone()));
    assert!(
        e.contains("server certificate") && e.contains("swapped"),
        "{e}"
    );
    assert!(
        err(base()
            .client_ca_pem(world.ca.cert_pem.clone())
            .private_key_pem(world.a.key_pem.clone()))
        .contains("TLS configuration"),
        "a key that does not fit the certificate"
    );
    assert!(
        err(base()
            .client_ca_pem(world.ca.cert_pem.clone())
            .private_key_pem("nope"))
        .contains("private key")
    );
}

/// Whether the server has closed `socket` within `wait` (EOF or reset), without
/// sending anything.
async fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(wait, socket.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test]
async fn completed_handshakes_free_their_slots() {
    use axum::serve::Listener;
    let world = World::new();
    let tls = world
        .tls_builder()
        .max_concurrent_handshakes(2)
        .build()
        .unwrap();
    let mut listener = mtls_bound_token::tls::TlsListener::bind("127.0.0.1:0", tls)
        .await
        .unwrap();
    let addr = listener.local_addr();
    // Accept (and keep) whatever completes.
    let (accepted, mut completed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let connection = listener.accept().await;
            if accepted.send(connection).is_err() {
                break;
            }
        }
    });
    // One silent socket holds a slot; two clients then complete their handshakes one
    // after the other. With slots freed on completion, at most two are ever in flight,
    // so the silent one is never shed.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let config = client_config(&world.ca, leaf_identity(&world.a), &[b"h2"]);
    let mut kept = Vec::new();
    for _ in 0..2 {
        kept.push(connect(addr, config.clone()).await.expect("handshake"));
        let (connection, _) = tokio::time::timeout(Duration::from_secs(5), completed.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connection.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(
            connection
                .info()
                .client_certificate()
                .map(|c| c.thumbprint().to_owned()),
            Some(world.a.thumbprint.clone())
        );
    }
    assert!(
        !closed_within(&mut silent, Duration::from_millis(300)).await,
        "a handshake in flight was shed though only one was"
    );
    // Two in flight at the limit: a third sheds the oldest.
    let mut second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!closed_within(&mut second, Duration::from_millis(200)).await);
    kept.push(
        connect(addr, config.clone())
            .await
            .expect("a new client never waits"),
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(2)).await,
        "the oldest is shed"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), completed.recv()).await;

    // ALPN as negotiated: http/1.1, or none at all.
    for (offer, negotiated) in [
        (&[&b"http/1.1"[..]][..], Some(&b"http/1.1"[..])),
        (&[][..], None),
    ] {
        let config = client_config(&world.ca, leaf_identity(&world.a), offer);
        kept.push(connect(addr, config).await.expect("handshake"));
        let (connection, _) = tokio::time::timeout(Duration::from_secs(5), completed.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connection.alpn_protocol(), negotiated);
    }
}

/// Whether connecting to `addr` fails within about a second (50 tries, 20 ms apart).
async fn refuses_connections_within_a_second(addr: std::net::SocketAddr) -> bool {
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_dropped_listener_stops_accepting() {
    let world = World::new();
    let listener = mtls_bound_token::tls::TlsListener::bind("127.0.0.1:0", world.tls())
        .await
        .unwrap();
    let addr = listener.local_addr();
    assert!(TcpStream::connect(addr).await.is_ok());
    drop(listener);
    let refused = refuses_connections_within_a_second(addr).await;
    assert!(
        refused,
        "the port still accepts after the listener was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_serve_future_stops_serving() {
    // The accept loop runs as a task of its own: dropping the future that awaits it
    // must still end it, and with it the listener.
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let addr = server.addr;
    let token = world.token_for_a("read");
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(answer.status, http::StatusCode::OK);
    drop(server);
    let refused = refuses_connections_within_a_second(addr).await;
    assert!(
        refused,
        "the port still accepts after the serve future was dropped"
    );
}

#[tokio::test]
async fn an_accepted_connection_reads_and_writes_plain_bytes() {
    use axum::serve::Listener;
    let world = World::new();
    let mut listener = mtls_bound_token::tls::TlsListener::bind("127.0.0.1:0", world.tls())
        .await
        .unwrap();
    let addr = listener.local_addr();
    let config = client_config(&world.ca, leaf_identity(&world.a), &[]);
    let client = tokio::spawn(async move {
        let mut tls = connect(addr, config).await.expect("handshake");
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await.unwrap();
        answer
    });
    let (mut connection, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap();
    assert_eq!(connection.info().remote_addr(), peer);
    let mut request = [0u8; 4];
    connection.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"ping");
    // Plain (not vectored) writes, as an application protocol other than hyper makes.
    connection.write_all(b"pong").await.unwrap();
    connection.flush().await.unwrap();
    // A shutdown ends the stream for the client (close_notify), while the server still
    // holds the connection.
    connection.shutdown().await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), client)
        .await
        .expect("the client saw the end of the stream")
        .unwrap();
    assert_eq!(&answer, b"pong");
    drop(connection);
}
