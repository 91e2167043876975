//! Follows the Docker engine: a full scan of the running containers, and the event stream that
//! says when to scan again. The stream is reconnected with backoff, since the engine may restart
//! under a long-running watcher; every reconnect triggers a rescan because events are lost
//! while disconnected.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, EventMessage, EventMessageTypeEnum, HealthStatusEnum,
};
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use futures_util::{StreamExt, stream};
use tokio::sync::mpsc;

use super::container::{Container, Health, created_key, parse_exposed};

/// Connects to the engine `DOCKER_HOST` names (`unix://` or `tcp://`; the local socket when it
/// is unset), speaking the API version it supports (Docker 20.10 rejects bollard's newer
/// default).
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_defaults().context("connecting to the Docker engine")?;
    docker
        .negotiate_version()
        .await
        .context("negotiating the Docker API version")
}

/// Every running container that carries an `itsup.*` label, with its address on `network`.
pub async fn scan(docker: &Docker, network: &str) -> anyhow::Result<Vec<Container>> {
    let summaries = docker
        .list_containers(Some(ListContainersOptions::default()))
        .await
        .context("listing containers")?;
    let ids: Vec<String> = summaries
        .into_iter()
        .filter(|s| {
            s.labels
                .as_ref()
                .is_some_and(|l| l.keys().any(|k| k.starts_with("itsup.")))
        })
        .filter_map(|s| s.id)
        .collect();
    // The list lacks health and exposed ports, hence one inspect per labelled container.
    let inspected: Vec<Result<Option<Container>, DockerError>> = stream::iter(ids)
        .map(|id| async move {
            match docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            {
                Ok(resp) => Ok(to_container(resp, network)),
                // Gone between list and inspect: it is simply not running any more.
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut containers = Vec::new();
    for result in inspected {
        if let Some(c) = result.context("inspecting a container")? {
            containers.push(c);
        }
    }
    Ok(containers)
}

fn to_container(resp: ContainerInspectResponse, network: &str) -> Option<Container> {
    let state = resp.state.as_ref();
    if !state.and_then(|s| s.running).unwrap_or(false) {
        return None;
    }
    let health = match state.and_then(|s| s.health.as_ref()).and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        _ => Health::None,
    };
    let config = resp.config.as_ref();
    let labels: BTreeMap<String, String> = config
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut exposed_tcp: Vec<u16> = config
        .and_then(|c| c.exposed_ports.as_ref())
        .map(|ports| ports.iter().filter_map(|p| parse_exposed(p)).collect())
        .unwrap_or_default();
    exposed_tcp.sort_unstable();
    exposed_tcp.dedup();
    let ip = resp
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|nets| nets.get(network))
        .and_then(|ep| ep.ip_address.as_deref())
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let id = resp.id?;
    Some(Container {
        name: resp
            .name
            .as_deref()
            .unwrap_or(&id)
            .trim_start_matches('/')
            .to_string(),
        created: created_key(resp.created.as_deref().unwrap_or("")),
        id,
        labels,
        ip,
        exposed_tcp,
        health,
    })
}

/// Whether an event can change routing. Health checks alone produce exec_* events every few
/// seconds per container; those must not cause rescans.
fn relevant(ev: &EventMessage) -> bool {
    let action = ev.action.as_deref().unwrap_or("");
    match ev.typ {
        Some(EventMessageTypeEnum::CONTAINER) => {
            matches!(
                action,
                "start" | "die" | "stop" | "kill" | "pause" | "unpause" | "destroy" | "rename"
            ) || action.starts_with("health_status")
        }
        Some(EventMessageTypeEnum::NETWORK) => matches!(action, "connect" | "disconnect"),
        _ => false,
    }
}

/// Streams events forever, nudging `tx` for each relevant one; returns when `tx` is closed.
pub async fn follow(
    docker: Docker,
    tx: mpsc::UnboundedSender<()>,
    events_seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(250);
    const MAX_BACKOFF: Duration = Duration::from_secs(8);
    const HEALTHY_AFTER: Duration = Duration::from_secs(10);
    let mut backoff = MIN_BACKOFF;
    // Whether the engine was lost before this subscription (the first one is no reconnect).
    let mut lost = false;
    loop {
        // Subscribing to a dead engine fails at once; waiting for a ping keeps the retry loop
        // from spinning (and from nudging rescans that cannot succeed).
        if let Err(e) = docker.ping().await {
            tracing::warn!("docker engine unreachable ({e}); retrying in {backoff:?}");
            lost = true;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            if tx.is_closed() {
                return;
            }
            continue;
        }
        let filters: HashMap<String, Vec<String>> = HashMap::from([(
            "type".to_string(),
            vec!["container".into(), "network".into()],
        )]);
        let mut events = docker.events(Some(EventsOptions {
            filters: Some(filters),
            ..Default::default()
        }));
        if lost {
            tracing::info!("docker engine reachable again: resubscribing to events and rescanning");
        }
        // A (re)connected stream may have missed events: rescan.
        if tx.send(()).is_err() {
            return;
        }
        // A stream that delivered events, or stayed up a while on a quiet engine, worked: the
        // next outage starts again from the shortest wait.
        let subscribed = tokio::time::Instant::now();
        let mut healthy_stream = false;
        while let Some(item) = events.next().await {
            match item {
                Ok(ev) => {
                    healthy_stream = true;
                    if relevant(&ev) {
                        events_seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(action = ?ev.action, "docker event");
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("docker event stream failed: {e}");
                    break;
                }
            }
        }
        lost = true;
        if healthy_stream || subscribed.elapsed() >= HEALTHY_AFTER {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!("docker event stream ended; reconnecting in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if tx.is_closed() {
            return;
        }
    }
}
