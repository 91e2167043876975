//! `itsup svc PROJECT ARGS…`: Compose for one generated stack, the arguments passed through
//! unchanged and Compose's exit code passed back. The stack gets the same project name, project
//! directory, files (the label override included) and secrets as `apply` uses, so a hand-run
//! `up -d` recreates nothing that apply left running.

use std::process::Stdio;

use anyhow::Context;

use super::Global;
use crate::deploy::compose::{ComposeCli, Stack};
use crate::deploy::desired::{PROXY, proxy_compose_project};
use crate::deploy::{labels, secrets};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Project name (`proxy` for the proxy stack).
    pub project: String,
    /// Compose arguments, e.g. `ps`, `logs -f web`, `exec web sh`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let root = &global.root;
    if super::swarm::orchestrated(root) {
        return super::swarm::svc(global, &args.project, &args.args);
    }
    let stack = if args.project == PROXY {
        let generated = crate::pipeline::generate(root)?;
        let plan = generated
            .plan
            .context("the platform files are invalid (see `itsup validate`)")?;
        let dir = root.join("proxy");
        let compose_project = proxy_compose_project(&plan);
        let mut files = vec![dir.join("docker-compose.yml")];
        let label_file = labels::override_path(root, &compose_project);
        if label_file.exists() {
            files.push(label_file);
        }
        Stack {
            project: compose_project,
            dir,
            files,
            env: secrets::env_for(root, None)?,
        }
    } else {
        if let Some(problem) = crate::validate::names::project_name_problem(&args.project) {
            anyhow::bail!("{:?}: {problem}", args.project);
        }
        Stack::project(
            root,
            &args.project,
            secrets::env_for(root, Some(&args.project))?,
        )
    };
    let Some(file) = stack.files.first() else {
        anyhow::bail!("no compose file for {}", args.project);
    };
    if !file.is_file() {
        anyhow::bail!(
            "{} does not exist: is {:?} a project with a compose file? (run `itsup render` or `itsup apply`)",
            file.display(),
            args.project
        );
    }
    let compose = ComposeCli::detect()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        compose
            .command(&stack)
            .args(&args.args)
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .await
    })?;
    // Killed by a signal: the shell convention 128 + signal.
    Ok(status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    }))
}
