//! Carries out a Swarm plan: networks, `docker stack deploy` of changed stacks, removals per
//! service and per stack, then waiting on Swarm's own update status. Swarm does the rollout
//! (start-first, health-gated) and the rollback; itsup reports what Swarm decided.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::desired::{Desired, Stack};
use super::observed::{self, STACK_LABEL};
use super::plan::{Action, StackPlan};
use super::{cli, state::State};
use crate::render::swarm::PLATFORM_LABEL;

/// How often Swarm's status is polled.
const POLL: Duration = Duration::from_millis(500);
/// How long an update may take to show up in `UpdateStatus` before apply looks at the tasks.
const UPDATE_APPEARS: Duration = Duration::from_secs(10);
/// How long a global service may have no task before apply says no node may run it.
const PLACEMENT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    pub service: String,
    pub action: Action,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StackResult {
    pub stack: String,
    pub ok: bool,
    pub message: String,
    pub services: Vec<ServiceResult>,
}

/// Creates the platform's overlay networks that are missing: the proxy network (attachable,
/// so that `itsup svc`-style one-off containers can join it) and the egress overlays.
pub fn ensure_networks(desired: &Desired) -> anyhow::Result<()> {
    let mut wanted = vec![(desired.network.as_str(), Some(desired.subnet.as_str()))];
    wanted.extend(desired.egress.iter().map(|n| (n.as_str(), None)));
    for (name, subnet) in wanted {
        let out = cli::docker(
            &["network", "inspect", "-f", "{{.Driver}} {{.Scope}}", name],
            None,
            &Default::default(),
        )?;
        if out.ok {
            if out.stdout.trim() != "overlay swarm" {
                anyhow::bail!(
                    "network {name} exists as `{}`, not as a Swarm overlay (a Compose platform of the same name?): remove it or choose another `proxy.network`",
                    out.stdout.trim()
                );
            }
            continue;
        }
        let label = format!("{PLATFORM_LABEL}={}", desired.platform);
        let mut args = vec![
            "network",
            "create",
            "--driver",
            "overlay",
            "--attachable",
            "--label",
            &label,
        ];
        if let Some(subnet) = subnet {
            args.extend(["--subnet", subnet]);
        }
        args.push(name);
        cli::checked(&args)?;
    }
    Ok(())
}

/// Runs every changed stack's plan, the proxy's first, removed stacks last.
pub fn run(
    root: &Path,
    desired: &Desired,
    plans: &[StackPlan],
    timeout: Duration,
) -> Vec<StackResult> {
    let mut out = Vec::new();
    for p in plans.iter().filter(|p| p.changes() && !p.removed) {
        let Some(stack) = desired.stacks.iter().find(|s| s.stack == p.stack) else {
            continue;
        };
        out.push(deploy(root, stack, p, timeout));
    }
    for p in plans.iter().filter(|p| p.removed) {
        out.push(remove_stack(p, timeout));
    }
    prune_egress(desired);
    out
}

/// Removes the platform's egress overlays no pair uses any more; one still in use (a stack
/// whose update failed) stays, and the next apply tries again.
fn prune_egress(desired: &Desired) {
    let label = format!("label={PLATFORM_LABEL}={}", desired.platform);
    let Ok(names) = cli::checked(&["network", "ls", "--filter", &label, "--format", "{{.Name}}"])
    else {
        return;
    };
    for name in names.split_whitespace() {
        if name.starts_with("egress-") && !desired.egress.iter().any(|e| e == name) {
            let _ = cli::docker(&["network", "rm", name], None, &Default::default());
        }
    }
}

