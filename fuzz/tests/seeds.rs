//! Makes `fixtures/` (the PKI and keys the targets run with) and `seeds/<target>/` (the
//! committed seed corpora), from certificates made as the crate's tests make them
//! (`tests/common/pki.rs`) and headers crafted as the proxies write them.
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml --test seeds -- --ignored
//! ```
//!
//! It makes everything anew (new keys, so new tokens and new seeds) and then checks
//! the seed tokens against the layer: the ones listed as valid get 200, all others
//! not. Ignored, so that a plain `cargo test` never rewrites committed files.

#[path = "../../tests/common/pki.rs"]
mod pki;

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey};
use mtls_bound_token::cert::HeaderFormat;
use mtls_bound_token_fuzz::proxy::{encode, escaped_pem};
use mtls_bound_token_fuzz::{AUDIENCE, Fixtures, ISSUER, fixtures_dir, layer};
use pki::{Ca, Leaf, SigningKey, Subject};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// `exp` of the seed tokens: 2096, so that the committed seeds stay valid.
const FAR_FUTURE: i64 = 4_000_000_000;

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    fs::create_dir_all(dir).expect("a directory");
    fs::write(dir.join(name), bytes).expect("a written file");
}

fn seeds(target: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    // Anew: a seed left from an earlier run would carry tokens of old keys.
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
#[ignore = "rewrites fuzz/fixtures and fuzz/seeds; run by hand"]
fn make_fixtures_and_seeds() {
    let keys = make_fixtures();
    let f = Fixtures::get();
    proxy_header_seeds(f);
    xfcc_seeds();
    dn_seeds(f);
    token_seeds(f, &keys);
    jwks_seeds(f);
    certificate_seeds(f);
    token_request_seeds();
}

struct Keys {
    es: SigningKey,
    ed: SigningKey,
    /// Client A's thumbprint and B's, for the `cnf` of the tokens.
    a: String,
    b: String,
}

fn make_fixtures() -> Keys {
    let dir = fixtures_dir();
    let ca = Ca::root("Fuzz Root CA");
    let intermediate = ca.intermediate("Fuzz Issuing CA");
    let a = ca.client(&pki::a_subject());
    let b = ca.client(&Subject::cn("client-b"));
    let c = intermediate.client(&Subject::cn("client-c"));
    let q = ca.client(&Subject::cn("q\""));
    let u = ca.client(&Subject {
        uri: vec!["spiffe://q\"".into()],
        ..Subject::cn("q")
    });
    let s = Leaf::self_signed(&Subject::cn("client-s"));
    let server = ca.server();
    let es = SigningKey::es256("es");
    let ed = SigningKey::eddsa("ed");

    write(&dir, "ca.pem", &ca.cert_pem);
    write(&dir, "intermediate.pem", &intermediate.cert_pem);
    for (name, leaf) in [
        ("a", &a),
        ("b", &b),
        ("c", &c),
        ("q", &q),
        ("u", &u),
        ("s", &s),
    ] {
        write(&dir, &format!("{name}.pem"), &leaf.cert_pem);
    }
    write(&dir, "c-chain.pem", &c.chain_pem);
    write(&dir, "s-jwks.json", pki::x5c_jwks(&[&s]));
    write(&dir, "server.pem", &server.cert_pem);
    write(&dir, "server.key.pem", &server.key_pem);
    write(&dir, "jwks.json", pki::jwks(&[&es, &ed]));
    let keys = Keys {
        a: a.thumbprint.clone(),
        b: b.thumbprint.clone(),
        es,
        ed,
    };
    let valid: String = valid_tokens(&keys)
        .into_iter()
        .map(|(_, token)| token + "\n")
        .collect();
    write(&dir, "valid-tokens.txt", valid);
    keys
}

fn proxy_header_seeds(f: &Fixtures) {
    let target = |format: HeaderFormat| match format {
        HeaderFormat::AwsAlb => "proxy_header_aws_alb".to_owned(),
        other => format!("proxy_header_{}", other.name()),
    };
    for format in HeaderFormat::ALL {
        let dir = seeds(&target(format));
        for (name, chain) in [
            ("a", vec![&f.a]),
            ("b", vec![&f.b]),
            ("c-chain", vec![&f.c, &f.intermediate]),
        ] {
            let (value, companion) = encode(format, &chain);
            let mut seed = value.clone();
            if let Some(companion) = companion {
                seed = format!("{seed}\n{companion}");
            }
            write(&dir, name, &seed);
            if name == "a" {
                // The same header twice: two lines.
                write(&dir, "a-twice", format!("{value}\n{value}"));
                write(&dir, "a-truncated", &value[..value.len() / 2]);
            }
        }
        write(&dir, "empty", "");
        write(&dir, "space", " ");
    }
    let b64 = |c: &mtls_bound_token_fuzz::Cert| STANDARD.encode(&c.der);
    // RFC 9440's chain on several field lines, one per certificate.
    write(
        &seeds_keep("proxy_header_rfc9440"),
        "c-chain-lines",
        format!(
            ":{}:\n:{}:\n:{}:",
            b64(&f.c),
            b64(&f.intermediate),
            b64(&f.ca)
        ),
    );
    write(
        &seeds_keep("proxy_header_rfc9440"),
        "parameters",
        format!(
            ":{}:;a=1\n:{}:;b=?0, (1 2)",
            b64(&f.a),
            b64(&f.intermediate)
        ),
    );
    write(
        &seeds_keep("proxy_header_haproxy"),
        "a-quoted",
        format!("\"{}\"", b64(&f.a)),
    );
    // Traefik 2 up to 2.9.3 percent-escaped the base64 (Go's url.QueryEscape).
    let (traefik, _) = encode(HeaderFormat::Traefik, &[&f.c, &f.intermediate]);
    write(
        &seeds_keep("proxy_header_traefik"),
        "c-chain-escaped",
        percent_encoding::utf8_percent_encode(
            &traefik,
            mtls_bound_token_fuzz::proxy::URL_UNRESERVED,
        )
        .to_string(),
    );
    write(
        &seeds_keep("proxy_header_xfcc"),
        "hash-only",
        format!(
            "By=spiffe://envoy;Hash={};Subject=\"CN=client-a,O=Example\";URI=spiffe://example.org/client-a;DNS=client-a.example.org",
            f.a.hash_hex
        ),
    );
    write(
        &seeds_keep("proxy_header_xfcc"),
        "two-hops",
        format!(
            "By=spiffe://outer;Hash={};Cert=\"{}\",By=spiffe://inner;Hash={}",
            f.b.hash_hex,
            escaped_pem(&f.b.pem),
            f.a.hash_hex
        ),
    );
}

/// A seed directory that `proxy_header_seeds` already made: not emptied again.
fn seeds_keep(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target)
}

