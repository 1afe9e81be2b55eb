//! The example server's limits as a black box: what one client may hold of it. Slow
//! headers are cut off, idle connections closed, stalled handshakes from one address or
//! from many never keep another client out, connections per address are capped, and
//! oversized headers never get a 5xx. Clients come from several loopback addresses
//! (127.0.0.2, ...), which Linux routes like 127.0.0.1.

mod common;

use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::process::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// The example over mTLS (client CA required) with `extra` options.
fn start_tls(f: &Files, extra: &[&str]) -> Running {
    let mut args = vec!["--client-ca", s(&f.ca)];
    args.extend_from_slice(extra);
    start_resource_server_tls(f, &args)
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    timeout(Duration::from_secs(5), socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Sends one `GET /healthz` on a kept-alive HTTP/1.1 connection; its status, or `None`
/// when the connection is closed instead.
async fn healthz(stream: &mut TcpStream) -> Option<u16> {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return None;
    }
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // /healthz answers "ok": the head and a 2-byte body.
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.ends_with(b"ok")
                        || buf.starts_with(b"HTTP/1.1 4")
                        || buf.starts_with(b"HTTP/1.1 5")
                    {
                        return true;
                    }
                }
            }
        }
    })
    .await
    .expect("an answer or a close within 5 s");
    if !read {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

/// Waits (at most `within`) for the server to close `stream`; how long it took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

#[tokio::test]
async fn dripped_headers_are_cut_off_at_the_header_read_timeout() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server(&f, &["--header-read-timeout", "1"]);
    let mut stream = connect_from("127.0.0.1", server.addr).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    // One header line every 300 ms: never complete, always moving.
    let drip = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if stream
                .write_all(format!("X-Drip-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return Some(i);
            }
            let mut probe = [0u8; 64];
            if let Ok(Ok(0)) = timeout(Duration::from_millis(1), stream.read(&mut probe)).await {
                return Some(i);
            }
        }
        None
    };
    let cut_after = drip.await;
    let lines = cut_after.expect("the connection is closed before 6 s of dripping");
    assert!(
        lines <= 8,
        "closed only after {lines} lines (~{} ms)",
        lines * 300
    );
}

#[tokio::test]
async fn idle_connections_close_and_active_ones_keep_working() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server(&f, &["--idle-timeout", "2"]);
    let mut idle = connect_from("127.0.0.1", server.addr).await;
    let mut active = connect_from("127.0.0.1", server.addr).await;
    assert_eq!(healthz(&mut idle).await, Some(200));
    assert_eq!(healthz(&mut active).await, Some(200));

    let active_side = async {
        // A request every 500 ms for 4 s: never idle for 2 s.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                healthz(&mut active).await,
                Some(200),
                "the active connection"
            );
        }
    };
    let idle_side = closed_within(&mut idle, Duration::from_secs(6));
    let ((), closed) = tokio::join!(active_side, idle_side);
    let after = closed.expect("the idle connection is closed");
    assert!(
        after >= Duration::from_millis(1500),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn a_fifth_connection_from_one_address_waits_for_one_of_four_to_close() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server(&f, &["--max-connections-per-ip", "4"]);
    let mut four = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from("127.0.0.1", server.addr).await;
        assert_eq!(healthz(&mut stream).await, Some(200));
        four.push(stream);
    }
    let mut fifth = connect_from("127.0.0.1", server.addr).await;
    assert_eq!(healthz(&mut fifth).await, None, "the fifth is not served");

    let mut other = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(healthz(&mut other).await, Some(200), "another address is");

    drop(four.pop());
    // The server notices the close when it reads EOF; give it a moment, bounded.
    let mut served = None;
    for _ in 0..50 {
        let mut again = connect_from("127.0.0.1", server.addr).await;
        served = healthz(&mut again).await;
        if served.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served,
        Some(200),
        "served again once one of the four closed"
    );
}

