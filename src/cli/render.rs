//! `itsup render [--out DIR]`: write every changed artifact, plus what the engine needs beside
//! them to start (the default certificate); report broken projects.

use std::path::PathBuf;

use super::{Global, report};
use crate::output::ChangeKind;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write into this folder instead of the root.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let Some(generated) = report::generate(global)? else {
        eprintln!("nothing written: fix the platform files first");
        return Ok(1);
    };
    let outcome = &generated.outcome;
    let out = args.out.unwrap_or_else(|| global.root.clone());
    let changes = crate::output::changes(&out, &generated.artifacts, &outcome.broken)?;
    crate::output::write(&out, &changes)?;
    let folders = crate::output::mounts::prepare(&out, &generated.artifacts)?;
    generated.save_last_good(&global.root)?;
    // What the engine needs beside its config to start (HAProxy's default certificate, the run
    // folders), so that a rendered tree passes the engine's own check as it is.
    let made = match &generated.plan {
        Some(plan) => crate::deploy::proxy::prepare(&out, plan.settings.engine)?,
        None => Vec::new(),
    };
    if !global.quiet {
        for c in &changes {
            let verb = match c.kind {
                ChangeKind::Create => "created",
                ChangeKind::Modify => "updated",
                ChangeKind::Delete => "removed",
            };
            println!("{verb} {}", c.path.display());
        }
        for folder in &folders {
            println!("created {}/", folder.display());
        }
        for m in &made {
            println!("created {m}");
        }
        let unchanged = generated.artifacts.len()
            + changes
                .iter()
                .filter(|c| c.kind == ChangeKind::Delete)
                .count()
            - changes.len();
        println!("{} file(s) changed, {unchanged} unchanged", changes.len());
    }
    Ok(i32::from(!outcome.is_valid()))
}
