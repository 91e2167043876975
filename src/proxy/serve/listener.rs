//! Client side: accept loop and per-connection serving, HTTP/1.1 keep-alive or h2c (prior
//! knowledge) on the same port. Timeouts and graceful shutdown come from the
//! [`Supervisor`](crate::proxy::runtime::supervisor) through the connection's [`ConnWatch`].

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::proxy::base::batch::Batched;
use crate::proxy::base::config::ProxyConfig;
use crate::proxy::base::headers::PeerInfo;
use crate::proxy::request::body::ProxyBody;
use crate::proxy::request::context::{ConnCtx, Edge};
use crate::proxy::request::forward;
use crate::proxy::runtime::state::Shared;
use crate::proxy::runtime::supervisor::{CLOSE, ConnWatch, GRACEFUL, Limits, Supervisor};

/// Connection settings fixed at startup.
#[derive(Clone)]
pub struct ConnSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub h2_max_concurrent_streams: u32,
}

impl ConnSettings {
    pub fn from_config(cfg: &ProxyConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(cfg.timeouts.request_header_ms),
            idle_timeout: Duration::from_millis(cfg.timeouts.idle_ms),
            max_header_bytes: cfg.limits.max_header_bytes,
            h2_max_concurrent_streams: cfg.limits.h2_max_concurrent_streams,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            header_ms: self.header_timeout.as_millis() as u64,
            idle_ms: self.idle_timeout.as_millis() as u64,
        }
    }
}

/// The HTTP/1 and HTTP/2 server settings every client connection uses.
pub(crate) struct Builders {
    pub(crate) h1: http1::Builder,
    pub(crate) h2: http2::Builder<TokioExecutor>,
}

/// Reset streams an HTTP/2 client may leave for the server to clean up before the
/// connection is closed with `ENHANCE_YOUR_CALM` (the rapid-reset defence, CVE-2023-44487).
const H2_MAX_PENDING_RESETS: usize = 20;

/// Streams the server itself may reset (malformed requests) before closing the connection.
const H2_MAX_LOCAL_RESETS: usize = 1024;

impl Builders {
    pub(crate) fn new(settings: &ConnSettings) -> Arc<Self> {
        let mut h1 = http1::Builder::new();
        // No hyper timer: the supervisor enforces the header timeout (hyper's would allocate
        // and register a timer for every request).
        h1.header_read_timeout(None)
            .max_buf_size(settings.max_header_bytes.max(8192))
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // The header list bound covers HPACK bombs and CONTINUATION floods: h2 counts the
        // decoded size and drops the connection past it.
        h2.timer(TokioTimer::new())
            .max_header_list_size(settings.max_header_bytes as u32)
            .max_concurrent_streams(settings.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(Some(H2_MAX_LOCAL_RESETS))
            .keep_alive_interval(Some(settings.idle_timeout / 2));
        Arc::new(Self { h1, h2 })
    }
}

pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: ConnSettings,
    supervisor: Arc<Supervisor>,
    mut shutdown: watch::Receiver<bool>,
    edge: Edge,
) {
    let builders = Builders::new(&settings);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, shared.clone(), builders.clone(), supervisor.clone(), edge));
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

/// Keeps `active_connections` right however the connection ends.
pub(crate) struct Active(pub(crate) Arc<Shared>);

impl Active {
    /// Counts a new client connection.
    pub(crate) fn start(shared: &Arc<Shared>) -> Self {
        shared
            .metrics
            .active_connections
            .fetch_add(1, Ordering::Relaxed);
        shared
            .metrics
            .connections_total
            .fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0
            .metrics
            .active_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    supervisor: Arc<Supervisor>,
    edge: Edge,
) {
    let _ = stream.set_nodelay(true);
    let _active = Active::start(&shared);
    let watch = Arc::new(ConnWatch::default());
    let _registration = supervisor.register(watch.clone());
    // Nothing is allocated for the protocol until the client sent its first bytes.
    let h2 = match supervised(&watch, is_h2_preface(&stream)).await {
        Some(Ok(h2)) => h2,
        Some(Err(e)) => {
            tracing::debug!(%peer, error = %e, "client connection error");
            return;
        }
        None => return,
    };
    let ctx =
        Arc::new(ConnCtx::new(shared, PeerInfo::new(peer.ip()), watch.clone()).with_edge(edge));
    let io = Tracked {
        inner: Batched::new(stream),
        watch: watch.clone(),
        prefix: None,
    };
    if h2 {
        // Boxed: the h2 connection state is large and rare; keeping it out of the common
        // HTTP/1 task keeps every idle keep-alive connection smaller.
        let shared = ctx.shared.clone();
        let svc =
            service_fn(move |req: hyper::Request<Incoming>| forward::handle(ctx.clone(), req));
        let conn = builders.h2.serve_connection(TokioIo::new(io), svc);
        if let Err(e) = Box::pin(drive(conn, &watch)).await {
            super::h2_goaway::count(&shared.metrics.h2_goaway, &e);
            tracing::debug!(%peer, error = %e, "client connection error");
        }
    } else if let Err(e) = serve_h1(io, ctx, &builders.h1).await {
        tracing::debug!(%peer, error = %e, "client connection error");
    }
}

/// Serves HTTP/1 requests on one client connection. Between requests a connection that stays
/// quiet is parked: hyper finishes without shutting the socket, its state (two 8 KiB
/// buffers, the request slot, about 20 KiB in all) is dropped, and a fresh hyper connection
/// starts when the next bytes arrive. Busy connections keep their state; idle keep-alive
/// connections cost little more than their socket.
async fn serve_h1(
    mut io: Tracked,
    ctx: Arc<ConnCtx>,
    h1: &http1::Builder,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let watch = ctx.watch.clone();
    watch.set_parkable();
    loop {
        let svc_ctx = ctx.clone();
        let svc =
            service_fn(move |req: hyper::Request<Incoming>| forward::handle(svc_ctx.clone(), req));
        let mut conn = h1.serve_connection(TokioIo::new(io), svc);
        let mut graceful = false;
        let mut parking = false;
        let closed = poll_fn(|cx| {
            watch.register(cx.waker());
            let signals = watch.signals();
            if signals & CLOSE != 0 {
                return Poll::Ready(Ok(true));
            }
            if signals & GRACEFUL != 0 && !graceful {
                graceful = true;
                parking = false;
                watch.set_parking(false);
                Pin::new(&mut conn).graceful_shutdown();
            } else if !graceful && !parking && watch.take_park() {
                parking = true;
                watch.set_parking(true);
                Pin::new(&mut conn).graceful_shutdown();
            }
            Pin::new(&mut conn).poll(cx).map_ok(|()| false)
        })
        .await?;
        watch.set_parking(false);
        if closed {
            return Ok(());
        }
        let parts = conn.into_parts();
        if let Some(tunnel) = ctx.take_tunnel() {
            // hyper wrote the 101 and handed the socket back (bytes the client sent after
            // its request are in `read_buf`): the tunnel outlives this connection's
            // supervision, as an upgraded connection is no longer HTTP.
            let mut client = parts.io.into_inner();
            client.prefix = Some(parts.read_buf).filter(|b| !b.is_empty());
            tokio::spawn(tunnel.run(client, ctx.shared.clone()));
            return Ok(());
        }
        if !parking {
            // The client closed, asked to close, or the connection was shut down.
            return Ok(());
        }
        let http1::Parts {
            io: parked,
            read_buf,
            ..
        } = parts;
        io = parked.into_inner();
        if read_buf.is_empty() {
            // Dropped before waiting: an empty `read_buf` still owns hyper's 8 KiB buffer.
            drop(read_buf);
            watch.set_parked(true);
            // Nothing buffered: wait for the next request with the bare socket.
            match supervised(&watch, io.inner.read.readable()).await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            }
        } else {
            io.prefix = Some(read_buf);
        }
        watch.set_parked(false);
    }
}

