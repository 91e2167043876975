//! The proxy's own config file (`proxy.yml`): types, defaults, JSON Schema and semantic checks.
//!
//! These types are the contract with `itsup render` (engine `itsup`), which writes
//! `proxy/itsup/proxy.yml` from the Plan, so they stay plain data: every field is documented,
//! durations are integer milliseconds and nothing here depends on runtime state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::address::parse_cidr;
use super::address::{check_host_pattern, valid_host_port};
pub use super::config_acme::AcmeConfig;
pub use super::config_l4::{TcpListener, TcpRoute, TcpTlsMode, UdpListener};
pub use super::config_middleware::{Middleware, RedisConfig};
pub use super::config_tls::{CertPair, Hsts, ListenerTls, RedirectHttps, UnknownSni, UpstreamTls};

/// Root of `proxy.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Addresses that accept client traffic (HTTP/1.1 and h2c on the same port).
    /// Changing listeners needs a restart; a reload keeps the running sockets.
    pub listeners: Vec<Listener>,
    /// Local admin API (servers, drain/ready/maint, /metrics, /healthz, /status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
    /// Peers (CIDR or bare IP) whose `X-Forwarded-*`/`Forwarded` headers are believed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// Default timeouts; routes may override `connect_ms` and `response_ms`.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Limits on what clients may send.
    #[serde(default)]
    pub limits: Limits,
    /// JSON access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Routing rules. Host-specific routes win over wildcard routes, which win over routes
    /// without `host` (the default routes); inside a group the longest path prefix wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Upstream clusters by name.
    pub clusters: BTreeMap<String, Cluster>,
    /// Automatic certificates from an ACME CA (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeConfig>,
    /// TCP listeners and their routes (SNI or catch-all); see `config_l4`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpListener>,
    /// UDP ports forwarded per client session.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub udp: Vec<UdpListener>,
    /// Named middlewares that routes list in their `middlewares`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub middlewares: BTreeMap<String, Middleware>,
    /// Redis for state shared by every proxy using it: shared rate limits and the server
    /// admin states (drain/maint survive a restart). Absent: all state is local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
}

/// One client-facing listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `ip:port` to bind, e.g. `0.0.0.0:80`.
    pub address: String,
    /// Serve HTTPS here (HTTP/1.1 and HTTP/2 chosen by ALPN) instead of plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Answer plain HTTP on this listener with a redirect to HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<RedirectHttps>,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// `ip:port` to bind; keep it on a loopback or private address.
    pub address: String,
    /// Absolute path of a Unix socket serving the same API, for callers on the host (a folder
    /// mounted into the proxy's container), with file permissions instead of network exposure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

/// Timeouts in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TCP connect to an upstream server.
    pub connect_ms: u64,
    /// Receiving a complete request header from a client (also bounds idle time between
    /// HTTP/1 requests, which is what defeats slowloris).
    pub request_header_ms: u64,
    /// Waiting for the upstream response header once the request is sent.
    pub response_ms: u64,
    /// A client connection with no bytes in either direction is closed after this.
    pub idle_ms: u64,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_drain_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            request_header_ms: 10_000,
            response_ms: 30_000,
            idle_ms: 60_000,
            shutdown_drain_ms: 10_000,
        }
    }
}

/// Client input limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request header block accepted; bigger gets 431 (HTTP/1) or ends the
    /// connection (HTTP/2: the bound on decoded HPACK headers and CONTINUATION frames).
    pub max_header_bytes: usize,
    /// Streams one HTTP/2 client connection may have open at once.
    pub h2_max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            h2_max_concurrent_streams: 256,
        }
    }
}

/// Where access log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogTarget {
    /// No access log.
    #[default]
    Off,
    /// One JSON object per line on stdout.
    Stdout,
    /// Hourly files `log_yyyy_mm_dd_HH.log` (UTC) in `dir`.
    Files,
}

