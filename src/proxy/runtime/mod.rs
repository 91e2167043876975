//! Layer 3, runtime: the [`state`] snapshot compiled from a config (routes, clusters,
//! servers) and swapped atomically on [`reload`], the [`metrics`] counters and their
//! [`exposition`], and the connection [`supervisor`]. Depends on the layers below.

pub mod exposition;
pub mod metrics;
pub mod reload;
pub mod state;
pub mod supervisor;
