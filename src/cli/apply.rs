//! `itsup apply [TARGET…] [--dry-run]`: render, write, then deploy what changed.
//!
//! The dry run and the real run compute the same action plan from the same snapshot (rendered
//! files in memory, running containers, last applied state), so what the dry run prints is what
//! apply does. Exit codes: 0 ok, 1 failure (or validation errors), 2 dry run with changes.
//! Projects with validation errors are left exactly as they run: never pruned, never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Format, Global, report};
use crate::deploy::actions::{self, Action, StackPlan};
use crate::deploy::desired::{Desired, PROXY};
use crate::deploy::docker::Observed;
use crate::deploy::execute::{Ctx, StackResult};
use crate::deploy::state::{StackState, State};
use crate::deploy::{compose::ComposeCli, docker, lock::ApplyLock, order, progress::Progress};
use crate::output::ChangeKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only deploy these projects (`proxy` for the proxy stack); files are always all rendered.
    pub targets: Vec<String>,
    /// Print the file diff and the per-service actions; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format (the progress lines stay on stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Seconds to wait for another apply to finish before giving up.
    #[arg(long, default_value_t = 300)]
    pub lock_timeout: u64,
    /// Seconds a new container may take to become healthy and be admitted by the proxy.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Seconds draining may take before the old container is stopped anyway.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Projects deployed at the same time (within one level of the egress graph).
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Admin API of `itsup proxy` (engine itsup) as IP:PORT, instead of the Unix socket the
    /// generated proxy stack shares at proxy/itsup/run/admin.sock. Start-first rollouts admit
    /// the new container and drain the old one there; with neither, they rely on Docker DNS.
    #[arg(long, env = "ITSUP_PROXY_ADMIN", value_name = "IP:PORT")]
    pub proxy_admin: Option<std::net::SocketAddr>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let root = &global.root;
    if let Some(code) = swarm_apply(global, &args)? {
        return Ok(code);
    }
    // Taken before looking at anything, so the plan reflects what the previous apply left.
    let _lock = if args.dry_run {
        None
    } else {
        Some(ApplyLock::acquire(
            root,
            Duration::from_secs(args.lock_timeout),
            |pid| {
                eprintln!("waiting for another itsup apply (pid {pid}) to finish…");
            },
        )?)
    };
    let started = Instant::now();
    let generated = crate::pipeline::generate(root)?;
    let outcome = &generated.outcome;
    report::diagnostics(global, &outcome.diagnostics, &outcome.broken);
    report::kept(global, &outcome.kept);
    let Some(plan) = &generated.plan else {
        eprintln!("nothing applied: fix the platform files first");
        return Ok(1);
    };
    let changes = crate::output::changes(root, &generated.artifacts, &outcome.broken)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let docker = docker::connect().await?;
        let mut snap = crate::deploy::snapshot(root, plan, &generated.artifacts, &docker).await?;
        if let Some(image) = missing_itsup_image(plan, &snap.desired) {
            if args.dry_run {
                eprintln!("the itsup image {image} is missing: apply builds it from this executable");
            } else {
                if !global.quiet {
                    eprintln!("building the itsup image {image} from this executable…");
                }
                crate::deploy::image::build(&docker, &image).await?;
                if !global.quiet {
                    eprintln!("built {image}");
                }
                snap = crate::deploy::snapshot(root, plan, &generated.artifacts, &docker).await?;
            }
        }
        if args.dry_run {
            if crate::deploy::journal::leftover(root)?.is_some() {
                eprintln!(
                    "an interrupted apply left rollouts in flight (.itsup/journal.json): apply heals them before it plans"
                );
            }
        } else {
            let healer = crate::deploy::heal::Healer {
                root,
                docker: &docker,
                engine: snap.desired.engine,
                timeout: Duration::from_secs(args.timeout),
            };
            let healed = healer.run(&snap, &outcome.broken).await?;
            if !healed.is_empty() {
                if !global.quiet {
                    eprintln!("found leftovers of an interrupted apply; healed them:");
                    for line in &healed {
                        eprintln!("  {line}");
                    }
                }
                snap = crate::deploy::snapshot(root, plan, &generated.artifacts, &docker).await?;
            }
        }
        // A broken project is missing from the Plan: it is left exactly as it runs (never
        // pruned), the others go on, and the exit code says something was wrong.
        let plans = actions::plan(
            &snap.desired,
            &without(&snap.observed, &outcome.broken),
            &state_without(&snap.state, &outcome.broken),
            &args.targets,
        );
        let stale = actions::stale_networks(
            &snap.desired,
            &snap.networks,
            &outcome.broken,
            &args.targets,
        );
        let pending =
            !changes.is_empty() || plans.iter().any(StackPlan::changes) || !stale.is_empty();

        if args.dry_run {
            print_dry_run(global, &args, &changes, &plans, &stale);
            return Ok(if !outcome.is_valid() {
                1
            } else if pending {
                2
            } else {
                0
            });
        }
        crate::output::write(root, &changes)?;
        crate::output::mounts::prepare(root, &generated.artifacts)?;
        generated.save_last_good(root)?;
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
        if !plans.iter().any(StackPlan::changes) {
            let networks = prune_networks(&docker, &stale).await;
            print_results(global, &args, &[], &networks, &plans, started);
            save_state(root, &snap.desired, &snap.state, &plans, &[])?;
            return Ok(i32::from(!outcome.is_valid()));
        }
        let me = crate::deploy::labels::root_id(root);
        ensure_networks(&docker, &snap.desired, &plans, &me).await?;
        let ctx = Ctx {
            root: root.clone(),
            docker: docker.clone(),
            compose: ComposeCli::detect()?,
            progress: Progress::new(global.quiet || args.format == Format::Json),
            engine: snap.desired.engine,
            proxy_network: plan.settings.network.clone(),
            ready_timeout: Duration::from_secs(args.timeout),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            proxy_admin: args.proxy_admin,
            itsup_pins: std::sync::Arc::new(crate::deploy::itsup_admin::Pins::new(
                root.join("proxy/itsup/proxy.yml"),
            )),
        };
        let todo: Vec<StackPlan> = plans
            .iter()
            .filter(|p| p.changes() || p.removed)
            .cloned()
            .collect();
        record_intent(root, &snap.state, &todo)?;
        let results = order::run_all(&ctx, &todo, args.parallel).await;
        // Last, once both sides of a removed egress pair were pruned or rolled out without it.
        let networks = prune_networks(&docker, &stale).await;
        save_state(root, &snap.desired, &snap.state, &plans, &results)?;
        print_results(global, &args, &results, &networks, &plans, started);
        if !outcome.broken.is_empty() {
            let names: Vec<&str> = outcome.broken.iter().map(String::as_str).collect();
            eprintln!("left as they run (invalid input): {}", names.join(", "));
        }
        Ok(i32::from(
            !(results.iter().all(|r| r.ok) && outcome.is_valid()),
        ))
    })
}

