//! Layer 2b, middlewares: each route's [`Chain`] compiled from the `middlewares` of
//! `proxy.yml` ([`allow`]: IP allowlist, [`auth`]: basic auth, [`headers`]: security headers
//! and CORS, [`redirect`]: scheme and regex redirects, strip prefix, [`rate`]: GCRA rate
//! limits, custom error pages) and the optional [`redis`] shared by every proxy using it
//! (shared rate limits, server admin states). The request path runs a chain in three places:
//! [`Chain::on_request`] before any server is chosen (may answer instead),
//! [`Chain::rewrite_request`] on the request going upstream, [`Chain::on_response`] on the
//! answer. The [`Registry`] keeps compiled middlewares, their counters and rate-limit buckets
//! across reloads while their config is unchanged. Knows nothing of servers or snapshots.

pub mod allow;
pub mod auth;
pub mod headers;
pub mod rate;
pub mod redirect;
pub mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode, Uri};

use crate::proxy::base::config::ProxyConfig;
use crate::proxy::base::config_middleware::{
    ErrorPages, FailPolicy, Middleware, RateLimit, RedisConfig, status_range,
};

static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// An answer a middleware gives instead of forwarding.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub(crate) fn new(status: StatusCode, body: &'static str) -> Self {
        let mut headers = HeaderMap::new();
        if !body.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Self {
            status,
            headers,
            body: Bytes::from_static(body.as_bytes()),
        }
    }
}

/// Counters of one middleware (by name), for `/metrics`.
pub struct Stats {
    pub name: String,
    pub kind: &'static str,
    /// Requests it let through.
    pub passed: AtomicU64,
    /// Requests it answered itself (403, 401, 429, redirects, preflights, error pages).
    pub answered: AtomicU64,
    /// Shared rate limits: requests let through because Redis was unreachable.
    pub redis_fail_open: AtomicU64,
    /// Shared rate limits: requests refused because Redis was unreachable.
    pub redis_fail_closed: AtomicU64,
}

/// What a request looks like to the middlewares.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub host: Option<&'a str>,
    /// The real client (behind trusted proxies).
    pub client: IpAddr,
    pub tls: bool,
}

/// What the response side needs from the request side.
#[derive(Default)]
pub struct Passed {
    /// The request's `Origin`, kept when a CORS middleware will answer it.
    origin: Option<HeaderValue>,
}

struct Rate {
    local: rate::Local,
    rule: rate::KeyRule,
    shared: Option<Arc<redis::Redis>>,
    policy: FailPolicy,
    interval: Duration,
    burst: u32,
}

struct Errors {
    ranges: Vec<(u16, u16)>,
    content_type: HeaderValue,
    body: Bytes,
}

enum Kind {
    Allow(allow::Allow),
    Auth(auth::Auth),
    Headers(headers::Headers),
    Scheme(crate::proxy::base::config_middleware::RedirectScheme),
    Regex(Option<redirect::Regex>),
    Strip(Vec<String>),
    Rate(Box<Rate>),
    Errors(Errors),
}

/// One compiled middleware.
pub struct Compiled {
    config: Middleware,
    kind: Kind,
    pub stats: Arc<Stats>,
}

impl Compiled {
    /// Buckets tracked in memory and requests that fell into the overflow bucket (rate
    /// limits only).
    pub fn rate_keys(&self) -> Option<(usize, u64)> {
        match &self.kind {
            Kind::Rate(r) => Some((r.local.tracked(), r.local.overflowed())),
            _ => None,
        }
    }

    fn new(name: &str, config: &Middleware, redis: Option<&Arc<redis::Redis>>) -> Self {
        let kind = match config {
            Middleware::IpAllowList(c) => Kind::Allow(allow::Allow::new(c)),
            Middleware::BasicAuth(c) => Kind::Auth(auth::Auth::new(c)),
            Middleware::Headers(c) => Kind::Headers(headers::Headers::new(c)),
            Middleware::RedirectScheme(c) => Kind::Scheme(c.clone()),
            Middleware::RedirectRegex(c) => Kind::Regex(redirect::Regex::new(c)),
            Middleware::StripPrefix(c) => Kind::Strip(c.prefixes.clone()),
            Middleware::RateLimit(c) => Kind::Rate(Box::new(compile_rate(c, redis))),
            Middleware::Errors(c) => Kind::Errors(compile_errors(c)),
        };
        Self {
            config: config.clone(),
            kind,
            stats: Arc::new(Stats {
                name: name.to_string(),
                kind: config.kind(),
                passed: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                redis_fail_open: AtomicU64::new(0),
                redis_fail_closed: AtomicU64::new(0),
            }),
        }
    }

