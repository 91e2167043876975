//! `orchestrator: swarm`: the project compose files become Swarm stack files, and the proxy
//! stack becomes a global service with host-mode ports (docs/swarm.md).
//!
//! What the user wrote stays; itsup fills in what Swarm needs to roll out without downtime and
//! roll back on its own: `deploy.update_config` (start-first unless the service cannot run
//! twice, `failure_action: rollback`, a `monitor` long enough for the healthcheck to decide),
//! `rollback_config`, `restart_policy`, `endpoint_mode: dnsrr` (no IPVS: names resolve to the
//! tasks themselves) and the platform's labels. Keys the user set under `deploy` win.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Artifact, RenderError, Templates, to_yaml};
use crate::model::{Engine, Rollout};
use crate::plan::{Plan, ProjectPlan, SwarmPlan};

/// Compose file format of every stack file: the newest `docker stack deploy` 20.10 reads.
pub const STACK_VERSION: &str = "3.9";
/// Label naming the platform (its proxy network) on every service itsup deploys to Swarm.
pub const PLATFORM_LABEL: &str = "io.itsup.platform";
/// Label naming the project of a service.
pub const PROJECT_LABEL: &str = "io.itsup.project";

/// Docker's healthcheck defaults (interval 30 s, 3 retries, no start period).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u64 = 3;
/// Monitor of a service without a healthcheck in its compose file: a task that stays up this
/// long counts as updated.
const MONITOR_WITHOUT_HEALTHCHECK: Duration = Duration::from_secs(10);

/// Turns a project's compose file (with the proxy and egress networks already attached) into
/// a stack file, in place.
pub fn stack(plan: &Plan, project: &ProjectPlan, compose: &mut Map<String, Value>) {
    // First, where a reader looks for it.
    let user = std::mem::take(compose);
    compose.insert("version".into(), json!(STACK_VERSION));
    compose.extend(user.into_iter().filter(|(k, _)| k != "version"));
    let Some(services) = compose.get_mut("services").and_then(Value::as_object_mut) else {
        return;
    };
    for sp in &project.services {
        let Some(Value::Object(svc)) = services.get_mut(&sp.name) else {
            continue;
        };
        depends_on_as_list(svc);
        let scale = svc.remove("scale");
        let monitor = monitor(svc.get("healthcheck"));
        let order = match sp.rollout.strategy {
            Rollout::StartFirst => "start-first",
            Rollout::StopFirst => "stop-first",
        };
        let restart = restart_condition(svc.get("restart"));
        let deploy = svc
            .entry("deploy")
            .or_insert_with(|| Value::Object(Map::new()));
        if !deploy.is_object() {
            *deploy = Value::Object(Map::new());
        }
        let Some(deploy) = deploy.as_object_mut() else {
            continue;
        };
        let global = deploy.get("mode").and_then(Value::as_str) == Some("global");
        if !global && !deploy.contains_key("replicas") {
            let replicas = scale.as_ref().and_then(Value::as_u64).unwrap_or(1);
            deploy.insert("replicas".into(), json!(replicas));
        }
        deploy
            .entry("endpoint_mode")
            .or_insert_with(|| json!("dnsrr"));
        fill(
            deploy,
            "update_config",
            json!({
                "parallelism": 1,
                "order": order,
                "failure_action": "rollback",
                "monitor": seconds(monitor),
                "delay": "0s",
            }),
        );
        fill(
            deploy,
            "rollback_config",
            json!({
                "parallelism": 1,
                "order": order,
                "failure_action": "pause",
                "monitor": seconds(monitor),
            }),
        );
        fill(
            deploy,
            "restart_policy",
            json!({"condition": restart, "delay": "2s"}),
        );
        let labels = deploy
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        add_labels(
            labels,
            &[
                (PLATFORM_LABEL, plan.settings.network.as_str()),
                (PROJECT_LABEL, project.name.as_str()),
            ],
        );
    }
}

/// Adds labels under `deploy.labels` (where Swarm keeps service labels, and Traefik's swarm
/// provider reads them).
pub fn add_deploy_labels(svc: &mut Map<String, Value>, generated: &[(String, String)]) {
    let deploy = svc
        .entry("deploy")
        .or_insert_with(|| Value::Object(Map::new()));
    if !deploy.is_object() {
        *deploy = Value::Object(Map::new());
    }
    if let Some(deploy) = deploy.as_object_mut() {
        let labels = deploy
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        let pairs: Vec<(&str, &str)> = generated
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        add_labels(labels, &pairs);
    }
}

/// Fills the keys of `generated` the user did not set under `deploy.<key>`.
fn fill(deploy: &mut Map<String, Value>, key: &str, generated: Value) {
    let entry = deploy
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let (Some(entry), Value::Object(generated)) = (entry.as_object_mut(), generated) {
        for (k, v) in generated {
            entry.entry(k).or_insert(v);
        }
    }
}

/// Adds labels to a `labels` mapping or list (the generated value wins: the platform finds its
/// services by them).
pub fn add_labels(labels: &mut Value, generated: &[(&str, &str)]) {
    match labels {
        Value::Array(list) => {
            list.retain(|item| {
                let key = item
                    .as_str()
                    .and_then(|s| s.split('=').next())
                    .unwrap_or("");
                !generated.iter().any(|(k, _)| *k == key)
            });
            for (k, v) in generated {
                list.push(Value::String(format!("{k}={v}")));
            }
        }
        Value::Object(map) => {
            for (k, v) in generated {
                map.insert((*k).to_string(), Value::String((*v).to_string()));
            }
        }
        other => {
            *other = Value::Object(
                generated
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
                    .collect(),
            );
        }
    }
}