/// With `orchestrator: swarm`, Swarm deploys (`cli::swarm`); `None` on Compose.
fn swarm_apply(global: &Global, args: &Args) -> anyhow::Result<Option<i32>> {
    if !super::swarm::orchestrated(&global.root) {
        return Ok(None);
    }
    let _lock = super::swarm::lock(global, args)?;
    let generated = crate::pipeline::generate(&global.root)?;
    let outcome = &generated.outcome;
    report::diagnostics(global, &outcome.diagnostics, &outcome.broken);
    report::kept(global, &outcome.kept);
    let Some(swarm) = generated
        .plan
        .as_ref()
        .and_then(|p| p.settings.swarm.clone())
    else {
        eprintln!("nothing applied: fix the platform files first");
        return Ok(Some(1));
    };
    super::swarm::apply(global, args, &generated, &swarm).map(Some)
}

/// The itsup image (`proxy.itsupImage`) when a service to run uses it (engine itsup, the gRPC
/// agent) and the engine lacks it: apply builds it from its own executable.
fn missing_itsup_image(plan: &crate::plan::Plan, desired: &Desired) -> Option<String> {
    let image = crate::render::compose::itsup_image(plan);
    desired
        .proxy
        .iter()
        .chain(desired.projects.iter())
        .filter(|s| s.enabled)
        .flat_map(|s| &s.services)
        .any(|s| s.image_missing && s.image.as_deref() == Some(image.as_str()))
        .then_some(image)
}

