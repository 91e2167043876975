//! One forwarded TCP connection: connect to the route's next server (trying the others on
//! failure, each within the connect timeout), write the PROXY header the route asks for, then
//! copy both ways until either side is done or nothing moved for `idle`. Bytes are counted
//! per route as they pass.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::listener::Route;
use super::proxy_protocol;
use crate::proxy::runtime::metrics::L4RouteMetrics;

/// Copy buffer per direction.
const BUF: usize = 32 * 1024;

/// Keeps a route's `active` gauge right however the connection ends.
struct Open(Arc<L4RouteMetrics>);

impl Open {
    fn start(m: &Arc<L4RouteMetrics>) -> Self {
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        m.active.fetch_add(1, Ordering::Relaxed);
        Self(m.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Who the connection is for, as the PROXY header tells the server.
#[derive(Debug, Clone, Copy)]
pub struct Ends {
    /// The client (from a trusted PROXY header, else the peer).
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

/// Forwards `client` to `route` until done. With `refuse_proxy` (an untrusted peer on a port
/// that accepts PROXY headers, forwarded before it spoke) a first chunk that is a PROXY header
/// ends the connection before it reaches the server, counted there.
pub async fn run<C>(
    mut client: C,
    ends: Ends,
    route: &Route,
    connect: Duration,
    idle: Duration,
    refuse_proxy: Option<&AtomicU64>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let _open = Open::start(&route.metrics);
    let Some(mut server) = connect_any(route, connect).await else {
        route
            .metrics
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(route = %route.name, "no server accepted the connection");
        return;
    };
    let header = match route.proxy_protocol {
        Some(1) => Some(proxy_protocol::v1(ends.client, ends.local)),
        Some(_) => Some(proxy_protocol::v2(ends.client, ends.local)),
        None => None,
    };
    if let Some(h) = header
        && server.write_all(&h).await.is_err()
    {
        return;
    }
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let mut c = Metered {
        inner: &mut client,
        count: &route.metrics.bytes_in,
        last: &last,
        started,
        refuse_proxy,
    };
    let mut s = Metered {
        inner: &mut server,
        count: &route.metrics.bytes_out,
        last: &last,
        started,
        refuse_proxy: None,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut c, &mut s, BUF, BUF);
    tokio::pin!(copy);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::from_std(started + since + idle);
        tokio::select! {
            result = &mut copy => {
                if let Err(e) = result {
                    tracing::debug!(route = %route.name, error = %e, "tcp connection ended");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    route.metrics.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// The first server of the rotation that accepts within `timeout`.
async fn connect_any(route: &Route, timeout: Duration) -> Option<TcpStream> {
    for addr in route.rotation() {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => tracing::debug!(server = addr, error = %e, "connect failed"),
            Err(_) => tracing::debug!(server = addr, "connect timed out"),
        }
    }
    None
}

/// A stream side that counts the bytes read from it and notes when anything moved (as
/// milliseconds since the connection started: one relaxed store per read or write).
struct Metered<'a, S> {
    inner: &'a mut S,
    count: &'a AtomicU64,
    last: &'a AtomicU64,
    started: Instant,
    /// Checked on the first chunk only, then cleared.
    refuse_proxy: Option<&'a AtomicU64>,
}

impl<S> Metered<'_, S> {
    fn moved(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut *self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0
            && let Some(counter) = self.refuse_proxy.take()
            && super::proxy_protocol::looks_like_header(&buf.filled()[before..])
        {
            counter.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "PROXY header from an untrusted peer",
            )));
        }
        if n > 0 {
            self.count.fetch_add(n as u64, Ordering::Relaxed);
            self.moved();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
