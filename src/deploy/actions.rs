//! The action plan: desired state against running containers and the last applied state,
//! one action per stack and service. `apply --dry-run` prints it; `apply` executes exactly it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::desired::{Desired, DesiredService, DesiredStack, PROXY};
use super::docker::Observed;
use super::state::State;
use crate::model::Rollout;

/// What happens to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing runs yet: bring it up.
    Create,
    /// Running and its hash matches: not touched.
    Unchanged,
    /// Start-first: new beside old, switch at the proxy, drain, stop the old.
    Rollout,
    /// Stop-first: stop the old, start the new (short downtime).
    Recreate,
    /// The project is disabled: stop its containers (they are kept).
    Stop,
    /// The project or service was removed: stop and remove its containers.
    Prune,
    /// The proxy's configuration changed: hitless reload.
    Reload,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Unchanged => "unchanged",
            Action::Rollout => "rollout",
            Action::Recreate => "recreate",
            Action::Stop => "stop",
            Action::Prune => "prune",
            Action::Reload => "reload",
        }
    }
}

/// One service's action.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceAction {
    pub service: String,
    pub action: Action,
    /// Why, in words (strategy reasons included).
    pub reason: String,
    /// The hash it will run with (empty for stop/prune).
    pub hash: String,
    /// Containers it acts on (old ones for rollout/recreate/stop/prune).
    #[serde(skip)]
    pub containers: Vec<Observed>,
    #[serde(skip)]
    pub desired: Option<DesiredService>,
}

/// The actions of one stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    pub stack: String,
    pub compose_project: String,
    /// The whole project was removed from `projects/`.
    pub removed: bool,
    pub services: Vec<ServiceAction>,
    #[serde(skip)]
    pub desired: Option<DesiredStack>,
}

impl StackPlan {
    pub fn changes(&self) -> bool {
        self.services.iter().any(|s| s.action != Action::Unchanged)
    }
}

/// Builds the action plan. `observed` holds the containers labelled for this root only.
pub fn plan(
    desired: &Desired,
    observed: &[Observed],
    state: &State,
    targets: &[String],
) -> Vec<StackPlan> {
    let mut by_project: BTreeMap<&str, Vec<&Observed>> = BTreeMap::new();
    for o in observed {
        by_project.entry(o.project.as_str()).or_default().push(o);
    }
    let wanted = |name: &str| targets.is_empty() || targets.iter().any(|t| t == name);
    let mut out = Vec::new();

    if let Some(proxy) = &desired.proxy
        && wanted(PROXY)
    {
        let containers = by_project
            .get(proxy.compose_project.as_str())
            .cloned()
            .unwrap_or_default();
        let mut stack = stack_plan(proxy, &containers);
        let old_config = state.proxy.as_ref().and_then(|p| p.config.clone());
        let all_unchanged = stack.services.iter().all(|s| s.action == Action::Unchanged);
        if all_unchanged && desired.proxy_config.is_some() && desired.proxy_config != old_config {
            for s in &mut stack.services {
                s.action = Action::Reload;
                s.reason = "configuration changed: hitless reload through the master socket".into();
            }
        }
        out.push(stack);
    }
    for project in &desired.projects {
        if !wanted(&project.name) {
            continue;
        }
        let containers = by_project
            .get(project.compose_project.as_str())
            .cloned()
            .unwrap_or_default();
        out.push(stack_plan(project, &containers));
    }

    // Removed projects: known from the state file or from containers labelled for this root.
    let desired_names: BTreeSet<&str> = desired
        .projects
        .iter()
        .map(|p| p.compose_project.as_str())
        .chain(desired.proxy.iter().map(|p| p.compose_project.as_str()))
        .collect();
    let mut removed: BTreeSet<&str> = state.projects.keys().map(String::as_str).collect();
    removed.extend(by_project.keys().copied());
    for name in removed {
        if desired_names.contains(name) || !wanted(name) {
            continue;
        }
        let containers = by_project.get(name).cloned().unwrap_or_default();
        let mut services: BTreeMap<&str, Vec<Observed>> = BTreeMap::new();
        for c in &containers {
            services
                .entry(c.service.as_str())
                .or_default()
                .push((*c).clone());
        }
        if services.is_empty() {
            // Known from the state only and nothing left running: forget it quietly.
            out.push(StackPlan {
                stack: name.to_string(),
                compose_project: name.to_string(),
                removed: true,
                services: Vec::new(),
                desired: None,
            });
            continue;
        }
        out.push(StackPlan {
            stack: name.to_string(),
            compose_project: name.to_string(),
            removed: true,
            services: services
                .into_iter()
                .map(|(service, containers)| ServiceAction {
                    service: service.to_string(),
                    action: Action::Prune,
                    reason: "project removed from projects/".into(),
                    hash: String::new(),
                    containers,
                    desired: None,
                })
                .collect(),
            desired: None,
        });
    }
    out
}

fn stack_plan(stack: &DesiredStack, containers: &[&Observed]) -> StackPlan {
    let mut services = Vec::new();
    for d in &stack.services {
        let mine: Vec<Observed> = containers
            .iter()
            .filter(|c| c.service == d.name)
            .map(|c| (*c).clone())
            .collect();
        let running: Vec<&Observed> = mine.iter().filter(|c| c.running).collect();
        let (action, reason) = if !stack.enabled {
            if running.is_empty() {
                (
                    Action::Unchanged,
                    "project disabled, already stopped".to_string(),
                )
            } else {
                (Action::Stop, "project disabled".to_string())
            }
        } else if running.is_empty() {
            (Action::Create, "not running".to_string())
        } else if running
            .iter()
            .all(|c| c.hash.as_deref() == Some(d.hash.as_str()))
        {
            (Action::Unchanged, "hash matches".to_string())
        } else {
            let was = running
                .iter()
                .find_map(|c| c.hash.clone())
                .unwrap_or_else(|| "unlabelled".into());
            let strategy = match d.rollout.strategy {
                Rollout::StartFirst => Action::Rollout,
                Rollout::StopFirst => Action::Recreate,
            };
            let kind = match strategy {
                Action::Rollout => "start-first",
                _ => "stop-first",
            };
            (
                strategy,
                format!("changed ({was} → {}); {kind}: {}", d.hash, d.rollout.reason),
            )
        };
        let reason = if d.image_missing
            && matches!(action, Action::Create | Action::Rollout | Action::Recreate)
        {
            format!(
                "{reason}; image {} is not present locally (Compose will try to pull it)",
                d.image.as_deref().unwrap_or("?")
            )
        } else {
            reason
        };
        services.push(ServiceAction {
            service: d.name.clone(),
            action,
            reason,
            hash: d.hash.clone(),
            containers: mine,
            desired: Some(d.clone()),
        });
    }
    // Services that left the compose file.
    let known: BTreeSet<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    let mut gone: BTreeMap<&str, Vec<Observed>> = BTreeMap::new();
    for c in containers
        .iter()
        .filter(|c| !known.contains(c.service.as_str()))
    {
        gone.entry(c.service.as_str())
            .or_default()
            .push((*c).clone());
    }
    for (service, containers) in gone {
        services.push(ServiceAction {
            service: service.to_string(),
            action: Action::Prune,
            reason: "service removed from the compose file".into(),
            hash: String::new(),
            containers,
            desired: None,
        });
    }
    StackPlan {
        stack: stack.name.clone(),
        compose_project: stack.compose_project.clone(),
        removed: false,
        services,
        desired: Some(stack.clone()),
    }
}
