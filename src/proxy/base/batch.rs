//! Socket writes deferred to the end of the scheduler's batch, for the single-threaded
//! runtime (`itsup proxy --threads 1`).
//!
//! After one `epoll_wait`, a proxy typically reads a request, writes it upstream, reads a
//! response, writes it to the client, for many connections in turn. Each `send` wakes the
//! peer's process right away, so read and write calls interleave with wake-ups across the
//! machine. Here a write only appends to the connection's buffer and queues the
//! connection; a flusher task, woken by the first queued write and so run after the tasks
//! already scheduled, sends every queued buffer in one pass: all reads of a batch happen
//! before its writes, the way HAProxy's event loop does it. This saves about a tenth of the
//! kernel time per proxied request.
//!
//! A write is accepted as soon as it is buffered (like a kernel socket buffer); its error,
//! if any, surfaces on the next write. Buffers are bounded per connection (back-pressure:
//! the writer waits), large writes to an empty buffer go straight to the socket, and
//! `shutdown` waits until the buffer is sent. On other runtimes, or before [`start`],
//! writes go straight to the socket.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bytes buffered per connection before the writer has to wait.
const MAX_PENDING: usize = 256 * 1024;
/// Writes at least this large, with nothing buffered, skip the buffer (no copy).
const DIRECT_WRITE: usize = 16 * 1024;
/// A buffer that grew past this is released once sent.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The write half, shared with the flusher while it has bytes to send.
struct Writer {
    socket: OwnedWriteHalf,
    state: Mutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    pending: Vec<u8>,
    /// In the flusher's queue (at most once).
    queued: bool,
    /// The connection waits for the buffer to drain (back-pressure or shutdown).
    waiter: Option<Waker>,
    /// The owning stream was dropped: send what the socket takes now, then give up.
    orphaned: bool,
    error: Option<io::ErrorKind>,
}

/// Connections with bytes to send, and the flusher's waker.
#[derive(Default)]
struct Queue {
    ready: Vec<Arc<Writer>>,
    /// Connections whose socket was full; retried when it turns writable.
    blocked: Vec<Arc<Writer>>,
    flusher: Option<Waker>,
}

thread_local! {
    /// Present on the thread running the single-threaded runtime once [`start`] ran.
    static QUEUE: RefCell<Option<Queue>> = const { RefCell::new(None) };
}

/// Turns batching on for the current thread and spawns its flusher. Call from inside a
/// current-thread runtime: all tasks, and so all writes, then run on this thread.
pub fn start() {
    QUEUE.with(|q| *q.borrow_mut() = Some(Queue::default()));
    tokio::spawn(std::future::poll_fn(|cx| {
        let work = QUEUE.with(|q| {
            q.borrow_mut().as_mut().map(|q| {
                q.flusher = Some(cx.waker().clone());
                let mut work = std::mem::take(&mut q.ready);
                work.append(&mut q.blocked);
                work
            })
        });
        let Some(work) = work else {
            return Poll::Ready(());
        };
        let still_blocked: Vec<_> = work.into_iter().filter(|w| !w.flush(cx)).collect();
        if !still_blocked.is_empty() {
            QUEUE.with(|q| {
                if let Some(q) = q.borrow_mut().as_mut() {
                    q.blocked.extend(still_blocked);
                }
            });
        }
        Poll::Pending
    }));
}

impl Writer {
    fn lock(&self) -> io::Result<MutexGuard<'_, WriterState>> {
        self.state
            .lock()
            .map_err(|_| io::Error::other("socket buffer lock poisoned"))
    }

    /// Sends what is buffered. False when the socket is full and still wanted: write
    /// readiness is then registered with `cx` and the flusher retries later.
    fn flush(&self, cx: &mut Context<'_>) -> bool {
        let Ok(mut st) = self.lock() else {
            return true;
        };
        while !st.pending.is_empty() {
            match self.socket.try_write(&st.pending) {
                Ok(n) => {
                    st.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if st.orphaned {
                        st.pending.clear();
                        break;
                    }
                    match self.socket.as_ref().poll_write_ready(cx) {
                        Poll::Ready(_) => continue,
                        Poll::Pending => return false,
                    }
                }
                Err(e) => {
                    st.error = Some(e.kind());
                    st.pending.clear();
                }
            }
        }
        if st.pending.capacity() > KEEP_CAPACITY {
            st.pending = Vec::new();
        }
        st.queued = false;
        if let Some(w) = st.waiter.take() {
            w.wake();
        }
        true
    }

    /// A write straight to the socket (no batching on this thread, or a large write).
    fn poll_write_now(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.socket.as_ref().poll_write_ready(cx))?;
            match self.socket.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

