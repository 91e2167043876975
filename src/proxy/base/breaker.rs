//! Per-server circuit breaker, which is also the passive ejection mechanism: consecutive
//! failures open it for an exponentially growing time, then one probe request (half-open)
//! decides between closing it and opening it again for twice as long.
//!
//! Everything is atomics so the request path never takes a lock.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use crate::proxy::base::clock::now_ms;
use crate::proxy::base::config::CircuitBreaker as Settings;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// How long a half-open probe may stay unanswered before another request may probe.
const PROBE_GRACE_MS: u64 = 10_000;

/// Visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    trips: AtomicU32,
    /// Open: when the ejection ends. Half-open: when the probe was let through.
    until_ms: AtomicU64,
}

impl Breaker {
    pub fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Relaxed) {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether a request could be sent now, without claiming anything.
    pub fn may_pass(&self, now: u64) -> bool {
        match self.state.load(Ordering::Relaxed) {
            CLOSED => true,
            OPEN => now >= self.until_ms.load(Ordering::Relaxed),
            _ => now >= self.until_ms.load(Ordering::Relaxed) + PROBE_GRACE_MS,
        }
    }

    /// Claims the right to send one request; in the open/half-open states only one caller
    /// wins the probe.
    pub fn try_pass(&self, now: u64) -> bool {
        let state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return true;
        }
        if !self.may_pass(now) {
            return false;
        }
        let won = self
            .state
            .compare_exchange(state, HALF_OPEN, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if won {
            self.until_ms.store(now, Ordering::Relaxed);
        }
        won
    }

    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Relaxed) != CLOSED {
            self.state.store(CLOSED, Ordering::Release);
            self.trips.store(0, Ordering::Relaxed);
        }
    }

    /// Returns true when this failure opened the circuit.
    pub fn record_failure(&self, settings: &Settings) -> bool {
        if settings.consecutive_failures == 0 {
            return false;
        }
        let state = self.state.load(Ordering::Acquire);
        let trip = match state {
            HALF_OPEN => true,
            OPEN => false,
            _ => self.failures.fetch_add(1, Ordering::AcqRel) + 1 >= settings.consecutive_failures,
        };
        if trip {
            let trips = self.trips.fetch_add(1, Ordering::AcqRel);
            let backoff = settings
                .base_ejection_ms
                .saturating_mul(1u64 << trips.min(20))
                .min(settings.max_ejection_ms);
            self.until_ms.store(now_ms() + backoff, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            self.state.store(OPEN, Ordering::Release);
        }
        trip
    }

    /// Milliseconds left in the current ejection (0 when not open).
    pub fn ejected_for_ms(&self, now: u64) -> u64 {
        if self.state.load(Ordering::Relaxed) == OPEN {
            self.until_ms.load(Ordering::Relaxed).saturating_sub(now)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            consecutive_failures: 2,
            on_5xx: true,
            base_ejection_ms: 100,
            max_ejection_ms: 250,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_backs_off_exponentially() {
        let b = Breaker::default();
        let s = settings();
        assert!(!b.record_failure(&s));
        assert!(b.record_failure(&s));
        assert_eq!(b.state(), BreakerState::Open);
        let now = now_ms();
        assert!(!b.try_pass(now));
        assert!((90..=100).contains(&b.ejected_for_ms(now)));
        // After the ejection, exactly one probe passes.
        assert!(b.try_pass(now + 101));
        assert!(!b.try_pass(now + 101));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // A failed probe re-opens for twice as long.
        assert!(b.record_failure(&s));
        let left = b.ejected_for_ms(now_ms());
        assert!((190..=200).contains(&left), "{left}");
        // Capped at max.
        assert!(b.try_pass(now_ms() + 201));
        assert!(b.record_failure(&s));
        assert!(b.ejected_for_ms(now_ms()) <= 250);
        // A successful probe closes and resets the backoff.
        assert!(b.try_pass(now_ms() + 251));
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_pass(now_ms()));
    }
}
