//! Which peers count as one for per-address limits.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The unit that per-address limits count by: an IPv4 address, or an IPv6 /64.
///
/// One IPv6 host usually holds a whole /64 (and can pick a fresh address from it for
/// every connection), so counting IPv6 peers by their full address would give each
/// client endless budgets. An IPv4-mapped IPv6 address (a dual-stack listener's view of
/// an IPv4 peer) counts as that IPv4 address.
///
/// ```
/// use mtls_bound_token::AddressGroup;
///
/// let a = AddressGroup::of("2001:db8:1:2::10".parse().unwrap());
/// let b = AddressGroup::of("2001:db8:1:2:ffff::1".parse().unwrap());
/// assert_eq!(a, b); // the same /64
/// assert_eq!(
///     AddressGroup::of("::ffff:192.0.2.7".parse().unwrap()),
///     AddressGroup::of("192.0.2.7".parse().unwrap()),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressGroup(IpAddr);

impl AddressGroup {
    /// The group of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for AddressGroup {
    /// `192.0.2.7`, or `2001:db8:1:2::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Places taken at once, in total and per [`AddressGroup`]: open connections, or
/// handshakes in flight. A [`Place`] gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Occupancy {
    max_total: usize,
    max_per_group: usize,
    taken: Mutex<Taken>,
}

#[derive(Debug, Default)]
struct Taken {
    total: usize,
    per_group: HashMap<AddressGroup, usize>,
}

/// Why no place was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every place is taken.
    Total,
    /// The address group has all the places it may have.
    Group,
}

impl Occupancy {
    pub(crate) fn new(max_total: usize, max_per_group: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_group,
            taken: Mutex::new(Taken::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for `group`, if there is one.
    pub(crate) fn enter(self: &Arc<Self>, group: AddressGroup) -> Result<Place, Full> {
        let mut taken = self.lock();
        if taken.total >= self.max_total {
            return Err(Full::Total);
        }
        let count = taken.per_group.entry(group).or_insert(0);
        if *count >= self.max_per_group {
            return Err(Full::Group);
        }
        *count += 1;
        taken.total += 1;
        Ok(Place {
            occupancy: Arc::clone(self),
            group,
        })
    }

    /// Places taken now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.lock().total
    }
}

/// One taken place; given back on drop.
#[derive(Debug)]
pub(crate) struct Place {
    occupancy: Arc<Occupancy>,
    group: AddressGroup,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut taken = self.occupancy.lock();
        taken.total = taken.total.saturating_sub(1);
        if let Some(count) = taken.per_group.get_mut(&self.group) {
            *count -= 1;
            if *count == 0 {
                // Forget groups without places, so that the map stays as small as the
                // number of peers connected now.
                taken.per_group.remove(&self.group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(text: &str) -> AddressGroup {
        AddressGroup::of(text.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        // One /64 is one site's (often one host's) to number at will.
        let first = group("2001:db8:1:2::1");
        for same in [
            "2001:db8:1:2::2",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            "2001:db8:1:2:a:b:c:d",
            "2001:DB8:1:2::",
        ] {
            assert_eq!(group(same), first, "{same}");
        }
        for other in ["2001:db8:1:3::1", "2001:db8:1:1::1", "2001:db9:1:2::1"] {
            assert_ne!(group(other), first, "{other}");
        }
        assert_eq!(group("::1"), group("::2"));
        assert_eq!(group("2001:db8:0:1::1").to_string(), "2001:db8:0:1::/64");
    }

    #[test]
    fn places_are_bounded_in_total_and_per_group() {
        let occupancy = Occupancy::new(3, 2);
        let a = group("192.0.2.1");
        let b = group("192.0.2.2");
        let a1 = occupancy.enter(a).unwrap();
        let _a2 = occupancy.enter(a).unwrap();
        assert_eq!(occupancy.enter(a).unwrap_err(), Full::Group);
        let _b1 = occupancy.enter(b).unwrap();
        assert_eq!(occupancy.enter(b).unwrap_err(), Full::Total);
        assert_eq!(occupancy.total(), 3);
        drop(a1);
        assert_eq!(occupancy.total(), 2);
        assert!(
            occupancy.enter(a).is_ok(),
            "a place given back is free again"
        );
    }

    #[test]
    fn ipv4_counts_by_its_address() {
        assert_ne!(group("192.0.2.1"), group("192.0.2.2"));
        assert_ne!(group("192.0.2.1"), group("192.0.3.1"));
        // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d: the same client as
        // on an IPv4 socket, and not one /64 for every IPv4 client.
        assert_eq!(group("::ffff:192.0.2.1"), group("192.0.2.1"));
        assert_ne!(group("::ffff:192.0.2.1"), group("::ffff:192.0.2.2"));
        assert_ne!(group("::ffff:192.0.2.1"), group("::1"));
        assert_eq!(group("192.0.2.1").to_string(), "192.0.2.1");
        // Loopback IPv6 is its own /64, not an IPv4 address.
        assert_ne!(group("::1"), group("0.0.0.1"));
    }
}
