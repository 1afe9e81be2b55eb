//! A minimal OAuth 2.0 authorization server for certificate-bound tokens: clients
//! authenticate with their TLS certificate (RFC 8705 §2) and get ES256 access tokens
//! bound to it (RFC 8705 §3, RFC 9068).
//!
//! ```text
//! cargo run --release --example token_service -- \
//!     --issuer https://127.0.0.1:9443 --audience https://api.example \
//!     --tls-cert server.crt --tls-key server.key --client-ca clients-ca.crt \
//!     --clients clients.toml
//! ```

#[path = "../common/cli.rs"]
mod cli;
mod service;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cli::{LimitArgs, OpsArgs, ProxyArgs, RevocationArgs, announce, exit_code, init_tracing};
use mtls_bound_token::client_auth::{
    ClientAuthMethod, ClientAuthenticator, token_endpoint_tls_with_trust,
};
use mtls_bound_token::reload::Reloader;
use mtls_bound_token::remote::AuthServerClient;
use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
use service::{Settings, Signer, TokenService, load_clients};

#[derive(Parser, Debug)]
#[command(
    about = "Issue certificate-bound access tokens to clients that authenticate with their TLS certificate"
)]
struct Args {
    /// Socket address to listen on.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: SocketAddr,
    /// `iss` of issued tokens and of the metadata.
    #[arg(long)]
    issuer: String,
    /// `aud` of issued tokens when the request names no `resource`.
    #[arg(long)]
    audience: String,
    /// The service's TLS certificate chain (PEM or DER).
    #[arg(long)]
    tls_cert: PathBuf,
    /// The private key of --tls-cert (PEM or DER).
    #[arg(long)]
    tls_key: PathBuf,
    /// CA bundle that tls_client_auth clients must chain to (PEM or DER).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Registered clients (TOML).
    #[arg(long)]
    clients: PathBuf,
    /// CA bundle (PEM or DER) that clients' https `jwks_uri`s are verified with
    /// (default: the system's roots).
    #[arg(long, value_name = "PEM")]
    jwks_uri_ca: Option<PathBuf>,
    /// Permit plain-http `jwks_uri`s on loopback addresses (tests only).
    #[arg(long)]
    allow_http_jwks_uri: bool,
    /// EC P-256 private key for ES256 (PEM); generated at start when absent.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    token_ttl: u64,
    /// Authenticated token requests per minute per client certificate; the other limits
    /// are multiples of it.
    #[arg(long, default_value = "60")]
    rate_limit: NonZeroU32,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    revocation: RevocationArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Handlers first: a SIGTERM right after "listening on" must be a graceful stop.
    let shutdown = shutdown_signal();
    args.ops.serve_metrics().await?;
    let mut fetcher = AuthServerClient::builder();
    if args.allow_http_jwks_uri {
        fetcher = fetcher.allow_http_for_loopback_and_tests();
    }
    if let Some(ca) = &args.jwks_uri_ca {
        fetcher = fetcher.ca_file(ca);
    }
    let clients = load_clients(&args.clients, &fetcher.build()?).await?;
    let mut authenticator = ClientAuthenticator::builder();
    if !args.revocation.crls.is_empty() && args.client_ca.is_none() {
        return Err(
            "--crl needs --client-ca: it revokes tls_client_auth certificates, and \
                    self_signed_tls_client_auth clients are registered by their certificate, \
                    which no CRL covers"
                .into(),
        );
    }
    // One trust for the handshakes and the client authentication.
    let trust = args
        .revocation
        .trust(args.client_ca.as_deref())
        .map_err(|e| format!("--client-ca / --crl: {e}"))?;
    if let Some(trust) = &trust {
        authenticator = authenticator.client_trust(trust.clone());
    }
    for registration in clients.registrations {
        if args.client_ca.is_none()
            && matches!(registration.method(), ClientAuthMethod::TlsClientAuth(_))
        {
            return Err(format!(
                "client {:?} uses tls_client_auth: give --client-ca, the CA bundle its \
                 certificates chain to",
                registration.client_id()
            )
            .into());
        }
        authenticator = authenticator.register(registration);
    }
    // A forwarded tls_client_auth certificate meets the CRLs in its chain validation.
    if let Some(source) = args
        .proxy
        .certificate_source(None, args.ops.expiry_warning())?
    {
        authenticator = authenticator.certificate_source(source);
    }
    let authenticator = authenticator.build().map_err(|e| match &args.client_ca {
        Some(path) => format!("--client-ca {}: {e}", path.display()),
        None => e.to_string(),
    })?;

    let signer = match &args.signing_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --signing-key {}: {e}", path.display()))?;
            Signer::from_pem(&pem).map_err(|e| format!("--signing-key {}: {e}", path.display()))?
        }
        None => Signer::generate()?,
    };
    let settings = Settings {
        issuer: args.issuer,
        audience: args.audience,
        token_ttl: Duration::from_secs(args.token_ttl),
        rate_limit: args.rate_limit,
        signer,
        trusted_proxies: args.proxy.trusted_proxies.iter().map(|n| n.net()).collect(),
    };
    let app = TokenService::new(settings, authenticator, clients.policies).router();
    let server = args.limits.server()?;

    let tls = args.limits.tls(
        TlsServerConfig::builder()
            .certificate_chain_file(&args.tls_cert)
            .private_key_file(&args.tls_key)
            .expiry_warning(args.ops.expiry_warning()),
    );
    let tls = match args.revocation.ocsp()? {
        Some(checker) => tls.ocsp(checker),
        None => tls,
    };
    let tls = match trust {
        Some(trust) => token_endpoint_tls_with_trust(tls, trust)?,
        // Only self-signed clients can authenticate; the endpoint checks each one.
        None => tls.accept_any_client_certificate().build()?,
    };
    let _reloading = Reloader::new()
        .tls(&tls)
        .expiry_warning(args.ops.expiry_warning())
        .spawn()?;
    let listener = TlsListener::bind(args.listen, tls)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    announce(&format!(
        "listening on {} (https, token endpoint /token)",
        listener.local_addr()
    ));
    server
        .serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
