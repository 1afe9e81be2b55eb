//! What the example servers share on the command line: logging, the ready line, and
//! the options that put them behind a trusted proxy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use mtls_bound_token::ConfigError;
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate, TrustedNetwork};
use mtls_bound_token::serve::{ServeConfigError, Server};
use mtls_bound_token::tls::{TlsConfigError, TlsServerConfigBuilder};
use mtls_bound_token::trust::{
    ClientTrust, DEFAULT_OCSP_TIMEOUT, OcspChecker, OcspMode, UnknownRevocation,
};

/// `--trusted-proxy`, `--cert-header`, `--cert-header-format`.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Requests whose TCP peer is inside this CIDR (or is this address) may carry the
    /// client certificate in a header. Repeatable.
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        requires = "cert_header_format"
    )]
    pub trusted_proxies: Vec<TrustedNetwork>,
    /// The header the trusted proxy puts the certificate in (default: the format's).
    #[arg(long, value_name = "NAME", requires = "cert_header_format")]
    pub cert_header: Option<String>,
    /// How the proxy writes the certificate: nginx, xfcc, rfc9440, traefik, haproxy,
    /// aws-alb, caddy.
    #[arg(long, value_name = "F", requires = "trusted_proxies")]
    pub cert_header_format: Option<HeaderFormat>,
}

impl ProxyArgs {
    /// The certificate source these options describe, if any; forwarded certificates
    /// checked against the CRLs of `revocation`, when given.
    pub fn certificate_source(
        &self,
        revocation: Option<&ClientTrust>,
        expiry_warning: Duration,
    ) -> Result<Option<ProxyCertificate>, ConfigError> {
        let Some(format) = self.cert_header_format else {
            return Ok(None);
        };
        let mut proxy = ProxyCertificate::builder(format).expiry_warning(expiry_warning);
        if let Some(trust) = revocation {
            proxy = proxy.check_revocation(trust.clone());
        }
        for network in &self.trusted_proxies {
            proxy = proxy.trusted_proxy(*network);
        }
        if let Some(header) = &self.cert_header {
            proxy = proxy.header(header.clone());
        }
        proxy.build().map(Some)
    }
}

/// `--metrics-listen`, `--expiry-warning-days`: what an operator watches.
#[derive(Args, Debug)]
pub struct OpsArgs {
    /// Serve `GET /metrics` in Prometheus text format on this address (plain HTTP, no
    /// authentication); off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Warn this many days before a client, server or CA certificate ends, or a CRL's
    /// nextUpdate passes.
    #[arg(long, value_name = "N", default_value_t = 14,
          value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub expiry_warning_days: u32,
}

impl OpsArgs {
    /// The expiry warning window.
    pub fn expiry_warning(&self) -> Duration {
        Duration::from_secs(u64::from(self.expiry_warning_days) * 86_400)
    }

    /// With `--metrics-listen`: installs the Prometheus recorder and serves
    /// `GET /metrics` on that address, in a task of its own.
    pub async fn serve_metrics(&self) -> Result<(), Box<dyn std::error::Error>> {
        let Some(addr) = self.metrics_listen else {
            return Ok(());
        };
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("--metrics-listen: {e}"))?;
        mtls_bound_token::telemetry::describe();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics-listen {addr}: cannot listen: {e}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics served at /metrics");
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        );
        tokio::spawn(async move {
            if let Err(error) = Server::default().serve(listener, app).await {
                tracing::warn!(%error, "the metrics server stopped");
            }
        });
        Ok(())
    }
}

/// `--crl`, `--crl-unknown`: revocation of client certificates.
#[derive(Args, Debug)]
pub struct RevocationArgs {
    /// A CRL (PEM or DER): client certificates it revokes fail the handshake, or are
    /// refused when a trusted proxy forwards them. Repeatable.
    #[arg(long = "crl", value_name = "PEM_OR_DER")]
    pub crls: Vec<PathBuf>,
    /// With CRLs loaded, what happens to a certificate whose status no loaded CRL
    /// covers.
    #[arg(long, value_enum, value_name = "allow|deny", default_value_t = CrlUnknown::Deny)]
    pub crl_unknown: CrlUnknown,
    /// OCSP for client certificates in the TLS handshake (responder from the
    /// certificate's AIA): `soft` refuses only a certificate the responder says is
    /// revoked; `hard` also refuses when no good answer comes.
    #[arg(long, value_enum, value_name = "off|soft|hard", default_value_t = Ocsp::Off)]
    pub ocsp: Ocsp,
}

