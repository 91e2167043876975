//! Prometheus metrics kept in plain atomics (no registry lookups or label hashing per request)
//! and rendered in the text exposition format on scrape. Per-route counters are keyed by route
//! name and survive reloads.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::state::{Shared, Snapshot};

/// Histogram bucket upper bounds in microseconds.
const BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

pub struct RouteMetrics {
    pub name: String,
    /// Requests by status code (index = status - 100).
    status: Box<[AtomicU64]>,
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
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
}

/// Renders every metric in the Prometheus text format.
pub fn render(shared: &Shared, snap: &Snapshot) -> String {
    let m = &shared.metrics;
    let mut out = String::with_capacity(4096);
    let gauge = |out: &mut String, name: &str, kind: &str, help: &str, value: i64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        &mut out,
        "itsup_proxy_reload_success_total",
        "counter",
        "Config reloads applied.",
        m.reload_success_total.load(Ordering::Relaxed) as i64,
    );
    gauge(
        &mut out,
        "itsup_proxy_reload_failure_total",
        "counter",
        "Config reloads rejected (the running config was kept).",
        m.reload_failure_total.load(Ordering::Relaxed) as i64,
    );
    gauge(
        &mut out,
        "itsup_proxy_active_connections",
        "gauge",
        "Open client connections.",
        m.active_connections.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "itsup_proxy_connections_total",
        "counter",
        "Accepted client connections.",
        m.connections_total.load(Ordering::Relaxed) as i64,
    );
    gauge(
        &mut out,
        "itsup_proxy_active_tunnels",
        "gauge",
        "Open upgraded (WebSocket) tunnels.",
        m.active_tunnels.load(Ordering::Relaxed),
    );
    gauge(
        &mut out,
        "itsup_proxy_retries_total",
        "counter",
        "Upstream attempts beyond the first.",
        m.retries_total.load(Ordering::Relaxed) as i64,
    );

    let routes = shared.all_route_metrics();
    out.push_str("# HELP itsup_proxy_requests_total Requests by route and status.\n# TYPE itsup_proxy_requests_total counter\n");
    for r in &routes {
        for (i, c) in r.status.iter().enumerate() {
            let v = c.load(Ordering::Relaxed);
            if v > 0 {
                let _ = writeln!(
                    out,
                    "itsup_proxy_requests_total{{route=\"{}\",status=\"{}\"}} {v}",
                    escape(&r.name),
                    i + 100
                );
            }
        }
    }
    out.push_str("# HELP itsup_proxy_request_duration_seconds Time to the upstream response header.\n# TYPE itsup_proxy_request_duration_seconds histogram\n");
    for r in &routes {
        let name = escape(&r.name);
        let mut cumulative = 0;
        for (b, le) in r.buckets.iter().zip(BUCKETS_US) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "itsup_proxy_request_duration_seconds_bucket{{route=\"{name}\",le=\"{}\"}} {cumulative}",
                le as f64 / 1e6
            );
        }
        let count = r.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "itsup_proxy_request_duration_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "itsup_proxy_request_duration_seconds_sum{{route=\"{name}\"}} {}",
            r.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "itsup_proxy_request_duration_seconds_count{{route=\"{name}\"}} {count}"
        );
    }
    out.push_str("# HELP itsup_proxy_upstream_up Whether a server takes new traffic (ready, healthy, circuit closed).\n# TYPE itsup_proxy_upstream_up gauge\n");
    let mut lines = String::new();
    for c in &snap.clusters {
        for s in &c.servers {
            let labels = format!(
                "cluster=\"{}\",server=\"{}\"",
                escape(&c.name),
                escape(&s.address)
            );
            let _ = writeln!(
                out,
                "itsup_proxy_upstream_up{{{labels}}} {}",
                u8::from(s.up())
            );
            let _ = writeln!(
                lines,
                "itsup_proxy_upstream_inflight{{{labels}}} {}",
                s.inflight()
            );
            let _ = writeln!(
                lines,
                "itsup_proxy_upstream_requests_total{{{labels}}} {}",
                s.requests_total.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                lines,
                "itsup_proxy_upstream_failures_total{{{labels}}} {}",
                s.failures_total.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str("# TYPE itsup_proxy_upstream_inflight gauge\n# TYPE itsup_proxy_upstream_requests_total counter\n# TYPE itsup_proxy_upstream_failures_total counter\n");
    out.push_str(&lines);
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
