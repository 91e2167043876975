//! The request path: route, pick a server, forward over a pooled connection (the direct
//! HTTP/1.1 path for bodiless requests, hyper's client otherwise), apply the retry rules and
//! hand back the upstream response.
//!
//! Retry rules: a request that never reached an upstream (connect failure, or a pooled
//! connection that refused it before anything was written) is retried on another server
//! whatever its method, because its body is still here. Once a request went out, only
//! idempotent requests without a body are re-sent (rebuilt from a copy of the head); a body
//! already sent is never sent again. A response timeout is not retried.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};

use crate::proxy::base::access_log::Entry;
use crate::proxy::base::clock::{ms_at, unix_ms};
use crate::proxy::base::config::{AllDownPolicy, UpstreamProtocol};
use crate::proxy::base::headers;
use crate::proxy::base::routing;
use crate::proxy::request::body::{ProxyBody, Tail};
use crate::proxy::request::challenge;
use crate::proxy::request::context::{Claim, ConnCtx, Tunnel};
use crate::proxy::request::redirect;
use crate::proxy::runtime::state::{ClusterRt, RouteRt};
use crate::proxy::runtime::supervisor::ConnWatch;
use crate::proxy::upstream::body::UpBody;
use crate::proxy::upstream::h1;
use crate::proxy::upstream::lb::{Balancer, IndexSet, PickCtx};
use crate::proxy::upstream::pool::{Conn, ConnectError, Pool};
use crate::proxy::upstream::response::{BoxError, Upstream};
use crate::proxy::upstream::server::{Eligibility, ServerState};

/// Entry point from the listener: one call per client request.
pub async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    ctx.watch.request_started();
    // HTTP/1 requests run inside their connection's task, one at a time, so the supervisor
    // can keep their response deadline; h2 streams run as tasks of their own.
    let h1 = req.version() <= Version::HTTP_11;
    // hyper refuses conflicting Content-Length values and lets Transfer-Encoding win over
    // Content-Length (dropping the latter). Bytes after a chunked body are the classic
    // smuggling payload, so such a connection is closed after the answer (RFC 9112 §6.3)
    // instead of parsing them as the next request.
    let close_after = h1 && req.headers().contains_key(header::TRANSFER_ENCODING);
    let mut resp = proxy(&ctx, req, h1).await;
    if close_after {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if h1 {
        // The header timeout for the next request starts when this response is done.
        resp.body_mut().notify_done(ctx);
    }
    Ok(resp)
}