/// Access log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLog {
    /// Destination.
    pub target: AccessLogTarget,
    /// Directory for `files`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Hourly files older than this many hours are deleted.
    pub retention_hours: u32,
    /// Fraction of requests logged, 0.0 to 1.0 (deterministic: exactly every 1/rate-th).
    pub sample_rate: f64,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            target: AccessLogTarget::Off,
            dir: None,
            retention_hours: 168,
            sample_rate: 1.0,
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Name used in metrics and the access log; defaults to `host+path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Exact host (`app.example.com`) or wildcard (`*.example.com`, matches one or more labels
    /// in front of the suffix). Absent: a default route for any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path prefix, matched on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    #[serde(default = "default_path")]
    pub path: String,
    /// Remove `path` from the forwarded request path.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Cluster that serves this route.
    pub cluster: String,
    /// Per-route timeout overrides.
    #[serde(default)]
    pub timeouts: RouteTimeouts,
    /// Extra attempts on another server. Requests that never reached an upstream are always
    /// retryable; after the request went out only idempotent requests without a body are.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `Strict-Transport-Security` on this route's answers over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// Middlewares (names from the top-level `middlewares`) applied in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_retries() -> u32 {
    2
}

/// Route-level timeout overrides in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeouts {
    /// Overrides `timeouts.connect_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Overrides `timeouts.response_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<u64>,
}

/// Load-balancing algorithm of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LbAlgorithm {
    /// nginx's smooth weighted round robin (weights 5/1/1 give a a b a c a a).
    #[default]
    SmoothWeighted,
    /// Plain rotation, weights ignored.
    RoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Consistent hash ring on the client IP, or on `hash_header` when set.
    ConsistentHash,
    /// Pin a client to a server with a sealed cookie; smooth weighted for new clients.
    StickyCookie,
}

/// What to do when no server of a cluster is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AllDownPolicy {
    /// Answer 503.
    #[default]
    Unavailable,
    /// Ignore health and circuit state (not admin maint/drain) and try anyway.
    FailOpen,
}

/// Protocol spoken to the servers of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a keep-alive pool.
    #[default]
    Http1,
    /// HTTP/2 over cleartext (prior knowledge), one multiplexed connection per server.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`; needs the cluster's `tls`), one multiplexed connection per
    /// server.
    H2,
}

impl UpstreamProtocol {
    /// HTTP/2 (over TLS or not): one multiplexed connection per server.
    pub fn is_h2(self) -> bool {
        matches!(self, Self::H2c | Self::H2)
    }
}

/// An upstream cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Servers; at least one.
    pub servers: Vec<Server>,
    /// Load-balancing algorithm.
    #[serde(default)]
    pub lb: LbAlgorithm,
    /// For `consistent_hash`: hash this request header instead of the client IP (falls back
    /// to the client IP when the header is missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// For `sticky_cookie`.
    #[serde(default)]
    pub sticky: Sticky,
    /// Active HTTP health check; absent means servers count as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive ejection / circuit breaker driven by live traffic.
    #[serde(default)]
    pub circuit_breaker: CircuitBreaker,
    /// Policy when every server is down.
    #[serde(default)]
    pub when_all_down: AllDownPolicy,
    /// Upstream protocol.
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// TLS to the servers (HTTPS, HTTP/2 over TLS, mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `host:port` (an IP or a DNS name resolved on each new connection).
    pub address: String,
    /// Relative weight, 1 to 1000.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Sticky cookie settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Sticky {
    /// Cookie name.
    pub cookie: String,
    /// Secret that seals the cookie value; a random one per process when absent (cookies then
    /// stop matching after a restart, never after a reload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Default for Sticky {
    fn default() -> Self {
        Self {
            cookie: "itsup_sticky".to_string(),
            secret: None,
        }
    }
}

