//! Admitting a new container at the proxy and draining an old one, per engine.
//!
//! HAProxy: backends are `server-template` slots filled by Docker DNS, so a new container would
//! take traffic as soon as DNS hands out its address, before it is healthy. Deploy therefore
//! parks the free slots in maintenance before starting it ([`Admission::prepare`]), and sets
//! the slot that received its address `ready` only once Docker says it is healthy. Draining is
//! `set server … state drain` until `scur` reaches 0; the drained slot is reset to `ready`
//! afterwards so the next address DNS puts there is served normally.
//!
//! Traefik: the container's healthcheck fails once `/tmp/drain` exists; deploy creates it by
//! exec and waits for Docker to report the container unhealthy, at which point Traefik's
//! Docker provider stops routing to it.
//!
//! itsup (`itsup proxy`, through its admin socket in `proxy/itsup/run/` or `--proxy-admin`): the service's clusters are pinned to
//! the old containers' addresses before the new one starts, the new addresses are added once
//! healthy and set `ready`, the old ones are set `drain` until their in-flight count is 0, and
//! the rendered file (the DNS alias) is put back once they are gone; see [`super::itsup_admin`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

use super::docker::{self, Health};
use super::haproxy::Runtime;
use super::itsup_admin::{AdminClient, Pins, addresses_of, with_port};

/// How one service is put in and out of rotation.
#[derive(Debug, Clone)]
pub enum Admission {
    /// The service is not routed (or routed by an engine with no runtime control).
    None,
    Haproxy {
        runtime: Runtime,
        backends: Vec<String>,
        /// Slots parked by `prepare`, to restore on success and on failure alike.
        parked: Vec<(String, String)>,
    },
    Traefik,
    Itsup {
        admin: AdminClient,
        pins: Arc<Pins>,
        /// Clusters routing to the service.
        clusters: Vec<String>,
        /// Cluster → its rendered server (`alias:port`), filled by `prepare`.
        rendered: BTreeMap<String, String>,
        old: Vec<Ipv4Addr>,
        new: Vec<Ipv4Addr>,
    },
}

/// Pins every cluster to `ips` (with its port) and waits until the proxy serves exactly them.
async fn pin_all(
    admin: &AdminClient,
    pins: &Pins,
    rendered: &BTreeMap<String, String>,
    ips: &[Ipv4Addr],
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut want: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (cluster, server) in rendered {
        let addrs = with_port(ips, server)?;
        want.insert(cluster, addrs.iter().cloned().collect());
        pins.set(cluster, Some(addrs))?;
    }
    admin
        .wait_for(
            timeout,
            "the proxy reloading the pinned servers",
            |servers| {
                want.iter().all(|(c, addrs)| {
                    addresses_of(servers, c)
                        .into_iter()
                        .map(str::to_string)
                        .collect::<BTreeSet<_>>()
                        == *addrs
                })
            },
        )
        .await
}

/// Puts the rendered servers back and waits (bounded, best effort) until the proxy serves them.
async fn unpin_all(
    admin: &AdminClient,
    pins: &Pins,
    rendered: &BTreeMap<String, String>,
    timeout: Duration,
) {
    for cluster in rendered.keys() {
        let _ = pins.set(cluster, None);
    }
    let _ = admin
        .wait_for(
            timeout,
            "the proxy reloading the rendered servers",
            |servers| {
                rendered
                    .iter()
                    .all(|(c, server)| addresses_of(servers, c) == [server.as_str()])
            },
        )
        .await;
}

/// Extra time for Traefik to notice an unhealthy container (Docker events are near instant).
const TRAEFIK_SETTLE: Duration = Duration::from_secs(2);

