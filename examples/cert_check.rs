//! What an operator reaches for when a binding fails: what a certificate says, its
//! `x5t#S256`, whether it chains to a CA bundle, whether CRLs revoke it, and how long it
//! has left. Reads PEM or DER files, or connects to a TLS endpoint (optionally
//! presenting a client certificate) and checks what the server presents.
//!
//! ```text
//! cargo run --example cert_check -- --cert client.pem --ca clients-ca.pem --crl ca.crl
//! cargo run --example cert_check -- --connect localhost:8443 --ca server-ca.pem \
//!     --client-cert client.pem --client-key client.key
//! ```
//!
//! Exit status: 0 when every check passed, 1 when one failed (expired, not chaining,
//! revoked, handshake refused), 2 for unusable input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Parser;
use mtls_bound_token::cert::PeerCertificate;
use mtls_bound_token::expiry::format_utc;
use mtls_bound_token::trust::{ClientTrust, RevocationStatus, UnknownRevocation};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Parser, Debug)]
#[command(about = "Show a certificate's identity, x5t#S256, chain, revocation and expiry")]
struct Args {
    /// A certificate file (PEM, leaf first with its intermediates, or DER) to check as
    /// a client certificate.
    #[arg(long, value_name = "PEM_OR_DER", required_unless_present = "connect")]
    cert: Option<PathBuf>,
    /// Connect to this TLS endpoint and check the certificate it presents.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "cert")]
    connect: Option<String>,
    /// The CA bundle: client certificates (--cert) must chain to it; with --connect,
    /// the server's certificate is verified against it (without it, the server's
    /// certificate is shown but not verified).
    #[arg(long, value_name = "PEM_OR_DER")]
    ca: Option<PathBuf>,
    /// CRLs to look the certificate up in. Repeatable.
    #[arg(long = "crl", value_name = "PEM_OR_DER")]
    crls: Vec<PathBuf>,
    /// With --connect: present this client certificate (PEM chain)...
    #[arg(
        long,
        value_name = "PEM",
        requires = "client_key",
        requires = "connect"
    )]
    client_cert: Option<PathBuf>,
    /// ...and this key.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// With --connect: the name to ask for and verify (default: HOST).
    #[arg(long, value_name = "NAME", requires = "connect")]
    server_name: Option<String>,
}

type BoxError = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Whether every check passed.
fn run(args: &Args) -> Result<bool, BoxError> {
    let chain = match (&args.cert, &args.connect) {
        (Some(path), _) => read_certificates(path)?,
        (None, Some(endpoint)) => match connect(args, endpoint)? {
            Ok(chain) => chain,
            Err(refused) => {
                println!("handshake: refused: {refused}");
                return Ok(false);
            }
        },
        (None, None) => unreachable!("clap requires one"),
    };
    let leaf = PeerCertificate::from_chain(chain.iter().map(|c| c.as_ref()))
        .map_err(|e| format!("the certificate cannot be read: {e}"))?;
    let mut ok = describe(&leaf);
    if args.cert.is_some() {
        ok &= check_as_client(args, &chain, &leaf)?;
    } else if !args.crls.is_empty() {
        ok &= revocation(args, &leaf)?;
    }
    Ok(ok)
}

/// What the certificate says, and its validity now.
fn describe(leaf: &PeerCertificate) -> bool {
    println!("subject:   {}", leaf.subject());
    let sans: Vec<String> = leaf
        .san_dns()
        .iter()
        .map(|v| format!("DNS:{v}"))
        .chain(leaf.san_uri().iter().map(|v| format!("URI:{v}")))
        .chain(leaf.san_ip().iter().map(|v| format!("IP:{v}")))
        .chain(leaf.san_email().iter().map(|v| format!("email:{v}")))
        .collect();
    println!(
        "SANs:      {}",
        if sans.is_empty() {
            "(none)".to_owned()
        } else {
            sans.join(", ")
        }
    );
    println!("x5t#S256:  {}", leaf.thumbprint());
    println!(
        "validity:  {} .. {}",
        format_utc(leaf.not_before()),
        format_utc(leaf.not_after())
    );
    let now = SystemTime::now();
    if now < leaf.not_before() {
        println!("expiry:    not valid yet");
        return false;
    }
    match leaf.not_after().duration_since(now) {
        Ok(left) => {
            println!("expiry:    {} days left", left.as_secs() / 86_400);
            true
        }
        Err(past) => {
            println!(
                "expiry:    expired {} days ago",
                past.duration().as_secs() / 86_400
            );
            false
        }
    }
}

