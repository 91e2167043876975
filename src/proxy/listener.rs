//! Client side: accept loop and per-connection serving (HTTP/1.1 keep-alive and h2c on the
//! same port via hyper-util's auto builder), idle timeout, and graceful shutdown.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::config::ProxyConfig;
use super::forward;
use super::headers::PeerInfo;
use super::state::Shared;

/// Connection settings fixed at startup.
#[derive(Clone)]
pub struct ConnSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

impl ConnSettings {
    pub fn from_config(cfg: &ProxyConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(cfg.timeouts.request_header_ms),
            idle_timeout: Duration::from_millis(cfg.timeouts.idle_ms),
            max_header_bytes: cfg.limits.max_header_bytes,
        }
    }
}

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: ConnSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32)
        .keep_alive_interval(Some(settings.idle_timeout / 2));
    let builder = Arc::new(builder);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, shared.clone(), builder.clone(), settings.idle_timeout, shutdown.clone()));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    // Bumped on every read or write that moved bytes; the idle check compares it between
    // ticks, so the data path never reads a clock.
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        last: activity.clone(),
    });
    shared
        .metrics
        .active_connections
        .fetch_add(1, Ordering::Relaxed);
    shared
        .metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let svc_shared = shared.clone();
    let peer_info = Arc::new(PeerInfo::new(peer.ip()));
    // Boxed: hyper keeps a slot the size of the service future for every connection, and
    // the request future is large; boxing costs one allocation per request but keeps idle
    // keep-alive connections small.
    let svc = service_fn(move |req| {
        let shared = svc_shared.clone();
        let peer = peer_info.clone();
        Box::pin(async move { Ok::<_, Infallible>(forward::handle(shared, req, peer).await) })
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let period = (idle / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet_since = tokio::time::Instant::now();
    let mut closing = false;
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "client connection error");
                }
                break;
            }
            changed = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            now = tick.tick() => {
                let current = activity.load(Ordering::Relaxed);
                if current != seen {
                    seen = current;
                    quiet_since = now;
                } else if now.duration_since(quiet_since) >= idle {
                    if closing {
                        // Asked politely one idle period ago and still silent: drop it.
                        break;
                    }
                    closing = true;
                    quiet_since = now;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    shared
        .metrics
        .active_connections
        .fetch_sub(1, Ordering::Relaxed);
}

/// A socket that counts the reads and writes that moved bytes, for the idle timeout.
struct Tracked {
    inner: TcpStream,
    last: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        // Only this connection's task writes it: a plain load and store, no locked add.
        let v = self.last.load(Ordering::Relaxed);
        self.last.store(v.wrapping_add(1), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
