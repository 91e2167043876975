//! `itsup proxy` against real local upstreams: routing, headers, load balancing, retries and
//! timeouts.

mod proxy_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use proxy_support::*;

#[test]
fn routing_table_status_codes_and_forwarding_headers() {
    mt().block_on(async {
        let api = Upstream::start("api").await;
        let web = Upstream::start("web").await;
        let wild = Upstream::start("wild").await;
        let dead = dead_port();
        let config = format!(
            "{HEAD}routes:
  - {{host: app.test, path: /api, strip_prefix: true, cluster: api}}
  - {{host: app.test, path: /slow, cluster: api, timeouts: {{response_ms: 200}}, retries: 0}}
  - {{host: '*.wild.test', cluster: wild}}
  - {{host: broken.test, cluster: dead}}
  - {{host: maint.test, cluster: web}}
  - {{path: /site, cluster: web}}
clusters:
  api: {{servers: [{{address: '{}'}}]}}
  web: {{servers: [{{address: '{}'}}]}}
  wild: {{servers: [{{address: '{}'}}]}}
  dead: {{servers: [{{address: '{dead}'}}], circuit_breaker: {{consecutive_failures: 1, base_ejection_ms: 5000}}}}
",
            api.addr, web.addr, wild.addr
        );
        let proxy = Proxy::start(&config);
        let p = proxy.addr;

        let (s, h, body) = get(p, "app.test", "/api/users?id=7").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "api"));
        assert_eq!(h.get("x-upstream").map(|v| v.as_bytes()), Some(&b"api"[..]));
        assert_eq!(api.last().path, "/users?id=7", "prefix stripped, query kept");
        let (_, _, body) = get(p, "APP.test:8080", "/api").await;
        assert_eq!(body, "api");
        assert_eq!(api.last().path, "/");

        assert_eq!(get(p, "x.wild.test", "/a").await.2, "wild");
        assert_eq!(get(p, "a.b.wild.test", "/a").await.2, "wild");
        // Host routes fall through to the default routes when no path matches.
        assert_eq!(get(p, "app.test", "/site/x").await.2, "web");
        assert_eq!(web.last().path, "/site/x", "no strip without strip_prefix");
        assert_eq!(get(p, "wild.test", "/site").await.2, "web");

        let (s, _, body) = get(p, "other.test", "/nothing").await;
        assert_eq!((s, body.as_str()), (StatusCode::NOT_FOUND, "no route\n"));
        let (s, _, body) = get(p, "broken.test", "/").await;
        assert_eq!((s, body.as_str()), (StatusCode::BAD_GATEWAY, "bad gateway\n"));
        // The failure opened the circuit: now there is no server at all.
        let (s, _, body) = get(p, "broken.test", "/").await;
        assert_eq!((s, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "no server available\n"));
        let started = Instant::now();
        let (s, _, body) = get(p, "app.test", "/slow/2000").await;
        assert_eq!((s, body.as_str()), (StatusCode::GATEWAY_TIMEOUT, "upstream timeout\n"));
        assert!(started.elapsed() < Duration::from_millis(1500), "route response timeout applies");
        assert_eq!(proxy.set_state("web", web.addr, "maint").await, StatusCode::OK);
        let (s, _, _) = get(p, "maint.test", "/").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(proxy.set_state("web", web.addr, "ready").await, StatusCode::OK);

        // Forwarding headers; a spoofed chain from an untrusted peer is replaced, and
        // hop-by-hop headers (including the ones named in Connection) do not pass.
        let req = Request::get("/site/h")
            .header("host", "front.test")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("x-end-to-end", "yes")
            .body(Full::new(Bytes::new()))
            .expect("req");
        assert_eq!(send(p, req).await.0, StatusCode::OK);
        let seen = web.last().headers;
        assert_eq!(seen.get("x-forwarded-for").map(String::as_str), Some("127.0.0.1"));
        assert_eq!(seen.get("x-real-ip").map(String::as_str), Some("127.0.0.1"));
        assert_eq!(seen.get("x-forwarded-proto").map(String::as_str), Some("http"));
        assert_eq!(seen.get("x-forwarded-host").map(String::as_str), Some("front.test"));
        assert_eq!(seen.get("forwarded").map(String::as_str), Some("for=127.0.0.1;proto=http;host=front.test"));
        assert_eq!(seen.get("host").map(String::as_str), Some("front.test"));
        assert_eq!(seen.get("x-end-to-end").map(String::as_str), Some("yes"));
        for hop in ["x-secret", "keep-alive", "te"] {
            assert!(!seen.contains_key(hop), "{hop} must not be forwarded: {seen:?}");
        }
    });
}

