//! Engine haproxy: one `haproxy.cfg` from the Plan (also used by `itsup watch`).
//!
//! HTTP is routed by Host + path prefix with ACLs; :443 peeks at the TLS SNI to pass through
//! `passthrough` routes and hands the rest to an internal TLS-terminating frontend over an
//! abstract socket. Container backends are `server-template`s on Docker DNS, so every replica
//! and every container a rollout starts beside the old one shows up as a slot.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::json;

use super::{Artifact, RenderError, Templates};
use crate::plan::{Backend, HttpRoute, Plan, TcpTls};

/// Slots per `server-template`: replicas plus the containers of a rollout in flight.
pub const TEMPLATE_SLOTS: usize = 8;
/// Port `itsup agent` listens on, in HAProxy's network namespace.
pub const AGENT_PORT: u16 = 5555;
/// HAProxy reads at most 64 words per line; host lists are split into lines of this many.
const WORDS_PER_LINE: usize = 24;

#[derive(Serialize)]
struct RouteView {
    backend: String,
    rules: String,
    condition: String,
}

#[derive(Serialize)]
struct SniView {
    id: String,
    backend: String,
    sni_chunks: Vec<Vec<String>>,
    allow: Vec<String>,
}

#[derive(Serialize)]
struct TcpFrontendView {
    name: String,
    port: u16,
    terminate: bool,
    allow: Vec<String>,
    backend: String,
}

#[derive(Serialize)]
struct TerminationView {
    relay: String,
    backend: String,
}

#[derive(Serialize)]
struct BackendView<'a> {
    name: &'a str,
    mode: &'static str,
    dns: bool,
    servers: &'a [crate::plan::Server],
    strip: Option<String>,
    server_opts: String,
}

fn chunks(items: &[String]) -> Vec<Vec<String>> {
    items
        .chunks(WORDS_PER_LINE)
        .map(<[String]>::to_vec)
        .collect()
}

