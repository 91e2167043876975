//! The Prometheus text exposition of the proxy's metrics, rendered on scrape from the
//! counters in [`super::metrics`] and the current snapshot.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::proxy::acme::SetStats;
use crate::proxy::runtime::metrics::BUCKETS_US;
use crate::proxy::runtime::state::{Shared, Snapshot};

/// One unlabelled sample with its HELP and TYPE lines.
fn gauge(out: &mut String, name: &str, kind: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Renders every metric in the Prometheus text format.
pub fn render(shared: &Shared, snap: &Snapshot) -> String {
    let m = &shared.metrics;
    let mut out = String::with_capacity(4096);
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
    gauge(
        &mut out,
        "itsup_proxy_https_redirects_total",
        "counter",
        "Plain HTTP requests redirected to HTTPS.",
        m.https_redirects_total.load(Ordering::Relaxed) as i64,
    );
    tls_metrics(&mut out, &m.tls);
    h2_goaway_metrics(&mut out, &m.h2_goaway);
    l4_metrics(&mut out, &m.l4);
    middleware_metrics(&mut out, shared);

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
    if let Some(acme) = shared.acme.get() {
        render_acme(&mut out, &acme.stats());
    }
    out
}

/// The certificate manager's metrics, one series per name set (`names` label).
fn render_acme(out: &mut String, sets: &[Arc<SetStats>]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let valid = sets
        .iter()
        .filter(|s| s.not_after.load(Ordering::Relaxed) > now)
        .count();
    let _ = writeln!(
        out,
        "# HELP itsup_proxy_acme_certificates Name sets with a valid certificate.\n# TYPE itsup_proxy_acme_certificates gauge\nitsup_proxy_acme_certificates {valid}"
    );
    type Field = fn(&SetStats) -> i64;
    let series: [(&str, &str, &str, Field); 5] = [
        (
            "itsup_proxy_acme_orders_total",
            "counter",
            "ACME orders placed.",
            |s| s.orders.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_acme_order_failures_total",
            "counter",
            "ACME orders (or account look-ups) that failed.",
            |s| s.failures.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_acme_consecutive_failures",
            "gauge",
            "Failures since the last certificate; the retry backoff doubles with each.",
            |s| s.consecutive_failures.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_acme_certificate_not_after_seconds",
            "gauge",
            "Expiry of the certificate in use (Unix time; 0 = none).",
            |s| s.not_after.load(Ordering::Relaxed),
        ),
        (
            "itsup_proxy_acme_next_attempt_seconds",
            "gauge",
            "When the next order is due: renewal or retry (Unix time).",
            |s| s.next_attempt.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in sets {
            let _ = writeln!(out, "{name}{{names=\"{}\"}} {}", escape(&s.names), field(s));
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The client-side TLS counters.
fn tls_metrics(out: &mut String, t: &super::metrics::TlsMetrics) {
    out.push_str("# HELP itsup_proxy_tls_handshakes_total TLS handshakes by result (shed: over max_handshakes).\n# TYPE itsup_proxy_tls_handshakes_total counter\n");
    for (result, c) in [
        ("ok", &t.handshakes_ok),
        ("failed", &t.handshakes_failed),
        ("timeout", &t.handshakes_timeout),
        ("shed", &t.handshakes_shed),
    ] {
        let _ = writeln!(
            out,
            "itsup_proxy_tls_handshakes_total{{result=\"{result}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    gauge(
        out,
        "itsup_proxy_tls_handshakes_active",
        "gauge",
        "TLS handshakes in progress.",
        t.handshakes_active.load(Ordering::Relaxed),
    );
    gauge(
        out,
        "itsup_proxy_tls_resumed_total",
        "counter",
        "TLS sessions resumed.",
        t.resumed.load(Ordering::Relaxed) as i64,
    );
    gauge(
        out,
        "itsup_proxy_tls_alpn_h2_total",
        "counter",
        "TLS connections that chose HTTP/2 by ALPN.",
        t.alpn_h2.load(Ordering::Relaxed) as i64,
    );
}

/// HTTP/2 connections closed by the server, by the error code of its GOAWAY.
fn h2_goaway_metrics(out: &mut String, g: &super::metrics::H2GoawayMetrics) {
    out.push_str("# HELP itsup_proxy_h2_goaway_total HTTP/2 client connections closed by the proxy's GOAWAY, by error code (enhance_your_calm: abuse).\n# TYPE itsup_proxy_h2_goaway_total counter\n");
    for (reason, c) in [
        ("enhance_your_calm", &g.enhance_your_calm),
        ("protocol_error", &g.protocol_error),
        ("compression_error", &g.compression_error),
        ("flow_control_error", &g.flow_control_error),
        ("frame_size_error", &g.frame_size_error),
        ("other", &g.other),
    ] {
        let _ = writeln!(
            out,
            "itsup_proxy_h2_goaway_total{{reason=\"{reason}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
}

/// The TCP/UDP listeners' counters: per route (`route`, `protocol` labels), then what the
/// listeners refused before choosing a route (`reason` label).
fn l4_metrics(out: &mut String, l4: &super::metrics::L4Metrics) {
    type Field = fn(&super::metrics::L4RouteMetrics) -> i64;
    let series: [(&str, &str, &str, Field); 7] = [
        (
            "itsup_proxy_l4_connections_total",
            "counter",
            "Connections (UDP: sessions) forwarded per route.",
            |r| r.connections_total.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_l4_active_connections",
            "gauge",
            "Open connections (UDP: sessions) per route.",
            |r| r.active.load(Ordering::Relaxed),
        ),
        (
            "itsup_proxy_l4_received_bytes_total",
            "counter",
            "Bytes from clients to servers per route.",
            |r| r.bytes_in.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_l4_sent_bytes_total",
            "counter",
            "Bytes from servers to clients per route.",
            |r| r.bytes_out.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_l4_denied_total",
            "counter",
            "Clients refused by allow_source_ips per route.",
            |r| r.denied.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_l4_connect_failures_total",
            "counter",
            "Connections that reached no server per route.",
            |r| r.connect_failures.load(Ordering::Relaxed) as i64,
        ),
        (
            "itsup_proxy_l4_idle_timeouts_total",
            "counter",
            "Connections closed by idle_ms per route.",
            |r| r.idle_timeouts.load(Ordering::Relaxed) as i64,
        ),
    ];
    let routes = l4.routes();
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in &routes {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\",protocol=\"{}\"}} {}",
                escape(&r.name),
                r.protocol,
                field(r)
            );
        }
    }
    out.push_str("# HELP itsup_proxy_l4_refused_total Connections or datagrams refused before a route was chosen.\n# TYPE itsup_proxy_l4_refused_total counter\n");
    for (reason, c) in [
        ("max_connections", &l4.refused_max_connections),
        ("no_route", &l4.no_route),
        ("bad_hello", &l4.bad_hello),
        ("proxy_header", &l4.proxy_refused),
        ("max_sessions", &l4.udp_sessions_refused),
    ] {
        let _ = writeln!(
            out,
            "itsup_proxy_l4_refused_total{{reason=\"{reason}\"}} {}",
            c.load(Ordering::Relaxed)
        );
    }
    gauge(
        out,
        "itsup_proxy_l4_proxy_headers_total",
        "counter",
        "PROXY protocol headers accepted from trusted senders.",
        l4.proxy_accepted.load(Ordering::Relaxed) as i64,
    );
}

/// Per-middleware outcomes, rate-limit key tracking and Redis failures.
fn middleware_metrics(out: &mut String, shared: &Shared) {
    let all = shared.middlewares.all();
    if let Some(redis) = shared.middlewares.redis() {
        gauge(
            out,
            "itsup_proxy_redis_errors_total",
            "counter",
            "Redis commands that failed (unreachable, timeout, error).",
            redis.errors.load(Ordering::Relaxed) as i64,
        );
    }
    if all.is_empty() {
        return;
    }
    out.push_str("# HELP itsup_proxy_middleware_requests_total Requests by middleware and outcome (passed, answered: refused, redirected or replaced; redis_fail_open/redis_fail_closed: decided by the policy while Redis was unreachable).\n# TYPE itsup_proxy_middleware_requests_total counter\n");
    for m in &all {
        let s = &m.stats;
        for (outcome, v) in [
            ("passed", &s.passed),
            ("answered", &s.answered),
            ("redis_fail_open", &s.redis_fail_open),
            ("redis_fail_closed", &s.redis_fail_closed),
        ] {
            let _ = writeln!(
                out,
                "itsup_proxy_middleware_requests_total{{middleware=\"{}\",kind=\"{}\",outcome=\"{outcome}\"}} {}",
                s.name,
                s.kind,
                v.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str("# HELP itsup_proxy_rate_limit_tracked_keys Rate-limit buckets held in memory.\n# TYPE itsup_proxy_rate_limit_tracked_keys gauge\n");
    for m in &all {
        if let Some((tracked, _)) = m.rate_keys() {
            let _ = writeln!(
                out,
                "itsup_proxy_rate_limit_tracked_keys{{middleware=\"{}\"}} {tracked}",
                m.stats.name
            );
        }
    }
    out.push_str("# HELP itsup_proxy_rate_limit_overflow_total Requests counted in the shared overflow bucket because max_keys were tracked.\n# TYPE itsup_proxy_rate_limit_overflow_total counter\n");
    for m in &all {
        if let Some((_, overflow)) = m.rate_keys() {
            let _ = writeln!(
                out,
                "itsup_proxy_rate_limit_overflow_total{{middleware=\"{}\"}} {overflow}",
                m.stats.name
            );
        }
    }
}
