//! Verification keys from a `jwks_uri`: an in-process authorization server on loopback
//! that counts what it is asked, rotates keys, goes down, and lies.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::pki::{self, SigningKey};
use common::*;
use mtls_bound_token::remote::{AuthServerClient, RemoteJwks, discover};
use mtls_bound_token::token::{JwtVerifier, KeySource};
use mtls_bound_token::{AuthReason, MtlsBoundTokenLayer};
use tokio::net::TcpListener;

/// What the fake authorization server answers, and how often it was asked.
struct Answer {
    status: StatusCode,
    body: String,
    cache_control: Option<&'static str>,
    /// Delay before answering, to hold fetches in flight.
    delay: Duration,
    jwks_requests: u64,
}

#[derive(Clone)]
struct Upstream(Arc<Mutex<Answer>>);

impl Upstream {
    fn new(jwks: String) -> Self {
        Self(Arc::new(Mutex::new(Answer {
            status: StatusCode::OK,
            body: jwks,
            cache_control: None,
            delay: Duration::ZERO,
            jwks_requests: 0,
        })))
    }
    fn set(&self, f: impl FnOnce(&mut Answer)) {
        f(&mut self.0.lock().unwrap());
    }
    fn requests(&self) -> u64 {
        self.0.lock().unwrap().jwks_requests
    }
}

async fn jwks(State(upstream): State<Upstream>) -> Response {
    let (status, body, cache_control, delay) = {
        let mut answer = upstream.0.lock().unwrap();
        answer.jwks_requests += 1;
        (
            answer.status,
            answer.body.clone(),
            answer.cache_control,
            answer.delay,
        )
    };
    tokio::time::sleep(delay).await;
    let mut headers = HeaderMap::new();
    if let Some(value) = cache_control {
        headers.insert("cache-control", HeaderValue::from_static(value));
    }
    (status, headers, body).into_response()
}

fn routes(upstream: &Upstream) -> Router {
    Router::new()
        .route("/jwks", get(jwks))
        .with_state(upstream.clone())
}

/// The fake server over plain HTTP on loopback; stops when the handle is dropped.
async fn serve_http(app: Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    TestServer::new(addr, task)
}

fn loopback_client() -> AuthServerClient {
    AuthServerClient::builder()
        .allow_http_for_loopback_and_tests()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn verifier(keys: RemoteJwks) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(keys)
        .build()
        .unwrap()
}

fn token(world: &World, key: &SigningKey) -> String {
    key.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client-a",
        "read",
        Some(&world.a),
    ))
}

/// A token whose header names `kid` (signed by `key`, which does not have that kid).
fn token_with_kid(world: &World, key: &SigningKey, kid: &str) -> String {
    let mut header = key.header();
    header.kid = Some(kid.to_owned());
    key.sign_with(
        header,
        &pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a)),
    )
}

/// Polls `done` every 50 ms for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test]
async fn remote_keys_verify_tokens_and_a_rotated_key_is_picked_up_within_the_interval() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    let server = serve_http(routes(&upstream)).await;
    let url = format!("http://{}/jwks", server.addr);
    let keys = RemoteJwks::builder(&url)
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let stats = keys.clone();
    let verifier = verifier(keys);

    let claims = verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
    assert_eq!(claims.client_id(), Some("client-a"));
    assert_eq!(upstream.requests(), 1);
    // Known keys are served from the cache.
    for _ in 0..20 {
        verifier
            .verify_token(&world.token_for_a("read"))
            .await
            .unwrap();
    }
    assert_eq!(upstream.requests(), 1);

    // The server rotates k2 in: a token signed by it triggers one fetch and is accepted
    // at once (the interval since the first fetch may have passed; if not, within it).
    let k2 = SigningKey::es256("k2");
    upstream.set(|a| a.body = pki::jwks(&[&world.key, &k2]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = token(&world, &k2);
    let claims = verifier.verify_token(&rotated).await.unwrap();
    assert_eq!(claims.client_id(), Some("client-a"));
    assert_eq!(upstream.requests(), 2);
    // The old key still verifies: it is still published.
    verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
    assert_eq!(stats.stats().keys, 2);
    assert_eq!(upstream.requests(), 2);
}

#[tokio::test]
async fn a_burst_of_random_kids_costs_one_fetch() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    // Slow answers keep the fetch in flight while the burst arrives.
    let server = serve_http(routes(&upstream)).await;
    let keys = RemoteJwks::builder(format!("http://{}/jwks", server.addr))
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let stats = keys.clone();
    let verifier = Arc::new(verifier(keys));
    upstream.set(|a| a.delay = Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let tokens: Vec<String> = (0..1000)
        .map(|i| token_with_kid(&world, &world.key, &format!("random-{i}")))
        .collect();
    let mut tasks = Vec::new();
    for token in tokens.clone() {
        let verifier = Arc::clone(&verifier);
        tasks.push(tokio::spawn(
            async move { verifier.verify_token(&token).await },
        ));
    }
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.reason(), AuthReason::UnknownKey, "{err}");
    }
    // One fetch at start-up, one for the whole burst.
    assert_eq!(upstream.requests(), 2);
    // The same kids again, after the interval: remembered as unknown, no fetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for token in tokens.iter().take(100) {
        let err = verifier.verify_token(token).await.unwrap_err();
        assert_eq!(err.reason(), AuthReason::UnknownKey);
    }
    assert_eq!(upstream.requests(), 2);
    assert!(stats.stats().unknown_kids >= 100);
    // New random kids within one interval: one more fetch at most.
    for i in 0..200 {
        let token = token_with_kid(&world, &world.key, &format!("other-{i}"));
        let _ = verifier.verify_token(&token).await;
    }
    assert_eq!(upstream.requests(), 3);
}

