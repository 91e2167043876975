//! Layer 2, upstream: one server's state ([`server`]) with its connection [`pool`], the direct
//! HTTP/1.1 client ([`h1`]), the balancers that pick among servers ([`lb`]), active
//! [`health`] checks and the upstream-side [`body`] types. Depends only on [`super::base`].

pub mod body;
pub mod h1;
pub mod health;
pub mod lb;
pub mod pool;
pub mod response;
pub mod server;
