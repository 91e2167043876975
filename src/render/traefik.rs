//! Engine traefik: the static config, the file-provider dynamic files and the container labels.

use serde::Serialize;
use serde_json::{Value, json};

use super::merge::deep_merge;
use super::{Artifact, RenderError, Templates, to_yaml};
use crate::plan::{HttpRoute, Plan, TcpRoute, TcpTls};

/// An HTTP route as the Traefik templates see it.
#[derive(Debug, Serialize)]
pub struct HttpView {
    pub name: String,
    pub rule: String,
    pub entrypoint: &'static str,
    pub https: bool,
    /// Explicit rank (Traefik otherwise ranks by rule length: a host-only rule could outrank a
    /// host+path rule).
    pub priority: u32,
    /// Names this router requests from the ACME resolver (main first); empty when another
    /// router owns them (see [`crate::plan::certificate_owners`]).
    pub acme: Vec<String>,
    pub middlewares: Vec<String>,
    pub allowlist: Vec<String>,
    pub strip_prefix: Option<String>,
    pub urls: Vec<String>,
    pub port: u16,
    pub grpc: bool,
}

/// `Host(`a`) || Host(`b`)`, and `&& PathPrefix(`/p`)` when the route has a prefix.
pub fn http_rule(route: &HttpRoute) -> String {
    let hosts: Vec<String> = route.hosts.iter().map(|h| format!("Host(`{h}`)")).collect();
    let host_part = hosts.join(" || ");
    match &route.path_prefix {
        Some(prefix) if hosts.len() > 1 => format!("({host_part}) && PathPrefix(`{prefix}`)"),
        Some(prefix) => format!("{host_part} && PathPrefix(`{prefix}`)"),
        None => host_part,
    }
}

/// `HostSNI(`a`) || HostSNI(`b`)`, or the catch-all for plain TCP.
pub fn sni_rule(route: &TcpRoute) -> String {
    if route.sni.is_empty() || route.tls == TcpTls::None {
        return "HostSNI(`*`)".into();
    }
    let parts: Vec<String> = route
        .sni
        .iter()
        .map(|h| format!("HostSNI(`{h}`)"))
        .collect();
    parts.join(" || ")
}

/// The view of an HTTP route; `provider` is where its own middlewares are defined.
pub fn http_view(plan: &Plan, route: &HttpRoute, provider: &str) -> HttpView {
    let mut middlewares = Vec::new();
    if !route.allow_source_ips.is_empty() {
        middlewares.push(format!("{}-allowlist@{provider}", route.name));
    }
    if route.strip_prefix {
        middlewares.push(format!("{}-strip@{provider}", route.name));
    }
    middlewares.extend(route.middlewares.iter().map(|m| format!("{m}@file")));
    let scheme = if route.backend.grpc { "h2c" } else { "http" };
    HttpView {
        name: route.name.clone(),
        rule: http_rule(route),
        entrypoint: if route.https { "web-secure" } else { "web" },
        https: route.https,
        priority: route.priority(),
        acme: plan
            .certificates
            .get(&route.name)
            .cloned()
            .unwrap_or_default(),
        middlewares,
        allowlist: route.allow_source_ips.clone(),
        strip_prefix: route
            .strip_prefix
            .then(|| route.path_prefix.clone())
            .flatten(),
        urls: route
            .backend
            .servers
            .iter()
            .map(|s| format!("{scheme}://{}:{}", s.address, s.port))
            .collect(),
        port: route.backend.servers.first().map_or(0, |s| s.port),
        grpc: route.backend.grpc,
    }
}

/// Routes that live in files rather than container labels: those to external hosts.
fn file_routes(plan: &Plan) -> Vec<HttpView> {
    plan.http
        .iter()
        .filter(|r| !r.backend.dns)
        .map(|r| http_view(plan, r, "file"))
        .collect()
}

/// The proxy network's gateway (Docker's default: the subnet's first address): the host's
/// address as Traefik sees apply's requests to its API.
pub fn proxy_gateway(subnet: ipnet::Ipv4Net) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The router serving Traefik's API on the `ping` entrypoint (never published) to the host
/// only: apply reads a new instance's `/api/rawdata` there before the edge admits it.
pub const API_ROUTER: &str = "itsup-api";
/// The `ping` entrypoint's port inside the Traefik container.
pub const PING_PORT: u16 = 8082;

