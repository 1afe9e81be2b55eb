//! What the example servers share on the command line: logging, the ready line, and
//! the options that put them behind a trusted proxy.

use clap::Args;
use mtls_bound_token::ConfigError;
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate, TrustedNetwork};

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
    /// The certificate source these options describe, if any.
    pub fn certificate_source(&self) -> Result<Option<ProxyCertificate>, ConfigError> {
        let Some(format) = self.cert_header_format else {
            return Ok(None);
        };
        let mut proxy = ProxyCertificate::builder(format);
        for network in &self.trusted_proxies {
            proxy = proxy.trusted_proxy(*network);
        }
        if let Some(header) = &self.cert_header {
            proxy = proxy.header(header.clone());
        }
        proxy.build().map(Some)
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
