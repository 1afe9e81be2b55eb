//! Per-request cost of [`MtlsBoundTokenLayer`] for ES256, RS256 and EdDSA access tokens.
//!
//! One criterion group per algorithm, each with three benchmarks on the same token:
//!
//! - `raw_jsonwebtoken_verify`: `jsonwebtoken::decode` of the token into a claims map,
//!   with the key of the JWKS and the checks the layer makes (`iss`, `aud`, `exp`,
//!   `nbf`). The floor: what verifying the signature and the claims costs anyway.
//! - `layer_miss`: one request through the layer (verified-token cache off) around a
//!   trivial service answering 200: connection certificate (parsed once per connection,
//!   as in a real server), bearer header, JWT verification, `cnf.x5t#S256` binding,
//!   `ClientIdentity`.
//! - `layer_cache_hit`: the same with the cache on (the default) and the token already
//!   verified: SHA-256 of the token and a cache lookup instead of the signature check;
//!   the binding and the identity as on a miss.
//! - `no_layer`: the same request to the same trivial service, without the layer.
//!
//! Requests are built outside the timed part. Before measuring, each group checks that
//! the layer answers 200 to the bound token and 401 to a token bound to another
//! certificate, so the numbers cannot come from a refusal path.
//!
//! Targets: `layer_miss` ≤ 1.1 × `raw_jsonwebtoken_verify` + 3 µs; `layer_cache_hit` ≤
//! `no_layer` + 2 µs.
//!
//! Run with `cargo bench --bench layer`.

#[path = "../tests/common/pki.rs"]
mod pki;

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request, StatusCode, header};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use mtls_bound_token::{ConnectionInfo, MtlsBoundTokenLayer, PeerCertificate};
use pki::{Ca, SigningKey, Subject};
use serde_json::{Map, Value};
use tower::{Layer, Service, ServiceExt};

const ISS: &str = "https://as.bench.example";
const AUD: &str = "https://api.bench.example";

/// The innermost service: 200 with an empty body, whatever the request.
async fn ok(_request: Request<Body>) -> Result<Response, Infallible> {
    Ok(Response::new(Body::empty()))
}

/// How the services' futures are run to completion: polled once when they finish
/// without waiting (the layer with a static key set does), else on a runtime. The same
/// driver runs all three benchmarks of a group.
enum Driver {
    Poll,
    Runtime(tokio::runtime::Runtime),
}

impl Driver {
    fn run<F: Future>(&self, future: F) -> F::Output {
        match self {
            Self::Poll => future
                .now_or_never()
                .expect("a future that completed on its first poll during the probe now pends"),
            Self::Runtime(runtime) => runtime.block_on(future),
        }
    }
}

/// One request through `service`: readiness, then the call.
async fn serve<S>(service: &mut S, request: Request<Body>) -> Response
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
{
    let Ok(ready) = service.ready().await;
    let Ok(response) = ready.call(request).await;
    response
}

/// Everything one algorithm's group needs, made before anything is measured.
struct Fixture {
    name: &'static str,
    token: String,
    authorization: HeaderValue,
    /// The same claims, bound to another client's certificate.
    foreign_authorization: HeaderValue,
    connection: ConnectionInfo,
    layer: MtlsBoundTokenLayer,
    uncached: MtlsBoundTokenLayer,
    decoding_key: DecodingKey,
    validation: Validation,
}

impl Fixture {
    fn new(name: &'static str, key: SigningKey) -> Self {
        let ca = Ca::root("Bench Root CA");
        let leaf = ca.client(&Subject::cn("bench-client"));
        let other = ca.client(&Subject::cn("other-client"));
        let token = key.sign(&pki::claims(ISS, AUD, "bench", "read", Some(&leaf)));
        let foreign = key.sign(&pki::claims(ISS, AUD, "bench", "read", Some(&other)));

        // Building the layer also installs jsonwebtoken's crypto provider, which the
        // raw benchmark relies on.
        let layer = MtlsBoundTokenLayer::builder()
            .issuer(ISS)
            .audience(AUD)
            .jwks_json(pki::jwks(&[&key]))
            .build()
            .expect("layer configuration");
        let uncached = MtlsBoundTokenLayer::builder()
            .issuer(ISS)
            .audience(AUD)
            .jwks_json(pki::jwks(&[&key]))
            .without_token_cache()
            .build()
            .expect("layer configuration");

        let jwk: Jwk = serde_json::from_value(key.jwk.clone()).expect("JWK of the signing key");
        let decoding_key = DecodingKey::from_jwk(&jwk).expect("decoding key from the JWK");
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[ISS]);
        validation.set_audience(&[AUD]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;

        // Parsed once, as at the end of a TLS handshake; each request shares it.
        let certificate = PeerCertificate::from_der(&leaf.cert_der).expect("client certificate");
        let peer: SocketAddr = ([127, 0, 0, 1], 50_000).into();
        let connection = ConnectionInfo::new(peer, Some(Arc::new(certificate)));

        let bearer = |token: &str| {
            HeaderValue::try_from(format!("Bearer {token}")).expect("Authorization header")
        };
        Self {
            name,
            authorization: bearer(&token),
            foreign_authorization: bearer(&foreign),
            token,
            connection,
            layer,
            uncached,
            decoding_key,
            validation,
        }
    }

