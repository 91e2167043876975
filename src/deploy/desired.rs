//! The desired state: what the rendered artifacts say should run, per stack and service, with
//! each service's content hash, rollout strategy, grace period, probe port and proxy backends.
//! Built from the Plan and the rendered files in memory, so a dry run sees exactly what an
//! apply would write.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use super::hash::{HashInputs, service_hash};
use super::secrets::{self, Env};
use crate::model::{Engine, Rollout};
use crate::plan::{Plan, ProjectPlan, RolloutPlan};
use crate::render::Artifact;

/// The proxy stack's services that carry the engine (others are helpers: socket proxy,
/// CrowdSec, the agent).
pub const PROXY_SERVICE_HAPROXY: &str = "haproxy";
pub const PROXY_SERVICE_TRAEFIK: &str = "traefik";
/// The DNS honeypot of `dns:` in itsup.yml (every engine).
pub const PROXY_SERVICE_DNS: &str = "dns-honeypot";
/// Engine haproxy: the service holding the network namespace HAProxy runs in.
pub const PROXY_NAMESPACE_HOLDER: &str = "haproxy-net";
/// Engine traefik: the HAProxy in front of Traefik, and the service holding its namespace.
pub const PROXY_EDGE: &str = "edge";
pub const PROXY_EDGE_HOLDER: &str = "edge-net";

/// The HAProxy of the stack that is handed over (`-x`) and the service holding its network
/// namespace (and the published ports): `haproxy`/`haproxy-net`, or the edge in front of
/// Traefik.
pub fn hand_over_pair(engine: Engine) -> Option<(&'static str, &'static str)> {
    match engine {
        Engine::Haproxy => Some((PROXY_SERVICE_HAPROXY, PROXY_NAMESPACE_HOLDER)),
        Engine::Traefik => Some((PROXY_EDGE, PROXY_EDGE_HOLDER)),
        Engine::Itsup => None,
    }
}

/// The folder of the HAProxy that owns the ports (its config and `run/` sockets).
pub fn hand_over_dir(engine: Engine) -> &'static str {
    match engine {
        Engine::Traefik => "proxy/edge",
        _ => "proxy/haproxy",
    }
}

/// Name of the proxy stack in reports, the state file and `io.itsup.project`.
pub const PROXY: &str = "proxy";

/// One Compose stack to run.
#[derive(Debug, Clone)]
pub struct DesiredStack {
    /// itsup name (`proxy` or the project).
    pub name: String,
    /// Compose project name.
    pub compose_project: String,
    pub enabled: bool,
    pub depends_on: Vec<String>,
    pub services: Vec<DesiredService>,
    /// Secrets handed to Compose.
    pub env: Env,
    /// External networks the stack's compose file expects, with a subnet for the proxy one.
    pub networks: Vec<(String, Option<String>)>,
    /// Relative path of the generated compose file.
    pub compose_file: String,
}

/// One service to run.
#[derive(Debug, Clone)]
pub struct DesiredService {
    pub name: String,
    pub hash: String,
    pub rollout: RolloutPlan,
    pub grace: Duration,
    /// Port to probe when the service has no healthcheck (its first routed port).
    pub port: Option<u16>,
    /// Proxy backends (HAProxy) that route to it.
    pub backends: Vec<String>,
    pub routed: bool,
    pub has_healthcheck: bool,
    pub image: Option<String>,
    /// The image is not present locally (nothing can be pulled; compose would try).
    pub image_missing: bool,
}

/// Everything to run.
#[derive(Debug, Clone)]
pub struct Desired {
    pub proxy: Option<DesiredStack>,
    /// Hash of the proxy's configuration: HAProxy's `haproxy.cfg` (a change means `reload`) or
    /// Traefik's static `traefik.yml` (a change restarts Traefik: new entrypoints need it).
    pub proxy_config: Option<String>,
    pub projects: Vec<DesiredStack>,
    pub engine: Engine,
}

