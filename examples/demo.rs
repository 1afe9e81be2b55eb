//! The whole story of certificate-bound access tokens (OAuth 2.0 mutual TLS, RFC 8705)
//! in one run, with nothing to set up:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! It generates a private CA, a server certificate and two client certificates; starts
//! the token service of `examples/token_service` and an API behind
//! [`MtlsBoundTokenLayer`], each on a free loopback port; has client A get a token from
//! the token service over mutual TLS; and then calls the API over mutual TLS, as client
//! A and as client B, explaining each answer. It exits 0 only when every answer was the
//! expected one, so it doubles as a smoke test.
//!
//! Set `RUST_LOG=mtls_bound_token=debug` to also see the library's own decisions.

// The certificates and keys come from the same helper the integration tests use.
#[path = "../tests/common/pki.rs"]
mod pki;
// The token service's routes, the same code `cargo run --example token_service` serves.
#[path = "token_service/service.rs"]
mod token_service;

use std::error::Error;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mtls_bound_token::client_auth::{ClientAuthenticator, token_endpoint_tls};
use mtls_bound_token::serve::Server;
use mtls_bound_token::tls::{TlsListener, TlsServerConfig};
use mtls_bound_token::{ClientIdentity, MtlsBoundTokenLayer, PeerCertificate, RequireScopeLayer};
use pki::{Ca, Leaf, Subject};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use token_service::{Settings, Signer, TokenService, load_clients};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn Error + Send + Sync>;

/// Whom the tokens are for (`aud`). The issuer (`iss`) is the token service's own URL.
const AUDIENCE: &str = "https://api.demo.example";

/// Connect, handshake, request and response together must fit in this; a demo that
/// hangs would tell nobody anything.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Width of the explanations, so that they read well in an ordinary terminal.
const WIDTH: usize = 88;

/// The token service's registered clients, in the format of its `--clients` file.
const CLIENTS_TOML: &str = r#"[[client]]
client_id = "client-a"
auth = "tls_client_auth"
san_dns = "client-a.demo.example"
scopes = ["read", "admin"]

[[client]]
client_id = "client-b"
auth = "tls_client_auth"
subject_dn = "O=Demo Corp,CN=client-b"
scopes = ["read"]
"#;

