//! `itsup agent`: an HAProxy agent-check server that answers with gRPC health.

/// Command-line arguments of `itsup agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

/// Runs the agent until it is told to stop.
pub fn run(_args: AgentArgs) -> anyhow::Result<i32> {
    anyhow::bail!("itsup agent is not built yet")
}
