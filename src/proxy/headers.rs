//! Header rules for forwarding: hop-by-hop removal (RFC 9110 §7.6.1), the client address
//! (believing `X-Forwarded-For` only from trusted proxies) and the `X-Forwarded-*`,
//! `X-Real-IP` and `Forwarded` headers sent upstream.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// True when an HTTP/1 request asks for a protocol switch (WebSocket and friends).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including any named in `Connection`. With `keep_upgrade`, the
/// `Upgrade` header survives and `Connection: upgrade` is re-added for the next hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(&name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The original client: the peer itself unless the peer is a trusted proxy, in which case the
/// right-most untrusted address of `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let mut candidate = peer;
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for value in values.iter().rev() {
        for hop in value.rsplit(',') {
            match parse_hop(hop.trim()) {
                Some(ip) => {
                    candidate = ip;
                    if !trusted(ip) {
                        return ip;
                    }
                }
                None => return candidate,
            }
        }
    }
    candidate
}

/// Accepts `1.2.3.4`, `1.2.3.4:5`, `::1` and `[::1]:5`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    hop.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// Sets the forwarding headers. Values from an untrusted peer are replaced, never extended.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    client: IpAddr,
    peer_trusted: bool,
    host: Option<&str>,
) {
    let mut peer_text = peer.to_string();
    let peer_value = HeaderValue::from_str(&peer_text).ok();
    let xff = match (
        peer_trusted,
        peer_trusted
            .then(|| joined(headers, &X_FORWARDED_FOR))
            .flatten(),
    ) {
        (true, Some(prev)) => HeaderValue::from_str(&format!("{prev}, {peer_text}")).ok(),
        _ => peer_value.clone(),
    };
    set(headers, &X_FORWARDED_FOR, xff);
    let real = if client == peer {
        peer_value
    } else {
        HeaderValue::from_str(&client.to_string()).ok()
    };
    set(headers, &X_REAL_IP, real);
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        set(
            headers,
            &X_FORWARDED_HOST,
            host.and_then(|h| HeaderValue::from_str(h).ok()),
        );
    }
    // RFC 7239 element, built in place: for=<node>;proto=http[;host=<host>]
    if peer.is_ipv6() {
        peer_text = format!("\"[{peer_text}]\"");
    }
    let mut element = String::with_capacity(peer_text.len() + host.map_or(0, str::len) + 24);
    element.push_str("for=");
    element.push_str(&peer_text);
    element.push_str(";proto=http");
    if let Some(h) = host.filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    }) {
        element.push_str(";host=");
        element.push_str(h);
    }
    let forwarded = match (
        peer_trusted,
        peer_trusted
            .then(|| joined(headers, &header::FORWARDED))
            .flatten(),
    ) {
        (true, Some(prev)) => format!("{prev}, {element}"),
        _ => element,
    };
    set(
        headers,
        &header::FORWARDED,
        HeaderValue::from_str(&forwarded).ok(),
    );
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name.clone(), v);
        }
        None => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn hop_by_hop_headers_go_including_connection_listed_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, X-Secret".parse().expect("v"),
        );
        h.insert("x-secret", "1".parse().expect("v"));
        h.insert("keep-alive", "timeout=5".parse().expect("v"));
        h.insert(header::TE, "trailers".parse().expect("v"));
        h.insert(header::UPGRADE, "websocket".parse().expect("v"));
        h.insert("x-keep", "1".parse().expect("v"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn client_ip_trusts_only_configured_proxies() {
        let trusted = |i: IpAddr| i == ip("10.0.0.1") || i == ip("10.0.0.2");
        let mut h = HeaderMap::new();
        h.insert(
            &X_FORWARDED_FOR,
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().expect("v"),
        );
        assert_eq!(client_ip(ip("10.0.0.1"), &h, trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("9.9.9.9"), &h, trusted), ip("9.9.9.9"));
    }
}
