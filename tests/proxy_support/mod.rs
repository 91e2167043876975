//! Shared harness for the `proxy_*` integration tests: real upstream servers (hyper, plus raw
//! TCP listeners that misbehave) on 127.0.0.1 ephemeral ports, and the real `itsup proxy`
//! binary started on a config written to a temp dir.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "../shared/support.rs"]
mod support;
pub use support::*;

#[path = "../shared/insecure_tls.rs"]
pub mod insecure_tls;
#[path = "../shared/pebble.rs"]
pub mod pebble;
#[path = "../shared/redis.rs"]
pub mod redis;
pub mod tls;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

/// A hyper upstream (HTTP/1.1 and h2c). Paths: `/slow/<ms>` sleeps, `/status/<code>` answers
/// that code, `/health` answers 200 or 503 per `healthy`, `/ws` echoes WebSocket messages,
/// anything else answers 200 with the server's name.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub healthy: Arc<AtomicBool>,
    pub fail_all: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let healthy = Arc::new(AtomicBool::new(true));
        let fail_all = Arc::new(AtomicBool::new(false));
        let (n, s, h, f) = (
            name.to_string(),
            seen.clone(),
            healthy.clone(),
            fail_all.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, s, h, f) = (n.clone(), s.clone(), h.clone(), f.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        upstream_handler(n.clone(), s.clone(), h.clone(), f.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_string(),
            addr,
            seen,
            healthy,
            fail_all,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.path != "/health")
            .count()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|s| s.path != "/health")
            .cloned()
            .expect("a request")
    }
}

async fn upstream_handler(
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<AtomicBool>,
    fail_all: Arc<AtomicBool>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/ws" {
        return Ok(websocket_echo(&mut req));
    }
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let method = req.method().to_string();
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().expect("lock").push(Seen {
        method,
        path: uri,
        headers,
        body,
    });
    let mut status = StatusCode::OK;
    if path == "/health" && !healthy.load(Ordering::SeqCst) {
        status = StatusCode::SERVICE_UNAVAILABLE;
    }
    if fail_all.load(Ordering::SeqCst) && path != "/health" {
        status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    }
    let mut resp = Response::new(Full::new(Bytes::from(name.clone())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().expect("header"));
    Ok(resp)
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return Response::new(Full::new(Bytes::from_static(b"not a websocket")));
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("connection", "upgrade".parse().expect("v"));
    h.insert("upgrade", "websocket".parse().expect("v"));
    h.insert("sec-websocket-accept", key.parse().expect("v"));
    resp
}

/// A TCP server that reads whatever arrives, then closes without answering. Counts
/// connections and keeps every byte it received.
pub struct BlackHole {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub received: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    // Read until the request (head and a small body) has arrived, then hang up.
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf))
                            .await
                    {
                        r.lock().expect("lock").extend_from_slice(&buf[..n]);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    drop(stream);
                });
            }
        });
        BlackHole {
            addr,
            connections,
            received,
            task,
        }
    }
}

/// What a [`Scripted`] upstream does with one request.
pub enum Act {
    /// Write these bytes and keep the connection for the next request.
    Reply(Vec<u8>),
    /// Write these bytes, then close.
    ReplyClose(Vec<u8>),
    /// Close without a byte of answer.
    Close,
}

