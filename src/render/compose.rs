//! Compose files: the proxy stack, and each project's compose file with what itsup adds
//! (proxy network with a project-scoped alias, egress networks, Traefik labels). Every key the
//! user wrote survives; `${VAR}` is left for Compose to interpolate.

use serde_json::{Map, Value, json};

use super::{Artifact, RenderError, Templates, to_yaml, traefik};
use crate::model::Engine;
use crate::plan::{HttpRoute, Plan, ProjectPlan};

/// Default images per component, used when itsup.yml names no version.
pub const DEFAULT_TRAEFIK: &str = "v3.6";
pub const DEFAULT_HAPROXY: &str = "2.6";
pub const DEFAULT_CROWDSEC: &str = "v1.7.8";
pub const SOCKET_PROXY_IMAGE: &str = "tecnativa/docker-socket-proxy:0.3.0";

/// Image of the itsup binary itself (agent, engine itsup).
pub fn itsup_image(plan: &Plan) -> String {
    plan.settings
        .itsup_image
        .clone()
        .unwrap_or_else(|| format!("itsup:{}", env!("CARGO_PKG_VERSION")))
}

/// Image of the edge in front of Traefik: HAProxy at `versions.haproxy`.
pub fn edge_image(plan: &Plan) -> String {
    format!(
        "haproxy:{}",
        plan.settings
            .versions
            .haproxy
            .as_deref()
            .unwrap_or(DEFAULT_HAPROXY)
    )
}

/// `proxy/docker-compose.yml`.
pub fn proxy_compose(plan: &Plan, templates: &Templates) -> Result<Artifact, RenderError> {
    let s = &plan.settings;
    let versions = &s.versions;
    let default_proxy = match s.engine {
        Engine::Traefik => format!(
            "traefik:{}",
            versions.traefik.as_deref().unwrap_or(DEFAULT_TRAEFIK)
        ),
        Engine::Haproxy => format!(
            "haproxy:{}",
            versions.haproxy.as_deref().unwrap_or(DEFAULT_HAPROXY)
        ),
        Engine::Itsup => itsup_image(plan),
    };
    let ports: Vec<String> = plan
        .entrypoints
        .iter()
        .map(|e| format!("{0}:{0}{1}", e.port, if e.udp { "/udp" } else { "" }))
        .collect();
    // Engine traefik: the edge publishes the tcp ports, Traefik itself only the udp ones.
    let (ports, udp_ports): (Vec<String>, Vec<String>) = if s.engine == Engine::Traefik {
        ports.into_iter().partition(|p| !p.ends_with("/udp"))
    } else {
        (ports, Vec::new())
    };
    let ctx = json!({
        "engine": s.engine.as_str(),
        "network": s.network,
        "ports": ports,
        "udp_ports": udp_ports,
        "traefik_alias": traefik::TRAEFIK_ALIAS,
        "crowdsec": s.crowdsec,
        "agent": plan.http.iter().any(|r| r.backend.grpc) || plan.tcp.iter().any(|r| r.backend.grpc),
        "dns": s.dns.as_ref().map(|d| json!({
            "image": d.image,
            "address": d.address.to_string(),
            "command": dnsmasq_command(&d.upstream),
        })),
        "images": {
            "proxy": s.image.clone().unwrap_or(default_proxy),
            "crowdsec": format!("crowdsecurity/crowdsec:{}", versions.crowdsec.as_deref().unwrap_or(DEFAULT_CROWDSEC)),
            "socket_proxy": SOCKET_PROXY_IMAGE,
            "edge": edge_image(plan),
            "itsup": itsup_image(plan),
        },
    });
    let value = templates.yaml("proxy-compose.yml", &ctx)?;
    Ok(Artifact::new("proxy/docker-compose.yml", &to_yaml(&value)))
}

/// dnsmasq's arguments for the honeypot: in the foreground, every query logged to stderr (so
/// `docker logs` has them), no local files consulted, each upstream asked in turn.
fn dnsmasq_command(upstream: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--keep-in-foreground",
        "--log-facility=-",
        "--log-queries",
        "--no-resolv",
        "--no-hosts",
        "--strict-order",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(upstream.iter().map(|u| format!("--server={u}")));
    args
}

