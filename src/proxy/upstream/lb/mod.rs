//! Load balancing: one algorithm per file, all lock-free on the request path.
//!
//! Every algorithm only proposes candidates in its preferred order; the caller's `accept`
//! closure decides (health, admin state, circuit breaker, servers already tried on this
//! request) and claims the server. Keeping the policy out of the algorithms means every
//! algorithm honours drain/maint/health identically.

pub mod consistent_hash;
pub mod least_connections;
pub mod round_robin;
pub mod smooth_weighted;
pub mod sticky;

use std::net::IpAddr;
use std::sync::Arc;

use hyper::HeaderMap;

use crate::proxy::base::config::{Cluster, LbAlgorithm};
use crate::proxy::upstream::server::ServerState;

/// What an algorithm may look at.
pub struct PickCtx<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
}

pub enum Balancer {
    SmoothWeighted(smooth_weighted::SmoothWeighted),
    RoundRobin(round_robin::RoundRobin),
    LeastConnections(least_connections::LeastConnections),
    ConsistentHash(consistent_hash::ConsistentHash),
    StickyCookie(sticky::StickyCookie),
}

impl Balancer {
    pub fn new(name: &str, cluster: &Cluster, default_secret: &[u8]) -> Self {
        let weights: Vec<u32> = cluster.servers.iter().map(|s| s.weight).collect();
        match cluster.lb {
            LbAlgorithm::SmoothWeighted => {
                Self::SmoothWeighted(smooth_weighted::SmoothWeighted::new(&weights))
            }
            LbAlgorithm::RoundRobin => Self::RoundRobin(round_robin::RoundRobin::default()),
            LbAlgorithm::LeastConnections => {
                Self::LeastConnections(least_connections::LeastConnections::new(weights))
            }
            LbAlgorithm::ConsistentHash => {
                Self::ConsistentHash(consistent_hash::ConsistentHash::new(
                    cluster
                        .servers
                        .iter()
                        .map(|s| (s.address.as_str(), s.weight)),
                    cluster.hash_header.as_deref(),
                ))
            }
            LbAlgorithm::StickyCookie => {
                let secret = cluster
                    .sticky
                    .secret
                    .as_deref()
                    .map(str::as_bytes)
                    .unwrap_or(default_secret);
                Self::StickyCookie(sticky::StickyCookie::new(
                    name,
                    cluster.servers.iter().map(|s| s.address.as_str()),
                    &weights,
                    &cluster.sticky.cookie,
                    secret,
                ))
            }
        }
    }

    /// Proposes servers in this algorithm's order until `accept` takes one.
    pub fn pick(
        &self,
        servers: &[Arc<ServerState>],
        ctx: &PickCtx<'_>,
        accept: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Self::SmoothWeighted(b) => b.pick(accept),
            Self::RoundRobin(b) => b.pick(servers.len(), accept),
            Self::LeastConnections(b) => b.pick(servers, accept),
            Self::ConsistentHash(b) => b.pick(ctx, accept),
            Self::StickyCookie(b) => b.fallback.pick(accept),
        }
    }
}

/// Small set of server indexes (indexes past 127 are never remembered, which only costs a
/// redundant proposal).
#[derive(Default, Clone, Copy)]
pub struct IndexSet(u128);

impl IndexSet {
    pub fn contains(&self, i: usize) -> bool {
        i < 128 && self.0 & (1u128 << i) != 0
    }

    /// Returns false when `i` was already present.
    pub fn insert(&mut self, i: usize) -> bool {
        if i >= 128 {
            return true;
        }
        let fresh = !self.contains(i);
        self.0 |= 1u128 << i;
        fresh
    }
}
