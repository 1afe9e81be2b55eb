//! The addresses a trusted proxy connects from: a CIDR, or a single host.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Peers that may forward a client certificate in a header: a network in CIDR notation
/// (`10.0.0.0/24`, `fd00::/64`) or a single address (`10.0.0.5`, meaning `10.0.0.5/32`;
/// `::1`, meaning `::1/128`).
///
/// Host bits below the prefix are dropped: `10.0.0.5/24` is the network `10.0.0.0/24`,
/// all 256 addresses, not the one host. Peers are compared in canonical form, so an IPv4
/// proxy reaching a dual-stack listener as `::ffff:10.0.0.5` is matched by `10.0.0.5`;
/// write IPv4 proxies in IPv4 form, since an IPv4-mapped network such as
/// `::ffff:10.0.0.5` matches no peer.
///
/// ```
/// use mtls_bound_token::cert::{HeaderFormat, ProxyCertificate, TrustedNetwork};
///
/// let proxy: TrustedNetwork = "10.0.0.5".parse()?;
/// assert_eq!(proxy.to_string(), "10.0.0.5/32");
/// let subnet: TrustedNetwork = "fd00:0:0:7::/64".parse()?;
///
/// let source = ProxyCertificate::builder(HeaderFormat::Nginx)
///     .trusted_proxy(proxy)
///     .trusted_proxy(subnet)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustedNetwork(IpNet);

impl TrustedNetwork {
    /// The network, with its host bits cleared.
    ///
    /// ```
    /// use mtls_bound_token::cert::TrustedNetwork;
    ///
    /// let network: TrustedNetwork = "10.0.0.5/24".parse()?;
    /// assert_eq!(network.net(), "10.0.0.0/24".parse()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl fmt::Display for TrustedNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<IpNet> for TrustedNetwork {
    fn from(net: IpNet) -> Self {
        // Clearing host bits here makes equal networks compare equal and display alike.
        Self(net.trunc())
    }
}

impl From<IpAddr> for TrustedNetwork {
    fn from(ip: IpAddr) -> Self {
        Self(IpNet::from(ip))
    }
}

impl From<Ipv4Addr> for TrustedNetwork {
    fn from(ip: Ipv4Addr) -> Self {
        Self::from(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for TrustedNetwork {
    fn from(ip: Ipv6Addr) -> Self {
        Self::from(IpAddr::V6(ip))
    }
}

impl FromStr for TrustedNetwork {
    type Err = TrustedNetworkParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = if text.contains('/') {
            text.parse::<IpNet>().map(Self::from).ok()
        } else {
            text.parse::<IpAddr>().map(Self::from).ok()
        };
        parsed.ok_or_else(|| TrustedNetworkParseError {
            input: text.to_owned(),
        })
    }
}

/// A string that is neither a CIDR nor an IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a trusted proxy network: write a CIDR such as 10.0.0.0/24 or fd00::/64, \
     or one address such as 10.0.0.5 or ::1"
)]
pub struct TrustedNetworkParseError {
    input: String,
}

impl TrustedNetworkParseError {
    /// The text that did not parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TrustedNetwork {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn cidrs_and_bare_addresses_parse() {
        for (text, shown) in [
            ("10.0.0.0/24", "10.0.0.0/24"),
            ("10.0.0.5/32", "10.0.0.5/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::/64", "fd00::/64"),
            ("10.0.0.5", "10.0.0.5/32"),
            ("::1", "::1/128"),
            ("2001:db8::10", "2001:db8::10/128"),
        ] {
            assert_eq!(parse(text).to_string(), shown, "{text}");
        }
    }

    #[test]
    fn host_bits_are_cleared() {
        assert_eq!(parse("10.0.0.5/24"), parse("10.0.0.0/24"));
        assert_eq!(parse("10.0.0.5/24").to_string(), "10.0.0.0/24");
        assert_eq!(parse("fd00::1:2/64").net(), "fd00::/64".parse().unwrap());
        let from_net = TrustedNetwork::from("192.168.7.9/16".parse::<IpNet>().unwrap());
        assert_eq!(from_net.to_string(), "192.168.0.0/16");
    }

    #[test]
    fn other_text_is_refused_naming_it() {
        for text in [
            "",
            " ",
            "10.0.0.5 ",
            " 10.0.0.5",
            "10.0.0",
            "10.0.0.256",
            "10.0.0.5/",
            "10.0.0.5/33",
            "10.0.0.5/-1",
            "10.0.0.5/24/8",
            "/24",
            "::1/129",
            "[::1]",
            "10.0.0.5:80",
            "fe80::1%eth0",
            "localhost",
            "nonsense",
        ] {
            let error = text.parse::<TrustedNetwork>().expect_err(text);
            assert_eq!(error.input(), text);
            let message = error.to_string();
            assert!(message.starts_with(&format!("{text:?} ")), "{message}");
            assert!(
                message.contains("10.0.0.0/24") && message.contains("10.0.0.5"),
                "{message}"
            );
        }
    }

    #[test]
    fn the_error_goes_into_a_boxed_error() {
        fn parse_boxed(text: &str) -> Result<TrustedNetwork, Box<dyn std::error::Error>> {
            Ok(text.parse()?)
        }
        assert!(parse_boxed("10.0.0.5").is_ok());
        assert!(parse_boxed("10.0.0.5/40").is_err());
    }

    #[test]
    fn addresses_convert_to_single_hosts() {
        let v4 = Ipv4Addr::new(10, 0, 0, 5);
        let v6 = Ipv6Addr::LOCALHOST;
        assert_eq!(TrustedNetwork::from(v4), parse("10.0.0.5/32"));
        assert_eq!(TrustedNetwork::from(IpAddr::V4(v4)), parse("10.0.0.5"));
        assert_eq!(TrustedNetwork::from(v6), parse("::1/128"));
        assert_eq!(TrustedNetwork::from(IpAddr::V6(v6)), parse("::1"));
    }

    #[test]
    fn mapped_addresses_stay_as_written() {
        // Not turned into 10.0.0.5/32: that would trust more than the existing
        // `trusted_proxy` semantics do (see the type's docs).
        let mapped = parse("::ffff:10.0.0.5");
        assert_eq!(mapped.to_string(), "::ffff:10.0.0.5/128");
        assert!(matches!(mapped.net(), IpNet::V6(_)));
        assert_ne!(mapped, parse("10.0.0.5"));
    }

    #[test]
    fn debug_shows_the_network() {
        assert_eq!(
            format!("{:?}", parse("10.0.0.0/8")),
            "TrustedNetwork(10.0.0.0/8)"
        );
    }
}
