//! The Swarm action plan: per stack and service `create | unchanged | update | remove`, from
//! the desired fingerprints, the services Swarm runs and the last applied fingerprints. The
//! dry run prints it; apply carries out exactly it.

use std::collections::BTreeSet;

use serde::Serialize;

use super::desired::{Desired, PROXY};
use super::observed::Observed;
use super::state::State;

/// What happens to one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Unchanged,
    Update,
    Remove,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Unchanged => "unchanged",
            Action::Update => "update",
            Action::Remove => "remove",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub service: String,
    pub action: Action,
    /// Fingerprint to deploy (empty for a removal).
    pub fingerprint: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackPlan {
    /// Project name (`proxy` for the proxy's stack).
    pub project: String,
    /// Swarm stack name.
    pub stack: String,
    /// The whole stack goes (its project was removed or disabled).
    pub removed: bool,
    pub services: Vec<ServicePlan>,
}

impl StackPlan {
    /// Whether anything happens to this stack.
    pub fn changes(&self) -> bool {
        self.removed || self.services.iter().any(|s| s.action != Action::Unchanged)
    }

    /// Whether `docker stack deploy` must run (something created or updated).
    pub fn deploys(&self) -> bool {
        !self.removed
            && self
                .services
                .iter()
                .any(|s| matches!(s.action, Action::Create | Action::Update))
    }
}

/// Compares desired, observed and last applied. `targets` (project names, `proxy`) limits the
/// plan; `left_alone` are stacks never touched (broken projects).
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    state: &State,
    targets: &[String],
    left_alone: &BTreeSet<String>,
) -> Vec<StackPlan> {
    let wanted = |project: &str| targets.is_empty() || targets.iter().any(|t| t == project);
    let mut out = Vec::new();
    for s in &desired.stacks {
        if !wanted(&s.project) {
            continue;
        }
        let running = observed.get(&s.stack).map(Vec::as_slice).unwrap_or(&[]);
        let last = state.stacks.get(&s.stack);
        let mut services = Vec::new();
        for (name, fp) in &s.services {
            let present = running.iter().any(|r| &r.short == name);
            let (action, reason) = match (present, last.and_then(|l| l.get(name))) {
                (false, _) => (Action::Create, "not running".to_string()),
                (true, Some(old)) if old == fp => (Action::Unchanged, String::new()),
                (true, Some(_)) => (
                    Action::Update,
                    "spec changed: Swarm rolls it out".to_string(),
                ),
                (true, None) => (
                    Action::Update,
                    "no successful apply recorded: Swarm rolls it out".to_string(),
                ),
            };
            let reason = match (s.project == PROXY, action) {
                (true, Action::Update) => format!(
                    "{reason} node by node, stop-first (host ports): each ingress node stops serving for a few seconds"
                ),
                _ => reason,
            };
            services.push(ServicePlan {
                service: name.clone(),
                action,
                fingerprint: fp.clone(),
                reason,
            });
        }
        for r in running
            .iter()
            .filter(|r| !s.services.contains_key(&r.short))
        {
            services.push(ServicePlan {
                service: r.short.clone(),
                action: Action::Remove,
                fingerprint: String::new(),
                reason: "no longer in the stack file".into(),
            });
        }
        out.push(StackPlan {
            project: s.project.clone(),
            stack: s.stack.clone(),
            removed: false,
            services,
        });
    }
    let known: BTreeSet<&str> = desired.stacks.iter().map(|s| s.stack.as_str()).collect();
    for (stack, running) in observed {
        let project = stack
            .strip_prefix(&desired.swarm.stack_prefix)
            .unwrap_or(stack);
        if known.contains(stack.as_str()) || left_alone.contains(project) || !wanted(project) {
            continue;
        }
        out.push(StackPlan {
            project: project.to_string(),
            stack: stack.clone(),
            removed: true,
            services: running
                .iter()
                .map(|r| ServicePlan {
                    service: r.short.clone(),
                    action: Action::Remove,
                    fingerprint: String::new(),
                    reason: "project removed or disabled: stack removed with its networks".into(),
                })
                .collect(),
        });
    }
    out
}
