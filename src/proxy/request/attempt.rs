//! The attempts of one request: pick a server, forward over a pooled connection (the direct
//! HTTP/1.1 path for bodiless requests, hyper's client otherwise) and apply the retry rules.
//!
//! Retry rules: a request that never reached an upstream (connect failure, or a pooled
//! connection that refused it before anything was written) is retried on another server
//! whatever its method, because its body is still here. Once a request went out, only
//! idempotent requests without a body are re-sent (rebuilt from a copy of the head); a body
//! already sent is never sent again. A response timeout is not retried.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use crate::proxy::base::config::{AllDownPolicy, UpstreamProtocol};
use crate::proxy::request::context::Claim;
use crate::proxy::request::exchange::{Exchange, Routed};
use crate::proxy::runtime::state::{ClusterRt, RouteRt};
use crate::proxy::runtime::supervisor::ConnWatch;
use crate::proxy::upstream::body::UpBody;
use crate::proxy::upstream::h1;
use crate::proxy::upstream::lb::{IndexSet, PickCtx};
use crate::proxy::upstream::pool::{Conn, ConnectError, Pool};
use crate::proxy::upstream::response::{BoxError, Upstream};
use crate::proxy::upstream::server::{Eligibility, ServerState};

/// An upstream answered: its response head and what the response body must hand back.
pub(crate) struct Answered {
    pub(crate) resp: Response<Upstream>,
    pub(crate) conn: Option<Conn>,
    pub(crate) server: Arc<ServerState>,
    /// The server's index in its cluster.
    pub(crate) idx: usize,
    pub(crate) claim: Claim,
    pub(crate) attempts: u32,
}

/// Every attempt failed (or none could be made): the answer to give.
pub(crate) struct Failed {
    pub(crate) status: StatusCode,
    pub(crate) body: &'static str,
    pub(crate) attempts: u32,
}

