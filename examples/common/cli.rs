//! What the example servers share on the command line: logging, the ready line, and
//! the options that put them behind a trusted proxy.

use std::net::IpAddr;

use clap::Args;
use ipnet::IpNet;
use mtls_bound_token::ConfigError;
use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};

/// `--trusted-proxy`, `--cert-header`, `--cert-header-format`.
#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// Requests whose TCP peer is inside this CIDR (or is this address) may carry the
    /// client certificate in a header. Repeatable.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_net, requires = "cert_header_format")]
    pub trusted_proxies: Vec<IpNet>,
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
        for net in &self.trusted_proxies {
            proxy = proxy.trusted_proxy(*net);
        }
        if let Some(header) = &self.cert_header {
            proxy = proxy.header(header.clone());
        }
        proxy.build().map(Some)
    }
}

/// A CIDR, or a bare address meaning just that host.
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR such as 10.0.0.5/32 or fd00::/64"))
}

/// Logs to stderr; `RUST_LOG` overrides the default `warn`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Prints the line that tells a supervisor (or a test) the server is ready.
pub fn announce(line: &str) {
    use std::io::Write;
    println!("{line}");
    let _ = std::io::stdout().flush();
}