/// How a proxy service is updated: the HAProxy owning the ports is handed over, Traefik
/// (behind the edge) replaced blue/green unless it publishes udp ports itself, the rest
/// restarted.
fn proxy_rollout(pair: Option<(&str, &str)>, name: &str, def: &Value) -> RolloutPlan {
    let publishes_udp = def
        .get("ports")
        .and_then(Value::as_array)
        .is_some_and(|ports| {
            ports
                .iter()
                .any(|p| p.as_str().is_some_and(|p| p.ends_with("/udp")))
        });
    let (strategy, reason) = match pair {
        Some((PROXY_SERVICE_HAPROXY, holder)) if name == PROXY_SERVICE_HAPROXY => (
            Rollout::StartFirst,
            format!(
                "hand-over: the new HAProxy takes the listening sockets over from the old one in \
                 the namespace {holder} holds, the old one finishes its connections"
            ),
        ),
        Some((PROXY_EDGE, holder)) if name == PROXY_EDGE => (
            Rollout::StartFirst,
            format!(
                "hand-over: the new edge takes the listening sockets over from the old one in \
                 the namespace {holder} holds, the old one finishes its connections"
            ),
        ),
        _ if name == PROXY_SERVICE_TRAEFIK && publishes_udp => (
            Rollout::StopFirst,
            "Traefik is restarted, a brief outage: it publishes udp ports itself (udp cannot \
             pass the edge, and two Traefiks cannot publish one port)"
                .to_string(),
        ),
        _ if name == PROXY_SERVICE_TRAEFIK => (
            Rollout::StartFirst,
            "blue/green behind the edge: the new Traefik starts beside the old one, the edge \
             admits it once its API lists every expected router without error, then drains \
             the old one"
                .to_string(),
        ),
        _ if name == PROXY_SERVICE_DNS => (
            Rollout::StopFirst,
            "the DNS honeypot holds a fixed address on the proxy network".to_string(),
        ),
        _ => (
            Rollout::StopFirst,
            "the proxy publishes host ports".to_string(),
        ),
    };
    RolloutPlan { strategy, reason }
}

/// Compose project name of the proxy stack: derived from the proxy network so that two
/// platforms on one host (or two test roots) never share it.
pub fn proxy_compose_project(plan: &Plan) -> String {
    format!("{}-proxy", plan.settings.network)
}

/// Builds the desired state from the rendered artifacts (in memory, not yet written).
pub fn build(
    root: &Path,
    plan: &Plan,
    artifacts: &[Artifact],
    image_ids: &HashMap<String, String>,
) -> anyhow::Result<Desired> {
    let inputs = Inputs {
        root,
        plan,
        artifacts,
        image_ids,
    };
    let proxy = match inputs.artifact("proxy/docker-compose.yml") {
        Some(text) => Some(inputs.proxy_stack(text)?),
        None => None,
    };
    let mut projects = Vec::new();
    for p in &plan.projects {
        projects.extend(inputs.project_stack(p)?);
    }
    Ok(Desired {
        proxy,
        proxy_config: inputs.proxy_config_hash(),
        projects,
        engine: plan.settings.engine,
    })
}

/// What the desired state is built from: the Plan, the rendered files, the local images.
struct Inputs<'a> {
    root: &'a Path,
    plan: &'a Plan,
    artifacts: &'a [Artifact],
    image_ids: &'a HashMap<String, String>,
}

