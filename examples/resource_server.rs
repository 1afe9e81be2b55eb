//! A resource server that accepts only certificate-bound access tokens.
//!
//! ```text
//! cargo run --release --example resource_server -- \
//!     --jwks jwks.json --issuer https://as.example --audience https://api.example \
//!     --tls-cert server.crt --tls-key server.key --client-ca clients-ca.crt
//! ```
//!
//! Routes: `GET /healthz` (open), `GET /whoami` (the caller's identity as JSON),
//! `GET /admin` (the same, but the token must carry scope `admin`), and, when
//! `--audience` is an http(s) URL, its RFC 9728 metadata at
//! `GET /.well-known/oauth-protected-resource[/<audience path>]` (open).

#[path = "common/cli.rs"]
mod cli;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, ValueEnum};
use cli::{LimitArgs, OpsArgs, ProxyArgs, RevocationArgs, announce, exit_code, init_tracing};
use mtls_bound_token::reload::Reloader;
use mtls_bound_token::remote::{
    AuthServerClient, IntrospectionVerifier, RemoteError, RemoteJwks, discover,
};
use mtls_bound_token::tls::{TlsListener, TlsServerConfig, shutdown_signal};
use mtls_bound_token::token::{IssuerRouter, JwksFile, JwtVerifier, TokenVerifier};
use mtls_bound_token::{
    ClientIdentity, MtlsBoundTokenLayer, ProtectedResourceMetadata, RequireScopeLayer,
};

