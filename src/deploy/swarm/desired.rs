//! What should run on Swarm, read from the rendered stack files: per stack its file and, per
//! service, a fingerprint of its rendered spec plus the values of the variables it uses
//! (secrets are interpolated by `docker stack deploy` from its environment, never written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::deploy::secrets::{self, Env};
use crate::plan::{Plan, SwarmPlan};
use crate::render::Artifact;
use crate::render::swarm::digest;

/// Target name of the proxy's stack, as on Compose.
pub const PROXY: &str = "proxy";

/// One stack to run.
#[derive(Debug, Clone)]
pub struct Stack {
    /// The project's name (`proxy` for the proxy's stack).
    pub project: String,
    /// The Swarm stack name (`<stackPrefix><project>`).
    pub stack: String,
    /// Rendered stack file, relative to the root.
    pub file: PathBuf,
    /// Service name → fingerprint.
    pub services: BTreeMap<String, String>,
    /// Environment `docker stack deploy` interpolates the file with.
    pub env: Env,
}

/// Every stack of the platform that should run.
#[derive(Debug, Clone)]
pub struct Desired {
    pub swarm: SwarmPlan,
    /// Platform id: the proxy network's name (label `io.itsup.platform`).
    pub platform: String,
    pub network: String,
    pub subnet: String,
    /// Egress overlay networks the stacks use.
    pub egress: Vec<String>,
    /// The proxy's stack first, then projects by name.
    pub stacks: Vec<Stack>,
}

/// Reads the desired state from the rendered artifacts.
pub fn build(
    root: &Path,
    plan: &Plan,
    swarm: &SwarmPlan,
    artifacts: &[Artifact],
) -> anyhow::Result<Desired> {
    let find = |path: &str| artifacts.iter().find(|a| a.path == Path::new(path));
    let mut stacks = Vec::new();
    if let Some(a) = find("proxy/docker-compose.yml") {
        let env = secrets::env_for(root, None)?;
        stacks.push(stack(PROXY, swarm.proxy_stack(), a, env)?);
    }
    let mut egress = Vec::new();
    for project in plan.projects.iter().filter(|p| p.enabled) {
        let path = format!("upstream/{}/docker-compose.yml", project.name);
        let Some(a) = find(&path) else { continue };
        let env = secrets::env_for(root, Some(&project.name))?;
        stacks.push(stack(&project.name, swarm.stack(&project.name), a, env)?);
        for s in &project.services {
            for n in &s.egress_networks {
                if !egress.contains(n) {
                    egress.push(n.clone());
                }
            }
        }
    }
    egress.sort();
    Ok(Desired {
        swarm: swarm.clone(),
        platform: plan.settings.network.clone(),
        network: plan.settings.network.clone(),
        subnet: plan.settings.subnet.to_string(),
        egress,
        stacks,
    })
}

fn stack(project: &str, stack: String, artifact: &Artifact, env: Env) -> anyhow::Result<Stack> {
    let doc = crate::yaml::parse(&artifact.content)
        .map_err(|e| anyhow::anyhow!("{}: {e}", artifact.path.display()))?;
    let mut services = BTreeMap::new();
    if let Some(defs) = doc.value.get("services").and_then(Value::as_object) {
        for (name, def) in defs {
            services.insert(name.clone(), fingerprint(def, &doc.value, &env));
        }
    }
    Ok(Stack {
        project: project.to_string(),
        stack,
        file: artifact.path.clone(),
        services,
        env,
    })
}

/// Fingerprint of one service: its rendered definition, the stack's top-level configs and
/// networks it may name, and the values of the variables the definition uses.
pub fn fingerprint(def: &Value, file: &Value, env: &Env) -> String {
    let spec = serde_json::to_string(def).unwrap_or_default();
    let mut text = spec.clone();
    for key in ["configs", "networks", "volumes"] {
        if let Some(v) = file.get(key) {
            text.push_str(&serde_json::to_string(v).unwrap_or_default());
        }
    }
    for name in variables(&spec) {
        text.push('\0');
        text.push_str(&name);
        text.push('=');
        text.push_str(env.get(&name).map(String::as_str).unwrap_or("\u{1}unset"));
    }
    digest(&text)[..16].to_string()
}

/// Names of the `$VAR` / `${VAR…}` references in a text (`$$` is a literal dollar).
fn variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let start = i + 1 + usize::from(bytes.get(i + 1) == Some(&b'{'));
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(bytes.len(), |p| start + p);
        if end > start {
            let name = text[start..end].to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        i = end.max(i + 1);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variables_are_found_and_escapes_skipped() {
        assert_eq!(variables("a ${B} $C ${D:-x} $$E ${B}"), ["B", "C", "D"]);
    }

    #[test]
    fn fingerprint_follows_spec_and_secret_values() {
        let def = json!({"image": "x", "environment": {"P": "${PASS}"}});
        let file = json!({"services": {"s": def}});
        let mut env = Env::new();
        env.insert("PASS".into(), "one".into());
        let a = fingerprint(&def, &file, &env);
        env.insert("OTHER".into(), "unrelated".into());
        assert_eq!(fingerprint(&def, &file, &env), a);
        env.insert("PASS".into(), "two".into());
        assert_ne!(fingerprint(&def, &file, &env), a);
        let changed = json!({"image": "y", "environment": {"P": "${PASS}"}});
        assert_ne!(
            fingerprint(&changed, &file, &env),
            fingerprint(&def, &file, &env)
        );
    }
}
