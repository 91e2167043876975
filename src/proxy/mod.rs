//! `itsup proxy`: the runtime L7 proxy and load balancer that serves a Plan directly.
//!
//! Layers, each a folder, each depending only on the ones before it (the test
//! `src/layering.rs` enforces it; `INTERNALS.md` tells the life of a request and of a
//! connection): [`base`] (config, clock, routing, headers, breaker rules, batching, access
//! log) → [`acme`] (automatic certificates) → [`tls`] (certificate store, SNI resolver, rustls
//! configs) → [`upstream`] (server state, pool, direct HTTP/1.1 client, balancers, health checks)
//! → [`middleware`] (route middlewares, rate limits, the shared Redis) → [`runtime`] (the
//! swappable snapshot, reload, metrics, the connection supervisor) → [`l4`] (TCP/UDP
//! forwarding, SNI routing, PROXY protocol) →
//! [`request`] (the request path) → [`serve`] (listeners, admin API, status page). [`start`] wires them together at start-up
//! and drains at shutdown. Without the `full` feature (the fuzz build) only the parsers' side
//! is built: `base`, the direct HTTP/1.1 client's framing in `upstream` and the ClientHello and
//! PROXY-protocol readers in `l4`.

#[cfg(feature = "full")]
pub mod acme;
pub mod base;
pub mod l4;
#[cfg(feature = "full")]
pub mod middleware;
#[cfg(feature = "full")]
pub mod request;
#[cfg(feature = "full")]
pub mod runtime;
#[cfg(feature = "full")]
pub mod serve;
#[cfg(feature = "full")]
mod start;
#[cfg(feature = "full")]
pub mod tls;
pub mod upstream;

pub use base::config;
pub use config::{ProxyConfig, schema};
#[cfg(feature = "full")]
pub use start::{ProxyArgs, run};