    /// This middleware's decision on a request: `None` lets it through.
    async fn decide(&self, v: &RequestView<'_>) -> Option<Answer> {
        match &self.kind {
            Kind::Allow(a) => {
                (!a.admits(v.client)).then(|| Answer::new(StatusCode::FORBIDDEN, "forbidden\n"))
            }
            Kind::Auth(a) => (!a.admits(v.headers)).then(|| {
                let mut answer = Answer::new(StatusCode::UNAUTHORIZED, "unauthorized\n");
                answer
                    .headers
                    .insert(header::WWW_AUTHENTICATE, a.challenge.clone());
                answer
            }),
            Kind::Headers(h) => h.preflight(v.method, v.headers),
            Kind::Scheme(c) => redirect::scheme(c, &target(v)),
            Kind::Regex(r) => r.as_ref().and_then(|r| r.apply(&target(v))),
            Kind::Strip(_) | Kind::Errors(_) => None,
            Kind::Rate(r) => self.rate_decision(r, v).await,
        }
    }

    async fn rate_decision(&self, r: &Rate, v: &RequestView<'_>) -> Option<Answer> {
        let key = rate::Key::of(&r.rule, v.client, v.headers);
        let wait = match &r.shared {
            None => r.local.check(&key).err(),
            Some(redis) => match redis
                .rate(&self.stats.name, &key.text(), r.interval, r.burst)
                .await
            {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::debug!(middleware = %self.stats.name, error = %e, "rate limit: redis unreachable");
                    return match r.policy {
                        FailPolicy::FailOpen => {
                            self.stats.redis_fail_open.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        FailPolicy::FailClosed => {
                            self.stats.redis_fail_closed.fetch_add(1, Ordering::Relaxed);
                            Some(Answer::new(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "rate limit unavailable\n",
                            ))
                        }
                    };
                }
            },
        };
        wait.map(|wait| {
            let mut answer = Answer::new(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
            // Whole seconds, rounded up: a client that waits this long is let through.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            answer
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            answer
        })
    }
}

fn target<'a>(v: &'a RequestView<'a>) -> redirect::Target<'a> {
    redirect::Target {
        method: v.method,
        uri: v.uri,
        host: v.host,
        tls: v.tls,
    }
}

fn compile_rate(c: &RateLimit, redis: Option<&Arc<redis::Redis>>) -> Rate {
    let average = c.average.max(1);
    Rate {
        local: rate::Local::new(c),
        rule: rate::KeyRule::new(&c.key),
        shared: if c.shared { redis.cloned() } else { None },
        policy: c.on_redis_error,
        interval: Duration::from_nanos(
            (u128::from(c.period_ms) * 1_000_000 / u128::from(average)).max(1) as u64,
        ),
        burst: c.burst.max(1),
    }
}

fn compile_errors(c: &ErrorPages) -> Errors {
    Errors {
        ranges: c.status.iter().filter_map(|s| status_range(s)).collect(),
        content_type: HeaderValue::from_str(&c.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("text/html; charset=utf-8")),
        body: Bytes::from(c.body.clone()),
    }
}

/// The middlewares of one route, in order.
#[derive(Default)]
pub struct Chain {
    items: Vec<Arc<Compiled>>,
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Runs the request side in order; the first middleware that answers ends the chain.
    pub async fn on_request(&self, v: &RequestView<'_>) -> Result<Passed, Answer> {
        let mut passed = Passed::default();
        for m in &self.items {
            if let Kind::Headers(h) = &m.kind
                && h.has_cors()
            {
                passed.origin = v.headers.get(header::ORIGIN).cloned();
            }
            match m.decide(v).await {
                None => {
                    m.stats.passed.fetch_add(1, Ordering::Relaxed);
                }
                Some(answer) => {
                    m.stats.answered.fetch_add(1, Ordering::Relaxed);
                    return Err(answer);
                }
            }
        }
        Ok(passed)
    }

    /// Changes to the request going upstream: prefixes stripped (with `X-Forwarded-Prefix`),
    /// custom request headers, the `Authorization` header removed when asked.
    pub fn rewrite_request(&self, uri: &mut Uri, headers: &mut HeaderMap) {
        for m in &self.items {
            match &m.kind {
                Kind::Strip(prefixes) => strip(prefixes, uri, headers),
                Kind::Headers(h) => {
                    for (name, value) in &h.request {
                        match value {
                            Some(v) => {
                                headers.insert(name.clone(), v.clone());
                            }
                            None => {
                                headers.remove(name);
                            }
                        }
                    }
                }
                Kind::Auth(a) if a.remove_header => {
                    headers.remove(header::AUTHORIZATION);
                }
                _ => {}
            }
        }
    }

