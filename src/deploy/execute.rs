//! Executing one stack's actions: prune, stop, create, reload, recreate (stop-first) and
//! rollout (start-first). A stack stops at its first failure (later services may depend on
//! it); other stacks go on. A failed rollout removes the new container and leaves the old one
//! serving: it is reported as a failure, never as "succeeded with a rollback".

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use serde::Serialize;

use super::actions::{Action, ServiceAction, StackPlan};
use super::admission::Admission;
use super::compose::{ComposeCli, Stack};
use super::desired::{DesiredService, DesiredStack, PROXY};
use super::docker::{self, Observed};
use super::drainfile;
use super::haproxy::Runtime;
use super::health::{self, Probe};
use super::labels;
use super::progress::{Line, Progress};
use crate::model::Engine;

/// What every stack's execution shares.
pub struct Ctx {
    pub root: PathBuf,
    pub docker: Docker,
    pub compose: ComposeCli,
    pub progress: Progress,
    pub engine: Engine,
    pub proxy_network: String,
    /// How long a new container may take to become ready (and the proxy to admit it).
    pub ready_timeout: Duration,
    /// How long draining may take before the old container is stopped anyway.
    pub drain_timeout: Duration,
    /// Admin API of `itsup proxy` (engine itsup): with it, rollouts admit and drain there.
    pub proxy_admin: Option<std::net::SocketAddr>,
    /// The itsup proxy's config file, pinned during rollouts (one writer for all stacks).
    pub itsup_pins: std::sync::Arc<super::itsup_admin::Pins>,
}

impl Ctx {
    /// The HAProxy owning the ports: engine haproxy's, or the edge in front of Traefik.
    fn haproxy(&self) -> Runtime {
        Runtime::in_dir(&self.root.join(super::desired::hand_over_dir(self.engine)))
    }
}

/// The outcome of one service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceResult {
    pub service: String,
    pub action: Action,
    pub ok: bool,
    /// What happened, or why it failed.
    pub message: String,
    pub seconds: f64,
}

/// The outcome of one stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackResult {
    pub stack: String,
    pub ok: bool,
    pub services: Vec<ServiceResult>,
    #[serde(skip)]
    pub removed: bool,
}

/// Runs one stack's plan.
pub async fn stack(ctx: &Ctx, plan: &StackPlan) -> StackResult {
    let mut results = Vec::new();
    let mut failed = false;
    if let Some(desired) = &plan.desired
        && plan.changes()
        && let Err(e) = write_labels(ctx, desired)
    {
        return failed_stack(plan, &format!("{e:#}"));
    }
    // The order matters: free what goes away first, then bring up what is new, then swap.
    let order = [
        Action::Prune,
        Action::Stop,
        Action::Create,
        Action::Reload,
        Action::Recreate,
        Action::Rollout,
    ];
    for kind in order {
        let todo: Vec<&ServiceAction> = plan.services.iter().filter(|s| s.action == kind).collect();
        if todo.is_empty() {
            continue;
        }
        if failed {
            for s in todo {
                results.push(skipped(s));
            }
            continue;
        }
        let batch = match kind {
            // One `compose up` for all new services, so Compose orders their depends_on.
            Action::Create => create(ctx, plan, &todo).await,
            _ => {
                let mut out = Vec::new();
                for s in todo {
                    let r = one(ctx, plan, s).await;
                    let stop = !r.ok;
                    out.push(r);
                    if stop {
                        failed = true;
                        break;
                    }
                }
                out
            }
        };
        failed |= batch.iter().any(|r| !r.ok);
        results.extend(batch);
    }
    for s in plan
        .services
        .iter()
        .filter(|s| s.action == Action::Unchanged)
    {
        results.push(ServiceResult {
            service: s.service.clone(),
            action: Action::Unchanged,
            ok: true,
            message: s.reason.clone(),
            seconds: 0.0,
        });
    }
    if plan.removed && !failed {
        for net in docker::project_networks(&ctx.docker, &plan.compose_project)
            .await
            .unwrap_or_default()
        {
            docker::remove_network_if_unused(&ctx.docker, &net).await;
        }
        let _ = std::fs::remove_file(labels::override_path(&ctx.root, &plan.compose_project));
    }
    results.sort_by_key(|r| {
        plan.services
            .iter()
            .position(|s| s.service == r.service)
            .unwrap_or(usize::MAX)
    });
    StackResult {
        stack: plan.stack.clone(),
        ok: results.iter().all(|r| r.ok),
        services: results,
        removed: plan.removed,
    }
}

