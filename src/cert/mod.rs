//! The client certificate: parsed once per connection ([`PeerCertificate`]), and where a
//! request's certificate comes from ([`ClientCertificateSource`]): the TLS connection
//! ([`ConnectionCertificate`]) or a trusted proxy's header ([`ProxyCertificate`]).

mod dn;
mod formats;
mod peer;
mod proxy;
mod source;
mod trusted_network;

pub use dn::{DistinguishedName, DnParseError};
pub use formats::{HeaderFormat, UnknownHeaderFormat};
pub(crate) use peer::MAX_CERTIFICATE_LEN;
pub use peer::{CertificateError, PeerCertificate};
pub use proxy::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_HEADER_LEN, ProxyCertificate, ProxyCertificateBuilder,
};
pub use source::{ClientCertificateSource, ConnectionCertificate};
pub use trusted_network::{TrustedNetwork, TrustedNetworkParseError};

/// The network type of [`TrustedNetwork::net`] (the `ipnet` crate's), re-exported so
/// that it can be named without depending on `ipnet` directly.
pub use ipnet::IpNet;
