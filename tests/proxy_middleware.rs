//! `itsup proxy` route middlewares against real local upstreams: IP allowlist behind trusted
//! proxies, basic auth (bcrypt and `{SHA}`), security headers and CORS, redirects, prefix
//! strip, error pages, and rate limiting: the allowed rate under load, `Retry-After`, keys
//! by header, and a flood of client addresses against a bounded key store.

mod proxy_support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use proxy_support::*;

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

async fn get_with(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, hyper::HeaderMap, String) {
    let mut req = Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(addr, req.body(Full::new(Bytes::new())).expect("request")).await
}

#[test]
fn allowlist_checks_the_real_client_behind_trusted_proxies() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let config = format!(
            "{HEAD}trusted_proxies: ['127.0.0.1']
middlewares:
  office: {{ip_allow_list: {{source_range: ['203.0.113.0/24', '2001:db8::1']}}}}
routes:
  - {{host: a.test, cluster: app, middlewares: [office]}}
  - {{host: open.test, cluster: app}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        let xff = |ip: &'static str| [("x-forwarded-for", ip)];
        let (s, _, _) = get_with(proxy.addr, "a.test", "/", &xff("203.0.113.9")).await;
        assert_eq!(s, StatusCode::OK, "allowed range via the trusted peer");
        let (s, _, _) = get_with(proxy.addr, "a.test", "/", &xff("2001:db8::1")).await;
        assert_eq!(s, StatusCode::OK, "allowed bare IPv6");
        let (s, _, body) = get_with(proxy.addr, "a.test", "/", &xff("198.51.100.1")).await;
        assert_eq!((s, body.as_str()), (StatusCode::FORBIDDEN, "forbidden\n"));
        // A spoofed hop left of an untrusted one does not count: the right-most untrusted
        // address is the client.
        let (s, _, _) = get_with(
            proxy.addr,
            "a.test",
            "/",
            &xff("203.0.113.9, 198.51.100.1"),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _, _) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "the loopback peer itself is not listed");
        let (s, _, _) = get(proxy.addr, "open.test", "/").await;
        assert_eq!(s, StatusCode::OK, "routes without the middleware are untouched");
        assert_eq!(app.count(), 3);
        assert_eq!(
            proxy
                .metric("itsup_proxy_middleware_requests_total{middleware=\"office\",kind=\"ip_allow_list\",outcome=\"answered\"}")
                .await,
            3.0
        );
        assert_eq!(
            proxy
                .metric("itsup_proxy_requests_total{route=\"a.test/\",status=\"403\"}")
                .await,
            3.0
        );
    });
}

#[test]
fn basic_auth_with_bcrypt_and_sha_lines() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
        let config = format!(
            "{HEAD}middlewares:
  auth:
    basic_auth:
      realm: staff
      remove_header: true
      users: ['alice:{hash}', 'bob:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=']
routes:
  - {{host: a.test, cluster: app, middlewares: [auth]}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        let (s, h, _) = get(proxy.addr, "a.test", "/").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(h["www-authenticate"], "Basic realm=\"staff\"");
        for (user, password, want) in [
            ("alice", "s3cret", StatusCode::OK),
            ("alice", "wrong", StatusCode::UNAUTHORIZED),
            ("bob", "password", StatusCode::OK),
            ("mallory", "password", StatusCode::UNAUTHORIZED),
        ] {
            let auth = basic(user, password);
            let (s, _, _) = get_with(proxy.addr, "a.test", "/", &[("authorization", &auth)]).await;
            assert_eq!(s, want, "{user}:{password}");
        }
        assert_eq!(app.count(), 2);
        assert!(
            !app.last().headers.contains_key("authorization"),
            "remove_header drops the credentials before the upstream"
        );
    });
}

