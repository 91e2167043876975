//! The `docker` CLI, as Swarm is driven: `docker stack deploy` is a CLI feature (the Compose
//! file conversion lives there, not in the Engine API), so inspection goes the same way.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::deploy::secrets::Env;

/// Output of one docker command.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `docker ARGS` (in `dir`, with `env` added to the environment) and captures its output.
pub fn docker(args: &[&str], dir: Option<&Path>, env: &Env) -> anyhow::Result<Output> {
    let mut cmd = Command::new("docker");
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `docker {}`", args.join(" ")))?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `docker ARGS` and fails with its error output when it fails.
pub fn checked(args: &[&str]) -> anyhow::Result<String> {
    let out = docker(args, None, &Env::new())?;
    if !out.ok {
        anyhow::bail!("`docker {}` failed: {}", args.join(" "), out.stderr.trim());
    }
    Ok(out.stdout)
}

/// Whether this engine is a Swarm manager (apply and status need one).
pub fn require_manager() -> anyhow::Result<()> {
    let state = checked(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
    ])?;
    if state.trim() != "active true" {
        anyhow::bail!(
            "`orchestrator: swarm` needs this Docker engine to be a Swarm manager (it is: {}); run `docker swarm init` or point DOCKER_HOST at a manager",
            state.trim()
        );
    }
    Ok(())
}
