//! Turns the running containers into the engine-neutral Plan that `itsup render` also renders,
//! plus a report of what was left out and why.
//!
//! One route per (mode, host, path); replicas of one compose service are the servers of its
//! backend. When two services claim the same route, the older claim (its oldest container)
//! wins, so a worktree started later can never steal a running stack's hostname.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::Engine;
use crate::plan::{
    Backend, Entrypoint, HttpRoute, Plan, Server, Settings, TcpRoute, TcpTls, entrypoint_name,
};

use super::container::Container;
use super::labels::{self, Mode, Severity};

/// Knobs of the mapping.
#[derive(Debug, Clone)]
pub struct Options {
    /// Appended to `<service>.<project>` (e.g. `.localhost`).
    pub suffix: String,
    pub http_port: u16,
    pub https_port: u16,
    pub network: String,
}

/// The effective routes and the findings behind them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Routing {
    pub routes: Vec<RouteView>,
    pub problems: Vec<ContainerIssue>,
}

/// One effective route, as printed and served on the status port.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RouteView {
    pub mode: Mode,
    pub host: String,
    pub path: Option<String>,
    pub project: String,
    pub service: String,
    /// `ip:port` of the containers in rotation.
    pub servers: Vec<String>,
    /// Containers of the service left out of rotation (health), by name.
    pub out_of_rotation: Vec<String>,
}

/// Something about one container that the user should fix or know.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ContainerIssue {
    pub container: String,
    pub severity: Severity,
    pub message: String,
}

/// The key of a route: two claims with equal keys conflict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteKey {
    mode: Mode,
    host: String,
    path: Option<String>,
}

/// One compose service's claim on a route.
#[derive(Debug, Default)]
struct Claimant {
    /// Creation key of its oldest container: the age of the claim.
    since: String,
    servers: Vec<(String, Server)>,
    out: Vec<String>,
}

/// Claims per route key, each by (project, service).
type Claims = BTreeMap<RouteKey, BTreeMap<(String, String), Claimant>>;

/// Maps containers to routes. The result depends only on the set of containers, not on
/// their order, so identical states render identical configs (and cause no reload).
///
/// Three phases: every labelled container claims its routes, each route goes to its oldest
/// claimant, and the routes become the Plan the shared renderer takes.
pub fn build(containers: &[Container], opts: &Options) -> (Plan, Routing) {
    let mut problems = Vec::new();
    let claims = collect_claims(containers, opts, &mut problems);

    let mut routes = Routes::default();
    let mut names = BTreeSet::new();
    for (key, claimants) in claims {
        let Some((owner, winner)) = award(&key, claimants, &mut problems) else {
            continue;
        };
        let name = unique_name(&mut names, &key);
        routes.add(key, owner, winner, name, opts);
    }
    routes.sort();
    problems.sort_by(|a, b| (&a.container, &a.message).cmp(&(&b.container, &b.message)));

    let Routes { http, tcp, views } = routes;
    (
        plan_of(opts, http, tcp),
        Routing {
            routes: views,
            problems,
        },
    )
}

