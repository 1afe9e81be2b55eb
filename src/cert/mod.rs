//! The client certificate: parsed once per connection ([`PeerCertificate`]), and where a
//! request's certificate comes from ([`ClientCertificateSource`]).

mod dn;
mod peer;
mod source;

pub use peer::{CertificateError, PeerCertificate};
pub use source::{ClientCertificateSource, ConnectionCertificate};

pub(crate) use dn::rfc4514_string;
