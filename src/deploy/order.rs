//! Deployment order: the proxy first (new routes and reloads before the services behind them),
//! then projects in levels along the egress graph (providers before their consumers), the
//! projects of one level in parallel up to a bound, and removed projects last (after the proxy
//! stopped routing to them). A failed project never stops the others.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;

use super::actions::StackPlan;
use super::desired::PROXY;
use super::execute::{self, Ctx, StackResult};

/// Groups stacks into levels: each stack comes after every stack it depends on. Dependencies
/// outside the set are ignored; a cycle (validate rejects them) ends up in one last level.
pub fn levels(plans: &[StackPlan]) -> Vec<Vec<usize>> {
    let names: BTreeMap<&str, usize> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| (p.stack.as_str(), i))
        .collect();
    let deps: Vec<BTreeSet<usize>> = plans
        .iter()
        .map(|p| {
            p.desired
                .iter()
                .flat_map(|d| d.depends_on.iter())
                .filter_map(|n| names.get(n.as_str()).copied())
                .collect()
        })
        .collect();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < plans.len() {
        let level: Vec<usize> = (0..plans.len())
            .filter(|i| !done.contains(i) && deps[*i].iter().all(|d| done.contains(d)))
            .collect();
        let level = if level.is_empty() {
            (0..plans.len()).filter(|i| !done.contains(i)).collect()
        } else {
            level
        };
        done.extend(level.iter().copied());
        out.push(level);
    }
    out
}

/// Runs every stack's plan in order; results in plan order.
pub async fn run_all(ctx: &Ctx, plans: &[StackPlan], parallel: usize) -> Vec<StackResult> {
    let mut results: Vec<Option<StackResult>> = vec![None; plans.len()];
    let proxy: Vec<usize> = (0..plans.len())
        .filter(|i| plans[*i].stack == PROXY)
        .collect();
    let removed: Vec<usize> = (0..plans.len()).filter(|i| plans[*i].removed).collect();
    let projects: Vec<usize> = (0..plans.len())
        .filter(|i| !proxy.contains(i) && !removed.contains(i))
        .collect();
    let subset: Vec<StackPlan> = projects.iter().map(|i| plans[*i].clone()).collect();
    let mut phases: Vec<Vec<usize>> = vec![proxy];
    phases.extend(
        levels(&subset)
            .into_iter()
            .map(|l| l.into_iter().map(|j| projects[j]).collect()),
    );
    phases.push(removed);
    for phase in phases {
        let done: Vec<(usize, StackResult)> = futures_util::stream::iter(phase)
            .map(|i| async move { (i, execute::stack(ctx, &plans[i]).await) })
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        for (i, r) in done {
            results[i] = Some(r);
        }
    }
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::desired::DesiredStack;

    fn stack(name: &str, deps: &[&str]) -> StackPlan {
        StackPlan {
            stack: name.into(),
            compose_project: name.into(),
            removed: false,
            services: Vec::new(),
            desired: Some(DesiredStack {
                name: name.into(),
                compose_project: name.into(),
                enabled: true,
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                services: Vec::new(),
                env: Default::default(),
                networks: Vec::new(),
                compose_file: String::new(),
            }),
        }
    }

    #[test]
    fn providers_come_first() {
        let plans = vec![
            stack("app", &["db", "cache"]),
            stack("db", &[]),
            stack("cache", &["db"]),
            stack("solo", &["gone"]),
        ];
        assert_eq!(levels(&plans), vec![vec![1, 3], vec![2], vec![0]]);
    }

    #[test]
    fn cycles_do_not_hang() {
        let plans = vec![stack("a", &["b"]), stack("b", &["a"])];
        assert_eq!(levels(&plans), vec![vec![0, 1]]);
    }
}