/// Containers of projects other than `broken`.
fn without(observed: &[Observed], broken: &BTreeSet<String>) -> Vec<Observed> {
    observed
        .iter()
        .filter(|o| !broken.contains(&o.project))
        .cloned()
        .collect()
}

fn state_without(state: &State, broken: &BTreeSet<String>) -> State {
    let mut s = state.clone();
    s.projects.retain(|name, _| !broken.contains(name));
    s
}

/// What became of one stale egress network.
#[derive(Debug, Clone, serde::Serialize)]
struct NetworkResult {
    network: String,
    action: &'static str,
    removed: bool,
    message: String,
}

/// Removes the stale egress networks; one still in use (a container of a stack whose rollout
/// failed, or one attached by hand) is kept and reported, and the next apply tries again.
async fn prune_networks(docker: &bollard::Docker, stale: &[String]) -> Vec<NetworkResult> {
    let mut out = Vec::new();
    for name in stale {
        let removed = docker::remove_network_if_unused(docker, name).await;
        out.push(NetworkResult {
            network: name.clone(),
            action: "prune",
            removed,
            message: if removed {
                "removed".into()
            } else {
                "kept: still in use (the next apply tries again)".into()
            },
        });
    }
    out
}

/// External networks of every stack that will run, created before any `compose up`, labelled
/// with the root so that only this root's apply ever prunes them.
async fn ensure_networks(
    docker: &bollard::Docker,
    desired: &Desired,
    plans: &[StackPlan],
    root: &str,
) -> anyhow::Result<()> {
    let mut wanted: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for p in plans.iter().filter(|p| p.changes()) {
        let Some(d) = &p.desired else { continue };
        if !d.enabled {
            continue;
        }
        for (name, subnet) in &d.networks {
            wanted.insert(name, subnet.as_deref());
        }
    }
    // The proxy network is needed by every routed stack, even when the proxy is not a target.
    if let Some(proxy) = &desired.proxy {
        for (name, subnet) in &proxy.networks {
            if wanted.contains_key(name.as_str()) || plans.iter().any(|p| p.stack == PROXY) {
                wanted.insert(name, subnet.as_deref());
            }
        }
    }
    for (name, subnet) in wanted {
        docker::ensure_network(docker, name, subnet, root).await?;
    }
    Ok(())
}

/// Before anything is created: the state file learns of new projects, so that an apply killed
/// after Compose created a project's network but before its containers (or before the final
/// state write) leaves a project the next apply can still prune if it is gone by then.
fn record_intent(root: &std::path::Path, old: &State, todo: &[StackPlan]) -> anyhow::Result<()> {
    let mut intent = old.clone();
    for p in todo.iter().filter(|p| !p.removed && p.stack != PROXY) {
        intent
            .projects
            .entry(p.stack.clone())
            .or_insert_with(|| StackState {
                enabled: true,
                ..StackState::default()
            });
    }
    if intent != *old {
        intent.save(root)?;
    }
    Ok(())
}

/// Records what now runs: succeeded services take their new hash, failed ones keep the old,
/// pruned ones and removed projects are forgotten.
fn save_state(
    root: &std::path::Path,
    desired: &Desired,
    old: &State,
    plans: &[StackPlan],
    results: &[StackResult],
) -> anyhow::Result<()> {
    let mut state = old.clone();
    for p in plans {
        let result = results.iter().find(|r| r.stack == p.stack);
        let ok = |service: &str| {
            result.is_none_or(|r| r.services.iter().any(|s| s.service == service && s.ok))
        };
        if p.removed {
            if result.is_none_or(|r| r.ok) {
                state.projects.remove(&p.stack);
            }
            continue;
        }
        let Some(d) = &p.desired else { continue };
        let previous = if p.stack == PROXY {
            old.proxy.clone()
        } else {
            old.projects.get(&p.stack).cloned()
        }
        .unwrap_or_default();
        let mut services = BTreeMap::new();
        for s in &p.services {
            let hash = match (s.action, ok(&s.service)) {
                (Action::Prune, true) => None,
                (_, true) => Some(s.hash.clone()),
                (_, false) => previous.services.get(&s.service).cloned(),
            };
            if let Some(h) = hash.filter(|h| !h.is_empty()) {
                services.insert(s.service.clone(), h);
            }
        }
        let entry = StackState {
            enabled: d.enabled,
            services,
            config: if p.stack == PROXY && result.is_none_or(|r| r.ok) {
                desired.proxy_config.clone()
            } else {
                previous.config.clone()
            },
        };
        if p.stack == PROXY {
            state.proxy = Some(entry);
        } else {
            state.projects.insert(p.stack.clone(), entry);
        }
    }
    if state != *old {
        state.save(root)?;
    }
    Ok(())
}

