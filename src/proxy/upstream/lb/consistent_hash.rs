//! Consistent hashing on a ring of virtual nodes placed by hashing the server *address*, so
//! adding a server only moves the keys that now land on its points (about 1/n of them) and
//! the rest stay where they were.

use std::hash::Hasher;

use hyper::header::HeaderName;

use super::{IndexSet, PickCtx};

/// Virtual nodes per unit of weight.
const POINTS_PER_WEIGHT: u32 = 160;

pub struct ConsistentHash {
    ring: Vec<(u64, usize)>,
    header: Option<HeaderName>,
    servers: usize,
}

impl ConsistentHash {
    pub fn new<'a>(servers: impl Iterator<Item = (&'a str, u32)>, header: Option<&str>) -> Self {
        let mut ring = Vec::new();
        let mut count = 0;
        for (i, (address, weight)) in servers.enumerate() {
            count += 1;
            for point in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                let mut h = Fnv::default();
                h.write(address.as_bytes());
                h.write(b"#");
                h.write(&point.to_le_bytes());
                ring.push((mix(h.finish()), i));
            }
        }
        ring.sort_unstable();
        let header = header.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok());
        Self {
            ring,
            header,
            servers: count,
        }
    }

    pub fn key_hash(&self, ctx: &PickCtx<'_>) -> u64 {
        let mut h = Fnv::default();
        match self.header.as_ref().and_then(|name| ctx.headers.get(name)) {
            Some(value) => h.write(value.as_bytes()),
            None => match ctx.client_ip {
                std::net::IpAddr::V4(ip) => h.write(&ip.octets()),
                std::net::IpAddr::V6(ip) => h.write(&ip.octets()),
            },
        }
        mix(h.finish())
    }

    pub fn pick(&self, ctx: &PickCtx<'_>, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        self.pick_hash(self.key_hash(ctx), accept)
    }

    /// Walks the ring clockwise from the key; unavailable servers pass to their successor.
    pub fn pick_hash(&self, key: u64, accept: &mut dyn FnMut(usize) -> bool) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let start = self.ring.partition_point(|&(p, _)| p < key);
        let mut refused = IndexSet::default();
        let mut distinct = 0;
        for k in 0..self.ring.len() {
            let (_, i) = self.ring[(start + k) % self.ring.len()];
            if refused.contains(i) {
                continue;
            }
            if accept(i) {
                return Some(i);
            }
            refused.insert(i);
            distinct += 1;
            if distinct >= self.servers {
                break;
            }
        }
        None
    }
}

/// FNV-1a: tiny, deterministic across processes and versions (unlike `DefaultHasher`).
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// splitmix64 finaliser: FNV alone clusters similar keys on the ring.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_server_moves_few_keys() {
        let three = ConsistentHash::new([("a:1", 1), ("b:1", 1), ("c:1", 1)].into_iter(), None);
        let four = ConsistentHash::new(
            [("a:1", 1), ("b:1", 1), ("c:1", 1), ("d:1", 1)].into_iter(),
            None,
        );
        let mut moved = 0;
        let mut counts = [0usize; 4];
        for k in 0..10_000u64 {
            let key = mix(k);
            let before = three.pick_hash(key, &mut |_| true);
            let after = four.pick_hash(key, &mut |_| true);
            if let Some(i) = after {
                counts[i] += 1;
            }
            if before != after {
                moved += 1;
                assert_eq!(after, Some(3), "a key moved between old servers");
            }
        }
        assert!((1500..3500).contains(&moved), "moved {moved}");
        assert!(counts.iter().all(|&c| c > 1500), "{counts:?}");
    }
}
