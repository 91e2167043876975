//! nginx's smooth weighted round robin. The sequence is precomputed once per config so picking
//! is one atomic increment; with every server up it is exactly nginx's order (5/1/1 gives
//! a a b a c a a). An unavailable server's slots fall through to the next server in the
//! sequence.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::IndexSet;

/// Longest precomputed sequence; larger weight sums are scaled down proportionally.
const MAX_SEQUENCE: u64 = 4096;

pub struct SmoothWeighted {
    sequence: Vec<usize>,
    next: AtomicUsize,
    servers: usize,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> Self {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let scaled: Vec<i64> = if total > MAX_SEQUENCE {
            weights
                .iter()
                .map(|&w| ((u64::from(w) * MAX_SEQUENCE / total).max(1)) as i64)
                .collect()
        } else {
            weights.iter().map(|&w| i64::from(w)).collect()
        };
        Self {
            sequence: sequence(&scaled),
            next: AtomicUsize::new(0),
            servers: weights.len(),
        }
    }

    pub fn pick(&self, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % len;
        let mut refused = IndexSet::default();
        let mut distinct_refused = 0;
        for k in 0..len {
            let i = self.sequence[(start + k) % len];
            if refused.contains(i) {
                continue;
            }
            if accept(i) {
                return Some(i);
            }
            refused.insert(i);
            distinct_refused += 1;
            if distinct_refused >= self.servers {
                break;
            }
        }
        None
    }
}

/// One full cycle of the smooth weighted algorithm: each step adds every weight to its
/// current value, takes the largest, and subtracts the total from the winner.
fn sequence(weights: &[i64]) -> Vec<usize> {
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total.max(0) as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nginx_order() {
        let b = SmoothWeighted::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).filter_map(|_| b.pick(&mut |_| true)).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skips_refused_and_gives_up_when_all_refuse() {
        let b = SmoothWeighted::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).filter_map(|_| b.pick(&mut |i| i != 0)).collect();
        assert!(picks.iter().all(|&i| i != 0) && picks.len() == 7);
        assert_eq!(b.pick(&mut |_| false), None);
    }
}
