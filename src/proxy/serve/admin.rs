//! Admin API on its own local listener: server list, runtime drain/ready/maint (no reload
//! involved; the state lives in the server state and survives reloads), `/metrics`,
//! `/healthz`, `/config` and the `/status` page.
//!
//! Served on `admin.address` and, when set, also on the Unix socket `admin.socket`.
//!
//! `GET /servers` lists servers; `PUT /servers/{cluster}/{address}` with
//! `{"state":"drain"|"ready"|"maint"}` changes one.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UnixListener};

use crate::proxy::runtime::shared_states;
use crate::proxy::runtime::state::Shared;
use crate::proxy::serve::view;
use crate::proxy::upstream::server::AdminState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    state: AdminState,
}

/// Where the admin API listens: `admin.address`, and `admin.socket` when set.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub async fn serve(listener: Listener, shared: Arc<Shared>) {
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l
                .accept()
                .await
                .map(|(s, _)| tokio::spawn(serve_connection(s, shared.clone()))),
            Listener::Unix(l) => l
                .accept()
                .await
                .map(|(s, _)| tokio::spawn(serve_connection(s, shared.clone()))),
        };
        if accepted.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Binds `path`, replacing a socket left by an earlier run (never any other kind of file).
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(&shared, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), svc);
    let _ = conn.await;
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => {
            text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
        }
        (&Method::GET, ["metrics"]) => {
            let snap = shared.snapshot.load();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::proxy::runtime::exposition::render(shared, &snap),
            )
        }
        (&Method::GET, ["servers"]) => json(StatusCode::OK, &view::servers(shared)),
        (&Method::GET, ["config"]) => json(StatusCode::OK, &shared.snapshot.load().config),
        (&Method::GET, ["status"] | [""]) => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::proxy::serve::status_page::render(shared),
        ),
        (&Method::PUT | &Method::POST, ["servers", cluster, address]) => {
            let (cluster, address) = (cluster.to_string(), address.to_string());
            set_state(shared, req, &cluster, &address).await
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
    }
}

async fn set_state(
    shared: &Shared,
    req: Request<Incoming>,
    cluster: &str,
    address: &str,
) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "body too large\n".into(),
            );
        }
    };
    let change: StateChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("expected {{\"state\": \"ready\"|\"drain\"|\"maint\"}}: {e}\n");
            return text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", msg);
        }
    };
    let snap = shared.snapshot.load();
    let found = snap
        .clusters
        .iter()
        .filter(|c| c.name == cluster)
        .flat_map(|c| c.servers.iter().zip(&c.weights))
        .find(|(s, _)| s.address == address);
    match found {
        Some((server, weight)) => {
            server.set_admin_state(change.state);
            tracing::info!(cluster, server = address, state = ?change.state, "admin state changed");
            shared_states::record(shared, cluster, address, change.state).await;
            json(StatusCode::OK, &view::server(cluster, *weight, server))
        }
        None => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("no server {address} in cluster {cluster}\n"),
        ),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_string_pretty(value) {
        Ok(body) => text(status, "application/json", body),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n"),
        ),
    }
}
