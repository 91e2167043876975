//! `itsup validate [PROJECT…] [--format text|json]`: every error at once; exit 0 valid, 1 invalid.

use super::{Format, Global, report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only report these projects (platform files are always checked).
    pub projects: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let tree = crate::load::load(&global.root)?;
    for name in &args.projects {
        if !tree.projects.iter().any(|p| &p.name == name) {
            anyhow::bail!(
                "no project `{name}` in {}",
                global.root.join("projects").display()
            );
        }
    }
    let outcome = crate::validate::validate(&tree, &|name| {
        crate::output::last_good::load(&global.root, name)
    });
    let wanted = |project: &Option<String>| match project {
        None => true,
        Some(p) => args.projects.is_empty() || args.projects.contains(p),
    };
    let diags: Vec<_> = outcome
        .diagnostics
        .iter()
        .filter(|d| wanted(&d.project))
        .cloned()
        .collect();
    let broken = outcome
        .broken
        .iter()
        .filter(|p| args.projects.is_empty() || args.projects.contains(p))
        .cloned()
        .collect();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&diags)?),
        Format::Text => {
            report::diagnostics(global, &diags, &broken);
            if diags.is_empty() && !global.quiet {
                println!("{} project(s) valid", tree.projects.len());
            }
        }
    }
    Ok(i32::from(!diags.is_empty()))
}
