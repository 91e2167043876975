//! `itsup diff`.
use super::Global;
#[derive(Debug, clap::Args)]
pub struct Args {}
pub fn run(_g: &Global, _a: Args) -> anyhow::Result<i32> { anyhow::bail!("not yet") }
