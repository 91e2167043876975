//! Active health checks: one task per server of each cluster with a `health_check`, doing a
//! GET on a fresh connection every interval; `rise` successes in a row mark the server up,
//! `fall` failures in a row mark it down. Tasks are restarted on reload; the health flag
//! itself lives in the server state and carries over.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper::{Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::proxy::base::config::{HealthCheck, UpstreamProtocol};
use crate::proxy::tls::client::TlsClient;
use crate::proxy::upstream::pool::{ConnectError, connect};
use crate::proxy::upstream::server::ServerState;

/// Starts the check loop of one server; the caller aborts it on the next reload.
pub fn spawn_check(
    server: Arc<ServerState>,
    hc: HealthCheck,
    protocol: UpstreamProtocol,
    tls: Option<Arc<TlsClient>>,
    cluster: String,
) -> tokio::task::AbortHandle {
    tokio::spawn(check_loop(server, hc, protocol, tls, cluster)).abort_handle()
}

async fn check_loop(
    server: Arc<ServerState>,
    hc: HealthCheck,
    protocol: UpstreamProtocol,
    tls: Option<Arc<TlsClient>>,
    cluster: String,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(hc.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut ok_streak, mut fail_streak) = (0u32, 0u32);
    loop {
        interval.tick().await;
        let timeout = Duration::from_millis(hc.timeout_ms);
        let result = tokio::time::timeout(
            timeout,
            probe(&server, &hc.path, protocol, tls.as_deref(), timeout),
        )
        .await;
        let ok = match result {
            Ok(Ok(status)) => (200..400).contains(&status),
            _ => false,
        };
        if ok {
            ok_streak += 1;
            fail_streak = 0;
            if ok_streak >= hc.rise && server.set_healthy(true) {
                tracing::info!(cluster, server = %server.address, "health check: server up");
            }
        } else {
            fail_streak += 1;
            ok_streak = 0;
            if fail_streak >= hc.fall && server.set_healthy(false) {
                tracing::warn!(cluster, server = %server.address, "health check: server down");
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Connect(#[from] crate::proxy::upstream::pool::ConnectError),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
}

async fn probe(
    server: &ServerState,
    path: &str,
    protocol: UpstreamProtocol,
    tls: Option<&TlsClient>,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    let stream = connect(&server.address, server.socket_addr, timeout).await?;
    let Some(tls) = tls else {
        return probe_on(stream, server, path, protocol, "http").await;
    };
    let name = tls
        .server_name(&server.address)
        .ok_or_else(|| ConnectError::ServerName(server.address.clone()))?;
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, stream)
        .await
        .map_err(|error| ConnectError::Tls {
            server: server.address.clone(),
            error,
        })?;
    probe_on(stream, server, path, protocol, "https").await
}

async fn probe_on<S>(
    stream: S,
    server: &ServerState,
    path: &str,
    protocol: UpstreamProtocol,
    scheme: &str,
) -> Result<u16, ProbeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    match protocol {
        UpstreamProtocol::Http1 => {
            let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(io).await?;
            tokio::spawn(conn);
            let req = Request::get(path)
                .header(header::HOST, server.address.as_str())
                .header(header::USER_AGENT, "itsup-proxy-health")
                .header(header::CONNECTION, "close")
                .body(Empty::new())?;
            Ok(sender.send_request(req).await?.status().as_u16())
        }
        UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
            let (mut sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake::<_, Empty<Bytes>>(io)
                .await?;
            tokio::spawn(conn);
            let uri = format!("{scheme}://{}{}", server.address, path);
            let req = Request::get(uri)
                .header(header::USER_AGENT, "itsup-proxy-health")
                .body(Empty::new())?;
            Ok(sender.send_request(req).await?.status().as_u16())
        }
    }
}