/// Sets each pending slot back to `ready` once it no longer holds one of `gone` (DNS forgot
/// the address), polling until `timeout`; slots still holding one stay in maintenance.
pub(crate) async fn release_when_gone(
    runtime: &Runtime,
    mut pending: Vec<(String, String)>,
    gone: &[Ipv4Addr],
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !pending.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for (backend, name) in pending {
            let slots = runtime.slots(&backend).await.unwrap_or_default();
            let stale = slots
                .iter()
                .find(|s| s.name == name)
                .is_some_and(|s| s.addr.is_some_and(|a| gone.contains(&a)));
            if stale {
                still.push((backend, name));
            } else {
                let _ = runtime.set_state(&backend, &name, "ready").await;
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Admission {
    /// Before a new container starts: keep it out of rotation until it is admitted. `old` are
    /// the addresses of the containers serving now.
    pub async fn prepare(&mut self, old: &[Ipv4Addr], timeout: Duration) -> anyhow::Result<()> {
        if let Admission::Itsup {
            admin,
            pins,
            clusters,
            rendered,
            old: pinned_old,
            ..
        } = self
        {
            for c in clusters.iter() {
                rendered.insert(c.clone(), pins.rendered_address(c)?);
            }
            if old.is_empty() {
                anyhow::bail!("the old containers have no address on the proxy network");
            }
            *pinned_old = old.to_vec();
            if let Err(e) = pin_all(admin, pins, rendered, old, timeout).await {
                unpin_all(admin, pins, rendered, timeout).await;
                return Err(e);
            }
            return Ok(());
        }
        if let Admission::Haproxy {
            runtime,
            backends,
            parked,
        } = self
        {
            for backend in backends.iter() {
                for slot in runtime.slots(backend).await? {
                    if slot.addr.is_none() && !slot.forced_maint() {
                        runtime.set_state(backend, &slot.name, "maint").await?;
                        parked.push((backend.clone(), slot.name.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts the new containers (by address on the proxy network) in rotation and waits until
    /// the proxy reports them up in every backend.
    pub async fn admit(&mut self, new: &[Ipv4Addr], timeout: Duration) -> anyhow::Result<()> {
        if let Admission::Itsup {
            admin,
            pins,
            rendered,
            old,
            new: admitted,
            ..
        } = self
        {
            *admitted = new.to_vec();
            let both: Vec<Ipv4Addr> = old.iter().chain(new).copied().collect();
            pin_all(admin, pins, rendered, &both, timeout).await?;
            let added: Vec<(String, Vec<String>)> = rendered
                .iter()
                .map(|(c, server)| Ok((c.clone(), with_port(new, server)?)))
                .collect::<anyhow::Result<_>>()?;
            for (cluster, addrs) in &added {
                for addr in addrs {
                    admin.set_state(cluster, addr, "ready").await?;
                }
            }
            return admin
                .wait_for(timeout, "the new container up at the proxy", |servers| {
                    added.iter().all(|(c, addrs)| {
                        addrs.iter().all(|a| {
                            servers
                                .iter()
                                .any(|s| s.cluster == *c && s.address == *a && s.up)
                        })
                    })
                })
                .await;
        }
        let Admission::Haproxy {
            runtime,
            backends,
            parked,
        } = self
        else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for backend in backends.iter() {
            loop {
                let slots = runtime.slots(backend).await?;
                let found: Vec<_> = slots
                    .iter()
                    .filter(|s| s.addr.is_some_and(|a| new.contains(&a)))
                    .collect();
                if found.len() == new.len() {
                    for s in &found {
                        if s.forced_maint() {
                            runtime.set_state(backend, &s.name, "ready").await?;
                        }
                    }
                    if found.iter().all(|s| s.up()) && !found.is_empty() {
                        break;
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "HAProxy backend {backend} did not pick up the new container within {} s (Docker DNS)",
                        timeout.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Self::unpark(runtime, parked).await;
        Ok(())
    }

    /// Takes the old containers out of rotation and waits until their sessions are done
    /// (bounded by `timeout`; the stop's grace period covers what is left).
    pub async fn drain(
        &mut self,
        docker: &Docker,
        old: &[(String, Option<Ipv4Addr>)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        match self {
            Admission::None => Ok(()),
            Admission::Itsup {
                admin,
                rendered,
                old: pinned_old,
                ..
            } => {
                let mut draining = Vec::new();
                for (cluster, server) in rendered.iter() {
                    for addr in with_port(pinned_old, server)? {
                        admin.set_state(cluster, &addr, "drain").await?;
                        draining.push((cluster.clone(), addr));
                    }
                }
                let _ = admin
                    .wait_for(
                        deadline.saturating_duration_since(tokio::time::Instant::now()),
                        "in-flight requests of the old container finishing",
                        |servers| {
                            draining.iter().all(|(c, a)| {
                                servers
                                    .iter()
                                    .filter(|s| s.cluster == *c && s.address == *a)
                                    .all(|s| s.inflight == 0 && s.state == "drain")
                            })
                        },
                    )
                    .await;
                Ok(())
            }
            Admission::Haproxy {
                runtime, backends, ..
            } => {
                let ips: BTreeSet<Ipv4Addr> = old.iter().filter_map(|(_, ip)| *ip).collect();
                let mut draining = Vec::new();
                for backend in backends.iter() {
                    for slot in runtime.slots(backend).await? {
                        if slot.addr.is_some_and(|a| ips.contains(&a)) {
                            runtime.set_state(backend, &slot.name, "drain").await?;
                            draining.push((backend.clone(), slot.name));
                        }
                    }
                }
                for (backend, slot) in &draining {
                    while runtime.sessions(backend, slot).await.unwrap_or(0) > 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Ok(())
            }
            Admission::Traefik => {
                for (id, _) in old {
                    let code = docker::exec(docker, id, &["touch", "/tmp/drain"]).await?;
                    if code != 0 {
                        anyhow::bail!("`touch /tmp/drain` in {} exited {code}", docker::short(id));
                    }
                }
                for (id, _) in old {
                    loop {
                        match docker::health(docker, id).await? {
                            Health::Unhealthy(_) | Health::Down(_) | Health::NoCheck => break,
                            Health::Healthy | Health::Starting => {}
                        }
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                tokio::time::sleep(TRAEFIK_SETTLE).await;
                Ok(())
            }
        }
    }

    /// Once the old containers are stopped: their slots go to forced maintenance at once (HAProxy
    /// keeps a stopped container's address until Docker DNS stops answering it, `hold valid`),
    /// then back to `ready` when the address is gone, so the next address DNS puts there is
    /// served. A slot whose old address outlives `timeout` stays in maintenance (safe: the next
    /// rollout admits whatever lands there).
    pub async fn finish(&mut self, old: &[Ipv4Addr], timeout: Duration) {
        if let Admission::Itsup {
            admin,
            pins,
            rendered,
            ..
        } = self
        {
            unpin_all(admin, pins, rendered, timeout).await;
            return;
        }
        let Admission::Haproxy {
            runtime,
            backends,
            parked,
        } = self
        else {
            return;
        };
        Self::unpark(runtime, parked).await;
        let mut pending: Vec<(String, String)> = Vec::new();
        for backend in backends.iter() {
            let Ok(slots) = runtime.slots(backend).await else {
                continue;
            };
            for slot in slots.iter().filter(|s| s.admin_state & 0x08 != 0) {
                let _ = runtime.set_state(backend, &slot.name, "maint").await;
                pending.push((backend.clone(), slot.name.clone()));
            }
        }
        release_when_gone(runtime, pending, old, timeout).await;
    }

    /// After a failure, before the new containers are removed: their slots go to maintenance
    /// and the old containers' slots back to `ready`, so only the old ones serve.
    pub async fn withdraw(&mut self, new: &[Ipv4Addr]) {
        if let Admission::Itsup {
            admin,
            pins,
            rendered,
            old,
            ..
        } = self
        {
            for (cluster, server) in rendered.iter() {
                for addr in with_port(new, server).unwrap_or_default() {
                    let _ = admin.set_state(cluster, &addr, "maint").await;
                }
            }
            if !rendered.is_empty() {
                let _ = pin_all(admin, pins, rendered, old, Duration::from_secs(10)).await;
            }
            return;
        }
        let Admission::Haproxy {
            runtime, backends, ..
        } = self
        else {
            return;
        };
        for backend in backends.iter() {
            let Ok(slots) = runtime.slots(backend).await else {
                continue;
            };
            for slot in &slots {
                if slot.addr.is_some_and(|a| new.contains(&a)) {
                    let _ = runtime.set_state(backend, &slot.name, "maint").await;
                } else if slot.admin_state & 0x08 != 0 {
                    let _ = runtime.set_state(backend, &slot.name, "ready").await;
                }
            }
        }
    }

    /// After a failure, once the new containers are removed: undo `prepare` and release the
    /// withdrawn slots when DNS has forgotten the removed addresses (bounded). A parked slot
    /// holding an address that is not an old container's is a new container whose address
    /// apply never learnt (the engine became unreachable): it stays parked until that address
    /// is gone, never `ready`.
    pub async fn abort(&mut self, new: &[Ipv4Addr], old: &[Ipv4Addr], timeout: Duration) {
        if let Admission::Itsup {
            admin,
            pins,
            rendered,
            ..
        } = self
        {
            unpin_all(admin, pins, rendered, timeout).await;
            return;
        }
        let Admission::Haproxy {
            runtime,
            backends,
            parked,
        } = self
        else {
            return;
        };
        let mut pending: Vec<(String, String)> = std::mem::take(parked);
        let mut gone: Vec<Ipv4Addr> = new.to_vec();
        for backend in backends.iter() {
            let Ok(slots) = runtime.slots(backend).await else {
                continue;
            };
            for slot in &slots {
                if let Some(a) = slot.addr
                    && !old.contains(&a)
                    && pending.iter().any(|(b, n)| b == backend && *n == slot.name)
                {
                    gone.push(a);
                }
            }
            for slot in slots
                .iter()
                .filter(|s| s.addr.is_some_and(|a| new.contains(&a)))
            {
                if !pending.iter().any(|(b, n)| b == backend && *n == slot.name) {
                    pending.push((backend.clone(), slot.name.clone()));
                }
            }
        }
        release_when_gone(runtime, pending, &gone, timeout).await;
    }

    async fn unpark(runtime: &Runtime, parked: &mut Vec<(String, String)>) {
        for (backend, slot) in parked.drain(..) {
            let _ = runtime.set_state(&backend, &slot, "ready").await;
        }
    }
}
