//! Prometheus metrics kept in plain atomics (no registry lookups or label hashing per request),
//! rendered on scrape by [`super::exposition`]. Per-route counters are keyed by route
//! name and survive reloads.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
