//! Shared runtime state: the current compiled config (`Snapshot`, swapped atomically with
//! arc-swap so requests read it without a lock) plus everything that must outlive a reload
//! (server states, per-route metrics, counters, the sticky secret).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::proxy::acme;
use crate::proxy::base::access_log::AccessLog;
use crate::proxy::base::config::{
    self, AllDownPolicy, CircuitBreaker, HealthCheck, ProxyConfig, UpstreamProtocol,
};
use crate::proxy::base::routing::RouteTable;
use crate::proxy::middleware::{Chain, Registry};
use crate::proxy::runtime::metrics::{Metrics, RouteMetrics};
use crate::proxy::tls::client::{ClientError, TlsClient};
use crate::proxy::upstream::health;
use crate::proxy::upstream::lb::Balancer;
use crate::proxy::upstream::server::ServerState;

pub struct RouteRt {
    pub name: Arc<str>,
    pub strip_prefix: bool,
    pub cluster: usize,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub metrics: Arc<RouteMetrics>,
    /// `Strict-Transport-Security` value for answers over TLS.
    pub hsts: Option<hyper::header::HeaderValue>,
    /// The route's middlewares, in order (empty: none).
    pub middlewares: Chain,
}

pub struct ClusterRt {
    pub name: String,
    pub servers: Vec<Arc<ServerState>>,
    pub weights: Vec<u32>,
    pub balancer: Balancer,
    pub when_all_down: AllDownPolicy,
    pub breaker: CircuitBreaker,
    pub protocol: UpstreamProtocol,
    pub health_check: Option<HealthCheck>,
    /// TLS to the servers, built from the cluster's `tls`.
    pub tls: Option<Arc<TlsClient>>,
}

pub struct Snapshot {
    pub config: ProxyConfig,
    pub table: RouteTable,
    pub routes: Vec<RouteRt>,
    pub clusters: Vec<ClusterRt>,
    pub trusted: Vec<IpNet>,
    pub access_log: Option<Arc<AccessLog>>,
    pub no_route: Arc<RouteMetrics>,
    /// Shortest upstream response timeout of any route (the supervisor's period follows it).
    pub shortest_response_ms: u64,
}

impl Snapshot {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.trusted.is_empty() && self.trusted.iter().any(|n| n.contains(&ip))
    }
}

pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub config_path: PathBuf,
    /// The certificate manager when `acme` is configured (set once at start): its HTTP-01
    /// answers and its metrics.
    pub(crate) acme: OnceLock<acme::Manager>,
    /// Compiled middlewares (kept across reloads while unchanged) and the shared Redis.
    pub middlewares: Registry,
    servers: Mutex<HashMap<(String, String), Arc<ServerState>>>,
    route_metrics: Mutex<HashMap<String, Arc<RouteMetrics>>>,
    health_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    secret: [u8; 32],
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Tls(#[from] ClientError),
}

/// The upstream TLS clients of every cluster with `tls` (reads CA and client certificate
/// files, so it can fail where the config itself was valid).
pub fn tls_clients(config: &ProxyConfig) -> Result<HashMap<String, Arc<TlsClient>>, ClientError> {
    let mut out = HashMap::new();
    for (name, c) in &config.clusters {
        if let Some(tls) = &c.tls {
            out.insert(
                name.clone(),
                Arc::new(TlsClient::build(name, tls, c.protocol)?),
            );
        }
    }
    Ok(out)
}

impl Shared {
    /// Compiles the first config. Must run inside the runtime (starts log writer and checks).
    pub fn new(config: ProxyConfig, config_path: &Path) -> Result<Arc<Self>, ClientError> {
        let tls = tls_clients(&config)?;
        let placeholder = Snapshot {
            config: config.clone(),
            table: RouteTable::new(std::iter::empty()),
            routes: Vec::new(),
            clusters: Vec::new(),
            trusted: Vec::new(),
            access_log: None,
            no_route: Arc::new(RouteMetrics::new("")),
            shortest_response_ms: u64::MAX,
        };
        let shared = Arc::new(Self {
            snapshot: ArcSwap::from_pointee(placeholder),
            metrics: Metrics::default(),
            config_path: config_path.to_path_buf(),
            acme: OnceLock::new(),
            middlewares: Registry::default(),
            servers: Mutex::default(),
            route_metrics: Mutex::default(),
            health_tasks: Mutex::default(),
            secret: rand::random(),
        });
        let snap = shared.compile(config, tls, None);
        shared.install(snap);
        Ok(shared)
    }

