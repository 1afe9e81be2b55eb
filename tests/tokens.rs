//! JWT verification and binding rules, including the attacks, over real mTLS sockets.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::pki::{self, SigningKey, claims, now};
use common::*;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mtls_bound_token::{MtlsBoundTokenLayer, MtlsBoundTokenLayerBuilder};
use serde_json::{Value, json};

fn builder(jwks: String) -> MtlsBoundTokenLayerBuilder {
    MtlsBoundTokenLayer::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(jwks)
}

/// Calls `/whoami` as client A with `token`; returns status and description.
async fn as_a(server: &TestServer, world: &World, path: &str, token: &str) -> Answer {
    call(
        server,
        world,
        Some(&world.a),
        path,
        &[("authorization", &bearer(token))],
    )
    .await
}

fn a_claims(world: &World) -> Value {
    claims(ISSUER, AUDIENCE, "client-a", "read", Some(&world.a))
}

fn raw_jwt(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn assert_invalid_token(answer: &Answer, case: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        answer.body
    );
    assert!(
        answer
            .challenge()
            .starts_with("Bearer error=\"invalid_token\""),
        "{case}: {}",
        answer.challenge()
    );
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let world = World::new();
    let rsa = SigningKey::rs256("r1");
    let server = serve_tls(
        app(builder(pki::jwks(&[&world.key, &rsa])).build().unwrap()),
        world.tls(),
    )
    .await;
    let good = world.token_for_a("read");
    assert_eq!(
        as_a(&server, &world, "/whoami", &good).await.status,
        StatusCode::OK
    );

    let mut cases: Vec<(&str, String)> = Vec::new();

    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": "k1"});
    cases.push(("alg none", raw_jwt(&none_header, &a_claims(&world), b"")));
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": "k1"});
    let unsigned = raw_jwt(&none_header, &a_claims(&world), b"");
    cases.push((
        "alg none, no signature part",
        unsigned.trim_end_matches('.').to_owned(),
    ));

    // The RSA public key, as an HMAC secret: the classic algorithm confusion.
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some("r1".into());
    let confused = jsonwebtoken::encode(
        &hs,
        &a_claims(&world),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    cases.push(("HS256 with the RSA public key as secret", confused));
    hs.kid = Some("k1".into());
    let hs_k1 =
        jsonwebtoken::encode(&hs, &a_claims(&world), &EncodingKey::from_secret(b"k1")).unwrap();
    cases.push(("HS256 under an EC kid", hs_k1));

    // A key of the right type and kid that is not ours.
    let foreign = SigningKey::es256("k1");
    cases.push((
        "foreign key under a known kid",
        foreign.sign(&a_claims(&world)),
    ));

    // A header that names another algorithm than the one that signed.
    let mut wrong_alg = rsa.header();
    wrong_alg.alg = Algorithm::PS256;
    cases.push(("RS256 signature under a PS256 header", {
        let token = rsa.sign(&a_claims(&world));
        let (_, rest) = token.split_once('.').unwrap();
        format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(serde_json::to_string(&wrong_alg).unwrap())
        )
    }));

    let parts: Vec<&str> = good.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("read admin");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    cases.push(("tampered payload", tampered));
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    cases.push((
        "tampered signature",
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        ),
    ));

    let mut unknown = world.key.header();
    unknown.kid = Some("nope".into());
    cases.push((
        "unknown kid",
        world.key.sign_with(unknown, &a_claims(&world)),
    ));
    let mut no_kid = world.key.header();
    no_kid.kid = None;
    cases.push((
        "no kid with two keys",
        world.key.sign_with(no_kid, &a_claims(&world)),
    ));
    cases.push(("not a JWT", "abc.def".into()));
    cases.push(("three garbage parts", "a.b.c".into()));
    cases.push((
        "header not JSON",
        format!("{}.e30.AA", URL_SAFE_NO_PAD.encode("{{{")),
    ));

    for (case, token) in cases {
        assert_invalid_token(&as_a(&server, &world, "/whoami", &token).await, case);
    }
}