#[derive(Parser, Debug)]
#[command(about = "Serve /whoami and /admin to clients whose token is bound to their certificate")]
struct Args {
    /// Socket address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// JWKS that access tokens are verified with: a file, or an `http://` or `https://`
    /// URL that is fetched and kept fresh (its Cache-Control, refetched at most every
    /// 10 s for tokens with an unknown kid).
    #[arg(
        long,
        value_name = "PATH_OR_URL",
        required_unless_present_any = ["discovery", "introspection_url"],
        conflicts_with = "discovery"
    )]
    jwks: Option<String>,
    /// Find the JWKS from --issuer's metadata (RFC 8414, else OpenID Connect Discovery),
    /// instead of --jwks. The metadata must name exactly --issuer.
    #[arg(long)]
    discovery: bool,
    /// Verify tokens by introspection (RFC 7662) at this endpoint: alone, or beside
    /// --jwks / --discovery (then JWTs of --issuer by key, other tokens introspected).
    #[arg(long, value_name = "URL")]
    introspection_url: Option<String>,
    /// client_secret_basic client id for the introspection endpoint.
    #[arg(long, value_name = "ID", requires = "introspection_client_secret")]
    introspection_client_id: Option<String>,
    /// client_secret_basic secret for the introspection endpoint.
    #[arg(long, value_name = "SECRET", requires = "introspection_client_id")]
    introspection_client_secret: Option<String>,
    /// Verify every request's token (signature or introspection) instead of reusing
    /// verifications of a repeated token; the binding and scopes are checked on every
    /// request either way.
    #[arg(long)]
    no_token_cache: bool,
    /// Permit plain-http JWKS, discovery and introspection URLs (loopback and tests
    /// only).
    #[arg(long)]
    allow_http_keys: bool,
    /// CA bundle (PEM or DER) that https URLs of the authorization server are verified
    /// with (default: the system's roots).
    #[arg(long, value_name = "PEM")]
    as_ca: Option<PathBuf>,
    /// Required `iss` of access tokens.
    #[arg(long)]
    issuer: String,
    /// Required `aud` of access tokens (a string, or an array containing it).
    #[arg(long)]
    audience: String,
    /// Whether every token must be bound to the client certificate.
    #[arg(long, value_enum, default_value_t = Binding::Required)]
    binding: Binding,
    /// Terminate TLS in-process with this certificate chain (PEM or DER).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM or DER).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With TLS: require a client certificate that chains to this CA bundle (PEM or DER).
    /// Without it, any client certificate is accepted for binding, and none is required.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    #[command(flatten)]
    proxy: ProxyArgs,
    #[command(flatten)]
    revocation: RevocationArgs,
    #[command(flatten)]
    ops: OpsArgs,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Binding {
    Required,
    Optional,
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args = Args::parse();
    exit_code(run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Handlers first: a SIGTERM right after "listening on" must be a graceful stop.
    let shutdown = shutdown_signal();
    args.ops.serve_metrics().await?;
    // The audience is the resource's identifier: when it is a URL, publish its metadata.
    let metadata = ProtectedResourceMetadata::new(&args.audience).map(|metadata| {
        metadata
            .authorization_server(&args.issuer)
            .scopes_supported(["admin"])
    });
    if let Err(e) = &metadata {
        tracing::info!("no protected resource metadata route: {e}");
    }
    // A --jwks file is reloaded with the TLS material.
    let jwks_file = match &args.jwks {
        Some(jwks) if !is_url(jwks) => Some(JwksFile::open(jwks)?),
        _ => None,
    };
    let verifier = token_verifier(&args, jwks_file.clone()).await?;
    let mut auth = MtlsBoundTokenLayer::builder().verifier(verifier);
    if args.no_token_cache {
        auth = auth.without_token_cache();
    }
    if let Binding::Optional = args.binding {
        auth = auth.allow_unbound_tokens();
    }
    if args.revocation.ocsp != cli::Ocsp::Off && args.tls_cert.is_none() {
        return Err(
            "--ocsp checks client certificates in the TLS handshake: it needs \
                    --tls-cert (behind a proxy, have the proxy ask OCSP, or give --crl)"
                .into(),
        );
    }
    let ocsp = args.revocation.ocsp()?;
    if !args.revocation.crls.is_empty()
        && args.tls_cert.is_none()
        && args.proxy.cert_header_format.is_none()
    {
        return Err(
            "--crl needs --tls-cert or --trusted-proxy: without either, no client \
                    certificate reaches this server"
                .into(),
        );
    }
    // One trust for the handshakes and the forwarded certificates.
    let trust = args.revocation.trust(args.client_ca.as_deref())?;
    let revocation = trust.as_ref().filter(|trust| trust.crl_count() > 0);
    let mut reloader = Reloader::new().expiry_warning(args.ops.expiry_warning());
    if let Some(keys) = &jwks_file {
        reloader = reloader.jwks_file(keys);
    }
    if let Some(source) = args
        .proxy
        .certificate_source(revocation, args.ops.expiry_warning())?
    {
        auth = auth.certificate_source(source);
    }
    let auth = auth.build()?;

    let app = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/admin",
            get(whoami).route_layer(RequireScopeLayer::new("admin")),
        )
        .route_layer(auth)
        .route("/healthz", get(|| async { "ok" }));
    let app = match metadata {
        Ok(metadata) => app.merge(metadata.router()),
        Err(_) => app,
    };
    let server = args.limits.server()?;

    match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => {
            let trust = trust.clone();
            let tls = args.limits.tls(
                TlsServerConfig::builder()
                    .certificate_chain_file(cert)
                    .private_key_file(key)
                    .expiry_warning(args.ops.expiry_warning()),
            );
            let tls = match ocsp {
                Some(checker) => tls.ocsp(checker),
                None => tls,
            };
            let (tls, mode) = match (args.client_ca.is_some(), trust) {
                (true, Some(trust)) => (tls.client_trust(trust), "client certificate required"),
                (false, Some(trust)) => (
                    tls.accept_any_client_certificate_unless_revoked(trust)
                        .allow_anonymous_clients(),
                    "client certificate optional, not chain-validated, checked against CRLs",
                ),
                (_, None) => (
                    tls.accept_any_client_certificate()
                        .allow_anonymous_clients(),
                    "client certificate optional, not chain-validated",
                ),
            };
            let tls = tls.build()?;
            let _reloading = reloader.tls(&tls).spawn()?;
            let listener = TlsListener::bind(args.listen, tls)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            let addr = listener.local_addr();
            announce(&format!("listening on {addr} (https, {mode})"));
            server
                .serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        _ => {
            if let Some(trust) = &trust {
                reloader = reloader.client_trust(trust);
            }
            let _reloading = reloader.spawn()?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            announce(&format!("listening on {} (http)", listener.local_addr()?));
            server
                .serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}

/// The verifier the options ask for: JWTs by key (--jwks, --discovery), opaque tokens by
/// introspection (--introspection-url), or both: JWTs of --issuer by key, any other
/// token introspected.
async fn token_verifier(
    args: &Args,
    jwks_file: Option<JwksFile>,
) -> Result<Arc<dyn TokenVerifier>, Box<dyn std::error::Error>> {
    let client = || auth_server_client(args.allow_http_keys, args.as_ca.as_deref());
    let metadata = match args.discovery {
        true => {
            let metadata = discover(&client()?, &args.issuer).await?;
            tracing::info!(metadata = %metadata.metadata_url, "authorization server metadata read");
            Some(metadata)
        }
        false => None,
    };
    let jwks = match (&args.jwks, &metadata) {
        (Some(jwks), _) => Some(jwks.clone()),
        (None, Some(metadata)) => Some(metadata.jwks_uri.clone().ok_or_else(|| {
            format!(
                "the metadata of {} has no jwks_uri; give --jwks instead of --discovery",
                args.issuer
            )
        })?),
        (None, None) => None,
    };
    let jwt = match jwks {
        Some(jwks) => {
            let jwt = JwtVerifier::builder()
                .issuer(&args.issuer)
                .audience(&args.audience);
            let jwt = match jwks_file {
                Some(file) => jwt.key_source(file),
                None => jwt.key_source(RemoteJwks::builder(&jwks).client(client()?).build().await?),
            };
            Some(jwt.build()?)
        }
        None => None,
    };
    let endpoint = args.introspection_url.clone().or_else(|| {
        // Discovery names the endpoint; it is used when credentials for it are given.
        args.introspection_client_id.as_ref()?;
        metadata.as_ref()?.introspection_endpoint.clone()
    });
    let introspection = match (
        endpoint,
        &args.introspection_client_id,
        &args.introspection_client_secret,
    ) {
        (Some(endpoint), Some(id), Some(secret)) => Some(
            IntrospectionVerifier::builder(endpoint)
                .client(client()?)
                .client_secret_basic(id, secret)
                .issuer(&args.issuer)
                .audience(&args.audience)
                .build()?,
        ),
        (Some(_), _, _) => {
            return Err("--introspection-url needs --introspection-client-id and \
                        --introspection-client-secret (client_secret_basic)"
                .into());
        }
        (None, Some(_), _) => {
            return Err(
                "--introspection-client-id needs --introspection-url, or --discovery \
                        with an authorization server that names its introspection_endpoint"
                    .into(),
            );
        }
        (None, None, _) => None,
    };
    Ok(match (jwt, introspection) {
        (Some(jwt), None) => Arc::new(jwt),
        (None, Some(introspection)) => Arc::new(introspection),
        (Some(jwt), Some(introspection)) => Arc::new(
            IssuerRouter::builder()
                .issuer(jwt)
                .otherwise(introspection)
                .build()?,
        ),
        (None, None) => return Err("give --jwks, --discovery or --introspection-url".into()),
    })
}

fn is_url(jwks: &str) -> bool {
    jwks.starts_with("http://") || jwks.starts_with("https://")
}

/// The client for the authorization server's URLs.
fn auth_server_client(
    allow_http: bool,
    ca: Option<&Path>,
) -> Result<AuthServerClient, RemoteError> {
    let mut client = AuthServerClient::builder();
    if allow_http {
        client = client.allow_http_for_loopback_and_tests();
    }
    if let Some(ca) = ca {
        client = client.ca_file(ca);
    }
    client.build()
}

/// The caller's identity; its JSON shape is `ClientIdentity`'s `Serialize`.
async fn whoami(identity: ClientIdentity) -> Json<ClientIdentity> {
    Json(identity)
}
