//! The Compose CLI, used only to bring stacks up (`up`, scaling) and for `itsup svc`.
//! Whichever is installed is used: the v2 plugin (`docker compose`) or v1 (`docker-compose`);
//! both take the same arguments for everything itsup runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use anyhow::Context;

use super::secrets::Env;

/// How Compose is invoked on this machine.
#[derive(Debug, Clone)]
pub struct ComposeCli {
    program: String,
    prefix: Vec<String>,
}

impl ComposeCli {
    /// Finds Compose once per process: `ITSUP_COMPOSE` (a command line) wins, then the v2
    /// plugin, then v1.
    pub fn detect() -> anyhow::Result<ComposeCli> {
        static FOUND: OnceLock<Option<ComposeCli>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                if let Ok(cmd) = std::env::var("ITSUP_COMPOSE") {
                    let mut words = cmd.split_whitespace().map(str::to_string);
                    let program = words.next()?;
                    return Some(ComposeCli {
                        program,
                        prefix: words.collect(),
                    });
                }
                let works = |program: &str, args: &[&str]| {
                    std::process::Command::new(program)
                        .args(args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                };
                if works("docker", &["compose", "version"]) {
                    Some(ComposeCli {
                        program: "docker".into(),
                        prefix: vec!["compose".into()],
                    })
                } else if works("docker-compose", &["version"]) {
                    Some(ComposeCli {
                        program: "docker-compose".into(),
                        prefix: Vec::new(),
                    })
                } else {
                    None
                }
            })
            .clone()
            .context("neither `docker compose` nor `docker-compose` is installed")
    }

    /// A command for one stack: project name, project directory and compose files set, the
    /// stack's secrets in the environment.
    pub fn command(&self, stack: &Stack) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.prefix)
            .arg("--project-directory")
            .arg(&stack.dir)
            .arg("-p")
            .arg(&stack.project);
        for f in &stack.files {
            cmd.arg("-f").arg(f);
        }
        cmd.envs(&stack.env).kill_on_drop(true);
        cmd
    }

    /// Runs Compose with `args`, capturing output; a non-zero exit is an error quoting stderr.
    pub async fn run(&self, stack: &Stack, args: &[&str]) -> anyhow::Result<()> {
        tracing::info!(stack = %stack.project, "{} {}", self.program, args.join(" "));
        let started = std::time::Instant::now();
        let out = self
            .command(stack)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.program))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        tracing::debug!(
            stack = %stack.project,
            status = %out.status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            stderr = %stderr.trim(),
            "compose finished"
        );
        if out.status.success() {
            return Ok(());
        }
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::bail!(
            "compose {} failed ({}): {}",
            args.join(" "),
            out.status,
            tail.join(" / ")
        )
    }
}

/// One Compose stack: the proxy or a project.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Compose project name.
    pub project: String,
    /// Project directory (relative paths in the compose file resolve against it).
    pub dir: PathBuf,
    /// Compose files, the generated one first.
    pub files: Vec<PathBuf>,
    pub env: Env,
}

impl Stack {
    /// The stack of `upstream/<project>/`, with the label override apply wrote when present.
    pub fn project(root: &Path, project: &str, env: Env) -> Stack {
        let dir = root.join("upstream").join(project);
        let mut files = vec![dir.join("docker-compose.yml")];
        let labels = super::labels::override_path(root, project);
        if labels.exists() {
            files.push(labels);
        }
        Stack {
            project: project.to_string(),
            dir,
            files,
            env,
        }
    }
}
