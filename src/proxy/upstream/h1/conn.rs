//! One upstream connection of the direct HTTP/1.1 path: the socket (writes batched, see
//! [`crate::proxy::base::batch`]), its read buffer, and the checks that decide whether an idle
//! connection may carry another request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::proxy::base::batch::Batched;
use crate::proxy::base::clock;

/// Read buffer growth step; a typical response head and small body fit in one read.
const READ_CHUNK: usize = 8 * 1024;
/// An idle connection's buffer above this size is given back instead of kept.
const KEEP_BUFFER: usize = 64 * 1024;

pub struct H1Conn {
    pub(super) io: Batched,
    pub(super) buf: BytesMut,
    /// The request head being written, kept to reuse its allocation.
    pub(super) out: Vec<u8>,
    /// When it was last parked, on the supervisor's coarse clock: idle limits are tens of
    /// seconds, and the request path then reads no clock for them.
    idle_since_ms: u64,
    /// Carried a request before: a close before any response byte is then most likely the
    /// upstream's idle timeout racing this request, not a failure of the request.
    pub(super) reused: bool,
}

impl H1Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            io: Batched::new(stream),
            buf: BytesMut::new(),
            out: Vec::new(),
            idle_since_ms: clock::coarse_ms(),
            reused: false,
        }
    }

    /// Whether an idle connection may be used again: not idle longer than `max_idle`, and
    /// the upstream neither closed it nor sent anything unasked (pooled connections have an
    /// empty buffer, see `ResponseBody::take_reusable`). Costs no system call unless
    /// the socket turned readable while idle.
    pub fn alive(&self, max_idle: Duration) -> bool {
        if self.idle_for() > max_idle {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.read.as_ref().poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.read.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// The response is complete and the connection goes back to the pool.
    pub(super) fn park(&mut self) {
        self.idle_since_ms = clock::coarse_ms();
        self.reused = true;
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = BytesMut::new();
        }
    }

    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(clock::coarse_ms().saturating_sub(self.idle_since_ms))
    }

    /// Reads more bytes into the buffer; `Ok(0)` is end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    pub(super) async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}