/// Traefik's alias on the proxy network: the name the edge resolves its instances by (a
/// project's service named `traefik` would share the bare service name).
pub const TRAEFIK_ALIAS: &str = "itsup-traefik";
/// Slots per edge backend: the running Traefik, the one replacing it, and a stopped one Docker
/// DNS may still return.
pub const EDGE_SLOTS: usize = 4;

/// `proxy/edge/edge.cfg` and `proxy/edge/hold.cfg`: the HAProxy in front of Traefik and the
/// idle one holding its network namespace (see `tpl/edge.cfg`).
pub fn render_edge(plan: &Plan, templates: &Templates) -> Result<Vec<Artifact>, RenderError> {
    let tcp: Vec<&crate::plan::Entrypoint> = plan.entrypoints.iter().filter(|e| !e.udp).collect();
    let cfg = templates.text(
        "edge.cfg",
        &json!({"entrypoints": tcp, "alias": TRAEFIK_ALIAS, "slots": EDGE_SLOTS}),
    )?;
    Ok(vec![
        Artifact::new("proxy/edge/edge.cfg", &cfg),
        Artifact::new(
            "proxy/edge/hold.cfg",
            &templates.text("haproxy-hold.cfg", &json!({}))?,
        ),
    ])
}

/// The edge backends (one per tcp entrypoint) a Traefik instance is admitted to and drained
/// from. Named apart from the frontends: `show stat <name>` would find the frontend.
pub fn edge_backends(plan: &Plan) -> Vec<String> {
    plan.entrypoints
        .iter()
        .filter(|e| !e.udp)
        .map(|e| format!("traefik-{}", e.name))
        .collect()
}

/// Where `acme.caBundle` is written: inside the folder mounted at `/etc/traefik`.
pub const ACME_CA_FILE: &str = "proxy/traefik/ca/acme-ca.pem";
/// The same file as Traefik sees it (`caCertificates` of the resolver).
const ACME_CA_MOUNTED: &str = "/etc/traefik/ca/acme-ca.pem";

/// Static config plus the four dynamic files (and the ACME CA bundle when there is one).
pub fn render(plan: &Plan, templates: &Templates) -> Result<Vec<Artifact>, RenderError> {
    let s = &plan.settings;
    let mut static_cfg = templates.yaml(
        "traefik.yml",
        &json!({
            "entrypoints": plan.entrypoints,
            "network": s.network,
            "subnet": s.subnet.to_string(),
            "acme": s.acme,
            "acme_ca_file": s.acme_ca_pem.as_ref().map(|_| ACME_CA_MOUNTED),
            "dashboard": s.dashboard_domain.is_some(),
            "crowdsec": s.crowdsec.enabled,
            "swarm": s.swarm.is_some(),
        }),
    )?;
    if let Some(overrides) = &plan.traefik_overrides {
        deep_merge(&mut static_cfg, overrides);
    }

    let routes = file_routes(plan);
    let http = templates.yaml(
        "routers-http.yml",
        &json!({
            "dashboard_domain": s.dashboard_domain,
            "dashboard_priority": crate::plan::BASE_PRIORITY,
            "api_priority": crate::plan::BASE_PRIORITY,
            "api_client": format!("{}/32", proxy_gateway(s.subnet)),
            "routes": routes,
        }),
    )?;
    let mut middlewares = templates.yaml(
        "middlewares.yml",
        &json!({"routes": routes, "https_port": s.https_port}),
    )?;
    if let Some(overrides) = &plan.middleware_overrides {
        deep_merge(&mut middlewares, overrides);
    }
    let tcp_views: Vec<Value> = plan
        .tcp
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "entrypoint": r.entrypoint,
                "rule": sni_rule(r),
                "priority": r.priority(),
                "tls": r.tls,
                "acme": plan.certificates.get(&r.name),
                "allowlist": r.allow_source_ips,
                "addresses": addresses(&r.backend),
                "proxy_protocol": r.proxy_protocol,
            })
        })
        .collect();
    let tcp = templates.yaml("routers-tcp.yml", &json!({"routes": tcp_views}))?;
    let udp_views: Vec<Value> = plan
        .udp
        .iter()
        .map(|r| json!({"name": r.name, "entrypoint": r.entrypoint, "addresses": addresses(&r.backend)}))
        .collect();
    let udp = templates.yaml("routers-udp.yml", &json!({"routes": udp_views}))?;

    let dynamic = "proxy/traefik/dynamic";
    let mut out = Vec::new();
    // The header line is harmless: PEM readers skip text before `-----BEGIN`.
    if let Some(pem) = &s.acme_ca_pem {
        out.push(Artifact::new(ACME_CA_FILE, pem));
    }
    out.extend([
        Artifact::new("proxy/traefik/traefik.yml", &to_yaml(&static_cfg)),
        Artifact::new(
            format!("{dynamic}/routers-http.yml"),
            &to_yaml(&prune_empty(http)),
        ),
        Artifact::new(
            format!("{dynamic}/routers-tcp.yml"),
            &to_yaml(&prune_empty(tcp)),
        ),
        Artifact::new(
            format!("{dynamic}/routers-udp.yml"),
            &to_yaml(&prune_empty(udp)),
        ),
        Artifact::new(
            format!("{dynamic}/middlewares.yml"),
            &to_yaml(&prune_empty(middlewares)),
        ),
    ]);
    Ok(out)
}