#[tokio::main]
async fn main() -> ExitCode {
    // The crate's warnings and start-up lines, as in every example; RUST_LOG changes it
    // (RUST_LOG=mtls_bound_token=debug shows why each refused request was refused).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,mtls_bound_token=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    match run().await {
        Ok(failures) if failures.is_empty() => {
            println!("\nEvery answer was the expected one. (exit code 0)");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!("\n{} check(s) FAILED:", failures.len());
            for failure in &failures {
                println!("  ✘ {failure}");
            }
            println!("(exit code 1)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("\nThe demo could not run: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Tells the story; returns the checks that failed. `Err` means the demo could not even
/// set up (a bad configuration, no free port).
async fn run() -> Result<Vec<String>, BoxError> {
    let mut story = Story::default();
    println!("mtls-bound-token demo: an access token that works only with the TLS");
    println!("certificate it was issued to (OAuth 2.0 mutual TLS, RFC 8705).");

    // --- The public key infrastructure -------------------------------------------------
    story.step("Create a private certificate authority (CA)");
    let ca = Ca::root("Demo Root CA");
    let ca_subject = PeerCertificate::from_der(&ca.cert_der)?
        .subject()
        .to_owned();
    println!("    CA subject: {ca_subject}");
    println!("    Both servers will accept TLS clients only with a certificate from this CA.");

    story.step("Issue a server certificate and two client certificates");
    let server_leaf = ca.server();
    let client_a = ca.client(&Subject {
        org: Some("Demo Corp".into()),
        dns: vec!["client-a.demo.example".into()],
        ..Subject::cn("client-a")
    });
    let client_b = ca.client(&Subject {
        org: Some("Demo Corp".into()),
        dns: vec!["client-b.demo.example".into()],
        ..Subject::cn("client-b")
    });
    println!("    server:   certificate for localhost and 127.0.0.1 (used by both servers)");
    // Parsed with the crate's own parser: this is how the servers will see them.
    for (name, leaf) in [("client A", &client_a), ("client B", &client_b)] {
        let parsed = PeerCertificate::from_der(&leaf.cert_der)?;
        println!(
            "    {name}: {}, DNS name {}",
            parsed.subject(),
            parsed.san_dns().join(", ")
        );
        println!(
            "              thumbprint (x5t#S256) {}",
            parsed.thumbprint()
        );
    }
    println!("    A thumbprint is the SHA-256 hash of a certificate. Each client keeps its");
    println!("    private key to itself; the TLS handshake proves it holds that key.");

    // --- The token service -------------------------------------------------------------
    story.step("Start the token service (the authorization server) on a free loopback port");
    let (token_addr, issuer, jwks, token_task) = start_token_service(&ca, &server_leaf).await?;
    println!("    Listening on {issuer}");
    println!("    POST /token   issues tokens to clients that authenticate with their");
    println!("                  certificate (RFC 8705 §2): there is no client secret.");
    println!("    Its registered clients (the --clients file of examples/token_service):");
    for line in CLIENTS_TOML.lines() {
        if line.is_empty() {
            println!();
        } else {
            println!("      {line}");
        }
    }
    println!("    It signs tokens with an ES256 key made at start; the public half, as a JWKS:");
    print_json("      ", &jwks);

    // --- The API -----------------------------------------------------------------------
    story.step("Start the API (the resource server) on another free loopback port");
    // Building the API's layer also installs jsonwebtoken's crypto provider, which the
    // token service's signing needs too: so the API starts before any token is issued.
    let (addr, server_task) = start_server(&ca, &server_leaf, &issuer, &jwks).await?;
    println!("    Listening on https://localhost:{}", addr.port());
    println!("    It trusts tokens signed with the token service's JWKS, iss {issuer}.");
    println!("    GET /whoami   needs a valid token bound to the caller's certificate");
    println!("    GET /admin    needs the same, and the scope \"admin\" in the token");

    let tls_a = client_tls(&ca, &client_a)?;
    let tls_b = client_tls(&ca, &client_b)?;

    // --- The token ---------------------------------------------------------------------
    let token_a = story
        .token_request(TokenCall {
            title: "Client A asks the token service for a token",
            addr: token_addr,
            client: ("client A", &tls_a),
            form: &[
                ("grant_type", "client_credentials"),
                ("client_id", "client-a"),
                ("scope", "read"),
            ],
            expect: TokenExpect::Token {
                who: "client A",
                thumbprint: &client_a.thumbprint,
            },
            why: "the certificate A presented in the handshake carries the DNS name \
                  client-a is registered with; the token names that certificate.",
        })
        .await;
    let Some(token_a) = token_a else {
        println!("\nWithout a token for A, the rest of the story cannot be told.");
        return Ok(story.end(&[token_task, server_task]));
    };
    let (jose_header, claims) = decode_jwt(&token_a)?;
    println!("    The token is a signed JWT. Anyone can read what it says:");
    println!("    header:");
    print_json("      ", &jose_header);
    println!("    claims:");
    print_json("      ", &claims);
    println!("    cnf.x5t#S256 is client A's thumbprint: the token is bound to A's certificate.");
    println!("    It grants the scope \"read\", not \"admin\".");

    story
        .token_request(TokenCall {
            title: "Client B asks for a token as client-a",
            addr: token_addr,
            client: ("client B", &tls_b),
            form: &[
                ("grant_type", "client_credentials"),
                ("client_id", "client-a"),
                ("scope", "read"),
            ],
            expect: TokenExpect::Error {
                status: StatusCode::UNAUTHORIZED,
                code: "invalid_client",
            },
            why: "B's certificate is genuine (same CA, so the handshake succeeds), but it \
                  does not carry client-a.demo.example, the DNS name client-a is \
                  registered with. A certificate cannot be borrowed like a password.",
        })
        .await;

    // --- The calls ---------------------------------------------------------------------
    story
        .call(Call {
            title: "Client A calls GET /whoami with its own token",
            addr,
            client: ("client A", &tls_a),
            path: "/whoami",
            token: Some(("A's token", &token_a)),
            expect: Expect::Identity {
                who: "client A",
                thumbprint: &client_a.thumbprint,
            },
            why: "the token works for the client it was issued to, and the handler \
                  learns who called: certificate, client_id and scopes.",
        })
        .await;

    story
        .call(Call {
            title: "Client B replays A's token (a stolen token)",
            addr,
            client: ("client B", &tls_b),
            path: "/whoami",
            token: Some(("A's token", &token_a)),
            expect: Expect::Refusal {
                status: StatusCode::UNAUTHORIZED,
                challenge: Challenge::Error("invalid_token", None),
            },
            why: "B is a genuine client of the same CA, so its TLS handshake succeeds; but \
                  the token names A's certificate. A stolen token is useless without A's \
                  private key.",
        })
        .await;

    story
        .call(Call {
            title: "Client A calls GET /whoami without any token",
            addr,
            client: ("client A", &tls_a),
            path: "/whoami",
            token: None,
            expect: Expect::Refusal {
                status: StatusCode::UNAUTHORIZED,
                challenge: Challenge::Bare,
            },
            why: "a certificate alone is not enough; the bare challenge (no error code) is \
                  what RFC 6750 asks for when a request carries no credentials at all.",
        })
        .await;

    story
        .call(Call {
            title: "Client A calls GET /admin with its \"read\" token",
            addr,
            client: ("client A", &tls_a),
            path: "/admin",
            token: Some(("A's token", &token_a)),
            expect: Expect::Refusal {
                status: StatusCode::FORBIDDEN,
                challenge: Challenge::Error("insufficient_scope", Some("admin")),
            },
            why: "the token is genuine and bound, but was not granted \"admin\". 403 (not \
                  401) tells the client that a token with the named scope would help.",
        })
        .await;

    let admin_token_a = story
        .token_request(TokenCall {
            title: "Client A asks the token service for \"read admin\"",
            addr: token_addr,
            client: ("client A", &tls_a),
            form: &[
                ("grant_type", "client_credentials"),
                ("client_id", "client-a"),
                ("scope", "read admin"),
            ],
            expect: TokenExpect::Token {
                who: "client A",
                thumbprint: &client_a.thumbprint,
            },
            why: "client-a is registered with the scopes read and admin, so it may ask for \
                  both; this token too is bound to A's certificate.",
        })
        .await;

    if let Some(admin_token_a) = admin_token_a {
        story
            .call(Call {
                title: "Client A calls GET /admin with its \"read admin\" token",
                addr,
                client: ("client A", &tls_a),
                path: "/admin",
                token: Some(("A's admin token", &admin_token_a)),
                expect: Expect::Identity {
                    who: "client A",
                    thumbprint: &client_a.thumbprint,
                },
                why: "same certificate, a token that grants \"admin\": let in.",
            })
            .await;
    }

    Ok(story.end(&[token_task, server_task]))
}

// === The servers =========================================================================

/// The token service of `examples/token_service`, configured with [`CLIENTS_TOML`]:
/// its TLS asks for a client certificate (from `ca`, or self-signed), and `POST /token`
/// decides by the client's registration. Returns its address, its URL (the `iss` of its
/// tokens), its JWKS and the task serving it.
async fn start_token_service(
    ca: &Ca,
    server: &Leaf,
) -> Result<(SocketAddr, String, Value, JoinHandle<()>), BoxError> {
    // The same file format and loader as `--clients`.
    let dir = tempfile::tempdir()?;
    let clients_file = dir.path().join("clients.toml");
    std::fs::write(&clients_file, CLIENTS_TOML)?;
    // No client of the demo is registered by jwks_uri: nothing is fetched.
    let fetcher = mtls_bound_token::remote::AuthServerClient::builder().build()?;
    let clients = load_clients(&clients_file, &fetcher).await?;

    let mut authenticator = ClientAuthenticator::builder().client_ca_pem(ca.cert_pem.clone());
    for registration in clients.registrations {
        authenticator = authenticator.register(registration);
    }
    let authenticator = authenticator.build()?;

    let tls = token_endpoint_tls(
        TlsServerConfig::builder()
            .certificate_chain_pem(server.chain_pem.clone())
            .private_key_pem(server.key_pem.clone()),
        ca.cert_pem.clone(),
    )?;
    // Port 0: the OS picks a free port, so the demo never collides with anything.
    let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
    let addr = listener.local_addr();
    let issuer = format!("https://localhost:{}", addr.port());

    let signer = Signer::generate()?;
    let jwks = signer.jwks();
    let settings = Settings {
        issuer: issuer.clone(),
        audience: AUDIENCE.into(),
        token_ttl: Duration::from_secs(300),
        rate_limit: NonZeroU32::new(60).expect("not zero"),
        signer,
        trusted_proxies: Vec::new(),
    };
    let app = TokenService::new(settings, authenticator, clients.policies).router();
    let task = tokio::spawn(async move {
        // The crate's server: every request carries its connection (certificate, peer
        // address), and slow or idle clients are cut off.
        if let Err(error) = Server::default().serve(listener, app).await {
            eprintln!("the token service stopped: {error}");
        }
    });
    Ok((addr, issuer, jwks, task))
}

/// `/whoami`: the caller as the layer established it.
async fn whoami(identity: ClientIdentity) -> Json<Value> {
    Json(json!({
        "thumbprint": identity.thumbprint(),
        "subject": identity.subject(),
        "client_id": identity.client_id(),
        "scopes": identity.scopes(),
        "bound": identity.is_bound(),
    }))
}

/// The API: TLS that requires a client certificate from `ca`, and the layer, trusting
/// the token service's `issuer` and `jwks`, in front of both routes. Runs until the
/// returned task is aborted.
async fn start_server(
    ca: &Ca,
    server: &Leaf,
    issuer: &str,
    jwks: &Value,
) -> Result<(SocketAddr, JoinHandle<()>), BoxError> {
    let auth = MtlsBoundTokenLayer::builder()
        .issuer(issuer)
        .audience(AUDIENCE)
        .jwks_json(jwks.to_string())
        .build()?;
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(whoami).route_layer(RequireScopeLayer::new("admin")),
        )
        // `route_layer`: the layer guards the routes above, and unknown paths stay 404.
        .route_layer(auth);

    let tls = TlsServerConfig::builder()
        .certificate_chain_pem(server.chain_pem.clone())
        .private_key_pem(server.key_pem.clone())
        .client_ca_pem(ca.cert_pem.clone())
        .build()?;
    let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
    let addr = listener.local_addr();
    let task = tokio::spawn(async move {
        // Every request carries its connection's client certificate, which is where the
        // layer looks for it.
        if let Err(error) = Server::default().serve(listener, app).await {
            eprintln!("the API stopped: {error}");
        }
    });
    Ok((addr, task))
}

// === The client ==========================================================================

/// A rustls client that trusts `ca` for the servers and presents `me`'s certificate.
fn client_tls(ca: &Ca, me: &Leaf) -> Result<Arc<rustls::ClientConfig>, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert_der.clone()))?;
    let chain =
        CertificateDer::pem_slice_iter(me.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(me.key_pem.as_bytes())?;
    // The provider is named explicitly: with `--all-features` rustls has two, and would
    // refuse to guess.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What came back from a server.
struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

/// `request` on a fresh mutual-TLS connection, within [`REQUEST_TIMEOUT`].
async fn exchange_over_mtls(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    request: Request<Full<Bytes>>,
) -> Result<Reply, BoxError> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        // The server certificate names localhost; we connect to 127.0.0.1 by address.
        let stream = TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; it ends when `sender` is dropped.
        tokio::spawn(connection);

        let response = sender.send_request(request).await?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>(Reply {
            status,
            challenge,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// `GET path`, with `Authorization: Bearer token` when given.
fn get_request(path: &str, token: Option<&str>) -> Result<Request<Full<Bytes>>, BoxError> {
    let mut request = Request::get(path).header(header::HOST, "localhost");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    Ok(request.body(Full::new(Bytes::new()))?)
}

/// `POST /token` with the form `body` (RFC 6749 §4.4).
fn token_post(body: &str) -> Result<Request<Full<Bytes>>, BoxError> {
    Ok(Request::post("/token")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))?)
}

// === The story and its checks ============================================================

/// Numbers the steps and keeps score.
#[derive(Default)]
struct Story {
    steps: usize,
    passed: usize,
    failures: Vec<String>,
}

/// One token request of the story and what it should get.
struct TokenCall<'a> {
    title: &'a str,
    addr: SocketAddr,
    /// Whose certificate the TLS client presents.
    client: (&'a str, &'a Arc<rustls::ClientConfig>),
    /// The form parameters.
    form: &'a [(&'a str, &'a str)],
    expect: TokenExpect<'a>,
    /// Why the expected outcome matters, for a newcomer.
    why: &'a str,
}