/// The trust of --ca and --crl (unknown revocation status reported, not refused).
fn trust(args: &Args, with_ca: bool) -> Result<ClientTrust, BoxError> {
    let mut trust = ClientTrust::builder().unknown_revocation(UnknownRevocation::Allow);
    if let Some(ca) = args.ca.as_ref().filter(|_| with_ca) {
        trust = trust.ca_file(ca);
    }
    for crl in &args.crls {
        trust = trust.crl_file(crl);
    }
    Ok(trust.build()?)
}

fn check_as_client(
    args: &Args,
    chain: &[CertificateDer<'static>],
    leaf: &PeerCertificate,
) -> Result<bool, BoxError> {
    let mut ok = true;
    if let Some(ca) = &args.ca {
        match trust(args, true)?.check_client_chain(chain) {
            Ok(()) => println!("chain:     valid against {}", ca.display()),
            Err(refusal) => {
                println!("chain:     refused ({}): {refusal}", refusal.cause);
                ok = false;
            }
        }
    }
    if !args.crls.is_empty() {
        ok &= revocation(args, leaf)?;
    }
    Ok(ok)
}

fn revocation(args: &Args, leaf: &PeerCertificate) -> Result<bool, BoxError> {
    let status = trust(args, false)?.revocation_status(leaf);
    let note = match status {
        RevocationStatus::Good => "not revoked by the CRL of its issuer",
        RevocationStatus::Revoked => "REVOKED by the CRL of its issuer",
        RevocationStatus::Unknown => "unknown: no given CRL is from its issuer",
        RevocationStatus::CrlExpired => "not listed, but its issuer's CRL is past nextUpdate",
        _ => "not checked",
    };
    println!("revocation: {} ({note})", status.as_str());
    Ok(status == RevocationStatus::Good)
}

fn read_certificates(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, BoxError> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let pem = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>();
    match pem {
        Ok(chain) if !chain.is_empty() => Ok(chain),
        _ if !bytes.starts_with(b"-----") => Ok(vec![CertificateDer::from(bytes)]),
        _ => Err(format!("{} holds no CERTIFICATE block", path.display()).into()),
    }
}

/// The chain the server presents, or why the handshake (or the first exchange after
/// it, where TLS 1.3 servers refuse a client certificate) failed.
fn connect(
    args: &Args,
    endpoint: &str,
) -> Result<Result<Vec<CertificateDer<'static>>, String>, BoxError> {
    use std::io::{Read, Write};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &args.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(ca)? {
                roots.add(certificate)?;
            }
            builder.with_root_certificates(roots)
        }
        None => {
            println!("(no --ca: the server's certificate is shown, not verified)");
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ShowAnything(provider)))
        }
    };
    let config = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read the key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    let host = endpoint
        .rsplit_once(':')
        .map_or(endpoint, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = args.server_name.as_deref().unwrap_or(host).to_owned();
    let server_name =
        ServerName::try_from(name.clone()).map_err(|_| format!("{name:?} is not a server name"))?;
    let timeout = std::time::Duration::from_secs(10);
    let address = std::net::ToSocketAddrs::to_socket_addrs(endpoint)
        .map_err(|e| format!("{endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint}: no address"))?;
    let mut tcp = std::net::TcpStream::connect_timeout(&address, timeout)
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name)?;
    let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
    // One request: a TLS 1.3 server refuses a client certificate only after the
    // client's side of the handshake is done.
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    if let Err(error) = tls.write_all(request.as_bytes()) {
        return Ok(Err(error.to_string()));
    }
    let mut first = [0u8; 1];
    if let Err(error) = tls.read(&mut first) {
        return Ok(Err(error.to_string()));
    }
    println!(
        "handshake: completed ({:?}){}",
        connection
            .protocol_version()
            .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
        if args.ca.is_some() {
            ", server certificate verified against --ca"
        } else {
            ""
        }
    );
    let chain = connection
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    Ok(Ok(chain))
}

/// Accepts whatever the server presents (its handshake signature still verified), so
/// that the tool can show it without a CA.
#[derive(Debug)]
struct ShowAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ShowAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