#[tokio::test]
async fn the_algorithm_is_pinned_by_the_key() {
    let world = World::new();
    let rsa = SigningKey::rs256("r1");
    let mut pinned = rsa.jwk.clone();
    pinned["alg"] = json!("RS256");
    let jwks = json!({"keys": [pinned]}).to_string();
    let server = serve_tls(app(builder(jwks).build().unwrap()), world.tls()).await;

    let rs256 = rsa.sign(&a_claims(&world));
    assert_eq!(
        as_a(&server, &world, "/whoami", &rs256).await.status,
        StatusCode::OK
    );

    // A genuine PS256 signature by the very same key: the key's JWK says RS256 only.
    let mut ps256 = rsa.header();
    ps256.alg = Algorithm::PS256;
    let token = rsa.sign_with(ps256, &a_claims(&world));
    let answer = as_a(&server, &world, "/whoami", &token).await;
    assert_invalid_token(&answer, "PS256 under an RS256-pinned key");
    assert!(
        answer.challenge().contains("not one its key allows"),
        "{}",
        answer.challenge()
    );
}

#[tokio::test]
async fn claims_are_validated() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    let base = a_claims(&world);
    let with = |name: &str, value: Value| {
        let mut c = base.clone();
        c[name] = value;
        world.key.sign(&c)
    };
    let without = |name: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(name);
        world.key.sign(&c)
    };

    let refused = [
        ("expired beyond leeway", with("exp", json!(now() - 120))),
        ("not yet valid", with("nbf", json!(now() + 300))),
        ("wrong issuer", with("iss", json!("https://evil.test"))),
        (
            "issuer differs in case",
            with("iss", json!(ISSUER.to_uppercase())),
        ),
        ("wrong audience", with("aud", json!("https://other.test"))),
        (
            "audience array without ours",
            with("aud", json!(["https://other.test"])),
        ),
        ("no exp", without("exp")),
        ("no iss", without("iss")),
        ("no aud", without("aud")),
        ("exp not a number", with("exp", json!("tomorrow"))),
        ("scope not a string", with("scope", json!(["read"]))),
    ];
    for (case, token) in refused {
        assert_invalid_token(&as_a(&server, &world, "/whoami", &token).await, case);
    }
    let expired = as_a(&server, &world, "/whoami", &with("exp", json!(now() - 120))).await;
    assert!(
        expired.challenge().contains("expired"),
        "{}",
        expired.challenge()
    );

    let accepted = [
        ("expired within leeway", with("exp", json!(now() - 5))),
        (
            "audience array with ours",
            with("aud", json!(["https://other.test", AUDIENCE])),
        ),
        ("nbf in the past", with("nbf", json!(now() - 60))),
    ];
    for (case, token) in accepted {
        let answer = as_a(&server, &world, "/whoami", &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{case}: {}", answer.body);
    }
}

#[tokio::test]
async fn typ_must_be_at_jwt_unless_configured() {
    let world = World::new();
    let strict = serve_tls(app(world.layer()), world.tls()).await;
    let lenient = serve_tls(
        app(builder(world.jwks())
            .accept_token_type("JWT")
            .build()
            .unwrap()),
        world.tls(),
    )
    .await;
    let with_typ = |typ: Option<&str>| {
        let mut header = world.key.header();
        header.typ = typ.map(str::to_owned);
        world.key.sign_with(header, &a_claims(&world))
    };
    let status = |answer: Answer| answer.status;
    for (typ, strict_status, lenient_status) in [
        (Some("at+jwt"), StatusCode::OK, StatusCode::OK),
        (Some("application/at+jwt"), StatusCode::OK, StatusCode::OK),
        (Some("APPLICATION/AT+JWT"), StatusCode::OK, StatusCode::OK),
        // Only "application/" may be left out: another 12-character prefix is another
        // media type.
        (
            Some("applicatiox/at+jwt"),
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
        ),
        (Some("JWT"), StatusCode::UNAUTHORIZED, StatusCode::OK),
        (None, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED),
        (
            Some("id_token+jwt"),
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let token = with_typ(typ);
        assert_eq!(
            status(as_a(&strict, &world, "/whoami", &token).await),
            strict_status,
            "strict, typ {typ:?}"
        );
        assert_eq!(
            status(as_a(&lenient, &world, "/whoami", &token).await),
            lenient_status,
            "lenient, typ {typ:?}"
        );
    }
}

#[tokio::test]
async fn every_supported_algorithm_verifies() {
    let world = World::new();
    let keys = [
        SigningKey::es256("e"),
        SigningKey::rs256("r"),
        SigningKey::eddsa("d"),
    ];
    let jwks = pki::jwks(&keys.iter().collect::<Vec<_>>());
    let server = serve_tls(app(builder(jwks).build().unwrap()), world.tls()).await;
    for key in &keys {
        let answer = as_a(&server, &world, "/whoami", &key.sign(&a_claims(&world))).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{:?}: {}",
            key.alg,
            answer.body
        );
        assert_eq!(answer.json()["thumbprint"], world.a.thumbprint);
    }
}

