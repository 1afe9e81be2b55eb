//! How requests are read and answered: the Authorization header, RFC 6750 responses,
//! HTTP/2 and keep-alive, the error hook, extractors.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use mtls_bound_token::{
    ClientIdentity, ConnectionInfo, MtlsBoundTokenLayer, PeerCertificate, RequiredScope, WithScope,
};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn authorization_header_rules() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = world.token_for_a("read");
    let a = Some(&world.a);

    let answer = call(&server, &world, a, "/whoami", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge(),
        "Bearer",
        "no credentials: bare challenge"
    );

    let answer = call(
        &server,
        &world,
        a,
        "/whoami",
        &[("authorization", b"Basic dXNlcjpwYXNz")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge(),
        "Bearer",
        "another scheme: bare challenge"
    );

    let lower = format!("bearer {token}");
    let answer = call(
        &server,
        &world,
        a,
        "/whoami",
        &[("authorization", lower.as_bytes())],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "scheme is case-insensitive");

    let query = format!("/whoami?access_token={token}");
    let answer = call(&server, &world, a, &query, &[]).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "query tokens are not accepted"
    );
    assert_eq!(answer.challenge(), "Bearer");

    let oversized = format!("Bearer {}", "a".repeat(17 * 1024));
    type Headers = Vec<(&'static str, Vec<u8>)>;
    let bad_requests: Vec<(&str, Headers)> = vec![
        (
            "two Authorization headers",
            vec![
                ("authorization", bearer(&token)),
                ("authorization", bearer(&token)),
            ],
        ),
        (
            "non-UTF-8",
            vec![("authorization", b"Bearer \xc3\x28abc".to_vec())],
        ),
        ("oversized", vec![("authorization", oversized.into_bytes())]),
        ("empty bearer", vec![("authorization", b"Bearer".to_vec())]),
        (
            "not token68",
            vec![("authorization", b"Bearer a,b".to_vec())],
        ),
    ];
    for (case, headers) in bad_requests {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let answer = call(&server, &world, a, "/whoami", &headers).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{case}");
        assert!(
            answer
                .challenge()
                .starts_with("Bearer error=\"invalid_request\""),
            "{case}: {}",
            answer.challenge()
        );
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert_eq!(answer.json()["error"], "invalid_request");
        assert!(
            !answer.body.contains(&token),
            "{case}: the token is never echoed"
        );
    }
}

#[tokio::test]
async fn open_routes_and_unknown_routes() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let answer = call(&server, &world, Some(&world.a), "/healthz", &[]).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "ok")
    );
    let answer = call(&server, &world, Some(&world.a), "/nope", &[]).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hundreds_of_requests_on_one_connection() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = world.token_for_a("read");
    let config = client_config(&world.ca, leaf_identity(&world.a), &[b"http/1.1"]);
    let mut connection = Http1::open(server.addr, config).await.unwrap();
    for i in 0..300 {
        let answer = connection
            .send(get_request(
                "/whoami",
                &[("authorization", &bearer(&token))],
            ))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "request {i}");
    }
}

#[tokio::test]
async fn http2_over_alpn() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = world.token_for_a("read");
    let config = client_config(&world.ca, leaf_identity(&world.a), &[b"h2"]);
    let tls = connect(server.addr, config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    // Concurrent streams on one connection all carry the connection's certificate.
    let mut answers = Vec::new();
    for _ in 0..20 {
        let request = Request::get("https://localhost/whoami")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        answers.push(sender.send_request(request));
    }
    for answer in answers {
        let answer = collect(answer.await.unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);
    }
}