/// The outcome a token request should have.
enum TokenExpect<'a> {
    /// 200, a Bearer token bound to the certificate with this thumbprint.
    Token { who: &'a str, thumbprint: &'a str },
    /// An RFC 6749 §5.2 error.
    Error { status: StatusCode, code: &'a str },
}

/// One API request of the story and what it should get.
struct Call<'a> {
    title: &'a str,
    addr: SocketAddr,
    /// Whose certificate the TLS client presents.
    client: (&'a str, &'a Arc<rustls::ClientConfig>),
    path: &'a str,
    /// Which token is sent, if any: a name for the story, and the token.
    token: Option<(&'a str, &'a str)>,
    expect: Expect<'a>,
    /// Why the expected outcome matters, for a newcomer.
    why: &'a str,
}

/// The outcome an API call should have.
enum Expect<'a> {
    /// 200, and the identity of the certificate with this thumbprint, bound.
    Identity { who: &'a str, thumbprint: &'a str },
    /// A refusal with this status and `WWW-Authenticate` challenge.
    Refusal {
        status: StatusCode,
        challenge: Challenge<'a>,
    },
}

/// An RFC 6750 §3 challenge.
enum Challenge<'a> {
    /// Exactly `Bearer`: the request had no credentials.
    Bare,
    /// `Bearer error="code", …`, naming the required scope when given.
    Error(&'a str, Option<&'a str>),
}

