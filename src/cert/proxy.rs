//! The client certificate as a trusted proxy forwards it in a header (RFC 8705 §6.5).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use subtle::ConstantTimeEq;

use super::formats::Forwarded;
use super::{
    ClientCertificateSource, DistinguishedName, HeaderFormat, PeerCertificate, TrustedNetwork,
};
use crate::trust::ClientTrust;
use crate::{AuthError, AuthReason, ConfigError, ConnectionInfo};

/// The default bound on a certificate header's size.
pub const DEFAULT_MAX_HEADER_LEN: usize = 16 * 1024;
/// The default number of parsed header values kept.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
/// Bytes of cache per entry of capacity: a typical header and its certificate take
/// 2–3 KiB, so the cache's memory stays near `entries × 4 KiB` even when clients send
/// headers up to the size bound.
const CACHE_BYTES_PER_ENTRY: u64 = 4096;

type CertificateCache = quick_cache::sync::Cache<String, Arc<PeerCertificate>, CacheWeight>;

/// Weighs an entry by the bytes it holds.
#[derive(Clone)]
struct CacheWeight;

impl quick_cache::Weighter<String, Arc<PeerCertificate>> for CacheWeight {
    fn weight(&self, key: &String, certificate: &Arc<PeerCertificate>) -> u64 {
        let der = certificate.der().map_or(0, <[u8]>::len);
        let chain: usize = certificate.chain_der().iter().map(Vec::len).sum();
        // The parsed fields cost a few hundred bytes more.
        (key.len() + der + chain + 512) as u64
    }
}

/// Reads the client certificate from a proxy's header, but only on requests whose TCP
/// peer is a trusted proxy (by address, or by the proxy's own mTLS certificate).
///
/// - From a trusted proxy: the header is the client's certificate; without the header
///   the request has none. The connection's own TLS certificate is the proxy's, so it
///   is never used.
/// - From anyone else: the header is ignored (logged at debug) and the connection's
///   handshake certificate is used, if any. Direct clients and proxied ones can share a
///   listener.
/// - A header that appears twice, is too large, or cannot be read answers 400.
///   RFC 9440's `Client-Cert-Chain` is the exception: a list, it may come on several
///   field lines, read as one list in their order (RFC 9110 §5.3), all of them together
///   within [`max_header_len`](ProxyCertificateBuilder::max_header_len).
/// - A forwarded certificate outside its validity period answers 401 `invalid_token`,
///   on every request, cached or not; see
///   [`allow_expired_certificates`](ProxyCertificateBuilder::allow_expired_certificates).
///
/// ```
/// use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
///
/// let source = ProxyCertificate::builder(HeaderFormat::Nginx)
///     .trusted_proxy("10.0.0.5".parse()?) // the proxy, and nothing else
///     .trusted_proxy("fd00:0:0:7::/64".parse()?) // a subnet that holds proxies only
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProxyCertificate {
    proxies: Vec<IpNet>,
    proxy_thumbprints: Vec<[u8; 32]>,
    proxy_subjects: Vec<DistinguishedName>,
    format: HeaderFormat,
    header: HeaderName,
    companion: Option<HeaderName>,
    max_len: usize,
    allow_expired: bool,
    revocation: Option<ClientTrust>,
    expiry: crate::expiry::ClientExpiryWarnings,
    cache: Option<CertificateCache>,
}

