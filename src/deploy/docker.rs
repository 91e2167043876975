//! The Docker API client (bollard): containers of itsup's stacks, health, addresses, networks,
//! stop/remove and exec. Everything deploy observes about the engine goes through here.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bollard::Docker;
use bollard::models::{
    ContainerSummaryStateEnum, ExecConfig, HealthStatusEnum, Ipam, IpamConfig, NetworkCreateRequest,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::labels;

/// How long one Docker API call may go unanswered before apply gives the engine up as stalled
/// (a stop waits the container's grace period on top). A healthy engine answers in
/// milliseconds and a busy one in seconds; bollard's own default is two minutes per call, and a
/// rollout's rollback makes several.
pub(crate) const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the local engine and agrees on an API version it supports (this may be older
/// than the one bollard speaks natively, e.g. Engine 20.10 = API 1.41).
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()
        .context("cannot reach the Docker engine")?
        .with_timeout(API_TIMEOUT);
    docker
        .negotiate_version()
        .await
        .map_err(stalled)
        .context("cannot reach the Docker engine (is it running, may this user use it?)")
}

/// Set once a call of this process went unanswered for [`API_TIMEOUT`]. Every CLI run is its own
/// process, so this is "the engine stalled during this run": the calls after it (a rollback's
/// clean-up, the next readiness poll) fail at once instead of waiting the bound again each, and
/// the journal lets the next apply finish what they could not.
static STALLED: AtomicBool = AtomicBool::new(false);

/// bollard's timeout says only "Timeout error": name the engine and the bound instead.
fn stalled(e: bollard::errors::Error) -> anyhow::Error {
    match e {
        bollard::errors::Error::RequestTimeoutError => {
            STALLED.store(true, Ordering::Relaxed);
            anyhow::anyhow!(
                "the Docker engine did not answer within {} s",
                API_TIMEOUT.as_secs()
            )
        }
        e => e.into(),
    }
}

/// Fails at once when an earlier call of this run found the engine stalled.
fn answering() -> anyhow::Result<()> {
    if STALLED.load(Ordering::Relaxed) {
        anyhow::bail!(
            "the Docker engine did not answer within {} s earlier in this run (no call waits on it again)",
            API_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// One container of a Compose stack as Docker lists it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub id: String,
    pub name: String,
    /// Compose project and service.
    pub project: String,
    pub service: String,
    /// itsup's content-hash label; `None` for containers started without it.
    pub hash: Option<String>,
    /// The root folder it was applied from (`io.itsup.root`), when itsup started it.
    pub root: Option<String>,
    /// itsup's name of its stack (`io.itsup.project`: `proxy` or the project), when itsup
    /// started it.
    pub stack: Option<String>,
    pub running: bool,
    /// Docker health (`healthy`, `unhealthy`, `starting`) as the listing's status shows it.
    pub health: Option<String>,
    pub status: String,
    /// Creation time (seconds), to tell old from new.
    pub created: i64,
}

/// Every container (running or not) that Compose labelled, in creation order.
pub async fn stack_containers(docker: &Docker) -> anyhow::Result<Vec<Observed>> {
    answering()?;
    let filters: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![labels::COMPOSE_PROJECT.to_string()],
    )]
    .into();
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(stalled)
        .context("cannot list containers")?;
    let mut out: Vec<Observed> = list
        .into_iter()
        .filter_map(|c| {
            let labels = c.labels.unwrap_or_default();
            let status = c.status.unwrap_or_default();
            let health = ["(healthy)", "(unhealthy)", "(health: starting)"]
                .iter()
                .find(|h| status.contains(*h))
                .map(|h| {
                    h.trim_matches(['(', ')'])
                        .trim_start_matches("health: ")
                        .to_string()
                });
            Some(Observed {
                id: c.id?,
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                project: labels.get(labels::COMPOSE_PROJECT)?.clone(),
                service: labels.get(labels::COMPOSE_SERVICE)?.clone(),
                hash: labels.get(labels::HASH).cloned(),
                root: labels.get(labels::ROOT).cloned(),
                stack: labels.get(labels::PROJECT).cloned(),
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
                health,
                status,
                created: c.created.unwrap_or_default(),
            })
        })
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// Local image IDs by reference (`name:tag` and `name@digest`), from one listing.
pub async fn image_ids(docker: &Docker) -> anyhow::Result<HashMap<String, String>> {
    answering()?;
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::new().all(false).build()))
        .await
        .map_err(stalled)
        .context("cannot list images")?;
    let mut ids = HashMap::new();
    for image in images {
        for r in image.repo_tags.iter().chain(image.repo_digests.iter()) {
            ids.insert(normalize_ref(r), image.id.clone());
        }
    }
    Ok(ids)
}

