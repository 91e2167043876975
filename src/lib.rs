//! itsup: run a small self-hosted platform from a git-friendly `projects/` folder.
//!
//! The pipeline, one module per stage: [`load`] reads the tree into the [`model`],
//! [`validate`] checks it (schema + semantic rules), [`plan`] turns it into the engine-neutral
//! Plan, [`render`] writes artifacts from the Plan only, [`output`] diffs and writes them
//! atomically, and [`deploy`] brings stacks up with zero-downtime rollouts.
//! [`agent`], [`proxy`] and [`watch`] are companion data-plane pieces that reuse the model.

pub mod agent;
pub mod cli;
pub mod deploy;
#[cfg(test)]
mod layering;
pub mod load;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod proxy;
pub mod render;
pub mod validate;
pub mod watch;
pub mod yaml;
