//! Abuse of the TLS edge against the real binary: slow handshakes are cut at
//! `handshake_timeout_ms`, a flood past `max_handshakes` is shed at once, both counted in
//! `/metrics` while the proxy keeps serving; an HTTP/2 rapid-reset burst (HEADERS then
//! RST_STREAM, over and over, written as raw frames) ends the connection with GOAWAY
//! `ENHANCE_YOUR_CALM` and the proxy keeps serving other clients; so do CONTINUATION floods
//! (a header block spread over endless CONTINUATION frames) and HPACK bombs (one large header
//! put in the HPACK table, then referenced thousands of times: a 16 KiB frame decoding to
//! 48 MB), from twenty connections at once, with the proxy's peak memory bounded. Each case
//! is counted in `/metrics` (`itsup_proxy_h2_goaway_total{reason="enhance_your_calm"}`).

mod proxy_support;

use std::time::{Duration, Instant};

use hyper::StatusCode;
use proxy_support::tls::*;
use proxy_support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(upstream: std::net::SocketAddr, tls: &str) -> String {
    format!(
        "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{{tls}}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{upstream}\"}}]}}}}\n"
    )
}

/// Reads until the peer closes (or `limit`); returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[test]
fn slow_handshakes_time_out_and_floods_are_shed_while_others_are_served() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&config(
            up.addr,
            "handshake_timeout_ms: 500, max_handshakes: 2",
        ));
        let addr = proxy.tls[0];
        // Two connections that never send a ClientHello hold both handshake slots.
        let mut slow1 = TcpStream::connect(addr).await.expect("connect");
        let mut slow2 = TcpStream::connect(addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A third is closed at once, unanswered.
        let mut shed = TcpStream::connect(addr).await.expect("connect");
        let took = closed_within(&mut shed, Duration::from_millis(400))
            .await
            .expect("shed at once");
        assert!(took < Duration::from_millis(400), "{took:?}");
        // The slow ones are cut at the handshake timeout.
        for slow in [&mut slow1, &mut slow2] {
            closed_within(slow, Duration::from_secs(3))
                .await
                .expect("a slow handshake is cut");
        }
        // The slots are free again: a real client is served.
        let (status, _, body) = get_tls(addr, "a.test", "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
        let metric = |r: &'static str| {
            let proxy = &proxy;
            async move {
                proxy
                    .metric(&format!(
                        "itsup_proxy_tls_handshakes_total{{result=\"{r}\"}}"
                    ))
                    .await
            }
        };
        assert_eq!(metric("shed").await, 1.0);
        assert_eq!(metric("timeout").await, 2.0);
        assert_eq!(metric("ok").await, 1.0);
        assert_eq!(proxy.metric("itsup_proxy_tls_handshakes_active").await, 0.0);
    });
}

/// The `/metrics` series of HTTP/2 connections the proxy closed as abusive.
const CALM: &str = "itsup_proxy_h2_goaway_total{reason=\"enhance_your_calm\"}";

/// Reads HTTP/2 frames until a GOAWAY (its error code), the end of the stream or `limit`.
async fn read_goaway<R: AsyncRead + Unpin>(conn: &mut R, limit: Duration) -> Option<u32> {
    let mut input = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + limit;
    loop {
        let mut at = 0;
        while input.len() >= at + 9 {
            let len = ((input[at] as usize) << 16)
                | ((input[at + 1] as usize) << 8)
                | input[at + 2] as usize;
            if input.len() < at + 9 + len {
                break;
            }
            if input[at + 3] == 7 && len >= 8 {
                let p = &input[at + 9..at + 9 + len];
                return Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
            }
            at += 9 + len;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => input.extend_from_slice(&buf[..n]),
        }
    }
}