#[test]
fn trusted_proxy_chain_is_extended_and_client_ip_taken_from_it() {
    mt().block_on(async {
        let web = Upstream::start("web").await;
        let config = format!(
            "{HEAD}trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: '{}'}}]}}}}\n",
            web.addr
        );
        let proxy = Proxy::start(&config);
        let req = Request::get("/")
            .header("host", "t.test")
            .header("x-forwarded-for", "203.0.113.9, 10.1.2.3")
            .header("x-forwarded-proto", "https")
            .header("forwarded", "for=203.0.113.9;proto=https")
            .body(Full::new(Bytes::new()))
            .expect("req");
        assert_eq!(send(proxy.addr, req).await.0, StatusCode::OK);
        let seen = web.last().headers;
        assert_eq!(seen.get("x-forwarded-for").map(String::as_str), Some("203.0.113.9, 10.1.2.3, 127.0.0.1"));
        assert_eq!(seen.get("x-real-ip").map(String::as_str), Some("203.0.113.9"));
        assert_eq!(seen.get("x-forwarded-proto").map(String::as_str), Some("https"));
        assert_eq!(
            seen.get("forwarded").map(String::as_str),
            Some("for=203.0.113.9;proto=https, for=127.0.0.1;proto=http;host=t.test")
        );
    });
}

async fn three(names: [&str; 3]) -> Vec<Upstream> {
    let mut v = Vec::new();
    for n in names {
        v.push(Upstream::start(n).await);
    }
    v
}

async fn sequence(proxy: &Proxy, n: usize, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(proxy.addr, "lb.test", path).await.2);
    }
    out
}

#[test]
fn smooth_weighted_round_robin_follows_nginx_order() {
    mt().block_on(async {
        let u = three(["a", "b", "c"]).await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: smooth_weighted\n    servers: [{{address: '{}', weight: 5}}, {{address: '{}'}}, {{address: '{}'}}]\n",
            u[0].addr, u[1].addr, u[2].addr
        );
        let proxy = Proxy::start(&config);
        let got = sequence(&proxy, 14, "/").await;
        assert_eq!(got.join(" "), "a a b a c a a a a b a c a a");
    });
}

#[test]
fn round_robin_rotates_over_all_servers() {
    mt().block_on(async {
        let u = three(["a", "b", "c"]).await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: round_robin\n    servers: [{{address: '{}', weight: 5}}, {{address: '{}'}}, {{address: '{}'}}]\n",
            u[0].addr, u[1].addr, u[2].addr
        );
        let proxy = Proxy::start(&config);
        let got = sequence(&proxy, 9, "/").await;
        assert_eq!(got.join(" "), "a b c a b c a b c");
    });
}

#[test]
fn least_connections_avoids_the_busy_server() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: least_connections\n    servers: [{{address: '{}'}}, {{address: '{}'}}]\n",
            a.addr, b.addr
        );
        let proxy = Proxy::start(&config);
        let addr = proxy.addr;
        let slow = tokio::spawn(async move { get(addr, "lb.test", "/slow/1500").await.2 });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let busy = if a.count() == 1 { "a" } else { "b" };
        let got = sequence(&proxy, 6, "/").await;
        assert!(got.iter().all(|s| s != busy), "requests went to the busy server {busy}: {got:?}");
        assert_eq!(slow.await.expect("join"), busy);
        // Once idle again, both share the load.
        let got = sequence(&proxy, 6, "/").await;
        assert!(got.iter().any(|s| s == "a") && got.iter().any(|s| s == "b"), "{got:?}");
    });
}

