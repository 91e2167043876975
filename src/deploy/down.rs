//! `itsup down`: stopping this root's stacks, the projects first and the proxy last (so the proxy
//! never routes to a project that is half gone), and with `clean` removing their containers and
//! the networks apply and Compose created for them. Volumes are never touched.
//!
//! It works from what Docker lists (containers labelled with this root), not from `projects/`:
//! a root whose files no longer validate can still be brought down. The state file is left as
//! it is: it keeps the hashes of the last apply, so the next apply finds the services "not
//! running" and brings exactly them back.

use std::collections::{BTreeMap, BTreeSet};

use bollard::Docker;
use futures_util::future::join_all;
use serde::Serialize;

use super::desired::PROXY;
use super::docker::{self, Observed};

/// One stack to bring down, with its containers newest first.
#[derive(Debug, Clone)]
pub struct DownStack {
    /// itsup name: `proxy` or the project.
    pub name: String,
    pub compose_project: String,
    pub containers: Vec<Observed>,
}

/// What became of one stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackDown {
    pub stack: String,
    pub stopped: usize,
    pub removed: usize,
    pub ok: bool,
    /// Failures, one per container that could not be stopped or removed.
    pub errors: Vec<String>,
}

/// What became of one network.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkDown {
    pub network: String,
    pub removed: bool,
    pub message: String,
}

