//! Header rules for forwarding: hop-by-hop removal (RFC 9110 §7.6.1), the client address
//! (believing `X-Forwarded-For` only from trusted proxies) and the `X-Forwarded-*`,
//! `X-Real-IP` and `Forwarded` headers sent upstream.

use std::net::IpAddr;
use std::sync::Mutex;

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

/// True when a `Connection` header lists `token` (case-insensitive).
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Hop-by-hop names removed in every direction (RFC 9110 §7.6.1), as one bit each.
/// Dispatches on the length first: most names are none of these and cost one comparison.
fn hop_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => 1,
        "te" => 2,
        "trailer" => 4,
        "transfer-encoding" => 8,
        "upgrade" => 16,
        "keep-alive" => 32,
        "proxy-connection" => 64,
        _ => 0,
    }
}

/// Whether a `Connection` token names something that is not removed by name anyway (or is
/// no header at all), i.e. a header this hop must additionally drop.
fn listed_elsewhere(token: &[u8]) -> bool {
    const HANDLED: [&[u8]; 6] = [
        b"close",
        b"keep-alive",
        b"upgrade",
        b"te",
        b"trailer",
        b"transfer-encoding",
    ];
    !token.is_empty() && !HANDLED.iter().any(|h| h.eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including any named in `Connection`. With `keep_upgrade`, the
/// `Upgrade` header survives and `Connection: upgrade` is re-added for the next hop.
///
/// Messages carry a handful of headers, so one pass over their names finds which hop-by-hop
/// names are present; only those are removed (a hash lookup each), and `Connection` tokens
/// that name one of them (`keep-alive`, `close`, ...) are not parsed into header names. This
/// runs twice per proxied request, so it avoids iterator chains and allocations when the
/// `Connection` header only carries such tokens (nearly always).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = headers.keys().fold(0u8, |acc, name| acc | hop_bit(name));
    if present & 1 != 0 {
        let mut listed: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(header::CONNECTION) {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if listed_elsewhere(token)
                    && let Ok(name) = HeaderName::from_bytes(token)
                {
                    listed.push(name);
                }
            }
        }
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
    /// The client connection is TLS (`X-Forwarded-Proto: https`, `proto=https`).
    pub https: bool,
    /// The peer address as a header value (`X-Forwarded-For`, `X-Real-IP`).
    pub value: HeaderValue,
    /// `for=<node>;proto=http`: the start of this hop's RFC 7239 element.
    forwarded: HeaderValue,
    /// The last request's host and its full element: a connection nearly always talks to one
    /// host, so the element is built (allocated and validated) once instead of per request.
    last: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl PeerInfo {
    pub fn new(ip: IpAddr) -> Self {
        Self::with_proto(ip, false)
    }

    /// A peer on a TLS connection.
    pub fn over_tls(ip: IpAddr) -> Self {
        Self::with_proto(ip, true)
    }

    fn with_proto(ip: IpAddr, https: bool) -> Self {
        let text = ip.to_string();
        let proto = if https { "https" } else { "http" };
        let forwarded = if ip.is_ipv6() {
            format!("for=\"[{text}]\";proto={proto}")
        } else {
            format!("for={text};proto={proto}")
        };
        Self {
            ip,
            https,
            value: HeaderValue::from_maybe_shared(Bytes::from(text))
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded: HeaderValue::from_maybe_shared(Bytes::from(forwarded))
                .unwrap_or_else(|_| HeaderValue::from_static("for=unknown;proto=http")),
            last: Mutex::new(None),
        }
    }

    /// This hop's RFC 7239 element: `for=<node>;proto=http[;host=<host>]`. A host that would
    /// need quoting is left out.
    fn element(&self, host: Option<&HeaderValue>) -> HeaderValue {
        let Some(host) = host.filter(|h| {
            h.as_bytes()
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
        }) else {
            return self.forwarded.clone();
        };
        if let Ok(last) = self.last.lock()
            && let Some((h, element)) = last.as_ref()
            && h == host
        {
            return element.clone();
        }
        let start = self.forwarded.as_bytes();
        let mut e = BytesMut::with_capacity(start.len() + 6 + host.len());
        e.extend_from_slice(start);
        e.extend_from_slice(b";host=");
        e.extend_from_slice(host.as_bytes());
        // Only visible ASCII went in, so this cannot fail; fall back to the host-less form.
        let element =
            HeaderValue::from_maybe_shared(e.freeze()).unwrap_or_else(|_| self.forwarded.clone());
        if let Ok(mut last) = self.last.lock() {
            *last = Some((host.clone(), element.clone()));
        }
        element
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
        let proto = if peer.https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        set(headers, &X_FORWARDED_HOST, host.cloned());
    }
    let element = peer.element(host);
    let forwarded = match peer_trusted
        .then(|| appended(headers, &header::FORWARDED, element.as_bytes()))
        .flatten()
    {
        Some(v) => v,
        None => element,
    };
    headers.insert(header::FORWARDED, forwarded);
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
    fn forwarded_element_names_the_host_and_follows_host_changes() {
        let peer = PeerInfo::new(ip("192.0.2.7"));
        let a = HeaderValue::from_static("a.test");
        let b = HeaderValue::from_static("b.test:8080");
        for (host, want) in [
            (Some(&a), "for=192.0.2.7;proto=http;host=a.test"),
            (Some(&a), "for=192.0.2.7;proto=http;host=a.test"),
            (Some(&b), "for=192.0.2.7;proto=http;host=b.test:8080"),
            (None, "for=192.0.2.7;proto=http"),
        ] {
            let mut h = HeaderMap::new();
            set_forwarded(&mut h, &peer, peer.ip, false, host);
            assert_eq!(
                h.get(header::FORWARDED).map(|v| v.as_bytes()),
                Some(want.as_bytes())
            );
        }
        let bad = HeaderValue::from_static("a\"b");
        assert_eq!(
            peer.element(Some(&bad)).as_bytes(),
            b"for=192.0.2.7;proto=http"
        );
        let v6 = PeerInfo::new(ip("2001:db8::1"));
        assert_eq!(
            v6.element(None).as_bytes(),
            b"for=\"[2001:db8::1]\";proto=http"
        );
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