fn addresses(backend: &crate::plan::Backend) -> Vec<String> {
    backend
        .servers
        .iter()
        .map(|s| format!("{}:{}", s.address, s.port))
        .collect()
}

/// Drops nulls left by templates with nothing to list (Traefik rejects a `services:` with no
/// value; an empty file is valid), and maps left empty by that. A map written empty on purpose
/// stays: `tls: {}` is a router terminating TLS without requesting a certificate.
fn prune_empty(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| {
                    let was_empty = v.as_object().is_some_and(|m| m.is_empty());
                    let v = prune_empty(v);
                    let emptied = !was_empty && v.as_object().is_some_and(|m| m.is_empty());
                    (!(v.is_null() || emptied)).then_some((k, v))
                })
                .collect();
            Value::Object(kept)
        }
        other => other,
    }
}

/// Traefik labels for one container carrying `routes` (all routed to it), in template order.
/// The template writes `key=value` lines: labels are flat strings, so no YAML round trip.
pub fn labels(
    plan: &Plan,
    routes: &[&HttpRoute],
    templates: &Templates,
) -> Result<Vec<(String, String)>, RenderError> {
    // On Swarm the labels are read by Traefik's swarm provider (and sit under `deploy.labels`).
    let provider = if plan.settings.swarm.is_some() {
        "swarm"
    } else {
        "docker"
    };
    let views: Vec<HttpView> = routes
        .iter()
        .map(|r| http_view(plan, r, provider))
        .collect();
    let text = templates.text(
        "traefik-labels.txt",
        &json!({"network": plan.settings.network, "routes": views, "provider": provider}),
    )?;
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(RenderError::Template {
                name: "traefik-labels.txt".into(),
                message: format!("line {}: expected `key=value`, found {line:?}", n + 1),
            });
        };
        labels.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Backend, Server};

    fn route(hosts: &[&str], prefix: Option<&str>) -> HttpRoute {
        HttpRoute {
            name: "p-web-80".into(),
            project: "p".into(),
            service: Some("web".into()),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.map(str::to_string),
            strip_prefix: false,
            https: true,
            cert_names: hosts.iter().map(|h| h.to_string()).collect(),
            allow_source_ips: vec![],
            middlewares: vec![],
            backend: Backend {
                name: "p-web-80".into(),
                servers: vec![Server {
                    address: "p-web".into(),
                    port: 80,
                }],
                dns: true,
                grpc: false,
            },
        }
    }

    #[test]
    fn rules_never_mix_sni_and_paths() {
        assert_eq!(http_rule(&route(&["a.io"], None)), "Host(`a.io`)");
        assert_eq!(
            http_rule(&route(&["a.io", "b.io"], Some("/api"))),
            "(Host(`a.io`) || Host(`b.io`)) && PathPrefix(`/api`)"
        );
    }
}
