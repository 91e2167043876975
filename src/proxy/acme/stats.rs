//! Counters and gauges of the certificate manager, one [`SetStats`] per name set, kept in
//! atomics and rendered on scrape by `runtime::exposition` (which may use this layer).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

/// What `/metrics` shows of one name set.
#[derive(Debug)]
pub(crate) struct SetStats {
    /// The set as a label: its names joined by `,`.
    pub(crate) names: String,
    pub(crate) orders: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) consecutive_failures: AtomicU64,
    /// Unix seconds; 0 = no certificate.
    pub(crate) not_after: AtomicI64,
    /// Unix seconds of the next order attempt (renewal or retry); 0 = none planned.
    pub(crate) next_attempt: AtomicI64,
}

impl SetStats {
    pub(crate) fn new(names: &[String]) -> Self {
        Self {
            names: names.join(","),
            orders: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            not_after: AtomicI64::new(0),
            next_attempt: AtomicI64::new(0),
        }
    }

    pub(crate) fn set_not_after(&self, at: SystemTime) {
        self.not_after.store(unix(at), Ordering::Relaxed);
    }

    pub(crate) fn set_next_attempt(&self, at: SystemTime) {
        self.next_attempt.store(unix(at), Ordering::Relaxed);
    }

    pub(crate) fn ordered(&self) {
        self.orders.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn succeeded(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
