//! The verified-token cache: repeated tokens skip verification, but never the binding
//! or scope checks, never past `exp`, and never past their key's stay in the key set.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use common::pki::{self, Leaf, SigningKey};
use common::*;
use http::request::Parts;
use http::{Request, StatusCode};
use mtls_bound_token::remote::{AuthServerClient, RemoteJwks};
use mtls_bound_token::token::{JwtVerifier, TokenVerifier, VerifyFuture};
use mtls_bound_token::{ConnectionInfo, MtlsBoundTokenLayer, PeerCertificate};
use tower::ServiceExt;

/// Counts the verifications that reach the JWT verifier.
#[derive(Clone)]
struct Counting {
    inner: Arc<JwtVerifier>,
    calls: Arc<AtomicU64>,
}

impl TokenVerifier for Counting {
    fn verify<'a>(&'a self, token: &'a str, request: &'a Parts) -> VerifyFuture<'a> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.verify(token, request)
    }
}

fn counting(keys: JwtVerifier) -> (Counting, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    (
        Counting {
            inner: Arc::new(keys),
            calls: Arc::clone(&calls),
        },
        calls,
    )
}

fn jwt(world: &World) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .build()
        .unwrap()
}

/// One request through `layer` from a connection that presented `leaf`.
async fn send(layer: &MtlsBoundTokenLayer, leaf: &Leaf, path: &str, token: &str) -> Response {
    let certificate = Arc::new(PeerCertificate::from_der(&leaf.cert_der).unwrap());
    let mut request = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(ConnectionInfo::new(
            "127.0.0.1:4000".parse().unwrap(),
            Some(certificate),
        )));
    app(layer.clone()).oneshot(request).await.unwrap()
}