/// Active health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Path requested with GET.
    pub path: String,
    /// Time between checks.
    pub interval_ms: u64,
    /// A check slower than this fails.
    pub timeout_ms: u64,
    /// Consecutive successes that bring a server up.
    pub rise: u32,
    /// Consecutive failures that take a server down.
    pub fall: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/".to_string(),
            interval_ms: 2_000,
            timeout_ms: 1_000,
            rise: 2,
            fall: 3,
        }
    }
}

/// Passive ejection: a per-server circuit breaker fed by connect errors and 5xx answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit (0 disables passive ejection).
    pub consecutive_failures: u32,
    /// Count upstream 5xx answers as failures (connect errors and timeouts always count).
    pub on_5xx: bool,
    /// First ejection time; doubled on each re-open without a success in between.
    pub base_ejection_ms: u64,
    /// Upper bound of the ejection time.
    pub max_ejection_ms: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            on_5xx: true,
            base_ejection_ms: 1_000,
            max_ejection_ms: 60_000,
        }
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// YAML syntax or a value that does not fit the config types; every entry is
    /// `file:line:col: message`.
    #[error("{}", .errors.join("\n"))]
    Parse { path: String, errors: Vec<String> },
    /// Semantic rules broken; every entry is `file:line:col: path: message`.
    #[error("{path}: invalid config:\n  - {}", .errors.join("\n  - "))]
    Invalid { path: String, errors: Vec<String> },
}

/// JSON Schema of `proxy.yml` (for `itsup schema proxy` and editors).
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ProxyConfig)).unwrap_or(serde_json::Value::Null)
}

/// Reads, parses and checks a config file.
pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: display.clone(),
        source,
    })?;
    parse(&text, &display)
}

/// Parses and checks config text; `origin` names it in errors.
///
/// YAML goes through [`crate::yaml`] (the only place YAML crates are used), which gives the
/// value as JSON plus the line and column of every node, so every error names
/// `origin:line:col`.
pub fn parse(text: &str, origin: &str) -> Result<ProxyConfig, ConfigError> {
    let doc = crate::yaml::parse(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        errors: vec![format!(
            "{origin}:{}:{}: {}",
            e.pos.line, e.pos.col, e.message
        )],
    })?;
    let config: ProxyConfig = match ProxyConfig::deserialize(&doc.value) {
        Ok(c) => c,
        Err(e) => {
            return Err(ConfigError::Parse {
                path: origin.to_string(),
                errors: locate_type_errors(&doc, origin, &e),
            });
        }
    };
    let errors: Vec<String> = config
        .check()
        .into_iter()
        .map(|message| {
            let pos = doc.key_pos(&check_pointer(&message));
            format!("{origin}:{}:{}: {message}", pos.line, pos.col)
        })
        .collect();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid {
            path: origin.to_string(),
            errors,
        })
    }
}

/// serde_json does not say where a value failed, so the document is run through the JSON
/// Schema of the config (only on this error path), whose errors carry JSON pointers that map
/// to positions. If the schema has nothing to say, the serde message is reported at 1:1.
fn locate_type_errors(
    doc: &crate::yaml::Document,
    origin: &str,
    err: &serde_json::Error,
) -> Vec<String> {
    let schema = schema();
    let mut located: Vec<(crate::yaml::Pos, String)> = Vec::new();
    if let Ok(validator) = jsonschema::validator_for(&schema) {
        for e in validator.iter_errors(&doc.value) {
            let pointer = e.instance_path().as_str().to_string();
            match e.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for key in unexpected {
                        let at = format!("{pointer}/{}", crate::yaml::escape_pointer(key));
                        located.push((doc.key_pos(&at), format!("unknown field `{key}`")));
                    }
                }
                _ => {
                    let at = if pointer.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", pointer_to_path(&pointer))
                    };
                    located.push((doc.value_pos(&pointer), format!("{at}{e}")));
                }
            }
        }
    }
    match located.len() {
        // Nothing located: serde's own words at the top of the file.
        0 => located.push((crate::yaml::Pos { line: 1, col: 1 }, err.to_string())),
        // One problem: serde says it best (`unknown variant`, `expected u32`), the schema
        // says where.
        1 => {
            if let Some((_, message)) = located.first_mut() {
                let path = message
                    .split_once(": ")
                    .map(|(p, _)| p)
                    .filter(|p| !p.contains(' '));
                *message = match path {
                    Some(p) => format!("{p}: {err}"),
                    None => err.to_string(),
                };
            }
        }
        // Several: the schema's list, then serde's first complaint.
        _ => located.push((located[0].0, err.to_string())),
    }
    located.sort();
    located.dedup();
    located
        .into_iter()
        .map(|(pos, message)| format!("{origin}:{}:{}: {message}", pos.line, pos.col))
        .collect()
}

