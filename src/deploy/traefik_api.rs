//! Traefik's own view, read before the edge sends a new Traefik traffic: its `/api/rawdata`
//! (served to the host on the `ping` entrypoint by the rendered `itsup-api` router) must list
//! every router it is expected to have, none in error. Expected are the routers of the rendered
//! dynamic files and those of the labels of the containers Traefik's Docker provider routes now
//! (running, healthy when they have a healthcheck, on this platform's proxy network): the proxy
//! goes first in an apply, so containers of routes new in this apply do not exist yet.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::render::traefik::PING_PORT;

/// The sections of `/api/rawdata` that hold routers, by protocol.
const SECTIONS: [(&str, &str); 3] = [
    ("http", "routers"),
    ("tcp", "tcpRouters"),
    ("udp", "udpRouters"),
];

/// `section/name@provider` of every router the rendered dynamic files define.
pub(crate) fn file_routers(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let dir = root.join("proxy/traefik/dynamic");
    let mut out = BTreeSet::new();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc =
            crate::yaml::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for (proto, section) in SECTIONS {
            if let Some(routers) = doc
                .value
                .pointer(&format!("/{proto}/routers"))
                .and_then(Value::as_object)
            {
                out.extend(routers.keys().map(|n| format!("{section}/{n}@file")));
            }
        }
    }
    Ok(out)
}

/// `section/name@docker` of the routers in the labels of the containers Traefik routes now.
pub(crate) async fn label_routers(
    docker: &Docker,
    network: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let filters: HashMap<String, Vec<String>> = [
        (
            "label".to_string(),
            vec![
                format!("traefik.docker.network={network}"),
                "traefik.enable=true".to_string(),
            ],
        ),
        ("status".to_string(), vec!["running".to_string()]),
    ]
    .into();
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .context("cannot list the routed containers")?;
    let mut out = BTreeSet::new();
    for c in list {
        let status = c.status.unwrap_or_default();
        // Traefik's Docker provider skips a container whose healthcheck is not passing.
        if status.contains("(unhealthy)") || status.contains("(health: starting)") {
            continue;
        }
        for key in c.labels.unwrap_or_default().keys() {
            for (proto, section) in SECTIONS {
                if let Some(name) = key
                    .strip_prefix(&format!("traefik.{proto}.routers."))
                    .and_then(|rest| rest.strip_suffix(".rule"))
                {
                    out.insert(format!("{section}/{name}@docker"));
                }
            }
        }
    }
    Ok(out)
}

/// What keeps `raw` from being ready: expected routers it does not list, routers in error.
pub(crate) fn not_ready(raw: &Value, expected: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for want in expected {
        let Some((section, name)) = want.split_once('/') else {
            continue;
        };
        match raw.get(section).and_then(|s| s.get(name)) {
            None => out.push(format!("{want}: not loaded")),
            Some(router) => {
                let status = router.get("status").and_then(Value::as_str).unwrap_or("");
                let error = router.get("error").filter(|e| !e.is_null());
                if status != "enabled" || error.is_some() {
                    let error = error.map(Value::to_string).unwrap_or_default();
                    out.push(format!("{want}: {status} {error}").trim_end().to_string());
                }
            }
        }
    }
    out
}

/// `GET /api/rawdata` of the Traefik at `ip` (its `ping` entrypoint).
async fn rawdata(ip: Ipv4Addr) -> anyhow::Result<Value> {
    let fetch = async {
        let stream = tokio::net::TcpStream::connect((ip, PING_PORT)).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/api/rawdata")
            .header(hyper::header::HOST, "traefik")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status.is_success(), "HTTP {status}");
        Ok::<_, anyhow::Error>(serde_json::from_slice(&body)?)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .map_err(|_| anyhow::anyhow!("no answer in 5 s"))?
}

/// Waits until the Traefik at `ip` has loaded every expected router with no error.
pub(crate) async fn wait_loaded(
    docker: &Docker,
    root: &Path,
    network: &str,
    ip: Ipv4Addr,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut expected = file_routers(root)?;
        expected.extend(label_routers(docker, network).await?);
        let why = match rawdata(ip).await {
            Ok(raw) => {
                let missing = not_ready(&raw, &expected);
                if missing.is_empty() {
                    return Ok(expected.len());
                }
                missing.join("; ")
            }
            Err(e) => format!("its API at {ip}:{PING_PORT} does not answer: {e:#}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the new Traefik did not load its {} routers within {} s: {why}",
                expected.len(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_every_router_enabled() {
        let expected: BTreeSet<String> = ["routers/a@file", "tcpRouters/db@file"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let raw = serde_json::json!({
            "routers": {"a@file": {"status": "enabled"}},
        });
        assert_eq!(
            not_ready(&raw, &expected),
            vec!["tcpRouters/db@file: not loaded"]
        );
        let raw = serde_json::json!({
            "routers": {"a@file": {"status": "disabled", "error": ["middleware x does not exist"]}},
            "tcpRouters": {"db@file": {"status": "enabled"}},
        });
        let why = not_ready(&raw, &expected);
        assert_eq!(why.len(), 1);
        assert!(why[0].contains("middleware x does not exist"), "{why:?}");
        let raw = serde_json::json!({
            "routers": {"a@file": {"status": "enabled"}, "other@internal": {"status": "enabled"}},
            "tcpRouters": {"db@file": {"status": "enabled"}},
        });
        assert!(not_ready(&raw, &expected).is_empty());
    }
}