/// `--ocsp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ocsp {
    /// Not asked.
    Off,
    /// Refuse what the responder says is revoked.
    Soft,
    /// Refuse unless the responder says good.
    Hard,
}

/// `--crl-unknown`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CrlUnknown {
    /// Accept it.
    Allow,
    /// Refuse it.
    Deny,
}

impl RevocationArgs {
    /// The OCSP checker `--ocsp` asks for, if any.
    pub fn ocsp(&self) -> Result<Option<OcspChecker>, mtls_bound_token::remote::RemoteError> {
        let mode = match self.ocsp {
            Ocsp::Off => return Ok(None),
            Ocsp::Soft => OcspMode::Soft,
            Ocsp::Hard => OcspMode::Hard,
        };
        OcspChecker::new(mode, None, DEFAULT_OCSP_TIMEOUT).map(Some)
    }

    /// The client trust of the CA bundle `ca` (when given) and the CRLs; `None` when
    /// there is neither.
    pub fn trust(&self, ca: Option<&Path>) -> Result<Option<ClientTrust>, TlsConfigError> {
        if ca.is_none() && self.crls.is_empty() {
            return Ok(None);
        }
        let mut trust = ClientTrust::builder().unknown_revocation(match self.crl_unknown {
            CrlUnknown::Allow => UnknownRevocation::Allow,
            CrlUnknown::Deny => UnknownRevocation::Deny,
        });
        if let Some(ca) = ca {
            trust = trust.ca_file(ca);
        }
        for crl in &self.crls {
            trust = trust.crl_file(crl);
        }
        trust.build().map(Some)
    }
}

/// `--header-read-timeout`, `--idle-timeout`, `--handshake-timeout`, `--max-handshakes`,
/// `--max-handshakes-per-ip`, `--max-connections`, `--max-connections-per-ip`: what one
/// client may hold of the server. Timeouts in whole seconds, everything at least 1.
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// A request's headers must arrive within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = at_least_one())]
    pub header_read_timeout: u64,
    /// An idle keep-alive connection is closed after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = at_least_one())]
    pub idle_timeout: u64,
    /// A TLS handshake must finish within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = at_least_one())]
    pub handshake_timeout: u64,
    /// TLS handshakes in flight (when all are taken, the oldest is shed).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = at_least_one())]
    pub max_handshakes: u64,
    /// TLS handshakes in flight from one address (IPv6: one /64).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = at_least_one())]
    pub max_handshakes_per_ip: u64,
    /// Open connections.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one())]
    pub max_connections: u64,
    /// Open connections from one address (IPv6: one /64).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = at_least_one())]
    pub max_connections_per_ip: u64,
}

fn at_least_one() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..)
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl LimitArgs {
    /// The HTTP server with these limits.
    pub fn server(&self) -> Result<Server, ServeConfigError> {
        Server::builder()
            .header_read_timeout(Duration::from_secs(self.header_read_timeout))
            .idle_timeout(Duration::from_secs(self.idle_timeout))
            .max_connections(count(self.max_connections))
            .max_connections_per_ip(count(self.max_connections_per_ip))
            .build()
    }

    /// The TLS handshake limits, applied to `tls`.
    pub fn tls(&self, tls: TlsServerConfigBuilder) -> TlsServerConfigBuilder {
        tls.handshake_timeout(Duration::from_secs(self.handshake_timeout))
            .max_concurrent_handshakes(count(self.max_handshakes))
            .max_handshakes_per_ip(count(self.max_handshakes_per_ip))
    }
}

/// What is logged unless `RUST_LOG` says otherwise: every warning, and the crate's
/// start-up lines (its `info`); refusals of single requests are at `debug`
/// (`RUST_LOG=mtls_bound_token=debug` shows them, each with its reason).
pub const DEFAULT_LOG_FILTER: &str = "warn,mtls_bound_token=info";

/// Logs to stderr; `RUST_LOG` (an `EnvFilter`) overrides [`DEFAULT_LOG_FILTER`].
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .init();
}

/// The exit of a server's `run`: 0, or its error's `Display` (which says what to fix,
/// unlike the `Debug` form `main() -> Result` would print) and exit code 2.
pub fn exit_code(result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Prints the line that tells a supervisor (or a test) the server is ready.
pub fn announce(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}