fn xfcc_seeds() {
    let dir = seeds("xfcc");
    let whole = [
        (
            "cert",
            r#"By=spiffe://cluster.local/ns/a/sa/b;Hash={HA};Cert="{CA}";Subject="O=Example,CN=client-a";URI=spiffe://example.org/client-a;DNS=client-a.example.org"#,
        ),
        ("hash", "Hash={HA}"),
        (
            "hash-upper",
            "hash={HA};subject=\"CN=client-a,O=Example \\\"Inc\\\"\"",
        ),
        ("chain", r#"By=spiffe://x;Hash={HC};Chain="{XC}""#),
        (
            "two-hops",
            r#"By=spiffe://outer;Hash={HB};Cert="{CB}",By=spiffe://inner;Hash={HA};Cert="{CA}""#,
        ),
        ("disagree", r#"Hash={HB};Cert="{CA}""#),
        ("cert-twice", r#"Cert="{CA}";Cert="{CA}""#),
        (
            "envoy-docs",
            r#"By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com"#,
        ),
        (
            "envoy-docs-two-hops",
            "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;URI=\"http://testclient.lyft.com\",By=http://backend.lyft.com;Hash=9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e;URI=http://frontend.lyft.com",
        ),
        (
            "subject-escapes",
            r#"Hash={HA};Subject="CN=\\61lice,O=a\,b""#,
        ),
    ];
    for (name, text) in whole {
        write(&dir, name, [&[0u8][..], text.as_bytes()].concat());
    }
    // What a client sends before Envoy's element under APPEND_FORWARD: the prefixes of
    // tests/proxy_headers.rs's quote-parity forgeries, before each of Envoy's elements.
    let prefixes = [
        ("unknown-key", r#"Hash={HA};x=""#),
        ("open-cert", r#"Hash={HA};Cert="{CA}"#),
        ("open-chain", r#"Hash={HA};Chain="{CA}"#),
        ("open-subject", r#"Hash={HA};Subject=""#),
        ("quote-in-key", r#"Hash={HA};x"="#),
        ("open-uri", r#"Hash={HA};URI=""#),
        ("open-by", r#"Hash={HA};By=""#),
        ("honest", r#"By=spiffe://outer;Hash={HA}"#),
    ];
    let elements = mtls_bound_token_fuzz::proxy::envoy_elements().len();
    for (name, text) in prefixes {
        for k in 1..=elements {
            let mode = u8::try_from(k).expect("few elements");
            write(
                &dir,
                &format!("{name}-{k}"),
                [&[mode][..], text.as_bytes()].concat(),
            );
        }
    }
}

fn dn_seeds(f: &Fixtures) {
    let dir = seeds("dn");
    let names = [
        "CN=client-a,O=Example",
        "cn=client-a, o=Example",
        "2.5.4.3=client-a,OID.2.5.4.10=Example",
        "CN=Client  A,O=Example",
        "CN=a+UID=7,O=x",
        "CN=#0c0161,O=x",
        "1.2.3.4=#0403414243",
        "1.2.3.4=#020101",
        "CN=\\61\\2c b",
        "cn=a\\+b,o=\\#x ",
        "CN=evil\\,O=Example",
        "CN=\\ lead and trail\\ ",
        "CN=\\E2\\82\\AC uro,C=DE",
        "CN=\\00nul",
        "DC=example,DC=org,UID=jdoe,EMAILADDRESS=a@example.org",
        "SERIALNUMBER=42+GIVENNAME=Ann+SURNAME=Lee,STREET=Main St,L=Town,ST=State",
        "/C=US/O=Example/CN=client-a",
        "C=US, O=Example, CN=client-a\nCN=client-a,O=Example,C=US",
        "CN=a,CN=a,O=x\nCN=a,O=x,O=x",
        "CN=a+O=x\nO=x+CN=a",
        "",
    ];
    for (i, name) in names.iter().enumerate() {
        write(&dir, &format!("name-{i:02}"), name);
    }
    // The subjects of the fixtures, as the crate writes them.
    for (name, cert) in [("a", &f.a), ("q", &f.q), ("u", &f.u), ("c", &f.c)] {
        write(&dir, &format!("subject-{name}"), cert.peer().subject());
    }
}

/// Claims bound to client A, valid until 2096.
fn a_claims(keys: &Keys) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "client-a",
        "client_id": "client-a",
        "scope": "read write",
        "iat": pki::now(),
        "exp": FAR_FUTURE,
        "cnf": {"x5t#S256": keys.a},
    })
}

/// A JWS over exactly this header and these claims (as JSON text), signed by `key`:
/// for what jsonwebtoken's `Header` cannot say (`crit`, duplicate members, ...).
fn raw_jws(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
    mtls_bound_token::install_jwt_provider();
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signed");
    format!("{message}.{signature}")
}

/// The seed tokens the layer must accept over client A's connection.
fn valid_tokens(keys: &Keys) -> Vec<(&'static str, String)> {
    let claims = a_claims(keys);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        claims
    };
    vec![
        ("valid-es256", keys.es.sign(&claims)),
        ("valid-eddsa", keys.ed.sign(&claims)),
        (
            "valid-aud-array",
            keys.es.sign(&with(&|c| {
                c["aud"] = json!(["https://other.test", AUDIENCE])
            })),
        ),
        (
            "valid-nbf",
            keys.ed.sign(&with(&|c| c["nbf"] = json!(pki::now() - 60))),
        ),
        // RFC 7519 §2: a NumericDate may be a non-integer.
        (
            "valid-exp-float",
            keys.ed.sign(&with(&|c| c["exp"] = json!(4.0e9))),
        ),
        (
            "valid-no-scope",
            keys.es.sign(&with(&|c| {
                c.as_object_mut().expect("claims").remove("scope");
            })),
        ),
    ]
}

/// Tokens that must be refused, each for one reason the layer checks: seeds that get
/// the fuzzer past the signature into the claims checks.
fn invalid_tokens(keys: &Keys) -> Vec<(&'static str, String)> {
    let claims = a_claims(keys);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = claims.clone();
        change(&mut claims);
        claims
    };
    let remove = |name: &'static str| {
        with(&move |c| {
            c.as_object_mut().expect("claims").remove(name);
        })
    };
    let es = &keys.es;
    let mut tokens = vec![
        (
            "expired",
            es.sign(&with(&|c| c["exp"] = json!(1_000_000_000))),
        ),
        (
            "not-yet",
            es.sign(&with(&|c| c["nbf"] = json!(FAR_FUTURE - 10))),
        ),
        (
            "exp-string",
            es.sign(&with(&|c| c["exp"] = json!("4000000000"))),
        ),
        ("exp-huge", es.sign(&with(&|c| c["exp"] = json!(1.0e300)))),
        ("no-exp", es.sign(&remove("exp"))),
        ("no-iss", es.sign(&remove("iss"))),
        ("no-aud", es.sign(&remove("aud"))),
        (
            "wrong-iss",
            es.sign(&with(&|c| c["iss"] = json!("https://evil.test"))),
        ),
        (
            "wrong-aud",
            es.sign(&with(&|c| c["aud"] = json!("https://other.test"))),
        ),
        (
            "aud-array-without",
            es.sign(&with(&|c| c["aud"] = json!(["a", "b"]))),
        ),
        ("unbound", es.sign(&remove("cnf"))),
        (
            "bound-to-b",
            es.sign(&with(&|c| c["cnf"] = json!({"x5t#S256": keys.b}))),
        ),
        ("cnf-empty", es.sign(&with(&|c| c["cnf"] = json!({})))),
        (
            "cnf-jkt",
            es.sign(&with(&|c| c["cnf"] = json!({"jkt": keys.a}))),
        ),
        (
            "cnf-hex",
            es.sign(&with(&|c| c["cnf"] = json!({"x5t#S256": "00".repeat(32)}))),
        ),
        (
            "cnf-number",
            es.sign(&with(&|c| c["cnf"] = json!({"x5t#S256": 1}))),
        ),
        (
            "scope-array",
            es.sign(&with(&|c| c["scope"] = json!(["read"]))),
        ),
    ];
    let mut header = es.header();
    header.typ = Some("JWT".into());
    tokens.push(("typ-jwt", es.sign_with(header, &claims)));
    let mut header = es.header();
    header.typ = None;
    tokens.push(("no-typ", es.sign_with(header, &claims)));
    let mut header = es.header();
    header.kid = Some("unknown".into());
    tokens.push(("unknown-kid", es.sign_with(header, &claims)));
    let mut header = es.header();
    header.kid = None;
    tokens.push(("no-kid", es.sign_with(header, &claims)));

    let claims_text = claims.to_string();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt","kid":"es"}"#),
        URL_SAFE_NO_PAD.encode(&claims_text)
    );
    tokens.push(("alg-none", none));
    let hmac = EncodingKey::from_secret(es.public_pem.as_bytes());
    tokens.push((
        "hs256-public-key",
        raw_jws(
            r#"{"alg":"HS256","typ":"at+jwt","kid":"es"}"#,
            &claims_text,
            &hmac,
            Algorithm::HS256,
        ),
    ));
    tokens.push((
        "crit",
        raw_jws(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"es","crit":["exp"]}"#,
            &claims_text,
            &es.encoding,
            Algorithm::ES256,
        ),
    ));
    tokens.push((
        "alg-mismatch",
        raw_jws(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"ed"}"#,
            &claims_text,
            &es.encoding,
            Algorithm::ES256,
        ),
    ));
    tokens.push((
        "claims-array",
        raw_jws(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"es"}"#,
            "[1,2]",
            &es.encoding,
            Algorithm::ES256,
        ),
    ));
    tokens.push((
        "duplicate-exp",
        raw_jws(
            r#"{"alg":"ES256","typ":"at+jwt","kid":"es"}"#,
            &claims_text.replacen('{', r#"{"exp":1,"#, 1),
            &es.encoding,
            Algorithm::ES256,
        ),
    ));
    // A valid header and claims with the other key's signature.
    let (good, other) = (es.sign(&claims), keys.ed.sign(&claims));
    let swapped = format!(
        "{}.{}",
        good.rsplit_once('.').expect("a JWS").0,
        other.rsplit_once('.').expect("a JWS").1
    );
    tokens.push(("swapped-signature", swapped));
    tokens
}

fn named<'t>(tokens: &'t [(&str, String)], name: &str) -> &'t str {
    tokens
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t.as_str())
        .expect("a token of that name")
}