    /// A custom error page for an upstream answer with this status.
    pub fn error_page(&self, status: StatusCode) -> Option<Answer> {
        let code = status.as_u16();
        self.items.iter().find_map(|m| match &m.kind {
            Kind::Errors(e) if e.ranges.iter().any(|(a, b)| (*a..=*b).contains(&code)) => {
                m.stats.answered.fetch_add(1, Ordering::Relaxed);
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, e.content_type.clone());
                Some(Answer {
                    status,
                    headers,
                    body: e.body.clone(),
                })
            }
            _ => None,
        })
    }

    /// Headers added to every answer of the route (upstream's or a middleware's).
    pub fn on_response(&self, out: &mut HeaderMap, passed: &Passed) {
        for m in &self.items {
            if let Kind::Headers(h) = &m.kind {
                h.apply(out, passed.origin.as_ref());
            }
        }
    }
}

/// Removes the first matching prefix (on whole segments) from the path.
fn strip(prefixes: &[String], uri: &mut Uri, headers: &mut HeaderMap) {
    let path = uri.path();
    let Some(prefix) = prefixes.iter().map(|p| p.trim_end_matches('/')).find(|p| {
        !p.is_empty()
            && path.starts_with(p)
            && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
    }) else {
        return;
    };
    let rest = &path[prefix.len()..];
    let mut text = String::with_capacity(path.len());
    text.push_str(if rest.is_empty() { "/" } else { rest });
    if let Some(q) = uri.query() {
        text.push('?');
        text.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = text.parse().ok();
    if let Ok(stripped) = Uri::from_parts(parts)
        && let Ok(v) = HeaderValue::from_str(prefix)
    {
        *uri = stripped;
        headers.insert(X_FORWARDED_PREFIX.clone(), v);
    }
}

/// Compiled middlewares by name, kept across reloads while their config (and the Redis
/// config) is unchanged, so rate-limit buckets and counters survive a reload.
#[derive(Default)]
pub struct Registry {
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    redis: Mutex<Option<(RedisConfig, Arc<redis::Redis>)>>,
}

impl Registry {
    /// Compiles a config's middlewares; returns the chain builder for its routes.
    pub fn compile(&self, config: &ProxyConfig) -> Compiler {
        let redis = self.redis_for(config.redis.as_ref());
        let mut map = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = HashMap::new();
        for (name, m) in &config.middlewares {
            let reuse = map
                .get(name)
                .filter(|c| c.config == *m && !redis_changed(c, redis.as_ref()))
                .cloned();
            let compiled =
                reuse.unwrap_or_else(|| Arc::new(Compiled::new(name, m, redis.as_ref())));
            fresh.insert(name.clone(), compiled);
        }
        *map = fresh.clone();
        Compiler { compiled: fresh }
    }

    fn redis_for(&self, config: Option<&RedisConfig>) -> Option<Arc<redis::Redis>> {
        let mut slot = self.redis.lock().unwrap_or_else(|p| p.into_inner());
        match (config, slot.as_ref()) {
            (None, _) => {
                *slot = None;
                None
            }
            (Some(c), Some((old, r))) if old == c => Some(r.clone()),
            (Some(c), _) => {
                let r = Arc::new(redis::Redis::new(c)?);
                *slot = Some((c.clone(), r.clone()));
                Some(r)
            }
        }
    }

    /// The Redis of the current config, if any.
    pub(crate) fn redis(&self) -> Option<Arc<redis::Redis>> {
        self.redis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, r)| r.clone())
    }

    /// Every compiled middleware, by name.
    pub fn all(&self) -> Vec<Arc<Compiled>> {
        let map = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| a.stats.name.cmp(&b.stats.name));
        all
    }
}

/// A shared rate limit compiled against another Redis must be rebuilt.
fn redis_changed(c: &Compiled, redis: Option<&Arc<redis::Redis>>) -> bool {
    match &c.kind {
        Kind::Rate(r) => match (&r.shared, redis) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, _) => false,
            (Some(_), None) => true,
        },
        _ => false,
    }
}

/// Builds route chains from one compile.
pub struct Compiler {
    compiled: HashMap<String, Arc<Compiled>>,
}

impl Compiler {
    pub fn chain(&self, names: &[String]) -> Chain {
        Chain {
            items: names
                .iter()
                .filter_map(|n| self.compiled.get(n).cloned())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_prefix_on_whole_segments_keeps_the_query() {
        let mut headers = HeaderMap::new();
        let mut uri: Uri = "/api/v1/x?q=1".parse().expect("uri");
        strip(&["/api".into()], &mut uri, &mut headers);
        assert_eq!(uri, "/v1/x?q=1");
        assert_eq!(headers[&X_FORWARDED_PREFIX], "/api");
        let mut uri: Uri = "/apix".parse().expect("uri");
        strip(&["/api".into()], &mut uri, &mut headers);
        assert_eq!(uri, "/apix");
        let mut uri: Uri = "http://h/api".parse().expect("uri");
        strip(&["/api/".into()], &mut uri, &mut headers);
        assert_eq!(uri, "http://h/");
    }
}
