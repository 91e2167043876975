//! What travels towards the client: the [`ProxyBody`] hyper's server sends, built from an
//! upstream body (which on its last frame hands the upstream connection back to the pool
//! and on drop releases the in-flight slot and writes the access log line) or a small
//! canned body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::proxy::base::access_log::Entry;
use crate::proxy::request::context::ConnCtx;
use crate::proxy::upstream::pool::Conn;
use crate::proxy::upstream::response::{BoxError, Upstream};
use crate::proxy::upstream::server::ServerState;

/// What has to happen when a proxied response finishes.
#[derive(Default)]
pub struct Tail {
    /// Connection to return to the pool once the body is complete.
    pub conn: Option<Conn>,
    /// Server whose in-flight counter this response holds (and whose pool gets `conn`).
    pub server: Option<Arc<ServerState>>,
    /// Access log line to complete with the byte count.
    pub log: Option<Box<Entry>>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.release_inflight();
        }
    }
}

enum Kind {
    Upstream(Upstream),
    Full(Option<Bytes>),
}

pub struct ProxyBody {
    kind: Kind,
    bytes: u64,
    tail: Option<Tail>,
    /// The HTTP/1 client connection to tell when this response is done (it restarts the
    /// header timeout for the next request).
    client: Option<Arc<ConnCtx>>,
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            kind: Kind::Full(Some(bytes.into())),
            bytes: 0,
            tail: None,
            client: None,
        }
    }

    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
            bytes: 0,
            tail: None,
            client: None,
        }
    }

    pub fn upstream(body: Upstream, tail: Option<Tail>) -> Self {
        let mut this = Self {
            kind: Kind::Upstream(body),
            bytes: 0,
            tail,
            client: None,
        };
        if this.is_end_stream() {
            this.finish();
        }
        this
    }

    /// Attaches bookkeeping to a canned body (used for error answers that still log).
    pub fn with_tail(mut self, tail: Option<Tail>) -> Self {
        self.tail = tail;
        self
    }

    /// Tells `client` when the response is done (dropped by hyper after its last frame).
    pub fn notify_done(&mut self, client: Arc<ConnCtx>) {
        self.client = Some(client);
    }

    /// The upstream body is complete: the connection may serve the next request.
    fn finish(&mut self) {
        let Some(tail) = self.tail.as_mut() else {
            return;
        };
        let Some(server) = tail.server.as_ref() else {
            return;
        };
        if let Some(conn) = tail.conn.take() {
            server.pool.put(conn);
        }
        if let Kind::Upstream(Upstream::Direct(body)) = &mut self.kind
            && let Some(conn) = body.take_reusable()
        {
            server.pool.put_direct(conn);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(client) = &self.client {
            client.watch.response_done();
        }
        if let Some(tail) = self.tail.as_mut()
            && let Some(mut entry) = tail.log.take()
        {
            entry.bytes = self.bytes;
            entry.emit();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(data) => Poll::Ready(data.take().map(|d| {
                this.bytes += d.len() as u64;
                Ok(Frame::data(d))
            })),
            Kind::Upstream(body) => {
                let polled = Pin::new(&mut *body).poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            this.bytes += d.len() as u64;
                        }
                        body.is_end_stream()
                    }
                    Poll::Ready(None) => true,
                    _ => false,
                };
                if ended {
                    this.finish();
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(d) => d.is_none(),
            Kind::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(b) => b.size_hint(),
        }
    }
}