/// Removes the configs of a stack that its file no longer names (`docker stack deploy`
/// leaves them behind: each change of a proxy file is a new config). One still used by a task
/// that is stopping is refused by Docker and goes at the next apply.
fn prune_configs(stack: &Stack, p: &StackPlan, root: &Path) {
    let Ok(text) = std::fs::read_to_string(root.join(&stack.file)) else {
        return;
    };
    let Ok(doc) = crate::yaml::parse(&text) else {
        return;
    };
    let wanted: Vec<&str> = doc
        .value
        .get("configs")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(|c| c.get("name").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let filter = format!("label={STACK_LABEL}={}", p.stack);
    let Ok(names) = cli::checked(&["config", "ls", "--filter", &filter, "--format", "{{.Name}}"])
    else {
        return;
    };
    for name in names.split_whitespace().filter(|n| !wanted.contains(n)) {
        let _ = cli::docker(&["config", "rm", name], None, &Default::default());
    }
}

fn failed(p: &StackPlan, message: String) -> StackResult {
    StackResult {
        stack: p.stack.clone(),
        ok: false,
        message,
        services: Vec::new(),
    }
}

/// One stack: deploy when something is created or updated, remove what left the file, wait.
fn deploy(root: &Path, stack: &Stack, p: &StackPlan, timeout: Duration) -> StackResult {
    let full = |service: &str| format!("{}_{service}", p.stack);
    // The update each service shows now: a different one after the deploy is ours.
    let mut before: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in p.services.iter().filter(|s| s.action == Action::Update) {
        let started = observed::service(&full(&s.service))
            .ok()
            .flatten()
            .and_then(|o| o.update_started);
        before.insert(s.service.clone(), started);
    }
    if p.deploys() {
        let file = root.join(&stack.file);
        let dir = file.parent().unwrap_or(root);
        let file_arg = file.to_string_lossy();
        // `--resolve-image never`: the nodes use the tag as written (locally built images
        // have no registry digest to pin); docs/swarm.md.
        let args = [
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            file_arg.as_ref(),
            &p.stack,
        ];
        match cli::docker(&args, Some(dir), &stack.env) {
            Ok(o) if o.ok => {}
            Ok(o) => {
                return failed(
                    p,
                    format!("docker stack deploy failed: {}", o.stderr.trim()),
                );
            }
            Err(e) => return failed(p, format!("{e:#}")),
        }
    }
    let mut services = Vec::new();
    for s in p.services.iter().filter(|s| s.action == Action::Remove) {
        let result = cli::docker(
            &["service", "rm", &full(&s.service)],
            None,
            &Default::default(),
        );
        let (ok, message) = match result {
            Ok(o) if o.ok => (true, "removed".to_string()),
            Ok(o) => (false, o.stderr.trim().to_string()),
            Err(e) => (false, format!("{e:#}")),
        };
        services.push(ServiceResult {
            service: s.service.clone(),
            action: s.action,
            ok,
            message,
        });
    }
    let pending: Vec<(String, Action)> = p
        .services
        .iter()
        .filter(|s| matches!(s.action, Action::Create | Action::Update))
        .map(|s| (s.service.clone(), s.action))
        .collect();
    services.extend(wait(&p.stack, &pending, &before, timeout));
    for s in p.services.iter().filter(|s| s.action == Action::Unchanged) {
        services.push(ServiceResult {
            service: s.service.clone(),
            action: s.action,
            ok: true,
            message: String::new(),
        });
    }
    let ok = services.iter().all(|s| s.ok);
    if ok {
        prune_configs(stack, p, root);
    }
    let rolled_back = services.iter().any(|s| s.message.contains("rolled back"));
    StackResult {
        stack: p.stack.clone(),
        ok,
        message: match (ok, rolled_back) {
            (true, _) => "converged".into(),
            (false, true) => "Swarm rolled back: the previous version keeps serving".into(),
            (false, false) => "failed".into(),
        },
        services,
    }
}

/// What one service's wait found so far.
enum Verdict {
    Waiting,
    Done(bool, String),
}

/// Waits until every created or updated service converged, failed, or `timeout` passed.
fn wait(
    stack: &str,
    pending: &[(String, Action)],
    before: &BTreeMap<String, Option<String>>,
    timeout: Duration,
) -> Vec<ServiceResult> {
    let started = Instant::now();
    let mut done: BTreeMap<String, (bool, String)> = BTreeMap::new();
    loop {
        for (service, action) in pending {
            if done.contains_key(service) {
                continue;
            }
            let name = format!("{stack}_{service}");
            let verdict = match action {
                Action::Update => {
                    update_verdict(&name, before.get(service).cloned().flatten(), started)
                }
                _ => create_verdict(&name, started),
            };
            if let Verdict::Done(ok, message) = verdict {
                done.insert(service.clone(), (ok, message));
            }
        }
        if done.len() == pending.len() || started.elapsed() > timeout {
            break;
        }
        std::thread::sleep(POLL);
    }
    pending
        .iter()
        .map(|(service, action)| {
            let (ok, message) = done.remove(service).unwrap_or_else(|| {
                let name = format!("{stack}_{service}");
                (
                    false,
                    format!(
                        "not converged within {} s{}",
                        timeout.as_secs(),
                        task_error(&name)
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                )
            });
            ServiceResult {
                service: service.clone(),
                action: *action,
                ok,
                message,
            }
        })
        .collect()
}

/// An update is judged by Swarm's `UpdateStatus` once a new one started; an update that
/// replaced no task (a label) never shows one and is judged by the tasks.
fn update_verdict(name: &str, before: Option<String>, since: Instant) -> Verdict {
    let Ok(Some(s)) = observed::service(name) else {
        return Verdict::Waiting;
    };
    if s.update_started.is_some() && s.update_started != before {
        let message = s.update_message.clone().unwrap_or_default();
        return match s.update_state.as_deref() {
            Some("completed") => Verdict::Done(true, "updated".into()),
            Some("rollback_completed") => Verdict::Done(
                false,
                format!("Swarm rolled back to the previous version: {message}"),
            ),
            Some(state @ ("paused" | "rollback_paused")) => {
                Verdict::Done(false, format!("Swarm {state} the update: {message}"))
            }
            _ => Verdict::Waiting,
        };
    }
    if since.elapsed() > UPDATE_APPEARS {
        return create_verdict(name, since);
    }
    Verdict::Waiting
}

/// A new service is done when every desired task runs (Swarm counts a task with a
/// healthcheck as running only once it is healthy).
fn create_verdict(name: &str, since: Instant) -> Verdict {
    match observed::replicas(name) {
        // A new global service shows 0/0 until the orchestrator placed its tasks.
        Ok(Some((_, 0))) if since.elapsed() > PLACEMENT && is_global(name) => Verdict::Done(
            false,
            "no node may run it: no node matches its placement (the ingress node label?)".into(),
        ),
        Ok(Some((running, desired))) if running == desired && desired > 0 => {
            Verdict::Done(true, format!("{running}/{desired} tasks running"))
        }
        _ => Verdict::Waiting,
    }
}

fn is_global(name: &str) -> bool {
    cli::checked(&[
        "service",
        "inspect",
        "-f",
        "{{if .Spec.Mode.Global}}global{{end}}",
        name,
    ])
    .is_ok_and(|o| o.trim() == "global")
}

/// The latest task error of a service (`No such image: …`, `task: non-zero exit (1)`).
fn task_error(name: &str) -> Option<String> {
    let out = cli::checked(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.Error}}",
        name,
    ])
    .ok()?;
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// `docker stack rm`, then waits until its services and networks are gone.
fn remove_stack(p: &StackPlan, timeout: Duration) -> StackResult {
    if let Err(e) = cli::checked(&["stack", "rm", &p.stack]) {
        return failed(p, format!("{e:#}"));
    }
    let started = Instant::now();
    let filter = format!("label={STACK_LABEL}={}", p.stack);
    loop {
        let services =
            cli::checked(&["service", "ls", "-q", "--filter", &filter]).unwrap_or_default();
        let networks =
            cli::checked(&["network", "ls", "-q", "--filter", &filter]).unwrap_or_default();
        if services.trim().is_empty() && networks.trim().is_empty() {
            break;
        }
        // Stack rm gives up on a network whose tasks are still stopping: try again.
        if services.trim().is_empty() {
            for id in networks.split_whitespace() {
                let _ = cli::docker(&["network", "rm", id], None, &Default::default());
            }
        }
        if started.elapsed() > timeout {
            return failed(p, format!("stack not gone within {} s", timeout.as_secs()));
        }
        std::thread::sleep(POLL);
    }
    StackResult {
        stack: p.stack.clone(),
        ok: true,
        message: "removed with its networks".into(),
        services: p
            .services
            .iter()
            .map(|s| ServiceResult {
                service: s.service.clone(),
                action: s.action,
                ok: true,
                message: "removed".into(),
            })
            .collect(),
    }
}

/// The state after a run: succeeded services take their new fingerprint, failed ones keep the
/// old, removed ones are forgotten.
pub fn next_state(old: &State, plans: &[StackPlan], results: &[StackResult]) -> State {
    let mut state = old.clone();
    for p in plans {
        let result = results.iter().find(|r| r.stack == p.stack);
        if p.removed {
            if result.is_some_and(|r| r.ok) {
                state.stacks.remove(&p.stack);
            }
            continue;
        }
        let entry = state.stacks.entry(p.stack.clone()).or_default();
        for s in &p.services {
            let ok = match result {
                Some(r) => r.services.iter().any(|x| x.service == s.service && x.ok),
                None => s.action == Action::Unchanged,
            };
            match (s.action, ok) {
                (Action::Remove, true) => {
                    entry.remove(&s.service);
                }
                (Action::Create | Action::Update | Action::Unchanged, true) => {
                    entry.insert(s.service.clone(), s.fingerprint.clone());
                }
                _ => {}
            }
        }
    }
    state
}
