//! Least connections: the server with the fewest in-flight requests relative to its weight.
//! In-flight counters live in the server state, so they survive reloads. Ties rotate so equal
//! servers share load instead of the first one taking everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::IndexSet;
use crate::proxy::upstream::server::ServerState;

pub struct LeastConnections {
    weights: Vec<u32>,
    next: AtomicUsize,
}

impl LeastConnections {
    pub fn new(weights: Vec<u32>) -> Self {
        Self {
            weights,
            next: AtomicUsize::new(0),
        }
    }

    pub fn pick(
        &self,
        servers: &[Arc<ServerState>],
        accept: &mut dyn FnMut(usize) -> bool,
    ) -> Option<usize> {
        let n = servers.len().min(self.weights.len());
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut refused = IndexSet::default();
        for _ in 0..n {
            let mut best: Option<(usize, u64, u64)> = None;
            for k in 0..n {
                let i = (start + k) % n;
                if refused.contains(i) {
                    continue;
                }
                let load = u64::from(servers[i].inflight());
                let weight = u64::from(self.weights[i].max(1));
                // load_i / weight_i < load_b / weight_b, without division.
                let better = match best {
                    None => true,
                    Some((_, bl, bw)) => load * bw < bl * weight,
                };
                if better {
                    best = Some((i, load, weight));
                }
            }
            let (i, _, _) = best?;
            if accept(i) {
                return Some(i);
            }
            refused.insert(i);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream::server::Eligibility;

    #[test]
    fn prefers_idle_servers() {
        let servers: Vec<Arc<ServerState>> = (0..3)
            .map(|i| Arc::new(ServerState::new("c", &format!("127.0.0.1:{}", 1000 + i))))
            .collect();
        let lc = LeastConnections::new(vec![1, 1, 1]);
        for s in &servers[..2] {
            assert!(s.try_claim(Eligibility::Normal, 0));
        }
        assert_eq!(lc.pick(&servers, &mut |_| true), Some(2));
        let fallback = lc.pick(&servers, &mut |i| i != 2);
        assert!(matches!(fallback, Some(0 | 1)), "{fallback:?}");
        assert_eq!(lc.pick(&servers, &mut |_| false), None);
    }
}