impl Inputs<'_> {
    fn artifact(&self, rel: &str) -> Option<&str> {
        self.artifacts
            .iter()
            .find(|a| a.path == Path::new(rel))
            .map(|a| a.content.as_str())
    }

    /// A compose file's external networks, the proxy network with its fixed subnet.
    fn networks(&self, compose: &Value) -> Vec<(String, Option<String>)> {
        let proxy_network = &self.plan.settings.network;
        external_networks(compose)
            .into_iter()
            .map(|n| {
                let subnet = (n == *proxy_network).then(|| self.plan.settings.subnet.to_string());
                (n, subnet)
            })
            .collect()
    }

    /// The proxy stack: its services hashed with what needs a restart (Traefik's static config
    /// and ACME CA bundle), the port holder's image left out of its hash.
    fn proxy_stack(&self, text: &str) -> anyhow::Result<DesiredStack> {
        let (root, plan) = (self.root, self.plan);
        let compose = parse_compose(text, "proxy/docker-compose.yml")?;
        let shared_env = secrets::env_for(root, None)?;
        let static_config = match plan.settings.engine {
            // New entrypoints need a restart, and Traefik reads the ACME CA bundle only at
            // start: fold both into the hash.
            Engine::Traefik => [
                "proxy/traefik/traefik.yml",
                crate::render::traefik::ACME_CA_FILE,
            ]
            .iter()
            .filter_map(|f| self.artifact(f))
            .collect::<String>(),
            _ => String::new(),
        };
        let pair = hand_over_pair(plan.settings.engine);
        let mut services = Vec::new();
        for (name, def) in services_of(&compose) {
            let mut def = def.clone();
            // The holder only keeps a network namespace alive: a new proxy image must not
            // recreate it (that would close the ports), so its image is not hashed.
            if pair.is_some_and(|(_, holder)| name == holder)
                && let Value::Object(m) = &mut def
            {
                m.remove("image");
            }
            if !static_config.is_empty()
                && name == PROXY_SERVICE_TRAEFIK
                && let Value::Object(m) = &mut def
            {
                m.insert(
                    "x-itsup-static-config".into(),
                    Value::String(static_config.clone()),
                );
            }
            let rollout = proxy_rollout(pair, name, &def);
            // Traefik is admitted to (and drained from) the edge's backends.
            let backends =
                if plan.settings.engine == Engine::Traefik && name == PROXY_SERVICE_TRAEFIK {
                    crate::render::traefik::edge_backends(plan)
                } else {
                    Vec::new()
                };
            services.push(service(
                root,
                Path::new("proxy"),
                name,
                &def,
                rollout,
                None,
                backends,
                false,
                self.image_ids,
                &shared_env,
            ));
        }
        Ok(DesiredStack {
            name: PROXY.into(),
            compose_project: proxy_compose_project(plan),
            enabled: true,
            depends_on: Vec::new(),
            services,
            env: shared_env,
            networks: self.networks(&compose),
            compose_file: "proxy/docker-compose.yml".into(),
        })
    }

    /// A hash of the proxy's own config file for the engines that reload it in place.
    fn proxy_config_hash(&self) -> Option<String> {
        let short_hash = |text: &str| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))[..24].to_string()
        };
        match self.plan.settings.engine {
            Engine::Haproxy => self.artifact("proxy/haproxy/haproxy.cfg").map(short_hash),
            Engine::Traefik => self.artifact("proxy/traefik/traefik.yml").map(short_hash),
            Engine::Itsup => None,
        }
    }

    /// One project's stack; `None` for a host-only project (nothing to run).
    fn project_stack(&self, p: &ProjectPlan) -> anyhow::Result<Option<DesiredStack>> {
        let file = format!("upstream/{}/docker-compose.yml", p.name);
        let Some(text) = self.artifact(&file) else {
            return Ok(None);
        };
        let compose = parse_compose(text, &file)?;
        let env = secrets::env_for(self.root, Some(&p.name))?;
        let defs: BTreeMap<&str, &Value> = services_of(&compose).into_iter().collect();
        let mut services = Vec::new();
        for sp in &p.services {
            let Some(def) = defs.get(sp.name.as_str()) else {
                continue;
            };
            let (port, backends) = served_by(self.plan, &p.name, &sp.name);
            services.push(service(
                self.root,
                &Path::new("upstream").join(&p.name),
                &sp.name,
                def,
                sp.rollout.clone(),
                port,
                backends,
                sp.proxy.is_some(),
                self.image_ids,
                &env,
            ));
        }
        Ok(Some(DesiredStack {
            name: p.name.clone(),
            compose_project: p.name.clone(),
            enabled: p.enabled,
            depends_on: p.depends_on.clone(),
            services,
            env,
            networks: self.networks(&compose),
            compose_file: file,
        }))
    }
}

