//! Plain round robin: a shared atomic counter, weights ignored.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn pick(&self, servers: usize, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if servers == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..servers)
            .map(|k| (start + k) % servers)
            .find(|&i| accept(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_evenly() {
        let rr = RoundRobin::default();
        let picks: Vec<usize> = (0..6).filter_map(|_| rr.pick(3, &mut |_| true)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
