//! Runtime state of one upstream server. It is keyed by (cluster, address) and outlives config
//! reloads, so in-flight counters, health, circuit state, admin state and pooled connections
//! carry over to the new config.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::proxy::base::breaker::Breaker;
use crate::proxy::upstream::pool::Pool;

/// Operator-set state (admin API), independent of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Takes traffic.
    Ready,
    /// No new clients; requests pinned by a sticky cookie still arrive.
    Drain,
    /// No traffic at all.
    Maint,
}

impl AdminState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Drain,
            2 => Self::Maint,
            _ => Self::Ready,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Drain => 1,
            Self::Maint => 2,
        }
    }
}

/// Which servers a selection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eligibility {
    /// Ready, healthy, circuit passing.
    Normal,
    /// Like `Normal`, but draining servers are fine (the client is pinned to it).
    Pinned,
    /// Every server not in drain/maint, whatever its health (all-down fail-open policy).
    FailOpen,
}

pub struct ServerState {
    pub cluster: String,
    pub address: String,
    /// Parsed once when the address is an IP literal; names resolve per new connection.
    pub socket_addr: Option<SocketAddr>,
    inflight: AtomicU32,
    admin: AtomicU8,
    healthy: AtomicBool,
    pub breaker: Breaker,
    pub pool: Pool,
    pub requests_total: AtomicU64,
    pub failures_total: AtomicU64,
}

impl ServerState {
    pub fn new(cluster: &str, address: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            address: address.to_string(),
            socket_addr: address.parse().ok(),
            inflight: AtomicU32::new(0),
            admin: AtomicU8::new(0),
            healthy: AtomicBool::new(true),
            breaker: Breaker::default(),
            pool: Pool::default(),
            requests_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
        }
    }

    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    pub fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state.to_u8(), Ordering::Relaxed);
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Returns true when the value changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Quick filter without side effects, used to rank candidates.
    pub fn eligible(&self, how: Eligibility, now_ms: u64) -> bool {
        let admin = self.admin_state();
        match how {
            Eligibility::Normal => {
                admin == AdminState::Ready && self.healthy() && self.breaker.may_pass(now_ms)
            }
            Eligibility::Pinned => {
                admin != AdminState::Maint && self.healthy() && self.breaker.may_pass(now_ms)
            }
            Eligibility::FailOpen => admin == AdminState::Ready,
        }
    }

    /// Eligibility check that also claims the circuit probe and an in-flight slot.
    /// The caller owns one `release_inflight` afterwards.
    pub fn try_claim(&self, how: Eligibility, now_ms: u64) -> bool {
        if !self.eligible(how, now_ms) {
            return false;
        }
        if how != Eligibility::FailOpen && !self.breaker.try_pass(now_ms) {
            return false;
        }
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    pub fn release_inflight(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    /// True when the server can currently take new traffic (for status and metrics).
    pub fn up(&self) -> bool {
        self.eligible(Eligibility::Normal, crate::proxy::base::clock::now_ms())
    }
}