impl Story {
    fn step(&mut self, title: &str) {
        self.steps += 1;
        println!("\n{:>2}. {title}", self.steps);
    }

    /// Scores a verdict and explains it.
    fn judge(&mut self, title: &str, wanted: &str, why: &str, verdict: Result<(), String>) {
        match verdict {
            Ok(()) => {
                self.passed += 1;
                println!("    ✔ As expected: {wanted}.");
                print_wrapped("      ", &format!("Why it matters: {why}"));
            }
            Err(problem) => {
                println!("    ✘ NOT as expected: wanted {wanted}; {problem}.");
                self.failures.push(format!("{title}: {problem}"));
            }
        }
    }

    /// Makes the token request, shows what went out and what came back, and checks it.
    /// Returns the access token when one was issued as expected.
    async fn token_request(&mut self, call: TokenCall<'_>) -> Option<String> {
        self.step(call.title);
        let (client_name, tls) = call.client;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(call.form)
            .finish();
        println!("    → POST /token over mutual TLS as {client_name}");
        println!("    → {body}");
        let reply = match token_post(&body) {
            Ok(request) => exchange_over_mtls(call.addr, Arc::clone(tls), request).await,
            Err(error) => Err(error),
        };
        let (verdict, token) = match reply {
            Ok(reply) => {
                println!("    ← {}", reply.status);
                match serde_json::from_str::<Value>(&reply.body) {
                    Ok(json) => print_json("      ", &shorten_token(json)),
                    Err(_) => println!("      {}", reply.body),
                }
                match call.expect.judge(&reply) {
                    Ok(token) => (Ok(()), token),
                    Err(problem) => (Err(problem), None),
                }
            }
            Err(error) => {
                println!("    ← no answer: {error}");
                (Err(format!("the request failed: {error}")), None)
            }
        };
        self.judge(call.title, &call.expect.describe(), call.why, verdict);
        token
    }

