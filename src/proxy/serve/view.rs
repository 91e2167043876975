//! The per-server view shared by the admin API (`GET /servers`) and the status page.

use serde::Serialize;

use crate::proxy::base::clock::now_ms;
use crate::proxy::runtime::state::Shared;
use crate::proxy::upstream::server::{AdminState, ServerState};

#[derive(Serialize)]
pub struct ServerView {
    pub cluster: String,
    pub address: String,
    pub weight: u32,
    pub state: AdminState,
    pub healthy: bool,
    pub circuit: &'static str,
    pub ejected_ms: u64,
    pub up: bool,
    pub inflight: u32,
    pub idle_connections: usize,
    pub requests_total: u64,
    pub failures_total: u64,
}

pub fn server(cluster: &str, weight: u32, s: &ServerState) -> ServerView {
    let now = now_ms();
    ServerView {
        cluster: cluster.to_string(),
        address: s.address.clone(),
        weight,
        state: s.admin_state(),
        healthy: s.healthy(),
        circuit: s.breaker.state().as_str(),
        ejected_ms: s.breaker.ejected_for_ms(now),
        up: s.up(),
        inflight: s.inflight(),
        idle_connections: s.pool.idle_count(),
        requests_total: s.requests_total.load(std::sync::atomic::Ordering::Relaxed),
        failures_total: s.failures_total.load(std::sync::atomic::Ordering::Relaxed),
    }
}

pub fn servers(shared: &Shared) -> Vec<ServerView> {
    let snap = shared.snapshot.load();
    snap.clusters
        .iter()
        .flat_map(|c| {
            c.servers
                .iter()
                .zip(&c.weights)
                .map(|(s, w)| server(&c.name, *w, s))
        })
        .collect()
}