/// Phase 1: the routes each labelled container claims, oldest container first; containers
/// whose labels are wrong or that are not on the proxy network are reported and skipped.
fn collect_claims(
    containers: &[Container],
    opts: &Options,
    problems: &mut Vec<ContainerIssue>,
) -> Claims {
    let mut sorted: Vec<&Container> = containers.iter().collect();
    sorted.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let mut claims = Claims::new();
    for c in sorted {
        if !labels::is_labelled(c) {
            continue;
        }
        let claim = match labels::parse(c, &opts.suffix) {
            Ok(Some(claim)) => claim,
            Ok(None) => continue,
            Err(findings) => {
                problems.extend(findings.into_iter().map(|f| ContainerIssue {
                    container: c.name.clone(),
                    severity: f.severity,
                    message: f.message,
                }));
                continue;
            }
        };
        let Some(ip) = c.ip else {
            problems.push(ContainerIssue {
                container: c.name.clone(),
                severity: Severity::Warning,
                message: format!(
                    "has itsup labels but is not on the `{}` network: not routed",
                    opts.network
                ),
            });
            continue;
        };
        let owner = (
            c.project().unwrap_or(&c.name).to_string(),
            c.service().unwrap_or(&c.name).to_string(),
        );
        for host in &claim.hosts {
            let key = RouteKey {
                mode: claim.mode,
                host: host.clone(),
                path: claim.path.clone(),
            };
            let claimant = claims
                .entry(key)
                .or_default()
                .entry(owner.clone())
                .or_default();
            // Containers arrive oldest first, so the first one sets the claim's age.
            if claimant.since.is_empty() {
                claimant.since = c.created.clone();
            }
            if c.health.routable() {
                claimant.servers.push((
                    c.name.clone(),
                    Server {
                        address: ip.to_string(),
                        port: claim.port,
                    },
                ));
            } else {
                claimant.out.push(c.name.clone());
            }
        }
    }
    claims
}

/// Phase 2: the oldest claim on a route wins it; every container of a losing claim gets a
/// conflict error naming both services.
fn award(
    key: &RouteKey,
    claimants: BTreeMap<(String, String), Claimant>,
    problems: &mut Vec<ContainerIssue>,
) -> Option<((String, String), Claimant)> {
    let mut ranked: Vec<((String, String), Claimant)> = claimants.into_iter().collect();
    ranked.sort_by(|(a_owner, a), (b_owner, b)| (&a.since, a_owner).cmp(&(&b.since, b_owner)));
    let mut ranked = ranked.into_iter();
    let ((project, service), mut winner) = ranked.next()?;
    for ((lost_project, lost_service), loser) in ranked {
        let route = describe(key);
        let containers = loser
            .servers
            .iter()
            .map(|(name, _)| name.clone())
            .chain(loser.out.iter().cloned());
        for container in containers {
            problems.push(ContainerIssue {
                container,
                severity: Severity::Error,
                message: format!(
                    "conflict: {route} is claimed by {lost_project}/{lost_service} and by \
                     {project}/{service}; the older claim ({project}/{service}) keeps it"
                ),
            });
        }
    }
    winner
        .servers
        .sort_by(|a, b| (&a.1.address, a.1.port, &a.0).cmp(&(&b.1.address, b.1.port, &b.0)));
    winner.out.sort();
    Some(((project, service), winner))
}

/// The Plan rows and the printed views, collected route by route.
#[derive(Default)]
struct Routes {
    http: Vec<HttpRoute>,
    tcp: Vec<TcpRoute>,
    views: Vec<RouteView>,
}

impl Routes {
    /// Adds the winner of one route: a Plan row when it has a server in rotation, a view always.
    fn add(
        &mut self,
        key: RouteKey,
        (project, service): (String, String),
        winner: Claimant,
        name: String,
        opts: &Options,
    ) {
        let servers: Vec<Server> = winner.servers.iter().map(|(_, s)| s.clone()).collect();
        let backend = Backend {
            name: name.clone(),
            servers: servers.clone(),
            dns: false,
            grpc: false,
        };
        // A route without a server in rotation stays out of the Plan: HAProxy then answers 503
        // for the host (no backend matches), and the renderer never sees an empty backend.
        match key.mode {
            _ if servers.is_empty() => {}
            Mode::Http => self.http.push(HttpRoute {
                name,
                project: project.clone(),
                service: Some(service.clone()),
                hosts: vec![key.host.clone()],
                path_prefix: key.path.clone(),
                strip_prefix: false,
                https: false,
                cert_names: Vec::new(),
                allow_source_ips: Vec::new(),
                middlewares: Vec::new(),
                backend,
            }),
            Mode::Tcp => self.tcp.push(TcpRoute {
                name,
                project: project.clone(),
                service: Some(service.clone()),
                entrypoint: entrypoint_name(opts.https_port, false, opts.https_port),
                port: opts.https_port,
                sni: vec![key.host.clone()],
                tls: TcpTls::Passthrough,
                proxy_protocol: None,
                allow_source_ips: Vec::new(),
                backend,
            }),
        }
        self.views.push(RouteView {
            mode: key.mode,
            host: key.host,
            path: key.path,
            project,
            service,
            servers: servers
                .iter()
                .map(|s| format!("{}:{}", s.address, s.port))
                .collect(),
            out_of_rotation: winner.out,
        });
    }

