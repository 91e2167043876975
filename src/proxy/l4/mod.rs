//! Layer 4b, after `runtime` (its metrics) and before `request`/`serve`: TCP and UDP
//! forwarding for the `tcp:` and `udp:` sections of `proxy.yml`.
//!
//! The readers that see untrusted bytes first, [`client_hello`] (SNI before any TLS) and
//! [`proxy_protocol`] (v1/v2 headers in and out), depend on nothing and are built without
//! the `full` feature, so the fuzz targets reach them. The rest: [`rewind`] (a stream that
//! replays the bytes read to route it), [`sni`] (name → route table), [`listener`] (one
//! listener compiled from its config), [`front`] (what a new connection goes through: PROXY
//! header from trusted senders, ClientHello, route choice, allowlist, TLS termination),
//! [`forward`] (connect, PROXY header out, copy both ways with idle timeout and byte counts),
//! [`tcp`] (the accept loop of a port of its own) and [`udp`] (sessions per client address).
//! A shared HTTPS port runs [`front`] from `serve::tls_listener` and gets the connection back
//! when the name is not a TCP route.

pub mod client_hello;
#[cfg(feature = "full")]
pub mod forward;
#[cfg(feature = "full")]
pub mod front;
#[cfg(feature = "full")]
pub mod listener;
pub mod proxy_protocol;
#[cfg(feature = "full")]
pub mod rewind;
#[cfg(feature = "full")]
pub mod sni;
#[cfg(feature = "full")]
pub mod tcp;
#[cfg(feature = "full")]
pub mod udp;
