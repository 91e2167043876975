//! Layer 1, the base: the config file format and its checks (`address` forms, `cidr` lists), the clock, the route table,
//! header rules, the circuit-breaker rules, socket-write batching, memory bookkeeping and the
//! access log. Nothing here knows about upstream servers, the runtime snapshot or requests.

pub mod access_log;
pub mod address;
pub mod batch;
pub mod breaker;
pub mod cidr;
pub mod clock;
pub mod config;
pub mod config_acme;
pub mod config_l4;
pub mod config_middleware;
pub mod config_tls;
pub mod headers;
pub mod memory;
pub mod routing;