#[tokio::test]
async fn when_the_server_goes_down_the_last_good_keys_keep_serving() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    upstream.set(|a| a.cache_control = Some("max-age=1"));
    let server = serve_http(routes(&upstream)).await;
    let keys = RemoteJwks::builder(format!("http://{}/jwks", server.addr))
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let stats = keys.clone();
    let verifier = verifier(keys);
    // max-age=1 is honoured: the background task refreshes without any request.
    assert!(eventually(Duration::from_secs(5), || upstream.requests() >= 2).await);

    upstream.set(|a| a.status = StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        eventually(Duration::from_secs(5), || stats.stats().failed_fetches >= 1).await,
        "{:?}",
        stats.stats()
    );
    verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
    // A token that needs a new key is refused, not a 5xx of ours.
    let k2 = SigningKey::es256("k2");
    let err = verifier
        .verify_token(&token(&world, &k2))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthReason::UnknownKey, "{err}");
    drop(server);
    verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_good_keys_stop_serving_after_the_staleness_bound() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    upstream.set(|a| a.cache_control = Some("max-age=1"));
    let server = serve_http(routes(&upstream)).await;
    let keys = RemoteJwks::builder(format!("http://{}/jwks", server.addr))
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .max_staleness(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let verifier = verifier(keys);
    upstream.set(|a| a.status = StatusCode::SERVICE_UNAVAILABLE);
    // Fresh for 1 s, then stale for 1 s: gone after that, as refreshes keep failing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthReason::Unavailable, "{err}");
    // Back up: served again once a fetch succeeds.
    upstream.set(|a| a.status = StatusCode::OK);
    let mut ok = false;
    for _ in 0..60 {
        if verifier
            .verify_token(&world.token_for_a("read"))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the keys came back");
}

#[tokio::test]
async fn start_up_fails_clearly_or_starts_and_answers_503() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    upstream.set(|a| a.status = StatusCode::NOT_FOUND);
    let server = serve_http(routes(&upstream)).await;
    let url = format!("http://{}/jwks", server.addr);

    let err = RemoteJwks::builder(&url)
        .client(loopback_client())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    assert!(err.to_string().contains("404"), "{err}");

    let keys = RemoteJwks::builder(&url)
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(60), Duration::from_secs(60))
        .start_without_keys()
        .build()
        .await
        .unwrap();
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(keys.clone())
        .build()
        .unwrap();
    let app = app(layer);
    let tls = serve_tls(app, world.tls()).await;
    let token = world.token_for_a("read");
    let answer = call(
        &tls,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    assert!(answer.headers.get("www-authenticate").is_none());

    // The server comes up: within the interval the keys are fetched and the token passes.
    upstream.set(|a| a.status = StatusCode::OK);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = call(
            &tls,
            &world,
            Some(&world.a),
            "/whoami",
            &[("authorization", &bearer(&token))],
        )
        .await
        .status;
        if status == StatusCode::OK {
            break;
        }
    }
    assert_eq!(status, StatusCode::OK);
    // Requests while there were no keys never asked the server more than once a second.
    assert!(keys.stats().fetches <= 10, "{:?}", keys.stats());
}

