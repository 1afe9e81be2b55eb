//! What remote authorization servers cost per request, once their answers are cached.
//!
//! - `jwt/file_key` vs `jwt/remote_key_cached`: `JwtVerifier::verify_token` of the same
//!   ES256 token with the key from a JWKS document, and with the key from a `RemoteJwks`
//!   that fetched it from an HTTP server on loopback (every request after the first is
//!   served from its cache). Target: equal within noise.
//! - `introspection/cache_hit`: `IntrospectionVerifier::verify_token` of an opaque token
//!   whose answer is cached (SHA-256 of the token, cache lookup, claims clone).
//!
//! Before measuring, each benchmark checks that it verifies (and that the cache is hit:
//! the loopback servers count what they are asked). Run with `cargo bench --bench remote`.

#[path = "../tests/common/pki.rs"]
mod pki;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group, criterion_main};
use mtls_bound_token::remote::{AuthServerClient, IntrospectionVerifier, RemoteJwks};
use mtls_bound_token::token::JwtVerifier;
use pki::{Ca, SigningKey, Subject};
use serde_json::json;

const ISS: &str = "https://as.bench.example";
const AUD: &str = "https://api.bench.example";

/// An HTTP server on loopback answering GET /jwks and POST /introspect, counting both.
fn serve(
    runtime: &tokio::runtime::Runtime,
    jwks: String,
    introspection: String,
) -> (String, Arc<AtomicU64>) {
    let asked = Arc::new(AtomicU64::new(0));
    let (jwks_count, introspect_count) = (Arc::clone(&asked), Arc::clone(&asked));
    let app = Router::new()
        .route(
            "/jwks",
            get(move || {
                jwks_count.fetch_add(1, Ordering::Relaxed);
                let jwks = jwks.clone();
                async move { jwks }
            }),
        )
        .route(
            "/introspect",
            post(move || {
                introspect_count.fetch_add(1, Ordering::Relaxed);
                let answer = introspection.clone();
                async move { answer }
            }),
        );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    runtime.spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (base, asked)
}

fn remote(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ca = Ca::root("Bench CA");
    let client_cert = ca.client(&Subject::cn("bench-client"));
    let key = SigningKey::es256("bench-es256");
    let jwks = pki::jwks(&[&key]);
    let token = key.sign(&pki::claims(ISS, AUD, "svc", "read", Some(&client_cert)));
    let answer = json!({
        "active": true, "iss": ISS, "aud": AUD, "client_id": "svc", "scope": "read",
        "exp": pki::now() + 3600, "cnf": {"x5t#S256": client_cert.thumbprint},
    })
    .to_string();
    let (base, asked) = serve(&runtime, jwks.clone(), answer);
    let client = AuthServerClient::builder()
        .allow_http_for_loopback_and_tests()
        .build()
        .expect("client");

    let file_key = JwtVerifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .jwks_json(&jwks)
        .build()
        .expect("verifier");
    let remote_keys = runtime
        .block_on(
            RemoteJwks::builder(format!("{base}/jwks"))
                .client(client.clone())
                .build(),
        )
        .expect("remote keys");
    let remote_key = JwtVerifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .key_source(remote_keys)
        .build()
        .expect("verifier");
    let introspection = IntrospectionVerifier::builder(format!("{base}/introspect"))
        .client(client)
        .client_secret_basic("rs", "secret")
        .issuer(ISS)
        .audience(AUD)
        .build()
        .expect("introspection");

    // Probes: each verifies, and after the first round nothing reaches the server.
    for _ in 0..2 {
        runtime
            .block_on(file_key.verify_token(&token))
            .expect("file key verifies");
        runtime
            .block_on(remote_key.verify_token(&token))
            .expect("remote key verifies");
        runtime
            .block_on(introspection.verify_token("opaque"))
            .expect("introspection verifies");
    }
    let before = asked.load(Ordering::Relaxed);
    assert_eq!(before, 2, "one JWKS fetch and one introspection");

    let mut group = c.benchmark_group("jwt");
    group.bench_function("file_key", |b| {
        b.iter(|| {
            runtime
                .block_on(file_key.verify_token(black_box(&token)))
                .expect("verifies")
        })
    });
    group.bench_function("remote_key_cached", |b| {
        b.iter(|| {
            runtime
                .block_on(remote_key.verify_token(black_box(&token)))
                .expect("verifies")
        })
    });
    group.finish();
    let mut group = c.benchmark_group("introspection");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            runtime
                .block_on(introspection.verify_token(black_box("opaque")))
                .expect("verifies")
        })
    });
    group.finish();
    assert_eq!(
        asked.load(Ordering::Relaxed),
        before,
        "every measured request was a cache hit"
    );
}

criterion_group!(benches, remote);
criterion_main!(benches);