/// `/clusters/api/servers/0` -> `clusters.api.servers[0]` (the style of [`ProxyConfig::check`]).
fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// The JSON pointer named by a [`ProxyConfig::check`] message (`clusters.api.servers[1].weight:
/// ...` -> `/clusters/api/servers/1/weight`); the document falls back to the nearest ancestor.
fn check_pointer(message: &str) -> String {
    let path = message.split(": ").next().unwrap_or("");
    let mut pointer = String::new();
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            pointer.push('/');
            pointer.push_str(&crate::yaml::escape_pointer(name));
        }
        for index in indexes.split('[') {
            let index = index.trim_end_matches(']');
            if !index.is_empty() {
                pointer.push('/');
                pointer.push_str(index);
            }
        }
    }
    pointer
}

impl ProxyConfig {
    /// Semantic rules the schema cannot express; returns every problem at once.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.listeners.is_empty() {
            errors.push("listeners: at least one listener is required".to_string());
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.address.parse::<SocketAddr>().is_err() {
                errors.push(format!(
                    "listeners[{i}].address: `{}` is not ip:port",
                    l.address
                ));
            }
            super::config_tls::check_listener(
                i,
                l.tls.as_ref(),
                l.redirect_https.as_ref(),
                &mut errors,
            );
        }
        if let Some(admin) = &self.admin
            && admin.address.parse::<SocketAddr>().is_err()
        {
            errors.push(format!("admin.address: `{}` is not ip:port", admin.address));
        }
        if let Some(socket) = self.admin.as_ref().and_then(|a| a.socket.as_ref())
            && !socket.starts_with('/')
        {
            errors.push(format!("admin.socket: `{socket}` is not an absolute path"));
        }
        for (i, cidr) in self.trusted_proxies.iter().enumerate() {
            if parse_cidr(cidr).is_none() {
                errors.push(format!(
                    "trusted_proxies[{i}]: `{cidr}` is not a CIDR or IP"
                ));
            }
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("connect_ms", t.connect_ms),
            ("request_header_ms", t.request_header_ms),
            ("response_ms", t.response_ms),
            ("idle_ms", t.idle_ms),
        ] {
            if v == 0 {
                errors.push(format!("timeouts.{name}: must be > 0"));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            errors.push("limits.max_header_bytes: must be at least 8192".to_string());
        }
        if self.limits.h2_max_concurrent_streams == 0 {
            errors.push("limits.h2_max_concurrent_streams: must be > 0".to_string());
        }
        let log = &self.access_log;
        if !(0.0..=1.0).contains(&log.sample_rate) {
            errors.push("access_log.sample_rate: must be between 0 and 1".to_string());
        }
        if log.target == AccessLogTarget::Files && log.dir.as_deref().unwrap_or("").is_empty() {
            errors.push("access_log.dir: required when target is files".to_string());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            if !self.clusters.contains_key(&r.cluster) {
                errors.push(format!(
                    "routes[{i}].cluster: unknown cluster `{}`",
                    r.cluster
                ));
            }
            if !r.path.starts_with('/') {
                errors.push(format!("routes[{i}].path: `{}` must start with /", r.path));
            }
            if let Some(host) = &r.host
                && let Err(e) = check_host_pattern(host)
            {
                errors.push(format!("routes[{i}].host: {e}"));
            }
            if r.timeouts.connect_ms == Some(0) || r.timeouts.response_ms == Some(0) {
                errors.push(format!("routes[{i}].timeouts: must be > 0"));
            }
            let key = (
                r.host.as_deref().map(str::to_ascii_lowercase),
                r.path.trim_end_matches('/').to_string(),
            );
            if !seen.insert(key) {
                errors.push(format!(
                    "routes[{i}]: duplicate of an earlier route for host `{}` path `{}`",
                    r.host.as_deref().unwrap_or("*any*"),
                    r.path
                ));
            }
        }
        let refs: Vec<(usize, &[String])> = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.middlewares.as_slice()))
            .collect();
        super::config_middleware::check(&self.middlewares, self.redis.as_ref(), &refs, &mut errors);
        for (name, c) in &self.clusters {
            if c.servers.is_empty() {
                errors.push(format!(
                    "clusters.{name}.servers: at least one server is required"
                ));
            }
            let mut addrs = std::collections::HashSet::new();
            for (j, s) in c.servers.iter().enumerate() {
                if !valid_host_port(&s.address) {
                    errors.push(format!(
                        "clusters.{name}.servers[{j}].address: `{}` is not host:port",
                        s.address
                    ));
                }
                if !(1..=1000).contains(&s.weight) {
                    errors.push(format!(
                        "clusters.{name}.servers[{j}].weight: must be 1 to 1000"
                    ));
                }
                if !addrs.insert(s.address.as_str()) {
                    errors.push(format!(
                        "clusters.{name}.servers[{j}]: duplicate address `{}`",
                        s.address
                    ));
                }
            }
            if let Some(h) = &c.hash_header
                && hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err()
            {
                errors.push(format!(
                    "clusters.{name}.hash_header: `{h}` is not a header name"
                ));
            }
            if c.sticky.cookie.is_empty()
                || !c
                    .sticky
                    .cookie
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                errors.push(format!(
                    "clusters.{name}.sticky.cookie: use letters, digits, _ or -"
                ));
            }
            if let Some(hc) = &c.health_check {
                if !hc.path.starts_with('/') {
                    errors.push(format!(
                        "clusters.{name}.health_check.path: must start with /"
                    ));
                }
                if hc.interval_ms == 0 || hc.timeout_ms == 0 || hc.rise == 0 || hc.fall == 0 {
                    errors.push(format!(
                        "clusters.{name}.health_check: interval_ms, timeout_ms, rise and fall must be > 0"
                    ));
                }
            }
            super::config_tls::check_cluster(name, c.tls.as_ref(), &mut errors);
            match (c.protocol, &c.tls) {
                (UpstreamProtocol::H2, None) => errors.push(format!(
                    "clusters.{name}.protocol: h2 is HTTP/2 over TLS and needs `tls` (h2c is cleartext)"
                )),
                (UpstreamProtocol::H2c, Some(_)) => errors.push(format!(
                    "clusters.{name}.tls: h2c is cleartext; use protocol h2 for HTTP/2 over TLS"
                )),
                _ => {}
            }
            let cb = &c.circuit_breaker;
            if cb.base_ejection_ms == 0 || cb.max_ejection_ms < cb.base_ejection_ms {
                errors.push(format!(
                    "clusters.{name}.circuit_breaker: need 0 < base_ejection_ms <= max_ejection_ms"
                ));
            }
        }
        if let Some(acme) = &self.acme {
            errors.extend(acme.check());
        }
        let addresses = |tls: bool| -> Vec<&str> {
            self.listeners
                .iter()
                .filter(|l| l.tls.is_some() == tls)
                .map(|l| l.address.as_str())
                .collect()
        };
        super::config_l4::check(
            &self.tcp,
            &self.udp,
            &addresses(true),
            &addresses(false),
            &mut errors,
        );
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
listeners: [{address: "127.0.0.1:8080"}]
admin: {address: "127.0.0.1:9901"}
trusted_proxies: ["10.0.0.0/8", "192.168.1.1"]
routes:
  - {host: "app.example.com", path: "/api", strip_prefix: true, cluster: api, timeouts: {response_ms: 500}}
  - {host: "*.example.com", cluster: api}
  - {cluster: web}
