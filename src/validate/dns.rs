//! The `dns:` block of itsup.yml: the honeypot's address must be a usable address of
//! `proxy.subnet` (not its network, broadcast or gateway address), and every upstream an IP.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use crate::model::ItsupConfig;

/// Problems of `dns:` as (JSON pointer, message). The address is checked whether or not the
/// honeypot is enabled, so a mistake shows before it is switched on.
pub fn problems(config: &ItsupConfig) -> Vec<(String, String)> {
    let dns = &config.dns;
    let mut out = Vec::new();
    let subnet: Option<Ipv4Net> = config.proxy.subnet.parse().ok();
    if let Some(addr) = &dns.address {
        match (addr.parse::<Ipv4Addr>(), subnet) {
            (Err(_), _) => out.push((
                "/dns/address".to_string(),
                format!("`address` {addr:?} is not an IPv4 address"),
            )),
            (Ok(ip), Some(net))
                if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() =>
            {
                out.push((
                    "/dns/address".to_string(),
                    format!(
                        "`address` {ip} is not a usable address of the proxy subnet {net} (proxy.subnet)"
                    ),
                ))
            }
            (Ok(ip), Some(net)) if net.hosts().next() == Some(ip) => out.push((
                "/dns/address".to_string(),
                format!("`address` {ip} is the gateway of {net}"),
            )),
            _ => {}
        }
    }
    for (i, server) in dns.upstream.iter().enumerate() {
        if server.parse::<IpAddr>().is_err() {
            out.push((
                format!("/dns/upstream/{i}"),
                format!("`upstream`: {server:?} is not an IP address"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> ItsupConfig {
        serde_json::from_value(crate::yaml::parse(yaml).expect("yaml").value).expect("config")
    }

    #[test]
    fn address_inside_the_subnet_and_upstreams_are_ips() {
        let ok = config(
            "proxy: {subnet: 10.5.0.0/24}\ndns: {enabled: true, address: 10.5.0.53, upstream: [127.0.0.11, '::1']}\n",
        );
        assert!(problems(&ok).is_empty());
        for (bad, pointer, words) in [
            ("10.6.0.53", "/dns/address", "not a usable address"),
            ("10.5.0.255", "/dns/address", "not a usable address"),
            ("10.5.0.0", "/dns/address", "not a usable address"),
            ("10.5.0.1", "/dns/address", "gateway"),
            ("dns.local", "/dns/address", "not an IPv4 address"),
        ] {
            let c = config(&format!(
                "proxy: {{subnet: 10.5.0.0/24}}\ndns: {{address: {bad}}}\n"
            ));
            let p = problems(&c);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert_eq!(p[0].0, pointer);
            assert!(p[0].1.contains(words), "{bad}: {}", p[0].1);
        }
        let c = config("dns: {upstream: [1.1.1.1, resolver]}\n");
        assert_eq!(problems(&c)[0].0, "/dns/upstream/1");
    }
}