/// The stacks of `root_id` found in `containers`, filtered by `targets` (all when empty), the
/// proxy last. A target naming no stack of this root is returned as an error message.
pub fn stacks(
    containers: &[Observed],
    root_id: &str,
    targets: &[String],
) -> Result<Vec<DownStack>, String> {
    let mut by_stack: BTreeMap<String, DownStack> = BTreeMap::new();
    for c in containers
        .iter()
        .filter(|c| c.root.as_deref() == Some(root_id))
    {
        let name = c.stack.clone().unwrap_or_else(|| c.project.clone());
        by_stack
            .entry(name.clone())
            .or_insert_with(|| DownStack {
                name,
                compose_project: c.project.clone(),
                containers: Vec::new(),
            })
            .containers
            .push(c.clone());
    }
    let unknown: Vec<&str> = targets
        .iter()
        .filter(|t| !by_stack.contains_key(t.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = by_stack.keys().map(String::as_str).collect();
        return Err(format!(
            "no container of this root belongs to {} (stacks with containers: {})",
            unknown.join(", "),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let mut out: Vec<DownStack> = by_stack
        .into_values()
        .filter(|s| targets.is_empty() || targets.contains(&s.name))
        .collect();
    for s in &mut out {
        // Newest first: a namespace holder or a provider started before what needs it.
        s.containers
            .sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
    }
    out.sort_by_key(|s| s.name == PROXY);
    Ok(out)
}

/// Stops (and with `clean` removes) one stack's containers, one after the other.
pub async fn stack(docker: &Docker, stack: &DownStack, clean: bool) -> StackDown {
    let mut out = StackDown {
        stack: stack.name.clone(),
        stopped: 0,
        removed: 0,
        ok: true,
        errors: Vec::new(),
    };
    for c in &stack.containers {
        if c.running {
            match docker::stop_own_grace(docker, &c.id).await {
                Ok(()) => out.stopped += 1,
                Err(e) => {
                    out.errors.push(format!("{}: {e:#}", c.name));
                    continue;
                }
            }
        }
        if clean {
            match docker::remove(docker, &c.id).await {
                Ok(()) => out.removed += 1,
                Err(e) => out.errors.push(format!("{}: {e:#}", c.name)),
            }
        }
    }
    out.ok = out.errors.is_empty();
    out
}

/// Stops the project stacks together, then the proxy.
pub async fn stop_all(docker: &Docker, stacks: &[DownStack], clean: bool) -> Vec<StackDown> {
    let (proxy, projects): (Vec<&DownStack>, Vec<&DownStack>) =
        stacks.iter().partition(|s| s.name == PROXY);
    let mut out = join_all(projects.iter().map(|s| stack(docker, s, clean))).await;
    for p in proxy {
        out.push(stack(docker, p, clean).await);
    }
    out
}

/// The networks `clean` may remove: the ones Compose created for the stacks brought down, and
/// the ones apply created for this root (the proxy network, the egress networks) that belong to
/// them: all of them when every stack goes, otherwise the egress networks naming a project
/// brought down and the proxy network when the proxy goes.
pub async fn candidate_networks(
    docker: &Docker,
    root_id: &str,
    stacks: &[DownStack],
    everything: bool,
) -> anyhow::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    for s in stacks {
        out.extend(docker::project_networks(docker, &s.compose_project).await?);
    }
    let projects: Vec<&str> = stacks
        .iter()
        .filter(|s| s.name != PROXY)
        .map(|s| s.name.as_str())
        .collect();
    let proxy_goes = stacks.iter().any(|s| s.name == PROXY);
    for n in docker::managed_networks(docker, root_id).await? {
        let egress_of_one = n.strip_prefix(docker::EGRESS_PREFIX).is_some_and(|rest| {
            projects.iter().any(|p| {
                rest.starts_with(&format!("{p}-to-")) || rest.contains(&format!("-to-{p}-"))
            })
        });
        let is_egress = n.starts_with(docker::EGRESS_PREFIX);
        if everything || egress_of_one || (proxy_goes && !is_egress) {
            out.insert(n);
        }
    }
    Ok(out.into_iter().collect())
}

/// Removes each network no container (running or stopped) is attached to any more; one in use
/// is kept and reported with its users.
pub async fn remove_networks(docker: &Docker, names: &[String]) -> Vec<NetworkDown> {
    let mut out = Vec::new();
    for name in names {
        let users = match docker::network_users(docker, name).await {
            Ok(u) => u,
            Err(e) => {
                out.push(NetworkDown {
                    network: name.clone(),
                    removed: false,
                    message: format!("{e:#}"),
                });
                continue;
            }
        };
        if !users.is_empty() {
            out.push(NetworkDown {
                network: name.clone(),
                removed: false,
                message: format!("kept: still attached to {}", users.join(", ")),
            });
            continue;
        }
        out.push(match docker::remove_network(docker, name).await {
            Ok(()) => NetworkDown {
                network: name.clone(),
                removed: true,
                message: "removed".into(),
            },
            Err(e) => NetworkDown {
                network: name.clone(),
                removed: false,
                message: format!("{e:#}"),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(project: &str, stack: Option<&str>, service: &str, created: i64) -> Observed {
        Observed {
            id: format!("{project}-{service}"),
            name: format!("{project}_{service}_1"),
            project: project.into(),
            service: service.into(),
            hash: None,
            root: Some("/r".into()),
            stack: stack.map(str::to_string),
            running: true,
            health: None,
            status: String::new(),
            created,
        }
    }

    #[test]
    fn projects_first_proxy_last_newest_container_first() {
        let all = vec![
            container("net-proxy", Some(PROXY), "haproxy-net", 1),
            container("net-proxy", Some(PROXY), "haproxy", 2),
            container("web", Some("web"), "app", 3),
            container("zzz", None, "app", 4),
            Observed {
                root: Some("/other".into()),
                ..container("foreign", Some("foreign"), "app", 5)
            },
        ];
        let got = stacks(&all, "/r", &[]).expect("stacks");
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web", "zzz", PROXY]);
        let proxy: Vec<&str> = got[2]
            .containers
            .iter()
            .map(|c| c.service.as_str())
            .collect();
        assert_eq!(proxy, ["haproxy", "haproxy-net"]);
        let only = stacks(&all, "/r", &["web".into()]).expect("one");
        assert_eq!(only.len(), 1);
        let err = stacks(&all, "/r", &["foreign".into()]).expect_err("other root's");
        assert!(err.contains("foreign") && err.contains("web"), "{err}");
    }
}