    /// Longest path first: the renderer emits rules in Plan order and HAProxy takes the first
    /// match.
    fn sort(&mut self) {
        self.http.sort_by(|a: &HttpRoute, b: &HttpRoute| {
            let len = |r: &HttpRoute| r.path_prefix.as_deref().map_or(0, str::len);
            len(b).cmp(&len(a)).then_with(|| a.name.cmp(&b.name))
        });
        self.tcp.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// Phase 3: the Plan the shared HAProxy renderer takes (no projects: the containers run).
fn plan_of(opts: &Options, http: Vec<HttpRoute>, tcp: Vec<TcpRoute>) -> Plan {
    let settings = Settings {
        engine: Engine::Haproxy,
        http_port: opts.http_port,
        https_port: opts.https_port,
        network: opts.network.clone(),
        ..Settings::default()
    };
    let entrypoints = vec![
        Entrypoint {
            name: "web".into(),
            port: opts.http_port,
            udp: false,
        },
        Entrypoint {
            name: entrypoint_name(opts.https_port, false, opts.https_port),
            port: opts.https_port,
            udp: false,
        },
    ];
    Plan {
        settings,
        projects: Vec::new(),
        http,
        tcp,
        udp: Vec::new(),
        entrypoints,
        traefik_overrides: None,
        middleware_overrides: None,
        // The watcher renders HAProxy only, which requests no certificates.
        certificates: Default::default(),
    }
}

fn describe(key: &RouteKey) -> String {
    format!(
        "{} {}{}",
        key.mode.as_str(),
        key.host,
        key.path.as_deref().unwrap_or("")
    )
}

/// A backend name HAProxy accepts (letters, digits, `-_.:`), readable in `show stat`, and
/// unique even when two paths differ only in characters that had to be replaced.
fn unique_name(taken: &mut BTreeSet<String>, key: &RouteKey) -> String {
    let raw = format!(
        "{}-{}{}",
        key.mode.as_str(),
        key.host,
        key.path.as_deref().unwrap_or("")
    );
    let base: String = raw
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.') {
                ch
            } else {
                '_'
            }
        })
        .collect();
    let base = base.trim_end_matches('_').to_string();
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

