//! The request path as named phases over one per-request [`Exchange`] (Pingora's `ProxyHttp`
//! phases are the model): `begin` (snapshot, host, client address, access-log entry),
//! `early_answer` (ACME HTTP-01, the HTTPS redirect), `route`, `middlewares` (the route's
//! chain: allowlist, auth, rate limits, redirects, CORS preflights may answer here),
//! `upstream_request` (URI and header rewrite), the attempts with their retries
//! ([`super::attempt`]), then `respond` (response header rewrite, error pages, sticky cookie,
//! upgrade tunnel) or `fail`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Version};

use crate::proxy::base::config::UpstreamProtocol;
use crate::proxy::base::headers;
use crate::proxy::middleware::RequestView;
use crate::proxy::request::answer::{finish_error, from_middleware};
use crate::proxy::request::attempt::{self, Answered, Failed};
use crate::proxy::request::body::{ProxyBody, Tail};
use crate::proxy::request::challenge;
use crate::proxy::request::context::{ConnCtx, Tunnel};
use crate::proxy::request::exchange::{Exchange, Routed};
use crate::proxy::request::redirect;
use crate::proxy::request::rewrite;
use crate::proxy::upstream::lb::Balancer;

pub use crate::proxy::request::answer::canned;

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

/// The phases in order; each may end the request with an answer of its own.
async fn proxy(ctx: &ConnCtx, req: Request<Incoming>, h1: bool) -> Response<ProxyBody> {
    // A full Arc (not a guard) so the request keeps its config even if a reload swaps it.
    let snap = ctx.shared.snapshot.load_full();
    let mut ex = Exchange::begin(ctx, &snap, &req, h1);
    if let Some(resp) = ex.early_answer(&req) {
        return resp;
    }
    let routed = match ex.route(&req) {
        Ok(routed) => routed,
        Err(resp) => return resp,
    };
    if !routed.route.middlewares.is_empty()
        && let Err(resp) = ex.middlewares(&req, &routed).await
    {
        return resp;
    }
    let out = ex.upstream_request(req, &routed);
    match attempt::run(&ex, &routed, out.req, out.pinned, out.upgrade).await {
        Ok(answered) => ex.respond(&routed, answered, out.on_client_upgrade, out.pinned),
        Err(failed) => ex.fail(&routed, failed),
    }
}

/// The request as it goes upstream, with what the response phase needs to know about it.
struct Outbound {
    req: Request<Incoming>,
    upgrade: bool,
    on_client_upgrade: Option<OnUpgrade>,
    /// The sticky cookie's server (outer `Some` on sticky clusters).
    pinned: Option<Option<usize>>,
}

impl<'a> Exchange<'a> {
    /// Answers the proxy gives before routing: ACME HTTP-01 validations and the redirect of
    /// plain HTTP to HTTPS.
    fn early_answer(&mut self, req: &Request<Incoming>) -> Option<Response<ProxyBody>> {
        let shared = &self.ctx.shared;
        let resp = if let Some(resp) = challenge::answer(shared, req) {
            resp
        } else if let Some(port) = self.ctx.edge.redirect_https
            && redirect::applies(req.uri())
        {
            shared
                .metrics
                .https_redirects_total
                .fetch_add(1, Ordering::Relaxed);
            redirect::response(req.method(), self.host(), req.uri(), port)
        } else {
            return None;
        };
        Some(self.answer(resp))
    }

