//! `itsup proxy` operations against real local upstreams: health checks, passive ejection and
//! circuit breaker, admin API, hot reload (under load, invalid file, WebSocket), metrics,
//! access log, h2c and graceful shutdown.

mod proxy_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proxy_support::*;

fn server_field(
    servers: &serde_json::Value,
    address: std::net::SocketAddr,
    field: &str,
) -> serde_json::Value {
    servers
        .as_array()
        .and_then(|list| list.iter().find(|s| s["address"] == address.to_string()))
        .map(|s| s[field].clone())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn active_health_checks_take_servers_down_and_up() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c:\n    lb: round_robin\n    servers: [{{address: '{}'}}, {{address: '{}'}}]\n    health_check: {{path: /health, interval_ms: 100, timeout_ms: 200, rise: 2, fall: 2}}\n",
            a.addr, b.addr
        );
        let proxy = Proxy::start(&config);
        a.healthy.store(false, Ordering::SeqCst);
        proxy
            .wait_for("a marked unhealthy", Duration::from_secs(5), || async {
                server_field(&proxy.servers().await, a.addr, "healthy") == false
            })
            .await;
        let before = a.count();
        for _ in 0..6 {
            assert_eq!(get(proxy.addr, "h.test", "/").await.2, "b");
        }
        assert_eq!(a.count(), before, "no traffic to an unhealthy server");
        assert_eq!(proxy.metric(&format!("itsup_proxy_upstream_up{{cluster=\"c\",server=\"{}\"}}", a.addr)).await, 0.0);
        a.healthy.store(true, Ordering::SeqCst);
        proxy
            .wait_for("a back up", Duration::from_secs(5), || async {
                server_field(&proxy.servers().await, a.addr, "healthy") == true
            })
            .await;
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(get(proxy.addr, "h.test", "/").await.2);
        }
        assert!(got.contains(&"a".to_string()), "{got:?}");
    });
}

#[test]
fn passive_ejection_opens_the_circuit_with_backoff() {
    mt().block_on(async {
        let bad = Upstream::start("bad").await;
        let good = Upstream::start("good").await;
        bad.fail_all.store(true, Ordering::SeqCst);
        let config = format!(
            "{HEAD}routes: [{{cluster: c, retries: 0}}]\nclusters:\n  c:\n    lb: round_robin\n    servers: [{{address: '{}'}}, {{address: '{}'}}]\n    circuit_breaker: {{consecutive_failures: 2, base_ejection_ms: 400, max_ejection_ms: 5000}}\n",
            bad.addr, good.addr
        );
        let proxy = Proxy::start(&config);
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(get(proxy.addr, "p.test", "/").await.0.as_u16());
        }
        assert_eq!(statuses, vec![500, 200, 500, 200], "5xx are passed through, not hidden");
        let servers = proxy.servers().await;
        assert_eq!(server_field(&servers, bad.addr, "circuit"), "open");
        let bad_hits = bad.count();
        for _ in 0..5 {
            assert_eq!(get(proxy.addr, "p.test", "/").await.2, "good");
        }
        assert_eq!(bad.count(), bad_hits, "ejected server gets nothing");
        // After the ejection one probe goes through (half-open); it fails, so the circuit
        // re-opens for twice as long.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let mut seen_bad = 0;
        for _ in 0..4 {
            if get(proxy.addr, "p.test", "/").await.0 == StatusCode::INTERNAL_SERVER_ERROR {
                seen_bad += 1;
            }
        }
        assert_eq!(seen_bad, 1, "exactly one probe");
        let ejected = server_field(&proxy.servers().await, bad.addr, "ejected_ms").as_u64().unwrap_or(0);
        assert!(ejected > 450 && ejected <= 800, "backoff doubled: {ejected}");
        // Recovery: the next probe succeeds and closes the circuit.
        bad.fail_all.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(850)).await;
        for _ in 0..4 {
            assert_eq!(get(proxy.addr, "p.test", "/").await.0, StatusCode::OK);
        }
        assert_eq!(server_field(&proxy.servers().await, bad.addr, "circuit"), "closed");
    });
}

