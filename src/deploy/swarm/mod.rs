//! Deploy on Docker Swarm (`orchestrator: swarm`, docs/swarm.md): one stack per project plus
//! the proxy's stack, rolled out by Swarm itself.
//!
//! The same plan-before-act contract as on Compose: [`desired`] reads the rendered stack files
//! (a fingerprint per service over its rendered spec and the secrets it uses), [`observed`]
//! asks the engine which services of this platform run, [`plan`] compares both with the
//! fingerprints of the last successful apply ([`state`]) into per-service
//! `create | unchanged | update | remove`, and [`execute`] runs `docker stack deploy` for the
//! changed stacks only, removes what is gone service by service, and waits on Swarm's own
//! update status. [`status`] shows desired vs running tasks per service and node.

pub mod cli;
pub mod desired;
pub mod execute;
pub mod observed;
pub mod plan;
pub mod state;
pub mod status;

pub use desired::Desired;
pub use plan::{Action, ServicePlan, StackPlan};
