//! Abuse of the TLS edge against the real binary: slow handshakes are cut at
//! `handshake_timeout_ms`, a flood past `max_handshakes` is shed at once, both counted in
//! `/metrics` while the proxy keeps serving; an HTTP/2 rapid-reset burst (HEADERS then
//! RST_STREAM, over and over, written as raw frames) ends the connection with GOAWAY
//! `ENHANCE_YOUR_CALM` and the proxy keeps serving other clients.

mod proxy_support;

use std::time::{Duration, Instant};

use hyper::StatusCode;
use proxy_support::tls::*;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

        // Read frames until GOAWAY.
        let mut input = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = Instant::now() + Duration::from_secs(10);
        let goaway = loop {
            let mut at = 0;
            let mut found = None;
            while input.len() >= at + 9 {
                let len = ((input[at] as usize) << 16)
                    | ((input[at + 1] as usize) << 8)
                    | input[at + 2] as usize;
                if input.len() < at + 9 + len {
                    break;
                }
                if input[at + 3] == 7 && len >= 8 {
                    let p = &input[at + 9..at + 9 + len];
                    found = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                }
                at += 9 + len;
            }
            if let Some(code) = found {
                break Some(code);
            }
            assert!(Instant::now() < deadline, "no GOAWAY within 10 s");
            match tokio::time::timeout(Duration::from_secs(10), attacker.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break None,
                Ok(Ok(n)) => input.extend_from_slice(&buf[..n]),
            }
        };
        assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
        // Far fewer upstream requests than streams opened.
        assert!(up.count() < 500, "{} upstream requests", up.count());

        // Everyone else is still served, over HTTP/2 too.
        let s = dial(addr, "a.test", client(None, &["h2"]))
            .await
            .expect("tls");
        let req = hyper::Request::get("https://a.test/after")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let (status, _, body) = h2(s, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
    });
}