fn print_dry_run(
    global: &Global,
    args: &Args,
    changes: &[crate::output::Change],
    plans: &[StackPlan],
    stale: &[String],
) {
    if args.format == Format::Json {
        let files = changes_json(changes);
        let networks: Vec<_> = stale
            .iter()
            .map(|n| json!({"network": n, "action": "prune"}))
            .collect();
        let out = json!({"files": files, "stacks": plans, "networks": networks});
        out_line(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    print_changes(global, changes);
    for p in plans {
        if p.services.is_empty() {
            out_line(&format!("{}: removed (nothing left running)", p.stack));
            continue;
        }
        out_line(&format!("{}:", p.stack));
        for s in &p.services {
            out_line(&format!(
                "  {:<24} {:<9} {}",
                s.service,
                s.action.as_str(),
                s.reason
            ));
        }
    }
    if !stale.is_empty() {
        out_line("networks:");
        for n in stale {
            out_line(&format!(
                "  {n:<24} prune     no egress pair uses it any more (removed once unused)"
            ));
        }
    }
    let n = plans
        .iter()
        .flat_map(|p| &p.services)
        .filter(|s| s.action != Action::Unchanged)
        .count();
    let nets = if stale.is_empty() {
        String::new()
    } else {
        format!(", {} network(s) to prune", stale.len())
    };
    out_line(&format!(
        "{} file(s) to change, {n} service action(s) pending{nets}",
        changes.len()
    ));
}

fn print_results(
    global: &Global,
    args: &Args,
    results: &[StackResult],
    networks: &[NetworkResult],
    plans: &[StackPlan],
    started: Instant,
) {
    let secs = started.elapsed().as_secs_f64();
    if args.format == Format::Json {
        let unchanged: Vec<&str> = plans
            .iter()
            .filter(|p| !results.iter().any(|r| r.stack == p.stack))
            .map(|p| p.stack.as_str())
            .collect();
        let out = json!({
            "ok": results.iter().all(|r| r.ok),
            "seconds": secs,
            "stacks": results,
            "networks": networks,
            "unchanged": unchanged,
        });
        out_line(&serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    for r in results {
        let mark = if r.ok { "ok" } else { "FAILED" };
        if global.quiet && r.ok {
            continue;
        }
        out_line(&format!("{}: {mark}", r.stack));
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
    if !networks.is_empty() && !global.quiet {
        out_line("networks:");
        for n in networks {
            out_line(&format!(
                "  {:<24} {:<9} {}",
                n.network, n.action, n.message
            ));
        }
    }
    if !global.quiet {
        let failed = results.iter().filter(|r| !r.ok).count();
        let unchanged = plans.len() - results.len();
        out_line(&format!(
            "{} stack(s) deployed, {failed} failed, {unchanged} unchanged in {secs:.2} s",
            results.len() - failed
        ));
    }
}

/// Prints a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
/// The rendered files a dry run would change, as the JSON report lists them.
pub(super) fn changes_json(changes: &[crate::output::Change]) -> Vec<serde_json::Value> {
    changes
        .iter()
        .map(|c| {
            let change = match c.kind {
                ChangeKind::Create => "create",
                ChangeKind::Modify => "modify",
                ChangeKind::Delete => "delete",
            };
            json!({"path": c.path, "change": change})
        })
        .collect()
}

/// The rendered files a dry run would change, as unified diffs, then a blank line.
pub(super) fn print_changes(global: &Global, changes: &[crate::output::Change]) {
    let color = global.color.enabled();
    for c in changes {
        out_line(crate::output::unified(c, color).trim_end_matches('\n'));
    }
    if !changes.is_empty() {
        out_line("");
    }
}

pub(super) fn out_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"));
}