impl std::fmt::Debug for ProxyCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCertificate")
            .field("proxies", &self.proxies)
            .field("format", &self.format)
            .field("header", &self.header)
            .field("allow_expired_certificates", &self.allow_expired)
            .field("revocation", &self.revocation)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ProxyCertificate`].
#[derive(Debug)]
pub struct ProxyCertificateBuilder {
    proxies: Vec<IpNet>,
    proxy_thumbprints: Vec<String>,
    proxy_subjects: Vec<String>,
    format: HeaderFormat,
    header: Option<String>,
    max_len: usize,
    allow_expired: bool,
    revocation: Option<ClientTrust>,
    expiry_warning: std::time::Duration,
    cache_capacity: usize,
}

impl ProxyCertificate {
    /// Starts a configuration for headers in `format`.
    pub fn builder(format: HeaderFormat) -> ProxyCertificateBuilder {
        ProxyCertificateBuilder {
            proxies: Vec::new(),
            proxy_thumbprints: Vec::new(),
            proxy_subjects: Vec::new(),
            format,
            header: None,
            max_len: DEFAULT_MAX_HEADER_LEN,
            allow_expired: false,
            revocation: None,
            expiry_warning: crate::expiry::DEFAULT_EXPIRY_WARNING,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    fn is_trusted(&self, connection: &ConnectionInfo) -> bool {
        let ip = connection.remote_addr().ip().to_canonical();
        if self.proxies.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        let Some(cert) = connection.client_certificate() else {
            return false;
        };
        let by_thumbprint = self
            .proxy_thumbprints
            .iter()
            .fold(subtle::Choice::from(0), |found, t| {
                found | t.ct_eq(cert.thumbprint_bytes())
            });
        // A subject means something only when a CA vouched for it: a self-signed
        // certificate can carry any subject.
        bool::from(by_thumbprint)
            || (connection.client_certificate_validated()
                && self.proxy_subjects.iter().any(|s| s == cert.subject_name()))
    }

    /// The certificate in the headers of a request from a trusted proxy.
    fn certificate_in_headers(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Arc<PeerCertificate>>, AuthError> {
        let Some(value) = self.single(headers, &self.header)? else {
            return Ok(None);
        };
        if value.trim().is_empty() {
            return Err(AuthError::invalid_request(
                "the client certificate header is empty",
            ));
        }
        let with_companion = match &self.companion {
            Some(name) => self.with_companion(headers, name, value)?,
            None => None,
        };
        // The cache key is the value alone, or the value, '\n' (which no header value
        // holds, so the two cannot run into each other) and the companion's lines.
        let (key, companion) = match &with_companion {
            Some(joined) => (joined.as_str(), Some(&joined[value.len() + 1..])),
            None => (value, None),
        };
        let certificate = match self.cache.as_ref().and_then(|c| c.get(key)) {
            Some(cached) => cached,
            None => {
                let certificate = match self.format.parse(value, companion) {
                    Ok(Forwarded::Chain(chain)) => PeerCertificate::read_lazily_chain(chain)
                        .map_err(|_| {
                            AuthError::invalid_request(
                                "the client certificate header holds no valid certificate",
                            )
                        })?,
                    Ok(Forwarded::Certificate(certificate)) => *certificate,
                    Err(description) => return Err(AuthError::invalid_request(description)),
                };
                let certificate = Arc::new(certificate);
                if let Some(cache) = &self.cache {
                    cache.insert(key.to_owned(), Arc::clone(&certificate));
                }
                certificate
            }
        };
        // After the cache, not before it: an entry outlives the validity it was read in,
        // and the CRLs can change under it.
        self.check_validity(&certificate)?;
        self.check_revocation(&certificate)?;
        self.expiry.check(&certificate, "proxy");
        Ok(Some(certificate))
    }

    /// The certificate must not be revoked by the CRLs of the configured trust, as they
    /// are now.
    fn check_revocation(&self, certificate: &PeerCertificate) -> Result<(), AuthError> {
        let Some(trust) = &self.revocation else {
            return Ok(());
        };
        match trust.current().check_leaf(certificate) {
            Ok(_) => Ok(()),
            Err(refusal) => {
                tracing::debug!(
                    thumbprint = certificate.thumbprint(),
                    reason = ?refusal,
                    "forwarded client certificate refused by the CRLs"
                );
                Err(AuthError::invalid_token_because(
                    AuthReason::CertificateRevoked,
                    refusal.description(),
                ))
            }
        }
    }

    /// The certificate must be within its validity period now, unless allowed otherwise.
    fn check_validity(&self, certificate: &PeerCertificate) -> Result<(), AuthError> {
        self.check_validity_at(certificate, SystemTime::now())
    }

    /// [`check_validity`](Self::check_validity) at `now`. Both bounds are inclusive
    /// (RFC 5280 §4.1.2.5: valid from `notBefore` through `notAfter`).
    fn check_validity_at(
        &self,
        certificate: &PeerCertificate,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        // A certificate attested by its hash alone (an XFCC `Hash` without `Cert`)
        // carries no validity period to check.
        if self.allow_expired || certificate.der().is_none() {
            return Ok(());
        }
        // The proxy checked the validity at its handshake; this check covers a proxy that
        // does not (AWS ALB passthrough, `optional_no_ca`), a connection that outlives
        // the certificate, and a header replayed later. An expired certificate is a
        // credential that no longer counts, like a token past `exp`: 401, not 400.
        if now > certificate.not_after() {
            Err(AuthError::invalid_token_because(
                AuthReason::CertificateExpired,
                "the client certificate the proxy forwarded has expired",
            ))
        } else if now < certificate.not_before() {
            Err(AuthError::invalid_token_because(
                AuthReason::CertificateExpired,
                "the client certificate the proxy forwarded is not valid yet",
            ))
        } else {
            Ok(())
        }
    }

    /// The one value of `name`, bounded and ASCII.
    fn single<'h>(
        &self,
        headers: &'h HeaderMap,
        name: &HeaderName,
    ) -> Result<Option<&'h str>, AuthError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthError::invalid_request(
                "the client certificate header appears more than once",
            ));
        }
        if value.len() > self.max_len {
            return Err(too_large());
        }
        ascii(value).map(Some)
    }

    /// `value`, a `'\n'`, then every field line of `name` in order, joined by `", "`
    /// into one list (RFC 9110 §5.3), or `None` when there is none. The lines together,
    /// with their separators, are bounded like a single header.
    fn with_companion(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
        value: &str,
    ) -> Result<Option<String>, AuthError> {
        let mut lines = headers.get_all(name).iter().peekable();
        let Some(first) = lines.peek() else {
            return Ok(None);
        };
        let mut joined = String::with_capacity(value.len() + 1 + first.len());
        joined.push_str(value);
        joined.push('\n');
        let start = joined.len();
        for (i, line) in lines.enumerate() {
            if i > 0 {
                joined.push_str(", ");
            }
            if joined.len() - start + line.len() > self.max_len {
                return Err(too_large());
            }
            joined.push_str(ascii(line)?);
        }
        Ok(Some(joined))
    }
}

fn too_large() -> AuthError {
    AuthError::invalid_request("the client certificate header is too large")
}

fn ascii(value: &HeaderValue) -> Result<&str, AuthError> {
    // A header value holds no control byte but HTAB, so ASCII is one fast scan (what
    // `to_str` checks byte by byte); ASCII is UTF-8.
    let bytes = value.as_bytes();
    bytes
        .is_ascii()
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
        .ok_or_else(|| AuthError::invalid_request("the client certificate header is not ASCII"))
}

impl ClientCertificateSource for ProxyCertificate {
    fn client_certificate(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<Option<Arc<PeerCertificate>>, AuthError> {
        let Some(ConnectInfo(connection)) = extensions.get::<ConnectInfo<ConnectionInfo>>() else {
            // Without the peer address nobody can be trusted: fail closed.
            tracing::debug!("no ConnectInfo<ConnectionInfo>: certificate headers ignored");
            return Ok(None);
        };
        if self.is_trusted(connection) {
            return self.certificate_in_headers(headers);
        }
        if headers.contains_key(&self.header) {
            crate::telemetry::untrusted_proxy_header();
            tracing::debug!(
                peer = %connection.remote_addr(),
                header = %self.header,
                "certificate header from an untrusted peer ignored"
            );
        }
        Ok(connection.client_certificate().cloned())
    }
}

impl ProxyCertificateBuilder {
    /// Trusts requests whose TCP peer is inside `network`: a CIDR, or a single address
    /// (see [`TrustedNetwork`]). Make it exactly the proxy's addresses: anything inside
    /// can claim any certificate by sending the header. Repeat for several proxies.
    ///
    /// ```
    /// use mtls_bound_token::cert::{HeaderFormat, IpNet, ProxyCertificate};
    ///
    /// let net: IpNet = "10.0.8.0/29".parse()?;
    /// let source = ProxyCertificate::builder(HeaderFormat::Haproxy)
    ///     .trusted_proxy("10.0.0.5".parse()?) // one host: 10.0.0.5/32
    ///     .trusted_proxy("fd00::5".parse()?) // one host: fd00::5/128
    ///     .trusted_proxy(net.into()) // an ipnet network
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusted_proxy(mut self, network: TrustedNetwork) -> Self {
        self.proxies.push(network.net());
        self
    }

    /// Trusts requests whose TCP peer is exactly `ip`, as
    /// [`trusted_proxy`](Self::trusted_proxy) with a `/32` or `/128`: for an address
    /// that is already an [`IpAddr`], e.g. from a resolved name or a configuration
    /// file. An IPv4 proxy matches whether it reaches an IPv4 or a dual-stack listener.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    /// use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate};
    ///
    /// let proxy = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    /// let source = ProxyCertificate::builder(HeaderFormat::Nginx)
    ///     .trusted_proxy_addr(proxy)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trusted_proxy_addr(self, ip: IpAddr) -> Self {
        self.trusted_proxy(TrustedNetwork::from(ip))
    }

    /// Trusts requests on connections whose own mTLS client certificate (the proxy's)
    /// has this `x5t#S256` thumbprint.
    pub fn trusted_proxy_certificate(mut self, thumbprint: impl Into<String>) -> Self {
        self.proxy_thumbprints.push(thumbprint.into());
        self
    }

    /// Trusts requests on connections whose mTLS client certificate has this subject
    /// (RFC 4514, compared as a name: `cn=edge-proxy, o=Example` is
    /// `CN=edge-proxy,O=Example`) and a chain validated against the TLS layer's CA; a
    /// self-signed or unvalidated certificate with that subject is not trusted. Use a CA
    /// that issues nothing else under that name, or pin the thumbprint instead. An empty
    /// or unparseable subject is refused by [`build`](Self::build).
    pub fn trusted_proxy_subject(mut self, subject: impl Into<String>) -> Self {
        self.proxy_subjects.push(subject.into());
        self
    }

    /// Reads this header instead of the format's default.
    pub fn header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Largest header value parsed; default 16 KiB. Larger → 400.
    pub fn max_header_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// How many distinct header values keep their parsed certificate; default 1024,
    /// 0 turns the cache off. Memory is bounded too: about 4 KiB per entry of capacity.
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Accepts forwarded certificates outside their validity period (expired, or not
    /// valid yet). By default such a certificate answers 401 `invalid_token`, checked
    /// against the clock on every request, the cached ones included.
    ///
    /// **Weakens** the binding: a certificate that its owner, its CA and TLS itself no
    /// longer honour still binds tokens, e.g. behind a proxy that does not check validity
    /// (AWS ALB passthrough, nginx `optional_no_ca`), on a proxy connection that lasts
    /// past the end of the client's certificate, or for a header replayed later. For
    /// clocks that disagree, fix the clocks rather than this. An Envoy element with
    /// `Hash` alone carries no validity and is never checked: have Envoy send `Cert`.
    pub fn allow_expired_certificates(mut self) -> Self {
        self.allow_expired = true;
        self
    }

    /// Refuses (401 `invalid_token`, reason
    /// [`CertificateRevoked`](crate::AuthReason::CertificateRevoked)) a forwarded
    /// certificate that the CRLs of `trust` revoke, or whose status they do not cover
    /// or cannot tell now when its policy says so
    /// ([`UnknownRevocation`](crate::trust::UnknownRevocation),
    /// [`ExpiredCrl`](crate::trust::ExpiredCrl)). Checked on every request, cached
    /// certificates included, against what `trust` holds then. Only the leaf is checked
    /// (a proxy forwards no chain, or one it validated): its issuer's CRL is found by
    /// name. An Envoy element with `Hash` alone has no certificate to check, so its
    /// status is unknown.
    pub fn check_revocation(mut self, trust: ClientTrust) -> Self {
        self.revocation = Some(trust);
        self
    }

    /// A forwarded certificate within this time of its end is logged at WARN (subject,
    /// thumbprint, days left), once per certificate per day; default 14 days.
    pub fn expiry_warning(mut self, window: std::time::Duration) -> Self {
        self.expiry_warning = window;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// [`ConfigError`] when no proxy is trusted, a header name or thumbprint is invalid,
    /// or the size bound is zero.
    pub fn build(self) -> Result<ProxyCertificate, ConfigError> {
        if self.proxies.is_empty()
            && self.proxy_thumbprints.is_empty()
            && self.proxy_subjects.is_empty()
        {
            return Err(ConfigError::NoTrustedProxy);
        }
        if self.max_len == 0 {
            return Err(ConfigError::Zero("max_header_len"));
        }
        let proxy_subjects = self
            .proxy_subjects
            .iter()
            .map(|subject| {
                let refuse = |problem: String| ConfigError::InvalidProxySubject {
                    subject: subject.clone(),
                    problem,
                };
                let name = subject
                    .parse::<DistinguishedName>()
                    .map_err(|e| refuse(e.to_string()))?;
                if name.is_empty() {
                    return Err(refuse("it is empty, and would name no proxy".into()));
                }
                Ok(name)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = match self.header {
            Some(name) => HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::InvalidHeaderName(name))?,
            None => self.format.default_header(),
        };
        let proxy_thumbprints = self
            .proxy_thumbprints
            .iter()
            .map(|t| {
                URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| ConfigError::InvalidThumbprint(t.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(ProxyCertificate {
            proxies: self.proxies,
            proxy_thumbprints,
            proxy_subjects,
            format: self.format,
            companion: self.format.companion_header(),
            header,
            max_len: self.max_len,
            allow_expired: self.allow_expired,
            revocation: self.revocation,
            expiry: crate::expiry::ClientExpiryWarnings::new(self.expiry_warning),
            cache: (self.cache_capacity > 0).then(|| {
                let bytes = self.cache_capacity as u64 * CACHE_BYTES_PER_ENTRY;
                quick_cache::sync::Cache::with_weighter(self.cache_capacity, bytes, CacheWeight)
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    /// The DER of a fresh self-signed certificate for `name`.
    fn self_signed(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        rcgen::CertificateParams::new(vec![name.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    fn trusting(networks: &[&str]) -> ProxyCertificate {
        networks
            .iter()
            .fold(ProxyCertificate::builder(HeaderFormat::Nginx), |b, n| {
                b.trusted_proxy(n.parse().unwrap())
            })
            .build()
            .unwrap()
    }

    fn trusts(source: &ProxyCertificate, peer: &str) -> bool {
        let peer: SocketAddr = peer.parse().unwrap();
        source.is_trusted(&ConnectionInfo::new(peer, None))
    }

    #[test]
    fn a_bare_address_trusts_exactly_that_host() {
        let source = trusting(&["10.0.0.5"]);
        assert!(trusts(&source, "10.0.0.5:4000"));
        for other in [
            "10.0.0.4:4000",
            "10.0.0.6:4000",
            "10.0.1.5:4000",
            "[::1]:4000",
        ] {
            assert!(!trusts(&source, other), "{other}");
        }

        let source = trusting(&["fd00::5"]);
        assert!(trusts(&source, "[fd00::5]:4000"));
        assert!(!trusts(&source, "[fd00::4]:4000"));
        assert!(!trusts(&source, "[fd00::5:0]:4000"));
    }

    #[test]
    fn a_bare_address_trusts_what_its_host_prefix_does() {
        for (bare, cidr) in [("10.0.0.5", "10.0.0.5/32"), ("::1", "::1/128")] {
            let (bare, cidr) = (trusting(&[bare]), trusting(&[cidr]));
            for peer in [
                "10.0.0.5:1",
                "10.0.0.6:1",
                "[::1]:1",
                "[::2]:1",
                "127.0.0.1:1",
            ] {
                assert_eq!(trusts(&bare, peer), trusts(&cidr, peer), "{peer}");
            }
        }
    }

    #[test]
    fn trusted_proxy_addr_is_a_single_host() {
        let source = ProxyCertificate::builder(HeaderFormat::Nginx)
            .trusted_proxy_addr("10.0.0.5".parse().unwrap())
            .build()
            .unwrap();
        assert!(trusts(&source, "10.0.0.5:4000"));
        assert!(!trusts(&source, "10.0.0.6:4000"));
    }

    #[test]
    fn a_cidr_trusts_its_whole_network_host_bits_or_not() {
        for network in ["10.0.0.0/24", "10.0.0.77/24"] {
            let source = trusting(&[network]);
            assert!(trusts(&source, "10.0.0.0:1"), "{network}");
            assert!(trusts(&source, "10.0.0.255:1"), "{network}");
            assert!(!trusts(&source, "10.0.1.0:1"), "{network}");
        }
    }

    #[test]
    fn an_ipv4_proxy_on_a_dual_stack_listener_is_trusted() {
        // A `[::]` listener sees IPv4 peers as IPv4-mapped IPv6 addresses.
        let source = trusting(&["10.0.0.5"]);
        assert!(trusts(&source, "[::ffff:10.0.0.5]:4000"));
        assert!(!trusts(&source, "[::ffff:10.0.0.6]:4000"));
        let source = trusting(&["10.0.0.0/24"]);
        assert!(trusts(&source, "[::ffff:10.0.0.200]:4000"));
    }

    #[test]
    fn ipv6_networks_never_trust_ipv4_peers() {
        // Peers are compared in canonical form, so even a network that spans the
        // IPv4-mapped range matches no IPv4 client, however it arrived.
        for network in ["::/0", "::ffff:0:0/96", "::ffff:10.0.0.5"] {
            let source = trusting(&[network]);
            assert!(!trusts(&source, "10.0.0.5:4000"), "{network}");
            assert!(!trusts(&source, "[::ffff:10.0.0.5]:4000"), "{network}");
        }
        assert!(trusts(&trusting(&["::/0"]), "[2001:db8::1]:4000"));
    }

    #[test]
    fn the_builder_debug_names_the_networks() {
        let builder = ProxyCertificate::builder(HeaderFormat::Nginx)
            .trusted_proxy("10.0.0.5".parse().unwrap());
        assert!(format!("{builder:?}").contains("10.0.0.5/32"));
    }

    #[test]
    fn the_cache_is_bounded_by_the_bytes_it_holds() {
        // Capacity 4: about 16 KiB. Each nginx header and its certificate weigh over
        // 1 KiB, so 64 different ones cannot all stay.
        let source = ProxyCertificate::builder(HeaderFormat::Nginx)
            .trusted_proxy("127.0.0.1".parse().unwrap())
            .cache_capacity(4)
            .build()
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        for i in 0..64 {
            let cert = rcgen::CertificateParams::new(vec![format!("client-{i}.example")])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let escaped = percent_encoding::utf8_percent_encode(
                &cert.pem(),
                percent_encoding::NON_ALPHANUMERIC,
            )
            .to_string();
            let mut headers = HeaderMap::new();
            headers.insert(&source.header, escaped.parse().unwrap());
            let read = source.certificate_in_headers(&headers).unwrap().unwrap();
            assert_eq!(read.der(), Some(cert.der().as_ref()));
        }
        let cache = source.cache.as_ref().unwrap();
        assert!(
            cache.weight() <= 4 * CACHE_BYTES_PER_ENTRY,
            "{}",
            cache.weight()
        );
        assert!(
            (4..=16).contains(&cache.len()),
            "{} entries kept",
            cache.len()
        );
        assert!(!cache.is_empty());
        // Every byte held is weighed: the header text, the certificate and its chain.
        let held: usize = cache
            .iter()
            .map(|(header, certificate)| {
                let chain: usize = certificate.chain_der().iter().map(Vec::len).sum();
                header.len() + certificate.der().map_or(0, <[u8]>::len) + chain
            })
            .sum();
        assert!(cache.weight() >= held as u64, "{} < {held}", cache.weight());
    }

    #[test]
    fn an_entry_weighs_its_header_certificate_chain_and_parsed_fields() {
        let der = self_signed("client.example");
        let chain = [der.as_slice(), &[1u8; 700], &[2u8; 300]];
        let certificate = Arc::new(PeerCertificate::read_lazily_chain(chain).unwrap());
        let header = "h".repeat(2000);
        assert_eq!(
            quick_cache::Weighter::weight(&CacheWeight, &header, &certificate),
            (2000 + der.len() + 700 + 300 + 512) as u64
        );
        let alone = Arc::new(PeerCertificate::read_lazily_chain([&der]).unwrap());
        assert_eq!(
            quick_cache::Weighter::weight(&CacheWeight, &header, &alone),
            (2000 + der.len() + 512) as u64
        );
    }

    #[test]
    fn a_header_that_is_not_ascii_is_refused_as_such() {
        let value = HeaderValue::from_bytes(b"MII\xffA").unwrap();
        assert_eq!(
            ascii(&value).unwrap_err().description(),
            "the client certificate header is not ASCII"
        );
        let tabbed = HeaderValue::from_bytes(b"\tMIIA ").unwrap();
        assert_eq!(ascii(&tabbed).unwrap(), "\tMIIA ");
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let source = trusting(&["127.0.0.1"]);
        let cert = PeerCertificate::from_der(&self_signed("client.example")).unwrap();
        let tick = std::time::Duration::from_nanos(1);
        let at = |now| source.check_validity_at(&cert, now);
        assert!(at(cert.not_before()).is_ok());
        assert!(at(cert.not_after()).is_ok());
        assert!(at(cert.not_before() - tick).is_err());
        assert!(at(cert.not_after() + tick).is_err());
    }

    #[test]
    fn a_proxy_thumbprint_given_twice_is_still_trusted() {
        let cert = Arc::new(PeerCertificate::from_der(&self_signed("proxy.example")).unwrap());
        let connection = ConnectionInfo::new("10.9.9.9:4000".parse().unwrap(), Some(cert.clone()));
        for times in 1..=3 {
            let source = (0..times)
                .fold(ProxyCertificate::builder(HeaderFormat::Nginx), |b, _| {
                    b.trusted_proxy_certificate(cert.thumbprint())
                })
                .build()
                .unwrap();
            assert!(source.is_trusted(&connection), "given {times} times");
        }
    }

    #[test]
    fn a_chain_on_several_lines_is_bounded_exactly_as_one_header() {
        let source = ProxyCertificate::builder(HeaderFormat::Rfc9440)
            .trusted_proxy("127.0.0.1".parse().unwrap())
            .max_header_len(100)
            .build()
            .unwrap();
        let companion = source.companion.clone().unwrap();
        // The leaf's own header does not count against the chain's bound.
        let value = "x".repeat(90);
        let with_lines = |lines: &[String]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(&companion, line.parse().unwrap());
            }
            source.with_companion(&headers, &companion, &value)
        };
        // 50 + ", " + 48 = 100 bytes: at the bound.
        let joined = with_lines(&["a".repeat(50), "b".repeat(48)])
            .unwrap()
            .unwrap();
        assert_eq!(
            joined,
            format!("{value}\n{}, {}", "a".repeat(50), "b".repeat(48))
        );
        // One byte more.
        let refused = with_lines(&["a".repeat(50), "b".repeat(49)]).unwrap_err();
        assert_eq!(refused, too_large());
        assert_eq!(with_lines(&[]).unwrap(), None);
    }

    #[test]
    fn a_cache_capacity_of_zero_turns_the_cache_off() {
        let with = |capacity| {
            ProxyCertificate::builder(HeaderFormat::Nginx)
                .trusted_proxy("127.0.0.1".parse().unwrap())
                .cache_capacity(capacity)
                .build()
                .unwrap()
        };
        assert!(with(0).cache.is_none());
        assert!(with(1).cache.is_some());
        assert!(trusting(&["127.0.0.1"]).cache.is_some(), "on by default");
    }
}
