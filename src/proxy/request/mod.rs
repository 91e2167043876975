//! Layer 4, the request path: [`forward`] takes one client request through named phases
//! (routing, header rewrite, then [`attempt`]: server choice, the upstream exchange and
//! retries; then the response) over one per-request [`exchange`] context; [`rewrite`] builds the upstream
//! URI; [`answer`] the proxy's own answers; the per-connection [`context`] and the client-side
//! response [`body`]; [`challenge`] answers ACME HTTP-01 validation requests before routing;
//! the HTTP→HTTPS [`redirect`]. Depends on the layers below.

pub mod answer;
pub mod attempt;
pub mod body;
pub mod challenge;
pub mod context;
pub mod exchange;
pub mod forward;
pub mod redirect;
pub mod rewrite;
