//! A source allowlist: CIDR ranges (or bare IPs) parsed once, matched per connection. Shared
//! by the L4 listeners (`allow_source_ips`, trusted PROXY-protocol senders) and any HTTP
//! middleware that filters on the client address.

use std::net::IpAddr;

use ipnet::IpNet;

/// A parsed list of ranges; empty means "everyone" for allowlists (see [`Cidrs::allows`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cidrs(Vec<IpNet>);

impl Cidrs {
    /// Parses every entry; the error names the first one that is not a CIDR or IP.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                super::address::parse_cidr(e.as_ref())
                    .ok_or_else(|| format!("`{}` is not a CIDR or IP", e.as_ref()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is inside one of the ranges. IPv4-mapped IPv6 addresses (a dual-stack
    /// socket's view of an IPv4 client) match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// An allowlist's verdict: no ranges allows everyone.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.contains(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_bare_ips_and_mapped_addresses() {
        let c = Cidrs::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).expect("valid");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(c.contains("192.0.2.7".parse().expect("ip")));
        assert!(!c.contains("192.0.2.8".parse().expect("ip")));
        assert!(c.contains("2001:db8::1".parse().expect("ip")));
        assert!(c.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!c.allows("172.16.0.1".parse().expect("ip")));
        assert!(Cidrs::default().allows("172.16.0.1".parse().expect("ip")));
        let err = Cidrs::parse(&["10.0.0.0/8", "nope"]).expect_err("invalid");
        assert!(err.contains("`nope`"), "{err}");
    }
}
