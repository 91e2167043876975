//! Deploy: bring rendered stacks up through the Docker API with zero-downtime rollouts.
//!
//! The flow of `itsup apply`: [`desired`] turns the Plan plus the rendered files into what
//! should run (with a content [`hash`] per service), [`actions`] compares it with the running
//! containers ([`docker`]) and the last applied [`state`], and [`execute`] carries the actions
//! out stack by stack along the egress graph ([`order`]), bringing stacks up with
//! [`compose`], admitting and draining at the proxy ([`admission`], [`haproxy`]) and showing
//! [`progress`]. One apply at a time ([`lock`]); [`secrets`] reach Compose as environment only.

pub mod actions;
pub mod admission;
pub mod compose;
pub mod desired;
pub mod docker;
pub mod execute;
pub mod haproxy;
pub mod hash;
pub mod health;
pub mod labels;
pub mod lock;
pub mod order;
pub mod progress;
pub mod proxy;
pub mod secrets;
pub mod state;