/// A raw TCP upstream answering from a script: `(connection number, request number on that
/// connection, request head) -> Act`. Reads request heads only (the direct path sends
/// bodiless requests). Counts connections and requests.
pub struct Scripted {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Script = dyn Fn(usize, usize, &str) -> Act + Send + Sync;

impl Scripted {
    pub async fn start(
        script: impl Fn(usize, usize, &str) -> Act + Send + Sync + 'static,
    ) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn_no = c.fetch_add(1, Ordering::SeqCst);
                let (r, script) = (r.clone(), script.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut req_no = 0;
                    loop {
                        let Some(end) = find(&buf, b"\r\n\r\n") else {
                            let mut chunk = [0u8; 4096];
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        r.fetch_add(1, Ordering::SeqCst);
                        let act = script(conn_no, req_no, &String::from_utf8_lossy(&head));
                        req_no += 1;
                        match act {
                            Act::Reply(bytes) => {
                                if stream.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Act::ReplyClose(bytes) => {
                                let _ = stream.write_all(&bytes).await;
                                return;
                            }
                            Act::Close => return,
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            connections,
            requests,
            task,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The real binary, running on a config in a temp dir.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    /// The TLS listeners, in config order.
    pub tls: Vec<SocketAddr>,
    /// The `tcp:` listeners of ports of their own, then the `udp:` ports, in config order.
    pub l4: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub stdout: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The runtime each proxy test runs on (two workers: the proxy is another process, the
/// upstreams and clients share these).
pub fn mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Listener and admin lines every test config needs.
pub const HEAD: &str =
    "listeners: [{address: \"127.0.0.1:0\"}]\nadmin: {address: \"127.0.0.1:0\"}\n";

impl Proxy {
    pub fn start(config: &str) -> Proxy {
        Self::start_with(config, &[])
    }

    pub fn start_with(config: &str, extra_args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("proxy.yml");
        std::fs::write(&path, config).expect("write config");
        // One thread unless the test asks for more (the benchmark's setting, and the one
        // where socket writes are batched).
        let threads: &[&str] = if extra_args.contains(&"--threads") {
            &[]
        } else {
            &["--threads", "1"]
        };
        let mut child = Command::new(itsup_bin())
            .arg("proxy")
            .arg("--config")
            .arg(&path)
            .args(threads)
            .args(extra_args)
            .env("ITSUP_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn itsup proxy");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err_pipe = child.stderr.take().expect("stderr");
        let err_lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                if let Some(a) = line
                    .strip_prefix("itsup proxy: listening on ")
                    .and_then(|rest| rest.strip_suffix(" (TLS)"))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send((2, a));
                }
                if let Some(a) = line
                    .strip_prefix("itsup proxy: listening on ")
                    .and_then(|rest| {
                        rest.strip_suffix(" (TCP)")
                            .or_else(|| rest.strip_suffix(" (UDP)"))
                    })
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send((3, a));
                }
                for (prefix, kind) in [
                    ("itsup proxy: listening on ", 0),
                    ("itsup proxy: admin on ", 1),
                ] {
                    if let Some(a) = line
                        .strip_prefix(prefix)
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send((kind, a));
                    }
                }
                err_lines.lock().expect("lock").push(line);
            }
        });
        let out_pipe = child.stdout.take().expect("stdout");
        let out_lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                out_lines.lock().expect("lock").push(line);
            }
        });
        let (mut addr, mut admin, mut tls, mut l4) = (None, None, Vec::new(), Vec::new());
        // Listeners are bound in config order, the admin API last.
        while admin.is_none() {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok((0, a)) => addr = Some(a),
                Ok((2, a)) => tls.push(a),
                Ok((3, a)) => l4.push(a),
                Ok((_, a)) => admin = Some(a),
                Err(_) => panic!(
                    "proxy did not start; stderr: {:?}",
                    stderr.lock().expect("lock")
                ),
            }
        }
        Proxy {
            child,
            addr: addr.or_else(|| tls.first().copied()).expect("a listener"),
            tls,
            l4,
            admin: admin.expect("admin"),
            dir,
            config: path,
            stderr,
            stdout,
        }
    }

    /// Rewrites the config atomically (write + rename, like editors do).
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".proxy.yml.tmp");
        std::fs::write(&tmp, config).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    pub async fn metric(&self, name: &str) -> f64 {
        let (_, _, body) = get(self.admin, "admin", "/metrics").await;
        body.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub async fn servers(&self) -> serde_json::Value {
        let (_, _, body) = get(self.admin, "admin", "/servers").await;
        serde_json::from_str(&body).expect("servers json")
    }

    pub async fn set_state(&self, cluster: &str, address: SocketAddr, state: &str) -> StatusCode {
        let req = Request::put(format!("/servers/{cluster}/{address}"))
            .header("host", "admin")
            .body(Full::new(Bytes::from(format!("{{\"state\":\"{state}\"}}"))))
            .expect("request");
        send(self.admin, req).await.0
    }

    /// Waits until `check` holds, polling; panics with `what` after `limit`.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; stderr: {:?}",
            self.stderr.lock().expect("lock")
        );
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn send(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> (StatusCode, hyper::HeaderMap, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, hyper::HeaderMap, String) {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    send(addr, req).await
}

/// Writes raw bytes and reads the answer until the server closes or `limit` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `n` GETs on one keep-alive HTTP/1.1 connection, each with `headers(i)`; returns the
/// statuses in order (a connection the proxy closes is reopened).
pub async fn keep_alive(
    addr: SocketAddr,
    host: &str,
    path: &str,
    n: usize,
    headers: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<StatusCode> {
    let mut out = Vec::with_capacity(n);
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    for i in 0..n {
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { break };
        let mut req = Request::get(path).header("host", host);
        for (k, v) in headers(i) {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        match s.send_request(req).await {
            Ok(resp) => {
                out.push(resp.status());
                let _ = resp.into_body().collect().await;
            }
            Err(_) => sender = None,
        }
    }
    out
}
