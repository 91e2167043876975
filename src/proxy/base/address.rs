//! The address forms config files use, checked the same way by every section: CIDRs or bare
//! IPs, host patterns (`app.example.com`, `*.example.com`) and `host:port`.

use std::net::SocketAddr;

/// Parses `10.0.0.0/8` or a bare IP (as a host route).
pub fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// An exact host name or a `*.suffix` wildcard.
pub fn check_host_pattern(host: &str) -> Result<(), String> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if bare.is_empty() || bare.contains('*') {
        return Err(format!("`{host}`: `*` is only allowed as a leading `*.`"));
    }
    if !bare
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("`{host}` is not a host name"));
    }
    Ok(())
}

/// `ip:port`, or `name:port` with a DNS-style name and a non-zero port.
pub fn valid_host_port(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p != 0)
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        None => false,
    }
}