fn failed_stack(plan: &StackPlan, why: &str) -> StackResult {
    StackResult {
        stack: plan.stack.clone(),
        ok: false,
        services: plan
            .services
            .iter()
            .map(|s| ServiceResult {
                service: s.service.clone(),
                action: s.action,
                ok: s.action == Action::Unchanged,
                message: if s.action == Action::Unchanged {
                    s.reason.clone()
                } else {
                    why.to_string()
                },
                seconds: 0.0,
            })
            .collect(),
        removed: plan.removed,
    }
}

fn skipped(s: &ServiceAction) -> ServiceResult {
    ServiceResult {
        service: s.service.clone(),
        action: s.action,
        ok: false,
        message: "skipped: an earlier service of this stack failed".into(),
        seconds: 0.0,
    }
}

fn write_labels(ctx: &Ctx, desired: &DesiredStack) -> anyhow::Result<()> {
    let hashes: BTreeMap<String, String> = desired
        .services
        .iter()
        .map(|s| (s.name.clone(), s.hash.clone()))
        .collect();
    let yaml = labels::override_yaml(&ctx.root, &desired.name, &hashes);
    labels::write_override(&ctx.root, &desired.compose_project, &yaml)
}

/// The Compose stack of a desired stack.
pub fn compose_stack(root: &Path, desired: &DesiredStack) -> Stack {
    let file = root.join(&desired.compose_file);
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf());
    let mut files = vec![file];
    let labels = labels::override_path(root, &desired.compose_project);
    if labels.exists() {
        files.push(labels);
    }
    Stack {
        project: desired.compose_project.clone(),
        dir,
        files,
        env: desired.env.clone(),
    }
}

async fn one(ctx: &Ctx, plan: &StackPlan, s: &ServiceAction) -> ServiceResult {
    let line = ctx
        .progress
        .line(&plan.stack, &s.service, s.action.as_str());
    let start = Instant::now();
    let outcome = match s.action {
        Action::Prune => prune(ctx, s, &line).await,
        Action::Stop => stop(ctx, s, &line).await,
        Action::Reload => reload(ctx, &line).await,
        Action::Recreate => recreate(ctx, plan, s, &line).await,
        Action::Rollout => rollout(ctx, plan, s, &line).await,
        Action::Create | Action::Unchanged => Ok("nothing to do".into()),
    };
    finish(&line, s, start, outcome)
}

fn finish(
    line: &Line,
    s: &ServiceAction,
    start: Instant,
    outcome: anyhow::Result<String>,
) -> ServiceResult {
    let seconds = start.elapsed().as_secs_f64();
    match outcome {
        Ok(message) => {
            line.done(&format!("{message} ({seconds:.1} s)"));
            ServiceResult {
                service: s.service.clone(),
                action: s.action,
                ok: true,
                message,
                seconds,
            }
        }
        Err(e) => {
            let message = format!("{e:#}");
            line.fail(&message);
            ServiceResult {
                service: s.service.clone(),
                action: s.action,
                ok: false,
                message,
                seconds,
            }
        }
    }
}

async fn prune(ctx: &Ctx, s: &ServiceAction, line: &Line) -> anyhow::Result<String> {
    for c in &s.containers {
        line.step(format!("stopping {}", c.name));
        docker::stop(&ctx.docker, &c.id, Duration::from_secs(10)).await?;
        docker::remove(&ctx.docker, &c.id).await?;
    }
    Ok(format!("removed {} container(s)", s.containers.len()))
}

async fn stop(ctx: &Ctx, s: &ServiceAction, line: &Line) -> anyhow::Result<String> {
    let grace = s
        .desired
        .as_ref()
        .map_or(Duration::from_secs(10), |d| d.grace);
    let running: Vec<&Observed> = s.containers.iter().filter(|c| c.running).collect();
    for c in &running {
        line.step(format!("stopping {}", c.name));
        docker::stop(&ctx.docker, &c.id, grace).await?;
    }
    Ok(format!("stopped {} container(s)", running.len()))
}