/// The proxy's peak resident memory so far (`VmHWM`), in KiB.
fn peak_rss_kib(proxy: &Proxy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.child.id()))
        .expect("the proxy's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// HPACK for `GET https://a.test/`: `:method GET`, `:scheme https`, `:path /` (static table),
/// `:authority a.test` (a literal not added to the dynamic table).
const REQUEST_BLOCK: &[u8] = &[
    0x82, 0x87, 0x84, 0x01, 6, b'a', b'.', b't', b'e', b's', b't',
];

/// `attackers` HTTP/2-over-TLS connections at once, each sending the preface, SETTINGS and
/// `attack` (while reading: the server may close before it read everything); the GOAWAY
/// code each one got.
async fn attack(addr: std::net::SocketAddr, attackers: usize, attack: Vec<u8>) -> Vec<Option<u32>> {
    let mut tasks = Vec::new();
    for _ in 0..attackers {
        let attack = attack.clone();
        tasks.push(tokio::spawn(async move {
            let conn = dial(addr, "a.test", client(None, &["h2"]))
                .await
                .expect("tls");
            assert_eq!(alpn(&conn).as_deref(), Some("h2"));
            let (mut rd, mut wr) = tokio::io::split(conn);
            let writer = tokio::spawn(async move {
                let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
                bytes.extend(frame(4, 0, 0, &[]));
                bytes.extend(attack);
                // Fails once the proxy closed: that is the point.
                let _ = tokio::time::timeout(Duration::from_secs(10), wr.write_all(&bytes)).await;
                let _ = wr.flush().await;
            });
            let code = read_goaway(&mut rd, Duration::from_secs(15)).await;
            writer.abort();
            code
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("attacker"));
    }
    codes
}

/// After an attack: an HTTP/2 client is still served.
async fn still_served(addr: std::net::SocketAddr) {
    let s = dial(addr, "a.test", client(None, &["h2"]))
        .await
        .expect("tls");
    let req = hyper::Request::get("https://a.test/after")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let (status, _, body) = h2(s, req).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
}

/// Twenty attackers: far more memory than the bound if the proxy kept what they send.
const ATTACKERS: usize = 20;
/// Peak memory the attacks may add to the proxy.
const MEMORY_BOUND_KIB: u64 = 64 * 1024;

#[test]
fn http2_continuation_flood_ends_with_goaway_in_bounded_memory() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&config(up.addr, ""));
        let addr = proxy.tls[0];
        still_served(addr).await;
        let before = peak_rss_kib(&proxy);
        // HEADERS without END_HEADERS, then 2 MiB of CONTINUATION frames, each one more
        // `x-flood: 1` field (literal, not indexed), never ending the block.
        let mut flood = frame(1, 0x1, 1, REQUEST_BLOCK);
        let field = [&[0x00, 7][..], b"x-flood", &[1, b'1']].concat();
        while flood.len() < 2 << 20 {
            flood.extend(frame(9, 0, 1, &field));
        }
        let codes = attack(addr, ATTACKERS, flood).await;
        assert_eq!(
            codes,
            vec![Some(0xb); ATTACKERS],
            "GOAWAY ENHANCE_YOUR_CALM to each"
        );
        let grown = peak_rss_kib(&proxy).saturating_sub(before);
        assert!(grown < MEMORY_BOUND_KIB, "peak memory grew by {grown} KiB");
        assert_eq!(up.count(), 1, "no flooded request reached the upstream");
        still_served(addr).await;
        assert_eq!(proxy.metric(CALM).await, ATTACKERS as f64);
    });
}

#[test]
fn hpack_bomb_ends_with_goaway_in_bounded_memory() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&config(up.addr, ""));
        let addr = proxy.tls[0];
        still_served(addr).await;
        let before = peak_rss_kib(&proxy);
        // One 16 KiB HEADERS frame: `x-bomb` with a 4000-byte value added to the HPACK
        // table (4038 bytes, it fits the default 4096), then 12 000 one-byte references to
        // it (index 62): 48 MB of decoded headers per connection if nothing stopped it.
        let mut block = REQUEST_BLOCK.to_vec();
        block.extend_from_slice(&[0x40, 6]);
        block.extend_from_slice(b"x-bomb");
        block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // 127 + 3873 = 4000
        block.extend(std::iter::repeat_n(b'b', 4000));
        block.extend(std::iter::repeat_n(0xbe, 12_000));
        assert!(block.len() <= 16_384, "one frame of the default size");
        let bomb = frame(1, 0x5, 1, &block);
        let codes = attack(addr, ATTACKERS, bomb).await;
        assert_eq!(
            codes,
            vec![Some(0xb); ATTACKERS],
            "GOAWAY ENHANCE_YOUR_CALM to each"
        );
        let grown = peak_rss_kib(&proxy).saturating_sub(before);
        assert!(grown < MEMORY_BOUND_KIB, "peak memory grew by {grown} KiB");
        assert_eq!(up.count(), 1, "no bomb reached the upstream");
        still_served(addr).await;
        assert_eq!(proxy.metric(CALM).await, ATTACKERS as f64);
    });
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn http2_rapid_reset_is_answered_with_goaway_and_others_keep_being_served() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&config(up.addr, ""));
        let addr = proxy.tls[0];
        let mut attacker = dial(addr, "a.test", client(None, &["h2"]))
            .await
            .expect("tls");
        assert_eq!(alpn(&attacker).as_deref(), Some("h2"));
        // HPACK: :method GET, :scheme https, :path /slow/2000 (literal), :authority a.test.
        let mut block = vec![0x82, 0x87, 0x44, 10];
        block.extend_from_slice(b"/slow/2000");
        block.extend_from_slice(&[0x41, 6]);
        block.extend_from_slice(b"a.test");
        let mut burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        burst.extend(frame(4, 0, 0, &[]));
        for i in 0..500u32 {
            let id = 2 * i + 1;
            burst.extend(frame(1, 0x5, id, &block)); // HEADERS, END_STREAM | END_HEADERS
            burst.extend(frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
        }
        attacker.write_all(&burst).await.expect("write burst");
        attacker.flush().await.expect("flush");

        let goaway = read_goaway(&mut attacker, Duration::from_secs(10)).await;
        assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
        // Far fewer upstream requests than streams opened.
        assert!(up.count() < 500, "{} upstream requests", up.count());
        assert_eq!(proxy.metric(CALM).await, 1.0);

        // Everyone else is still served, over HTTP/2 too.
        still_served(addr).await;
    });
}
