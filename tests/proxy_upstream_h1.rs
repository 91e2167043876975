//! The direct HTTP/1.1 upstream path (bodiless requests) against raw scripted upstreams:
//! every response framing, interim responses, connection reuse and its refusals, stale
//! pooled connections, bad framing and large bodies through batched writes.

mod proxy_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use proxy_support::*;

fn config(up: &Scripted) -> String {
    format!(
        "{HEAD}routes: [{{cluster: up, retries: 0}}]\nclusters: {{up: {{servers: [{{address: '{}'}}]}}}}\n",
        up.addr
    )
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn chunked_responses_are_decoded_and_the_connection_reused() {
    mt().block_on(async {
        let up = Scripted::start(|_, n, _| {
            Act::Reply(
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-N: {n}\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
                )
                .into_bytes(),
            )
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        for i in 0..3 {
            let (s, h, body) = get(proxy.addr, "a.test", "/").await;
            assert_eq!((s, body.as_str()), (StatusCode::OK, "hello world"));
            assert_eq!(h["x-n"], i.to_string().as_str());
            assert!(!h.contains_key("transfer-encoding") || h["transfer-encoding"] == "chunked");
        }
        assert_eq!(up.connections.load(Ordering::SeqCst), 1, "one pooled connection");
    });
}

#[test]
fn close_delimited_and_http10_responses_are_complete_and_not_reused() {
    mt().block_on(async {
        let up = Scripted::start(|_, _, head| {
            if head.starts_with("GET /old") {
                Act::ReplyClose(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold".to_vec())
            } else {
                Act::ReplyClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec())
            }
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        for _ in 0..2 {
            let (s, _, body) = get(proxy.addr, "a.test", "/").await;
            assert_eq!((s, body.as_str()), (StatusCode::OK, "until the end"));
            let (s, _, body) = get(proxy.addr, "a.test", "/old").await;
            assert_eq!((s, body.as_str()), (StatusCode::OK, "old"));
        }
        assert_eq!(up.connections.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn interim_responses_are_skipped() {
    mt().block_on(async {
        let up = Scripted::start(|_, _, _| {
            let mut r =
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                    .to_vec();
            r.extend(ok("final"));
            Act::Reply(r)
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        let (s, h, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "final"));
        assert!(!h.contains_key("link"));
    });
}

#[test]
fn bad_framing_is_a_502_and_never_reaches_the_next_request() {
    mt().block_on(async {
        let up = Scripted::start(|_, _, head| {
            if head.starts_with("GET /conflict") {
                Act::Reply(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                        .to_vec(),
                )
            } else if head.starts_with("GET /garbage") {
                Act::Reply(b"HTTP/1.1 2OO OK\r\n\r\n".to_vec())
            } else if head.starts_with("GET /smuggle") {
                // One request, two responses: the second must never answer anyone.
                let mut r = ok("first");
                r.extend(ok("smuggled"));
                Act::Reply(r)
            } else {
                Act::Reply(ok("clean"))
            }
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        let (s, _, _) = get(proxy.addr, "a.test", "/conflict").await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        let (s, _, _) = get(proxy.addr, "a.test", "/garbage").await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        let (s, _, body) = get(proxy.addr, "a.test", "/smuggle").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "first"));
        let (s, _, body) = get(proxy.addr, "a.test", "/next").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "clean"));
        let (s, _, body) = get(proxy.addr, "a.test", "/next").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "clean"));
    });
}

#[test]
fn head_responses_keep_their_length_and_the_connection_stays_in_sync() {
    mt().block_on(async {
        let up = Scripted::start(|_, _, head| {
            if head.starts_with("HEAD ") {
                Act::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec())
            } else {
                Act::Reply(ok("after head"))
            }
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        let head = Request::head("/")
            .header("host", "a.test")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let (s, h, body) = send(proxy.addr, head).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, ""));
        assert_eq!(h["content-length"], "1234");
        let (s, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "after head"));
        assert_eq!(up.connections.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_pooled_connection_closed_by_the_upstream_is_replaced_for_idempotent_requests_only() {
    mt().block_on(async {
        // Every connection answers its first request and hangs up on the second without a
        // byte: the race between an upstream's idle timeout and a new request.
        let up = Scripted::start(|_, n, _| {
            if n == 0 {
                Act::Reply(ok("fresh"))
            } else {
                Act::Close
            }
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        assert_eq!(get(proxy.addr, "a.test", "/").await.2, "fresh");
        let (s, _, body) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::OK, "fresh"),
            "GET re-sent on a new connection"
        );
        assert_eq!(up.connections.load(Ordering::SeqCst), 2);
        assert_eq!(up.requests.load(Ordering::SeqCst), 3);
        // A bodiless POST may have been acted on: it is not sent twice.
        let post = Request::post("/")
            .header("host", "a.test")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let (s, _, _) = send(proxy.addr, post).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert_eq!(up.requests.load(Ordering::SeqCst), 4);
    });
}

#[test]
fn a_truncated_body_aborts_the_client_response() {
    mt().block_on(async {
        let up = Scripted::start(|_, _, _| {
            Act::ReplyClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec())
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        let answer = raw(
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        // hyper aborts the client connection: whatever got out, it is never a complete
        // response the client could take for the real one.
        if let Some(end) = answer.find("\r\n\r\n") {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.len() - end - 4 < 100, "{answer}");
        }
        // The proxy is fine afterwards (the upstream cuts every answer the same way).
        let again = raw(
            proxy.addr,
            b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(!again.contains("Content-Length: 100\r\n\r\n") || again.len() < 150);
        assert_eq!(up.requests.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn large_bodies_pass_intact_in_both_framings() {
    mt().block_on(async {
        const SIZE: usize = 3 * 1024 * 1024 + 17;
        let payload: String = (0..SIZE)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let body = payload.clone();
        let up = Scripted::start(move |_, _, head| {
            if head.starts_with("GET /chunked") {
                let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for piece in body.as_bytes().chunks(100_000) {
                    r.extend(format!("{:x}\r\n", piece.len()).into_bytes());
                    r.extend_from_slice(piece);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                Act::Reply(r)
            } else {
                Act::Reply(ok(&body))
            }
        })
        .await;
        let proxy = Proxy::start(&config(&up));
        for path in ["/length", "/chunked", "/length"] {
            let (s, _, got) = get(proxy.addr, "a.test", path).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(got.len(), SIZE, "{path}");
            assert!(got == payload, "{path}: body differs");
        }
    });
}

#[test]
fn concurrent_requests_on_the_multi_threaded_runtime() {
    mt().block_on(async {
        let up = Scripted::start(|_, n, head| {
            let path = head.split(' ').nth(1).unwrap_or("").to_string();
            if n % 2 == 0 {
                Act::Reply(ok(&path))
            } else {
                Act::Reply(
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{path}\r\n0\r\n\r\n",
                        path.len()
                    )
                    .into_bytes(),
                )
            }
        })
        .await;
        // Without batching (it is only on with one thread), pooled connections move
        // between worker threads.
        let proxy = Proxy::start_with(&config(&up), &["--threads", "2"]);
        let addr = proxy.addr;
        let clients: Vec<_> = (0..16)
            .map(|c| {
                tokio::spawn(async move {
                    for i in 0..25 {
                        let path = format!("/c{c}/r{i}");
                        let (s, _, body) = get(addr, "a.test", &path).await;
                        assert_eq!((s, body), (StatusCode::OK, path));
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.expect("client");
        }
        assert_eq!(up.requests.load(Ordering::SeqCst), 400);
        let opened = up.connections.load(Ordering::SeqCst);
        assert!(opened <= 64, "upstream connections are reused: {opened} for 400 requests");
    });
}
