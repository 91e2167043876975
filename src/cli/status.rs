//! `itsup status [--format text|json]`: desired vs running for every stack and service —
//! containers, health, whether their hash matches what `apply` would deploy, and the drift.
//! It reads the same snapshot as `apply --dry-run` (without writing anything); exit 0.

use serde::Serialize;

use super::{Format, Global, report};
use crate::deploy::actions::{self, Action};
use crate::deploy::docker;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct Row {
    stack: String,
    service: String,
    /// Hash apply would deploy (empty for services no longer desired).
    desired: String,
    running: usize,
    containers: usize,
    /// Docker health of the running containers (`healthy`, `unhealthy`, `starting`, `none`).
    health: Vec<String>,
    hash_match: bool,
    /// `ok`, or what differs: `not running`, `outdated`, `disabled but running`, `removed but present`.
    drift: String,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let root = &global.root;
    let generated = crate::pipeline::generate(root)?;
    report::diagnostics(
        global,
        &generated.outcome.diagnostics,
        &generated.outcome.broken,
    );
    let Some(plan) = &generated.plan else {
        return Ok(1);
    };
    if let Some(swarm) = &plan.settings.swarm {
        return super::swarm::status(global, args.format, &generated, swarm);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let docker = docker::connect().await?;
        let snap = crate::deploy::snapshot(root, plan, &generated.artifacts, &docker).await?;
        let plans = actions::plan(&snap.desired, &snap.observed, &snap.state, &[]);
        let mut rows = Vec::new();
        for p in &plans {
            let enabled = p.desired.as_ref().is_some_and(|d| d.enabled);
            for s in &p.services {
                let running: Vec<_> = s.containers.iter().filter(|c| c.running).collect();
                let hash_match = !running.is_empty()
                    && running
                        .iter()
                        .all(|c| c.hash.as_deref() == Some(s.hash.as_str()));
                let drift = match s.action {
                    Action::Prune => "removed but present",
                    Action::Stop => "disabled but running",
                    _ if !enabled => "ok (disabled)",
                    Action::Create => "not running",
                    Action::Rollout | Action::Recreate => "outdated",
                    Action::Reload => "config not loaded",
                    Action::Unchanged => "ok",
                };
                rows.push(Row {
                    stack: p.stack.clone(),
                    service: s.service.clone(),
                    desired: s.hash.clone(),
                    running: running.len(),
                    containers: s.containers.len(),
                    health: running
                        .iter()
                        .map(|c| c.health.clone().unwrap_or_else(|| "none".into()))
                        .collect(),
                    hash_match,
                    drift: drift.to_string(),
                });
            }
        }
        Ok::<_, anyhow::Error>(rows)
    })?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!("STACK                SERVICE          RUNNING   HEALTH       HASH   DRIFT");
    for r in &rows {
        let health = if r.health.is_empty() {
            "-".to_string()
        } else {
            r.health.join(",")
        };
        println!(
            "{:<20} {:<16} {:<9} {:<12} {:<6} {}",
            r.stack,
            r.service,
            format!("{}/{}", r.running, r.containers),
            health,
            if r.hash_match { "match" } else { "differ" },
            r.drift
        );
    }
    Ok(0)
}
