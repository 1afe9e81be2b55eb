//! The headline behaviour over real mTLS sockets: a token works only with the
//! certificate it is bound to.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn bound_token_with_its_certificate_is_accepted() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = world.token_for_a("read");
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["thumbprint"], world.a.thumbprint);
    assert_eq!(body["subject"], "O=Example,CN=client-a");
    assert_eq!(body["client_id"], "client-a");
    assert_eq!(body["bound"], true);
    assert_eq!(
        body["san_ip"],
        serde_json::json!(["10.1.2.3", "2001:db8::10"])
    );
}

#[tokio::test]
async fn stolen_token_from_another_certificate_is_refused() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let token = world.token_for_a("read admin");
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
            .starts_with("Bearer error=\"invalid_token\""),
        "{}",
        answer.challenge()
    );
    assert!(answer.challenge().contains("different certificate"));
    assert_eq!(answer.headers["cache-control"], "no-store");
}
