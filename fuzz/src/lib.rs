//! What the fuzz targets share: the fixed certificates and keys they run with
//! (`fixtures/`, made by `tests/seeds.rs`), a runtime for the tower services, and the
//! checks each parser's answer must pass.
//!
//! Everything here drives the crate through its public API only, so that the parsers
//! behind it can be rewritten without touching the targets.
//!
//! This library never links libFuzzer (only `fuzz_targets/` do), so the seed generator
//! in `tests/` can use it as an ordinary test.

pub mod layer;
pub mod parsers;
pub mod proxy;
pub mod token_request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mtls_bound_token::{ConnectionInfo, PeerCertificate};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The issuer and audience of the layer the targets drive, and of the seed tokens.
pub const ISSUER: &str = "https://as.fuzz.test";
pub const AUDIENCE: &str = "https://api.fuzz.test";

/// The peer every target's requests come from, trusted as the proxy where one is.
pub const PEER: &str = "127.0.0.1:40000";
/// A peer that is not the proxy.
pub const UNTRUSTED_PEER: &str = "127.0.0.2:40000";

/// A certificate of the fixtures, in every form the targets need.
#[derive(Debug, Clone)]
pub struct Cert {
    pub pem: String,
    pub der: Vec<u8>,
    /// `x5t#S256`.
    pub thumbprint: String,
    /// Hex SHA-256 of the DER, as Envoy's `Hash` writes it.
    pub hash_hex: String,
}

impl Cert {
    fn from_pem(pem: String) -> Self {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap_or_else(|e| panic!("a fixture is not a PEM certificate: {e}"))
            .to_vec();
        Self {
            thumbprint: thumbprint(&der),
            hash_hex: hex(&Sha256::digest(&der)),
            pem,
            der,
        }
    }

    /// Parsed as the crate parses a connection's certificate.
    pub fn peer(&self) -> Arc<PeerCertificate> {
        Arc::new(PeerCertificate::from_der(&self.der).expect("a fixture certificate parses"))
    }
}

/// The fixed PKI the targets run with. See `tests/seeds.rs` for what each one is.
#[derive(Debug)]
pub struct Fixtures {
    /// The root CA that issues the clients below (and the server).
    pub ca: Cert,
    /// An intermediate CA under the root.
    pub intermediate: Cert,
    /// Client A: `O=Example,CN=client-a`, a SAN of every type. The layer targets'
    /// connection certificate; the seed tokens are bound to it.
    pub a: Cert,
    /// Client B: `CN=client-b`.
    pub b: Cert,
    /// Client C, issued by the intermediate: `c_chain_pem` is C then the intermediate.
    pub c: Cert,
    pub c_chain_pem: String,
    /// `CN=q"`: a subject with a quote, as in the XFCC quote-parity forgeries.
    pub q: Cert,
    /// A URI SAN with a quote, `spiffe://q"`.
    pub u: Cert,
    /// A self-signed client certificate, registered by its x5c JWKS (`s_jwks`).
    pub s: Cert,
    pub s_jwks: String,
    /// The server certificate and its key (PKCS#8 PEM), for `TlsServerConfig`.
    pub server: Cert,
    pub server_key_pem: String,
    /// The public keys that verify the seed tokens: ES256 `es` and EdDSA `ed`.
    pub jwks: String,
    /// The seed tokens that the layer must accept with client A's certificate; any
    /// other token must be refused.
    pub valid_tokens: Vec<String>,
}

/// Where the fixtures are: found by the crate's path, not the working directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; make the fixtures with `cargo test --manifest-path fuzz/Cargo.toml \
             --test seeds -- --ignored`",
            path.display()
        )
    })
}

impl Fixtures {
    /// Reads `fixtures/` (once per process).
    pub fn get() -> &'static Fixtures {
        static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
        FIXTURES.get_or_init(Self::load)
    }

    fn load() -> Self {
        let cert = |name: &str| Cert::from_pem(read(name));
        Self {
            ca: cert("ca.pem"),
            intermediate: cert("intermediate.pem"),
            a: cert("a.pem"),
            b: cert("b.pem"),
            c: cert("c.pem"),
            c_chain_pem: read("c-chain.pem"),
            q: cert("q.pem"),
            u: cert("u.pem"),
            s: cert("s.pem"),
            s_jwks: read("s-jwks.json"),
            server: cert("server.pem"),
            server_key_pem: read("server.key.pem"),
            jwks: read("jwks.json"),
            valid_tokens: read("valid-tokens.txt")
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// RFC 8705 `x5t#S256`, computed here rather than by the crate: the thing to check
/// the crate's against.
pub fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn peer() -> SocketAddr {
    PEER.parse().expect("PEER is an address")
}

/// `ConnectInfo` as a server puts it on each request: the peer and its certificate.
pub fn connect_info(
    peer: SocketAddr,
    certificate: Option<Arc<PeerCertificate>>,
) -> axum::extract::ConnectInfo<ConnectionInfo> {
    axum::extract::ConnectInfo(ConnectionInfo::new(peer, certificate))
}

/// One runtime per process for the tower services: a fresh one per input would cost
/// more than the code under test.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// What the crate's `PeerCertificate` must say about itself whatever it was read
/// from: its thumbprint is base64url(SHA-256(DER)), of the DER it keeps.
pub fn check_peer_certificate(cert: &PeerCertificate) {
    match cert.der() {
        Some(der) => {
            assert_eq!(cert.thumbprint(), thumbprint(der), "thumbprint of the DER");
            assert_eq!(cert.thumbprint_bytes()[..], Sha256::digest(der)[..]);
        }
        // A certificate known by its hash alone (Envoy's `Hash` without `Cert`).
        None => assert_eq!(
            cert.thumbprint(),
            URL_SAFE_NO_PAD.encode(cert.thumbprint_bytes())
        ),
    }
    assert_eq!(
        cert.thumbprint().len(),
        43,
        "base64url of 32 bytes, no padding"
    );
}
