//! Opaque tokens by introspection (RFC 7662) and several issuers behind one layer,
//! against an in-process authorization server on loopback.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::pki::{self, SigningKey};
use common::*;
use mtls_bound_token::remote::{AuthServerClient, IntrospectionVerifier};
use mtls_bound_token::token::{IssuerRouter, JwtVerifier};
use mtls_bound_token::{AuthReason, MtlsBoundTokenLayer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The introspection endpoint: answers by token, checks the client's credentials, and
/// counts what it is asked.
#[derive(Clone, Default)]
struct Endpoint(Arc<Mutex<EndpointState>>);

#[derive(Default)]
struct EndpointState {
    answers: HashMap<String, Value>,
    requests: u64,
    /// The last form and Authorization header received.
    last_form: Vec<(String, String)>,
    last_authorization: Option<String>,
    down: bool,
}

impl Endpoint {
    fn answer(&self, token: &str, answer: Value) {
        self.0
            .lock()
            .unwrap()
            .answers
            .insert(token.to_owned(), answer);
    }
    fn requests(&self) -> u64 {
        self.0.lock().unwrap().requests
    }
    fn form(&self, name: &str) -> Option<String> {
        let state = self.0.lock().unwrap();
        state
            .last_form
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

const BASIC_ID: &str = "resource server";
const BASIC_SECRET: &str = "s3cret:+/";

async fn introspect(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut state = endpoint.0.lock().unwrap();
    state.requests += 1;
    state.last_form = form.clone();
    state.last_authorization = authorization.clone();
    if state.down {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    // client_secret_basic (RFC 6749 §2.3.1: form-encoded, then Basic) or _post.
    let expected_basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", "resource+server", "s3cret%3A%2B%2F"))
    );
    let authenticated = authorization.as_deref() == Some(expected_basic.as_str())
        || (field("client_id").as_deref() == Some(BASIC_ID)
            && field("client_secret").as_deref() == Some(BASIC_SECRET));
    if !authenticated {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_client\"}").into_response();
    }
    let token = field("token").unwrap_or_default();
    let answer = state
        .answers
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    ([("content-type", "application/json")], answer.to_string()).into_response()
}

async fn start_endpoint(endpoint: &Endpoint) -> (TestServer, String) {
    let app = Router::new()
        .route("/introspect", post(introspect))
        .with_state(endpoint.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (
        TestServer::new(addr, task),
        format!("http://{addr}/introspect"),
    )
}

fn client() -> AuthServerClient {
    AuthServerClient::builder()
        .allow_http_for_loopback_and_tests()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn introspection(url: &str) -> mtls_bound_token::remote::IntrospectionVerifierBuilder {
    IntrospectionVerifier::builder(url)
        .client(client())
        .client_secret_basic(BASIC_ID, BASIC_SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

fn active_for(world_thumbprint: &str, scope: &str) -> Value {
    json!({
        "active": true,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client-a",
        "client_id": "client-a",
        "scope": scope,
        "exp": pki::now() + 300,
        "cnf": {"x5t#S256": world_thumbprint},
    })
}

async fn get(
    server: &TestServer,
    world: &World,
    leaf: &pki::Leaf,
    path: &str,
    token: &str,
) -> Answer {
    call(
        server,
        world,
        Some(leaf),
        path,
        &[("authorization", &bearer(token))],
    )
    .await
}

#[tokio::test]
async fn opaque_tokens_are_bound_and_scoped_like_jwts() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    endpoint.answer("opaque-a", active_for(&world.a.thumbprint, "read"));
    endpoint.answer(
        "opaque-admin",
        active_for(&world.a.thumbprint, "read admin"),
    );
    let verifier = introspection(&url).build().unwrap();
    let stats = verifier.clone();
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;

    let answer = get(&server, &world, &world.a, "/whoami", "opaque-a").await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["client_id"], "client-a");
    assert_eq!(body["sub"], "client-a");
    assert_eq!(body["scopes"], json!(["read"]));
    assert_eq!(body["bound"], true);
    assert_eq!(
        endpoint.form("token_type_hint").as_deref(),
        Some("access_token")
    );
    assert_eq!(endpoint.form("token").as_deref(), Some("opaque-a"));

    // Stolen: the answer's cnf names A's certificate, B presents its own.
    let answer = get(&server, &world, &world.b, "/whoami", "opaque-a").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    // Scopes from the answer.
    assert_eq!(
        get(&server, &world, &world.a, "/admin", "opaque-a")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&server, &world, &world.a, "/admin", "opaque-admin")
            .await
            .status,
        StatusCode::OK
    );
    // Unknown and inactive tokens: 401.
    let answer = get(&server, &world, &world.a, "/whoami", "never-issued").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Answers are cached by the token's hash: asking again costs the server nothing.
    let before = endpoint.requests();
    for _ in 0..5 {
        assert_eq!(
            get(&server, &world, &world.a, "/whoami", "opaque-a")
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            get(&server, &world, &world.a, "/whoami", "never-issued")
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(endpoint.requests(), before);
    assert!(stats.cached_answers() >= 2);
}

#[tokio::test]
async fn a_revoked_token_is_refused_once_its_cached_answer_ends() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    endpoint.answer("opaque-a", active_for(&world.a.thumbprint, "read"));
    let cached = introspection(&url)
        .cache_ttl(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .unwrap();
    let uncached = introspection(&url)
        .cache_ttl(Duration::ZERO, Duration::ZERO)
        .build()
        .unwrap();
    let parts = http::Request::new(()).into_parts().0;
    use mtls_bound_token::token::TokenVerifier;
    cached.verify("opaque-a", &parts).await.unwrap();
    uncached.verify("opaque-a", &parts).await.unwrap();

    endpoint.answer("opaque-a", json!({"active": false}));
    let err = uncached.verify("opaque-a", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Inactive);
    // Cached for at most its TTL.
    assert!(cached.verify("opaque-a", &parts).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = cached.verify("opaque-a", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Inactive);

    // An answer is never reused past the token's exp.
    let mut soon = active_for(&world.a.thumbprint, "read");
    // Inside the 30 s leeway for two more seconds (one would race a second's turn).
    soon["exp"] = json!(pki::now() - 28);
    endpoint.answer("short-lived", soon);
    let long = introspection(&url)
        .cache_ttl(Duration::from_secs(3600), Duration::from_secs(1))
        .build()
        .unwrap();
    assert!(long.verify("short-lived", &parts).await.is_ok());
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let err = long.verify("short-lived", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Expired);
}

#[tokio::test]
async fn client_authentication_and_an_unavailable_endpoint() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (server, url) = start_endpoint(&endpoint).await;
    endpoint.answer("opaque-a", active_for(&world.a.thumbprint, "read"));
    let parts = http::Request::new(()).into_parts().0;
    use mtls_bound_token::token::TokenVerifier;

    // client_secret_basic, form-encoded before Basic (RFC 6749 §2.3.1).
    let basic = introspection(&url).build().unwrap();
    basic.verify("opaque-a", &parts).await.unwrap();
    assert_eq!(endpoint.form("client_secret"), None);

    // client_secret_post.
    let post = IntrospectionVerifier::builder(&url)
        .client(client())
        .client_secret_post(BASIC_ID, BASIC_SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    post.verify("opaque-a", &parts).await.unwrap();
    assert_eq!(endpoint.form("client_id").as_deref(), Some(BASIC_ID));
    assert!(endpoint.0.lock().unwrap().last_authorization.is_none());

    // tls_client_auth: the client id in the form, no secret anywhere (the certificate
    // is the AuthServerClient's).
    let tls = IntrospectionVerifier::builder(&url)
        .client(client())
        .tls_client_auth("rs-by-certificate")
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let _ = tls.verify("opaque-a", &parts).await;
    assert_eq!(
        endpoint.form("client_id").as_deref(),
        Some("rs-by-certificate")
    );
    assert_eq!(endpoint.form("client_secret"), None);
    assert!(endpoint.0.lock().unwrap().last_authorization.is_none());

    // Wrong credentials are our misconfiguration: 503, never 401 for a good token.
    let wrong = IntrospectionVerifier::builder(&url)
        .client(client())
        .client_secret_basic(BASIC_ID, "wrong")
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let err = wrong.verify("opaque-a", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Unavailable, "{err}");

    // The endpoint fails, then is gone: 503 with Retry-After through the layer.
    endpoint.0.lock().unwrap().down = true;
    let err = introspection(&url)
        .build()
        .unwrap()
        .verify("opaque-a", &parts)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthReason::Unavailable);
    drop(server);
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(introspection(&url).build().unwrap())
        .build()
        .unwrap();
    let api = serve_tls(app(layer), world.tls()).await;
    let answer = get(&api, &world, &world.a, "/whoami", "opaque-a").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers["retry-after"], "5");
}

#[tokio::test]
async fn answers_for_other_issuers_audiences_or_without_active_are_refused() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    let parts = http::Request::new(()).into_parts().0;
    use mtls_bound_token::token::TokenVerifier;
    let verifier = introspection(&url).build().unwrap();
    let mut cases = Vec::new();
    for (name, change) in [
        ("other-issuer", json!({"iss": "https://other.test"})),
        ("other-audience", json!({"aud": "https://other.test"})),
        ("active-as-string", json!({"active": "true"})),
        ("expired", json!({"exp": pki::now() - 3600})),
    ] {
        let mut answer = active_for(&world.a.thumbprint, "read");
        for (k, v) in change.as_object().unwrap() {
            answer[k] = v.clone();
        }
        endpoint.answer(name, answer);
        let err = verifier.verify(name, &parts).await.unwrap_err();
        cases.push((name, err.reason()));
    }
    assert_eq!(
        cases,
        [
            ("other-issuer", AuthReason::WrongIssuer),
            ("other-audience", AuthReason::WrongAudience),
            ("active-as-string", AuthReason::Inactive),
            ("expired", AuthReason::Expired),
        ]
    );
}

#[tokio::test]
async fn several_issuers_each_verified_with_its_own_keys_and_opaque_tokens_introspected() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    endpoint.answer("opaque-a", active_for(&world.a.thumbprint, "read"));
    let (k1, k2) = (&world.key, SigningKey::es256("k2"));
    const OTHER: &str = "https://as-2.test";
    let jwt = |issuer: &str, key: &SigningKey| {
        JwtVerifier::builder()
            .issuer(issuer)
            .audience(AUDIENCE)
            .jwks_json(pki::jwks(&[key]))
            .build()
            .unwrap()
    };
    let router = IssuerRouter::builder()
        .issuer(jwt(ISSUER, k1))
        .issuer(jwt(OTHER, &k2))
        .otherwise(introspection(&url).build().unwrap())
        .build()
        .unwrap();
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(router)
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;
    let token = |issuer: &str, key: &SigningKey| {
        key.sign(&pki::claims(
            issuer,
            AUDIENCE,
            "client-a",
            "read",
            Some(&world.a),
        ))
    };

    for good in [token(ISSUER, k1), token(OTHER, &k2), "opaque-a".to_owned()] {
        assert_eq!(
            get(&server, &world, &world.a, "/whoami", &good)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            get(&server, &world, &world.b, "/whoami", &good)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Issuer 2's token signed with issuer 1's key (kid k1 is unknown to issuer 2).
    let forged = token(OTHER, k1);
    assert_eq!(
        get(&server, &world, &world.a, "/whoami", &forged)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Issuer 2's kid, issuer 1's key material.
    let mut header = k1.header();
    header.kid = Some("k2".into());
    let forged = k1.sign_with(
        header,
        &pki::claims(OTHER, AUDIENCE, "client-a", "read", Some(&world.a)),
    );
    assert_eq!(
        get(&server, &world, &world.a, "/whoami", &forged)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Without a fallback, an unknown issuer is 401 (and never introspected).
    let router = IssuerRouter::builder()
        .issuer(jwt(ISSUER, k1))
        .build()
        .unwrap();
    let parts = http::Request::new(()).into_parts().0;
    use mtls_bound_token::token::TokenVerifier;
    let err = router
        .verify(&token("https://unknown.test", k1), &parts)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthReason::UnknownIssuer);
    let err = router.verify("opaque-a", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::MalformedToken);
    let err = IssuerRouter::builder()
        .issuer(jwt(ISSUER, k1))
        .issuer(jwt(ISSUER, &k2))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");

    // An introspected issuer routed by its own name: a JWS naming it is introspected.
    let by_name = IssuerRouter::builder()
        .issuer(introspection(&url).build().unwrap())
        .build()
        .unwrap();
    let jws = token(ISSUER, &k2);
    endpoint.answer(&jws, active_for(&world.a.thumbprint, "read"));
    let claims = by_name.verify(&jws, &parts).await.unwrap();
    assert_eq!(claims.client_id(), Some("client-a"));
    let err = by_name
        .verify(&token(OTHER, &k2), &parts)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), AuthReason::UnknownIssuer);
}

#[tokio::test]
async fn a_junk_token_sent_again_is_answered_from_the_cache() {
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    let verifier = Arc::new(introspection(&url).max_concurrent(2).build().unwrap());
    let parts = Arc::new(http::Request::new(()).into_parts().0);
    use mtls_bound_token::token::TokenVerifier;
    // Once answered, the same junk is refused from the cache.
    let err = verifier.verify("junk", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Inactive);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (verifier, parts) = (Arc::clone(&verifier), Arc::clone(&parts));
        tasks.push(tokio::spawn(async move {
            verifier.verify("junk", &parts).await.unwrap_err().reason()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), AuthReason::Inactive);
    }
    assert_eq!(endpoint.requests(), 1);
}

#[tokio::test]
async fn tokens_not_in_the_cache_are_introspected_at_most_so_often() {
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    let verifier = introspection(&url).max_per_second(5).build().unwrap();
    let parts = http::Request::new(()).into_parts().0;
    use mtls_bound_token::token::TokenVerifier;
    let mut reasons = Vec::new();
    for i in 0..20 {
        let err = verifier
            .verify(&format!("junk-{i}"), &parts)
            .await
            .unwrap_err();
        reasons.push(err.reason());
    }
    // Five asked (and inactive), the rest refused for now without asking.
    assert_eq!(endpoint.requests(), 5);
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == AuthReason::Inactive)
            .count(),
        5
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == AuthReason::Unavailable)
            .count(),
        15
    );
    // The next second has room again; answers already cached need none.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = verifier.verify("junk-0", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Inactive);
    assert_eq!(endpoint.requests(), 5);
    let err = verifier.verify("junk-19", &parts).await.unwrap_err();
    assert_eq!(err.reason(), AuthReason::Inactive);
    assert_eq!(endpoint.requests(), 6);
}