#[test]
fn all_down_policy_fail_open_or_503() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        a.healthy.store(false, Ordering::SeqCst);
        let hc = "health_check: {path: /health, interval_ms: 100, rise: 1, fall: 1}";
        let config = format!(
            "{HEAD}routes:\n  - {{path: /open, cluster: open}}\n  - {{path: /closed, cluster: closed}}\nclusters:\n  open: {{when_all_down: fail_open, {hc}, servers: [{{address: '{}'}}]}}\n  closed: {{when_all_down: unavailable, {hc}, servers: [{{address: '{}'}}]}}\n",
            a.addr, a.addr
        );
        let proxy = Proxy::start(&config);
        proxy
            .wait_for("both marked down", Duration::from_secs(5), || async {
                proxy.servers().await.as_array().is_some_and(|l| l.iter().all(|s| s["healthy"] == false))
            })
            .await;
        let (s, _, body) = get(proxy.addr, "d.test", "/closed").await;
        assert_eq!((s, body.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "no server available\n"));
        let (s, _, body) = get(proxy.addr, "d.test", "/open").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "a"));
    });
}

#[test]
fn admin_api_drains_and_restores_without_reload() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c: {{lb: round_robin, servers: [{{address: '{}'}}, {{address: '{}'}}]}}\n",
            a.addr, b.addr
        );
        let proxy = Proxy::start(&config);
        assert_eq!(proxy.set_state("c", a.addr, "drain").await, StatusCode::OK);
        assert_eq!(server_field(&proxy.servers().await, a.addr, "state"), "drain");
        for _ in 0..4 {
            assert_eq!(get(proxy.addr, "a.test", "/").await.2, "b");
        }
        assert_eq!(proxy.set_state("c", a.addr, "ready").await, StatusCode::OK);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(get(proxy.addr, "a.test", "/").await.2);
        }
        assert!(got.contains(&"a".to_string()));
        assert_eq!(proxy.metric("itsup_proxy_reload_success_total").await, 0.0, "no reload involved");
        assert_eq!(proxy.set_state("c", "127.0.0.1:1".parse().expect("addr"), "drain").await, StatusCode::NOT_FOUND);
        assert_eq!(proxy.set_state("c", a.addr, "sleepy").await, StatusCode::BAD_REQUEST);
        let (s, _, body) = get(proxy.admin, "admin", "/healthz").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "ok\n"));
    });
}

#[test]
fn reload_under_load_loses_no_request_and_invalid_files_are_rejected() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let cfg = |servers: &str| format!("{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c: {{lb: round_robin, servers: [{servers}]}}\n");
        let only_a = cfg(&format!("{{address: '{}'}}", a.addr));
        let both = cfg(&format!("{{address: '{}'}}, {{address: '{}'}}", a.addr, b.addr));
        let proxy = Proxy::start(&only_a);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (client, ok, failed, addr) = (client.clone(), ok.clone(), failed.clone(), proxy.addr);
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let req = Request::get(format!("http://{addr}/")).body(Full::new(Bytes::new())).expect("req");
                    match client.request(req).await {
                        Ok(resp) if resp.status() == StatusCode::OK => {
                            let _ = resp.into_body().collect().await;
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => failed.lock().expect("lock").push(resp.status().to_string()),
                        Err(e) => failed.lock().expect("lock").push(e.to_string()),
                    }
                }
            }));
        }
        for i in 0..6 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            proxy.write_config(if i % 2 == 0 { &both } else { &only_a });
        }
        for w in workers {
            w.await.expect("worker");
        }
        assert!(failed.lock().expect("lock").is_empty(), "failed: {:?}", failed.lock().expect("lock"));
        assert!(ok.load(Ordering::Relaxed) > 100);
        assert!(proxy.metric("itsup_proxy_reload_success_total").await >= 5.0);
        assert!(b.count() > 0, "the added server took traffic");

        // Invalid files: the running config stays and the failure is counted.
        let failures = proxy.metric("itsup_proxy_reload_failure_total").await;
        proxy.write_config("listeners: [}\n");
        proxy
            .wait_for("failure counted", Duration::from_secs(5), || async {
                proxy.metric("itsup_proxy_reload_failure_total").await > failures
            })
            .await;
        proxy.write_config(&format!("{HEAD}routes: [{{cluster: nope}}]\nclusters: {{}}\n"));
        proxy
            .wait_for("second failure counted", Duration::from_secs(5), || async {
                proxy.metric("itsup_proxy_reload_failure_total").await > failures + 1.0
            })
            .await;
        assert_eq!(get(proxy.addr, "r.test", "/").await.0, StatusCode::OK, "still serving the old config");
        // The log line travels through a pipe and a reader thread: give it a moment.
        proxy
            .wait_for("rejection logged", Duration::from_secs(5), || async {
                proxy.stderr.lock().expect("lock").join("\n").contains("unknown cluster `nope`")
            })
            .await;
        let log = proxy.stderr.lock().expect("lock").join("\n");
        assert!(log.contains("reload rejected") && log.contains("unknown cluster `nope`"), "{log}");
    });
}

