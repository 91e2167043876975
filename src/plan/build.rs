//! Builds the Plan from validated input. Infallible: everything that could fail was checked by
//! `validate`, so this is pure data shaping with deterministic ordering.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::Value;

use super::names::{UniqueNames, entrypoint_name, service_alias};
use super::*;
use crate::model::{
    ACME_CHALLENGE_PREFIX, Ingress, ProjectFile, Router, compose_service_names, resolve_egress,
    row_hosts,
};
use crate::validate::{ValidProject, Validated, compose_files};

/// Builds the Plan.
pub fn build(v: &Validated) -> Plan {
    let config = &v.config;
    let settings = Settings {
        engine: config.proxy.engine,
        image: config.proxy.image.clone(),
        itsup_image: config.proxy.itsup_image.clone(),
        http_port: config.proxy.http_port,
        https_port: config.proxy.https_port,
        stats_port: Some(config.proxy.stats_port),
        network: config.proxy.network.clone(),
        subnet: config
            .proxy
            .subnet
            .parse()
            .unwrap_or_else(|_| Settings::default().subnet),
        dashboard_domain: config.traefik_domain.clone(),
        acme: config.acme.clone(),
        acme_ca_pem: v.acme_ca_pem.clone(),
        crowdsec: config.crowdsec.clone(),
        versions: config.versions.clone(),
        dns: None,
        swarm: (config.orchestrator == crate::model::Orchestrator::Swarm).then(|| SwarmPlan {
            ingress_label: config.swarm.ingress_label.clone(),
            stack_prefix: config.swarm.stack_prefix.clone(),
        }),
    };
    let settings = Settings {
        dns: dns_honeypot(config, settings.subnet),
        ..settings
    };

    let mut names = UniqueNames::default();
    let mut http = Vec::new();
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let egress = egress_networks(&v.projects);
    let mut projects = Vec::new();

    for project in &v.projects {
        let enabled = project.file.enabled;
        if enabled {
            for row in &project.file.ingress {
                add_route(
                    project, row, &settings, &mut names, &mut http, &mut tcp, &mut udp,
                );
            }
        }
        projects.push(project_plan(project, enabled, &egress));
    }

    http.sort_by(|a: &HttpRoute, b: &HttpRoute| {
        b.priority()
            .cmp(&a.priority())
            .then_with(|| a.name.cmp(&b.name))
    });
    tcp.sort_by(|a: &TcpRoute, b: &TcpRoute| {
        (a.port, a.sni.is_empty(), &a.name).cmp(&(b.port, b.sni.is_empty(), &b.name))
    });
    udp.sort_by(|a: &UdpRoute, b: &UdpRoute| (a.port, &a.name).cmp(&(b.port, &b.name)));

    let entrypoints = entrypoints(&settings, &tcp, &udp);
    let certificates = certificate_owners(settings.dashboard_domain.as_deref(), &http, &tcp);
    Plan {
        settings,
        projects,
        http,
        tcp,
        udp,
        entrypoints,
        traefik_overrides: v.traefik_overrides.clone(),
        middleware_overrides: v.middleware_overrides.clone(),
        certificates,
    }
}

fn backend(project: &ValidProject, row: &Ingress, name: &str, settings: &Settings) -> Backend {
    let (address, dns) = match (&row.service, &project.file.host) {
        // On Swarm, every task's own address: no IPVS for service VIPs here (docs/swarm.md).
        (Some(service), _) => match &settings.swarm {
            Some(swarm) => (swarm.tasks_name(&project.name, service), true),
            None => (service_alias(&project.name, service), true),
        },
        (None, Some(host)) => (host.clone(), false),
        // validate rejects rows with neither; keep the Plan total anyway.
        (None, None) => (project.name.clone(), true),
    };
    Backend {
        name: name.to_string(),
        servers: vec![Server {
            address,
            port: row.port,
        }],
        dns,
        grpc: row.grpc,
    }
}

