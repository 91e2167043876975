//! Semantic rules of one project: what the schema cannot say (names, references into the
//! compose file, combinations of fields that make no sense).

use ipnet::Ipv4Net;
use serde_json::{Map, Value};

use super::names::*;
use crate::model::{
    Engine, Ingress, ItsupConfig, ProjectFile, Protocol, Router, compose_service_names, row_hosts,
};
use crate::yaml::Document;

/// A problem at a JSON pointer of the project file (or `compose` = in the compose file).
pub struct Problem {
    pub pointer: String,
    pub key: bool,
    pub in_compose: bool,
    pub message: String,
}

fn at(pointer: String, message: String) -> Problem {
    Problem {
        pointer,
        key: false,
        in_compose: false,
        message,
    }
}

/// Checks a compose document's shape: a mapping whose `services` is a mapping of mappings.
pub fn compose_problems(doc: &Document) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(top) = doc.value.as_object() else {
        out.push(Problem {
            pointer: String::new(),
            key: false,
            in_compose: true,
            message: "a compose file must be a mapping with `services`".into(),
        });
        return out;
    };
    match top.get("services") {
        Some(Value::Object(services)) => {
            for (name, def) in services {
                if !def.is_object() {
                    out.push(Problem {
                        pointer: format!("/services/{}", crate::yaml::escape_pointer(name)),
                        key: true,
                        in_compose: true,
                        message: format!("service `{name}` must be a mapping"),
                    });
                }
            }
        }
        _ => out.push(Problem {
            pointer: "/services".into(),
            key: true,
            in_compose: true,
            message: "a compose file needs a `services` mapping".into(),
        }),
    }
    out
}