#[test]
fn websocket_survives_reload() {
    mt().block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let a = Upstream::start("a").await;
        let b = Upstream::start("b").await;
        let cfg = |addr| format!("{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c: {{servers: [{{address: '{addr}'}}]}}\n");
        let proxy = Proxy::start(&cfg(a.addr));
        let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", proxy.addr)).await.expect("ws connect");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws.send(Message::text("before")).await.expect("send");
        assert_eq!(ws.next().await.expect("msg").expect("ok").into_text().expect("text").as_str(), "before");
        assert_eq!(proxy.metric("itsup_proxy_active_tunnels").await, 1.0);

        // The new config no longer even has server a; the tunnel does not care.
        proxy.write_config(&cfg(b.addr));
        proxy
            .wait_for("reload", Duration::from_secs(5), || async { proxy.metric("itsup_proxy_reload_success_total").await >= 1.0 })
            .await;
        proxy.signal("HUP");
        ws.send(Message::text("after")).await.expect("send");
        assert_eq!(ws.next().await.expect("msg").expect("ok").into_text().expect("text").as_str(), "after");
        assert_eq!(get(proxy.addr, "w.test", "/").await.2, "b", "new requests use the new config");
        ws.close(None).await.expect("close");
    });
}

#[test]
fn metrics_healthz_status_page_and_access_log() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let logs = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "{HEAD}access_log: {{target: stdout}}\nroutes: [{{name: main, cluster: c}}]\nclusters:\n  c: {{servers: [{{address: '{}'}}]}}\n",
            a.addr
        );
        let proxy = Proxy::start(&config);
        for path in ["/one", "/status/503"] {
            get(proxy.addr, "m.test", path).await;
        }
        let (_, _, metrics) = get(proxy.admin, "admin", "/metrics").await;
        for needle in [
            "itsup_proxy_requests_total{route=\"main\",status=\"200\"} 1",
            "itsup_proxy_requests_total{route=\"main\",status=\"503\"} 1",
            "itsup_proxy_request_duration_seconds_count{route=\"main\"} 2",
            "itsup_proxy_active_connections",
            "itsup_proxy_reload_failure_total 0",
        ] {
            assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
        }
        assert!(metrics.contains(&format!("itsup_proxy_upstream_up{{cluster=\"c\",server=\"{}\"}} 1", a.addr)));
        let (s, h, page) = get(proxy.admin, "admin", "/status").await;
        assert_eq!(s, StatusCode::OK);
        assert!(h.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"text/html")));
        assert!(page.contains(&a.addr.to_string()) && page.contains("main"));

        proxy
            .wait_for("two access log lines", Duration::from_secs(5), || async { proxy.stdout.lock().expect("lock").len() >= 2 })
            .await;
        let lines = proxy.stdout.lock().expect("lock").clone();
        let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json line");
        for field in ["time", "client", "method", "host", "path", "status", "bytes", "duration", "upstream", "route", "retries"] {
            assert!(first.get(field).is_some(), "missing {field} in {first}");
        }
        assert_eq!(first["path"], "/one");
        assert_eq!(first["status"], 200);
        assert_eq!(first["bytes"], 1);
        assert_eq!(first["route"], "main");
        assert_eq!(first["upstream"], a.addr.to_string());

        // Switch to hourly files with 50% sampling.
        proxy.write_config(&config.replace(
            "access_log: {target: stdout}",
            &format!("access_log: {{target: files, dir: '{}', sample_rate: 0.5}}", logs.path().display()),
        ));
        proxy
            .wait_for("reload", Duration::from_secs(5), || async { proxy.metric("itsup_proxy_reload_success_total").await >= 1.0 })
            .await;
        for _ in 0..10 {
            get(proxy.addr, "m.test", "/f").await;
        }
        let count_lines = || {
            std::fs::read_dir(logs.path())
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| {
                            let n = e.file_name().to_string_lossy().into_owned();
                            n.starts_with("log_") && n.ends_with(".log") && n.len() == "log_2024_01_01_00.log".len()
                        })
                        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().count())
                        .sum::<usize>()
                })
                .unwrap_or(0)
        };
        proxy.wait_for("5 sampled lines in an hourly file", Duration::from_secs(5), || async { count_lines() == 5 }).await;
    });
}

