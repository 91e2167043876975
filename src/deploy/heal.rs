//! Healing what an interrupted apply left behind, before the next one plans.
//!
//! An apply killed at any point (SIGKILL, power loss) can leave: a start-first rollout halfway
//! (new containers beside the old ones, free HAProxy slots parked in maintenance, old slots in
//! drain, entries in `.itsup/drain.json`, a Traefik drain file in the old containers), and
//! stopped containers of an earlier version (a stop Docker finished after apply died, or the
//! `<id>_<name>` container Compose v1 renames during a stop-first recreate). Planning on top of
//! that would count the half-done rollout's new containers as old ones (doubling the
//! replicas) and never look at the stopped ones. So apply heals first, from the rollout
//! [`journal`](super::journal) and what Docker lists:
//!
//! * a rollout whose old containers all still run is rolled back (its new containers are
//!   withdrawn and removed, the old ones put back in rotation); one that had begun to stop
//!   the old ones is completed (the old ones are removed, the new ones serve);
//! * the HAProxy slots of its backends that are forced into maintenance or drain are set
//!   `ready` when they hold a running container's address or none, and released once Docker
//!   DNS forgot a removed one; its drain entries are released;
//! * stopped containers with another hash of a service that runs are removed.
//!
//! Then the plan is computed from a fresh snapshot, as if the interrupted apply never ran.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use bollard::Docker;

use super::docker::{self, Observed};
use super::haproxy::Runtime;
use super::journal::{self, Rollout};
use super::{Snapshot, drainfile};
use crate::model::Engine;

/// Where healing happens and how long it may wait for the proxy.
pub struct Healer<'a> {
    pub root: &'a Path,
    pub docker: &'a Docker,
    pub engine: Engine,
    pub timeout: Duration,
}

