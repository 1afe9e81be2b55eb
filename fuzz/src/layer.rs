//! The `authorization` and `jwt` targets: `MtlsBoundTokenLayer` as a tower service, on a
//! connection with client A's certificate, with a fuzzed `Authorization` header.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::OnceLock;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode, header};
use mtls_bound_token::token::KeySet;
use mtls_bound_token::{ClientIdentity, MtlsBoundToken, MtlsBoundTokenLayer};
use tower::util::ServiceFn;
use tower::{Layer, ServiceExt};

use crate::{Fixtures, connect_info, peer, runtime};

type Inner = ServiceFn<fn(Request<Body>) -> Ready<Result<Response, Infallible>>>;

/// Reached only through the layer: whatever it lets through must be bound to the
/// connection's certificate.
fn handler(request: Request<Body>) -> Ready<Result<Response, Infallible>> {
    let identity = request
        .extensions()
        .get::<ClientIdentity>()
        .expect("the layer let a request through without a ClientIdentity");
    assert!(
        identity.is_bound(),
        "an unbound token passed the strict layer"
    );
    assert_eq!(
        identity.thumbprint(),
        Some(Fixtures::get().a.thumbprint.as_str()),
        "a token passed bound to another certificate"
    );
    ready(Ok(StatusCode::OK.into_response()))
}

fn service() -> MtlsBoundToken<Inner> {
    static SERVICE: OnceLock<MtlsBoundToken<Inner>> = OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let keys = KeySet::from_jwks_json(Fixtures::get().jwks.as_bytes())
                .expect("the fixtures' JWKS");
            let layer = MtlsBoundTokenLayer::new(crate::ISSUER, crate::AUDIENCE, keys)
                .expect("the strict layer");
            layer.layer(tower::service_fn(handler as fn(_) -> _))
        })
        .clone()
}

/// The status the layer answers a request whose `Authorization` is `value` (`None`
/// when `value` is not a header value at all: no server would deliver it).
pub fn status_for(value: &[u8]) -> Option<StatusCode> {
    let value = http::HeaderValue::from_bytes(value).ok()?;
    let mut request = Request::builder()
        .uri("/")
        .header(header::AUTHORIZATION, value)
        .body(Body::empty())
        .expect("a request");
    request
        .extensions_mut()
        .insert(connect_info(peer(), Some(Fixtures::get().a.peer())));
    let response = runtime()
        .block_on(service().oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    if status != StatusCode::OK {
        // RFC 6750 §3: every refusal carries a Bearer challenge, and is never cached.
        let challenge = response.headers().get(header::WWW_AUTHENTICATE);
        assert!(
            challenge.is_some_and(|c| c.as_bytes().starts_with(b"Bearer")),
            "a {status} without a Bearer challenge"
        );
        assert_eq!(
            response
                .headers()
                .get(header::CACHE_CONTROL)
                .map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
    }
    Some(status)
}

/// Whether the layer may accept `value`: `Bearer` (any case), spaces, and one of the
/// tokens the seed generator signed to be valid. Random bytes cannot make a token
/// that verifies, so anything else that gets 200 is a hole.
pub fn may_accept(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let Some((scheme, token)) = text.split_once(' ') else {
        return false;
    };
    let token = token.trim_matches(' ');
    scheme.eq_ignore_ascii_case("bearer") && Fixtures::get().valid_tokens.iter().any(|t| t == token)
}

/// What every answer must be: 200 only for a valid token, else a 4xx of RFC 6750.
pub fn check_authorization(value: &[u8]) {
    let Some(status) = status_for(value) else {
        return;
    };
    match status {
        StatusCode::OK => assert!(
            may_accept(value),
            "200 for a token the seed generator did not sign as valid: {:?}",
            String::from_utf8_lossy(value)
        ),
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {}
        other => panic!("the layer answered {other}"),
    }
}

/// The `authorization` target: the whole header value.
pub fn authorization(data: &[u8]) {
    check_authorization(data);
}

/// The `jwt` target: `Bearer ` and the token text.
pub fn jwt(data: &[u8]) {
    let mut value = b"Bearer ".to_vec();
    value.extend_from_slice(data);
    check_authorization(&value);
}