#[test]
fn consistent_hash_keeps_keys_and_remaps_few_when_a_server_is_added() {
    mt().block_on(async {
        let u = three(["a", "b", "c"]).await;
        let d = Upstream::start("d").await;
        let cluster = |extra: &str| {
            format!(
                "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: consistent_hash\n    hash_header: x-user\n    servers: [{{address: '{}'}}, {{address: '{}'}}, {{address: '{}'}}{extra}]\n",
                u[0].addr, u[1].addr, u[2].addr
            )
        };
        let proxy = Proxy::start(&cluster(""));
        let placement = |proxy_addr| async move {
            let mut map = HashMap::new();
            for user in 0..60 {
                let req = Request::get("/")
                    .header("host", "h.test")
                    .header("x-user", format!("user-{user}"))
                    .body(Full::new(Bytes::new()))
                    .expect("req");
                map.insert(user, send(proxy_addr, req).await.2);
            }
            map
        };
        let before = placement(proxy.addr).await;
        assert_eq!(before, placement(proxy.addr).await, "same key, same server");
        let used: std::collections::HashSet<_> = before.values().collect();
        assert_eq!(used.len(), 3, "keys spread over all servers");

        proxy.write_config(&cluster(&format!(", {{address: '{}'}}", d.addr)));
        proxy
            .wait_for("reload with 4 servers", Duration::from_secs(10), || async {
                proxy.servers().await.as_array().map(|a| a.len()) == Some(4)
            })
            .await;
        let after = placement(proxy.addr).await;
        let moved: Vec<_> = before.keys().filter(|k| before[k] != after[k]).collect();
        assert!(moved.iter().all(|k| after[k] == "d"), "keys only move to the new server");
        assert!(!moved.is_empty() && moved.len() < 30, "moved {} of 60", moved.len());
    });
}

#[test]
fn sticky_cookie_pins_and_falls_back_when_the_server_is_unavailable() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: sticky_cookie\n    sticky: {{cookie: sid}}\n    servers: [{{address: '{}'}}, {{address: '{}'}}]\n",
            a.addr, b.addr
        );
        let proxy = Proxy::start(&config);
        let (_, h, first) = get(proxy.addr, "s.test", "/").await;
        let cookie = h.get("set-cookie").and_then(|v| v.to_str().ok()).expect("set-cookie").to_string();
        assert!(cookie.starts_with("sid=") && !cookie.contains("127.0.0.1"), "sealed: {cookie}");
        let pair = cookie.split(';').next().expect("pair").to_string();
        let with_cookie = || {
            Request::get("/").header("host", "s.test").header("cookie", pair.clone()).body(Full::new(Bytes::new())).expect("req")
        };
        for _ in 0..8 {
            let (_, h, body) = send(proxy.addr, with_cookie()).await;
            assert_eq!(body, first);
            assert!(h.get("set-cookie").is_none(), "no new cookie while pinned");
        }
        let (pinned, other) = if first == "a" { (&a, "b") } else { (&b, "a") };
        // Drain keeps pinned clients; maintenance moves them.
        assert_eq!(proxy.set_state("c", pinned.addr, "drain").await, StatusCode::OK);
        assert_eq!(send(proxy.addr, with_cookie()).await.2, first);
        assert_eq!(get(proxy.addr, "s.test", "/").await.2, other, "new clients avoid a draining server");
        assert_eq!(proxy.set_state("c", pinned.addr, "maint").await, StatusCode::OK);
        let (_, h, body) = send(proxy.addr, with_cookie()).await;
        assert_eq!(body, other);
        assert!(h.get("set-cookie").is_some(), "re-pinned with a new cookie");
    });
}

