//! The token endpoint of `examples/token_service`, with a fuzzed `Content-Type` and
//! form body. The request parsing is inline in the example's `token` handler, so this
//! target includes the example's `service.rs` unchanged and drives its router.
//!
//! Input: the first byte picks the connection's certificate (A, which `client-a` is
//! registered by SAN; S, self-signed, registered by JWKS as `client-s`; B, which
//! `client-d` is registered by subject but may use no grant; none); up to the first
//! `'\n'` is the `Content-Type`, the rest the body.
//!
//! Must hold: no panic, never 5xx; 200 only for a form request with one `client_id`,
//! the one the certificate authenticates, and `grant_type=client_credentials`, no
//! parameter repeated; and the token issued then verifies through
//! `MtlsBoundTokenLayer`, bound to exactly that certificate, within the client's
//! scopes and permitted audiences.

#[path = "../../examples/token_service/service.rs"]
mod service;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::{AUDIENCE, Cert, Fixtures, ISSUER, connect_info, peer, runtime};
use axum::Router;
use axum::body::{Body, to_bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, StatusCode, header};
use mtls_bound_token::client_auth::{ClientAuthenticator, ClientRegistration, ExpectedIdentity};
use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer, PeerCertificate};
use serde_json::Value;
use tower::{Layer, ServiceExt};

/// The one audience besides `AUDIENCE` that `client-a` may ask for.
const OTHER_AUDIENCE: &str = "https://other.fuzz.test";

struct Endpoint {
    router: Router,
    /// The public key of the service's signer, to verify what it issues.
    jwks: String,
}

fn endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let f = Fixtures::get();
        let authenticator = ClientAuthenticator::builder()
            .client_ca_pem(f.ca.pem.clone())
            .register(
                ClientRegistration::tls_client_auth(
                    "client-a",
                    ExpectedIdentity::SanDns("client-a.example.org".into()),
                )
                .with_scopes(["read", "write"]),
            )
            .register(
                ClientRegistration::self_signed_tls_client_auth("client-s", f.s_jwks.as_bytes())
                    .expect("S's x5c JWKS")
                    .with_scopes(["read"]),
            )
            .register(
                ClientRegistration::tls_client_auth(
                    "client-d",
                    ExpectedIdentity::SubjectDn("CN=client-b".parse().expect("a DN")),
                )
                .with_scopes(["read"]),
            )
            .build()
            .expect("the authenticator");
        let policy = |grant_types: &[&str], resources: Option<&[&str]>| service::ClientPolicy {
            grant_types: grant_types.iter().map(|g| (*g).to_owned()).collect(),
            resources: resources.map(|r| r.iter().map(|a| (*a).to_owned()).collect()),
        };
        let policies = HashMap::from([
            (
                "client-a".to_owned(),
                policy(&["client_credentials"], Some(&[OTHER_AUDIENCE])),
            ),
            ("client-s".to_owned(), policy(&["client_credentials"], None)),
            ("client-d".to_owned(), policy(&[], None)),
        ]);
        let signer = service::Signer::generate().expect("a signing key");
        let jwks = signer.jwks().to_string();
        let settings = service::Settings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            token_ttl: Duration::from_secs(300),
            // The limits answer 429 by design; fuzzing is about the parsing behind them.
            rate_limit: NonZeroU32::MAX,
            signer,
            trusted_proxies: Vec::new(),
        };
        // The service spawns its limiter's housekeeping: inside the runtime.
        let router = runtime()
            .block_on(async { service::TokenService::new(settings, authenticator, policies) })
            .router();
        Endpoint { router, jwks }
    })
}

/// What a client is registered with in `endpoint`.
struct Registered {
    client_id: &'static str,
    scopes: &'static [&'static str],
    /// The audiences it may name; `None`: any.
    audiences: Option<&'static [&'static str]>,
}

/// The client a certificate authenticates as.
fn registered(cert: &Cert) -> Option<Registered> {
    let f = Fixtures::get();
    if cert.der == f.a.der {
        Some(Registered {
            client_id: "client-a",
            scopes: &["read", "write"],
            audiences: Some(&[AUDIENCE, OTHER_AUDIENCE]),
        })
    } else if cert.der == f.s.der {
        Some(Registered {
            client_id: "client-s",
            scopes: &["read"],
            audiences: None,
        })
    } else {
        None
    }
}