/// ACL lines and the `use_backend` condition of one HTTP route.
fn route_view(id: usize, route: &HttpRoute) -> RouteView {
    let mut lines = Vec::new();
    for chunk in chunks(&route.hosts) {
        lines.push(format!(
            "    acl host_r{id} req.hdr(host),field(1,:),lower -m str {}",
            chunk.join(" ")
        ));
    }
    let mut condition = format!("host_r{id}");
    if let Some(prefix) = &route.path_prefix {
        lines.push(format!("    acl path_r{id} path_beg {prefix}"));
        condition.push_str(&format!(" path_r{id}"));
    }
    if !route.allow_source_ips.is_empty() {
        lines.push(format!(
            "    acl allow_r{id} src {}",
            route.allow_source_ips.join(" ")
        ));
        lines.push(format!(
            "    http-request deny deny_status 403 if {condition} !allow_r{id}"
        ));
    }
    RouteView {
        backend: route.backend.name.clone(),
        rules: lines.join("\n"),
        condition,
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if ".+*?()|[]{}^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Static servers named by host name resolve through Docker's DNS at run time: with plain libc
/// resolution HAProxy refuses to start while a name does not resolve.
fn needs_resolver(backend: &Backend) -> bool {
    !backend.dns
        && backend
            .servers
            .iter()
            .any(|s| s.address.parse::<std::net::IpAddr>().is_err())
}

fn server_opts(backend: &Backend, proxy_protocol: Option<u8>, http: bool, swarm: bool) -> String {
    let mut opts = String::new();
    if needs_resolver(backend) {
        opts.push_str(" resolvers docker init-addr last,libc,none resolve-prefer ipv4");
    }
    match proxy_protocol {
        Some(1) => opts.push_str(" send-proxy"),
        Some(_) => opts.push_str(" send-proxy-v2"),
        None => {}
    }
    if backend.grpc && http {
        opts.push_str(" proto h2");
    }
    // On Swarm no `itsup agent` shares HAProxy's namespace (docs/swarm.md): gRPC backends get
    // HAProxy's own checks.
    if backend.grpc && !swarm {
        let server = backend.servers.first();
        let (addr, port) = server.map_or(("", 0), |s| (s.address.as_str(), s.port));
        opts.push_str(&format!(
            " agent-check agent-addr 127.0.0.1 agent-port {AGENT_PORT} agent-inter 2s agent-send \"{addr} {port} no-ssl {addr}:{port}\\n\""
        ));
    }
    opts
}

/// The full `haproxy.cfg` text for a Plan.
pub fn render_config(plan: &Plan, templates: &Templates) -> Result<String, RenderError> {
    let s = &plan.settings;
    let swarm = s.swarm.is_some();
    // A route without servers has no backend section; routing to it would not even load.
    let http: Vec<&HttpRoute> = plan
        .http
        .iter()
        .filter(|r| !r.backend.servers.is_empty())
        .collect();
    let tcp: Vec<&crate::plan::TcpRoute> = plan
        .tcp
        .iter()
        .filter(|r| !r.backend.servers.is_empty())
        .collect();
    let mut https_hosts: BTreeSet<String> = BTreeSet::new();
    let mut plain_routes = Vec::new();
    let mut https_routes = Vec::new();
    for (i, r) in http.iter().enumerate() {
        if r.https {
            https_hosts.extend(r.hosts.iter().cloned());
            https_routes.push(route_view(i, r));
        } else {
            plain_routes.push(route_view(i, r));
        }
    }
    let https_hosts: Vec<String> = https_hosts.into_iter().collect();

    let mut sni_routes = Vec::new();
    let mut terminations = Vec::new();
    let mut tcp_frontends = Vec::new();
    for (i, r) in tcp.iter().enumerate() {
        if r.port == s.https_port {
            let backend = if r.tls == TcpTls::Terminate {
                let relay = format!("tls-{}", r.name);
                terminations.push(TerminationView {
                    relay: relay.clone(),
                    backend: r.backend.name.clone(),
                });
                relay
            } else {
                r.backend.name.clone()
            };
            sni_routes.push(SniView {
                id: format!("t{i}"),
                backend,
                sni_chunks: chunks(&r.sni),
                allow: r.allow_source_ips.clone(),
            });
        } else {
            tcp_frontends.push(TcpFrontendView {
                name: r.entrypoint.clone(),
                port: r.port,
                terminate: r.tls == TcpTls::Terminate,
                allow: r.allow_source_ips.clone(),
                backend: r.backend.name.clone(),
            });
        }
    }

    let mut backends: Vec<BackendView> = Vec::new();
    for r in &http {
        let strip = r
            .path_prefix
            .as_deref()
            .filter(|_| r.strip_prefix)
            .map(|p| format!("^{}/?(.*)$", regex_escape(p.trim_end_matches('/'))));
        backends.push(BackendView {
            name: &r.backend.name,
            mode: "http",
            dns: r.backend.dns,
            servers: &r.backend.servers,
            strip,
            server_opts: server_opts(&r.backend, None, true, swarm),
        });
    }
    for r in &tcp {
        backends.push(BackendView {
            name: &r.backend.name,
            mode: "tcp",
            dns: r.backend.dns,
            servers: &r.backend.servers,
            strip: None,
            server_opts: server_opts(&r.backend, r.proxy_protocol, false, swarm),
        });
    }
    let dns = http
        .iter()
        .map(|r| &r.backend)
        .chain(tcp.iter().map(|r| &r.backend))
        .any(|b| b.dns || needs_resolver(b));
    let ctx = json!({
        "http_port": s.http_port,
        "https_port": s.https_port,
        "stats_port": s.stats_port,
        "dns": dns,
        "swarm": swarm,
        "slots": TEMPLATE_SLOTS,
        "https_host_chunks": chunks(&https_hosts),
        "plain_routes": plain_routes,
        "https_routes": https_routes,
        "secure": !https_routes.is_empty() || !sni_routes.is_empty(),
        "sni_routes": sni_routes,
        "terminations": terminations,
        "tcp_frontends": tcp_frontends,
        "backends": backends,
    });
    templates.text("haproxy.cfg", &ctx)
}

/// `proxy/haproxy/haproxy.cfg`.
/// `proxy/haproxy/hold.cfg`: the idle HAProxy that holds the stack's network namespace.
pub fn render_hold(templates: &Templates) -> Result<Artifact, RenderError> {
    Ok(Artifact::new(
        "proxy/haproxy/hold.cfg",
        &templates.text("haproxy-hold.cfg", &json!({}))?,
    ))
}

pub fn render(plan: &Plan, templates: &Templates) -> Result<Artifact, RenderError> {
    Ok(Artifact::new(
        "proxy/haproxy/haproxy.cfg",
        &render_config(plan, templates)?,
    ))
}