#[tokio::test]
async fn scopes_gate_routes_exactly() {
    let world = World::new();
    let server = serve_tls(app(world.layer()), world.tls()).await;
    for scope in ["read", "administrator", "read:admin", "Admin", ""] {
        let answer = as_a(&server, &world, "/admin", &world.token_for_a(scope)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "scope {scope:?}");
        assert!(answer.challenge().contains("error=\"insufficient_scope\""));
        assert!(
            answer.challenge().ends_with("scope=\"admin\""),
            "{}",
            answer.challenge()
        );
    }
    let answer = as_a(&server, &world, "/admin", &world.token_for_a("read admin")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["scopes"], json!(["read", "admin"]));

    let mut scp = a_claims(&world);
    scp.as_object_mut().unwrap().remove("scope");
    scp["scp"] = json!(["admin"]);
    let answer = as_a(&server, &world, "/admin", &world.key.sign(&scp)).await;
    assert_eq!(answer.status, StatusCode::OK, "scp array grants scopes");
}

/// `cnf` shapes that must never pass, whatever the binding policy.
fn junk_confirmations(world: &World) -> Vec<(&'static str, Value)> {
    let raw = URL_SAFE_NO_PAD.decode(&world.a.thumbprint).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("cnf string", json!(world.a.thumbprint)),
        ("cnf number", json!(1)),
        ("cnf null", Value::Null),
        ("cnf array", json!([{"x5t#S256": world.a.thumbprint}])),
        ("cnf empty object", json!({})),
        ("cnf jkt (DPoP)", json!({"jkt": world.a.thumbprint})),
        ("thumbprint not a string", json!({"x5t#S256": 42})),
        ("thumbprint hex", json!({"x5t#S256": hex})),
        (
            "thumbprint padded",
            json!({"x5t#S256": format!("{}=", world.a.thumbprint)}),
        ),
        ("thumbprint of B", json!({"x5t#S256": world.b.thumbprint})),
    ]
}

#[tokio::test]
async fn binding_policy_required_and_optional() {
    let world = World::new();
    let required = serve_tls(app(world.layer()), world.tls()).await;
    let optional = serve_tls(
        app(builder(world.jwks())
            .allow_unbound_tokens()
            .build()
            .unwrap()),
        world.tls(),
    )
    .await;

    let unbound = world
        .key
        .sign(&claims(ISSUER, AUDIENCE, "client-a", "read", None));
    let answer = as_a(&required, &world, "/whoami", &unbound).await;
    assert_invalid_token(&answer, "unbound token, binding required");
    assert!(answer.challenge().contains("not bound"));

    let answer = as_a(&optional, &world, "/whoami", &unbound).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["bound"], false);
    assert_eq!(
        answer.json()["thumbprint"],
        world.a.thumbprint,
        "the certificate is still reported"
    );

    let answer = as_a(&optional, &world, "/whoami", &world.token_for_a("read")).await;
    assert_eq!(answer.json()["bound"], true);

    for (case, cnf) in junk_confirmations(&world) {
        let mut c = a_claims(&world);
        c["cnf"] = cnf;
        let token = world.key.sign(&c);
        assert_invalid_token(&as_a(&required, &world, "/whoami", &token).await, case);
        assert_invalid_token(&as_a(&optional, &world, "/whoami", &token).await, case);
    }
}

