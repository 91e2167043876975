//! Shared fixtures of the `itsup agent` integration tests: the real binary as a child process,
//! real tonic gRPC health servers (plaintext, TLS, slow, without the health service), and a
//! client speaking the agent-check line protocol.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::transport::server::Connected;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;

#[path = "../shared/support.rs"]
mod support;
pub use support::*;

/// The agent binary running as a child process; killed on drop.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    /// `None` when the metrics port could not be bound.
    pub metrics: Option<SocketAddr>,
    /// Every stderr line so far (JSON log records).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    /// Starts `itsup agent` on ephemeral loopback ports with `extra` arguments.
    pub fn start(extra: &[&str]) -> Agent {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        // ITSUP_TEST_BIN runs another build of the binary (the benchmark uses it to pin one build).
        let mut cmd = Command::new(itsup_bin());
        cmd.arg("agent")
            .args(["--log-format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--metrics-listen") {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn itsup agent");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(found) = listening(&line) {
                        let _ = tx.send(found);
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        let (addr, metrics) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent did not report listening; stderr:\n{}",
                    logs.lock().expect("logs").join("\n")
                );
            }
        };
        Agent {
            child,
            addr,
            metrics,
            logs,
        }
    }

    pub fn logs_text(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let record: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = record.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let addr = fields.get("agent_addr")?.as_str()?.parse().ok()?;
    let metrics = fields
        .get("metrics_addr")
        .and_then(|m| m.as_str())
        .and_then(|m| m.parse().ok());
    Some((addr, metrics))
}

/// Sends one request line and reads one reply line (without its newline), all within 5 s.
pub async fn ask(agent: SocketAddr, line: &str) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(agent).await.expect("connect to agent");
        stream.write_all(line.as_bytes()).await.expect("send");
        let mut reader = tokio::io::BufReader::new(stream);
        let mut reply = String::new();
        reader.read_line(&mut reply).await.expect("read reply");
        reply.trim_end_matches('\n').to_owned()
    })
    .await
    .unwrap_or_else(|_| panic!("no reply to {line:?} within 5 s"))
}

/// Polls `ask` until the reply equals `want` (bounded); returns the last reply.
pub async fn ask_until(agent: SocketAddr, line: &str, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let reply = ask(agent, line).await;
        if reply == want || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real tonic gRPC server; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Stops the server and waits until its port is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

fn spawn_router(router: tonic::transport::server::Router, listener: TcpListener) -> Backend {
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    Backend {
        addr,
        stop: Some(stop_tx),
        task,
    }
}

/// Standard tonic-health server over h2c; the reporter flips statuses.
pub async fn health_backend() -> (Backend, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let (listener, _) = loopback().await;
    let router = tonic::transport::Server::builder().add_service(service);
    (spawn_router(router, listener), reporter)
}

/// A gRPC server without the health service (every call is UNIMPLEMENTED).
pub async fn unimplemented_backend() -> Backend {
    let (listener, _) = loopback().await;
    let router = tonic::transport::Server::builder().add_routes(tonic::service::Routes::default());
    spawn_router(router, listener)
}

/// Health service that answers SERVING after `delay`.
struct SlowHealth {
    delay: Duration,
}

type WatchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Health for SlowHealth {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        Ok(tonic::Response::new(HealthCheckResponse {
            status: tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "watch is not used by the agent",
        ))
    }
}

pub async fn slow_backend(delay: Duration) -> Backend {
    let (listener, _) = loopback().await;
    let router =
        tonic::transport::Server::builder().add_service(HealthServer::new(SlowHealth { delay }));
    spawn_router(router, listener)
}

/// Generated CA and a leaf for `localhost` signed by it.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "itsup agent test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// TLS stream that tonic's server accepts as a connection.
pub struct TlsIo(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// tonic-health server behind TLS with the given certificate (ALPN h2).
pub async fn tls_health_backend(pki: &Pki) -> (Backend, HealthReporter) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).expect("cert pem")];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).expect("key pem");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let (reporter, service) = tonic_health::server::health_reporter();
    let (listener, addr) = loopback().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<TlsIo, std::io::Error>>(16);
    let accept_task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // Handshake failures (the agent distrusting us) are part of the tests.
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await
                {
                    let _ = tx.send(Ok(TlsIo(tls))).await;
                }
            });
        }
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await;
        accept_task.abort();
    });
    (
        Backend {
            addr,
            stop: Some(stop_tx),
            task,
        },
        reporter,
    )
}

/// Sets the status of `service` ("" is the whole server).
pub async fn set_status(reporter: &HealthReporter, service: &str, serving: bool) {
    reporter
        .set_service_status(
            service,
            if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            },
        )
        .await;
}

/// Fetches the agent's `/metrics` text with a raw HTTP/1.1 request.
pub async fn scrape(metrics: SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(metrics).await.expect("connect metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut body = String::new();
        stream.read_to_string(&mut body).await.expect("read");
        body
    })
    .await
    .expect("metrics within 5 s")
}

/// Value of one exposition line `name{labels} value`, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
