//! The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a proxy puts in front of
//! a TCP stream to tell the next hop the client's address. [`v1`] and [`v2`] write it for
//! backends that asked for it; [`parse`] reads one from a trusted sender in front of us. The
//! reader is incremental (call it again with more bytes while it says
//! [`Parsed::Incomplete`]), bounded by [`MAX_HEADER_BYTES`] and never panics (fuzzed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
const SIG_V2: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included.
const MAX_V1: usize = 107;
/// Largest v2 header accepted (address block plus TLVs); longer is refused rather than
/// buffered.
pub const MAX_HEADER_BYTES: usize = 16 + 2048;

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; the stream's data starts after it. `source` is the
    /// client's address, `None` for `UNKNOWN`/`LOCAL`/non-IP families (keep the peer's).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    },
    /// A prefix of a header: read more.
    Incomplete,
    /// Not a valid PROXY header, with the reason.
    Invalid(&'static str),
}

/// Whether a stream starts like a PROXY header (to refuse one from an untrusted peer).
pub fn looks_like_header(buf: &[u8]) -> bool {
    buf.starts_with(b"PROXY ") || buf.starts_with(&SIG_V2[..8])
}

/// Reads a v1 or v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let n = buf.len().min(SIG_V2.len());
    if buf[..n] == SIG_V2[..n] {
        return if n < SIG_V2.len() {
            Parsed::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Parsed::Incomplete
        } else {
            parse_v1(buf)
        };
    }
    Parsed::Invalid("no PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= MAX_V1 {
            Parsed::Invalid("PROXY v1 line longer than 107 bytes")
        } else if window
            .iter()
            .any(|&b| b == b'\n' || !(b == b'\r' || (0x20..0x7f).contains(&b)))
        {
            Parsed::Invalid("PROXY v1 line has a byte outside printable ASCII")
        } else {
            Parsed::Incomplete
        };
    };
    if !window[6..end].iter().all(|b| (0x20..0x7f).contains(b)) {
        return Parsed::Invalid("PROXY v1 line has a byte outside printable ASCII");
    }
    let Ok(line) = std::str::from_utf8(&window[6..end]) else {
        return Parsed::Invalid("PROXY v1 line is not ASCII");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match parts.as_slice() {
        ["UNKNOWN", ..] => Parsed::Complete {
            len,
            source: None,
            destination: None,
        },
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip = |s: &str| -> Option<IpAddr> {
                if v4 {
                    s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                }
            };
            let port = |s: &str| -> Option<u16> {
                // No sign, no leading zeros (the spec's words), at most 5 digits.
                (!s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse().ok())
                    .flatten()
                    .filter(|_| s == "0" || !s.starts_with('0'))
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(s), Some(d), Some(sp), Some(dp)) => Parsed::Complete {
                    len,
                    source: Some(SocketAddr::new(s, sp)),
                    destination: Some(SocketAddr::new(d, dp)),
                },
                _ => Parsed::Invalid("PROXY v1 addresses or ports are invalid"),
            }
        }
        _ => Parsed::Invalid("PROXY v1 line is not TCP4, TCP6 or UNKNOWN"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    let Some(h) = buf.get(..16) else {
        return Parsed::Incomplete;
    };
    let (version, command, family) = (h[12] >> 4, h[12] & 0x0f, h[13]);
    if version != 2 {
        return Parsed::Invalid("PROXY v2 header has an unknown version");
    }
    if command > 1 {
        return Parsed::Invalid("PROXY v2 header has an unknown command");
    }
    let body_len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    let len = 16 + body_len;
    if len > MAX_HEADER_BYTES {
        return Parsed::Invalid("PROXY v2 header too large");
    }
    let Some(body) = buf.get(16..len) else {
        return Parsed::Incomplete;
    };
    let local = Parsed::Complete {
        len,
        source: None,
        destination: None,
    };
    if command == 0 {
        return local; // LOCAL: the sender's own connection (health checks)
    }
    // Transport 1 (stream) or 2 (datagram); the address family is the high nibble.
    match (family >> 4, family & 0x0f) {
        (1, 1 | 2) => match body.get(..12) {
            Some(a) => Parsed::Complete {
                len,
                source: Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
                    u16::from_be_bytes([a[8], a[9]]),
                )),
                destination: Some(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::new(a[4], a[5], a[6], a[7])),
                    u16::from_be_bytes([a[10], a[11]]),
                )),
            },
            None => Parsed::Invalid("PROXY v2 IPv4 address block too short"),
        },
        (2, 1 | 2) => match body.get(..36) {
            Some(a) => {
                let v6 = |s: &[u8]| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(s);
                    IpAddr::V6(Ipv6Addr::from(o))
                };
                Parsed::Complete {
                    len,
                    source: Some(SocketAddr::new(
                        v6(&a[..16]),
                        u16::from_be_bytes([a[32], a[33]]),
                    )),
                    destination: Some(SocketAddr::new(
                        v6(&a[16..32]),
                        u16::from_be_bytes([a[34], a[35]]),
                    )),
                }
            }
            None => Parsed::Invalid("PROXY v2 IPv6 address block too short"),
        },
        // UNSPEC or Unix sockets: nothing to learn about an IP client.
        (0 | 3, _) => local,
        _ => Parsed::Invalid("PROXY v2 header has an unknown address family"),
    }
}

/// Both addresses in one family (an IPv4 address next to an IPv6 one becomes IPv4-mapped).
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (src.is_ipv4(), dst.is_ipv4()) {
        (true, true) | (false, false) => (src, dst),
        _ => (v6(src), v6(dst)),
    }
}

/// A v1 header (`PROXY TCP4 src dst sport dport\r\n`).
pub fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 header (binary, PROXY command, stream transport, no TLVs).
pub fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIG_V2);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V6(v6) => v6.octets(),
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&six(s));
            out.extend_from_slice(&six(d));
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn written_headers_read_back_at_every_cut() {
        for (src, dst) in [
            (addr("192.0.2.1:5555"), addr("10.0.0.1:443")),
            (addr("[2001:db8::1]:5555"), addr("[2001:db8::2]:443")),
        ] {
            for header in [v1(src, dst), v2(src, dst)] {
                for cut in 0..header.len() {
                    assert_eq!(parse(&header[..cut]), Parsed::Incomplete, "cut {cut}");
                }
                let mut with_data = header.clone();
                with_data.extend_from_slice(b"hello");
                assert_eq!(
                    parse(&with_data),
                    Parsed::Complete {
                        len: header.len(),
                        source: Some(src),
                        destination: Some(dst)
                    }
                );
            }
        }
        assert_eq!(
            v1(addr("192.0.2.1:1"), addr("10.0.0.1:2")),
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\n"
        );
        // Mixed families become IPv6 with a mapped address.
        let mixed = v2(addr("192.0.2.1:1"), addr("[2001:db8::2]:2"));
        assert_eq!(mixed[13], 0x21);
    }

    #[test]
    fn unknown_local_and_bad_headers() {
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\nGET"),
            Parsed::Complete {
                len: 15,
                source: None,
                ..
            }
        ));
        let mut local = SIG_V2.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert!(matches!(
            parse(&local),
            Parsed::Complete {
                len: 16,
                source: None,
                ..
            }
        ));
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP5 a b 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\n",
        ] {
            assert!(matches!(parse(bad), Parsed::Invalid(_)), "{bad:?}");
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Parsed::Invalid(_)));
        let mut huge = SIG_V2.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&huge), Parsed::Invalid(_)));
        let mut short = SIG_V2.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Parsed::Invalid(_)));
    }
}