#[tokio::test]
async fn two_hundred_headers_of_a_kilobyte_get_431_or_a_close() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_resource_server(&f, &[]);
    let mut stream = connect_from("127.0.0.1", server.addr).await;
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    let value = "v".repeat(1024);
    for i in 0..200 {
        request.extend_from_slice(format!("X-Big-{i}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    // The server may close while this is still being written.
    let _ = stream.write_all(&request).await;
    match read_response(&mut stream).await {
        None => {}
        Some(status) => assert_eq!(status, 431),
    }
}

/// Opens `n` TLS-port sockets from `from` that never send a byte.
async fn silent(from: &str, server: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..n {
        sockets.push(connect_from(from, server).await);
    }
    sockets
}

/// A full mTLS request as client A; fails the test if it takes longer than `within`.
async fn served_within(world: &World, server: SocketAddr, within: Duration) {
    // `try_call` wants a `TestServer`; this one stands for the server process.
    let test_server = TestServer::new(server, tokio::spawn(async {}));
    let attempt = try_call(
        &test_server,
        &world.ca,
        leaf_identity(&world.a),
        "/healthz",
        "unused",
    );
    let answer = timeout(within, attempt)
        .await
        .unwrap_or_else(|_| panic!("a new client had to wait more than {within:?}"))
        .expect("served");
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn silent_sockets_beyond_an_addresss_handshake_cap_delay_nobody() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_tls(
        &f,
        &["--max-handshakes-per-ip", "4", "--handshake-timeout", "10"],
    );
    let mut sockets = silent("127.0.0.2", server.addr, 12).await;
    // Those beyond the cap are closed at once.
    let mut closed = 0;
    for socket in sockets.iter_mut().skip(4) {
        if closed_within(socket, Duration::from_secs(2))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "the 8 beyond the cap of 4 are closed");
    served_within(&world, server.addr, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn more_stalled_handshakes_than_slots_never_make_a_new_client_wait() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_tls(
        &f,
        &[
            "--max-handshakes",
            "8",
            "--max-handshakes-per-ip",
            "2",
            "--handshake-timeout",
            "10",
        ],
    );
    // 16 stalled handshakes from 8 addresses: twice the slots.
    let mut sockets = Vec::new();
    for i in 2..10 {
        sockets.extend(silent(&format!("127.0.0.{i}"), server.addr, 2).await);
    }
    // Without shedding, a new client would wait for the 10 s handshake timeout.
    served_within(&world, server.addr, Duration::from_secs(3)).await;
    served_within(&world, server.addr, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn at_the_defaults_fifty_idle_sockets_and_a_client_from_the_same_address_work() {
    let world = World::new();
    let f = Files::new(&world);
    let server = start_tls(&f, &[]);
    let _sockets = silent("127.0.0.1", server.addr, 50).await;
    served_within(&world, server.addr, Duration::from_secs(3)).await;
}

#[test]
fn limits_must_be_whole_positive_numbers() {
    let world = World::new();
    let f = Files::new(&world);
    for (option, value) in [
        ("--idle-timeout", "0"),
        ("--header-read-timeout", "1.5"),
        ("--max-connections", "0"),
        ("--max-handshakes-per-ip", "-1"),
        ("--handshake-timeout", "x"),
    ] {
        let output = run_to_end(
            &example_binary("resource_server"),
            &[
                "--listen",
                "127.0.0.1:0",
                "--jwks",
                s(&f.jwks),
                "--issuer",
                ISSUER,
                "--audience",
                AUDIENCE,
                &format!("{option}={value}"),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{option} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(option), "{option} {value}: {stderr}");
    }
}

#[tokio::test]
async fn the_token_service_has_the_same_limits() {
    let world = World::new();
    let f = Files::new(&world);
    let dir = tempfile::tempdir().unwrap();
    let client = common::pki::Leaf::self_signed(&common::pki::Subject::cn("client-s"));
    write(
        dir.path(),
        "s.jwks.json",
        &common::pki::x5c_jwks(&[&client]),
    );
    let clients = write(
        dir.path(),
        "clients.toml",
        "[[client]]\nclient_id = \"client-s\"\nauth = \"self_signed_tls_client_auth\"\n\
         jwks = \"s.jwks.json\"\nscopes = [\"read\"]\n",
    );
    let service = start(
        &example_binary("token_service"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            "https://localhost",
            "--audience",
            AUDIENCE,
            "--tls-cert",
            s(&f.server_cert),
            "--tls-key",
            s(&f.server_key),
            "--clients",
            s(&clients),
            "--max-handshakes-per-ip",
            "2",
            "--handshake-timeout",
            "10",
        ],
    );
    let mut sockets = silent("127.0.0.2", service.addr, 4).await;
    let mut closed = 0;
    for socket in sockets.iter_mut() {
        if closed_within(socket, Duration::from_secs(2))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "the two beyond the cap of 2 are closed at once");

    let output = run_to_end(
        &example_binary("token_service"),
        &[
            "--issuer",
            "https://localhost",
            "--audience",
            AUDIENCE,
            "--tls-cert",
            s(&f.server_cert),
            "--tls-key",
            s(&f.server_key),
            "--clients",
            s(&clients),
            "--idle-timeout=0",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--idle-timeout"));
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_closes_idle_connections() {
    use mtls_bound_token::serve::Server;
    let app = axum::Router::new()
        .route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::default()
            .serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    let mut idle = connect_from("127.0.0.1", addr).await;
    assert_eq!(healthz(&mut idle).await, Some(200));
    let mut busy = connect_from("127.0.0.1", addr).await;
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();

    // The idle connection is closed at once; the slow request is still answered.
    assert!(
        closed_within(&mut idle, Duration::from_secs(2))
            .await
            .is_some()
    );
    let mut answer = Vec::new();
    timeout(Duration::from_secs(5), busy.read_to_end(&mut answer))
        .await
        .expect("the request in flight is answered, then the connection closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"),
        "{answer}"
    );
    timeout(Duration::from_secs(5), server)
        .await
        .expect("the server returns once drained")
        .unwrap()
        .unwrap();
    // And it no longer accepts.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Reads one HTTP/2 frame: its type, flags and payload; `None` when the connection closed.
async fn h2_frame(stream: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

const H2_PING: u8 = 6;
const H2_GOAWAY: u8 = 7;
const H2_ACK: u8 = 1;

/// Reads frames until the server's next PING (not an acknowledgement); its payload.
async fn next_h2_ping(stream: &mut TcpStream) -> Option<Vec<u8>> {
    loop {
        let (kind, flags, payload) = h2_frame(stream).await?;
        if kind == H2_PING && flags & H2_ACK == 0 {
            return Some(payload);
        }
    }
}

/// An HTTP/2 client over plain TCP that has sent its preface and settings, and nothing else.
async fn h2_client(server: SocketAddr) -> TcpStream {
    let mut stream = connect_from("127.0.0.1", server).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn http2_pings_close_a_peer_that_stops_answering_and_keep_one_that_answers() {
    use mtls_bound_token::serve::Server;
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .keep_alive_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener, app).into_future());

    // A peer that never answers: pinged within the interval, then closed (GOAWAY, end of
    // stream) once the answer is overdue: well before the 60 s idle timeout.
    let mut silent = h2_client(addr).await;
    let started = Instant::now();
    timeout(Duration::from_secs(5), next_h2_ping(&mut silent))
        .await
        .expect("pinged within the interval")
        .expect("a PING before the connection closes");
    let mut saw_goaway = false;
    let closed = timeout(Duration::from_secs(10), async {
        while let Some((kind, _, _)) = h2_frame(&mut silent).await {
            saw_goaway |= kind == H2_GOAWAY;
        }
    })
    .await;
    assert!(closed.is_ok(), "a peer that never answers pings is closed");
    assert!(saw_goaway, "closed with a GOAWAY");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A peer that answers every ping keeps its connection for several intervals.
    let mut answering = h2_client(addr).await;
    for _ in 0..4 {
        let payload = timeout(Duration::from_secs(5), next_h2_ping(&mut answering))
            .await
            .expect("pinged again within the interval")
            .expect("still open while it answers");
        let mut ack = vec![0, 0, 8, H2_PING, H2_ACK, 0, 0, 0, 0];
        ack.extend_from_slice(&payload);
        answering.write_all(&ack).await.unwrap();
    }
}
