//! Desired vs running tasks per service and node, for `itsup status` on Swarm.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cli;
use super::desired::Desired;
use super::observed::{self, Observed};
use super::state::State;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub stack: String,
    pub service: String,
    /// Tasks Swarm wants (replicas, or one per eligible node for a global service).
    pub desired: u64,
    pub running: u64,
    /// Running tasks per node.
    pub nodes: BTreeMap<String, u64>,
    /// Swarm's last update state, if any.
    pub update: Option<String>,
    /// `ok`, or what differs: `not running`, `outdated`, `removed but present`, `rolled back`.
    pub drift: String,
}

/// One row per desired or running service of the platform.
pub fn rows(desired: &Desired, observed: &Observed, state: &State) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for s in &desired.stacks {
        let running = observed.get(&s.stack).map(Vec::as_slice).unwrap_or(&[]);
        for (name, fp) in &s.services {
            let o = running.iter().find(|r| &r.short == name);
            let applied = state.stacks.get(&s.stack).and_then(|m| m.get(name));
            let drift = match (o, applied) {
                (None, _) => "not running",
                (Some(o), _) if o.update_state.as_deref() == Some("rollback_completed") => {
                    "rolled back"
                }
                (Some(_), Some(a)) if a == fp => "ok",
                (Some(_), _) => "outdated",
            };
            rows.push(row(
                &s.stack,
                name,
                o.map(|o| o.name.as_str()),
                o.and_then(|o| o.update_state.clone()),
                drift,
            )?);
        }
        for o in running
            .iter()
            .filter(|r| !s.services.contains_key(&r.short))
        {
            rows.push(row(
                &s.stack,
                &o.short,
                Some(&o.name),
                o.update_state.clone(),
                "removed but present",
            )?);
        }
    }
    for (stack, running) in observed {
        if desired.stacks.iter().any(|s| &s.stack == stack) {
            continue;
        }
        for o in running {
            rows.push(row(
                stack,
                &o.short,
                Some(&o.name),
                o.update_state.clone(),
                "removed but present",
            )?);
        }
    }
    Ok(rows)
}

fn row(
    stack: &str,
    service: &str,
    full: Option<&str>,
    update: Option<String>,
    drift: &str,
) -> anyhow::Result<Row> {
    let (mut running, mut desired) = (0, 0);
    let mut nodes = BTreeMap::new();
    if let Some(full) = full {
        if let Some((r, d)) = observed::replicas(full)? {
            (running, desired) = (r, d);
        }
        let tasks = cli::checked(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Node}} {{.CurrentState}}",
            full,
        ])?;
        for line in tasks.lines() {
            let mut words = line.split_whitespace();
            if let (Some(node), Some("Running")) = (words.next(), words.next()) {
                *nodes.entry(node.to_string()).or_insert(0) += 1;
            }
        }
    }
    Ok(Row {
        stack: stack.to_string(),
        service: service.to_string(),
        desired,
        running,
        nodes,
        update,
        drift: drift.to_string(),
    })
}