#[tokio::test]
async fn answers_that_are_not_a_usable_jwks_are_refused() {
    let world = World::new();
    let upstream = Upstream::new("x".repeat(64 * 1024));
    let server = serve_http(routes(&upstream)).await;
    let url = format!("http://{}/jwks", server.addr);
    let small = || {
        AuthServerClient::builder()
            .allow_http_for_loopback_and_tests()
            .max_document_len(16 * 1024)
            .build()
            .unwrap()
    };
    let err = RemoteJwks::builder(&url)
        .client(small())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 16384 bytes"), "{err}");

    upstream.set(|a| a.body = "{\"keys\": 5}".into());
    let err = RemoteJwks::builder(&url)
        .client(small())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"keys\" array"), "{err}");

    // A published set with a key of an unusable kind keeps its usable keys.
    let doc = format!(
        "{{\"keys\": [{{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}}, {}]}}",
        serde_json::from_str::<serde_json::Value>(&world.jwks()).unwrap()["keys"][0]
    );
    upstream.set(|a| a.body = doc);
    let keys = RemoteJwks::builder(&url)
        .client(small())
        .build()
        .await
        .unwrap();
    assert_eq!(keys.stats().keys, 1);
    verifier(keys)
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();

    // Plain http is refused unless allowed by name.
    let err = RemoteJwks::builder(&url).build().await.unwrap_err();
    assert!(err.to_string().contains("plain http"), "{err}");
}

#[tokio::test]
async fn https_keys_are_verified_with_the_given_ca() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    let tls = world
        .tls_builder()
        .accept_any_client_certificate()
        .allow_anonymous_clients()
        .build()
        .unwrap();
    let server = serve_tls(routes(&upstream), tls).await;
    let url = format!("https://localhost:{}/jwks", server.addr.port());

    let client = AuthServerClient::builder()
        .ca_pem(&world.ca.cert_pem)
        .build()
        .unwrap();
    let keys = RemoteJwks::builder(&url)
        .client(client)
        .build()
        .await
        .unwrap();
    verifier(keys)
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();

    // Another CA: the handshake fails, and the error says so.
    let other = pki::Ca::root("Other CA");
    let client = AuthServerClient::builder()
        .ca_pem(&other.cert_pem)
        .build()
        .unwrap();
    let err = RemoteJwks::builder(&url)
        .client(client)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert_eq!(upstream.requests(), 1);
}

#[tokio::test]
async fn discovery_checks_the_issuer_and_finds_the_jwks() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}");
    let doc = serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("http://{addr}/jwks"),
        "introspection_endpoint": format!("http://{addr}/introspect"),
    })
    .to_string();
    let app = routes(&upstream)
        // A catch-all page where RFC 8414's document would be: not used, and the
        // OpenID Connect one is read instead.
        .route(
            "/.well-known/oauth-authorization-server",
            get(|| async { "<html>not here</html>" }),
        )
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let doc = doc.clone();
                async move { ([("content-type", "application/json")], doc) }
            }),
        );
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let _server = TestServer::new(addr, task);

    let client = loopback_client();
    // RFC 8414's path answers a page, not metadata: OpenID Connect's is used.
    let metadata = discover(&client, &issuer).await.unwrap();
    assert_eq!(
        metadata.jwks_uri.as_deref(),
        Some(format!("http://{addr}/jwks").as_str())
    );
    assert_eq!(
        metadata.introspection_endpoint.as_deref(),
        Some(format!("http://{addr}/introspect").as_str())
    );
    let keys = RemoteJwks::builder(metadata.jwks_uri.unwrap())
        .client(client.clone())
        .build()
        .await
        .unwrap();
    assert!(keys.key_set(Some("k1")).await.is_ok());

    // An issuer the document does not name is refused.
    let err = discover(&client, &format!("{issuer}/")).await.unwrap_err();
    assert!(err.to_string().contains("instead of"), "{err}");
}