fn token_seeds(f: &Fixtures, keys: &Keys) {
    let valid = valid_tokens(keys);
    // valid_tokens signs anew (ECDSA is randomized); the listed ones are the fixtures'.
    let valid: Vec<(&str, String)> = valid
        .iter()
        .map(|(name, _)| *name)
        .zip(f.valid_tokens.iter().cloned())
        .collect();
    let invalid = invalid_tokens(keys);
    for (name, token) in &valid {
        let status = layer::status_for(format!("Bearer {token}").as_bytes());
        assert_eq!(status, Some(StatusCode::OK), "{name} must be valid");
    }
    for (name, token) in &invalid {
        let status = layer::status_for(format!("Bearer {token}").as_bytes());
        assert!(
            status.is_some_and(|s| s != StatusCode::OK && !s.is_server_error()),
            "{name}: {status:?}"
        );
    }

    let dir = seeds("jwt");
    for (name, token) in valid.iter().chain(&invalid) {
        write(&dir, name, token);
    }
    write(&dir, "three-dots", "a.b.c");
    write(&dir, "empty", "");

    let dir = seeds("authorization");
    let (good, other) = (&valid[0].1, &valid[1].1);
    for (name, value) in [
        ("bearer", format!("Bearer {good}")),
        ("lowercase-spaces", format!("bearer   {other}  ")),
        (
            "bound-to-b",
            format!("Bearer {}", named(&invalid, "bound-to-b")),
        ),
        ("basic", "Basic dXNlcjpwYXNz".to_owned()),
        ("dpop", format!("DPoP {good}")),
        ("scheme-only", "Bearer".to_owned()),
        ("empty-credentials", "Bearer ".to_owned()),
        ("not-token68", "Bearer a b".to_owned()),
        ("padding", format!("Bearer {good}==")),
        ("tab", format!("Bearer\t{good}")),
    ] {
        write(&dir, name, value);
    }
}