#[tokio::test]
async fn error_bodies_can_be_customised_and_headers_stay() {
    let world = World::new();
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .error_response(|err| {
            (
                [("content-type", "application/problem+json")],
                json!({"title": err.error_code(), "detail": err.description()}).to_string(),
            )
                .into_response()
        })
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;

    let stolen = world.token_for_a("read");
    let answer = call(
        &server,
        &world,
        Some(&world.b),
        "/whoami",
        &[("authorization", &bearer(&stolen))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.json()["title"], "invalid_token");
    assert!(
        answer
            .challenge()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    assert_eq!(answer.headers["cache-control"], "no-store");

    // The scope check behind the layer uses the same hook.
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/admin",
        &[("authorization", &bearer(&stolen))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["title"], "insufficient_scope");
}

struct Admin;
impl RequiredScope for Admin {
    const SCOPE: &'static str = "admin";
}

/// The layer driven as a tower service, with the connection facts a TLS server inserts.
fn request_from(world: &World, token: &str, path: &str) -> Request<axum::body::Body> {
    let certificate = Arc::new(PeerCertificate::from_der(&world.a.cert_der).unwrap());
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
    request
}

#[tokio::test]
async fn extractors_and_injected_identities() {
    let world = World::new();
    let app =
        Router::new()
            .route(
                "/scoped",
                get(|caller: WithScope<Admin>| async move {
                    caller.client_id().unwrap_or("").to_owned()
                }),
            )
            .route(
                "/maybe",
                get(
                    |caller: Option<ClientIdentity>| async move { format!("{}", caller.is_some()) },
                ),
            )
            .layer(world.layer());

    let admin = world.token_for_a("admin");
    let response = app
        .clone()
        .oneshot(request_from(&world, &admin, "/scoped"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .clone()
        .oneshot(request_from(&world, &world.token_for_a("read"), "/scoped"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with("scope=\"admin\"")
    );

    // Without the layer, extractors fail closed.
    let bare = Router::new().route(
        "/scoped",
        get(|_: WithScope<Admin>| async { "unreachable" }),
    );
    let response = bare
        .oneshot(
            Request::get("/scoped")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Option<ClientIdentity> is None where the layer did not run.
    let optional = Router::new().route(
        "/maybe",
        get(|caller: Option<ClientIdentity>| async move { format!("{}", caller.is_some()) }),
    );
    let response = optional
        .oneshot(
            Request::get("/maybe")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "false");
    let response = app
        .clone()
        .oneshot(request_from(&world, &admin, "/maybe"))
        .await
        .unwrap();
    assert_eq!(body_text(response).await, "true");

    // An identity planted by an outer layer never survives the layer.
    let planted = identity_of(&world, &admin).await;
    let mut request = request_from(&world, "bad.token.here", "/scoped");
    request.extensions_mut().insert(planted.clone());
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let mut request = request_from(&world, &world.token_for_a("read"), "/scoped");
    request.extensions_mut().insert(planted);
    assert_eq!(
        app.oneshot(request).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

async fn body_text(response: axum::response::Response) -> String {
    use http_body_util::BodyExt;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Captures a genuine `ClientIdentity` by running a request through the layer.
async fn identity_of(world: &World, token: &str) -> ClientIdentity {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let sender = Arc::new(std::sync::Mutex::new(Some(sender)));
    let capture = Router::new()
        .route(
            "/c",
            get(move |identity: ClientIdentity| {
                let sender = Arc::clone(&sender);
                async move {
                    if let Some(s) = sender.lock().unwrap().take() {
                        let _ = s.send(identity);
                    }
                }
            }),
        )
        .layer(world.layer());
    let response = capture
        .oneshot(request_from(world, token, "/c"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    receiver.await.unwrap()
}

/// An inner service that is never ready: overloaded (an error) or busy (pending).
#[derive(Clone)]
struct NotReady {
    overloaded: bool,
}

impl tower::Service<Request<axum::body::Body>> for NotReady {
    type Response = axum::response::Response;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.overloaded {
            std::task::Poll::Ready(Err("overloaded"))
        } else {
            std::task::Poll::Pending
        }
    }

    fn call(&mut self, _: Request<axum::body::Body>) -> Self::Future {
        std::future::ready(Ok(StatusCode::OK.into_response()))
    }
}

#[tokio::test]
async fn the_layer_passes_the_inner_services_backpressure_through() {
    use tower::{Layer, Service};
    let world = World::new();
    let mut overloaded = world.layer().layer(NotReady { overloaded: true });
    let ready = std::future::poll_fn(|cx| overloaded.poll_ready(cx)).await;
    assert_eq!(ready, Err("overloaded"));

    let mut busy = world.layer().layer(NotReady { overloaded: false });
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(busy.poll_ready(&mut cx).is_pending());
}

#[tokio::test]
async fn the_resource_metadata_is_served_and_every_challenge_points_at_it() {
    let world = World::new();
    let metadata = mtls_bound_token::ProtectedResourceMetadata::new(AUDIENCE)
        .unwrap()
        .authorization_server(ISSUER)
        .scopes_supported(["read", "admin"]);
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .resource_metadata(metadata.url())
        .build()
        .unwrap();
    let server = serve_tls(app(layer).merge(metadata.router()), world.tls()).await;
    let pointer = format!("resource_metadata=\"{}\"", metadata.url());
    assert_eq!(
        metadata.url(),
        "https://api.test/.well-known/oauth-protected-resource"
    );

    // The document needs no token.
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/.well-known/oauth-protected-resource",
        &[],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.json(),
        json!({
            "resource": AUDIENCE,
            "authorization_servers": [ISSUER],
            "bearer_methods_supported": ["header"],
            "tls_client_certificate_bound_access_tokens": true,
            "scopes_supported": ["read", "admin"],
        })
    );

    // No token, a stolen token, a missing scope: each challenge names the document.
    let answer = call(&server, &world, Some(&world.a), "/whoami", &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge(), format!("Bearer {pointer}"));
    let token = world.token_for_a("read");
    let answer = call(
        &server,
        &world,
        Some(&world.b),
        "/whoami",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    assert!(answer.challenge().ends_with(&format!(", {pointer}")));
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/admin",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.challenge().contains("error=\"insufficient_scope\""));
    assert!(answer.challenge().ends_with(&format!(", {pointer}")));

    // Without it configured, challenges stay as they were.
    let plain = serve_tls(app(world.layer()), world.tls()).await;
    let answer = call(&plain, &world, Some(&world.a), "/whoami", &[]).await;
    assert_eq!(answer.challenge(), "Bearer");
}

#[test]
fn a_resource_metadata_url_that_cannot_be_quoted_stops_the_build() {
    let err = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(World::new().jwks())
        .resource_metadata("https://api.test/\"x")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("https://api.test/"), "{err}");
}
