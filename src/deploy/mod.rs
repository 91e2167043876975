//! Deploy: bring rendered stacks up through the Docker API with zero-downtime rollouts.
//!
//! The flow of `itsup apply`: [`desired`] turns the Plan plus the rendered files into what
//! should run (with a content [`hash`] per service), [`actions`] compares it with the running
//! containers ([`docker`]) and the last applied [`state`], and [`execute`] carries the actions
//! out stack by stack along the egress graph ([`order`]), bringing stacks up with
//! [`compose`], admitting and draining at the proxy ([`admission`], [`haproxy`]) and showing
//! [`progress`] ([`itsup_admin`] for engine itsup; [`traefik_api`] for a new Traefik
//! behind the edge). One apply at a time ([`lock`]); [`secrets`]
//! reach Compose as environment only. Rollouts in flight are kept in a [`journal`], so that
//! the next apply [`heal`]s what one killed halfway left behind. [`down`] stops (and cleans up)
//! what apply started; [`image`] builds the itsup image apply runs when the engine lacks it.

pub mod actions;
pub mod admission;
pub mod compose;
pub mod desired;
pub mod docker;
pub mod down;
pub mod drainfile;
pub mod execute;
pub mod haproxy;
pub mod hash;
pub mod heal;
pub mod health;
pub mod image;
pub mod itsup_admin;
pub mod journal;
pub mod labels;
pub mod lock;
pub mod order;
pub mod progress;
pub mod proxy;
pub mod secrets;
pub mod state;
pub mod swarm;
pub mod traefik_api;

use std::collections::BTreeSet;
use std::path::Path;

use bollard::Docker;

use crate::plan::Plan;
use crate::render::Artifact;

/// What apply, its dry run and status all look at: desired, running, last applied.
pub struct Snapshot {
    pub desired: desired::Desired,
    /// Containers of this root's stacks only.
    pub observed: Vec<docker::Observed>,
    pub state: state::State,
    /// Egress networks itsup created for this root (see [`actions::stale_networks`]).
    pub networks: Vec<String>,
}

/// Takes a snapshot. Containers count as this root's when they carry its `io.itsup.root`
/// label, or carry none (started by hand with `itsup svc` before the first apply) and belong
/// to a stack this root knows.
pub async fn snapshot(
    root: &Path,
    plan: &Plan,
    artifacts: &[Artifact],
    docker: &Docker,
) -> anyhow::Result<Snapshot> {
    let state = state::State::load(root)?;
    let me = labels::root_id(root);
    let (images, containers, networks) = tokio::try_join!(
        docker::image_ids(docker),
        docker::stack_containers(docker),
        docker::egress_networks(docker, &me)
    )?;
    let desired = desired::build(root, plan, artifacts, &images)?;
    let known: BTreeSet<&str> = desired
        .projects
        .iter()
        .chain(desired.proxy.iter())
        .map(|s| s.compose_project.as_str())
        .chain(state.projects.keys().map(String::as_str))
        .collect();
    let observed = containers
        .into_iter()
        .filter(|c| match &c.root {
            Some(r) => *r == me,
            None => known.contains(c.project.as_str()),
        })
        .collect();
    Ok(Snapshot {
        desired,
        observed,
        state,
        networks,
    })
}
