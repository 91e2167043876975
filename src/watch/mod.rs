//! `itsup watch`: routes labelled containers through HAProxy, one hostname per compose project.

/// Command-line arguments of `itsup watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {}

/// Runs the watcher until it is told to stop.
pub fn run(_args: WatchArgs) -> anyhow::Result<i32> {
    anyhow::bail!("itsup watch is not built yet")
}
