//! itsup: run a small self-hosted platform from a git-friendly `projects/` folder.
//!
//! The pipeline, one module per stage: [`load`] reads the tree into the [`model`],
//! [`validate`] checks it (schema + semantic rules), [`plan`] turns it into the engine-neutral
//! Plan, [`render`] writes artifacts from the Plan only, [`output`] diffs and writes them
//! atomically, and [`deploy`] brings stacks up with zero-downtime rollouts.
//! [`agent`], [`proxy`] and [`watch`] are companion data-plane pieces that reuse the model.
//!
//! Without the default `full` feature only the parsers' side is built (no CLI, deploy engine,
//! watcher or agent server): the fuzz targets need no more, and their instrumented build stays
//! short (Cargo.toml says which dependencies that leaves out).

pub mod agent;
mod atomic;
#[cfg(feature = "full")]
pub mod cli;
#[cfg(feature = "full")]
pub mod deploy;
pub mod diagnostic;
#[cfg(feature = "full")]
mod http_serve;
#[cfg(test)]
mod layering;
pub mod load;
#[cfg(feature = "full")]
mod logging;
pub mod model;
pub mod output;
#[cfg(feature = "full")]
pub mod pipeline;
pub mod plan;
pub mod proxy;
pub mod render;
pub mod validate;
#[cfg(feature = "full")]
pub mod watch;
pub mod yaml;

/// The parsers that read untrusted or user bytes, for the fuzz targets in `fuzz/` (a separate
/// crate on the nightly toolchain). Re-exports only; not an API.
#[doc(hidden)]
pub mod fuzz_api {
    pub use crate::agent::protocol::parse_request as agent_request;
    pub use crate::load::load as load_tree;
    pub use crate::proxy::config::parse as proxy_config;
    pub use crate::proxy::l4::client_hello::{
        Hello, MAX_HELLO_BYTES, parse as client_hello, sample as sample_client_hello,
    };
    pub use crate::proxy::l4::proxy_protocol::{
        MAX_HEADER_BYTES as MAX_PROXY_HEADER_BYTES, Parsed as ProxyHeader, parse as proxy_header,
        v1 as proxy_header_v1, v2 as proxy_header_v2,
    };
    pub use crate::proxy::upstream::h1::body::{Decoder as H1BodyDecoder, Step as H1BodyStep};
    pub use crate::proxy::upstream::h1::head::{
        Framing as H1Framing, parse_response as h1_response_head,
    };
    pub use crate::validate::validate;
}
