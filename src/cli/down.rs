//! `itsup down [TARGET…] [--clean]`: stop the project stacks (all, or the named ones; `proxy`
//! for the proxy stack), then the proxy. `--clean` also removes their containers and the
//! networks apply and Compose created for them; volumes are never removed. The next `itsup
//! apply` brings everything back. Exit codes: 0 done (or nothing ran), 1 a target this root
//! does not run, or a container that could not be stopped or removed.

use std::time::Duration;

use serde_json::json;

use super::{Format, Global};
use crate::deploy::down::{self, NetworkDown, StackDown};
use crate::deploy::{docker, journal, labels, lock::ApplyLock};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these projects (`proxy` for the proxy stack); all of this root's stacks when none.
    pub targets: Vec<String>,
    /// Also remove the containers and the networks apply created (never volumes).
    #[arg(long)]
    pub clean: bool,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Seconds to wait for a running apply to finish before giving up.
    #[arg(long, default_value_t = 300)]
    pub lock_timeout: u64,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let root = &global.root;
    if super::swarm::orchestrated(root) {
        anyhow::bail!(
            "`itsup down` drives Compose; on Swarm remove a project's stack with `docker stack rm <stack>` (or remove the project and run `itsup apply`), see docs/swarm.md"
        );
    }
    for t in args.targets.iter().filter(|t| *t != "proxy") {
        if let Some(problem) = crate::validate::names::project_name_problem(t) {
            anyhow::bail!("{t:?}: {problem}");
        }
    }
    // An apply in progress would start what down stops: one at a time.
    let _lock = ApplyLock::acquire(root, Duration::from_secs(args.lock_timeout), |pid| {
        eprintln!("waiting for another itsup apply (pid {pid}) to finish…");
    })?;
    let me = labels::root_id(root);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let docker = docker::connect().await?;
        let containers = docker::stack_containers(&docker).await?;
        let stacks = match down::stacks(&containers, &me, &args.targets) {
            Ok(s) => s,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(1);
            }
        };
        let results = down::stop_all(&docker, &stacks, args.clean).await;
        let networks = if args.clean {
            let everything = args.targets.is_empty();
            let names = down::candidate_networks(&docker, &me, &stacks, everything).await?;
            down::remove_networks(&docker, &names).await
        } else {
            Vec::new()
        };
        let ok = results.iter().all(|r| r.ok);
        // Every container of this root is gone: so are the rollouts an interrupted apply left.
        if args.clean && args.targets.is_empty() && ok {
            journal::clear(root)?;
        }
        print(global, &args, &results, &networks);
        Ok(i32::from(!ok))
    })
}

fn print(global: &Global, args: &Args, results: &[StackDown], networks: &[NetworkDown]) {
    if args.format == Format::Json {
        let out = json!({
            "ok": results.iter().all(|r| r.ok),
            "stacks": results,
            "networks": networks,
        });
        line(serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    if results.is_empty() && !global.quiet {
        line("nothing of this root runs".into());
        return;
    }
    for r in results {
        if global.quiet && r.ok {
            continue;
        }
        let what = if args.clean {
            format!("{} stopped, {} removed", r.stopped, r.removed)
        } else {
            format!("{} stopped", r.stopped)
        };
        line(format!(
            "{}: {what}{}",
            r.stack,
            if r.ok { "" } else { " FAILED" }
        ));
        for e in &r.errors {
            line(format!("  {e}"));
        }
    }
    if !networks.is_empty() && !global.quiet {
        line("networks:".into());
        for n in networks {
            line(format!("  {:<32} {}", n.network, n.message));
        }
    }
    if !global.quiet {
        let failed = results.iter().filter(|r| !r.ok).count();
        line(format!(
            "{} stack(s) down, {failed} failed{}",
            results.len() - failed,
            if args.clean {
                " (volumes kept)"
            } else {
                "; `itsup apply` starts them again"
            }
        ));
    }
}

fn line(text: String) {
    super::apply::out_line(&text);
}