async fn proxy(ctx: &ConnCtx, req: Request<Incoming>, h1: bool) -> Response<ProxyBody> {
    let shared = &ctx.shared;
    let peer = &ctx.peer;
    let start = Instant::now();
    let now = ms_at(start);
    // A full Arc (not a guard) so the request keeps its config even if a reload swaps it.
    let snap = shared.snapshot.load_full();

    let host_value: Option<HeaderValue> = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    };
    let host = host_value.as_ref().and_then(|v| v.to_str().ok());
    let peer_ip = peer.ip;
    let client = headers::client_ip(peer_ip, req.headers(), |ip| snap.is_trusted(ip));
    let mut log = snap.access_log.as_ref().filter(|l| l.sample()).map(|sink| {
        Box::new(Entry {
            sink: sink.clone(),
            start,
            time_ms: unix_ms(),
            client,
            method: req.method().as_str().to_string(),
            host: host.unwrap_or("").to_string(),
            path: req.uri().path().to_string(),
            status: 0,
            bytes: 0,
            upstream: None,
            route: None,
            retries: 0,
        })
    });

    if let Some(resp) = challenge::answer(shared, &req) {
        if let Some(entry) = log.as_mut() {
            entry.status = resp.status().as_u16();
        }
        return with_log(resp, log);
    }
    if let Some(port) = ctx.edge.redirect_https
        && redirect::applies(req.uri())
    {
        shared
            .metrics
            .https_redirects_total
            .fetch_add(1, Ordering::Relaxed);
        let resp = redirect::response(req.method(), host, req.uri(), port);
        if let Some(entry) = log.as_mut() {
            entry.status = resp.status().as_u16();
        }
        return with_log(resp, log);
    }
    let Some(found) = snap.table.find(host, req.uri().path()) else {
        snap.no_route.observe(404, start.elapsed());
        return finish_error(StatusCode::NOT_FOUND, "no route\n", log);
    };
    let route = &snap.routes[found.route];
    let cluster = &snap.clusters[route.cluster];
    if let Some(entry) = log.as_mut() {
        entry.route = Some(route.name.to_string());
    }

    let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
    let mut req = req;
    let on_client_upgrade = if upgrade {
        req.extensions_mut().remove::<OnUpgrade>()
    } else {
        None
    };

    let scheme = if cluster.tls.is_some() {
        "https"
    } else {
        "http"
    };
    if let Some(uri) = upstream_uri(
        req.uri(),
        route,
        found.prefix_len,
        cluster.protocol.is_h2().then_some(scheme),
        host,
    ) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = match cluster.protocol {
        UpstreamProtocol::Http1 => Version::HTTP_11,
        UpstreamProtocol::H2c | UpstreamProtocol::H2 => Version::HTTP_2,
    };
    {
        let h = req.headers_mut();
        headers::strip_hop_by_hop(h, upgrade);
        headers::set_forwarded(
            h,
            peer,
            client,
            snap.is_trusted(peer_ip),
            host_value.as_ref().filter(|_| host.is_some()),
        );
        if cluster.protocol == UpstreamProtocol::Http1
            && !h.contains_key(header::HOST)
            && let Some(v) = host_value.clone()
        {
            h.insert(header::HOST, v);
        }
    }

    let pinned = match &cluster.balancer {
        Balancer::StickyCookie(s) => Some(s.pinned(req.headers())),
        _ => None,
    };
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
            client,
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
        let watch = h1.then_some(&*ctx.watch);
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
            Sent::Response(mut resp, conn) => {
                let status = resp.status();
                if status.is_server_error() && cluster.breaker.on_5xx {
                    record_failure(&server, cluster);
                } else {
                    server.breaker.record_success();
                }
                route.metrics.observe(status.as_u16(), start.elapsed());
                if let Some(entry) = log.as_mut() {
                    entry.status = status.as_u16();
                    entry.upstream = Some(server.address.clone());
                    entry.retries = attempts - 1;
                }
                // Only hyper's client path carries upgrades (the direct path refuses a 101).
                let upstream_upgrade = (status == StatusCode::SWITCHING_PROTOCOLS
                    && on_client_upgrade.is_some())
                .then(|| hyper::upgrade::on(&mut resp));
                let set_cookie = match (&cluster.balancer, pinned) {
                    (Balancer::StickyCookie(s), Some(p)) if p != Some(idx) => s.set_cookie(idx),
                    _ => None,
                };
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers, upstream_upgrade.is_some());
                if ctx.edge.tls
                    && let Some(hsts) = &route.hsts
                {
                    parts
                        .headers
                        .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
                }
                if let Some(cookie) = set_cookie {
                    parts.headers.append(header::SET_COOKIE, cookie);
                }
                if let (Some(up), Some(_)) = (upstream_upgrade, on_client_upgrade) {
                    // The client connection hands its socket to the tunnel once hyper has
                    // written this 101 (see `listener`).
                    ctx.start_tunnel(Tunnel {
                        upstream: up,
                        claim,
                    });
                    let tail = Tail {
                        conn: None,
                        server: None,
                        log,
                    };
                    return Response::from_parts(parts, ProxyBody::empty().with_tail(Some(tail)));
                }
                let tail = Tail {
                    conn,
                    server: claim.disarm(),
                    log,
                };
                return Response::from_parts(parts, ProxyBody::upstream(body, Some(tail)));
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
    let (status, body) = last_error;
    route.metrics.observe(status.as_u16(), start.elapsed());
    if let Some(entry) = log.as_mut() {
        entry.retries = attempts.saturating_sub(1);
    }
    finish_error(status, body, log)
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

/// The URI to send upstream, or `None` when the incoming one can be reused untouched:
/// origin-form for HTTP/1.1 (prefix stripped when asked), absolute with `absolute_scheme`
/// for HTTP/2.
fn upstream_uri(
    uri: &Uri,
    route: &RouteRt,
    prefix_len: usize,
    absolute_scheme: Option<&str>,
    host: Option<&str>,
) -> Option<Uri> {
    let needs_strip = route.strip_prefix && prefix_len > 0;
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    let wants_absolute = absolute_scheme.is_some();
    let same_scheme = uri.scheme_str() == absolute_scheme;
    if !needs_strip && absolute == wants_absolute && (!absolute || same_scheme) {
        return None;
    }
    let path = if needs_strip {
        routing::strip(uri.path(), prefix_len)
    } else {
        uri.path()
    };
    let mut text = String::with_capacity(path.len() + 64);
    if let Some(scheme) = absolute_scheme {
        text.push_str(scheme);
        text.push_str("://");
        text.push_str(host.unwrap_or("localhost"));
    }
    text.push_str(path);
    if let Some(q) = uri.query() {
        text.push('?');
        text.push_str(q);
    }
    text.parse().ok()
}

/// A small plain-text answer generated by the proxy itself.
pub fn canned(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn finish_error(
    status: StatusCode,
    body: &'static str,
    log: Option<Box<Entry>>,
) -> Response<ProxyBody> {
    let mut log = log;
    if let Some(entry) = log.as_mut() {
        entry.status = status.as_u16();
    }
    with_log(canned(status, body), log)
}

/// Attaches the access-log entry to an answer the proxy made itself.
fn with_log(resp: Response<ProxyBody>, log: Option<Box<Entry>>) -> Response<ProxyBody> {
    match log {
        Some(entry) => resp.map(|b| {
            b.with_tail(Some(Tail {
                conn: None,
                server: None,
                log: Some(entry),
            }))
        }),
        None => resp,
    }
}
