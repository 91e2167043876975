//! Prometheus metrics kept in plain atomics (no registry lookups or label hashing per request),
//! rendered on scrape by [`super::exposition`]. Per-route counters are keyed by route
//! name and survive reloads.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Histogram bucket upper bounds in microseconds.
pub(super) const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

pub struct RouteMetrics {
    pub name: String,
    /// Requests by status code (index = status - 100).
    pub(super) status: Box<[AtomicU64]>,
    pub(super) buckets: [AtomicU64; BUCKETS_US.len()],
    pub(super) count: AtomicU64,
    pub(super) sum_us: AtomicU64,
}

impl RouteMetrics {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            status: (100..600).map(|_| AtomicU64::new(0)).collect(),
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, status: u16, elapsed: Duration) {
        if let Some(c) = self.status.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let us = elapsed.as_micros() as u64;
        if let Some(b) = BUCKETS_US.iter().position(|&le| us <= le) {
            self.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub reload_success_total: AtomicU64,
    pub reload_failure_total: AtomicU64,
    pub active_connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub active_tunnels: AtomicI64,
    pub retries_total: AtomicU64,
    /// Plain HTTP requests answered with a redirect to HTTPS.
    pub https_redirects_total: AtomicU64,
    /// TLS handshakes by outcome.
    pub tls: TlsMetrics,
    /// HTTP/2 client connections the server closed with GOAWAY, by error code.
    pub h2_goaway: H2GoawayMetrics,
    /// The TCP and UDP listeners (`tcp:`/`udp:` sections).
    pub l4: L4Metrics,
}

/// HTTP/2 client connections closed by the server's GOAWAY (h2 enforces the limits; the
/// listener counts them), by the error code sent.
#[derive(Default)]
pub struct H2GoawayMetrics {
    /// Abuse: rapid reset (CVE-2023-44487), CONTINUATION flood, HPACK bomb (a decoded header
    /// list far past `limits.max_header_bytes`), too many streams refused.
    pub enhance_your_calm: AtomicU64,
    /// Malformed frames or header blocks.
    pub protocol_error: AtomicU64,
    /// Undecodable HPACK (or a header block too large even to skip).
    pub compression_error: AtomicU64,
    pub flow_control_error: AtomicU64,
    pub frame_size_error: AtomicU64,
    pub other: AtomicU64,
}

/// Counters of one TCP route or UDP port.
pub struct L4RouteMetrics {
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Connections (UDP: sessions) forwarded to the route.
    pub connections_total: AtomicU64,
    pub active: AtomicI64,
    /// Bytes from clients to servers.
    pub bytes_in: AtomicU64,
    /// Bytes from servers to clients.
    pub bytes_out: AtomicU64,
    /// Clients refused by `allow_source_ips`.
    pub denied: AtomicU64,
    /// Connections that found no server to connect to.
    pub connect_failures: AtomicU64,
    /// Connections closed after `idle_ms` without traffic.
    pub idle_timeouts: AtomicU64,
}

/// Layer-4 counters: per route, and what listeners refused before any route.
#[derive(Default)]
pub struct L4Metrics {
    routes: Mutex<Vec<Arc<L4RouteMetrics>>>,
    /// Connections closed at accept because `max_connections` were open.
    pub refused_max_connections: AtomicU64,
    /// ClientHellos naming no route on a port without a catch-all or HTTPS.
    pub no_route: AtomicU64,
    /// Garbage, truncated or late ClientHellos on ports routed by SNI.
    pub bad_hello: AtomicU64,
    /// PROXY headers refused: from an untrusted peer, malformed, or late.
    pub proxy_refused: AtomicU64,
    /// PROXY headers accepted from trusted senders.
    pub proxy_accepted: AtomicU64,
    /// UDP datagrams of new clients dropped because `max_sessions` were open.
    pub udp_sessions_refused: AtomicU64,
}

impl L4Metrics {
    /// The counters of a route (created on first use, kept for the process's life).
    pub fn route(&self, name: &str, protocol: &'static str) -> Arc<L4RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = routes
            .iter()
            .find(|r| r.name == name && r.protocol == protocol)
        {
            return r.clone();
        }
        let r = Arc::new(L4RouteMetrics {
            name: name.to_string(),
            protocol,
            connections_total: AtomicU64::new(0),
            active: AtomicI64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
        });
        routes.push(r.clone());
        r
    }

    pub fn routes(&self) -> Vec<Arc<L4RouteMetrics>> {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// TLS handshake outcomes on the client side (abuse shows up here: floods as `shed`, slow
/// handshakes as `timeout`, garbage and refused SNI as `failed`).
#[derive(Default)]
pub struct TlsMetrics {
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timeout: AtomicU64,
    /// Connections closed unanswered because `max_handshakes` were already running.
    pub handshakes_shed: AtomicU64,
    /// Handshakes running now.
    pub handshakes_active: AtomicI64,
    /// Sessions resumed (tickets or session ids).
    pub resumed: AtomicU64,
    /// Connections that negotiated HTTP/2 by ALPN.
    pub alpn_h2: AtomicU64,
}
