//! `itsup schema [project|itsup|proxy]`: the JSON Schema of an input file, for editors and CI.

use clap::ValueEnum;

use crate::model::{ItsupConfig, ProjectFile, schema_of};

/// Which file's schema.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Which {
    /// `projects/<p>/ingress.yml` (or `itsup-project.yml`).
    #[default]
    Project,
    /// `projects/itsup.yml`.
    Itsup,
    /// `proxy.yml` of `itsup proxy`.
    Proxy,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum, default_value_t = Which::Project)]
    pub which: Which,
}

/// The schema text of one input file.
pub fn schema_text(which: Which) -> anyhow::Result<String> {
    let schema = match which {
        Which::Project => schema_of::<ProjectFile>(),
        Which::Itsup => schema_of::<ItsupConfig>(),
        Which::Proxy => crate::proxy::config::schema(),
    };
    Ok(serde_json::to_string_pretty(&schema)?)
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    println!("{}", schema_text(args.which)?);
    Ok(0)
}