async fn reload(ctx: &Ctx, line: &Line) -> anyhow::Result<String> {
    line.step("reloading HAProxy through the master socket");
    ctx.haproxy().reload(ctx.ready_timeout).await?;
    Ok("reloaded hitlessly".into())
}

fn desired_of(s: &ServiceAction) -> anyhow::Result<&DesiredService> {
    s.desired
        .as_ref()
        .context("no desired state for the service")
}

fn stack_of(ctx: &Ctx, plan: &StackPlan) -> anyhow::Result<Stack> {
    let desired = plan
        .desired
        .as_ref()
        .context("no desired state for the stack")?;
    Ok(compose_stack(&ctx.root, desired))
}

/// Containers of one service now, by creation time.
async fn current(ctx: &Ctx, project: &str, service: &str) -> anyhow::Result<Vec<Observed>> {
    Ok(docker::stack_containers(&ctx.docker)
        .await?
        .into_iter()
        .filter(|c| c.project == project && c.service == service)
        .collect())
}

/// How to reach `itsup proxy`'s admin API: the operator's address, else the Unix socket the
/// generated proxy stack shares with the host, when the proxy has created it.
fn itsup_admin_endpoint(ctx: &Ctx) -> Option<super::itsup_admin::Endpoint> {
    use super::itsup_admin::{Endpoint, default_socket};
    if let Some(addr) = ctx.proxy_admin {
        return Some(Endpoint::Tcp(addr));
    }
    let socket = default_socket(&ctx.root);
    socket.exists().then_some(Endpoint::Unix(socket))
}

async fn proxy_ip(ctx: &Ctx, id: &str) -> Option<Ipv4Addr> {
    docker::addresses(&ctx.docker, id).await.ok().and_then(|a| {
        a.get(&ctx.proxy_network)
            .copied()
            .or_else(|| a.values().next().copied())
    })
}

async fn wait_all_ready(
    ctx: &Ctx,
    d: &DesiredService,
    containers: &[Observed],
    line: &Line,
) -> anyhow::Result<Vec<&'static str>> {
    let mut how = Vec::new();
    for c in containers {
        let probe = Probe {
            addr: proxy_ip(ctx, &c.id).await,
            port: d.port,
        };
        let judged = health::wait_ready(&ctx.docker, &c.id, probe, ctx.ready_timeout, |m| {
            line.step(m.to_string())
        })
        .await
        .with_context(|| format!("{} is not ready", c.name))?;
        how.push(judged);
    }
    Ok(how)
}

/// Engine traefik, the first apply with the edge: the Traefik that still publishes the ports
/// itself (planned `recreate`, see `actions::move_behind_the_edge`) stops before the edge binds
/// them; its recreate then starts the new one behind the edge.
async fn stop_traefik_holding_the_ports(
    ctx: &Ctx,
    plan: &StackPlan,
    todo: &[&ServiceAction],
) -> anyhow::Result<()> {
    let edge_new = todo
        .iter()
        .any(|s| s.service == super::desired::PROXY_EDGE_HOLDER);
    if ctx.engine != Engine::Traefik || plan.stack != PROXY || !edge_new {
        return Ok(());
    }
    for s in plan.services.iter().filter(|s| {
        s.service == super::desired::PROXY_SERVICE_TRAEFIK && s.action == Action::Recreate
    }) {
        let grace = s
            .desired
            .as_ref()
            .map_or(Duration::from_secs(10), |d| d.grace);
        for c in s.containers.iter().filter(|c| c.running) {
            docker::stop(&ctx.docker, &c.id, grace).await?;
        }
    }
    Ok(())
}

/// Engine traefik: the Traefik service itself, replaced blue/green behind the edge.
fn behind_edge(ctx: &Ctx, plan: &StackPlan, s: &ServiceAction) -> bool {
    ctx.engine == Engine::Traefik
        && plan.stack == PROXY
        && s.service == super::desired::PROXY_SERVICE_TRAEFIK
}

/// Prepares the proxy host folders before its containers start.
fn prepare_proxy(ctx: &Ctx, plan: &StackPlan) -> anyhow::Result<()> {
    if plan.stack == PROXY {
        super::proxy::prepare(&ctx.root, ctx.engine)?;
    }
    Ok(())
}