/// Tries servers of the route's cluster until one answers or the retry rules say stop.
pub(crate) async fn run(
    ex: &Exchange<'_>,
    routed: &Routed<'_>,
    req: Request<Incoming>,
    pinned: Option<Option<usize>>,
    upgrade: bool,
) -> Result<Answered, Failed> {
    let (route, cluster) = (routed.route, routed.cluster);
    let shared = &ex.ctx.shared;
    // A copy of the head is only needed when the request could be re-sent after it went
    // out: idempotent, bodiless, retries configured and another server to try.
    let replayable = route.retries > 0
        && cluster.servers.len() > 1
        && is_idempotent(req.method())
        && req.body().is_end_stream()
        && !upgrade;
    // Boxed: rarely needed, and the request future stays small (hyper keeps a slot of its
    // size per connection and moves it in for every request).
    let saved = replayable.then(|| {
        Box::new((
            req.method().clone(),
            req.uri().clone(),
            req.version(),
            req.headers().clone(),
        ))
    });
    // Bodiless requests to HTTP/1.1 servers skip hyper's client (see `h1`).
    let direct = cluster.protocol == UpstreamProtocol::Http1
        && cluster.tls.is_none()
        && !upgrade
        && req.body().is_end_stream();
    let mut pending = Some(req.map(UpBody::Incoming));
    let mut tried = IndexSet::default();
    let mut attempts: u32 = 0;
    let mut last_error = (StatusCode::SERVICE_UNAVAILABLE, "no server available\n");
    let now = ex.now;

    loop {
        let req = match pending.take() {
            Some(r) => r,
            None => match &saved {
                Some(head) => rebuild(head),
                None => break,
            },
        };
        let Some((idx, server)) = choose(
            cluster,
            ex.client,
            req.headers(),
            pinned.flatten(),
            &tried,
            attempts == 0,
            now,
        ) else {
            break;
        };
        tried.insert(idx);
        let claim = Claim(Some(server.clone()));
        if attempts > 0 {
            shared.metrics.retries_total.fetch_add(1, Ordering::Relaxed);
        }
        attempts += 1;
        let watch = ex.h1.then_some(&*ex.ctx.watch);
        let sent = if direct {
            send_direct(&server, req, route, watch, now).await
        } else {
            match server
                .pool
                .acquire(
                    &server.address,
                    server.socket_addr,
                    cluster.protocol,
                    cluster.tls.as_deref(),
                    route.connect_timeout,
                )
                .await
            {
                Ok(conn) => send(conn, req, route.response_timeout, watch, now).await,
                Err(e) => Sent::NotConnected(e, req),
            }
        };
        match sent {
            Sent::NotConnected(e, req) => {
                if matches!(e, ConnectError::Tls { .. } | ConnectError::ServerName(_)) {
                    // A certificate problem is a configuration problem: say so loudly.
                    tracing::warn!(cluster = %cluster.name, server = %server.address, error = %e, "upstream TLS failed");
                } else {
                    tracing::debug!(server = %server.address, error = %e, "upstream connect failed");
                }
                record_failure(&server, cluster);
                last_error = match e {
                    ConnectError::Timeout => {
                        (StatusCode::GATEWAY_TIMEOUT, "upstream connect timeout\n")
                    }
                    _ => (StatusCode::BAD_GATEWAY, "bad gateway\n"),
                };
                pending = Some(req);
            }
            Sent::Response(resp, conn) => {
                if resp.status().is_server_error() && cluster.breaker.on_5xx {
                    record_failure(&server, cluster);
                } else {
                    server.breaker.record_success();
                }
                return Ok(Answered {
                    resp,
                    conn,
                    server,
                    idx,
                    claim,
                    attempts,
                });
            }
            Sent::Refused(req) => {
                // The pooled connection died before taking the request: nothing was written.
                pending = Some(req);
                last_error = (StatusCode::BAD_GATEWAY, "bad gateway\n");
            }
            Sent::Failed(e) => {
                if cluster.tls.is_some() {
                    // With TLS 1.3 a server refuses a client certificate after the handshake,
                    // so mutual-TLS refusals surface here.
                    tracing::warn!(cluster = %cluster.name, server = %server.address, error = %error_chain(&*e), "upstream TLS failed (request refused)");
                } else {
                    tracing::debug!(server = %server.address, error = %e, "upstream request failed");
                }
                record_failure(&server, cluster);
                last_error = (StatusCode::BAD_GATEWAY, "bad gateway\n");
                if saved.is_none() {
                    break;
                }
            }
            Sent::TimedOut => {
                record_failure(&server, cluster);
                last_error = (StatusCode::GATEWAY_TIMEOUT, "upstream timeout\n");
                break;
            }
        }
        if attempts > route.retries {
            break;
        }
    }
    Err(Failed {
        status: last_error.0,
        body: last_error.1,
        attempts,
    })
}

/// Picks a server for one attempt and claims it. Pinned (sticky) first, then the
/// algorithm, then, when the cluster fails open and nothing is eligible, anything not in
/// maintenance or drain.
fn choose(
    cluster: &ClusterRt,
    client: std::net::IpAddr,
    headers: &HeaderMap,
    pinned: Option<usize>,
    tried: &IndexSet,
    first: bool,
    now: u64,
) -> Option<(usize, Arc<ServerState>)> {
    let servers = &cluster.servers;
    if first
        && let Some(i) = pinned
        && let Some(s) = servers.get(i)
        && s.try_claim(Eligibility::Pinned, now)
    {
        return Some((i, s.clone()));
    }
    let ctx = PickCtx {
        client_ip: client,
        headers,
    };
    let accept = |how: Eligibility| {
        move |i: usize| !tried.contains(i) && servers.get(i).is_some_and(|s| s.try_claim(how, now))
    };
    let picked = cluster
        .balancer
        .pick(servers, &ctx, &mut accept(Eligibility::Normal))
        .or_else(|| {
            let none_up = !servers.iter().any(|s| s.eligible(Eligibility::Normal, now));
            (cluster.when_all_down == AllDownPolicy::FailOpen && none_up)
                .then(|| {
                    cluster
                        .balancer
                        .pick(servers, &ctx, &mut accept(Eligibility::FailOpen))
                })
                .flatten()
        })?;
    Some((picked, servers[picked].clone()))
}

/// An error with its sources (`a: b: c`), for log lines that must say why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn record_failure(server: &ServerState, cluster: &ClusterRt) {
    server.failures_total.fetch_add(1, Ordering::Relaxed);
    if server.breaker.record_failure(&cluster.breaker) {
        tracing::warn!(cluster = %cluster.name, server = %server.address, "circuit opened, server ejected");
    }
}