#[test]
fn retries_only_when_safe() {
    mt().block_on(async {
        let good = Upstream::start("good").await;
        let hole = BlackHole::start().await;
        let dead = dead_port();
        let config = format!(
            "{HEAD}routes:\n  - {{path: /hole, cluster: hole}}\n  - {{path: /dead, cluster: dead}}\nclusters:\n  hole: {{lb: round_robin, servers: [{{address: '{}'}}, {{address: '{}'}}]}}\n  dead: {{lb: round_robin, servers: [{{address: '{dead}'}}, {{address: '{}'}}]}}\n",
            hole.addr, good.addr, good.addr
        );
        let proxy = Proxy::start(&config);
        let post = |path: &str| {
            Request::post(path).header("host", "r.test").body(Full::new(Bytes::from_static(b"payload-123"))).expect("req")
        };
        // Round robin starts at the black hole: the POST body went out, so no retry.
        let (s, _, _) = send(proxy.addr, post("/hole")).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert_eq!(hole.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(String::from_utf8_lossy(&hole.received.lock().expect("lock")).contains("payload-123"));
        assert_eq!(good.count(), 0, "the POST was not re-sent");
        // The next pick is the good server; the one after is the hole again: a bodiless GET
        // is retried there after the hole hangs up.
        assert_eq!(get(proxy.addr, "r.test", "/hole/1").await.2, "good");
        let (s, _, body) = get(proxy.addr, "r.test", "/hole/2").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "good"));
        assert_eq!(hole.connections.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(good.count(), 2);
        // A POST that never reached an upstream (connection refused) is retried elsewhere.
        let (s, _, body) = send(proxy.addr, post("/dead")).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "good"));
        assert_eq!(good.last().body.as_ref(), b"payload-123");
        assert!(proxy.metric("itsup_proxy_retries_total").await >= 2.0);
    });
}

#[test]
fn idle_client_connections_are_closed() {
    mt().block_on(async {
        let web = Upstream::start("web").await;
        let config = format!(
            "{HEAD}timeouts: {{idle_ms: 300, request_header_ms: 5000}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: '{}'}}]}}}}\n",
            web.addr
        );
        let proxy = Proxy::start(&config);
        let started = Instant::now();
        let answer = raw(proxy.addr, b"", Duration::from_secs(5)).await;
        assert!(answer.is_empty());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "{waited:?}");
    });
}

/// Reads one response with a Content-Length body; returns head and body as text.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed early after {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn quiet_keep_alive_connections_park_and_resume() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    mt().block_on(async {
        let web = Upstream::start("web").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: '{}'}}]}}}}\n",
            web.addr
        );
        let proxy = Proxy::start(&config);
        let mut s = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        // Quiet for 700 ms after each answer: the connection parks (after 200 ms) and the
        // next request on the same socket starts a fresh HTTP/1 state.
        for _ in 0..2 {
            s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let r = read_response(&mut s).await;
            assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("web"), "{r:?}");
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        // A request head with a pause in it: not parked half-read (hyper would answer it
        // with `Connection: close`), answered on the same connection.
        s.write_all(b"GET /b HTTP/1.1\r\nHo").await.expect("write");
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.write_all(b"st: x\r\n\r\n").await.expect("write");
        let r = read_response(&mut s).await;
        assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("web"), "{r:?}");
        assert!(!r.to_ascii_lowercase().contains("connection: close"), "{r:?}");
        // Two pipelined requests in one write after a park: both answered, in order.
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut both = Vec::new();
        while {
            let text = String::from_utf8_lossy(&both);
            text.matches("HTTP/1.1 200").count() < 2 || !text.ends_with("web")
        } {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
                .await
                .expect("answers in time")
                .expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&both));
            both.extend_from_slice(&chunk[..n]);
        }
        let paths: Vec<String> = web
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(paths, ["/a", "/a", "/b", "/c", "/d"]);
        assert_eq!(proxy.metric("itsup_proxy_connections_total").await, 1.0);
    });
}