#[test]
fn introspection_settings_are_checked() {
    let url = "http://127.0.0.1:9/introspect";
    let day = Duration::from_secs(24 * 3600);
    assert!(introspection(url).cache_ttl(day, day).build().is_ok());
    for builder in [
        introspection(url).cache_ttl(Duration::MAX, day),
        introspection(url).cache_ttl(day, day + Duration::from_secs(1)),
        introspection(url).max_concurrent(0),
        introspection(url).max_per_second(0),
        introspection(url).leeway(Duration::from_secs(301)),
        IntrospectionVerifier::builder(url)
            .client(client())
            .client_secret_basic("a", "b")
            .audience(AUDIENCE),
        IntrospectionVerifier::builder(url)
            .client(client())
            .client_secret_basic("a", "b")
            .issuer(ISSUER),
    ] {
        assert!(builder.build().is_err());
    }
}

#[tokio::test]
async fn through_the_layer_a_revoked_token_passes_no_longer_than_the_introspection_ttl() {
    let world = World::new();
    let endpoint = Endpoint::default();
    let (_as, url) = start_endpoint(&endpoint).await;
    endpoint.answer("opaque-a", active_for(&world.a.thumbprint, "read"));
    // The layer's own token cache is on (the default); it keeps no introspected claims.
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(
            introspection(&url)
                .cache_ttl(Duration::ZERO, Duration::ZERO)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(layer.token_cache_stats().is_some());
    let server = serve_tls(app(layer), world.tls()).await;
    assert_eq!(
        get(&server, &world, &world.a, "/whoami", "opaque-a")
            .await
            .status,
        StatusCode::OK
    );
    endpoint.answer("opaque-a", json!({"active": false}));
    assert_eq!(
        get(&server, &world, &world.a, "/whoami", "opaque-a")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
