//! What `orchestrator: swarm` refuses: keys of `itsup.yml` and of compose files that Docker
//! Swarm ignores or refuses, decided key by key (docs/swarm.md has the table). Ignored keys
//! that do no harm (`restart`: itsup writes `deploy.restart_policy`; plain `depends_on` lists)
//! pass; keys whose silent loss would change what runs are errors.

use serde_json::{Map, Value};

use super::rules::Problem;
use crate::model::{Engine, ItsupConfig, ProjectFile};
use crate::yaml::escape_pointer;

/// Problems of `itsup.yml` with `orchestrator: swarm`, as (pointer, message).
pub fn platform_problems(config: &ItsupConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if config.orchestrator != crate::model::Orchestrator::Swarm {
        return out;
    }
    if config.proxy.engine == Engine::Itsup {
        out.push((
            "/proxy/engine".into(),
            "engine itsup does not run on `orchestrator: swarm` yet: use haproxy or traefik".into(),
        ));
    }
    if config.crowdsec.enabled {
        out.push((
            "/crowdsec/enabled".into(),
            "CrowdSec is not deployed on `orchestrator: swarm` yet".into(),
        ));
    }
    if config.dns.enabled {
        out.push((
            "/dns/enabled".into(),
            "the DNS honeypot needs a fixed address, which Swarm overlay networks cannot pin"
                .into(),
        ));
    }
    let label = &config.swarm.ingress_label;
    let label_ok = !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !label_ok {
        out.push((
            "/swarm/ingressLabel".into(),
            format!("`ingressLabel` {label:?} must be letters, digits, `.`, `-` or `_`"),
        ));
    }
    let prefix = &config.swarm.stack_prefix;
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        out.push((
            "/swarm/stackPrefix".into(),
            format!("`stackPrefix` {prefix:?} must be lowercase letters, digits or `-`"),
        ));
    }
    out
}

fn compose_at(pointer: String, key: bool, message: String) -> Problem {
    Problem {
        pointer,
        key,
        in_compose: true,
        message,
    }
}

/// Problems of one project with `orchestrator: swarm`.
pub fn project_problems(
    file: &ProjectFile,
    compose: Option<&Map<String, Value>>,
    config: &ItsupConfig,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if config.orchestrator != crate::model::Orchestrator::Swarm {
        return out;
    }
    for (i, row) in file.ingress.iter().enumerate() {
        if row.ipv4_address.is_some() {
            out.push(Problem {
                pointer: format!("/ingress/{i}/ipv4_address"),
                key: true,
                in_compose: false,
                message: "`ipv4_address` cannot be pinned on a Swarm overlay network".into(),
            });
        }
    }
    let Some(services) = compose
        .and_then(|c| c.get("services"))
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (name, def) in services {
        let Some(def) = def.as_object() else { continue };
        let routed = file
            .ingress
            .iter()
            .any(|r| r.service.as_deref() == Some(name.as_str()));
        service_problems(&mut out, name, def, routed);
    }
    out
}

/// Keys Swarm drops or refuses, with why; each is an error at the key.
const REFUSED: &[(&str, &str)] = &[
    (
        "container_name",
        "Swarm names tasks itself (`<stack>_<service>.<slot>`); drop `container_name`",
    ),
    (
        "build",
        "`docker stack deploy` does not build: build the image beforehand (and push it to a registry the nodes pull from) and drop `build`",
    ),
    (
        "network_mode",
        "Swarm services cannot share another container's network namespace; drop `network_mode`",
    ),
    (
        "links",
        "Swarm ignores `links`: services reach each other by name on a shared network",
    ),
    ("external_links", "Swarm ignores `external_links`"),
    ("privileged", "Swarm services cannot run privileged"),
    ("devices", "Swarm services cannot map devices"),
];

fn service_problems(out: &mut Vec<Problem>, name: &str, def: &Map<String, Value>, routed: bool) {
    let base = format!("/services/{}", escape_pointer(name));
    for (key, why) in REFUSED {
        if def.contains_key(*key) {
            out.push(compose_at(
                format!("{base}/{key}"),
                true,
                format!("service `{name}`: {why}"),
            ));
        }
    }
    if let Some(Value::Object(deps)) = def.get("depends_on") {
        for (dep, cfg) in deps {
            if cfg.get("condition").is_some() {
                out.push(compose_at(
                    format!("{base}/depends_on/{}/condition", escape_pointer(dep)),
                    true,
                    format!(
                        "service `{name}`: Swarm starts services in no order and ignores `depends_on` conditions; make `{name}` retry until `{dep}` answers, and drop the condition"
                    ),
                ));
            }
        }
    }
    if let Some(Value::Array(ports)) = def.get("ports") {
        for (i, port) in ports.iter().enumerate() {
            let pointer = format!("{base}/ports/{i}");
            let host_mode = port.get("mode").and_then(Value::as_str) == Some("host");
            let message = if routed {
                format!(
                    "service `{name}` is routed by the proxy: on Swarm it publishes no host port (drop `ports`)"
                )
            } else if !host_mode {
                format!(
                    "service `{name}`: Swarm publishes ports through the ingress routing mesh, which needs IPVS and hides client addresses; use the long syntax with `mode: host`"
                )
            } else {
                continue;
            };
            out.push(compose_at(pointer, false, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn swarm() -> ItsupConfig {
        ItsupConfig {
            orchestrator: crate::model::Orchestrator::Swarm,
            ..ItsupConfig::default()
        }
    }

    fn routed(service: &str) -> ProjectFile {
        serde_json::from_value(json!({"ingress": [{"service": service, "domain": "a.test"}]}))
            .expect("project file")
    }

    #[test]
    fn refused_keys_are_named_at_their_pointer() {
        let compose = json!({"services": {
            "web": {"image": "x", "container_name": "web", "build": ".", "ports": ["80:80"],
                    "depends_on": {"db": {"condition": "service_healthy"}}, "restart": "always"},
            "db": {"image": "y", "ports": [{"target": 5432, "published": 5432, "mode": "host"}]},
            "cache": {"image": "z", "ports": ["6379:6379"], "depends_on": ["db"]},
        }});
        let problems = project_problems(&routed("web"), compose.as_object(), &swarm());
        let mut pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        pointers.sort();
        assert_eq!(
            pointers,
            [
                "/services/cache/ports/0",
                "/services/web/build",
                "/services/web/container_name",
                "/services/web/depends_on/db/condition",
                "/services/web/ports/0",
            ]
        );
        assert!(problems.iter().all(|p| p.in_compose));
        let routed_port = problems
            .iter()
            .find(|p| p.pointer == "/services/web/ports/0")
            .expect("routed port");
        assert!(routed_port.message.contains("routed by the proxy"));
    }

    #[test]
    fn compose_mode_refuses_nothing() {
        let compose = json!({"services": {"web": {"image": "x", "container_name": "web"}}});
        let config = ItsupConfig::default();
        assert!(project_problems(&routed("web"), compose.as_object(), &config).is_empty());
        assert!(platform_problems(&config).is_empty());
    }

    #[test]
    fn platform_keys_swarm_cannot_serve() {
        let mut config = swarm();
        config.proxy.engine = Engine::Itsup;
        config.dns.enabled = true;
        config.swarm.stack_prefix = "Bad_".into();
        let pointers: Vec<String> = platform_problems(&config)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            pointers,
            ["/proxy/engine", "/dns/enabled", "/swarm/stackPrefix"]
        );
    }
}