/// The long form of `depends_on` (conditions are refused by validation) is not part of the
/// format `docker stack deploy` reads: the list of names is.
fn depends_on_as_list(svc: &mut Map<String, Value>) {
    if let Some(Value::Object(deps)) = svc.get("depends_on") {
        let names: Vec<Value> = deps.keys().map(|k| json!(k)).collect();
        svc.insert("depends_on".into(), Value::Array(names));
    }
}

/// Swarm's restart condition for a Compose `restart` policy.
fn restart_condition(restart: Option<&Value>) -> &'static str {
    match restart.and_then(Value::as_str) {
        Some("no") => "none",
        Some(r) if r.starts_with("on-failure") => "on-failure",
        _ => "any",
    }
}

/// How long Swarm watches a new task before it calls the update done: long enough for the
/// healthcheck to fail it (`start_period + interval × retries`), plus one interval of margin.
pub fn monitor(healthcheck: Option<&Value>) -> Duration {
    let Some(hc) = healthcheck.and_then(Value::as_object) else {
        return MONITOR_WITHOUT_HEALTHCHECK;
    };
    if hc.get("disable") == Some(&Value::Bool(true)) {
        return MONITOR_WITHOUT_HEALTHCHECK;
    }
    let duration = |key: &str| hc.get(key).and_then(Value::as_str).and_then(parse_duration);
    let interval = duration("interval").unwrap_or(DEFAULT_INTERVAL);
    let start = duration("start_period").unwrap_or_default();
    let retries = hc
        .get("retries")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_RETRIES);
    let retries = u32::try_from(retries).unwrap_or(u32::MAX);
    (start + interval.saturating_mul(retries) + interval).max(MONITOR_WITHOUT_HEALTHCHECK)
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A Compose duration (`1m30s`, `500ms`, `10s`, `2h`); `None` when it is not one.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * factor).ok()?;
    }
    Some(total)
}

/// Hex SHA-256 of a text.
pub fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One Swarm config of the proxy stack: a rendered file under a name that changes with its
/// content (configs are immutable).
fn config(key: &str, artifact: &Artifact, stack: &str) -> Value {
    // Swarm allows 64 characters: the stack and a hash of the key and the content.
    let digest = digest(&format!("{key}\n{}", artifact.content));
    let file = artifact
        .path
        .strip_prefix("proxy")
        .map(|p| format!("./{}", p.display()))
        .unwrap_or_default();
    json!({"key": key, "file": file, "name": format!("{stack}-{}", &digest[..16])})
}

/// The proxy stack's files on Swarm: the engine's configuration, then the stack file that
/// carries it as configs named by content.
pub fn render_proxy(
    plan: &Plan,
    swarm: &SwarmPlan,
    templates: &Templates,
) -> Result<Vec<Artifact>, RenderError> {
    let mut out = match plan.settings.engine {
        Engine::Haproxy => vec![super::haproxy::render(plan, templates)?],
        _ => super::traefik::render(plan, templates)?,
    };
    let stack = proxy_stack(plan, swarm, &out, templates)?;
    out.push(stack);
    Ok(out)
}

/// `proxy/docker-compose.yml` on Swarm, over the already rendered proxy files.
fn proxy_stack(
    plan: &Plan,
    swarm: &SwarmPlan,
    rendered: &[Artifact],
    templates: &Templates,
) -> Result<Artifact, RenderError> {
    let s = &plan.settings;
    let stack = swarm.proxy_stack();
    let image = s.image.clone().unwrap_or_else(|| match s.engine {
        Engine::Haproxy => super::compose::edge_image(plan),
        _ => format!(
            "traefik:{}",
            s.versions
                .traefik
                .as_deref()
                .unwrap_or(super::compose::DEFAULT_TRAEFIK)
        ),
    });
    let mut configs = Vec::new();
    let mut traefik_configs = Vec::new();
    for a in rendered {
        let rel = a.path.to_string_lossy();
        if rel == "proxy/haproxy/haproxy.cfg" {
            configs.push(config("haproxy_cfg", a, &stack));
        } else if let Some(target) = rel.strip_prefix("proxy/traefik/") {
            let key = format!("traefik_{}", target.replace(['/', '.', '-'], "_"));
            traefik_configs.push(json!({"key": key, "target": target}));
            configs.push(config(&key, a, &stack));
        }
    }
    let ports: Vec<Value> = plan
        .entrypoints
        .iter()
        .map(|e| json!({"port": e.port, "protocol": if e.udp { "udp" } else { "tcp" }}))
        .collect();
    let ctx = json!({
        "engine": s.engine.as_str(),
        "image": image,
        "socket_proxy": super::compose::SOCKET_PROXY_IMAGE,
        "network": s.network,
        "ingress_label": swarm.ingress_label,
        "ports": ports,
        "configs": configs,
        "traefik_configs": traefik_configs,
    });
    let value = templates.yaml("swarm-proxy.yml", &ctx)?;
    Ok(Artifact::new("proxy/docker-compose.yml", &to_yaml(&value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_compose() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("abc"), None);
    }

    #[test]
    fn monitor_covers_the_healthcheck_decision() {
        let hc = json!({"interval": "1s", "retries": 2, "start_period": "5s"});
        // 5 + 1 × 2 + 1 of margin, but never below the floor.
        assert_eq!(monitor(Some(&hc)), Duration::from_secs(10));
        let hc = json!({"interval": "10s", "retries": 3, "start_period": "20s"});
        assert_eq!(monitor(Some(&hc)), Duration::from_secs(60));
        let hc = json!({"test": ["CMD", "true"]});
        assert_eq!(monitor(Some(&hc)), Duration::from_secs(120));
        assert_eq!(monitor(None), MONITOR_WITHOUT_HEALTHCHECK);
    }
}