impl std::fmt::Display for Routing {
    /// The table printed on every change: one line per route, then the problems.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.routes.is_empty() {
            writeln!(f, "routes: none")?;
        } else {
            writeln!(f, "routes:")?;
        }
        for r in &self.routes {
            let servers = if r.servers.is_empty() {
                "(no healthy server)".to_string()
            } else {
                r.servers.join(", ")
            };
            write!(
                f,
                "  {:<4} {}{} -> {} [{}/{}]",
                r.mode.as_str(),
                r.host,
                r.path.as_deref().unwrap_or(""),
                servers,
                r.project,
                r.service
            )?;
            if !r.out_of_rotation.is_empty() {
                write!(f, " (out of rotation: {})", r.out_of_rotation.join(", "))?;
            }
            writeln!(f)?;
        }
        for p in &self.problems {
            let level = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            writeln!(f, "  {level}: container {}: {}", p.container, p.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::container::Health;
    use super::*;

    fn opts() -> Options {
        Options {
            suffix: ".localhost".into(),
            http_port: 8080,
            https_port: 8443,
            network: "proxy".into(),
        }
    }

    fn svc(
        project: &str,
        service: &str,
        n: u8,
        created: &str,
        extra: &[(&str, &str)],
    ) -> Container {
        let mut labels: BTreeMap<String, String> = [
            ("com.docker.compose.project", project),
            ("com.docker.compose.service", service),
            ("itsup.enable", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Container {
            id: format!("{project}{service}{n}"),
            name: format!("{project}_{service}_{n}"),
            created: created.into(),
            labels,
            ip: Some(Ipv4Addr::new(172, 30, n, n)),
            exposed_tcp: vec![80],
            health: Health::None,
        }
    }

    #[test]
    fn two_projects_with_the_same_services_get_distinct_hosts() {
        let cs = [
            svc("wt-a", "web", 1, "1", &[]),
            svc("wt-b", "web", 2, "2", &[]),
        ];
        let (plan, out) = build(&cs, &opts());
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let hosts: Vec<&str> = plan.http.iter().map(|r| r.hosts[0].as_str()).collect();
        assert_eq!(hosts, ["web.wt-a.localhost", "web.wt-b.localhost"]);
        let first = &plan.http[0];
        assert!(!first.https);
        assert!(!first.backend.dns);
        assert_eq!(
            first.backend.servers,
            [Server {
                address: "172.30.1.1".into(),
                port: 80
            }]
        );
        assert_eq!(plan.entrypoints[0].port, 8080);
        assert_eq!(plan.entrypoints[1].name, "web-secure");
        assert_eq!(plan.settings.engine, Engine::Haproxy);
    }

    #[test]
    fn replicas_share_one_backend_and_unhealthy_ones_are_left_out() {
        let mut sick = svc("app", "web", 3, "3", &[]);
        sick.health = Health::Unhealthy;
        let mut starting = svc("app", "web", 4, "4", &[]);
        starting.health = Health::Starting;
        let mut well = svc("app", "web", 2, "2", &[]);
        well.health = Health::Healthy;
        let cs = [svc("app", "web", 1, "1", &[]), well, sick, starting];
        let (plan, out) = build(&cs, &opts());
        assert_eq!(plan.http.len(), 1);
        let addrs: Vec<&str> = plan.http[0]
            .backend
            .servers
            .iter()
            .map(|s| s.address.as_str())
            .collect();
        assert_eq!(addrs, ["172.30.1.1", "172.30.2.2"]);
        assert_eq!(out.routes[0].out_of_rotation, ["app_web_3", "app_web_4"]);
    }

    #[test]
    fn a_route_without_healthy_servers_stays_out_of_the_plan() {
        let mut sick = svc("app", "web", 1, "1", &[]);
        sick.health = Health::Unhealthy;
        let (plan, out) = build(&[sick], &opts());
        assert!(plan.http.is_empty());
        assert_eq!(out.routes.len(), 1);
        assert!(out.routes[0].servers.is_empty());
        assert!(out.to_string().contains("(no healthy server)"));
    }

    #[test]
    fn the_shared_renderer_routes_by_host_and_sni() -> Result<(), crate::render::RenderError> {
        let cs = [
            svc("a", "web", 1, "1", &[]),
            svc("a", "web", 2, "2", &[]),
            svc(
                "a",
                "db",
                3,
                "3",
                &[("itsup.tls", "passthrough"), ("itsup.port", "5432")],
            ),
        ];
        let (plan, _) = build(&cs, &opts());
        let templates = crate::render::Templates::embedded()?;
        let cfg = crate::render::haproxy::render_config(&plan, &templates)?;
        assert!(cfg.contains("bind :8080"), "{cfg}");
        assert!(cfg.contains("web.a.localhost"), "{cfg}");
        assert!(cfg.contains("server s1 172.30.1.1:80 check"), "{cfg}");
        assert!(cfg.contains("server s2 172.30.2.2:80 check"), "{cfg}");
        assert!(cfg.contains("bind :8443"), "{cfg}");
        assert!(cfg.contains("req_ssl_sni -i db.a.localhost"), "{cfg}");
        assert!(!cfg.contains("resolvers docker"), "{cfg}");
        Ok(())
    }

    #[test]
    fn older_claim_wins_a_conflict_whatever_the_order() {
        let old = svc(
            "first",
            "web",
            1,
            "2026-01-01T00:00:01.000000000",
            &[("itsup.host", "shared.localhost")],
        );
        let new = svc(
            "second",
            "web",
            2,
            "2026-01-01T00:00:02.000000000",
            &[("itsup.host", "shared.localhost")],
        );
        for cs in [[old.clone(), new.clone()], [new.clone(), old.clone()]] {
            let (plan, out) = build(&cs, &opts());
            assert_eq!(plan.http.len(), 1);
            assert_eq!(plan.http[0].project, "first");
            assert_eq!(out.problems.len(), 1);
            assert_eq!(out.problems[0].container, "second_web_2");
            assert!(
                out.problems[0].message.contains("conflict"),
                "{:?}",
                out.problems
            );
        }
    }

    #[test]
    fn tcp_passthrough_routes_by_sni_on_the_https_port() {
        let cs = [
            svc(
                "a",
                "db",
                1,
                "1",
                &[("itsup.tls", "passthrough"), ("itsup.port", "5432")],
            ),
            svc(
                "b",
                "db",
                2,
                "2",
                &[("itsup.tls", "passthrough"), ("itsup.port", "5432")],
            ),
        ];
        let (plan, _) = build(&cs, &opts());
        assert!(plan.http.is_empty());
        assert_eq!(plan.tcp.len(), 2);
        for r in &plan.tcp {
            assert_eq!(r.tls, TcpTls::Passthrough);
            assert_eq!(r.port, 8443);
            assert_eq!(r.entrypoint, "web-secure");
        }
        assert_eq!(plan.tcp[0].sni, ["db.a.localhost"]);
        assert_eq!(plan.tcp[1].backend.servers[0].port, 5432);
    }

    #[test]
    fn bad_containers_are_skipped_and_the_rest_keep_routing() {
        let cs = [
            svc("ok", "web", 1, "1", &[]),
            svc("bad", "port", 2, "2", &[("itsup.port", "0")]),
            svc(
                "bad",
                "host",
                3,
                "3",
                &[("itsup.host", "has space.localhost")],
            ),
            svc("bad", "mode", 4, "4", &[("itsup.mode", "quic")]),
        ];
        let (plan, out) = build(&cs, &opts());
        assert_eq!(plan.http.len(), 1);
        assert_eq!(plan.http[0].hosts, ["web.ok.localhost"]);
        let who: Vec<&str> = out.problems.iter().map(|p| p.container.as_str()).collect();
        assert_eq!(who, ["bad_host_3", "bad_mode_4", "bad_port_2"]);
    }

    #[test]
    fn longer_paths_come_first_and_names_are_unique() {
        let cs = [
            svc("a", "web", 1, "1", &[("itsup.host", "x.localhost")]),
            svc(
                "a",
                "api",
                2,
                "2",
                &[("itsup.host", "x.localhost"), ("itsup.path", "/api/v1")],
            ),
            svc(
                "a",
                "api2",
                3,
                "3",
                &[("itsup.host", "x.localhost"), ("itsup.path", "/api_v1")],
            ),
        ];
        let (plan, out) = build(&cs, &opts());
        assert!(out.problems.is_empty());
        assert_eq!(plan.http.len(), 3);
        assert_eq!(plan.http[2].path_prefix, None);
        let names: BTreeSet<&str> = plan.http.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn unattached_containers_are_reported() {
        let mut c = svc("a", "web", 1, "1", &[]);
        c.ip = None;
        let (plan, out) = build(&[c], &opts());
        assert!(plan.http.is_empty());
        assert_eq!(out.problems[0].severity, Severity::Warning);
        assert!(out.problems[0].message.contains("`proxy` network"));
        let text = out.to_string();
        assert!(text.contains("routes: none"), "{text}");
    }
}