impl Healer<'_> {
    /// Heals the leftovers found in `snap`; one line per thing done (empty: nothing found).
    /// Projects in `broken` (invalid input) are left as they run, except for rollouts in
    /// flight, which are itsup's own doing.
    pub async fn run(
        &self,
        snap: &Snapshot,
        broken: &BTreeSet<String>,
    ) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        if let Some(j) = journal::leftover(self.root)? {
            done.push(format!(
                "an interrupted apply (pid {}) left {} rollout(s) in flight",
                j.pid,
                j.rollouts.len()
            ));
            let mut entries = Vec::new();
            for r in &j.rollouts {
                done.push(self.rollout(r, &snap.observed).await?);
                entries.extend(r.drain_entries.iter().cloned());
            }
            if !entries.is_empty() {
                drainfile::update(self.root, &[], false)?;
                done.push(format!("released {} drain entr(y/ies)", entries.len()));
            }
            journal::clear(self.root)?;
        }
        done.extend(self.stopped_leftovers(snap, broken).await?);
        Ok(done)
    }

    /// Rolls one interrupted rollout back (its old containers all run) or forward.
    async fn rollout(&self, r: &Rollout, observed: &[Observed]) -> anyhow::Result<String> {
        let now: Vec<Observed> = match docker::stack_containers(self.docker).await {
            Ok(list) => list,
            Err(_) => observed.to_vec(),
        }
        .into_iter()
        .filter(|c| c.project == r.compose_project && c.service == r.service)
        .collect();
        let is_old = |c: &Observed| r.old.contains(&c.id);
        let old_running = now.iter().filter(|c| is_old(c) && c.running).count();
        // Rolled back unless it had begun to stop the old ones (Docker may still be stopping
        // them: whether they run says nothing), or none of them runs any more.
        let back = !r.stopping && old_running > 0;
        let (keep, gone): (Vec<&Observed>, Vec<&Observed>) = now.iter().partition(|c| {
            if back {
                is_old(c) && c.running
            } else {
                !is_old(c) && c.running && c.hash.as_deref() == Some(r.hash.as_str())
            }
        });
        let keep: Vec<&Observed> = keep.into_iter().filter(|c| c.running).collect();
        let mut keep_ips = Vec::new();
        for c in &keep {
            keep_ips.extend(self.ips(&c.id).await);
        }
        let mut gone_ips = Vec::new();
        for c in &gone {
            gone_ips.extend(self.ips(&c.id).await);
        }
        // Engine haproxy's backends, or the edge's (a Traefik replaced behind it).
        let runtime = Runtime::in_dir(&self.root.join(super::desired::hand_over_dir(self.engine)));
        let haproxy = self.engine != Engine::Itsup && !r.backends.is_empty();
        if haproxy && runtime.alive().await {
            // Out of rotation before they go, the survivors back in.
            for backend in &r.backends {
                for slot in runtime.slots(backend).await? {
                    if slot.addr.is_some_and(|a| gone_ips.contains(&a)) {
                        runtime.set_state(backend, &slot.name, "maint").await?;
                    }
                }
            }
        }
        if back && self.engine == Engine::Traefik {
            for c in &keep {
                let _ = docker::exec(self.docker, &c.id, &["rm", "-f", "/tmp/drain"]).await;
            }
        }
        for c in &gone {
            docker::remove(self.docker, &c.id).await?;
        }
        let slots = if haproxy {
            self.restore_slots(&runtime, &r.backends, &keep_ips, &gone_ips)
                .await
        } else {
            String::new()
        };
        let what = format!("{}/{}", r.compose_project, r.service);
        Ok(if back {
            format!(
                "{what}: rolled back (the old container(s) still ran): removed {} new container(s){slots}",
                gone.len()
            )
        } else {
            format!(
                "{what}: completed (the old container(s) were being stopped): removed {} old container(s), {} new serve(s){slots}",
                gone.len(),
                keep.len()
            )
        })
    }

    /// Slots forced into maintenance or drain go back to `ready` when they hold a survivor's
    /// address or none, and once DNS forgot a removed one (bounded by the timeout).
    async fn restore_slots(
        &self,
        runtime: &Runtime,
        backends: &[String],
        keep: &[Ipv4Addr],
        gone: &[Ipv4Addr],
    ) -> String {
        if !runtime.alive().await {
            return "; HAProxy's admin socket does not answer: slots left as they are".into();
        }
        let mut pending = Vec::new();
        // Addresses in forced slots that no survivor has: removed now or by an earlier run.
        let mut stale: Vec<Ipv4Addr> = gone.to_vec();
        let mut restored = 0;
        for backend in backends {
            let Ok(slots) = runtime.slots(backend).await else {
                continue;
            };
            for slot in slots.iter().filter(|s| s.admin_state & 0x09 != 0) {
                match slot.addr {
                    Some(a) if !keep.contains(&a) => {
                        let _ = runtime.set_state(backend, &slot.name, "maint").await;
                        pending.push((backend.clone(), slot.name.clone()));
                        stale.push(a);
                    }
                    _ => {
                        if runtime
                            .set_state(backend, &slot.name, "ready")
                            .await
                            .is_ok()
                        {
                            restored += 1;
                        }
                    }
                }
            }
        }
        let waiting = pending.len();
        super::admission::release_when_gone(runtime, pending, &stale, self.timeout).await;
        format!("; {} HAProxy slot(s) set ready", restored + waiting)
    }

    async fn ips(&self, id: &str) -> Vec<Ipv4Addr> {
        docker::addresses(self.docker, id)
            .await
            .map(|a| a.into_values().collect())
            .unwrap_or_default()
    }

    /// Stopped containers of an earlier version beside running ones of the same service.
    async fn stopped_leftovers(
        &self,
        snap: &Snapshot,
        broken: &BTreeSet<String>,
    ) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        let stacks = snap.desired.proxy.iter().chain(&snap.desired.projects);
        for stack in stacks.filter(|s| s.enabled && !broken.contains(&s.name)) {
            for d in &stack.services {
                let mine: Vec<&Observed> = snap
                    .observed
                    .iter()
                    .filter(|c| c.project == stack.compose_project && c.service == d.name)
                    .collect();
                if !mine.iter().any(|c| c.running) {
                    // Nothing runs: `create` removes what it would otherwise restart.
                    continue;
                }
                for c in mine
                    .iter()
                    .filter(|c| !c.running && c.hash.as_deref() != Some(d.hash.as_str()))
                {
                    docker::remove(self.docker, &c.id).await?;
                    done.push(format!(
                        "{}/{}: removed stopped container {} of an earlier version",
                        stack.name, d.name, c.name
                    ));
                }
            }
        }
        Ok(done)
    }
}
