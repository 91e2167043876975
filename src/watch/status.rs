//! Serves the effective routes as JSON on a local port, so scripts (and `itsup hosts`) can ask
//! a running watcher what it routes without parsing its log.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use super::routes::Outcome;

/// What the status port reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// Rescans done (one per debounced batch of events).
    pub generation: u64,
    /// Docker events that could change routing.
    pub events: u64,
    /// HAProxy reloads requested.
    pub reloads: u64,
    /// Configs refused by `haproxy -c`.
    pub rejected: u64,
    /// Routes currently live in HAProxy.
    pub routes: Vec<super::routes::RouteView>,
    pub problems: Vec<super::routes::Problem>,
    /// Last check or reload error, if the latest state is not live.
    pub last_error: Option<String>,
}

impl Status {
    pub fn set_outcome(&mut self, outcome: &Outcome) {
        self.routes = outcome.routes.clone();
        self.problems = outcome.problems.clone();
    }
}

pub type Shared = Arc<Mutex<Status>>;

/// Binds now (so a bad address fails the command at once) and serves in the background.
pub async fn serve(addr: SocketAddr, status: Shared) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the status port {addr}: {e}"))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("status port: accept failed: {e}");
                    continue;
                }
            };
            let status = status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, status.clone()));
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!("status port: connection error: {e}");
                }
            });
        }
    });
    Ok(local)
}

async fn answer(
    req: Request<Incoming>,
    status: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.uri().path() {
        "/" | "/status" => {
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            serde_json::to_vec_pretty(&snapshot).ok()
        }
        "/routes" => {
            let routes = status.lock().map(|s| s.routes.clone()).unwrap_or_default();
            serde_json::to_vec_pretty(&routes).ok()
        }
        _ => None,
    };
    let response = match body {
        Some(json) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json))),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(
                b"not found: try /status or /routes\n",
            ))),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}
