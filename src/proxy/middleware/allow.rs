//! `ip_allow_list`: the real client address (the peer, or what a trusted proxy forwarded)
//! must fall in one of the ranges.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::proxy::base::config::parse_cidr;
use crate::proxy::base::config_middleware::IpAllowList;

pub(crate) struct Allow {
    nets: Vec<IpNet>,
}

impl Allow {
    pub(crate) fn new(c: &IpAllowList) -> Self {
        Self {
            nets: c
                .source_range
                .iter()
                .filter_map(|s| parse_cidr(s))
                .collect(),
        }
    }

    pub(crate) fn admits(&self, client: IpAddr) -> bool {
        // An IPv4 client seen on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|n| n.contains(&client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_bare_ips_and_mapped_addresses() {
        let a = Allow::new(&IpAllowList {
            source_range: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
        });
        assert!(a.admits("10.1.2.3".parse().expect("ip")));
        assert!(a.admits("192.0.2.7".parse().expect("ip")));
        assert!(a.admits("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!a.admits("192.0.2.8".parse().expect("ip")));
        assert!(!a.admits("::1".parse().expect("ip")));
    }
}