fn jwks_seeds(f: &Fixtures) {
    let dir = seeds("jwks");
    write(&dir, "es-ed", &f.jwks);
    write(&dir, "x5c", &f.s_jwks);
    let rsa = SigningKey::rs256("rsa");
    write(&dir, "rsa", pki::jwks(&[&rsa]));
    let ed: Value = serde_json::from_str(&f.jwks).expect("JSON");
    let mut pinned = ed.clone();
    pinned["keys"][0]["alg"] = json!("ES384");
    write(&dir, "alg-mismatch", pinned.to_string());
    let mut enc = ed.clone();
    enc["keys"][0]["use"] = json!("enc");
    write(&dir, "use-enc", enc.to_string());
    let mut duplicate = ed.clone();
    duplicate["keys"][1]["kid"] = json!("es");
    write(&dir, "duplicate-kid", duplicate.to_string());
    for (name, text) in [
        (
            "oct",
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#,
        ),
        ("empty-keys", r#"{"keys":[]}"#),
        ("no-keys", r#"{"kty":"EC"}"#),
        (
            "short-rsa",
            r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#,
        ),
        (
            "bad-x5c",
            r#"{"keys":[{"kty":"EC","crv":"P-256","x5c":["AAAA"]}]}"#,
        ),
    ] {
        write(&dir, name, text);
    }
    // S's certificate under a JWK that contradicts it.
    let mut wrong: Value = serde_json::from_str(&f.s_jwks).expect("JSON");
    wrong["keys"][0]["kty"] = json!("RSA");
    write(&dir, "x5c-wrong-kty", wrong.to_string());
}

fn certificate_seeds(f: &Fixtures) {
    let dir = seeds("certificates");
    for (name, cert) in [
        ("a", &f.a),
        ("c", &f.c),
        ("q", &f.q),
        ("s", &f.s),
        ("server", &f.server),
        ("intermediate", &f.intermediate),
    ] {
        write(&dir, &format!("{name}.der"), &cert.der);
    }
    write(&dir, "server.pem", &f.server.pem);
    write(&dir, "ca.pem", &f.ca.pem);
    write(&dir, "c-chain.pem", &f.c_chain_pem);
    write(&dir, "server.key.pem", &f.server_key_pem);
    let key = PrivateKeyDer::from_pem_slice(f.server_key_pem.as_bytes()).expect("a PEM key");
    write(&dir, "server.key.der", key.secret_der());
    let chain: Vec<u8> = CertificateDer::pem_slice_iter(f.c_chain_pem.as_bytes())
        .flat_map(|c| c.expect("PEM").to_vec())
        .collect();
    write(&dir, "c-chain.der", chain);
    write(
        &dir,
        "csr.pem",
        "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
    );
}

fn token_request_seeds() {
    let dir = seeds("token_request");
    const FORM: &str = "application/x-www-form-urlencoded";
    // Name, certificate (0 A, 1 S, 2 B, 3 none), Content-Type, body, expected status.
    let requests: [(&str, u8, &str, &str, u16); 12] = [
        (
            "a",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-a",
            200,
        ),
        (
            "a-scope-resource",
            0,
            "application/x-www-form-urlencoded; charset=utf-8",
            "grant_type=client_credentials&client_id=client-a&scope=read+write&resource=https%3A%2F%2Fother.fuzz.test",
            200,
        ),
        (
            "a-audience",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-a&audience=https://api.fuzz.test",
            200,
        ),
        (
            "a-bad-scope",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-a&scope=admin",
            400,
        ),
        (
            "a-bad-target",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-a&resource=https://evil.test",
            400,
        ),
        (
            "s",
            1,
            FORM,
            "client_id=client-s&grant_type=client_credentials&scope=read&resource=urn:x",
            200,
        ),
        (
            "d-no-grant",
            2,
            FORM,
            "grant_type=client_credentials&client_id=client-d",
            400,
        ),
        (
            "no-cert",
            3,
            FORM,
            "grant_type=client_credentials&client_id=client-a",
            401,
        ),
        (
            "repeated",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-a&client_id=client-s",
            400,
        ),
        (
            "wrong-grant",
            0,
            FORM,
            "grant_type=password&client_id=client-a",
            400,
        ),
        (
            "json",
            0,
            "application/json",
            r#"{"client_id":"client-a"}"#,
            400,
        ),
        (
            "a-as-s",
            0,
            FORM,
            "grant_type=client_credentials&client_id=client-s",
            401,
        ),
    ];
    for (name, cert, content_type, body, expected) in requests {
        let seed = [&[cert][..], content_type.as_bytes(), b"\n", body.as_bytes()].concat();
        // The seeds reach where they are meant to: the 200s through the oracle.
        let status = mtls_bound_token_fuzz::token_request::token_request(&seed);
        assert_eq!(status.map(|s| s.as_u16()), Some(expected), "{name}");
        write(&dir, name, seed);
    }
}