/// A TCP stream whose writes are batched (see the module documentation).
pub struct Batched {
    /// The read half, also used directly to wait for readability.
    pub read: OwnedReadHalf,
    writer: Arc<Writer>,
}

impl Batched {
    pub fn new(stream: TcpStream) -> Self {
        let (read, socket) = stream.into_split();
        Self {
            read,
            writer: Arc::new(Writer {
                socket,
                state: Mutex::new(WriterState::default()),
            }),
        }
    }
}

impl AsyncRead for Batched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Batched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !QUEUE.with(|q| q.borrow().is_some()) {
            // No batching on this thread: nothing is ever buffered.
            return self.writer.poll_write_now(cx, data);
        }
        let mut st = self.writer.lock()?;
        if let Some(kind) = st.error {
            return Poll::Ready(Err(kind.into()));
        }
        if st.pending.is_empty() && data.len() >= DIRECT_WRITE {
            drop(st);
            return self.writer.poll_write_now(cx, data);
        }
        if st.pending.len() >= MAX_PENDING {
            st.waiter = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(MAX_PENDING - st.pending.len());
        st.pending.extend_from_slice(&data[..n]);
        if !st.queued {
            st.queued = true;
            drop(st);
            QUEUE.with(|q| {
                if let Some(q) = q.borrow_mut().as_mut() {
                    q.ready.push(self.writer.clone());
                    if q.ready.len() == 1
                        && let Some(flusher) = &q.flusher
                    {
                        flusher.wake_by_ref();
                    }
                }
            });
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Buffered bytes are as good as handed to the kernel: the flusher sends them at
        // the end of this batch whatever this connection does next.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut st = self.writer.lock()?;
            if !st.pending.is_empty() {
                st.waiter = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        // A closed peer makes this fail; the connection is ending either way.
        let _ = socket2::SockRef::from(self.writer.socket.as_ref()).shutdown(Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

impl Drop for Batched {
    fn drop(&mut self) {
        if let Ok(mut st) = self.writer.lock() {
            st.orphaned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Batched, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (
            Batched::new(client.expect("connect")),
            accepted.expect("accept").0,
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn batched_writes_arrive_in_order_and_shutdown_sends_everything() {
        start();
        let (mut batched, mut peer) = pair().await;
        let big = vec![7u8; 3 * MAX_PENDING];
        let writer = tokio::spawn(async move {
            batched.write_all(b"small ").await.expect("write");
            batched.write_all(b"writes ").await.expect("write");
            batched.write_all(&big).await.expect("write");
            batched.write_all(b"end").await.expect("write");
            batched.shutdown().await.expect("shutdown");
        });
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(&got[..13], b"small writes ");
        assert_eq!(got.len(), 13 + 3 * MAX_PENDING + 3);
        assert!(got[13..13 + 3 * MAX_PENDING].iter().all(|&b| b == 7));
        assert_eq!(&got[got.len() - 3..], b"end");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_buffered_when_the_stream_is_dropped_are_still_sent() {
        start();
        let (mut batched, mut peer) = pair().await;
        batched.write_all(b"last words").await.expect("write");
        drop(batched);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"last words");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_start_writes_go_straight_out() {
        let (mut batched, mut peer) = pair().await;
        batched.write_all(b"now").await.expect("write");
        let mut got = [0u8; 3];
        peer.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"now");
    }
}
