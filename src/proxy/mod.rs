//! `itsup proxy`: the runtime L7/L4 proxy and load balancer that serves a Plan directly.

/// Command-line arguments of `itsup proxy`.
#[derive(Debug, clap::Args)]
pub struct ProxyArgs {}

/// Runs the proxy until it is told to stop.
pub fn run(_args: ProxyArgs) -> anyhow::Result<i32> {
    anyhow::bail!("itsup proxy is not built yet")
}
