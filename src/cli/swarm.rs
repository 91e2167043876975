//! `itsup apply` and `itsup status` with `orchestrator: swarm` (docs/swarm.md): the same
//! contract as on Compose (the dry run prints exactly what apply does; exit 0 ok, 1 failure,
//! 2 dry run with changes), carried out by `deploy::swarm`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::apply::{Args, out_line};
use super::{Format, Global, report};
use crate::deploy::lock::ApplyLock;
use crate::deploy::swarm::execute::{self, StackResult};
use crate::deploy::swarm::{Action, StackPlan, cli, desired, observed, plan, state::State, status};
use crate::output::ChangeKind;
use crate::pipeline::Generated;
use crate::plan::SwarmPlan;

/// Whether `projects/itsup.yml` says `orchestrator: swarm` (read before the lock and the full
/// load; an unreadable file is left to the normal path to report).
pub fn orchestrated(root: &std::path::Path) -> bool {
    std::fs::read_to_string(root.join("projects/itsup.yml"))
        .ok()
        .and_then(|text| crate::yaml::parse(&text).ok())
        .and_then(|doc| doc.value.get("orchestrator").cloned())
        .is_some_and(|v| v == "swarm")
}

/// `itsup apply` on Swarm.
pub fn apply(
    global: &Global,
    args: &Args,
    generated: &Generated,
    swarm: &SwarmPlan,
) -> anyhow::Result<i32> {
    let root = &global.root;
    let started = Instant::now();
    let outcome = &generated.outcome;
    let Some(plan) = &generated.plan else {
        return Ok(1);
    };
    cli::require_manager()?;
    let changes = crate::output::changes(root, &generated.artifacts, &outcome.broken)?;
    let desired = desired::build(root, plan, swarm, &generated.artifacts)?;
    let observed = observed::services(&desired.platform)?;
    let state = State::load(root)?;
    let plans = plan::plan(&desired, &observed, &state, &args.targets, &outcome.broken);
    let pending = !changes.is_empty() || plans.iter().any(StackPlan::changes);
    if args.dry_run {
        print_dry_run(global, args, &changes, &plans);
        return Ok(if !outcome.is_valid() {
            1
        } else {
            i32::from(pending) * 2
        });
    }
    crate::output::write(root, &changes)?;
    generated.save_last_good(root)?;
    prepare_mounts(root, plan, &generated.artifacts)?;
    if !global.quiet && args.format == Format::Text {
        for c in &changes {
            let verb = match c.kind {
                ChangeKind::Create => "created",
                ChangeKind::Modify => "updated",
                ChangeKind::Delete => "removed",
            };
            eprintln!("{verb} {}", c.path.display());
        }
    }
    execute::ensure_networks(&desired)?;
    let results = execute::run(root, &desired, &plans, Duration::from_secs(args.timeout));
    let after = observed::services(&desired.platform)?;
    let next = execute::next_state(&state, &plans, &results, &after);
    if next != state {
        next.save(root)?;
    }
    print_results(global, args, &results, &plans, started);
    if !outcome.broken.is_empty() {
        let names: Vec<&str> = outcome.broken.iter().map(String::as_str).collect();
        eprintln!("left as they run (invalid input): {}", names.join(", "));
    }
    Ok(i32::from(
        !(results.iter().all(|r| r.ok) && outcome.is_valid()),
    ))
}

/// Bind-mount sources of the proxy stack (certificates, ACME storage) exist before Swarm
/// needs them: Swarm, unlike Compose, refuses a missing one.
fn prepare_mounts(
    root: &std::path::Path,
    plan: &crate::plan::Plan,
    artifacts: &[crate::render::Artifact],
) -> anyhow::Result<()> {
    crate::output::mounts::prepare(root, artifacts)?;
    crate::deploy::proxy::prepare(root, plan.settings.engine)?;
    std::fs::create_dir_all(root.join("proxy/data/acme"))?;
    Ok(())
}

/// The lock `apply` takes on Compose, taken the same way.
pub fn lock(global: &Global, args: &Args) -> anyhow::Result<Option<ApplyLock>> {
    if args.dry_run {
        return Ok(None);
    }
    Ok(Some(ApplyLock::acquire(
        &global.root,
        Duration::from_secs(args.lock_timeout),
        |pid| eprintln!("waiting for another itsup apply (pid {pid}) to finish…"),
    )?))
}

