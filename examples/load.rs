//! An mTLS load generator: wrk cannot present client certificates, this can.
//!
//! ```text
//! cargo run --release --example load -- \
//!     --url https://localhost:8443/whoami --ca ca.pem --cert a.pem --key a.key \
//!     --signing-key issuer.key --kid k1 --issuer https://as.example --audience https://api.example \
//!     --connections 32 --duration 10 --mix valid=90,stolen=4,expired=2,junk=2,none=2 \
//!     --server-pid "$(pgrep -f 'example resource_server')"
//! ```
//!
//! N keep-alive connections over HTTP/1.1, or over h2 with M streams each, or a new
//! connection (and handshake) per request. Tokens are minted here from `--signing-key`:
//! `valid` is bound to the client's certificate, `stolen` to another certificate,
//! `expired` expired an hour ago, `junk` is not a JWT, `none` sends no token. A valid
//! request must get 200 and every other one 401: anything else is counted as wrong.
//! Prints req/s, latency p50/p99/max, counts by status and kind, and, given the server's
//! PID, its CPU time and the requests per server CPU-second (the figure to compare on
//! a shared machine). `--json` prints the same as one JSON object.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser, Debug)]
#[command(about = "mTLS load generator with certificate-bound tokens")]
struct Args {
    /// The URL to GET (https).
    #[arg(long)]
    url: String,
    /// CA bundle the server's certificate is verified with (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Client key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// HTTP/2 (ALPN h2) instead of HTTP/1.1.
    #[arg(long)]
    http2: bool,
    /// With --http2: concurrent streams per connection.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// A new connection (TLS handshake) for every request.
    #[arg(long)]
    new_connection_per_request: bool,
    /// Issuer's signing key (PKCS#8 PEM, EC P-256 for ES256 or RSA for RS256).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// `alg` of the minted tokens: ES256 or RS256.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// `kid` of the minted tokens.
    #[arg(long)]
    kid: Option<String>,
    /// `iss` of the minted tokens.
    #[arg(long, default_value = "https://as.example")]
    issuer: String,
    /// `aud` of the minted tokens.
    #[arg(long, default_value = "https://api.example")]
    audience: String,
    /// A ready valid token instead of --signing-key (then only `valid`, `junk` and
    /// `none` can be in the mix).
    #[arg(long)]
    token: Option<String>,
    /// Weights of the kinds of request: valid, stolen, expired, junk, none.
    #[arg(long, default_value = "valid=100")]
    mix: String,
    /// Distinct valid tokens to cycle through (1: the same token every time, as a
    /// service client sends; many: defeats the server's token cache).
    #[arg(long, default_value_t = 1)]
    distinct_tokens: usize,
    /// The server's PID, for its CPU time over the run (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

const KINDS: [&str; 5] = ["valid", "stolen", "expired", "junk", "none"];

/// The tokens of each kind, made before the run.
struct Tokens {
    valid: Vec<String>,
    stolen: Option<String>,
    expired: Option<String>,
    weights: [u32; 5],
}

impl Tokens {
    fn new(args: &Args, certificate: &CertificateDer<'_>) -> Result<Self, String> {
        let mut weights = [0u32; 5];
        for part in args.mix.split(',').filter(|p| !p.is_empty()) {
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: {part:?} is not KIND=WEIGHT"))?;
            let index = KINDS
                .iter()
                .position(|k| *k == kind)
                .ok_or_else(|| format!("--mix: unknown kind {kind:?} (one of {KINDS:?})"))?;
            weights[index] = weight
                .parse()
                .map_err(|_| format!("--mix: weight {weight:?} is not a number"))?;
        }
        if weights.iter().all(|w| *w == 0) {
            return Err("--mix: every weight is 0".into());
        }
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.as_ref()));
        let Some(path) = &args.signing_key else {
            let valid = args.token.clone().into_iter().collect::<Vec<_>>();
            if (weights[0] > 0 && valid.is_empty()) || weights[1] > 0 || weights[2] > 0 {
                return Err(
                    "valid tokens need --signing-key or --token; stolen and expired ones need \
                     --signing-key"
                        .into(),
                );
            }
            return Ok(Self {
                valid,
                stolen: None,
                expired: None,
                weights,
            });
        };
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (alg, key) = match args.alg.as_str() {
            "ES256" => (
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::EncodingKey::from_ec_pem(&pem),
            ),
            "RS256" => (
                jsonwebtoken::Algorithm::RS256,
                jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
            ),
            other => return Err(format!("--alg {other}: ES256 or RS256")),
        };
        let key = key.map_err(|e| format!("{}: {e}", path.display()))?;
        let mut header = jsonwebtoken::Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = args.kid.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sign = |exp: u64, thumbprint: &str, jti: usize| {
            let claims = json!({
                "iss": args.issuer, "aud": args.audience, "sub": "load", "client_id": "load",
                "scope": "read", "iat": now, "exp": exp, "jti": jti.to_string(),
                "cnf": {"x5t#S256": thumbprint},
            });
            jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
        };
        let valid = (0..args.distinct_tokens.max(1))
            .map(|jti| sign(now + 3600, &thumbprint, jti))
            .collect::<Result<Vec<_>, _>>()?;
        let other = URL_SAFE_NO_PAD.encode([7u8; 32]);
        Ok(Self {
            valid,
            stolen: Some(sign(now + 3600, &other, 0)?),
            expired: Some(sign(now - 3600, &thumbprint, 0)?),
            weights,
        })
    }

    /// The kind and Authorization value of request number `n` (deterministic spread).
    fn pick(&self, n: u64) -> (usize, Option<String>) {
        let total: u64 = self.weights.iter().map(|w| u64::from(*w)).sum();
        // A fixed permutation of the sequence spreads the kinds through the run.
        let mut point = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total;
        let mut kind = 0;
        for (i, w) in self.weights.iter().enumerate() {
            if point < u64::from(*w) {
                kind = i;
                break;
            }
            point -= u64::from(*w);
        }
        let token = match kind {
            0 => Some(self.valid[(n as usize) % self.valid.len()].clone()),
            1 => self.stolen.clone(),
            2 => self.expired.clone(),
            3 => Some("not-a-jwt.junk".to_owned()),
            _ => None,
        };
        (kind, token.map(|t| format!("Bearer {t}")))
    }
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    by_status: std::collections::BTreeMap<u16, u64>,
    /// Per kind: requests, and answers other than the one that kind must get.
    by_kind: [(u64, u64); 5],
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn record(&mut self, kind: usize, started: Instant, status: Result<StatusCode, String>) {
        match status {
            Ok(status) => {
                let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                self.latencies_us.push(micros);
                *self.by_status.entry(status.as_u16()).or_default() += 1;
                let expected = if kind == 0 { 200 } else { 401 };
                self.by_kind[kind].0 += 1;
                if status.as_u16() != expected {
                    self.by_kind[kind].1 += 1;
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        for (mine, theirs) in self.by_kind.iter_mut().zip(other.by_kind) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct Target {
    host: String,
    port: u16,
    path: String,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Target {
    async fn connect(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    }

    fn request(&self, authorization: Option<&str>) -> Request<Empty<Bytes>> {
        let mut request = Request::get(self.path.as_str()).header("host", self.host.as_str());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.body(Empty::new()).expect("request")
    }
}

async fn status_of<B>(
    response: Result<http::Response<B>, hyper::Error>,
) -> Result<StatusCode, String>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    let response = response.map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// One HTTP/1.1 keep-alive connection (or a fresh one per request) until `deadline`.
async fn http1_worker(
    target: Arc<Target>,
    tokens: Arc<Tokens>,
    deadline: Instant,
    fresh: bool,
    offset: u64,
    stride: u64,
) -> Tally {
    let mut tally = Tally::default();
    let mut n = offset;
    let mut sender = None;
    while Instant::now() < deadline {
        if sender.is_none() || fresh {
            match target.connect().await {
                Ok(tls) => match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await {
                    Ok((s, connection)) => {
                        tokio::spawn(connection);
                        sender = Some(s);
                    }
                    Err(e) => {
                        tally.record(0, Instant::now(), Err(format!("http1: {e}")));
                        continue;
                    }
                },
                Err(e) => {
                    tally.record(0, Instant::now(), Err(e));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let (kind, authorization) = tokens.pick(n);
        n += stride;
        let started = Instant::now();
        let status = match s.ready().await {
            Ok(()) => {
                status_of(
                    s.send_request(target.request(authorization.as_deref()))
                        .await,
                )
                .await
            }
            Err(e) => Err(format!("connection: {e}")),
        };
        if status.is_err() {
            sender = None;
        }
        tally.record(kind, started, status);
    }
    tally
}

/// One h2 connection with `streams` concurrent request loops until `deadline`.
async fn http2_worker(
    target: Arc<Target>,
    tokens: Arc<Tokens>,
    deadline: Instant,
    streams: usize,
    offset: u64,
    stride: u64,
) -> Tally {
    let mut tally = Tally::default();
    let sender = match target.connect().await {
        Ok(tls) => {
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
            {
                Ok((sender, connection)) => {
                    tokio::spawn(connection);
                    sender
                }
                Err(e) => {
                    tally.record(0, Instant::now(), Err(format!("h2: {e}")));
                    return tally;
                }
            }
        }
        Err(e) => {
            tally.record(0, Instant::now(), Err(e));
            return tally;
        }
    };
    let mut loops = Vec::new();
    for stream in 0..streams as u64 {
        let (target, tokens, mut sender) =
            (Arc::clone(&target), Arc::clone(&tokens), sender.clone());
        loops.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = offset + stream * stride;
            while Instant::now() < deadline {
                let (kind, authorization) = tokens.pick(n);
                n += stride * streams as u64;
                let started = Instant::now();
                let status = match sender.ready().await {
                    Ok(()) => {
                        status_of(
                            sender
                                .send_request(target.request(authorization.as_deref()))
                                .await,
                        )
                        .await
                    }
                    Err(e) => Err(format!("connection: {e}")),
                };
                let failed = status.is_err();
                tally.record(kind, started, status);
                if failed {
                    break;
                }
            }
            tally
        }));
    }
    for handle in loops {
        if let Ok(t) = handle.await {
            tally.merge(t);
        }
    }
    tally
}

/// utime + stime of `pid` in seconds (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn tls_config(args: &Args) -> Result<(rustls::ClientConfig, CertificateDer<'static>), String> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(&args.ca)?) {
        let cert = cert.map_err(|e| format!("--ca: {e}"))?;
        roots.add(cert).map_err(|e| format!("--ca: {e}"))?;
    }
    let chain = CertificateDer::pem_slice_iter(&read(&args.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--cert: {e}"))?;
    let leaf = chain
        .first()
        .cloned()
        .ok_or("--cert holds no certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(&read(&args.key)?).map_err(|e| format!("--key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("--cert/--key: {e}"))?;
    config.alpn_protocols = vec![if args.http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok((config, leaf))
}

async fn run(args: Args) -> Result<bool, String> {
    let url: http::Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
    if url.scheme_str() != Some("https") {
        return Err("--url must be https".into());
    }
    let host = url.host().ok_or("--url has no host")?.to_owned();
    let port = url.port_u16().unwrap_or(443);
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let (config, leaf) = tls_config(&args)?;
    let tokens = Arc::new(Tokens::new(&args, &leaf)?);
    let server_name = ServerName::try_from(host.clone()).map_err(|e| format!("--url host: {e}"))?;
    let target = Arc::new(Target {
        host,
        port,
        path,
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    });
    if args.connections == 0 || args.streams == 0 {
        return Err("--connections and --streams must be at least 1".into());
    }

    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let stride = args.connections as u64;
    let mut workers = Vec::new();
    for i in 0..args.connections as u64 {
        let (target, tokens) = (Arc::clone(&target), Arc::clone(&tokens));
        workers.push(if args.http2 {
            tokio::spawn(http2_worker(
                target,
                tokens,
                deadline,
                args.streams,
                i,
                stride,
            ))
        } else {
            tokio::spawn(http1_worker(
                target,
                tokens,
                deadline,
                args.new_connection_per_request,
                i,
                stride,
            ))
        });
    }
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.map_err(|e| e.to_string())?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };

    tally.latencies_us.sort_unstable();
    let requests = tally.latencies_us.len() as u64;
    let wrong: u64 = tally.by_kind.iter().map(|(_, w)| w).sum();
    let summary = json!({
        "requests": requests,
        "seconds": elapsed,
        "requests_per_second": requests as f64 / elapsed,
        "latency_us": {
            "p50": percentile(&tally.latencies_us, 50.0),
            "p99": percentile(&tally.latencies_us, 99.0),
            "max": tally.latencies_us.last().copied().unwrap_or(0),
        },
        "by_status": tally.by_status.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "by_kind": KINDS.iter().zip(tally.by_kind).map(|(k, (n, w))| (k.to_string(), json!({"requests": n, "wrong": w}))).collect::<serde_json::Map<_, _>>(),
        "errors": tally.errors,
        "first_error": tally.first_error,
        "server_cpu_seconds": cpu,
        "requests_per_server_cpu_second": cpu.filter(|c| *c > 0.0).map(|c| requests as f64 / c),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{requests} requests in {elapsed:.1} s: {:.0} req/s",
            requests as f64 / elapsed
        );
        println!(
            "latency: p50 {} µs, p99 {} µs, max {} µs",
            summary["latency_us"]["p50"],
            summary["latency_us"]["p99"],
            summary["latency_us"]["max"]
        );
        println!("by status: {}", summary["by_status"]);
        println!("by kind (requests, wrong answers): {}", summary["by_kind"]);
        println!("connection errors: {}", tally.errors);
        if let Some(e) = &tally.first_error {
            println!("first error: {e}");
        }
        if let Some(cpu) = cpu {
            println!(
                "server CPU: {cpu:.2} s ({:.0} % of one core), {:.0} requests per server CPU-second",
                100.0 * cpu / elapsed,
                if cpu > 0.0 {
                    requests as f64 / cpu
                } else {
                    0.0
                }
            );
        }
    }
    Ok(wrong == 0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("load: some requests got the wrong answer (see by kind)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::from(2)
        }
    }
}
