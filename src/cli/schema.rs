//! `itsup schema`.

#[derive(Debug, clap::Args)]
pub struct Args {}
pub fn run(_a: Args) -> anyhow::Result<i32> { anyhow::bail!("not yet") }
