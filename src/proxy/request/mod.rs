//! Layer 4, the request path: [`forward`] takes one client request through routing, server
//! choice, header rewrite, the upstream exchange and retries; the per-connection
//! [`context`] and the client-side response [`body`]; [`challenge`] answers ACME HTTP-01
//! validation requests before routing; the HTTP→HTTPS [`redirect`]. Depends on the layers below.

pub mod body;
pub mod challenge;
pub mod context;
pub mod forward;
pub mod redirect;