#[test]
fn security_headers_cors_redirects_strip_prefix_and_error_pages() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let config = format!(
            "{HEAD}middlewares:
  secure:
    headers:
      sts_seconds: 31536000
      sts_include_subdomains: true
      frame_options: DENY
      content_type_nosniff: true
      content_security_policy: \"default-src 'self'\"
      custom_request_headers: {{x-from-proxy: yes}}
      cors:
        allow_origins: ['https://ui.test']
        allow_methods: [GET, PUT]
        allow_headers: [x-token]
        max_age_s: 600
  to-https: {{redirect_scheme: {{scheme: https, permanent: true}}}}
  moved: {{redirect_regex: {{regex: '^http://old\\.test/(.*)', replacement: 'http://new.test/$1'}}}}
  api: {{strip_prefix: {{prefixes: [/api]}}}}
  pages: {{errors: {{status: ['500-599'], body: '<h1>sorry</h1>'}}}}
routes:
  - {{host: h.test, cluster: app, middlewares: [secure, pages]}}
  - {{host: s.test, cluster: app, middlewares: [to-https]}}
  - {{host: old.test, cluster: app, middlewares: [moved]}}
  - {{host: p.test, cluster: app, middlewares: [api]}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        let (s, h, _) = get_with(proxy.addr, "h.test", "/", &[("origin", "https://ui.test")]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            h["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["content-security-policy"], "default-src 'self'");
        assert_eq!(h["access-control-allow-origin"], "https://ui.test");
        assert_eq!(app.last().headers["x-from-proxy"], "yes");
        let (_, h, _) = get_with(
            proxy.addr,
            "h.test",
            "/",
            &[("origin", "https://evil.test")],
        )
        .await;
        assert!(!h.contains_key("access-control-allow-origin"));

        // Preflight answered by the proxy, never forwarded.
        let before = app.count();
        let req = Request::options("/x")
            .header("host", "h.test")
            .header("origin", "https://ui.test")
            .header("access-control-request-method", "PUT")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (s, h, _) = send(proxy.addr, req).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(h["access-control-allow-methods"], "GET, PUT");
        assert_eq!(h["access-control-allow-headers"], "x-token");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(app.count(), before);

        // Upstream 5xx replaced by the page; headers still added.
        let (s, h, body) = get(proxy.addr, "h.test", "/status/503").await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "<h1>sorry</h1>")
        );
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["x-frame-options"], "DENY");
        let (s, _, body) = get(proxy.addr, "h.test", "/status/404").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_ne!(body, "<h1>sorry</h1>");

        let (s, h, _) = get(proxy.addr, "s.test", "/a?b=1").await;
        assert_eq!(s, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(h["location"], "https://s.test/a?b=1");
        let (s, h, _) = get(proxy.addr, "old.test", "/x/y").await;
        assert_eq!(s, StatusCode::FOUND);
        assert_eq!(h["location"], "http://new.test/x/y");

        let (s, _, _) = get(proxy.addr, "p.test", "/api/v1/items?q=1").await;
        assert_eq!(s, StatusCode::OK);
        let seen = app.last();
        assert_eq!(seen.path, "/v1/items?q=1");
        assert_eq!(seen.headers["x-forwarded-prefix"], "/api");
    });
}

#[test]
fn rate_limit_allows_the_configured_rate_under_load() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let config = format!(
            "{HEAD}middlewares:
  rl: {{rate_limit: {{average: 50, period_ms: 1000, burst: 20, key: route}}}}
routes:
  - {{host: a.test, cluster: app, middlewares: [rl]}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        // Eight clients flat out for a fixed window: more than 50 requests/s arrive, so what
        // passes is what the limiter allows (the burst covers gaps between arrivals).
        let window = Duration::from_secs(4);
        let start = Instant::now();
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let addr = proxy.addr;
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    while start.elapsed() < window {
                        statuses.extend(keep_alive(addr, "a.test", "/", 50, |_| Vec::new()).await);
                    }
                    statuses
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for c in clients {
            statuses.extend(c.await.expect("client"));
        }
        let elapsed = start.elapsed().as_secs_f64();
        let allowed = statuses.iter().filter(|s| **s == StatusCode::OK).count() as f64;
        let limited = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count() as f64;
        assert_eq!(allowed + limited, statuses.len() as f64, "only 200 and 429");
        assert!(
            limited > allowed,
            "the load exceeds the limit ({allowed} ok, {limited} limited)"
        );
        // The burst plus 50 per second over the window.
        let expected = 20.0 + 50.0 * elapsed;
        let ratio = allowed / expected;
        assert!(
            (0.95..=1.05).contains(&ratio),
            "allowed {allowed} of expected {expected:.0} (ratio {ratio:.3})"
        );
    });
}