/// `nginx` and `docker.io/library/nginx:latest` name the same image.
pub fn normalize_ref(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    let last = r.rsplit('/').next().unwrap_or(r);
    if r.contains('@') || last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// Label on the networks itsup creates.
pub const MANAGED: &str = "io.itsup.managed";

/// Prefix of the egress networks (`egress-<consumer>-to-<provider>-<service>`).
pub const EGRESS_PREFIX: &str = "egress-";

/// Creates a network unless it exists, labelled as itsup's and as `root`'s. The proxy network
/// gets its fixed subnet, since services may pin addresses in it; an existing one is left as it
/// is.
pub async fn ensure_network(
    docker: &Docker,
    name: &str,
    subnet: Option<&str>,
    root: &str,
) -> anyhow::Result<bool> {
    answering()?;
    if docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        attachable: Some(true),
        ipam: subnet.map(|s| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(s.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        labels: Some(
            [
                (MANAGED.to_string(), "true".to_string()),
                (labels::ROOT.to_string(), root.to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => Ok(true),
        // Another apply (or project) may have created it in between.
        Err(_)
            if docker
                .inspect_network(
                    name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .is_ok() =>
        {
            Ok(false)
        }
        Err(e) => Err(stalled(e)).with_context(|| format!("cannot create network {name}")),
    }
}

/// Removes a network itsup created, when nothing uses it any more (errors are not fatal:
/// a network still in use is simply kept).
pub async fn remove_network_if_unused(docker: &Docker, name: &str) -> bool {
    if answering().is_err() {
        return false;
    }
    docker.remove_network(name).await.is_ok()
}

/// The egress networks itsup created for `root` (labelled so at creation), by name. Networks
/// of other roots on the same host, and networks created by hand, are never listed.
pub async fn egress_networks(docker: &Docker, root: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = networks_labelled(
        docker,
        vec![
            format!("{MANAGED}=true"),
            format!("{}={root}", labels::ROOT),
        ],
    )
    .await?
    .into_iter()
    .filter(|n| n.starts_with(EGRESS_PREFIX))
    .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Every network itsup created for `root` (the proxy network and the egress networks), by name.
pub async fn managed_networks(docker: &Docker, root: &str) -> anyhow::Result<Vec<String>> {
    let mut names = networks_labelled(
        docker,
        vec![
            format!("{MANAGED}=true"),
            format!("{}={root}", labels::ROOT),
        ],
    )
    .await?;
    names.sort();
    names.dedup();
    Ok(names)
}

/// Names of the containers, running or stopped, attached to a network: Docker refuses to remove
/// a network with running ones, and a stopped one would fail to start without it.
pub async fn network_users(docker: &Docker, network: &str) -> anyhow::Result<Vec<String>> {
    let filters: HashMap<String, Vec<String>> =
        [("network".to_string(), vec![network.to_string()])].into();
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .with_context(|| format!("cannot list the containers of network {network}"))?;
    Ok(list
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect())
}

/// Removes a network; one already gone counts as removed.
pub async fn remove_network(docker: &Docker, name: &str) -> anyhow::Result<()> {
    docker
        .remove_network(name)
        .await
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Ok(()),
            e => Err(e),
        })
        .with_context(|| format!("cannot remove network {name}"))
}

/// What a health wait needs about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Running with a healthcheck that has not decided yet.
    Starting,
    Healthy,
    Unhealthy(String),
    /// Running without a healthcheck.
    NoCheck,
    /// Not running (exited, dead); the message says how.
    Down(String),
}

async fn inspect(
    docker: &Docker,
    id: &str,
) -> anyhow::Result<bollard::models::ContainerInspectResponse> {
    answering()?;
    docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .map_err(stalled)
        .with_context(|| format!("cannot inspect container {}", short(id)))
}

/// Current health of a container.
pub async fn health(docker: &Docker, id: &str) -> anyhow::Result<Health> {
    let info = inspect(docker, id).await?;
    let state = info.state.unwrap_or_default();
    if state.running != Some(true) || state.restarting == Some(true) {
        return Ok(Health::Down(format!(
            "not running (exit code {})",
            state.exit_code.unwrap_or_default()
        )));
    }
    let Some(h) = state.health else {
        return Ok(Health::NoCheck);
    };
    Ok(match h.status {
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => {
            let last = h
                .log
                .and_then(|l| l.into_iter().last())
                .and_then(|r| r.output)
                .unwrap_or_default();
            Health::Unhealthy(last.trim().to_string())
        }
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        _ => Health::NoCheck,
    })
}

/// IPv4 addresses of a container by network name.
pub async fn addresses(docker: &Docker, id: &str) -> anyhow::Result<HashMap<String, Ipv4Addr>> {
    let info = inspect(docker, id).await?;
    Ok(info
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, ep)| Some((net, ep.ip_address?.parse().ok()?)))
        .collect())
}

/// Stops a container, giving it `grace` between SIGTERM and SIGKILL (the engine answers once it
/// has stopped, so the call may take that long on top of [`API_TIMEOUT`]).
pub async fn stop(docker: &Docker, id: &str, grace: Duration) -> anyhow::Result<()> {
    answering()?;
    let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
    let bound = grace.saturating_add(API_TIMEOUT);
    docker
        .clone()
        .with_timeout(bound)
        .stop_container(id, Some(StopContainerOptionsBuilder::new().t(secs).build()))
        .await
        .or_else(not_modified)
        .map_err(|e| match e {
            bollard::errors::Error::RequestTimeoutError => {
                STALLED.store(true, Ordering::Relaxed);
                anyhow::anyhow!(
                    "the Docker engine did not answer within {} s (grace period included)",
                    bound.as_secs()
                )
            }
            e => e.into(),
        })
        .with_context(|| format!("cannot stop container {}", short(id)))
}

/// Stops a container with its own grace period (Compose's `stop_grace_period`, Docker's
/// default otherwise), as `docker stop` does.
pub async fn stop_own_grace(docker: &Docker, id: &str) -> anyhow::Result<()> {
    answering()?;
    docker
        .stop_container(id, None::<bollard::query_parameters::StopContainerOptions>)
        .await
        .or_else(not_modified)
        .with_context(|| format!("cannot stop container {}", short(id)))
}

/// Removes a container (forced: it may still be running after a failed start).
pub async fn remove(docker: &Docker, id: &str) -> anyhow::Result<()> {
    answering()?;
    let removed = docker
        .remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(false)
                    .build(),
            ),
        )
        .await;
    match removed {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        // An apply killed mid-removal leaves the engine finishing it: wait for that instead.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("already in progress") => wait_removed(docker, id).await,
        Err(e) => Err(stalled(e)),
    }
    .with_context(|| format!("cannot remove container {}", short(id)))
}