fn add_route(
    project: &ValidProject,
    row: &Ingress,
    settings: &Settings,
    names: &mut UniqueNames,
    http: &mut Vec<HttpRoute>,
    tcp: &mut Vec<TcpRoute>,
    udp: &mut Vec<UdpRoute>,
) {
    let target = row.service.as_deref().unwrap_or("host");
    let base = match row.router {
        Router::Http => format!("{}-{target}-{}", project.name, row.port),
        Router::Tcp => format!("{}-{target}-tcp-{}", project.name, row.port),
        Router::Udp => format!("{}-{target}-udp-{}", project.name, row.port),
    };
    let name = names.claim(&base);
    let hosts = row_hosts(row);
    let backend = backend(project, row, &name, settings);
    match row.router {
        Router::Http => {
            let https = !row
                .path_prefix
                .as_deref()
                .is_some_and(|p| p.starts_with(ACME_CHALLENGE_PREFIX));
            http.push(HttpRoute {
                name,
                project: project.name.clone(),
                service: row.service.clone(),
                cert_names: if https { hosts.clone() } else { Vec::new() },
                hosts,
                path_prefix: row.path_prefix.clone(),
                strip_prefix: row.strip_prefix,
                https,
                allow_source_ips: row.allow_source_ips.clone(),
                middlewares: row.middlewares.clone(),
                backend,
            });
        }
        Router::Tcp => {
            let port = row.hostport.unwrap_or(settings.https_port);
            let tls = if row.passthrough {
                TcpTls::Passthrough
            } else if row.tls.is_some() {
                TcpTls::Terminate
            } else {
                TcpTls::None
            };
            tcp.push(TcpRoute {
                name,
                project: project.name.clone(),
                service: row.service.clone(),
                entrypoint: entrypoint_name(port, false, settings.https_port),
                port,
                sni: if tls == TcpTls::None {
                    Vec::new()
                } else {
                    hosts
                },
                tls,
                proxy_protocol: row.proxyprotocol.map(|p| p.version()),
                allow_source_ips: row.allow_source_ips.clone(),
                backend,
            });
        }
        Router::Udp => {
            let port = row.hostport.unwrap_or(row.port);
            udp.push(UdpRoute {
                name,
                project: project.name.clone(),
                service: row.service.clone(),
                entrypoint: entrypoint_name(port, true, settings.https_port),
                port,
                allow_source_ips: row.allow_source_ips.clone(),
                backend,
            });
        }
    }
}

fn entrypoints(settings: &Settings, tcp: &[TcpRoute], udp: &[UdpRoute]) -> Vec<Entrypoint> {
    let mut extra: BTreeMap<(u16, bool), String> = BTreeMap::new();
    for r in tcp.iter().filter(|r| r.port != settings.https_port) {
        extra.insert((r.port, false), r.entrypoint.clone());
    }
    for r in udp {
        extra.insert((r.port, true), r.entrypoint.clone());
    }
    let mut all = vec![
        Entrypoint {
            name: "web".into(),
            port: settings.http_port,
            udp: false,
        },
        Entrypoint {
            name: "web-secure".into(),
            port: settings.https_port,
            udp: false,
        },
    ];
    all.extend(
        extra
            .into_iter()
            .map(|((port, udp), name)| Entrypoint { name, port, udp }),
    );
    all
}

/// Egress networks per (project, service): one network per consumer/provider pair, so a
/// consumer sees only what it declared and consumers never see each other.
fn egress_networks(projects: &[ValidProject]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut joins: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for consumer in projects.iter().filter(|p| p.file.enabled) {
        for target in &consumer.file.egress {
            let Some((provider, service)) = resolve_egress(compose_files(projects), target) else {
                continue;
            };
            let network = egress_network_name(&consumer.name, provider, &service);
            joins
                .entry((provider.to_string(), service))
                .or_default()
                .insert(network.clone());
            for own in compose_service_names(consumer.compose.as_ref()) {
                joins
                    .entry((consumer.name.clone(), own))
                    .or_default()
                    .insert(network.clone());
            }
        }
    }
    joins
}

/// Network shared by one consumer project and one provider service.
pub fn egress_network_name(consumer: &str, provider: &str, service: &str) -> String {
    format!("egress-{consumer}-to-{provider}-{service}")
}

