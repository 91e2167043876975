//! The `middlewares:` and `redis:` sections of `proxy.yml` and their checks: named
//! middlewares (IP allowlist, basic auth, security headers and CORS, redirects, prefix strip,
//! rate limiting, custom error pages) that routes list by name in `routes[].middlewares`,
//! and the optional Redis shared by every proxy pointing at it (rate-limit buckets, server
//! admin states). Plain data, like the rest of the config.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One middleware; exactly one kind per entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Middleware {
    /// Only clients (the real address, behind `trusted_proxies`) from these ranges; others
    /// get `403`.
    IpAllowList(IpAllowList),
    /// HTTP basic authentication against htpasswd lines; failures get `401`.
    BasicAuth(BasicAuth),
    /// Security headers on answers (HSTS, frame options, nosniff, CSP, ...) and CORS.
    Headers(SecurityHeaders),
    /// Redirect to another scheme (and port).
    RedirectScheme(RedirectScheme),
    /// Redirect URLs matching a regular expression.
    RedirectRegex(RedirectRegex),
    /// Remove the first matching prefix from the forwarded path.
    StripPrefix(StripPrefix),
    /// GCRA rate limiting; excess requests get `429` with `Retry-After`.
    RateLimit(RateLimit),
    /// Replace upstream answers of some statuses with a page of our own.
    Errors(ErrorPages),
}

impl Middleware {
    /// The kind's key in `proxy.yml`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::IpAllowList(_) => "ip_allow_list",
            Self::BasicAuth(_) => "basic_auth",
            Self::Headers(_) => "headers",
            Self::RedirectScheme(_) => "redirect_scheme",
            Self::RedirectRegex(_) => "redirect_regex",
            Self::StripPrefix(_) => "strip_prefix",
            Self::RateLimit(_) => "rate_limit",
            Self::Errors(_) => "errors",
        }
    }
}

/// `ip_allow_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpAllowList {
    /// CIDRs or bare IPs.
    pub source_range: Vec<String>,
}

/// `basic_auth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// htpasswd lines `user:hash`, the hash bcrypt (`$2y$`, `$2b$`, `$2a$`) or `{SHA}`.
    pub users: Vec<String>,
    /// Realm named in `WWW-Authenticate`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove the `Authorization` header before forwarding.
    #[serde(default)]
    pub remove_header: bool,
}

fn default_realm() -> String {
    "itsup".to_string()
}

/// `headers`: added to answers (and requests, for `custom_request_headers`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security: max-age=<sts_seconds>` (0: no header).
    pub sts_seconds: u64,
    /// Adds `includeSubDomains`.
    pub sts_include_subdomains: bool,
    /// Adds `preload`.
    pub sts_preload: bool,
    /// `X-Frame-Options` (`DENY`, `SAMEORIGIN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_options: Option<String>,
    /// `X-Content-Type-Options: nosniff`.
    pub content_type_nosniff: bool,
    /// `Content-Security-Policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_security_policy: Option<String>,
    /// `Referrer-Policy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<String>,
    /// Headers set on every answer (an empty value removes the header).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_response_headers: BTreeMap<String, String>,
    /// Headers set on every forwarded request (an empty value removes the header).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_request_headers: BTreeMap<String, String>,
    /// Cross-origin resource sharing; preflight `OPTIONS` requests are answered here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// CORS settings of `headers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Cors {
    /// Allowed origins (`*` for any).
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Methods` of preflight answers.
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers` of preflight answers.
    pub allow_headers: Vec<String>,
    /// `Access-Control-Expose-Headers`.
    pub expose_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
}

/// `redirect_scheme`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectScheme {
    /// `http` or `https`.
    pub scheme: String,
    /// Port of the target (left out of the URL when it is the scheme's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `301`/`308` instead of `302`/`307`.
    #[serde(default)]
    pub permanent: bool,
}

/// `redirect_regex`: matched against `scheme://host/path?query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectRegex {
    /// Regular expression (Rust `regex` syntax).
    pub regex: String,
    /// Target, with `$1`/`${name}` for the groups.
    pub replacement: String,
    /// `301`/`308` instead of `302`/`307`.
    #[serde(default)]
    pub permanent: bool,
}

/// `strip_prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StripPrefix {
    /// Prefixes tried in order; the first that matches is removed.
    pub prefixes: Vec<String>,
}

/// What a rate limit counts requests by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The real client address (behind `trusted_proxies`).
    #[default]
    ClientIp,
    /// One bucket for the whole route.
    Route,
    /// The value of this request header (requests without it share one bucket).
    Header(String),
}

/// What a shared rate limit does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailPolicy {
    /// Let requests through (counted).
    #[default]
    FailOpen,
    /// Answer `503` (counted).
    FailClosed,
}