/// `upstream/<project>/docker-compose.yml`, or `None` for a project without compose file.
pub fn upstream_compose(
    plan: &Plan,
    project: &ProjectPlan,
    templates: &Templates,
) -> Result<Option<Artifact>, RenderError> {
    let Some(original) = &project.compose else {
        return Ok(None);
    };
    let mut compose = original.clone();
    let network = plan.settings.network.clone();
    let mut networks_used: Vec<String> = Vec::new();
    let services = compose.get_mut("services").and_then(Value::as_object_mut);
    if let Some(services) = services {
        for sp in &project.services {
            let Some(Value::Object(svc)) = services.get_mut(&sp.name) else {
                continue;
            };
            let can_join = svc.get("network_mode").is_none();
            if let (Some(att), true) = (&sp.proxy, can_join) {
                let mut cfg = Map::new();
                cfg.insert("aliases".into(), json!([att.alias]));
                if let Some(ip) = att.ipv4_address {
                    cfg.insert("ipv4_address".into(), json!(ip.to_string()));
                }
                attach(svc, &network, cfg);
                push_unique(&mut networks_used, &network);
                if plan.settings.engine == Engine::Traefik {
                    let routes: Vec<&HttpRoute> = plan
                        .http
                        .iter()
                        .filter(|r| {
                            r.project == project.name
                                && r.service.as_deref() == Some(sp.name.as_str())
                        })
                        .collect();
                    if !routes.is_empty() {
                        let labels = traefik::labels(plan, &routes, templates)?;
                        if plan.settings.swarm.is_some() {
                            super::swarm::add_deploy_labels(svc, &labels);
                        } else {
                            add_labels(svc, &labels);
                        }
                    }
                }
            }
            if can_join {
                // The project-scoped alias on egress networks too: consumers address a provider
                // as `<project>-<service>` wherever they reach it.
                let alias = crate::plan::service_alias(&project.name, &sp.name);
                for net in &sp.egress_networks {
                    let mut cfg = Map::new();
                    cfg.insert("aliases".into(), json!([alias]));
                    attach(svc, net, cfg);
                    push_unique(&mut networks_used, net);
                }
            }
            // The honeypot is reachable only from the proxy network (Docker isolates bridge
            // networks from each other), so only services on it use it.
            let honeypot = plan
                .settings
                .dns
                .as_ref()
                .filter(|_| sp.proxy.is_some() && can_join)
                .map(|d| vec![d.address.to_string()]);
            let dns = if sp.dns.is_empty() {
                honeypot.unwrap_or_default()
            } else {
                sp.dns.clone()
            };
            if !dns.is_empty() && !svc.contains_key("dns") {
                svc.insert("dns".into(), json!(dns));
            }
        }
    }
    if !networks_used.is_empty() {
        let top = compose
            .entry("networks")
            .or_insert_with(|| Value::Object(Map::new()));
        if top.is_null() {
            *top = Value::Object(Map::new());
        }
        if let Some(top) = top.as_object_mut() {
            for net in &networks_used {
                let entry = top
                    .entry(net.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if entry.is_null() {
                    *entry = Value::Object(Map::new());
                }
                if let Some(entry) = entry.as_object_mut() {
                    entry.insert("external".into(), Value::Bool(true));
                    entry.insert("name".into(), Value::String(net.clone()));
                }
            }
        }
    }
    if plan.settings.swarm.is_some() {
        super::swarm::stack(plan, project, &mut compose);
    }
    let path = format!("upstream/{}/docker-compose.yml", project.name);
    let text = to_yaml(&Value::Object(compose));
    Ok(Some(Artifact::new(path, &text)))
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|i| i == item) {
        list.push(item.to_string());
    }
}

/// Joins `net` with `cfg`, turning list-form `networks` into map form and keeping every entry
/// (and every alias) the user wrote. A service that named no network was on `default`: keep it.
fn attach(svc: &mut Map<String, Value>, net: &str, cfg: Map<String, Value>) {
    let networks = svc.entry("networks").or_insert(Value::Null);
    let mut map = match std::mem::take(networks) {
        Value::Object(m) => m,
        Value::Array(list) => list
            .into_iter()
            .filter_map(|v| {
                v.as_str()
                    .map(|s| (s.to_string(), Value::Object(Map::new())))
            })
            .collect(),
        _ => {
            let mut m = Map::new();
            m.insert("default".into(), Value::Object(Map::new()));
            m
        }
    };
    let entry = map
        .entry(net.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    if let Some(existing) = entry.as_object_mut() {
        for (k, v) in cfg {
            match (k.as_str(), existing.get_mut(&k)) {
                ("aliases", Some(Value::Array(aliases))) => {
                    for alias in v.as_array().into_iter().flatten() {
                        if !aliases.contains(alias) {
                            aliases.push(alias.clone());
                        }
                    }
                }
                (_, Some(_)) => {}
                (_, None) => {
                    existing.insert(k, v);
                }
            }
        }
    }
    *networks = Value::Object(map);
}

/// Adds generated labels; on a key the user also set, the generated value wins because routing
/// depends on it. List-form labels stay a list.
fn add_labels(svc: &mut Map<String, Value>, generated: &[(String, String)]) {
    let ours = |key: &str| generated.iter().any(|(k, _)| k == key);
    let entry = svc.entry("labels").or_insert(Value::Null);
    match entry {
        Value::Array(list) => {
            list.retain(|item| {
                let key = item
                    .as_str()
                    .and_then(|s| s.split('=').next())
                    .unwrap_or("");
                !ours(key)
            });
            for (k, v) in generated {
                list.push(Value::String(format!("{k}={v}")));
            }
        }
        Value::Object(map) => {
            for (k, v) in generated {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
        other => {
            *other = Value::Object(
                generated
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            );
        }
    }
}
