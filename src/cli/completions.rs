//! `itsup completions SHELL` and `itsup man`: shell completions and the man page, both generated
//! from the clap definitions so they never drift from the real command line.

use std::io::Write;

use clap::CommandFactory;

/// Shells completions are generated for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "itsup", &mut out);
    out.flush()?;
    Ok(0)
}

/// Writes itsup(1) in roff to stdout (`itsup man > itsup.1`).
pub fn run_man(_args: ManArgs) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(super::Cli::command()).render(&mut out)?;
    out.flush()?;
    Ok(0)
}