async fn wait_proxy_up(ctx: &Ctx, plan: &StackPlan) -> anyhow::Result<()> {
    let Some((service, _)) = super::desired::hand_over_pair(ctx.engine) else {
        return Ok(());
    };
    if plan.stack != PROXY {
        return Ok(());
    }
    let rt = ctx.haproxy();
    let deadline = tokio::time::Instant::now() + ctx.ready_timeout;
    let mut down_since: Option<tokio::time::Instant> = None;
    while !rt.alive().await {
        // A proxy that exits at start (bad config, limits) restarts in a loop: say so early.
        let containers = current(ctx, &plan.compose_project, service).await?;
        let mut down = None;
        for c in &containers {
            if let docker::Health::Down(why) = docker::health(&ctx.docker, &c.id).await? {
                down = Some(format!("{} is {why}", c.name));
            }
        }
        match (&down, down_since) {
            (Some(why), Some(since)) if since.elapsed() > Duration::from_secs(5) => {
                anyhow::bail!("{why}; see `itsup svc proxy logs {service}`")
            }
            (Some(_), None) => down_since = Some(tokio::time::Instant::now()),
            (None, _) => down_since = None,
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the admin socket of `{service}` (HAProxy) did not answer within {} s",
                ctx.ready_timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn create(ctx: &Ctx, plan: &StackPlan, todo: &[&ServiceAction]) -> Vec<ServiceResult> {
    let start = Instant::now();
    let lines: Vec<Line> = todo
        .iter()
        .map(|s| ctx.progress.line(&plan.stack, &s.service, "create"))
        .collect();
    let up = async {
        prepare_proxy(ctx, plan)?;
        let stack = stack_of(ctx, plan)?;
        // Stopped leftovers with another hash would just be restarted by `--no-recreate`.
        for s in todo {
            for c in s
                .containers
                .iter()
                .filter(|c| !c.running && c.hash.as_deref() != Some(s.hash.as_str()))
            {
                docker::remove(&ctx.docker, &c.id).await?;
            }
        }
        stop_traefik_holding_the_ports(ctx, plan, todo).await?;
        for l in &lines {
            l.step("compose up");
        }
        let mut args = vec!["up", "-d", "--no-deps", "--no-recreate"];
        args.extend(todo.iter().map(|s| s.service.as_str()));
        ctx.compose.run(&stack, &args).await?;
        wait_proxy_up(ctx, plan).await
    }
    .await;
    if let Err(e) = up {
        return todo
            .iter()
            .zip(&lines)
            .map(|(s, l)| finish(l, s, start, Err(anyhow::anyhow!("{e:#}"))))
            .collect();
    }
    let mut out = Vec::new();
    for (s, line) in todo.iter().zip(&lines) {
        let outcome = async {
            let d = desired_of(s)?;
            let now = current(ctx, &plan.compose_project, &s.service).await?;
            let running: Vec<Observed> = now.into_iter().filter(|c| c.running).collect();
            if running.is_empty() {
                anyhow::bail!("compose started no container");
            }
            ready_summary(ctx, d, &running, line).await
        }
        .await;
        out.push(finish(line, s, start, outcome));
    }
    out
}

/// Waits for `running` to be ready; "N container(s) <how>" for the report.
async fn ready_summary(
    ctx: &Ctx,
    d: &DesiredService,
    running: &[Observed],
    line: &Line,
) -> anyhow::Result<String> {
    let how = wait_all_ready(ctx, d, running, line).await?;
    Ok(format!(
        "{} container(s) {}",
        running.len(),
        how.first().copied().unwrap_or("up")
    ))
}

async fn recreate(
    ctx: &Ctx,
    plan: &StackPlan,
    s: &ServiceAction,
    line: &Line,
) -> anyhow::Result<String> {
    let d = desired_of(s)?;
    prepare_proxy(ctx, plan)?;
    let stack = stack_of(ctx, plan)?;
    line.step("stopping the old container, starting the new one");
    ctx.compose
        .run(
            &stack,
            &["up", "-d", "--no-deps", "--force-recreate", &s.service],
        )
        .await?;
    wait_proxy_up(ctx, plan).await?;
    let now = current(ctx, &plan.compose_project, &s.service).await?;
    let running: Vec<Observed> = now
        .into_iter()
        .filter(|c| c.running && c.hash.as_deref() == Some(d.hash.as_str()))
        .collect();
    if running.is_empty() {
        anyhow::bail!("compose started no container with the new hash");
    }
    let ready = ready_summary(ctx, d, &running, line).await?;
    Ok(format!("stop-first: {ready} ({})", d.rollout.reason))
}

async fn rollout(
    ctx: &Ctx,
    plan: &StackPlan,
    s: &ServiceAction,
    line: &Line,
) -> anyhow::Result<String> {
    let d = desired_of(s)?;
    let stack = stack_of(ctx, plan)?;
    let old: Vec<&Observed> = s.containers.iter().filter(|c| c.running).collect();
    for c in s.containers.iter().filter(|c| !c.running) {
        docker::remove(&ctx.docker, &c.id).await?;
    }
    let old_ids: Vec<&str> = old.iter().map(|c| c.id.as_str()).collect();
    let haproxy_backends = (ctx.engine == Engine::Haproxy && d.routed) || behind_edge(ctx, plan, s);
    // Before anything changes: what the next apply needs to heal this one if it is killed.
    super::journal::begin(
        &ctx.root,
        super::journal::Rollout {
            compose_project: plan.compose_project.clone(),
            service: s.service.clone(),
            hash: d.hash.clone(),
            old: old_ids.iter().map(|id| id.to_string()).collect(),
            backends: if haproxy_backends {
                d.backends.clone()
            } else {
                Vec::new()
            },
            drain_entries: Vec::new(),
            stopping: false,
        },
    )?;
    let outcome = rollout_journaled(ctx, plan, s, d, &stack, &old, line).await;
    // A failed rollout keeps its entry unless it is verified undone (only the old containers
    // left, and no slot of its HAProxy backends still forced into maintenance or drain): with
    // the engine or HAProxy's admin socket unreachable, the next apply finishes the clean-up.
    let undone = || async {
        current(ctx, &plan.compose_project, &s.service)
            .await
            .is_ok_and(|now| now.iter().all(|c| old_ids.contains(&c.id.as_str())))
            && (!haproxy_backends || slots_released(&ctx.haproxy(), &d.backends).await)
    };
    if outcome.is_ok() || undone().await {
        super::journal::end(&ctx.root, &plan.compose_project, &s.service)?;
    }
    outcome
}

/// Whether HAProxy answers and no slot of `backends` is forced into maintenance or drain.
async fn slots_released(runtime: &Runtime, backends: &[String]) -> bool {
    for backend in backends {
        match runtime.slots(backend).await {
            Ok(slots) if slots.iter().all(|s| s.admin_state & 0x09 == 0) => {}
            _ => return false,
        }
    }
    true
}

/// What one start-first rollout knows and has done so far: the old containers and their proxy
/// addresses, and (as the phases progress) the new containers and the drain entries written,
/// which a failure must undo.
struct Handover<'a> {
    ctx: &'a Ctx,
    plan: &'a StackPlan,
    s: &'a ServiceAction,
    d: &'a DesiredService,
    old: &'a [&'a Observed],
    old_ids: Vec<&'a str>,
    old_addrs: Vec<(String, Option<Ipv4Addr>)>,
    old_ips: Vec<Ipv4Addr>,
    /// Traefik replaced blue/green behind the edge.
    edge: bool,
    new_ids: Vec<String>,
    new_ips: Vec<Ipv4Addr>,
    drain_entries: Vec<String>,
}

/// The rollout itself, in phases: choose how the proxy admits, prepare it, start the new
/// containers beside the old, wait until they are ready, admit them, drain the old (a failure
/// up to here removes the new ones and restores the proxy), then stop the old and let the
/// proxy forget them.
async fn rollout_journaled(
    ctx: &Ctx,
    plan: &StackPlan,
    s: &ServiceAction,
    d: &DesiredService,
    stack: &Stack,
    old: &[&Observed],
    line: &Line,
) -> anyhow::Result<String> {
    let mut old_addrs = Vec::new();
    for c in old {
        old_addrs.push((c.id.clone(), proxy_ip(ctx, &c.id).await));
    }
    let mut p = Handover {
        ctx,
        plan,
        s,
        d,
        old,
        old_ids: old.iter().map(|c| c.id.as_str()).collect(),
        old_ips: old_addrs.iter().filter_map(|(_, ip)| *ip).collect(),
        old_addrs,
        edge: behind_edge(ctx, plan, s),
        new_ids: Vec::new(),
        new_ips: Vec::new(),
        drain_entries: Vec::new(),
    };
    let mut admission = admission_for(&p);
    line.step(match admission {
        Admission::Itsup { .. } => "pinning the proxy to the old container",
        _ => "parking free proxy slots",
    });
    admission
        .prepare(&p.old_ips, ctx.ready_timeout)
        .await
        .context("cannot prepare the proxy")?;
    let (count, drained) = match p.hand_over(&mut admission, stack, line).await {
        Ok(done) => done,
        Err(e) => {
            p.undo(&mut admission, line).await;
            return Err(e.context("rollout failed; the old container still serves"));
        }
    };
    p.retire_old(&mut admission, line).await?;
    let at = match (&admission, ctx.engine) {
        (Admission::Itsup { .. }, _) => " through the itsup proxy's admin API",
        (Admission::None, Engine::Itsup) if d.routed => {
            " (no admin socket at proxy/itsup/run/ and no --proxy-admin: not drained at the itsup proxy)"
        }
        _ => "",
    };
    Ok(format!(
        "start-first: {count} new container(s) admitted, old drained in {drained:.1} s and removed{at}"
    ))
}

/// How the proxy in front admits and drains this service's containers (engine decision).
fn admission_for(p: &Handover) -> Admission {
    let (ctx, d) = (p.ctx, p.d);
    match (ctx.engine, d.routed || p.edge) {
        (Engine::Traefik, true) if p.edge => Admission::Haproxy {
            runtime: ctx.haproxy(),
            backends: d.backends.clone(),
            parked: Vec::new(),
        },
        (Engine::Haproxy, true) if !d.backends.is_empty() => Admission::Haproxy {
            runtime: ctx.haproxy(),
            backends: d.backends.clone(),
            parked: Vec::new(),
        },
        (Engine::Traefik, true) => Admission::Traefik,
        (Engine::Itsup, true) if !d.backends.is_empty() => match itsup_admin_endpoint(ctx) {
            Some(endpoint) => Admission::Itsup {
                admin: super::itsup_admin::AdminClient { endpoint },
                pins: ctx.itsup_pins.clone(),
                clusters: d.backends.clone(),
                rendered: BTreeMap::new(),
                old: Vec::new(),
                new: Vec::new(),
            },
            None => Admission::None,
        },
        _ => Admission::None,
    }
}

impl Handover<'_> {
    /// Start beside, wait ready, admit, drain the old: the new containers' count and the drain
    /// time. Any error leaves what was done in `self` for [`Handover::undo`].
    async fn hand_over(
        &mut self,
        admission: &mut Admission,
        stack: &Stack,
        line: &Line,
    ) -> anyhow::Result<(usize, f64)> {
        let new = self.start_beside(stack, line).await?;
        self.wait_ready(&new, line).await?;
        line.step("admitting the new container at the proxy");
        admission
            .admit(&self.new_ips, self.ctx.ready_timeout)
            .await
            .context("the proxy did not admit the new container")?;
        line.step("draining the old container");
        let drain_start = Instant::now();
        if let Admission::Haproxy { .. } = admission {
            self.drain_entries = self
                .old_addrs
                .iter()
                .filter_map(|(_, ip)| Some(format!("{}:{}", (*ip)?, self.d.port?)))
                .collect();
            super::journal::draining(
                &self.ctx.root,
                &self.plan.compose_project,
                &self.s.service,
                &self.drain_entries,
            )?;
            // Best effort: the runtime API below is what actually drains.
            let _ = drainfile::update(&self.ctx.root, &self.drain_entries, true);
        }
        admission
            .drain(&self.ctx.docker, &self.old_addrs, self.ctx.drain_timeout)
            .await
            .context("cannot drain the old container")?;
        Ok((new.len(), drain_start.elapsed().as_secs_f64()))
    }

    /// Compose scales the service to twice its size without touching the old containers; the
    /// ones it added are the new ones.
    async fn start_beside(&mut self, stack: &Stack, line: &Line) -> anyhow::Result<Vec<Observed>> {
        line.step("starting the new container beside the old one");
        let scale = format!("{}={}", self.s.service, self.old.len() * 2);
        self.ctx
            .compose
            .run(
                stack,
                &[
                    "up",
                    "-d",
                    "--no-deps",
                    "--no-recreate",
                    "--scale",
                    &scale,
                    &self.s.service,
                ],
            )
            .await?;
        let new: Vec<Observed> = current(self.ctx, &self.plan.compose_project, &self.s.service)
            .await?
            .into_iter()
            .filter(|c| !self.old_ids.contains(&c.id.as_str()))
            .collect();
        self.new_ids = new.iter().map(|c| c.id.clone()).collect();
        if new.is_empty() {
            anyhow::bail!("compose started no new container");
        }
        for c in &new {
            self.new_ips.extend(proxy_ip(self.ctx, &c.id).await);
        }
        Ok(new)
    }

    /// Ready is healthy (or running without a check); a new Traefik behind the edge is ready
    /// once it routes: every expected router loaded, none in error (its ping answers long
    /// before its providers have delivered a configuration).
    async fn wait_ready(&self, new: &[Observed], line: &Line) -> anyhow::Result<()> {
        if !self.edge {
            return wait_all_ready(self.ctx, self.d, new, line)
                .await
                .map(|_| ());
        }
        if self.new_ips.len() != new.len() {
            anyhow::bail!("the new Traefik has no address on the proxy network");
        }
        line.step("waiting for the new Traefik to load its routers");
        for ip in &self.new_ips {
            super::traefik_api::wait_loaded(
                &self.ctx.docker,
                &self.ctx.root,
                &self.ctx.proxy_network,
                *ip,
                self.ctx.ready_timeout,
            )
            .await?;
        }
        Ok(())
    }

    /// After a failed hand-over: the new containers go, the old ones keep serving; then the
    /// proxy's slots and the drain file are restored. Best effort: what fails here stays in
    /// the journal for the next apply.
    async fn undo(&self, admission: &mut Admission, line: &Line) {
        let ctx = self.ctx;
        line.step("removing the new container");
        admission.withdraw(&self.new_ips).await;
        let mut removed = true;
        match current(ctx, &self.plan.compose_project, &self.s.service).await {
            Ok(leftovers) => {
                for c in leftovers.iter().filter(|c| {
                    !self.old_ids.contains(&c.id.as_str()) || self.new_ids.contains(&c.id)
                }) {
                    removed &= docker::remove(&ctx.docker, &c.id).await.is_ok();
                }
            }
            Err(_) => removed = false,
        }
        // HAProxy's parked slots are released once the new addresses are gone; a new container
        // that could not be removed keeps its slot parked (no traffic to a container that
        // never became ready) until the next apply's heal removes it and restores the slot.
        if removed || !matches!(admission, Admission::Haproxy { .. }) {
            admission
                .abort(&self.new_ips, &self.old_ips, ctx.ready_timeout)
                .await;
        }
        if !self.drain_entries.is_empty() {
            let _ = drainfile::update(&ctx.root, &self.drain_entries, false);
        }
    }

    /// Past the hand-over the new containers serve and the old ones are drained: stopping them
    /// is all that is left, and its failure does not bring them back.
    async fn retire_old(&self, admission: &mut Admission, line: &Line) -> anyhow::Result<()> {
        let ctx = self.ctx;
        super::journal::stopping(&ctx.root, &self.plan.compose_project, &self.s.service)?;
        line.step("stopping the old container");
        for c in self.old {
            let stopped = async {
                docker::stop(&ctx.docker, &c.id, self.d.grace).await?;
                docker::remove(&ctx.docker, &c.id).await
            }
            .await;
            if let Err(e) = stopped {
                // A pinned itsup proxy file must not outlive the rollout: put the rendered one
                // back.
                if let Admission::Itsup { .. } = admission {
                    admission.finish(&self.old_ips, ctx.ready_timeout).await;
                }
                return Err(e);
            }
        }
        line.step("waiting for the proxy to forget the old address");
        admission.finish(&self.old_ips, ctx.ready_timeout).await;
        if !self.drain_entries.is_empty() {
            let _ = drainfile::update(&ctx.root, &self.drain_entries, false);
        }
        Ok(())
    }
}
