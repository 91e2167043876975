//! Layer 4, the request path: [`forward`] takes one client request through routing, server
//! choice, header rewrite, the upstream exchange and retries; the per-connection
//! [`context`] and the client-side response [`body`]; the HTTP→HTTPS [`redirect`]. Depends on the layers below.

pub mod body;
pub mod context;
pub mod forward;
pub mod redirect;