#[tokio::test]
async fn bound_token_without_a_certificate_is_refused() {
    let world = World::new();
    let tls = world
        .tls_builder()
        .allow_anonymous_clients()
        .build()
        .unwrap();
    let server = serve_tls(
        app(builder(world.jwks())
            .allow_unbound_tokens()
            .build()
            .unwrap()),
        tls,
    )
    .await;
    let token = world.token_for_a("read");
    let answer = call(
        &server,
        &world,
        None,
        "/whoami",
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_invalid_token(&answer, "bound token, no certificate");
    assert!(answer.challenge().contains("presented none"));

    let unbound = world
        .key
        .sign(&claims(ISSUER, AUDIENCE, "client-a", "read", None));
    let answer = call(
        &server,
        &world,
        None,
        "/whoami",
        &[("authorization", &bearer(&unbound))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["thumbprint"], Value::Null);
    assert_eq!(answer.json()["bound"], false);
}

/// Every refusal carries its reason, for logs, metrics and custom responses: the error
/// hook sees `AuthError::reason()`, no description parsing needed.
#[tokio::test]
async fn each_refusal_has_its_matchable_reason() {
    use mtls_bound_token::{AuthError, AuthReason};
    let world = World::new();
    let layer = builder(world.jwks())
        .error_response(|error: &AuthError| {
            axum::response::IntoResponse::into_response(axum::Json(
                json!({ "reason": error.reason().as_str() }),
            ))
        })
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;
    let base = a_claims(&world);
    let with = |name: &str, value: Value| {
        let mut c = base.clone();
        c[name] = value;
        world.key.sign(&c)
    };
    let without = |name: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(name);
        world.key.sign(&c)
    };
    let good = world.token_for_a("read");
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut bad_signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bad_signature[5] ^= 1;
    let tampered = format!("{head}.{payload}.{}", URL_SAFE_NO_PAD.encode(bad_signature));
    let mut typ_jwt = world.key.header();
    typ_jwt.typ = Some("JWT".into());
    let mut unknown_kid = world.key.header();
    unknown_kid.kid = Some("k-unknown".into());

    let cases = [
        (
            "expired",
            with("exp", json!(now() - 120)),
            AuthReason::Expired,
        ),
        (
            "nbf ahead",
            with("nbf", json!(now() + 300)),
            AuthReason::NotYetValid,
        ),
        (
            "issuer",
            with("iss", json!("https://evil.test")),
            AuthReason::WrongIssuer,
        ),
        (
            "audience",
            with("aud", json!("https://other.test")),
            AuthReason::WrongAudience,
        ),
        ("no exp", without("exp"), AuthReason::InvalidClaim),
        (
            "scope array",
            with("scope", json!(["read"])),
            AuthReason::InvalidClaim,
        ),
        ("signature", tampered, AuthReason::BadSignature),
        ("junk", "not-a-jwt".to_owned(), AuthReason::MalformedToken),
        (
            "typ",
            world.key.sign_with(typ_jwt, &base),
            AuthReason::WrongType,
        ),
        (
            "kid",
            world.key.sign_with(unknown_kid, &base),
            AuthReason::UnknownKey,
        ),
        ("unbound", without("cnf"), AuthReason::NotBound),
        (
            "cnf junk",
            with("cnf", json!({"jkt": "x"})),
            AuthReason::UnusableBinding,
        ),
        (
            "bound to B",
            with("cnf", json!({"x5t#S256": world.b.thumbprint})),
            AuthReason::OtherCertificate,
        ),
    ];
    for (case, token, reason) in cases {
        let answer = as_a(&server, &world, "/whoami", &token).await;
        assert_eq!(answer.json()["reason"], reason.as_str(), "{case}");
    }
    let answer = as_a(&server, &world, "/admin", &good).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["reason"], "insufficient_scope");
    let answer = call(&server, &world, Some(&world.a), "/whoami", &[]).await;
    assert_eq!(answer.json()["reason"], "missing_credentials");
    let answer = call(
        &server,
        &world,
        Some(&world.a),
        "/whoami",
        &[("authorization", b"Bearer a b")],
    )
    .await;
    assert_eq!(answer.json()["reason"], "malformed_request");
}

/// A verifier of our own: opaque tokens looked up in a table, the request's head seen.
struct Table {
    claims: Value,
}

impl mtls_bound_token::token::TokenVerifier for Table {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        request: &'a http::request::Parts,
    ) -> mtls_bound_token::token::VerifyFuture<'a> {
        use mtls_bound_token::{AuthError, AuthReason};
        Box::pin(async move {
            assert_eq!(
                request.uri.path(),
                "/whoami",
                "the verifier sees the request"
            );
            match token {
                "opaque-a" => mtls_bound_token::token::TokenClaims::from_json(
                    self.claims.as_object().unwrap().clone(),
                ),
                "down" => Err(AuthError::unavailable(
                    "the authorization server is unreachable",
                    std::time::Duration::from_secs(2),
                )),
                _ => Err(AuthError::invalid_token_because(
                    AuthReason::Inactive,
                    "the token is not active",
                )),
            }
        })
    }
}