    fn request_with(&self, authorization: &HeaderValue) -> Request<Body> {
        let mut request = Request::builder()
            .uri("/resource")
            .body(Body::empty())
            .expect("request");
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, authorization.clone());
        request
            .extensions_mut()
            .insert(ConnectInfo(self.connection.clone()));
        request
    }

    fn request(&self) -> Request<Body> {
        self.request_with(&self.authorization)
    }

    fn raw_verify(&self) -> jsonwebtoken::TokenData<Map<String, Value>> {
        jsonwebtoken::decode::<Map<String, Value>>(
            black_box(self.token.as_str()),
            &self.decoding_key,
            &self.validation,
        )
        .expect("raw verification")
    }
}

fn bench_algorithm(c: &mut Criterion, fixture: &Fixture) {
    let mut plain = tower::service_fn(ok);
    let mut guarded = fixture.layer.layer(tower::service_fn(ok));
    let mut uncached = fixture.uncached.layer(tower::service_fn(ok));

    // Probe: does the layer's future finish on its first poll? Then no runtime is
    // involved in any of the three benchmarks; otherwise all three use one.
    let driver = match serve(&mut guarded, fixture.request()).now_or_never() {
        Some(_) => Driver::Poll,
        None => {
            eprintln!(
                "{}: the layer's future pends; driving all benchmarks with block_on",
                fixture.name
            );
            Driver::Runtime(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime"),
            )
        }
    };

    // Measure the path we mean to measure.
    let claims = fixture.raw_verify().claims;
    assert_eq!(claims.get("client_id"), Some(&Value::from("bench")));
    let accepted = driver.run(serve(&mut guarded, fixture.request()));
    assert_eq!(
        accepted.status(),
        StatusCode::OK,
        "{}: bound token",
        fixture.name
    );
    let foreign = fixture.request_with(&fixture.foreign_authorization);
    let refused = driver.run(serve(&mut guarded, foreign));
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "{}: token bound to another certificate",
        fixture.name
    );
    let refused = driver.run(serve(
        &mut uncached,
        fixture.request_with(&fixture.foreign_authorization),
    ));
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let accepted = driver.run(serve(&mut uncached, fixture.request()));
    assert_eq!(accepted.status(), StatusCode::OK);
    let unguarded = driver.run(serve(&mut plain, fixture.request()));
    assert_eq!(unguarded.status(), StatusCode::OK);

    let mut group = c.benchmark_group(fixture.name);
    group.bench_function("raw_jsonwebtoken_verify", |b| {
        b.iter(|| fixture.raw_verify())
    });
    group.bench_function("layer_miss", |b| {
        b.iter_batched(
            || fixture.request(),
            |request| driver.run(serve(&mut uncached, request)),
            BatchSize::SmallInput,
        )
    });
    let misses = fixture.layer.token_cache_stats().expect("cache on").misses;
    group.bench_function("layer_cache_hit", |b| {
        b.iter_batched(
            || fixture.request(),
            |request| driver.run(serve(&mut guarded, request)),
            BatchSize::SmallInput,
        )
    });
    // Every measured request of the cached layer was a hit.
    assert_eq!(
        fixture.layer.token_cache_stats().expect("cache on").misses,
        misses
    );
    group.bench_function("no_layer", |b| {
        b.iter_batched(
            || fixture.request(),
            |request| driver.run(serve(&mut plain, request)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn es256(c: &mut Criterion) {
    bench_algorithm(c, &Fixture::new("ES256", SigningKey::es256("bench-es256")));
}

fn rs256(c: &mut Criterion) {
    bench_algorithm(c, &Fixture::new("RS256", SigningKey::rs256("bench-rs256")));
}

fn eddsa(c: &mut Criterion) {
    bench_algorithm(c, &Fixture::new("EdDSA", SigningKey::eddsa("bench-eddsa")));
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(60)
}

criterion_group! {
    name = benches;
    config = config();
    targets = es256, rs256, eddsa
}
criterion_main!(benches);