/// Polls `fut` until it finishes or the supervisor asks the connection to go (`None`):
/// before the first request there is nothing to finish gracefully.
pub(crate) async fn supervised<F: Future>(watch: &ConnWatch, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        watch.register(cx.waker());
        if watch.signals() & (GRACEFUL | CLOSE) != 0 {
            return Poll::Ready(None);
        }
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client starts with the HTTP/2 connection preface (h2c prior knowledge).
/// Peeks, so the bytes stay in the socket for hyper's first read, which then gets the whole
/// request head: reading a prefix first and replaying it (what hyper-util's auto builder
/// does) makes hyper's read buffer grow to 16 KiB on every connection.
async fn is_h2_preface(stream: &TcpStream) -> io::Result<bool> {
    let mut buf = [0u8; 3];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == buf.len() {
            // "PRI" is no HTTP/1 method anyone uses; h2 checks the rest of the preface.
            return Ok(true);
        }
        // A fragment of "PRI": the socket stays readable, so wait instead of spinning. The
        // supervisor's header timeout bounds this.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// h2 connections can finish their current streams and then close.
pub(crate) trait Graceful {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = ProxyBody>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Serves a connection, acting on the supervisor's flags: `GRACEFUL` finishes the request
/// in flight and closes, `CLOSE` drops the connection at once.
pub(crate) async fn drive<C>(conn: C, watch: &ConnWatch) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>> + Graceful,
{
    let mut conn = pin!(conn);
    let mut graceful = false;
    poll_fn(|cx| {
        watch.register(cx.waker());
        let signals = watch.signals();
        if signals & CLOSE != 0 {
            return Poll::Ready(Ok(()));
        }
        if signals & GRACEFUL != 0 && !graceful {
            graceful = true;
            conn.as_mut().graceful();
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// The read side every client stream shares (plain and TLS): first the bytes hyper had read
/// but not used (`prefix`, replayed after a parked connection resumes or an upgrade), then the
/// stream itself, telling the supervisor when bytes arrived (idle timeout).
pub(super) fn poll_read_watched<S: AsyncRead + Unpin>(
    prefix: &mut Option<Bytes>,
    inner: &mut S,
    watch: &ConnWatch,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    if let Some(rest) = prefix.as_mut() {
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest.split_to(n));
        if rest.is_empty() {
            *prefix = None;
        }
        return Poll::Ready(Ok(()));
    }
    let before = buf.filled().len();
    let res = Pin::new(inner).poll_read(cx, buf);
    if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
        watch.touch_read();
    }
    res
}

/// A socket that tells the supervisor when bytes moved (idle timeout) without reading a
/// clock on the data path. It replays bytes hyper had read but not used (`prefix`) when a
/// parked connection resumes, and ignores hyper's shutdown while parking. Writes go through
/// [`Batched`].
struct Tracked {
    inner: Batched,
    watch: Arc<ConnWatch>,
    prefix: Option<Bytes>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        poll_read_watched(&mut this.prefix, &mut this.inner, &this.watch, cx, buf)
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
            self.watch.touch();
        }
        res
    }

    /// hyper then gathers head and body into its own buffer and writes once per flush,
    /// instead of a list that would be written one slice at a time.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.watch.parking() {
            // hyper ends a connection it was asked to finish with a shutdown; a parking
            // connection keeps its socket for the next request.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