/// `rate_limit`: `average` requests per `period_ms`, bursts of up to `burst`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per period.
    pub average: u64,
    /// The period of `average`, in milliseconds.
    #[serde(default = "default_period_ms")]
    pub period_ms: u64,
    /// Requests allowed at once above the sustained rate (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// What requests are counted by.
    #[serde(default)]
    pub key: RateKey,
    /// Most keys tracked in memory; beyond, new keys share one overflow bucket.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Keep the buckets in the `redis` of this config, shared by every proxy using it.
    #[serde(default)]
    pub shared: bool,
    /// For `shared`: what to do while Redis is unreachable.
    #[serde(default)]
    pub on_redis_error: FailPolicy,
}

fn default_period_ms() -> u64 {
    1_000
}

fn default_burst() -> u32 {
    1
}

fn default_max_keys() -> usize {
    100_000
}

/// `errors`: answers of these statuses get this page instead of the upstream's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorPages {
    /// Statuses (`404`) or ranges (`500-599`).
    pub status: Vec<String>,
    /// The page.
    pub body: String,
    /// Its `Content-Type`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
}

fn default_content_type() -> String {
    "text/html; charset=utf-8".to_string()
}

/// Redis for state shared between proxies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` (or `rediss://`).
    pub url: String,
    /// Prefix of every key this proxy writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// A Redis command slower than this counts as Redis unreachable.
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
}

fn default_prefix() -> String {
    "itsup:".to_string()
}

fn default_redis_timeout() -> u64 {
    250
}

/// `a-b` or `a` as an inclusive status range.
pub fn status_range(text: &str) -> Option<(u16, u16)> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some((a, b))
}

/// A CIDR or a bare IP (the forms `trusted_proxies` takes too).
fn is_cidr(text: &str) -> bool {
    text.parse::<ipnet::IpNet>().is_ok() || text.parse::<std::net::IpAddr>().is_ok()
}

/// Whether an htpasswd line is one `basic_auth` can verify; the problem otherwise.
pub fn htpasswd_problem(line: &str) -> Option<String> {
    let Some((user, hash)) = line.split_once(':') else {
        return Some("is not `user:hash`".into());
    };
    if user.is_empty() {
        return Some("has an empty user name".into());
    }
    if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
        return None;
    }
    if hash.starts_with("{SHA}") {
        return None;
    }
    Some(format!(
        "user `{user}`: only bcrypt (`$2y$`) and `{{SHA}}` hashes are supported"
    ))
}

/// Semantic checks of `middlewares`, `redis` and the routes' references; messages in the
/// `path: message` style of the config's other checks.
pub fn check(
    middlewares: &BTreeMap<String, Middleware>,
    redis: Option<&RedisConfig>,
    route_refs: &[(usize, &[String])],
    errors: &mut Vec<String>,
) {
    for (name, m) in middlewares {
        let at = format!("middlewares.{name}.{}", m.kind());
        check_one(&at, m, redis.is_some(), errors);
    }
    if let Some(r) = redis
        && !(r.url.starts_with("redis://") || r.url.starts_with("rediss://"))
    {
        errors.push(format!("redis.url: `{}` is not redis://host:port", r.url));
    }
    if redis.is_some_and(|r| r.timeout_ms == 0) {
        errors.push("redis.timeout_ms: must be > 0".into());
    }
    for (i, names) in route_refs {
        for (j, n) in names.iter().enumerate() {
            if !middlewares.contains_key(n) {
                errors.push(format!(
                    "routes[{i}].middlewares[{j}]: unknown middleware `{n}`"
                ));
            }
        }
    }
}