enum Sent {
    /// No connection to the server: the request is handed back untouched.
    NotConnected(ConnectError, Request<UpBody>),
    Response(Response<Upstream>, Option<Conn>),
    Refused(Request<UpBody>),
    Failed(BoxError),
    TimedOut,
}

/// Sends the request and waits for the response head, within `timeout`. An HTTP/1 request
/// (`watch` given) uses its connection's deadline, which the supervisor fires; an h2 stream
/// runs in a task of its own and uses a tokio timer.
async fn send(
    conn: Conn,
    req: Request<UpBody>,
    timeout: Duration,
    watch: Option<&ConnWatch>,
    now: u64,
) -> Sent {
    macro_rules! attempt {
        ($sender:ident, $wrap:path) => {{
            let fut = $sender.try_send_request(req);
            match within(fut, timeout, watch, now).await {
                None => Sent::TimedOut,
                Some(Ok(resp)) => Sent::Response(resp.map(Upstream::Hyper), Some($wrap($sender))),
                Some(Err(mut e)) => match e.take_message() {
                    Some(req) => Sent::Refused(req),
                    None => Sent::Failed(e.into_error().into()),
                },
            }
        }};
    }
    match conn {
        Conn::H1(mut sender) => attempt!(sender, Conn::H1),
        Conn::H2(mut sender) => attempt!(sender, Conn::H2),
    }
}

/// Sends a bodiless HTTP/1.1 request on the direct path (see [`h1`]) and waits for the
/// response head, within the route's response timeout. A pooled connection that the
/// upstream closed as idle just as the request went out is replaced by a fresh one once,
/// for idempotent requests; other requests are not re-sent.
async fn send_direct(
    server: &ServerState,
    req: Request<UpBody>,
    route: &RouteRt,
    watch: Option<&ConnWatch>,
    now: u64,
) -> Sent {
    let mut conn = match server
        .pool
        .acquire_direct(&server.address, server.socket_addr, route.connect_timeout)
        .await
    {
        Ok(c) => c,
        Err(e) => return Sent::NotConnected(e, req),
    };
    loop {
        match within(h1::exchange(conn, &req), route.response_timeout, watch, now).await {
            None => return Sent::TimedOut,
            Some(Ok(resp)) => return Sent::Response(resp.map(Upstream::Direct), None),
            Some(Err(h1::Failure::Stale)) if is_idempotent(req.method()) => {
                conn = match Pool::open_direct(
                    &server.address,
                    server.socket_addr,
                    route.connect_timeout,
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => return Sent::NotConnected(e, req),
                };
            }
            Some(Err(h1::Failure::Stale)) => {
                return Sent::Failed("pooled connection closed by the upstream".into());
            }
            Some(Err(h1::Failure::Error(e))) => return Sent::Failed(e.into()),
        }
    }
}

/// `fut`'s output, or `None` when `timeout` passed first.
async fn within<F: Future>(
    fut: F,
    timeout: Duration,
    watch: Option<&ConnWatch>,
    now: u64,
) -> Option<F::Output> {
    match watch {
        Some(w) => {
            w.arm(now + timeout.as_millis() as u64);
            let disarm = Disarm(w);
            let mut fut = pin!(fut);
            let out = poll_fn(|cx| {
                if w.expired() {
                    return Poll::Ready(None);
                }
                fut.as_mut().poll(cx).map(Some)
            })
            .await;
            drop(disarm);
            out
        }
        // Boxed: the timer is large and only h2 streams use it.
        None => Box::pin(tokio::time::timeout(timeout, fut)).await.ok(),
    }
}

/// Clears the response deadline however the wait ends (also when the request is dropped).
struct Disarm<'a>(&'a ConnWatch);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

fn rebuild(head: &(Method, Uri, Version, HeaderMap)) -> Request<UpBody> {
    let mut req = Request::new(UpBody::Empty);
    *req.method_mut() = head.0.clone();
    *req.uri_mut() = head.1.clone();
    *req.version_mut() = head.2;
    *req.headers_mut() = head.3.clone();
    req
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