    /// Re-reads the config file; keeps the running config when it is invalid.
    pub fn reload(self: &Arc<Self>, reason: &str) -> Result<bool, ReloadError> {
        let loaded = config::load(&self.config_path)
            .map_err(ReloadError::from)
            .and_then(|cfg| Ok((tls_clients(&cfg)?, cfg)));
        match loaded {
            Ok((tls, cfg)) => {
                let current = self.snapshot.load();
                if cfg == current.config {
                    tracing::debug!(reason, "config unchanged, nothing to reload");
                    return Ok(false);
                }
                if cfg.listeners != current.config.listeners || cfg.admin != current.config.admin {
                    tracing::warn!("listener or admin address changes take effect after a restart");
                }
                if cfg.acme != current.config.acme {
                    tracing::warn!("acme changes take effect after a restart");
                }
                let snap = self.compile(cfg, tls, current.access_log.clone());
                drop(current);
                self.install(snap);
                self.metrics
                    .reload_success_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(reason, "config reloaded");
                Ok(true)
            }
            Err(e) => {
                // Logged before counting, so whoever sees the counter move finds the reason.
                tracing::error!(reason, error = %e, "reload rejected, keeping the running config");
                self.metrics
                    .reload_failure_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn install(self: &Arc<Self>, snap: Snapshot) {
        let snap = Arc::new(snap);
        self.snapshot.store(snap.clone());
        let handles = spawn_checks(&snap);
        if let Ok(mut tasks) = self.health_tasks.lock() {
            for old in tasks.drain(..) {
                old.abort();
            }
            *tasks = handles;
        }
    }

    fn compile(
        &self,
        config: ProxyConfig,
        mut tls: HashMap<String, Arc<TlsClient>>,
        previous_log: Option<Arc<AccessLog>>,
    ) -> Snapshot {
        let mut registry = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh_registry = HashMap::new();
        let mut cluster_index = HashMap::new();
        let mut clusters = Vec::new();
        for (name, c) in &config.clusters {
            let servers: Vec<Arc<ServerState>> = c
                .servers
                .iter()
                .map(|s| {
                    let key = (name.clone(), s.address.clone());
                    let state = registry
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(ServerState::new(name, &s.address)));
                    fresh_registry.insert(key, state.clone());
                    state
                })
                .collect();
            cluster_index.insert(name.clone(), clusters.len());
            clusters.push(ClusterRt {
                name: name.clone(),
                weights: c.servers.iter().map(|s| s.weight).collect(),
                balancer: Balancer::new(name, c, &self.secret),
                servers,
                when_all_down: c.when_all_down,
                breaker: c.circuit_breaker.clone(),
                protocol: c.protocol,
                health_check: c.health_check.clone(),
                tls: tls.remove(name),
            });
        }
        *registry = fresh_registry;
        drop(registry);

        let mut metrics = self.route_metrics.lock().unwrap_or_else(|p| p.into_inner());
        let mut metric_for = |name: &str| {
            metrics
                .entry(name.to_string())
                .or_insert_with(|| Arc::new(RouteMetrics::new(name)))
                .clone()
        };
        let t = &config.timeouts;
        let chains = self.middlewares.compile(&config);
        let routes: Vec<RouteRt> = config
            .routes
            .iter()
            .map(|r| {
                let name = r
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path));
                RouteRt {
                    metrics: metric_for(&name),
                    name: name.into(),
                    strip_prefix: r.strip_prefix,
                    cluster: cluster_index.get(&r.cluster).copied().unwrap_or(0),
                    connect_timeout: Duration::from_millis(
                        r.timeouts.connect_ms.unwrap_or(t.connect_ms),
                    ),
                    response_timeout: Duration::from_millis(
                        r.timeouts.response_ms.unwrap_or(t.response_ms),
                    ),
                    retries: r.retries,
                    hsts: r
                        .hsts
                        .as_ref()
                        .and_then(|h| hyper::header::HeaderValue::from_str(&h.value()).ok()),
                    middlewares: chains.chain(&r.middlewares),
                }
            })
            .collect();
        let no_route = metric_for("_no_route");
        drop(metrics);

        let access_log = match previous_log {
            Some(log) if log.settings == config.access_log => Some(log),
            _ => AccessLog::start(&config.access_log),
        };
        let shortest_response_ms = routes
            .iter()
            .map(|r| r.response_timeout.as_millis() as u64)
            .min()
            .unwrap_or(t.response_ms);
        Snapshot {
            shortest_response_ms,
            table: RouteTable::new(
                config
                    .routes
                    .iter()
                    .map(|r| (r.host.as_deref(), r.path.as_str())),
            ),
            routes,
            clusters,
            trusted: config
                .trusted_proxies
                .iter()
                .filter_map(|c| config::parse_cidr(c))
                .collect(),
            access_log,
            no_route,
            config,
        }
    }

    pub fn all_route_metrics(&self) -> Vec<Arc<RouteMetrics>> {
        let metrics = self.route_metrics.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = metrics.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// One health-check task per server of each cluster with a `health_check`.
fn spawn_checks(snap: &Snapshot) -> Vec<tokio::task::AbortHandle> {
    let mut handles = Vec::new();
    for cluster in &snap.clusters {
        let Some(hc) = &cluster.health_check else {
            // Without checks a server must not stay marked down by an earlier config.
            for s in &cluster.servers {
                s.set_healthy(true);
            }
            continue;
        };
        for server in &cluster.servers {
            handles.push(health::spawn_check(
                server.clone(),
                hc.clone(),
                cluster.protocol,
                cluster.tls.clone(),
                cluster.name.clone(),
            ));
        }
    }
    handles
}
