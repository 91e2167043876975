//! The PROXY protocol reader (v1 text, v2 binary) that sees a trusted sender's first bytes:
//! on any input it must not panic, must report a length within the input and its bound, and
//! must be incremental (a prefix of a complete header is Incomplete, never another verdict).
//! Headers we write for any addresses the input picks must read back to those addresses.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use itsup::fuzz_api::{
    MAX_PROXY_HEADER_BYTES, ProxyHeader, proxy_header, proxy_header_v1, proxy_header_v2,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let ProxyHeader::Complete { len, .. } = proxy_header(data) {
        assert!(len <= data.len() && len <= MAX_PROXY_HEADER_BYTES);
        for cut in [len / 2, len.saturating_sub(1)] {
            if cut > 0 && cut < len {
                assert_eq!(proxy_header(&data[..cut]), ProxyHeader::Incomplete, "cut at {cut}");
            }
        }
    }
    if data.len() >= 36 {
        let v6 = |b: &[u8]| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            IpAddr::V6(Ipv6Addr::from(o))
        };
        let (src, dst) = if data[0] & 1 == 0 {
            (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(data[1], data[2], data[3], data[4])), u16::from_be_bytes([data[5], data[6]])),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(data[7], data[8], data[9], data[10])), u16::from_be_bytes([data[11], data[12]])),
            )
        } else {
            (
                SocketAddr::new(v6(&data[1..]), u16::from_be_bytes([data[17], data[18]])),
                SocketAddr::new(v6(&data[19..]), u16::from_be_bytes([data[34], data[35]])),
            )
        };
        for header in [proxy_header_v1(src, dst), proxy_header_v2(src, dst)] {
            assert_eq!(
                proxy_header(&header),
                ProxyHeader::Complete { len: header.len(), source: Some(src), destination: Some(dst) }
            );
        }
    }
});