fn call(router: Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    runtime().block_on(async {
        let response = router
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a response body");
        (status, body.to_vec())
    })
}

/// The target; returns the status the endpoint answered (`None` for an empty input).
pub fn token_request(data: &[u8]) -> Option<StatusCode> {
    let (&pick, rest) = data.split_first()?;
    let f = Fixtures::get();
    let cert = match pick % 4 {
        0 => Some(&f.a),
        1 => Some(&f.s),
        2 => Some(&f.b),
        _ => None,
    };
    let (content_type, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let content_type = HeaderValue::from_bytes(content_type).ok();

    let mut request = Request::post("/token");
    if let Some(value) = &content_type {
        request = request.header(header::CONTENT_TYPE, value.clone());
    }
    let mut request = request.body(Body::from(body.to_vec())).expect("a request");
    request
        .extensions_mut()
        .insert(connect_info(peer(), cert.map(Cert::peer)));
    let (status, response) = call(endpoint().router.clone(), request);

    match status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST
        | StatusCode::UNAUTHORIZED
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::TOO_MANY_REQUESTS => return Some(status),
        other => panic!(
            "the token endpoint answered {other}: {}",
            String::from_utf8_lossy(&response)
        ),
    }

    // A 200: the request must have been a well-formed one from a registered client.
    let cert = cert.expect("200 without a client certificate");
    let Registered {
        client_id,
        scopes,
        audiences,
    } = registered(cert).expect("200 for an unregistered certificate");
    let is_form = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    assert!(
        is_form,
        "200 for a body that is not a form: {content_type:?}"
    );
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let value = |name: &str| {
        let mut values = params
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        assert!(values.next().is_none(), "200 with {name} repeated");
        first
    };
    assert_eq!(
        value("client_id"),
        Some(client_id),
        "200 for another client_id"
    );
    assert_eq!(value("grant_type"), Some("client_credentials"));
    let mut names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "200 with a repeated parameter");

    let answer: Value = serde_json::from_slice(&response).expect("a JSON token response");
    assert_eq!(answer["token_type"], "Bearer");
    let token = answer["access_token"].as_str().expect("an access_token");
    let claims = claims_of(token);
    let aud = claims["aud"].as_str().expect("one aud");
    assert!(
        audiences.is_none_or(|allowed| allowed.contains(&aud)),
        "{client_id} was issued a token for {aud:?}"
    );
    for scope in claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        assert!(
            scopes.contains(&scope),
            "{client_id} was issued the scope {scope:?}"
        );
    }

    // The token is bound to the certificate it was issued to, and to no other.
    let other = if cert.der == f.a.der { &f.b } else { &f.a };
    assert_eq!(
        verify(token, aud, cert),
        StatusCode::OK,
        "the issued token does not verify"
    );
    assert_eq!(
        verify(token, aud, other),
        StatusCode::UNAUTHORIZED,
        "the token binds another certificate"
    );
    Some(status)
}

/// The claims, unverified: only to learn which audience to verify for.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("JSON claims")
}

/// The status `MtlsBoundTokenLayer` answers `token` with over a connection with `cert`.
fn verify(token: &str, audience: &str, cert: &Cert) -> StatusCode {
    let layer = MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(audience)
        .jwks_json(&endpoint().jwks)
        .build()
        .expect("a layer for the service's key");
    let expected = cert.thumbprint.clone();
    let service = layer.layer(tower::service_fn(move |request: Request<Body>| {
        let identity = request.extensions().get::<ClientIdentity>().cloned();
        let expected = expected.clone();
        async move {
            let identity = identity.expect("an identity");
            assert_eq!(identity.thumbprint(), Some(expected.as_str()));
            Ok::<_, std::convert::Infallible>(axum::response::IntoResponse::into_response(
                StatusCode::OK,
            ))
        }
    }));
    let mut request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a request");
    let peer_cert: Arc<PeerCertificate> = cert.peer();
    request
        .extensions_mut()
        .insert(connect_info(peer(), Some(peer_cert)));
    runtime()
        .block_on(service.oneshot(request))
        .unwrap_or_else(|never| match never {})
        .status()
}