#[test]
fn h2c_clients_and_h2c_upstreams() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let config = format!(
            "{HEAD}routes:\n  - {{path: /h1, cluster: h1}}\n  - {{path: /h2, cluster: h2}}\nclusters:\n  h1: {{servers: [{{address: '{}'}}]}}\n  h2: {{protocol: h2c, servers: [{{address: '{}'}}]}}\n",
            a.addr, a.addr
        );
        let proxy = Proxy::start(&config);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
        for path in ["/h1", "/h2/x"] {
            let req = Request::get(format!("http://{}{path}", proxy.addr)).body(Full::new(Bytes::new())).expect("req");
            let resp = client.request(req).await.expect("h2c response");
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            assert_eq!(resp.status(), StatusCode::OK);
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"a");
        }
        let seen = a.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].path, "/h2/x");
    });
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let config = format!(
            "{HEAD}routes: [{{cluster: c}}]\nclusters:\n  c: {{servers: [{{address: '{}'}}]}}\n",
            a.addr
        );
        let mut proxy = Proxy::start(&config);
        let addr = proxy.addr;
        let slow = tokio::spawn(async move { get(addr, "g.test", "/slow/600").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        proxy.signal("TERM");
        let (s, _, body) = slow.await.expect("join");
        assert_eq!((s, body.as_str()), (StatusCode::OK, "a"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = proxy.child.try_wait().expect("wait") {
                assert!(status.success(), "{status:?}");
                break;
            }
            assert!(Instant::now() < deadline, "proxy did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// `GET` over the admin Unix socket (HTTP/1.1 through hyper's client connection).
async fn unix_request(
    path: &std::path::Path,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, String) {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect admin socket");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "admin")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn admin_api_on_a_unix_socket_replaces_a_stale_one() {
    mt().block_on(async {
        let a = Upstream::start("a").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        // A socket file left by a proxy that was killed: the next one must take its place.
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
        let config = format!(
            "listeners: [{{address: \"127.0.0.1:0\"}}]\nadmin: {{address: \"127.0.0.1:0\", socket: '{}'}}\nroutes: [{{cluster: c}}]\nclusters:\n  c: {{servers: [{{address: '{}'}}]}}\n",
            socket.display(),
            a.addr
        );
        let proxy = Proxy::start(&config);
        proxy
            .wait_for("the admin socket", Duration::from_secs(10), || {
                let socket = socket.clone();
                async move { tokio::net::UnixStream::connect(&socket).await.is_ok() }
            })
            .await;
        let (status, body) = unix_request(&socket, "GET", "/servers", "").await;
        assert_eq!(status, StatusCode::OK);
        let servers: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(server_field(&servers, a.addr, "state"), "ready");
        let uri = format!("/servers/c/{}", a.addr);
        let (status, _) = unix_request(&socket, "PUT", &uri, r#"{"state":"drain"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(server_field(&proxy.servers().await, a.addr, "state"), "drain", "same state as the TCP admin API");
    });
}

#[test]
fn admin_socket_must_be_an_absolute_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.yml");
    std::fs::write(
        &path,
        "listeners: [{address: \"127.0.0.1:0\"}]\nadmin: {address: \"127.0.0.1:0\", socket: run/admin.sock}\nroutes: [{cluster: c}]\nclusters:\n  c: {servers: [{address: '127.0.0.1:1'}]}\n",
    )
    .expect("write");
    let out = std::process::Command::new(itsup_bin())
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("admin.socket: `run/admin.sock` is not an absolute path"),
        "{err}"
    );
}