clusters:
  api:
    lb: least_connections
    servers: [{address: "127.0.0.1:9000", weight: 2}, {address: "backend:9001"}]
    health_check: {path: /healthz, interval_ms: 500}
  web:
    servers: [{address: "127.0.0.1:9002"}]
"#;

    #[test]
    fn sample_parses_and_validates_against_the_schema() {
        let cfg = parse(SAMPLE, "sample").expect("valid sample");
        assert_eq!(cfg.routes.len(), 3);
        assert_eq!(cfg.clusters["api"].lb, LbAlgorithm::LeastConnections);
        let schema = schema();
        let instance = serde_json::to_value(&cfg).expect("serializable");
        let validator = jsonschema::validator_for(&schema).expect("schema compiles");
        assert!(validator.is_valid(&instance));
        let bad = serde_json::json!({"listeners": [], "clusters": {}, "bogus": 1});
        assert!(!validator.is_valid(&bad));
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let text = r#"
listeners: [{address: "nope"}]
routes: [{host: "a.*.com", path: "x", cluster: missing}]
clusters: {c: {servers: [{address: "h", weight: 0}]}}
"#;
        let Err(ConfigError::Invalid { errors, .. }) = parse(text, "t") else {
            panic!("expected invalid");
        };
        let all = errors.join("\n");
        for needle in [
            "listeners[0]",
            "unknown cluster",
            "must start with /",
            "leading `*.`",
            "not host:port",
            "weight",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            parse("listeners: []\nclusters: {}\nlistner: 1\n", "t").expect_err("unknown field");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let err = parse("listeners: []\nclusters: {}\nlistner: 1\n", "p.yml").expect_err("unknown");
        assert!(
            err.to_string()
                .contains("p.yml:3:1: unknown field `listner`"),
            "{err}"
        );

        let text = "listeners: [{address: \"127.0.0.1:1\"}]\nclusters:\n  c:\n    servers:\n      - {address: \"a:1\", weight: lots}\n";
        let err = parse(text, "p.yml").expect_err("type");
        assert!(err.to_string().contains("p.yml:5:"), "{err}");
        assert!(
            err.to_string().contains("clusters.c.servers[0].weight"),
            "{err}"
        );

        let err = parse("listeners: [\n", "p.yml").expect_err("syntax");
        assert!(err.to_string().starts_with("p.yml:"), "{err}");

        let text = "listeners: [{address: \"127.0.0.1:1\"}]\nclusters:\n  c:\n    servers:\n      - {address: \"a:1\"}\n      - {address: \"b:1\", weight: 0}\n";
        let Err(ConfigError::Invalid { errors, .. }) = parse(text, "p.yml") else {
            panic!("expected invalid");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("p.yml:6:"), "{errors:?}");
        assert!(
            errors[0].contains("clusters.c.servers[1].weight"),
            "{errors:?}"
        );
    }

    #[test]
    fn check_messages_map_to_pointers() {
        assert_eq!(
            check_pointer("listeners[0].address: x"),
            "/listeners/0/address"
        );
        assert_eq!(
            check_pointer("clusters.api.servers[1]: dup"),
            "/clusters/api/servers/1"
        );
        assert_eq!(
            pointer_to_path("/clusters/a/servers/0/weight"),
            "clusters.a.servers[0].weight"
        );
    }
}