/// Waits (bounded by [`API_TIMEOUT`]) until a container the engine is already removing is gone.
async fn wait_removed(docker: &Docker, id: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + API_TIMEOUT;
    loop {
        match docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(stalled(e)),
            Ok(_) if tokio::time::Instant::now() >= deadline => anyhow::bail!(
                "the engine was still removing it after {} s",
                API_TIMEOUT.as_secs()
            ),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn not_modified(e: bollard::errors::Error) -> Result<(), bollard::errors::Error> {
    match e {
        // 304: already stopped; 404: already gone. Both are the state we wanted.
        bollard::errors::Error::DockerResponseServerError {
            status_code: 304 | 404,
            ..
        } => Ok(()),
        e => Err(e),
    }
}

/// Runs a command in a container and returns its exit code (its output is read to the end, so
/// the whole exchange is bounded, not only each request).
pub async fn exec(docker: &Docker, id: &str, cmd: &[&str]) -> anyhow::Result<i64> {
    answering()?;
    tokio::time::timeout(API_TIMEOUT, exec_unbounded(docker, id, cmd))
        .await
        .map_err(|_| stalled(bollard::errors::Error::RequestTimeoutError))
        .with_context(|| format!("cannot exec in container {}", short(id)))?
}

async fn exec_unbounded(docker: &Docker, id: &str, cmd: &[&str]) -> anyhow::Result<i64> {
    let created = docker
        .create_exec(
            id,
            ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(stalled)
        .with_context(|| format!("cannot exec in container {}", short(id)))?;
    if let bollard::exec::StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .map_err(stalled)?
    {
        while output.next().await.is_some() {}
    }
    let inspect = docker.inspect_exec(&created.id).await.map_err(stalled)?;
    Ok(inspect.exit_code.unwrap_or(-1))
}

/// The first 12 characters of an ID, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Networks Compose created for a project (not the external ones deploy created).
pub async fn project_networks(docker: &Docker, project: &str) -> anyhow::Result<Vec<String>> {
    networks_labelled(
        docker,
        vec![format!("{}={project}", labels::COMPOSE_PROJECT)],
    )
    .await
}

/// Names of the networks carrying every one of `labels` (`key=value`).
async fn networks_labelled(docker: &Docker, labels: Vec<String>) -> anyhow::Result<Vec<String>> {
    answering()?;
    let filters: HashMap<String, Vec<String>> = [("label".to_string(), labels)].into();
    let nets = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(stalled)
        .context("cannot list networks")?;
    Ok(nets.into_iter().filter_map(|n| n.name).collect())
}
