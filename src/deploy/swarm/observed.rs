//! What runs on Swarm for this platform: the services labelled `io.itsup.platform=<network>`,
//! by stack, with their update status.

use std::collections::BTreeMap;

use serde_json::Value;

use super::cli;
use crate::render::swarm::PLATFORM_LABEL;

/// Label Docker puts on every service of a stack.
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// One running service.
#[derive(Debug, Clone)]
pub struct Service {
    /// Full Swarm name (`<stack>_<service>`).
    pub name: String,
    pub id: String,
    /// Name inside its stack.
    pub short: String,
    /// Swarm's `UpdateStatus.State` (`updating`, `completed`, `rollback_completed`, …).
    pub update_state: Option<String>,
    /// When the last update started (RFC 3339), to tell a new update from the previous one.
    pub update_started: Option<String>,
    pub update_message: Option<String>,
}

/// Services of the platform, by stack name.
pub type Observed = BTreeMap<String, Vec<Service>>;

/// Lists the platform's services.
pub fn services(platform: &str) -> anyhow::Result<Observed> {
    let ids = cli::checked(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label={PLATFORM_LABEL}={platform}"),
    ])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut out = Observed::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut args = vec!["service", "inspect"];
    args.extend(ids.iter().copied());
    // A service removed between the two calls makes inspect fail: ask again once.
    let text = cli::checked(&args).or_else(|_| {
        let ids = cli::checked(&[
            "service",
            "ls",
            "-q",
            "--filter",
            &format!("label={PLATFORM_LABEL}={platform}"),
        ])?;
        let mut args = vec!["service".to_string(), "inspect".to_string()];
        args.extend(ids.split_whitespace().map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli::checked(&args)
    })?;
    let list: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    for v in &list {
        if let Some((stack, service)) = parse(v) {
            out.entry(stack).or_default().push(service);
        }
    }
    Ok(out)
}

/// One service of `docker service inspect`'s output, with its stack.
pub fn parse(v: &Value) -> Option<(String, Service)> {
    let name = v.pointer("/Spec/Name")?.as_str()?.to_string();
    let stack = v
        .pointer("/Spec/Labels")
        .and_then(|l| l.get(STACK_LABEL))
        .and_then(Value::as_str)?
        .to_string();
    let short = name
        .strip_prefix(&format!("{stack}_"))
        .unwrap_or(&name)
        .to_string();
    let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    Some((
        stack,
        Service {
            id: text("/ID").unwrap_or_default(),
            short,
            update_state: text("/UpdateStatus/State"),
            update_started: text("/UpdateStatus/StartedAt"),
            update_message: text("/UpdateStatus/Message"),
            name,
        },
    ))
}

/// One service by full name, when it exists.
pub fn service(name: &str) -> anyhow::Result<Option<Service>> {
    let out = cli::docker(&["service", "inspect", name], None, &Default::default())?;
    if !out.ok {
        return Ok(None);
    }
    let list: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
    Ok(list.first().and_then(parse).map(|(_, s)| s))
}

/// Running and desired tasks of a service (`docker service ls`'s `REPLICAS`, e.g. `2/3`).
pub fn replicas(name: &str) -> anyhow::Result<Option<(u64, u64)>> {
    let text = cli::checked(&[
        "service",
        "ls",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Name}} {{.Replicas}}",
    ])?;
    Ok(text.lines().find_map(|line| {
        let (n, r) = line.split_once(' ')?;
        if n != name {
            return None;
        }
        let r = r.split_whitespace().next()?;
        let (running, desired) = r.split_once('/')?;
        Some((running.parse().ok()?, desired.parse().ok()?))
    }))
}