    /// Makes the API call, shows what went out and what came back, and checks it.
    async fn call(&mut self, call: Call<'_>) {
        self.step(call.title);
        let (client_name, tls) = call.client;
        println!("    → GET {} over mutual TLS as {client_name}", call.path);
        match call.token {
            Some((name, token)) => {
                println!("    → Authorization: Bearer {}… ({name})", &token[..12]);
            }
            None => println!("    → no Authorization header"),
        }

        let reply = match get_request(call.path, call.token.map(|t| t.1)) {
            Ok(request) => exchange_over_mtls(call.addr, Arc::clone(tls), request).await,
            Err(error) => Err(error),
        };
        let verdict = match reply {
            Ok(reply) => {
                show(&reply);
                call.expect.judge(&reply)
            }
            Err(error) => {
                println!("    ← no answer: {error}");
                Err(format!("the request failed: {error}"))
            }
        };
        self.judge(call.title, &call.expect.describe(), call.why, verdict);
    }

    /// Stops the servers (they live in this process: that is all the clean-up there
    /// is), prints the summary and returns the failures.
    fn end(self, tasks: &[JoinHandle<()>]) -> Vec<String> {
        for task in tasks {
            task.abort();
        }
        println!(
            "\nSummary: {} of {} checks passed.",
            self.passed,
            self.passed + self.failures.len()
        );
        self.failures
    }
}

/// Prints an API answer: status, the challenge of a refusal, the JSON of a success.
fn show(reply: &Reply) {
    println!("    ← {}", reply.status);
    if let Some(challenge) = &reply.challenge {
        println!("    ← WWW-Authenticate: {challenge}");
    }
    if reply.status.is_success() {
        match serde_json::from_str::<Value>(&reply.body) {
            Ok(json) => print_json("      ", &json),
            Err(_) => println!("      {}", reply.body),
        }
    }
}

