//! The unit the guard meters and bans: one IPv4 address, or one IPv6 /64.
//!
//! An IPv6 subscriber, a provider's customer or a cloud host is given at least a /64, so an
//! attacker there has 2^64 source addresses to rotate through; counting and banning each
//! address alone would let it guess a password forever. An IPv4-mapped IPv6 address
//! (`::ffff:203.0.113.9`, what a dual-stack socket reports) is its IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A source as the guard and the connection limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(IpAddr);

impl SourceKey {
    /// The prefix length an IPv6 source is counted and banned by.
    pub const IPV6_PREFIX: u8 = 64;

    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let mask = !0u128 << (128 - u32::from(Self::IPV6_PREFIX));
                SourceKey(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
            }
        }
    }

    /// The address that stands for the key: the IPv4 address, or the first address of the
    /// IPv6 /64 (what the store keeps for a ban).
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/{}", Self::IPV6_PREFIX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SourceKey {
        SourceKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv4_is_the_address_and_ipv6_the_64() {
        assert_eq!(key("203.0.113.9").to_string(), "203.0.113.9");
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
        assert_eq!(
            key("2001:db8:1:2::7"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(key("2001:db8:1:2::7").to_string(), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:2::7"), key("2001:db8:1:3::7"));
        assert_eq!(key("::ffff:203.0.113.9"), key("203.0.113.9"));
        assert_eq!(key("::1").ip(), "::".parse::<IpAddr>().unwrap());
    }
}