#[tokio::test]
async fn a_custom_verifier_keeps_the_layers_binding_and_refusals() {
    let world = World::new();
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(Table {
            claims: a_claims(&world),
        })
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;

    let answer = as_a(&server, &world, "/whoami", "opaque-a").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["client_id"], "client-a");
    // The binding is the layer's: the same token with B's certificate is refused.
    let with_b = call(
        &server,
        &world,
        Some(&world.b),
        "/whoami",
        &[("authorization", &bearer("opaque-a"))],
    )
    .await;
    assert_invalid_token(&with_b, "opaque token of A with B's certificate");
    assert_invalid_token(
        &as_a(&server, &world, "/whoami", "opaque-x").await,
        "inactive",
    );
    let down = as_a(&server, &world, "/whoami", "down").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers["retry-after"], "2");

    // A verifier replaces the JWT options; both at once is a configuration error.
    let err = MtlsBoundTokenLayer::builder()
        .verifier(Table { claims: json!({}) })
        .issuer(ISSUER)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains(".verifier(..)"), "{err}");
}

#[tokio::test]
async fn the_jwt_verifier_is_a_verifier_of_its_own() {
    use mtls_bound_token::token::JwtVerifier;
    let world = World::new();
    let verifier = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .build()
        .unwrap();
    let claims = verifier
        .verify_token(&world.token_for_a("read"))
        .await
        .unwrap();
    assert_eq!(claims.client_id(), Some("client-a"));
    assert!(claims.expires_at().is_some());
    let layer = MtlsBoundTokenLayer::builder()
        .verifier(verifier)
        .build()
        .unwrap();
    let server = serve_tls(app(layer), world.tls()).await;
    let answer = as_a(&server, &world, "/whoami", &world.token_for_a("read")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn any_token_type_is_accepted_when_configured_so_and_the_rest_stays() {
    use mtls_bound_token::token::JwtVerifier;
    let world = World::new();
    let verifier = JwtVerifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .jwks_json(world.jwks())
        .accept_any_token_type()
        .build()
        .unwrap();
    for typ in [Some("JWT"), Some("id_token+jwt"), None] {
        let mut header = world.key.header();
        header.typ = typ.map(str::to_owned);
        let token = world.key.sign_with(header, &a_claims(&world));
        let claims = verifier.verify_token(&token).await.unwrap();
        assert_eq!(claims.client_id(), Some("client-a"), "{typ:?}");
    }
    // The issuer and audience set before it still hold.
    assert_eq!((verifier.issuer(), verifier.audience()), (ISSUER, AUDIENCE));
}

#[test]
fn a_custom_verifier_with_any_jwt_option_is_refused() {
    use mtls_bound_token::token::JwtVerifier;
    use mtls_bound_token::{ConfigError, MtlsBoundTokenLayerBuilder};
    let world = World::new();
    let verifier = || {
        JwtVerifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .jwks_json(world.jwks())
            .build()
            .unwrap()
    };
    let with_verifier = || MtlsBoundTokenLayer::builder().verifier(verifier());
    assert!(with_verifier().build().is_ok());
    type SetOption = fn(MtlsBoundTokenLayerBuilder) -> MtlsBoundTokenLayerBuilder;
    let options: [(&str, SetOption); 6] = [
        ("issuer", |b| b.issuer(ISSUER)),
        ("audience", |b| b.audience(AUDIENCE)),
        ("keys", |b| b.jwks_json(r#"{"keys":[]}"#)),
        ("leeway", |b| b.leeway(std::time::Duration::from_secs(5))),
        ("token type", |b| b.accept_token_type("JWT")),
        ("any token type", |b| b.accept_any_token_type()),
    ];
    for (name, option) in options {
        let err = option(with_verifier()).build().unwrap_err();
        assert!(
            matches!(err, ConfigError::VerifierAndJwtOptions),
            "{name}: {err}"
        );
    }
}

#[test]
fn the_leeway_may_be_five_minutes_and_no_more() {
    use mtls_bound_token::token::JwtVerifier;
    let world = World::new();
    let with = |leeway| {
        JwtVerifier::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .jwks_json(world.jwks())
            .leeway(leeway)
            .build()
    };
    assert_eq!(
        mtls_bound_token::MAX_LEEWAY,
        std::time::Duration::from_secs(300)
    );
    assert!(with(mtls_bound_token::MAX_LEEWAY).is_ok());
    let err = with(mtls_bound_token::MAX_LEEWAY + std::time::Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(err, mtls_bound_token::ConfigError::LeewayTooLarge(_)),
        "{err}"
    );
}
