//! The per-request context the phases of [`super::forward`] work on: the connection, the
//! snapshot, timing, host, the real client, the access-log entry and what the middlewares
//! keep for the response side.

use std::net::IpAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};

use crate::proxy::base::access_log::Entry;
use crate::proxy::base::clock::{ms_at, unix_ms};
use crate::proxy::base::headers;
use crate::proxy::middleware::Passed;
use crate::proxy::request::answer::with_log;
use crate::proxy::request::body::ProxyBody;
use crate::proxy::request::context::ConnCtx;
use crate::proxy::runtime::state::{ClusterRt, RouteRt, Snapshot};

/// What one request carries from phase to phase.
pub(crate) struct Exchange<'a> {
    pub(crate) ctx: &'a ConnCtx,
    pub(crate) snap: &'a Snapshot,
    /// An HTTP/1 request: the supervisor keeps its response deadline.
    pub(crate) h1: bool,
    pub(crate) start: Instant,
    /// `start` on the proxy's millisecond clock.
    pub(crate) now: u64,
    /// The authority (absolute URI) or `Host` header as received.
    pub(crate) host_value: Option<HeaderValue>,
    /// The real client: the peer, or the address a trusted proxy forwarded.
    pub(crate) client: IpAddr,
    pub(crate) log: Option<Box<Entry>>,
    /// What the route's middlewares keep for the response side.
    pub(crate) passed: Passed,
}

/// The route a request matched, with its cluster.
pub(crate) struct Routed<'a> {
    pub(crate) route: &'a RouteRt,
    pub(crate) cluster: &'a ClusterRt,
    /// Length of the matched path prefix (for `strip_prefix`).
    pub(crate) prefix_len: usize,
}

impl<'a> Exchange<'a> {
    /// Host, client address and the (sampled) access-log entry.
    pub(crate) fn begin(
        ctx: &'a ConnCtx,
        snap: &'a Snapshot,
        req: &Request<Incoming>,
        h1: bool,
    ) -> Self {
        let start = Instant::now();
        let host_value: Option<HeaderValue> = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };
        let client = headers::client_ip(ctx.peer.ip, req.headers(), |ip| snap.is_trusted(ip));
        let mut ex = Self {
            ctx,
            snap,
            h1,
            start,
            now: ms_at(start),
            host_value,
            client,
            log: None,
            passed: Passed::default(),
        };
        ex.log = snap.access_log.as_ref().filter(|l| l.sample()).map(|sink| {
            Box::new(Entry {
                sink: sink.clone(),
                start,
                time_ms: unix_ms(),
                client,
                method: req.method().as_str().to_string(),
                host: ex.host().unwrap_or("").to_string(),
                path: req.uri().path().to_string(),
                status: 0,
                bytes: 0,
                upstream: None,
                route: None,
                retries: 0,
            })
        });
        ex
    }

    /// The request's host as text, when it is valid UTF-8.
    pub(crate) fn host(&self) -> Option<&str> {
        self.host_value.as_ref().and_then(|v| v.to_str().ok())
    }

    /// An answer the proxy made itself, logged with its status.
    pub(crate) fn answer(&mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let mut log = self.log.take();
        if let Some(entry) = log.as_mut() {
            entry.status = resp.status().as_u16();
        }
        with_log(resp, log)
    }
}
