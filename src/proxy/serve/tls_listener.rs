//! Client side over TLS: the accept loop of an HTTPS listener, the bounded handshake
//! (`max_handshakes` at once, `handshake_timeout_ms` each, both counted in `/metrics`), then
//! HTTP/2 when ALPN chose `h2` and HTTP/1.1 otherwise, under the same supervisor deadlines
//! as plain connections. Certificates come from the listener's store through the rustls
//! config built once at start (see [`crate::proxy::tls::server`]).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::listener::{Active, Builders, ConnSettings, drive, poll_read_watched, supervised};
use crate::proxy::base::headers::PeerInfo;
use crate::proxy::l4::front::{self, Outcome};
use crate::proxy::l4::listener::Listener as L4Listener;
use crate::proxy::l4::rewind::Rewound;
use crate::proxy::request::context::{ConnCtx, Edge};
use crate::proxy::request::forward;
use crate::proxy::runtime::state::Shared;
use crate::proxy::runtime::supervisor::{CLOSE, ConnWatch, GRACEFUL, Supervisor};

/// What an HTTPS listener needs besides the socket.
#[derive(Clone)]
pub struct TlsEdge {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
    /// One permit per handshake in progress.
    pub handshakes: Arc<Semaphore>,
    /// TCP routes sharing this port, chosen by SNI before TLS (`tcp:` entry of the same
    /// address); other names are served as HTTPS.
    pub l4: Option<Arc<L4Listener>>,
}

pub async fn serve(
    listener: TcpListener,
    tls: TlsEdge,
    shared: Arc<Shared>,
    settings: ConnSettings,
    supervisor: Arc<Supervisor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builders = Builders::new(&settings);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, shared.clone(), tls.clone(), builders.clone(), supervisor.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Counts a running handshake however it ends.
struct Handshaking(Arc<Shared>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0
            .metrics
            .tls
            .handshakes_active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The TLS handshake within the listener's limits; `None` when it did not succeed (counted).
async fn handshake(
    stream: Rewound<TcpStream>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    tls: &TlsEdge,
    watch: &ConnWatch,
) -> Option<TlsStream<Rewound<TcpStream>>> {
    let m = &shared.metrics.tls;
    // A flood of handshakes costs CPU per ClientHello: past the cap, close at once.
    let Ok(_permit) = tls.handshakes.clone().try_acquire_owned() else {
        m.handshakes_shed.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    m.handshakes_active.fetch_add(1, Ordering::Relaxed);
    let _active = Handshaking(shared.clone());
    let accept = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream));
    match supervised(watch, accept).await {
        None => None,
        Some(Err(_)) => {
            m.handshakes_timeout.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
        Some(Ok(Err(e))) => {
            m.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Some(Ok(Ok(s))) => {
            m.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            if s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                m.resumed.fetch_add(1, Ordering::Relaxed);
            }
            Some(s)
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: TlsEdge,
    builders: Arc<Builders>,
    supervisor: Arc<Supervisor>,
) {
    let _ = stream.set_nodelay(true);
    // TCP routes by SNI come first; their connections never reach the HTTP side.
    let (stream, client) = match &tls.l4 {
        Some(l4) => match front::serve(l4, stream, peer, None, &shared.metrics.l4).await {
            Outcome::Done => return,
            Outcome::Https { stream, client } => (stream, client),
        },
        None => (Rewound::new(Bytes::new(), stream), peer),
    };
    let _active = Active::start(&shared);
    let watch = Arc::new(ConnWatch::default());
    let _registration = supervisor.register(watch.clone());
    let Some(stream) = handshake(stream, peer, &shared, &tls, &watch).await else {
        return;
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let ctx = Arc::new(
        ConnCtx::new(shared, PeerInfo::over_tls(client.ip()), watch.clone()).with_edge(Edge {
            tls: true,
            redirect_https: None,
        }),
    );
    let io = Secure {
        inner: stream,
        watch: watch.clone(),
        prefix: None,
    };
    let result = if h2 {
        ctx.shared
            .metrics
            .tls
            .alpn_h2
            .fetch_add(1, Ordering::Relaxed);
        let shared = ctx.shared.clone();
        let svc =
            service_fn(move |req: hyper::Request<Incoming>| forward::handle(ctx.clone(), req));
        let conn = builders.h2.serve_connection(TokioIo::new(io), svc);
        Box::pin(drive(conn, &watch)).await.map_err(|e| {
            super::h2_goaway::count(&shared.metrics.h2_goaway, &e);
            e.into()
        })
    } else {
        serve_h1(io, ctx, &builders.h1).await
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "client connection error");
    }
}

/// HTTP/1.1 over TLS: keep-alive requests until the client closes or the supervisor says
/// so; an upgrade (WebSocket) hands the TLS stream to the tunnel.
async fn serve_h1(
    io: Secure,
    ctx: Arc<ConnCtx>,
    h1: &http1::Builder,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let watch = ctx.watch.clone();
    let svc_ctx = ctx.clone();
    let svc =
        service_fn(move |req: hyper::Request<Incoming>| forward::handle(svc_ctx.clone(), req));
    let mut conn = h1.serve_connection(TokioIo::new(io), svc);
    let mut graceful = false;
    let closed = poll_fn(|cx| {
        watch.register(cx.waker());
        let signals = watch.signals();
        if signals & CLOSE != 0 {
            return Poll::Ready(Ok(true));
        }
        if signals & GRACEFUL != 0 && !graceful {
            graceful = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        Pin::new(&mut conn).poll(cx).map_ok(|()| false)
    })
    .await?;
    if closed {
        return Ok(());
    }
    if let Some(tunnel) = ctx.take_tunnel() {
        let parts = conn.into_parts();
        let mut client = parts.io.into_inner();
        client.prefix = Some(parts.read_buf).filter(|b| !b.is_empty());
        tokio::spawn(tunnel.run(client, ctx.shared.clone()));
    }
    Ok(())
}

/// A TLS stream that tells the supervisor when bytes moved (idle timeout) and replays bytes
/// hyper read past an upgrade request.
struct Secure {
    inner: TlsStream<Rewound<TcpStream>>,
    watch: Arc<ConnWatch>,
    prefix: Option<Bytes>,
}

impl AsyncRead for Secure {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        poll_read_watched(&mut this.prefix, &mut this.inner, &this.watch, cx, buf)
    }
}

impl AsyncWrite for Secure {
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

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.touch();
        }
        res
    }

    /// rustls gathers the slices into records itself.
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
