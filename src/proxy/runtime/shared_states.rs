//! Server admin states (drain/maint) in Redis, when `redis` is configured: the admin API
//! writes each change there, and every proxy using that Redis reads them back every
//! [`PERIOD`] (and at start), so a state survives a restart and applies to every instance.
//! Redis is then the truth: a server without a record is `ready`. While Redis is
//! unreachable the states in memory stay as they are.

use std::sync::Arc;
use std::time::Duration;

use crate::proxy::runtime::state::Shared;
use crate::proxy::upstream::server::AdminState;

/// How often the states are read back.
pub const PERIOD: Duration = Duration::from_secs(1);

/// The text stored for a state (`ready` is stored as no record).
pub fn state_text(state: AdminState) -> &'static str {
    match state {
        AdminState::Ready => "ready",
        AdminState::Drain => "drain",
        AdminState::Maint => "maint",
    }
}

fn parse(text: &str) -> AdminState {
    match text {
        "drain" => AdminState::Drain,
        "maint" => AdminState::Maint,
        _ => AdminState::Ready,
    }
}

/// Applies the states recorded in Redis once; `false` when Redis could not be read.
pub async fn apply_once(shared: &Shared) -> bool {
    let Some(redis) = shared.middlewares.redis() else {
        return true;
    };
    let Ok(states) = redis.states().await else {
        return false;
    };
    let snap = shared.snapshot.load();
    for cluster in &snap.clusters {
        for server in &cluster.servers {
            let key = format!("{}/{}", cluster.name, server.address);
            let want = states.get(&key).map_or(AdminState::Ready, |s| parse(s));
            if server.admin_state() != want {
                tracing::info!(cluster = %cluster.name, server = %server.address, state = ?want, "admin state from redis");
                server.set_admin_state(want);
            }
        }
    }
    true
}

/// Keeps the states in step with Redis until the process ends.
pub async fn follow(shared: Arc<Shared>) {
    loop {
        apply_once(&shared).await;
        tokio::time::sleep(PERIOD).await;
    }
}

/// Records one change in Redis (when configured); a failure is logged and counted, the
/// change stays in memory.
pub async fn record(shared: &Shared, cluster: &str, address: &str, state: AdminState) {
    if let Some(redis) = shared.middlewares.redis()
        && let Err(e) = redis.set_state(cluster, address, state_text(state)).await
    {
        tracing::warn!(cluster, server = address, error = %e, "admin state not stored in redis");
    }
}