fn print_dry_run(
    global: &Global,
    args: &Args,
    changes: &[crate::output::Change],
    plans: &[StackPlan],
) {
    if args.format == Format::Json {
        let out = json!({"files": super::apply::changes_json(changes), "stacks": plans});
        out_line(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    super::apply::print_changes(global, changes);
    for p in plans {
        let suffix = if p.removed {
            " (stack removed with its networks)"
        } else {
            ""
        };
        out_line(&format!("{} (stack {}):{suffix}", p.project, p.stack));
        for s in &p.services {
            out_line(&format!(
                "  {:<24} {:<9} {}",
                s.service,
                s.action.as_str(),
                s.reason
            ));
        }
    }
    let n = plans
        .iter()
        .flat_map(|p| &p.services)
        .filter(|s| s.action != Action::Unchanged)
        .count();
    out_line(&format!(
        "{} file(s) to change, {n} service action(s) pending",
        changes.len()
    ));
}

fn print_results(
    global: &Global,
    args: &Args,
    results: &[StackResult],
    plans: &[StackPlan],
    started: Instant,
) {
    let secs = started.elapsed().as_secs_f64();
    if args.format == Format::Json {
        let out = json!({
            "ok": results.iter().all(|r| r.ok),
            "seconds": secs,
            "stacks": results,
        });
        out_line(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    for r in results {
        if global.quiet && r.ok {
            continue;
        }
        let mark = if r.ok { "ok" } else { "FAILED" };
        out_line(&format!("{}: {mark} ({})", r.stack, r.message));
        for s in r
            .services
            .iter()
            .filter(|s| s.action != Action::Unchanged || !s.ok)
        {
            out_line(&format!(
                "  {:<24} {:<9} {} {}",
                s.service,
                s.action.as_str(),
                if s.ok { "ok" } else { "FAILED" },
                s.message
            ));
        }
    }
    if !global.quiet {
        let failed = results.iter().filter(|r| !r.ok).count();
        let unchanged = plans.len().saturating_sub(results.len());
        out_line(&format!(
            "{} stack(s) deployed, {failed} failed, {unchanged} unchanged in {secs:.2} s",
            results.len() - failed
        ));
    }
}

/// `itsup status` on Swarm.
pub fn status(
    global: &Global,
    format: Format,
    generated: &Generated,
    swarm: &SwarmPlan,
) -> anyhow::Result<i32> {
    let Some(plan) = &generated.plan else {
        return Ok(1);
    };
    report::kept(global, &generated.outcome.kept);
    cli::require_manager()?;
    let desired = desired::build(&global.root, plan, swarm, &generated.artifacts)?;
    let observed = observed::services(&desired.platform)?;
    let state = State::load(&global.root)?;
    let rows = status::rows(&desired, &observed, &state)?;
    if format == Format::Json {
        out_line(&serde_json::to_string_pretty(&rows).unwrap_or_default());
        return Ok(0);
    }
    out_line(&format!(
        "{:<28} {:<16} {:>7} {:>7}  {:<12} {:<18} nodes",
        "stack", "service", "desired", "running", "drift", "update"
    ));
    for r in &rows {
        let nodes: Vec<String> = r.nodes.iter().map(|(n, c)| format!("{n}:{c}")).collect();
        out_line(&format!(
            "{:<28} {:<16} {:>7} {:>7}  {:<12} {:<18} {}",
            r.stack,
            r.service,
            r.desired,
            r.running,
            r.drift,
            r.update.as_deref().unwrap_or("-"),
            nodes.join(" ")
        ));
    }
    Ok(0)
}

/// `itsup svc PROJECT ARGS…` on Swarm: `ps` and `services` alone show the stack
/// (`docker stack ps|services <stack>`); anything else is `docker service ARGS…` with the
/// project's service names turned into Swarm's (`web` → `<stack>_web`). Docker's exit code is
/// passed back.
pub fn svc(global: &Global, project: &str, args: &[String]) -> anyhow::Result<i32> {
    let generated = crate::pipeline::generate(&global.root)?;
    let Some(swarm) = generated
        .plan
        .as_ref()
        .and_then(|p| p.settings.swarm.clone())
    else {
        anyhow::bail!("the platform files are invalid (see `itsup validate`)");
    };
    let stack = if project == desired::PROXY {
        swarm.proxy_stack()
    } else {
        swarm.stack(project)
    };
    let file = if project == desired::PROXY {
        "proxy/docker-compose.yml".to_string()
    } else {
        format!("upstream/{project}/docker-compose.yml")
    };
    let services: Vec<String> = generated
        .artifacts
        .iter()
        .find(|a| a.path == std::path::Path::new(&file))
        .and_then(|a| crate::yaml::parse(&a.content).ok())
        .and_then(|d| {
            d.value
                .get("services")
                .and_then(|s| s.as_object())
                .map(|m| m.keys().cloned().collect())
        })
        .unwrap_or_default();
    if services.is_empty() {
        anyhow::bail!("{project:?} has no stack file (no compose file, or not a project)");
    }
    let mut command = std::process::Command::new("docker");
    match args.first().map(String::as_str) {
        Some(verb @ ("ps" | "services")) if args.len() == 1 => {
            command.args(["stack", verb, &stack]);
        }
        _ => {
            command.arg("service");
            command.args(args.iter().map(|a| {
                if services.contains(a) {
                    format!("{stack}_{a}")
                } else {
                    a.clone()
                }
            }));
        }
    }
    let status = command.status()?;
    Ok(status.code().unwrap_or(1))
}
