//! Rules across projects: two claims on one host+path, SNI name, hostport or pinned address;
//! egress to unknown targets and egress cycles. Projects are visited by name and the first
//! claim wins, so which project is reported is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::ValidProject;
use crate::model::{ACME_CHALLENGE_PREFIX, ItsupConfig, Router, resolve_egress, row_hosts};

/// A cross-project problem: the project to mark broken, the pointer in its file, the message.
pub struct Conflict {
    pub project: String,
    pub pointer: String,
    pub message: String,
}

/// Every cross-project problem among `projects` (already sorted by name).
/// `all_names` holds every project folder, broken ones included: egress to a project that exists
/// but is broken is reported on that project, not on its consumers.
pub fn conflicts(
    projects: &[ValidProject],
    all_names: &BTreeSet<String>,
    config: &ItsupConfig,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    let mut http_claims: HashMap<(String, String, bool), String> = HashMap::new();
    // (port, name) → (owner, claimed by an https route): several https routes may share a host
    // (different paths), but a tcp SNI route shares it with nobody.
    let mut sni_claims: HashMap<(u16, String), (String, bool)> = HashMap::new();
    let mut port_claims: HashMap<(u16, bool), String> = HashMap::new();
    let mut ip_claims: HashMap<String, (String, String)> = HashMap::new();
    if let Some(dashboard) = &config.traefik_domain {
        http_claims.insert(
            (dashboard.to_ascii_lowercase(), String::new(), true),
            "the dashboard (traefikDomain in itsup.yml)".into(),
        );
    }
    let https = config.proxy.https_port;
    for project in projects.iter().filter(|p| p.file.enabled) {
        for (i, row) in project.file.ingress.iter().enumerate() {
            let owner = format!("project `{}` (ingress row {})", project.name, i + 1);
            let mut claim = |key_ptr: &str, message: String| {
                out.push(Conflict {
                    project: project.name.clone(),
                    pointer: format!("/ingress/{i}{key_ptr}"),
                    message,
                });
            };
            match row.router {
                Router::Http => {
                    let path = row.path_prefix.clone().unwrap_or_default();
                    let secure = !path.starts_with(ACME_CHALLENGE_PREFIX);
                    for host in row_hosts(row) {
                        let key = (host.clone(), path.clone(), secure);
                        if let Some(first) = http_claims.get(&key) {
                            let shown = if path.is_empty() {
                                host.clone()
                            } else {
                                format!("{host}{path}")
                            };
                            claim("/domain", format!("{shown} is already routed by {first}"));
                        } else {
                            http_claims.insert(key, owner.clone());
                        }
                        if secure {
                            match sni_claims.get(&(https, host.clone())) {
                                Some((first, false)) => claim(
                                    "/domain",
                                    format!(
                                        "{host} on port {https} is already routed by SNI by {first}"
                                    ),
                                ),
                                Some((_, true)) => {}
                                None => {
                                    sni_claims.insert((https, host), (owner.clone(), true));
                                }
                            }
                        }
                    }
                }
                Router::Tcp => {
                    let port = row.hostport.unwrap_or(https);
                    let sni = row.passthrough || row.tls.is_some();
                    if port != https {
                        if let Some(first) = port_claims.get(&(port, false)) {
                            claim(
                                "/hostport",
                                format!("hostport {port}/tcp is already claimed by {first}"),
                            );
                        } else {
                            port_claims.insert((port, false), owner.clone());
                        }
                    }
                    if sni {
                        for host in row_hosts(row) {
                            match sni_claims.get(&(port, host.clone())) {
                                Some((first, _)) => claim(
                                    "/domain",
                                    format!("{host} on port {port} is already routed by {first}"),
                                ),
                                None => {
                                    sni_claims.insert((port, host), (owner.clone(), false));
                                }
                            }
                        }
                    }
                }
                Router::Udp => {
                    if let Some(port) = row.hostport {
                        if let Some(first) = port_claims.get(&(port, true)) {
                            claim(
                                "/hostport",
                                format!("hostport {port}/udp is already claimed by {first}"),
                            );
                        } else {
                            port_claims.insert((port, true), owner.clone());
                        }
                    }
                }
            }
            if let Some(ip) = &row.ipv4_address {
                let who = (
                    project.name.clone(),
                    row.service.clone().unwrap_or_default(),
                );
                match ip_claims.get(ip) {
                    Some(first) if *first != who => claim(
                        "/ipv4_address",
                        format!(
                            "ipv4_address {ip} is already pinned to service `{}` of project `{}`",
                            first.1, first.0
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        ip_claims.insert(ip.clone(), who);
                    }
                }
            }
        }
    }
    egress_conflicts(projects, all_names, &mut out);
    out
}

fn egress_conflicts(
    projects: &[ValidProject],
    all_names: &BTreeSet<String>,
    out: &mut Vec<Conflict>,
) {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for project in projects {
        for (i, target) in project.file.egress.iter().enumerate() {
            let Some((provider, service)) = target.split_once(':') else {
                continue;
            };
            let report = |message: String| Conflict {
                project: project.name.clone(),
                pointer: format!("/egress/{i}"),
                message,
            };
            if provider == project.name {
                out.push(report(format!(
                    "egress {target:?} points at the project itself"
                )));
            } else if !projects.iter().any(|p| p.name == provider) {
                if !all_names.contains(provider) {
                    out.push(report(format!(
                        "egress {target:?}: there is no project `{provider}`"
                    )));
                }
            } else if resolve_egress(super::compose_files(projects), target).is_none() {
                out.push(report(format!(
                    "egress {target:?}: project `{provider}` has no service `{service}` (nor `{provider}-{service}`)"
                )));
            } else {
                graph.entry(project.name.as_str()).or_default().insert(
                    projects
                        .iter()
                        .find(|p| p.name == provider)
                        .map_or(provider, |p| p.name.as_str()),
                );
            }
        }
    }
    for cycle in cycles(&graph) {
        let first = cycle[0];
        let Some(project) = projects.iter().find(|p| p.name == first) else {
            continue;
        };
        let index = project
            .file
            .egress
            .iter()
            .position(|t| {
                t.split_once(':')
                    .is_some_and(|(p, _)| p == cycle[1 % cycle.len()])
            })
            .unwrap_or(0);
        let mut path: Vec<&str> = cycle.clone();
        path.push(first);
        out.push(Conflict {
            project: first.to_string(),
            pointer: format!("/egress/{index}"),
            message: format!(
                "egress cycle: {} (providers must deploy before consumers)",
                path.join(" → ")
            ),
        });
    }
}

/// Cycles in the egress graph, each reported once: peel off every project that is not on or
/// behind a cycle (Kahn), walk from the smallest remaining name until a name repeats, report that
/// loop, drop its first member and repeat. Linear per cycle, so large trees stay fast.
fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    let mut alive: BTreeSet<&'a str> = graph
        .iter()
        .flat_map(|(k, v)| std::iter::once(*k).chain(v.iter().copied()))
        .collect();
    let mut found = Vec::new();
    loop {
        // Repeatedly remove nodes with no outgoing edge to a live node: they cannot be on a cycle.
        loop {
            let sinks: Vec<&str> = alive
                .iter()
                .copied()
                .filter(|n| {
                    !graph
                        .get(n)
                        .is_some_and(|out| out.iter().any(|m| alive.contains(m)))
                })
                .collect();
            if sinks.is_empty() {
                break;
            }
            for n in sinks {
                alive.remove(n);
            }
        }
        let Some(&start) = alive.iter().next() else {
            return found;
        };
        let mut path: Vec<&'a str> = vec![start];
        let mut node = start;
        let cycle = loop {
            let Some(next) = graph
                .get(node)
                .and_then(|out| out.iter().copied().find(|m| alive.contains(m)))
            else {
                break None;
            };
            if let Some(pos) = path.iter().position(|p| *p == next) {
                break Some(path[pos..].to_vec());
            }
            path.push(next);
            node = next;
        };
        match cycle {
            Some(mut c) => {
                let min = c
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map_or(0, |(i, _)| i);
                c.rotate_left(min);
                alive.remove(c[0]);
                found.push(c);
            }
            None => {
                alive.remove(start);
            }
        }
    }
}
