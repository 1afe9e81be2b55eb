//! The client certificate: parsed once per connection ([`PeerCertificate`]), and where a
//! request's certificate comes from ([`ClientCertificateSource`]): the TLS connection
//! ([`ConnectionCertificate`]) or a trusted proxy's header ([`ProxyCertificate`]).

mod dn;
mod formats;
mod peer;
mod proxy;
mod source;

pub use dn::{DistinguishedName, DnParseError};
pub use formats::{HeaderFormat, UnknownHeaderFormat};
pub use peer::{CertificateError, PeerCertificate};
pub use proxy::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_MAX_HEADER_LEN, ProxyCertificate, ProxyCertificateBuilder,
};
pub use source::{ClientCertificateSource, ConnectionCertificate};