#[tokio::test]
async fn a_repeated_token_is_verified_once_and_its_binding_checked_every_time() {
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let token = world.token_for_a("read");

    for _ in 0..10 {
        assert_eq!(
            send(&layer, &world.a, "/whoami", &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    let stats = layer.token_cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.entries), (9, 1, 1));

    // Cached, and still stolen with B's certificate; still short of scope admin.
    assert_eq!(
        send(&layer, &world.b, "/whoami", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&layer, &world.a, "/admin", &token).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);

    // Refusals are not cached: each bad token is verified again.
    let other = SigningKey::es256("k1");
    let forged = other.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client-a",
        "read",
        Some(&world.a),
    ));
    for _ in 0..3 {
        assert_eq!(
            send(&layer, &world.a, "/whoami", &forged).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn without_the_cache_every_request_is_verified() {
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .without_token_cache()
        .build()
        .unwrap();
    let token = world.token_for_a("read");
    for _ in 0..5 {
        assert_eq!(
            send(&layer, &world.a, "/whoami", &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 5);
    assert!(layer.token_cache_stats().is_none());
}

#[tokio::test]
async fn an_entry_ends_with_the_tokens_exp() {
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let mut claims = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    claims["exp"] = serde_json::json!(pki::now() + 2);
    let token = world.key.sign(&claims);
    assert_eq!(
        send(&layer, &world.a, "/whoami", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&layer, &world.a, "/whoami", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(2600)).await;
    // Past exp (within the verifier's leeway, so still accepted): verified again, and
    // not cached any more.
    for _ in 0..2 {
        assert_eq!(
            send(&layer, &world.a, "/whoami", &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn a_key_that_leaves_the_jwks_evicts_what_it_verified() {
    let world = World::new();
    let k2 = SigningKey::es256("k2");
    let jwks = Arc::new(std::sync::Mutex::new(pki::jwks(&[&world.key, &k2])));
    let served = Arc::clone(&jwks);
    let routes = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let body = served.lock().unwrap().clone();
            async move { ([("cache-control", "max-age=1")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = TestServer::new(
        addr,
        tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() }),
    );
    let keys = RemoteJwks::builder(format!("http://{addr}/jwks"))
        .client(
            AuthServerClient::builder()
                .allow_http_for_loopback_and_tests()
                .build()
                .unwrap(),
        )
        .refetch_interval(Duration::from_secs(1))
        .max_age_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let stats = keys.clone();
    let verifier = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .key_source(keys)
        .build()
        .unwrap();
    let (verifier, calls) = counting(verifier);
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let by_k1 = world.token_for_a("read");
    let by_k2 = k2.sign(&pki::claims(
        ISSUER,
        AUDIENCE,
        "client-a",
        "read",
        Some(&world.a),
    ));
    for token in [&by_k1, &by_k2, &by_k1, &by_k2] {
        assert_eq!(
            send(&layer, &world.a, "/whoami", token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2);

    // k1 leaves the JWKS; once the set is refreshed, k1's token is verified again (and
    // refused), while k2's, whose key stayed, is still served from the cache.
    *jwks.lock().unwrap() = pki::jwks(&[&k2]);
    let fetched = stats.stats().fetches;
    let mut refreshed = false;
    for _ in 0..100 {
        if stats.stats().fetches > fetched && stats.stats().keys == 1 {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refreshed, "{:?}", stats.stats());
    assert_eq!(
        send(&layer, &world.a, "/whoami", &by_k2).await.status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(
        send(&layer, &world.a, "/whoami", &by_k1).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[test]
fn cache_bounds_are_checked() {
    use mtls_bound_token::token::{CachingVerifier, MAX_TOKEN_CACHE_TTL};
    let world = World::new();
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(MAX_TOKEN_CACHE_TTL, day);
    assert!(CachingVerifier::with_bounds(jwt(&world), 1, 1, day).is_ok());
    for (entries, bytes, ttl) in [
        (0, 1, day),
        (1, 0, day),
        (1, 1, Duration::ZERO),
        (1, 1, day + Duration::from_secs(1)),
        (1, 1, Duration::MAX),
    ] {
        let err = CachingVerifier::with_bounds(jwt(&world), entries, bytes, ttl).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("at least 1") || text.contains("over the maximum of a day"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_fractional_exp_still_ends_the_entry() {
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let mut claims = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
    claims["exp"] = serde_json::json!(pki::now() as f64 + 1.5);
    let token = world.key.sign(&claims);
    for _ in 0..2 {
        assert_eq!(
            send(&layer, &world.a, "/whoami", &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        send(&layer, &world.a, "/whoami", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "verified again once exp passed"
    );
}

#[tokio::test]
async fn without_a_certificate_no_token_is_even_verified() {
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let mut request = Request::get("/whoami")
        .header(
            "authorization",
            format!("Bearer {}", world.token_for_a("read")),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(ConnectionInfo::new(
            "127.0.0.1:4000".parse().unwrap(),
            None,
        )));
    let response = app(layer).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn the_cache_is_bounded_by_the_bytes_it_holds() {
    use mtls_bound_token::token::{CachingVerifier, DEFAULT_TOKEN_CACHE_BYTES};
    assert_eq!(
        DEFAULT_TOKEN_CACHE_BYTES,
        32 * 1024 * 1024,
        "the documented default"
    );
    let world = World::new();
    // Room for a thousand entries by count, for fewer by bytes: each entry weighs its
    // claims (counted twice) and its overhead.
    let cache = CachingVerifier::with_bounds(jwt(&world), 1000, 64 * 1024, Duration::from_secs(60))
        .unwrap();
    let parts = Request::new(()).into_parts().0;
    for i in 0..100 {
        let mut claims = pki::claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a));
        claims["jti"] = serde_json::json!(format!("token-{i}"));
        cache
            .verify(&world.key.sign(&claims), &parts)
            .await
            .unwrap();
    }
    let stats = cache.stats();
    assert_eq!(stats.misses, 100);
    assert!(
        (1..100).contains(&stats.entries),
        "64 KiB holds fewer than all 100 entries: {}",
        stats.entries
    );
}

#[tokio::test(start_paused = true)]
async fn an_entry_lives_no_longer_than_the_ttl() {
    use mtls_bound_token::token::CachingVerifier;
    let world = World::new();
    let (verifier, calls) = counting(jwt(&world));
    let cache =
        CachingVerifier::with_bounds(verifier, 10, 1 << 20, Duration::from_secs(2)).unwrap();
    let parts = Request::new(()).into_parts().0;
    let token = world.token_for_a("read");
    cache.verify(&token, &parts).await.unwrap();
    tokio::time::advance(Duration::from_millis(1999)).await;
    cache.verify(&token, &parts).await.unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 1, "within the TTL: a hit");
    tokio::time::advance(Duration::from_millis(1)).await;
    cache.verify(&token, &parts).await.unwrap();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "at the TTL: verified again"
    );
}
