//! Serves the effective routes as JSON on a local port, so scripts (and `itsup hosts`) can ask
//! a running watcher what it routes without parsing its log.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::TcpListener;

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
    pub problems: Vec<super::routes::ContainerIssue>,
    /// Last check or reload error, if the latest state is not live.
    pub last_error: Option<String>,
}

pub type Shared = Arc<Mutex<Status>>;

/// Binds now (so a bad address fails the command at once) and serves in the background.
pub async fn serve(addr: SocketAddr, status: Shared) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the status port {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let handler = move |req| answer(req, status.clone());
    tokio::spawn(crate::http_serve::serve(
        "watch status",
        listener,
        Default::default(),
        handler,
        std::future::pending(),
    ));
    Ok(local)
}

async fn answer(req: Request<Incoming>, status: Shared) -> Response<Full<Bytes>> {
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
    response.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        Ok(text)
    }

    #[tokio::test]
    async fn serves_the_status_and_routes_as_json() -> anyhow::Result<()> {
        let shared: Shared = Arc::new(Mutex::new(Status {
            reloads: 3,
            ..Status::default()
        }));
        let addr = serve("127.0.0.1:0".parse()?, shared.clone()).await?;
        let status = get(addr, "/status").await?;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("application/json"), "{status}");
        let body = status.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body)?;
        assert_eq!(json["reloads"], 3);
        let routes = get(addr, "/routes").await?;
        assert!(routes.ends_with("[]"), "{routes}");
        let missing = get(addr, "/nope").await?;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        Ok(())
    }
}
