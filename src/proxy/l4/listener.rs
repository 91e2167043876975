//! One TCP listener compiled from its `tcp:` entry at start: the SNI table, the catch-all
//! route, the trusted PROXY senders, timeouts, the connection slots and, for `terminate`
//! routes, the TLS acceptor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::sni::SniTable;
use crate::proxy::base::cidr::Cidrs;
use crate::proxy::base::config_l4::{TcpListener, TcpTlsMode};
use crate::proxy::runtime::metrics::{L4Metrics, L4RouteMetrics};

/// A route ready to serve.
pub struct Route {
    pub name: String,
    pub servers: Vec<String>,
    /// Round-robin position.
    next: AtomicUsize,
    pub proxy_protocol: Option<u8>,
    pub terminate: bool,
    pub allow: Cidrs,
    pub metrics: Arc<L4RouteMetrics>,
}

impl Route {
    /// The servers in the order to try them for the next connection.
    pub fn rotation(&self) -> impl Iterator<Item = &str> {
        let n = self.servers.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.servers
            .iter()
            .cycle()
            .skip(start)
            .take(self.servers.len())
            .map(String::as_str)
    }
}

/// A listener ready to serve.
pub struct Listener {
    pub address: String,
    pub sni: SniTable<Arc<Route>>,
    pub catch_all: Option<Arc<Route>>,
    /// Trusted PROXY senders and how long their header may take.
    pub trusted: Option<(Cidrs, Duration)>,
    pub connect: Duration,
    pub idle: Duration,
    pub hello: Duration,
    /// One permit per open connection (`max_connections`).
    pub slots: Arc<Semaphore>,
    /// TLS for `terminate` routes (no ALPN: the bytes inside are not HTTP).
    pub terminator: Option<TlsAcceptor>,
    /// A shared HTTPS port: connections for other names are served as HTTPS.
    pub https: bool,
}

impl Listener {
    pub fn build(
        cfg: &TcpListener,
        https: bool,
        terminator: Option<TlsAcceptor>,
        metrics: &L4Metrics,
    ) -> Result<Self, String> {
        let mut sni = Vec::new();
        let mut catch_all = None;
        for r in &cfg.routes {
            let route = Arc::new(Route {
                name: r.name.clone(),
                servers: r.servers.clone(),
                next: AtomicUsize::new(0),
                proxy_protocol: r.proxy_protocol,
                terminate: r.tls == TcpTlsMode::Terminate,
                allow: Cidrs::parse(&r.allow_source_ips)?,
                metrics: metrics.route(&r.name, "tcp"),
            });
            if r.sni.is_empty() {
                catch_all = Some(route);
            } else {
                sni.extend(r.sni.iter().map(|n| (n.clone(), route.clone())));
            }
        }
        let trusted = match &cfg.accept_proxy {
            Some(a) => Some((
                Cidrs::parse(&a.trusted)?,
                Duration::from_millis(a.timeout_ms),
            )),
            None => None,
        };
        let t = &cfg.timeouts;
        Ok(Self {
            address: cfg.address.clone(),
            sni: SniTable::new(sni.iter().map(|(n, r)| (n.as_str(), r.clone()))),
            catch_all,
            trusted,
            connect: Duration::from_millis(t.connect_ms),
            idle: Duration::from_millis(t.idle_ms),
            hello: Duration::from_millis(t.hello_ms),
            slots: Arc::new(Semaphore::new(cfg.max_connections)),
            terminator,
            https,
        })
    }

    /// A port whose only route takes every connection: forward at once, without waiting for
    /// the client to speak (server-first protocols: SMTP, MySQL, FTP).
    pub fn forwards_at_once(&self) -> bool {
        self.sni.is_empty() && !self.https && self.catch_all.is_some()
    }
}
