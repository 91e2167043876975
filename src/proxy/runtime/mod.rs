//! Layer 3, runtime: the [`state`] snapshot compiled from a config (routes, clusters,
//! servers) and swapped atomically on [`reload`], the [`metrics`] counters and their
//! [`exposition`], the connection [`supervisor`], and the server admin states kept in Redis
//! ([`shared_states`]). Depends on the layers below.

pub mod exposition;
pub mod metrics;
pub mod reload;
pub mod shared_states;
pub mod state;
pub mod supervisor;