/// Every rule of one project that needs only the project itself and the platform settings.
pub fn project_problems(
    file: &ProjectFile,
    compose: Option<&Map<String, Value>>,
    config: &ItsupConfig,
    subnet: Option<Ipv4Net>,
    middleware_names: &[String],
) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(host) = &file.host
        && let Some(p) = host_problem(host)
    {
        out.push(at("/host".into(), format!("`host`: {p}")));
    }
    let services = compose_service_names(compose);
    for (i, target) in file.egress.iter().enumerate() {
        let ok = target
            .split_once(':')
            .is_some_and(|(p, s)| label_problem(p).is_none() && !s.is_empty());
        if !ok {
            out.push(at(
                format!("/egress/{i}"),
                format!("egress {target:?} must be `project:service`"),
            ));
        }
    }
    for service in file.rollout.keys() {
        if !services.contains(service) {
            out.push(Problem {
                pointer: format!("/rollout/{}", crate::yaml::escape_pointer(service)),
                key: true,
                in_compose: false,
                message: format!(
                    "rollout names service `{service}`, which the compose file does not define"
                ),
            });
        }
    }
    for (i, row) in file.ingress.iter().enumerate() {
        row_problems(
            &mut out,
            i,
            row,
            file,
            compose,
            &services,
            config,
            subnet,
            middleware_names,
        );
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn row_problems(
    out: &mut Vec<Problem>,
    i: usize,
    row: &Ingress,
    file: &ProjectFile,
    compose: Option<&Map<String, Value>>,
    services: &[String],
    config: &ItsupConfig,
    subnet: Option<Ipv4Net>,
    middleware_names: &[String],
) {
    let p = |key: &str| format!("/ingress/{i}/{key}");
    let row_ptr = format!("/ingress/{i}");
    match &row.service {
        Some(service) => match compose {
            None => out.push(at(
                p("service"),
                format!("`service` {service:?} needs a docker-compose.yml in the project (or drop it and set `host`)"),
            )),
            Some(_) if !services.contains(service) => out.push(at(
                p("service"),
                format!(
                    "service `{service}` is not defined in docker-compose.yml{}",
                    super::schema::suggest(service, services)
                ),
            )),
            Some(compose) => {
                let mode = compose
                    .get("services")
                    .and_then(|s| s.get(service))
                    .and_then(|d| d.get("network_mode"));
                if mode.is_some() {
                    out.push(at(
                        p("service"),
                        format!("service `{service}` uses `network_mode`, so it cannot join the proxy network"),
                    ));
                }
            }
        },
        None if file.host.is_none() => out.push(at(
            row_ptr.clone(),
            "ingress row has no `service` and the project has no `host` to route to".into(),
        )),
        None => {}
    }
    if let Some(domain) = &row.domain
        && let Some(problem) = domain_problem(domain)
    {
        out.push(at(p("domain"), format!("`domain`: {problem}")));
    }
    if let Some(tls) = &row.tls {
        if let Some(problem) = domain_problem(&tls.main) {
            out.push(at(p("tls/main"), format!("`tls.main`: {problem}")));
        }
        for (j, san) in tls.sans.iter().enumerate() {
            if let Some(problem) = domain_problem(san) {
                out.push(at(
                    p(&format!("tls/sans/{j}")),
                    format!("`tls.sans`: {problem}"),
                ));
            }
        }
    }
    if let Some(path) = &row.path_prefix {
        if row.router != Router::Http {
            out.push(at(
                p("path_prefix"),
                "`path_prefix` only applies to http rows (TLS SNI routing cannot see paths)".into(),
            ));
        } else if let Some(problem) = path_prefix_problem(path) {
            out.push(at(p("path_prefix"), problem));
        }
    }
    if row.strip_prefix && row.path_prefix.is_none() {
        out.push(at(
            p("strip_prefix"),
            "`strip_prefix` needs a `path_prefix`".into(),
        ));
    }
    if row.passthrough && row.router != Router::Tcp {
        out.push(at(
            p("passthrough"),
            "`passthrough` only applies to tcp rows (router: tcp)".into(),
        ));
    }
    if row.protocol == Protocol::Udp && row.router != Router::Udp {
        out.push(at(
            p("protocol"),
            "`protocol: udp` needs `router: udp`".into(),
        ));
    }
    let hosts = row_hosts(row);
    let proxy = &config.proxy;
    engine_problems(out, i, row, proxy.engine);
    match row.router {
        Router::Http => {
            if hosts.is_empty() {
                out.push(at(
                    row_ptr.clone(),
                    "http row needs a `domain` (or `tls.main`)".into(),
                ));
            }
            if row.hostport.is_some() {
                out.push(at(p("hostport"), "`hostport` only applies to tcp and udp rows; http rows share the web entrypoints".into()));
            }
        }
        Router::Tcp => {
            let port = row.hostport.unwrap_or(proxy.https_port);
            let sni = row.passthrough || row.tls.is_some();
            if port == proxy.http_port {
                out.push(at(
                    p("hostport"),
                    format!("hostport {port} is the proxy's HTTP port"),
                ));
            } else if sni && hosts.is_empty() {
                out.push(at(
                    row_ptr.clone(),
                    "tcp row routed by SNI needs a `domain` (or `tls.main`)".into(),
                ));
            } else if !sni && port == proxy.https_port {
                out.push(at(
                    row_ptr.clone(),
                    format!("tcp row without TLS would need HostSNI(*) on the shared TLS entrypoint :{port}; give it a dedicated `hostport` or set `passthrough: true`"),
                ));
            }
        }
        Router::Udp => {
            if row.hostport.is_none() {
                out.push(at(
                    row_ptr.clone(),
                    "udp row needs a `hostport` to listen on".into(),
                ));
            }
            if proxy.engine == Engine::Haproxy {
                out.push(at(
                    p("router"),
                    "HAProxy cannot route UDP; use engine traefik or remove this row".into(),
                ));
            }
        }
    }
    if let Some(addr) = &row.ipv4_address {
        match (addr.parse::<std::net::Ipv4Addr>(), subnet) {
            (Err(_), _) => out.push(at(p("ipv4_address"), format!("`ipv4_address` {addr:?} is not an IPv4 address"))),
            (Ok(ip), Some(net)) if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() => out.push(at(
                p("ipv4_address"),
                format!("`ipv4_address` {ip} is outside the proxy subnet {net} (proxy.subnet in itsup.yml)"),
            )),
            (Ok(ip), Some(net)) if net.hosts().next() == Some(ip) => out.push(at(
                p("ipv4_address"),
                format!("`ipv4_address` {ip} is the gateway of {net}"),
            )),
            _ => {}
        }
        if let (Ok(ip), Some(net)) = (addr.parse::<std::net::Ipv4Addr>(), subnet)
            && crate::model::dns_address(&config.dns, net) == Some(ip)
        {
            out.push(at(
                p("ipv4_address"),
                format!(
                    "`ipv4_address` {ip} is the DNS honeypot's address (dns.address in itsup.yml)"
                ),
            ));
        }
        if row.service.is_none() {
            out.push(at(
                p("ipv4_address"),
                "`ipv4_address` needs a `service` to pin".into(),
            ));
        }
    }
    for (j, entry) in row.allow_source_ips.iter().enumerate() {
        if let Some(problem) = source_range_problem(entry) {
            out.push(at(
                p(&format!("allow_source_ips/{j}")),
                format!("`allow_source_ips`: {problem}"),
            ));
        }
    }
    for (j, entry) in row.dns.iter().enumerate() {
        if entry.parse::<std::net::IpAddr>().is_err() {
            out.push(at(
                p(&format!("dns/{j}")),
                format!("`dns`: {entry:?} is not an IP address"),
            ));
        }
    }
    for (j, m) in row.middlewares.iter().enumerate() {
        if row.router != Router::Http {
            out.push(at(
                p(&format!("middlewares/{j}")),
                "`middlewares` only apply to http rows".into(),
            ));
        } else if !middleware_names.contains(m) {
            out.push(at(
                p(&format!("middlewares/{j}")),
                format!(
                    "middleware `{m}` is not defined in projects/middlewares.yml (http.middlewares){}",
                    super::schema::suggest(m, middleware_names)
                ),
            ));
        }
    }
}

/// Features an engine cannot honour are errors, never silently dropped: an allowlist that is
/// not applied would expose what the operator meant to protect.
fn engine_problems(out: &mut Vec<Problem>, i: usize, row: &Ingress, engine: Engine) {
    let p = |key: &str| format!("/ingress/{i}/{key}");
    // Engine itsup applies the middlewares of middlewares.yml it can honour (the others are
    // refused in that file) and source allowlists on http rows.
    if engine == Engine::Haproxy && !row.middlewares.is_empty() {
        out.push(at(
            p("middlewares"),
            format!(
                "`middlewares` are Traefik middlewares; engine {} cannot apply them",
                engine.as_str()
            ),
        ));
    }
}