/// A token response with its `access_token` cut short: it is a secret, so we never
/// print it whole.
fn shorten_token(mut json: Value) -> Value {
    if let Some(token) = json["access_token"].as_str() {
        let short = format!(
            "{}… ({} characters)",
            token.get(..12).unwrap_or(token),
            token.len()
        );
        json["access_token"] = Value::String(short);
    }
    json
}

impl TokenExpect<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Token { who, .. } => format!("200 OK with a token bound to {who}'s certificate"),
            Self::Error { status, code } => format!("{status} with error \"{code}\""),
        }
    }

    /// The issued token when the reply is the expected one, else what differs.
    fn judge(&self, reply: &Reply) -> Result<Option<String>, String> {
        let body: Value = serde_json::from_str(&reply.body)
            .map_err(|e| format!("got {}, and the body is not JSON: {e}", reply.status))?;
        match self {
            Self::Token { who, thumbprint } => {
                if reply.status != StatusCode::OK {
                    return Err(format!("got {} {}", reply.status, body["error"]));
                }
                if body["token_type"] != "Bearer" {
                    return Err(format!("the token_type is {}", body["token_type"]));
                }
                let token = body["access_token"]
                    .as_str()
                    .ok_or("there is no access_token")?;
                let (_, claims) =
                    decode_jwt(token).map_err(|e| format!("the token is not a JWT: {e}"))?;
                if claims["cnf"]["x5t#S256"] != *thumbprint {
                    return Err(format!("the token is not bound to {who}'s certificate"));
                }
                Ok(Some(token.to_owned()))
            }
            Self::Error { status, code } => {
                if reply.status != *status || body["error"] != *code {
                    return Err(format!("got {} {}", reply.status, body["error"]));
                }
                Ok(None)
            }
        }
    }
}

impl Expect<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Identity { who, .. } => format!("200 OK with {who}'s identity"),
            Self::Refusal { status, challenge } => {
                let challenge = match challenge {
                    Challenge::Bare => "a bare `WWW-Authenticate: Bearer`".to_owned(),
                    Challenge::Error(code, None) => format!("error=\"{code}\""),
                    Challenge::Error(code, Some(scope)) => {
                        format!("error=\"{code}\" naming scope=\"{scope}\"")
                    }
                };
                format!("{status} with {challenge}")
            }
        }
    }

    /// `Ok` when the reply is the expected one, else what differs.
    fn judge(&self, reply: &Reply) -> Result<(), String> {
        match self {
            Self::Identity { who, thumbprint } => {
                if reply.status != StatusCode::OK {
                    return Err(format!("got {}", reply.status));
                }
                let body: Value = serde_json::from_str(&reply.body)
                    .map_err(|e| format!("the body is not JSON: {e}"))?;
                if body["thumbprint"] != *thumbprint {
                    return Err(format!("the thumbprint is not {who}'s"));
                }
                if body["bound"] != true {
                    return Err("the identity is not marked as bound".to_owned());
                }
                Ok(())
            }
            Self::Refusal { status, challenge } => {
                if reply.status != *status {
                    return Err(format!("got {}", reply.status));
                }
                let got = reply.challenge.as_deref().unwrap_or("");
                let fits = match challenge {
                    Challenge::Bare => got == "Bearer",
                    Challenge::Error(code, scope) => {
                        got.starts_with(&format!("Bearer error=\"{code}\""))
                            && scope.is_none_or(|s| got.contains(&format!("scope=\"{s}\"")))
                    }
                };
                if fits {
                    Ok(())
                } else {
                    Err(format!("got the challenge `{got}`"))
                }
            }
        }
    }
}

// === Small helpers =======================================================================

/// A JWT's header and claims. Both are plain base64url JSON: a JWT is signed, not
/// encrypted, which is why the token must be kept secret rather than its contents.
fn decode_jwt(token: &str) -> Result<(Value, Value), BoxError> {
    let mut parts = token.split('.');
    let mut segment = || -> Result<Value, BoxError> {
        let text = parts.next().ok_or("not a JWT")?;
        Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text)?)?)
    };
    Ok((segment()?, segment()?))
}

/// `text` in lines of at most [`WIDTH`] columns, each starting with `indent`.
fn print_wrapped(indent: &str, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            println!("{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        println!("{indent}{line}");
    }
}

/// Pretty JSON, each line indented by `indent`.
fn print_json(indent: &str, value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    for line in text.lines() {
        println!("{indent}{line}");
    }
}