#[test]
fn rate_limit_by_header_answers_429_with_retry_after() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let config = format!(
            "{HEAD}middlewares:
  rl: {{rate_limit: {{average: 1, period_ms: 60000, burst: 2, key: {{header: x-api-key}}}}}}
routes:
  - {{host: a.test, cluster: app, middlewares: [rl]}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        let key = |k: &'static str| move |_| vec![("x-api-key".to_string(), k.to_string())];
        let a = keep_alive(proxy.addr, "a.test", "/", 3, key("a")).await;
        assert_eq!(
            a,
            [
                StatusCode::OK,
                StatusCode::OK,
                StatusCode::TOO_MANY_REQUESTS
            ]
        );
        let b = keep_alive(proxy.addr, "a.test", "/", 2, key("b")).await;
        assert_eq!(
            b,
            [StatusCode::OK, StatusCode::OK],
            "another key has its own bucket"
        );
        let (s, h, body) = get_with(proxy.addr, "a.test", "/", &[("x-api-key", "a")]).await;
        assert_eq!(
            (s, body.as_str()),
            (StatusCode::TOO_MANY_REQUESTS, "too many requests\n")
        );
        let retry: u64 = h["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "retry-after {retry}");
        assert_eq!(app.count(), 4);
    });
}

/// Sends `n` pipelined GETs (batches of 250 per write) on one connection, each with its own
/// `X-Forwarded-For` from `ip(i)`; returns the statuses. Pipelining keeps the client's cost
/// per request small, so the proxy is what the flood measures.
async fn pipelined_flood(
    addr: std::net::SocketAddr,
    n: usize,
    ip: impl Fn(usize) -> std::net::Ipv4Addr,
) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut statuses = Vec::with_capacity(n);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < n {
        let batch = (n - sent).min(250);
        let mut out = String::new();
        for i in sent..sent + batch {
            out.push_str(&format!(
                "GET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-for: {}\r\n\r\n",
                ip(i)
            ));
        }
        stream.write_all(out.as_bytes()).await.expect("write");
        sent += batch;
        let want = statuses.len() + batch;
        while statuses.len() < want {
            // One response: head, then a Content-Length body.
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    statuses.push(status);
                    buf.drain(..end + 4 + len);
                    continue;
                }
            }
            let got = stream.read(&mut chunk).await.expect("read");
            assert!(
                got > 0,
                "proxy closed the connection after {} answers",
                statuses.len()
            );
            buf.extend_from_slice(&chunk[..got]);
        }
    }
    statuses
}

#[test]
fn a_flood_of_client_addresses_keeps_the_tracked_keys_bounded() {
    mt().block_on(async {
        let app = Upstream::start("app").await;
        let config = format!(
            "{HEAD}trusted_proxies: ['127.0.0.1']
middlewares:
  rl: {{rate_limit: {{average: 1, period_ms: 3600000, burst: 5, max_keys: 2000}}}}
routes:
  - {{host: a.test, cluster: app, middlewares: [rl]}}
  - {{host: open.test, cluster: app}}
clusters:
  app: {{servers: [{{address: '{}'}}]}}
",
            app.addr
        );
        let proxy = Proxy::start(&config);
        // 100k distinct addresses, forwarded by the trusted loopback peer.
        const TOTAL: usize = 100_000;
        let clients: Vec<_> = (0..4usize)
            .map(|c| {
                let addr = proxy.addr;
                tokio::spawn(async move {
                    pipelined_flood(addr, TOTAL / 4, move |i| {
                        std::net::Ipv4Addr::from(0x0a00_0000 + (c * TOTAL / 4 + i) as u32)
                    })
                    .await
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for c in clients {
            statuses.extend(c.await.expect("client"));
        }
        assert_eq!(statuses.len(), TOTAL, "every request answered");
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "only 200 and 429"
        );
        let tracked = proxy
            .metric("itsup_proxy_rate_limit_tracked_keys{middleware=\"rl\"}")
            .await;
        assert!(tracked > 0.0 && tracked <= 2000.0, "tracked keys {tracked}");
        // Every bucket holds its address for an hour, so the store fills; the flood beyond
        // it shares the overflow bucket and is limited as one client.
        let overflow = proxy
            .metric("itsup_proxy_rate_limit_overflow_total{middleware=\"rl\"}")
            .await;
        assert!(overflow >= (TOTAL - 2000) as f64, "overflow {overflow}");
        let limited = statuses.iter().filter(|s| **s == 429).count();
        assert!(limited > TOTAL * 9 / 10, "limited {limited}");
        // Still serving.
        let (s, _, _) = get(proxy.addr, "open.test", "/").await;
        assert_eq!(s, StatusCode::OK);
    });
}
