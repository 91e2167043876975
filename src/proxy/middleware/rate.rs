//! `rate_limit`: GCRA (governor) keyed by client address, a header or the route, with a
//! bounded key store: at most `max_keys` buckets are tracked; a full shard first drops
//! buckets that are back to fresh (their theoretical arrival time has passed, so forgetting
//! them changes nothing) and, when still full, new keys share one overflow bucket. A flood of
//! addresses therefore costs bounded memory and is limited as one client. With `shared`, the
//! buckets live in Redis instead ([`super::redis`]), the decision made by one server-side
//! script on Redis's clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use hyper::HeaderMap;
use hyper::header::HeaderName;

use crate::proxy::base::config_middleware::{RateKey, RateLimit};

const SHARDS: usize = 16;
/// A full shard is swept at most this often (a flood of new keys must not make every
/// request scan the shard).
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// What a request is counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Ip(IpAddr),
    Text(Box<str>),
    /// The route, or requests without the header.
    One,
}

impl Key {
    /// The key of one request under `how`.
    pub(crate) fn of(how: &KeyRule, client: IpAddr, headers: &HeaderMap) -> Self {
        match how {
            KeyRule::ClientIp => Key::Ip(client),
            KeyRule::Route => Key::One,
            KeyRule::Header(name) => match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(v) => Key::Text(v.into()),
                None => Key::One,
            },
        }
    }

    /// The key as Redis sees it (after the middleware's prefix).
    pub(crate) fn text(&self) -> String {
        match self {
            Key::Ip(ip) => format!("ip:{ip}"),
            Key::Text(t) => format!("h:{t}"),
            Key::One => "one".into(),
        }
    }
}

pub(crate) enum KeyRule {
    ClientIp,
    Route,
    Header(HeaderName),
}

impl KeyRule {
    pub(crate) fn new(k: &RateKey) -> Self {
        match k {
            RateKey::ClientIp => KeyRule::ClientIp,
            RateKey::Route => KeyRule::Route,
            RateKey::Header(h) => HeaderName::from_bytes(h.as_bytes())
                .map(KeyRule::Header)
                .unwrap_or(KeyRule::Route),
        }
    }
}

/// The theoretical arrival times of the tracked keys, sharded, with the overflow bucket.
pub(crate) struct Shards {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    overflow: Mutex<Option<Nanos>>,
    /// When the limiter's clock started (governor's times are relative to it).
    start: Instant,
    hasher: std::collections::hash_map::RandomState,
    pub(crate) tracked: AtomicUsize,
    pub(crate) overflowed: AtomicU64,
}

#[derive(Default)]
struct Shard {
    tat: HashMap<Key, Nanos>,
    last_sweep: Option<Instant>,
}

impl Shards {
    fn new(max_keys: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            overflow: Mutex::new(None),
            start: Instant::now(),
            hasher: Default::default(),
            tracked: AtomicUsize::new(0),
            overflowed: AtomicU64::new(0),
        }
    }

    /// Forgets buckets whose theoretical arrival time has passed (they equal fresh ones).
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        shard.last_sweep = Some(now);
        let now_rel = Nanos::from(now.saturating_duration_since(self.start));
        let before = shard.tat.len();
        shard.tat.retain(|_, tat| *tat > now_rel);
        self.tracked
            .fetch_sub(before - shard.tat.len(), Ordering::Relaxed);
    }
}

/// The store governor owns; the limiter's owner keeps another handle for its metrics.
pub(crate) struct Store(Arc<Shards>);

impl StateStore for Store {
    type Key = Key;

    fn measure_and_replace<T, F, E>(&self, key: &Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let this = &*self.0;
        let index = (this.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = this.shards[index].lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tat) = shard.tat.get_mut(key) {
            let (out, next) = f(Some(*tat))?;
            *tat = next;
            return Ok(out);
        }
        if shard.tat.len() >= this.per_shard {
            let now = Instant::now();
            if shard
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                this.sweep(&mut shard, now);
            }
        }
        if shard.tat.len() >= this.per_shard {
            drop(shard);
            this.overflowed.fetch_add(1, Ordering::Relaxed);
            let mut overflow = this.overflow.lock().unwrap_or_else(|p| p.into_inner());
            let (out, next) = f(*overflow)?;
            *overflow = Some(next);
            return Ok(out);
        }
        let (out, next) = f(None)?;
        shard.tat.insert(key.clone(), next);
        this.tracked.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }
}

/// A local limiter: governor over the bounded [`Shards`].
pub(crate) struct Local {
    limiter: RateLimiter<Key, Store, MonotonicClock, NoOpMiddleware<Instant>>,
    shards: Arc<Shards>,
}

impl Local {
    pub(crate) fn new(c: &RateLimit) -> Self {
        let shards = Arc::new(Shards::new(c.max_keys));
        let limiter = RateLimiter::new(quota(c), Store(shards.clone()), MonotonicClock);
        Self { limiter, shards }
    }

    /// `Ok` to let the request through, `Err(retry_after)` when it is over the limit.
    pub(crate) fn check(&self, key: &Key) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(MonotonicClock.now()))
    }

    pub(crate) fn tracked(&self) -> usize {
        self.shards.tracked.load(Ordering::Relaxed)
    }

    pub(crate) fn overflowed(&self) -> u64 {
        self.shards.overflowed.load(Ordering::Relaxed)
    }
}

/// `average` per `period_ms` with `burst`.
pub(crate) fn quota(c: &RateLimit) -> Quota {
    let average = c.average.clamp(1, u64::from(u32::MAX));
    let interval = Duration::from_nanos(
        (u128::from(c.period_ms) * 1_000_000 / u128::from(average)).max(1) as u64,
    );
    let burst = NonZeroU32::new(c.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::base::config_middleware::FailPolicy;

    fn config(average: u64, burst: u32, max_keys: usize) -> RateLimit {
        RateLimit {
            average,
            period_ms: 1000,
            burst,
            key: RateKey::ClientIp,
            max_keys,
            shared: false,
            on_redis_error: FailPolicy::FailOpen,
        }
    }

    #[test]
    fn burst_then_limited_with_a_retry_time() {
        let l = Local::new(&config(1, 3, 100));
        let k = Key::Ip("192.0.2.1".parse().expect("ip"));
        for _ in 0..3 {
            assert!(l.check(&k).is_ok());
        }
        let wait = l.check(&k).expect_err("limited");
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        assert!(l.check(&Key::Ip("192.0.2.2".parse().expect("ip"))).is_ok());
    }

    #[test]
    fn tracked_keys_stay_bounded_and_new_keys_share_the_overflow() {
        let l = Local::new(&config(1, 1, 64));
        for i in 0..10_000u32 {
            let _ = l.check(&Key::Ip(std::net::Ipv4Addr::from(i).into()));
        }
        assert!(l.tracked() <= 64, "tracked {}", l.tracked());
        assert!(l.overflowed() > 9_000);
    }
}
