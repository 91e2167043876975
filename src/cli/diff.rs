//! `itsup diff [PROJECT…]`: what `render` would change; exit 0 none, 2 changes, 1 error.

use std::path::Path;

use super::{Global, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only show these projects' files (`upstream/<project>/`).
    pub projects: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let Some(generated) = report::generate(global)? else {
        return Ok(1);
    };
    let outcome = &generated.outcome;
    let changes = crate::output::changes(&global.root, &generated.artifacts, &outcome.broken)?;
    let in_scope = |path: &Path| {
        args.projects.is_empty()
            || args
                .projects
                .iter()
                .any(|p| path.starts_with(Path::new("upstream").join(p)))
    };
    let color = global.color.enabled();
    let mut shown = 0;
    let mut reader_gone = false;
    for change in changes.iter().filter(|c| in_scope(&c.path)) {
        if !reader_gone {
            reader_gone = !report::stdout(&crate::output::unified(change, color))?;
        }
        shown += 1;
    }
    Ok(if !outcome.is_valid() {
        1
    } else if shown > 0 {
        2
    } else {
        0
    })
}