fn check_one(at: &str, m: &Middleware, has_redis: bool, errors: &mut Vec<String>) {
    match m {
        Middleware::IpAllowList(a) => {
            if a.source_range.is_empty() {
                errors.push(format!("{at}.source_range: at least one range is required"));
            }
            for (i, c) in a.source_range.iter().enumerate() {
                if !is_cidr(c) {
                    errors.push(format!("{at}.source_range[{i}]: `{c}` is not a CIDR or IP"));
                }
            }
        }
        Middleware::BasicAuth(b) => {
            if b.users.is_empty() {
                errors.push(format!("{at}.users: at least one user is required"));
            }
            for (i, line) in b.users.iter().enumerate() {
                if let Some(p) = htpasswd_problem(line) {
                    errors.push(format!("{at}.users[{i}]: {p}"));
                }
            }
            if b.realm.contains('"') {
                errors.push(format!("{at}.realm: must not contain `\"`"));
            }
        }
        Middleware::Headers(h) => check_headers(at, h, errors),
        Middleware::RedirectScheme(r) => {
            if r.scheme != "http" && r.scheme != "https" {
                errors.push(format!("{at}.scheme: `{}` is not http or https", r.scheme));
            }
        }
        Middleware::RedirectRegex(r) => {
            if let Err(e) = regex::Regex::new(&r.regex) {
                let first = e.to_string();
                let first = first.lines().last().unwrap_or("invalid");
                errors.push(format!("{at}.regex: not a regular expression ({first})"));
            }
        }
        Middleware::StripPrefix(s) => {
            if s.prefixes.is_empty() {
                errors.push(format!("{at}.prefixes: at least one prefix is required"));
            }
            for (i, p) in s.prefixes.iter().enumerate() {
                if !p.starts_with('/') {
                    errors.push(format!("{at}.prefixes[{i}]: `{p}` must start with /"));
                }
            }
        }
        Middleware::RateLimit(r) => {
            if r.average == 0 || r.average > u64::from(u32::MAX) {
                errors.push(format!("{at}.average: must be 1 to {}", u32::MAX));
            }
            if r.period_ms == 0 {
                errors.push(format!("{at}.period_ms: must be > 0"));
            }
            if r.burst == 0 {
                errors.push(format!("{at}.burst: must be at least 1"));
            }
            if r.max_keys == 0 {
                errors.push(format!("{at}.max_keys: must be > 0"));
            }
            if let RateKey::Header(h) = &r.key
                && hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err()
            {
                errors.push(format!("{at}.key: `{h}` is not a header name"));
            }
            if r.shared && !has_redis {
                errors.push(format!("{at}.shared: needs the top-level `redis`"));
            }
        }
        Middleware::Errors(e) => {
            if e.status.is_empty() {
                errors.push(format!("{at}.status: at least one status is required"));
            }
            for (i, s) in e.status.iter().enumerate() {
                if status_range(s).is_none() {
                    errors.push(format!(
                        "{at}.status[{i}]: `{s}` is not a status or a range like 500-599"
                    ));
                }
            }
            if hyper::header::HeaderValue::from_str(&e.content_type).is_err() {
                errors.push(format!("{at}.content_type: not a header value"));
            }
        }
    }
}

fn check_headers(at: &str, h: &SecurityHeaders, errors: &mut Vec<String>) {
    let value_ok = |v: &str| hyper::header::HeaderValue::from_str(v).is_ok();
    for (field, v) in [
        ("frame_options", &h.frame_options),
        ("content_security_policy", &h.content_security_policy),
        ("referrer_policy", &h.referrer_policy),
    ] {
        if let Some(v) = v
            && !value_ok(v)
        {
            errors.push(format!("{at}.{field}: not a header value"));
        }
    }
    for (field, map) in [
        ("custom_response_headers", &h.custom_response_headers),
        ("custom_request_headers", &h.custom_request_headers),
    ] {
        for (k, v) in map {
            if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err() || !value_ok(v) {
                errors.push(format!("{at}.{field}.{k}: not a header name and value"));
            }
        }
    }
    if let Some(c) = &h.cors {
        for (field, list) in [
            ("allow_origins", &c.allow_origins),
            ("allow_methods", &c.allow_methods),
            ("allow_headers", &c.allow_headers),
            ("expose_headers", &c.expose_headers),
        ] {
            if list.iter().any(|v| !value_ok(v) || v.contains(',')) {
                errors.push(format!("{at}.cors.{field}: one header value per entry"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_and_htpasswd_lines() {
        assert_eq!(status_range("500-599"), Some((500, 599)));
        assert_eq!(status_range("404"), Some((404, 404)));
        assert_eq!(status_range("599-500"), None);
        assert_eq!(status_range("x"), None);
        assert!(htpasswd_problem("a:$2y$05$abc").is_none());
        assert!(htpasswd_problem("a:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=").is_none());
        assert!(htpasswd_problem("a:$apr1$x$y").is_some_and(|p| p.contains("bcrypt")));
        assert!(htpasswd_problem("nocolon").is_some());
    }

    #[test]
    fn unknown_references_and_shared_without_redis_are_refused() {
        let mut m = BTreeMap::new();
        m.insert(
            "rl".to_string(),
            Middleware::RateLimit(RateLimit {
                average: 10,
                period_ms: 1000,
                burst: 0,
                key: RateKey::ClientIp,
                max_keys: 10,
                shared: true,
                on_redis_error: FailPolicy::FailOpen,
            }),
        );
        let refs = vec!["rl".to_string(), "nope".to_string()];
        let mut errors = Vec::new();
        check(&m, None, &[(0, &refs)], &mut errors);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("middlewares.rl.rate_limit.burst"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("middlewares.rl.rate_limit.shared"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e == "routes[0].middlewares[1]: unknown middleware `nope`")
        );
    }
}
