//! Prometheus metrics of the agent and the small HTTP server exposing them on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub r#type: &'static str,
}

/// Upper bounds of `check_duration_seconds`, from a fast local check to past the default deadline.
const BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<ResultLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub duration: Histogram,
    pub connections: Gauge,
    pub channels: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let duration = Histogram::new(BUCKETS);
        let connections = Gauge::default();
        let channels = Gauge::default();
        registry.register(
            "check_requests",
            "Agent-check lines answered, by verdict",
            requests.clone(),
        );
        registry.register(
            "check_errors",
            "Checks that got no health status, by cause",
            errors.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "Time from a complete request line to its reply",
            duration.clone(),
        );
        registry.register(
            "haproxy_connections_active",
            "Open agent-check connections",
            connections.clone(),
        );
        registry.register(
            "grpc_channels_active",
            "Cached gRPC channels to backends",
            channels.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            duration,
            connections,
            channels,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        out
    }
}

fn respond(metrics: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() == "/metrics" {
        (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics\n".to_owned(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Binds the metrics port; a failure is reported, not fatal (checks matter more than metrics).
pub async fn bind(addr: SocketAddr) -> Option<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(addr = %addr, error = %e, "cannot bind metrics port; running without /metrics");
            None
        }
    }
}

/// Serves `/metrics` until shutdown.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handler = move |req: Request<Incoming>| {
        let response = respond(&metrics, &req);
        async move { response }
    };
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    crate::http_serve::serve("agent metrics", listener, Default::default(), handler, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&ResultLabel { result: "up" })
            .inc();
        m.errors
            .get_or_create(&ErrorLabel { r#type: "timeout" })
            .inc();
        m.duration.observe(0.003);
        let text = m.encode();
        for want in [
            "check_requests_total{result=\"up\"} 1",
            "check_errors_total{type=\"timeout\"} 1",
            "check_duration_seconds_bucket{le=\"0.01\"} 1",
            "check_duration_seconds_bucket{le=\"2.0\"} 1",
            "haproxy_connections_active 0",
            "grpc_channels_active 0",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
