//! Layer 2, upstream: one server's state ([`server`]) with its connection [`pool`], the direct
//! HTTP/1.1 client ([`h1`]), the balancers that pick among servers ([`lb`]), active
//! [`health`] checks and the upstream-side [`body`] types. Depends only on [`super::base`].

pub mod body;
pub mod h1;
#[cfg(feature = "full")]
pub mod health;
#[cfg(feature = "full")]
pub mod lb;
#[cfg(feature = "full")]
pub mod pool;
#[cfg(feature = "full")]
pub mod response;
#[cfg(feature = "full")]
pub mod server;