/// The proxy backends routing to a service (http and tcp rows) and the port they use.
fn served_by(plan: &Plan, project: &str, service: &str) -> (Option<u16>, Vec<String>) {
    let mut port = None;
    let mut backends = Vec::new();
    let http = plan
        .http
        .iter()
        .map(|r| (&r.project, &r.service, &r.backend));
    let tcp = plan
        .tcp
        .iter()
        .map(|r| (&r.project, &r.service, &r.backend));
    for (p, s, backend) in http.chain(tcp) {
        if p == project && s.as_deref() == Some(service) {
            port = port.or(backend.servers.first().map(|s| s.port));
            if !backends.contains(&backend.name) {
                backends.push(backend.name.clone());
            }
        }
    }
    (port, backends)
}

#[allow(clippy::too_many_arguments)]
fn service(
    root: &Path,
    dir: &Path,
    name: &str,
    def: &Value,
    rollout: RolloutPlan,
    port: Option<u16>,
    backends: Vec<String>,
    routed: bool,
    image_ids: &HashMap<String, String>,
    env: &Env,
) -> DesiredService {
    let image = def.get("image").and_then(Value::as_str).map(str::to_string);
    let image_id = image
        .as_deref()
        .and_then(|i| image_ids.get(&super::docker::normalize_ref(i)))
        .map(String::as_str);
    let hash = service_hash(
        def,
        &HashInputs {
            project_dir: &root.join(dir),
            image_id,
            env,
            mounts: dir != Path::new("proxy"),
        },
    );
    let has_healthcheck = def
        .get("healthcheck")
        .is_some_and(|h| h.get("disable") != Some(&Value::Bool(true)));
    DesiredService {
        name: name.to_string(),
        hash,
        rollout,
        grace: def
            .get("stop_grace_period")
            .and_then(Value::as_str)
            .and_then(parse_duration)
            .unwrap_or(Duration::from_secs(10)),
        port,
        backends,
        routed,
        has_healthcheck,
        image_missing: image.is_some() && image_id.is_none() && def.get("build").is_none(),
        image,
    }
}

fn parse_compose(text: &str, file: &str) -> anyhow::Result<Value> {
    crate::yaml::parse(text)
        .map(|doc| doc.value)
        .with_context(|| format!("rendered {file} is not valid YAML"))
}

fn services_of(compose: &Value) -> Vec<(&str, &Value)> {
    compose
        .get("services")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

/// Names of the networks a compose file declares `external: true` (deploy creates them).
fn external_networks(compose: &Value) -> Vec<String> {
    let Some(nets) = compose.get("networks").and_then(Value::as_object) else {
        return Vec::new();
    };
    nets.iter()
        .filter(|(_, v)| {
            v.get("external")
                .is_some_and(|e| e == &Value::Bool(true) || e.is_object())
        })
        .map(|(k, v)| {
            v.get("name")
                .and_then(Value::as_str)
                .or_else(|| v.pointer("/external/name").and_then(Value::as_str))
                .unwrap_or(k)
                .to_string()
        })
        .collect()
}

/// Compose durations: `1m30s`, `10s`, `500ms`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => value * 3600.0,
            "m" => value * 60.0,
            "s" => value,
            "ms" => value / 1000.0,
            "us" => value / 1e6,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        rest = next;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("x"), None);
        assert_eq!(parse_duration("5"), None);
    }

    #[test]
    fn finds_external_networks() {
        let compose: Value = crate::yaml::parse(
            "networks:\n  proxynet:\n    external: true\n  e:\n    name: egress-a-to-b-db\n    external: true\n  own: {}\n",
        )
        .expect("yaml")
        .value;
        assert_eq!(
            external_networks(&compose),
            vec!["proxynet", "egress-a-to-b-db"]
        );
    }
}