#[tokio::test]
async fn an_authorization_server_that_wants_mtls_gets_the_client_certificate() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    // The world's TLS configuration requires a client certificate from its CA.
    let server = serve_tls(routes(&upstream), world.tls()).await;
    let url = format!("https://localhost:{}/jwks", server.addr.port());

    let anonymous = AuthServerClient::builder()
        .ca_pem(&world.ca.cert_pem)
        .build()
        .unwrap();
    let err = RemoteJwks::builder(&url)
        .client(anonymous)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&url), "{err}");
    assert_eq!(upstream.requests(), 0);

    let with_certificate = AuthServerClient::builder()
        .ca_pem(&world.ca.cert_pem)
        .client_certificate_pem(&world.a.chain_pem, &world.a.key_pem)
        .build()
        .unwrap();
    let keys = RemoteJwks::builder(&url)
        .client(with_certificate)
        .build()
        .await
        .unwrap();
    verifier(keys)
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
    assert_eq!(upstream.requests(), 1);

    // A key that does not belong to the certificate is refused at build.
    let err = AuthServerClient::builder()
        .client_certificate_pem(&world.a.chain_pem, &world.b.key_pem)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("client identity"), "{err}");
}

#[tokio::test]
async fn durations_that_would_overflow_a_deadline_are_refused() {
    let month = Duration::from_secs(30 * 24 * 3600);
    for builder in [
        RemoteJwks::builder("http://127.0.0.1:9/jwks")
            .max_age_bounds(Duration::from_secs(60), Duration::MAX),
        RemoteJwks::builder("http://127.0.0.1:9/jwks")
            .max_staleness(month + Duration::from_secs(1)),
        RemoteJwks::builder("http://127.0.0.1:9/jwks").default_max_age(Duration::MAX),
        RemoteJwks::builder("http://127.0.0.1:9/jwks").refetch_interval(Duration::ZERO),
        RemoteJwks::builder("http://127.0.0.1:9/jwks")
            .max_age_bounds(Duration::from_secs(120), Duration::from_secs(60)),
    ] {
        let err = builder.client(loopback_client()).build().await.unwrap_err();
        assert!(
            !err.to_string().contains("cannot connect"),
            "refused before fetching: {err}"
        );
    }
}

#[tokio::test]
async fn a_jwks_emptied_at_the_server_withdraws_its_keys_at_once() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    upstream.set(|a| a.cache_control = Some("max-age=1"));
    let server = serve_http(routes(&upstream)).await;
    let keys = RemoteJwks::builder(format!("http://{}/jwks", server.addr))
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let stats = keys.clone();
    let layer = MtlsBoundTokenLayer::builder()
        .key_source(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let tls = serve_tls(app(layer), world.tls()).await;
    let authorization = bearer(&world.token_for_a("read"));
    let headers = [("authorization", authorization.as_slice())];
    let ask = || call(&tls, &world, Some(&world.a), "/whoami", &headers);
    assert_eq!(ask().await.status, StatusCode::OK);
    // The server withdraws every key (a compromise, say): not a failure to serve stale
    // keys through, but a set with nothing in it; the cached token goes too.
    upstream.set(|a| a.body = "{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}".into());
    assert!(
        eventually(Duration::from_secs(5), || stats.stats().keys == 0).await,
        "{:?}",
        stats.stats()
    );
    assert_eq!(ask().await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(stats.stats().failed_fetches, 0);
}

#[tokio::test]
async fn past_the_staleness_bound_cached_tokens_go_too() {
    let world = World::new();
    let upstream = Upstream::new(world.jwks());
    upstream.set(|a| a.cache_control = Some("max-age=1"));
    let server = serve_http(routes(&upstream)).await;
    let keys = RemoteJwks::builder(format!("http://{}/jwks", server.addr))
        .client(loopback_client())
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .max_staleness(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let layer = MtlsBoundTokenLayer::builder()
        .key_source(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let tls = serve_tls(app(layer), world.tls()).await;
    let authorization = bearer(&world.token_for_a("read"));
    let headers = [("authorization", authorization.as_slice())];
    let ask = || call(&tls, &world, Some(&world.a), "/whoami", &headers);
    assert_eq!(ask().await.status, StatusCode::OK);
    upstream.set(|a| a.status = StatusCode::SERVICE_UNAVAILABLE);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Cached a moment ago, but its key can no longer be vouched for.
    assert_eq!(ask().await.status, StatusCode::SERVICE_UNAVAILABLE);
}
