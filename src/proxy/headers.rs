//! Header rules for forwarding: hop-by-hop removal (RFC 9110 §7.6.1), the client address
//! (believing `X-Forwarded-For` only from trusted proxies) and the `X-Forwarded-*`,
//! `X-Real-IP` and `Forwarded` headers sent upstream.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
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

/// Hop-by-hop names removed in every direction (RFC 9110 §7.6.1), as one bit each.
fn hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        1
    } else if name == header::TE {
        2
    } else if name == header::TRAILER {
        4
    } else if name == header::TRANSFER_ENCODING {
        8
    } else if name == header::UPGRADE {
        16
    } else if name == KEEP_ALIVE {
        32
    } else if name == PROXY_CONNECTION {
        64
    } else {
        0
    }
}

/// Removes hop-by-hop headers, including any named in `Connection`. With `keep_upgrade`, the
/// `Upgrade` header survives and `Connection: upgrade` is re-added for the next hop.
///
/// Messages carry a handful of headers, so one pass over their names finds which hop-by-hop
/// names are present; only those are removed (a hash lookup each), and `Connection` tokens
/// that name one of them (`keep-alive`, `close`, ...) are not parsed into header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = headers.keys().fold(0u8, |acc, name| acc | hop_bit(name));
    if present & 1 != 0 {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("upgrade")
                    && !t.eq_ignore_ascii_case("te")
                    && !t.eq_ignore_ascii_case("trailer")
                    && !t.eq_ignore_ascii_case("transfer-encoding")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(&name);
        }
    }
    for (bit, name) in [
        (1, &header::CONNECTION),
        (2, &header::TE),
        (4, &header::TRAILER),
        (8, &header::TRANSFER_ENCODING),
        (32, &KEEP_ALIVE),
        (64, &PROXY_CONNECTION),
    ] {
        if present & bit != 0 {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & 16 != 0 {
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

/// What the forwarding headers say about one client connection, formatted once when the
/// connection is accepted so requests only clone shared bytes.
pub struct PeerInfo {
    pub ip: IpAddr,
    /// The peer address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    pub value: HeaderValue,
    /// `for=<node>;proto=http`: the start of this hop's RFC 7239 element.
    forwarded: Bytes,
}

impl PeerInfo {
    pub fn new(ip: IpAddr) -> Self {
        let text = ip.to_string();
        let forwarded = if ip.is_ipv6() {
            format!("for=\"[{text}]\";proto=http")
        } else {
            format!("for={text};proto=http")
        };
        Self {
            ip,
            value: HeaderValue::from_maybe_shared(Bytes::from(text))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded: Bytes::from(forwarded),
        }
    }
}

/// Sets the forwarding headers. Values from an untrusted peer are replaced, never extended.
/// `host` is the request's authority or `Host` value.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &PeerInfo,
    client: IpAddr,
    peer_trusted: bool,
    host: Option<&HeaderValue>,
) {
    let xff = match peer_trusted
        .then(|| appended(headers, &X_FORWARDED_FOR, peer.value.as_bytes()))
        .flatten()
    {
        Some(v) => Some(v),
        None => Some(peer.value.clone()),
    };
    set(headers, &X_FORWARDED_FOR, xff);
    let real = if client == peer.ip {
        Some(peer.value.clone())
    } else {
        HeaderValue::from_str(&client.to_string()).ok()
    };
    set(headers, &X_REAL_IP, real);
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        set(headers, &X_FORWARDED_HOST, host.cloned());
    }
    // RFC 7239 element: for=<node>;proto=http[;host=<host>]
    let host = host.map(HeaderValue::as_bytes).filter(|h| {
        h.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    });
    let element = match host {
        None => peer.forwarded.clone(),
        Some(h) => {
            let mut e = BytesMut::with_capacity(peer.forwarded.len() + 6 + h.len());
            e.extend_from_slice(&peer.forwarded);
            e.extend_from_slice(b";host=");
            e.extend_from_slice(h);
            e.freeze()
        }
    };
    let forwarded = match peer_trusted
        .then(|| appended(headers, &header::FORWARDED, &element))
        .flatten()
    {
        Some(v) => Some(v),
        None => HeaderValue::from_maybe_shared(element).ok(),
    };
    set(headers, &header::FORWARDED, forwarded);
}

/// The values of a header joined with `, `, plus `last`; `None` when the header is absent.
fn appended(headers: &HeaderMap, name: &HeaderName, last: &[u8]) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut out = BytesMut::new();
    for v in values {
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last);
    HeaderValue::from_maybe_shared(out.freeze()).ok()
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
    fn hop_by_hop_fast_path_keeps_end_to_end_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Keep-Alive, close".parse().expect("v"));
        h.insert(header::CONTENT_LENGTH, "2".parse().expect("v"));
        h.insert(header::UPGRADE, "h2c".parse().expect("v"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, "websocket".parse().expect("v"));
        h.insert(header::CONNECTION, "Upgrade".parse().expect("v"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert!(h.contains_key(header::UPGRADE));
        let mut h = HeaderMap::new();
        h.insert("x-plain", "1".parse().expect("v"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
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