fn project_plan(
    project: &ValidProject,
    enabled: bool,
    egress: &BTreeMap<(String, String), BTreeSet<String>>,
) -> ProjectPlan {
    let file: &ProjectFile = &project.file;
    let services_json = project
        .compose
        .as_ref()
        .and_then(|c| c.get("services"))
        .and_then(Value::as_object);
    let mut services = Vec::new();
    for name in compose_service_names(project.compose.as_ref()) {
        let rows: Vec<&Ingress> = file
            .ingress
            .iter()
            .filter(|r| r.service.as_deref() == Some(name.as_str()))
            .collect();
        let routed = enabled && !rows.is_empty();
        let ipv4_address: Option<Ipv4Addr> = rows
            .iter()
            .find_map(|r| r.ipv4_address.as_deref().and_then(|a| a.parse().ok()));
        let proxy = routed.then(|| ProxyAttachment {
            alias: service_alias(&project.name, &name),
            ipv4_address,
        });
        let mut dns: Vec<String> = Vec::new();
        for d in rows.iter().flat_map(|r| r.dns.iter()) {
            if !dns.contains(d) {
                dns.push(d.clone());
            }
        }
        let definition = services_json.and_then(|s| s.get(&name));
        let rollout = rollout_plan(file, &name, definition, ipv4_address.is_some());
        services.push(ServicePlan {
            egress_networks: egress
                .get(&(project.name.clone(), name.clone()))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            name,
            proxy,
            dns,
            rollout,
        });
    }
    let mut depends_on: Vec<String> = file
        .egress
        .iter()
        .filter_map(|t| t.split_once(':').map(|(p, _)| p.to_string()))
        .filter(|p| *p != project.name)
        .collect();
    depends_on.sort();
    depends_on.dedup();
    ProjectPlan {
        name: project.name.clone(),
        enabled,
        compose: project.compose.clone(),
        services,
        depends_on,
    }
}

/// Docker's embedded DNS, as every container on a user-defined network sees it.
pub const DOCKER_DNS: &str = "127.0.0.11";
/// Image of the DNS honeypot when neither `dns.image` nor `versions.dnsmasq` says otherwise.
pub const DNSMASQ_REPOSITORY: &str = "4km3/dnsmasq";
pub const DEFAULT_DNSMASQ: &str = "2.86-r0";

/// The honeypot of `dns:` when enabled, its defaults filled in (address: see
/// `model::dns_address`; upstream: Docker's DNS).
pub fn dns_honeypot(
    config: &crate::model::ItsupConfig,
    subnet: ipnet::Ipv4Net,
) -> Option<DnsHoneypot> {
    let dns = &config.dns;
    let address = crate::model::dns_address(dns, subnet)?;
    let upstream = if dns.upstream.is_empty() {
        vec![DOCKER_DNS.to_string()]
    } else {
        dns.upstream.clone()
    };
    let image = dns.image.clone().unwrap_or_else(|| {
        format!(
            "{DNSMASQ_REPOSITORY}:{}",
            config
                .versions
                .dnsmasq
                .as_deref()
                .unwrap_or(DEFAULT_DNSMASQ)
        )
    });
    Some(DnsHoneypot {
        address,
        upstream,
        image,
    })
}

/// Start-first unless the service cannot run twice side by side; the reason is shown in plans.
fn rollout_plan(
    file: &ProjectFile,
    service: &str,
    definition: Option<&Value>,
    pinned_ip: bool,
) -> RolloutPlan {
    if let Some(strategy) = file.rollout.get(service) {
        return RolloutPlan {
            strategy: *strategy,
            reason: "set in the project file".into(),
        };
    }
    let has = |key: &str| {
        definition
            .and_then(|d| d.get(key))
            .is_some_and(|v| !v.is_null() && v != &Value::Array(Vec::new()))
    };
    let reason = if has("ports") {
        Some("publishes host ports")
    } else if has("container_name") {
        Some("has a fixed container_name")
    } else if has("volumes") {
        Some("mounts volumes that two copies would share")
    } else if pinned_ip {
        Some("has a pinned ipv4_address")
    } else {
        None
    };
    match reason {
        Some(reason) => RolloutPlan {
            strategy: crate::model::Rollout::StopFirst,
            reason: reason.into(),
        },
        None => RolloutPlan {
            strategy: crate::model::Rollout::StartFirst,
            reason: "can run twice side by side".into(),
        },
    }
}