    /// The route for host and path, or `404`.
    #[allow(clippy::result_large_err)] // the error is the answer itself, returned at once
    fn route(&mut self, req: &Request<Incoming>) -> Result<Routed<'a>, Response<ProxyBody>> {
        let snap = self.snap;
        let Some(found) = snap.table.find(self.host(), req.uri().path()) else {
            snap.no_route.observe(404, self.start.elapsed());
            return Err(finish_error(
                StatusCode::NOT_FOUND,
                "no route\n",
                self.log.take(),
            ));
        };
        let route = &snap.routes[found.route];
        if let Some(entry) = self.log.as_mut() {
            entry.route = Some(route.name.to_string());
        }
        Ok(Routed {
            route,
            cluster: &snap.clusters[route.cluster],
            prefix_len: found.prefix_len,
        })
    }

    /// The route's middlewares on the request; an answer of theirs (403, 401, 429, a
    /// redirect, a CORS preflight) ends the request, counted on the route.
    async fn middlewares(
        &mut self,
        req: &Request<Incoming>,
        routed: &Routed<'_>,
    ) -> Result<(), Response<ProxyBody>> {
        let chain = &routed.route.middlewares;
        let view = RequestView {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            host: self.host(),
            client: self.client,
            tls: self.ctx.edge.tls,
        };
        match chain.on_request(&view).await {
            Ok(passed) => {
                self.passed = passed;
                Ok(())
            }
            Err(answer) => {
                let mut resp = from_middleware(answer);
                chain.on_response(resp.headers_mut(), &self.passed);
                routed
                    .route
                    .metrics
                    .observe(resp.status().as_u16(), self.start.elapsed());
                Err(self.answer(resp))
            }
        }
    }

    /// The URI, version and headers the upstream gets; takes the client's upgrade half.
    fn upstream_request(&self, mut req: Request<Incoming>, routed: &Routed<'_>) -> Outbound {
        let cluster = routed.cluster;
        let upgrade = req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers());
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
        if let Some(uri) = rewrite::upstream_uri(
            req.uri(),
            routed.route,
            routed.prefix_len,
            cluster.protocol.is_h2().then_some(scheme),
            self.host(),
        ) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = match cluster.protocol {
            UpstreamProtocol::Http1 => Version::HTTP_11,
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => Version::HTTP_2,
        };
        {
            let peer = &self.ctx.peer;
            let h = req.headers_mut();
            headers::strip_hop_by_hop(h, upgrade);
            headers::set_forwarded(
                h,
                peer,
                self.client,
                self.snap.is_trusted(peer.ip),
                self.host_value.as_ref().filter(|_| self.host().is_some()),
            );
            if cluster.protocol == UpstreamProtocol::Http1
                && !h.contains_key(header::HOST)
                && let Some(v) = self.host_value.clone()
            {
                h.insert(header::HOST, v);
            }
        }
        if !routed.route.middlewares.is_empty() {
            let (mut parts, body) = req.into_parts();
            routed
                .route
                .middlewares
                .rewrite_request(&mut parts.uri, &mut parts.headers);
            req = Request::from_parts(parts, body);
        }
        let pinned = match &cluster.balancer {
            Balancer::StickyCookie(s) => Some(s.pinned(req.headers())),
            _ => None,
        };
        Outbound {
            req,
            upgrade,
            on_client_upgrade,
            pinned,
        }
    }

    /// The upstream's answer to the client: metrics, log, response header rewrite (hop-by-hop,
    /// HSTS, sticky cookie) and, after a `101`, the tunnel.
    fn respond(
        mut self,
        routed: &Routed<'_>,
        answered: Answered,
        on_client_upgrade: Option<OnUpgrade>,
        pinned: Option<Option<usize>>,
    ) -> Response<ProxyBody> {
        let Answered {
            mut resp,
            conn,
            server,
            idx,
            claim,
            attempts,
        } = answered;
        let (route, cluster) = (routed.route, routed.cluster);
        let status = resp.status();
        route.metrics.observe(status.as_u16(), self.start.elapsed());
        if let Some(page) = route.middlewares.error_page(status) {
            // The upstream's body is dropped unread (its connection is not reused).
            drop((resp, conn, claim));
            if let Some(entry) = self.log.as_mut() {
                entry.upstream = Some(server.address.clone());
                entry.retries = attempts - 1;
            }
            let mut resp = from_middleware(page);
            route
                .middlewares
                .on_response(resp.headers_mut(), &self.passed);
            return self.answer(resp);
        }
        if let Some(entry) = self.log.as_mut() {
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
        if self.ctx.edge.tls
            && let Some(hsts) = &route.hsts
        {
            parts
                .headers
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if let Some(cookie) = set_cookie {
            parts.headers.append(header::SET_COOKIE, cookie);
        }
        if !route.middlewares.is_empty() {
            route
                .middlewares
                .on_response(&mut parts.headers, &self.passed);
        }
        let log = self.log.take();
        if let (Some(up), Some(_)) = (upstream_upgrade, on_client_upgrade) {
            // The client connection hands its socket to the tunnel once hyper has
            // written this 101 (see `listener`).
            self.ctx.start_tunnel(Tunnel {
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
        Response::from_parts(parts, ProxyBody::upstream(body, Some(tail)))
    }

    /// No usable upstream answer: the last error, counted on the route.
    fn fail(mut self, routed: &Routed<'_>, failed: Failed) -> Response<ProxyBody> {
        let Failed {
            status,
            body,
            attempts,
        } = failed;
        routed
            .route
            .metrics
            .observe(status.as_u16(), self.start.elapsed());
        if let Some(entry) = self.log.as_mut() {
            entry.retries = attempts.saturating_sub(1);
        }
        let chain = &routed.route.middlewares;
        if !chain.is_empty() {
            let mut resp = chain
                .error_page(status)
                .map(from_middleware)
                .unwrap_or_else(|| canned(status, body));
            chain.on_response(resp.headers_mut(), &self.passed);
            return self.answer(resp);
        }
        finish_error(status, body, self.log.take())
    }
}
