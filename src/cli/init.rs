//! `itsup init` and `itsup create`.
use super::Global;
#[derive(Debug, clap::Args)]
pub struct InitArgs {}
#[derive(Debug, clap::Args)]
pub struct CreateArgs {}
pub fn run_init(_g: &Global, _a: InitArgs) -> anyhow::Result<i32> { anyhow::bail!("not yet") }
pub fn run_create(_g: &Global, _a: CreateArgs) -> anyhow::Result<i32> { anyhow::bail!("not yet") }
