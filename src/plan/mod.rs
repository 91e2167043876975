//! The Plan: a normalized, engine-neutral description of everything the renderers produce.
//!
//! Built once from validated input ([`build`]) or from container labels (`watch`); every
//! renderer reads only the Plan, never YAML. Routes are sorted so that the most specific match
//! comes first (longest path prefix), which every engine's first-match semantics relies on;
//! engines that rank rules themselves (Traefik) get the same order as explicit priorities
//! ([`HttpRoute::priority`]).

pub mod build;
mod certificates;
mod names;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::model::{Acme, Crowdsec, Engine, Rollout, Versions};

pub use build::build;
pub use certificates::{DASHBOARD, certificate_owners};
pub use names::{entrypoint_name, service_alias};

/// Everything to render, for one engine.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub settings: Settings,
    /// Valid projects, sorted by name (disabled ones included, flagged).
    pub projects: Vec<ProjectPlan>,
    /// HTTP routes, most specific first.
    pub http: Vec<HttpRoute>,
    /// TCP routes, by entrypoint then most specific first.
    pub tcp: Vec<TcpRoute>,
    /// UDP routes, by port.
    pub udp: Vec<UdpRoute>,
    /// Listening points: `web`, `web-secure`, then every tcp/udp hostport actually used.
    pub entrypoints: Vec<Entrypoint>,
    /// Native Traefik YAML from `projects/traefik.yml`, deep-merged over the static config.
    pub traefik_overrides: Option<serde_json::Value>,
    /// Native Traefik YAML from `projects/middlewares.yml`, deep-merged over `middlewares.yml`.
    pub middleware_overrides: Option<serde_json::Value>,
    /// Which router requests which certificate names from the ACME resolver: router name
    /// (or [`DASHBOARD`]) → its names, main first. Every name has exactly one owner; routes
    /// not listed serve whatever certificate the proxy holds for their names.
    pub certificates: BTreeMap<String, Vec<String>>,
}

/// Platform-wide settings the renderers need.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub engine: Engine,
    /// Proxy image override from `proxy.image`.
    pub image: Option<String>,
    /// Image of the itsup binary (agent, engine itsup) from `proxy.itsupImage`.
    pub itsup_image: Option<String>,
    pub http_port: u16,
    pub https_port: u16,
    /// HAProxy health/stats frontend port; `None` leaves it out (several HAProxies on one host).
    pub stats_port: Option<u16>,
    /// The shared proxy network's name.
    pub network: String,
    pub subnet: Ipv4Net,
    /// Dashboard domain (Traefik), always behind basic auth.
    pub dashboard_domain: Option<String>,
    pub acme: Acme,
    /// PEM text of `acme.caBundle` (roots to trust for `acme.caServer`).
    pub acme_ca_pem: Option<String>,
    pub crowdsec: Crowdsec,
    pub versions: Versions,
    /// The DNS honeypot, when `dns.enabled`.
    pub dns: Option<DnsHoneypot>,
    /// Set with `orchestrator: swarm`: projects are Swarm stacks (docs/swarm.md).
    pub swarm: Option<SwarmPlan>,
}

/// How the platform runs on Docker Swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwarmPlan {
    /// Node label of the nodes that run the proxy.
    pub ingress_label: String,
    /// Prefix of every stack name.
    pub stack_prefix: String,
}

impl SwarmPlan {
    /// The stack a project is deployed as.
    pub fn stack(&self, project: &str) -> String {
        format!("{}{project}", self.stack_prefix)
    }

    /// The proxy's stack.
    pub fn proxy_stack(&self) -> String {
        format!("{}itsup-proxy", self.stack_prefix)
    }

    /// Docker DNS name of every task of a project's service (`tasks.<stack>_<service>`).
    pub fn tasks_name(&self, project: &str, service: &str) -> String {
        format!("tasks.{}_{service}", self.stack(project))
    }
}

/// The DNS honeypot as rendered: where it listens, whom it asks, which image runs it.
#[derive(Debug, Clone, Serialize)]
pub struct DnsHoneypot {
    pub address: Ipv4Addr,
    pub upstream: Vec<String>,
    pub image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: Engine::Traefik,
            image: None,
            itsup_image: None,
            http_port: 80,
            https_port: 443,
            stats_port: None,
            network: "proxynet".into(),
            subnet: Ipv4Net::new(Ipv4Addr::new(172, 20, 0, 0), 16)
                .unwrap_or_else(|_| Ipv4Net::default()),
            dashboard_domain: None,
            acme: Acme::default(),
            acme_ca_pem: None,
            crowdsec: Crowdsec::default(),
            versions: Versions::default(),
            dns: None,
            swarm: None,
        }
    }
}

/// One project as it will be deployed.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectPlan {
    pub name: String,
    pub enabled: bool,
    /// The user's compose file (anchors expanded), when the project has one.
    pub compose: Option<serde_json::Map<String, serde_json::Value>>,
    /// Compose services in file order, with what itsup adds to each.
    pub services: Vec<ServicePlan>,
    /// Projects this one reaches through egress (deployed before it).
    pub depends_on: Vec<String>,
}

/// What itsup adds to one compose service.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub name: String,
    /// Set when the service is routed: it joins the proxy network under this attachment.
    pub proxy: Option<ProxyAttachment>,
    /// Egress networks the service joins (as provider or consumer).
    pub egress_networks: Vec<String>,
    /// DNS servers requested by its ingress rows.
    pub dns: Vec<String>,
    pub rollout: RolloutPlan,
}

/// How a routed service sits on the proxy network.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyAttachment {
    /// Project-scoped network alias (`<project>-<service>`), unambiguous across projects.
    pub alias: String,
    pub ipv4_address: Option<Ipv4Addr>,
}

/// The rollout strategy of a service and why it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutPlan {
    pub strategy: Rollout,
    pub reason: String,
}

/// Where a route's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backend {
    /// Unique backend/cluster name (same as the route name for generated routes).
    pub name: String,
    pub servers: Vec<Server>,
    /// Servers are DNS names resolved at run time (Docker DNS): replicas and rollouts appear
    /// and disappear behind one name. Otherwise they are fixed addresses.
    pub dns: bool,
    /// The backend speaks gRPC (health through `itsup agent` with HAProxy).
    pub grpc: bool,
}

/// One upstream address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    pub address: String,
    pub port: u16,
}

/// An HTTP route.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRoute {
    /// Unique router name (`<project>-<service>-<port>`, suffixed when needed).
    pub name: String,
    pub project: String,
    /// Compose service, or `None` for a project's external host.
    pub service: Option<String>,
    /// Host names matched (exact).
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub strip_prefix: bool,
    /// Served over HTTPS (HTTP redirects to it). `false` serves plain HTTP only, as for ACME
    /// HTTP-01 challenge paths, which must never be redirected.
    pub https: bool,
    /// Certificate names (main first); empty when `https` is false.
    pub cert_names: Vec<String>,
    pub allow_source_ips: Vec<String>,
    /// User middlewares by name (from `projects/middlewares.yml`).
    pub middlewares: Vec<String>,
    pub backend: Backend,
}

/// How a TCP route treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpTls {
    /// Routed by SNI, TLS passed through to the service.
    Passthrough,
    /// Routed by SNI, TLS terminated at the proxy with a certificate for the names.
    Terminate,
    /// Plain TCP: the whole entrypoint goes to this service.
    None,
}

/// A TCP route.
#[derive(Debug, Clone, Serialize)]
pub struct TcpRoute {
    pub name: String,
    pub project: String,
    pub service: Option<String>,
    /// Entrypoint name (`web-secure` for the https port, else `tcp-<port>`).
    pub entrypoint: String,
    /// Port the proxy listens on.
    pub port: u16,
    /// SNI names; empty for a plain route.
    pub sni: Vec<String>,
    pub tls: TcpTls,
    pub proxy_protocol: Option<u8>,
    pub allow_source_ips: Vec<String>,
    pub backend: Backend,
}

/// A UDP route (one per port).
#[derive(Debug, Clone, Serialize)]
pub struct UdpRoute {
    pub name: String,
    pub project: String,
    pub service: Option<String>,
    pub entrypoint: String,
    pub port: u16,
    pub allow_source_ips: Vec<String>,
    pub backend: Backend,
}

/// A listening point of the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrypoint {
    pub name: String,
    pub port: u16,
    pub udp: bool,
}

/// Priority of a route without a path prefix; a prefix adds its length. Absolute, so that a
/// new route never changes the priority (and so the labels, and so the content hash) of the
/// containers of other routes.
pub const BASE_PRIORITY: u32 = 1000;

impl HttpRoute {
    /// The route's rank among routes matching the same request: longer path prefixes first,
    /// the order the Plan lists HTTP routes in. Two routes of the same rank never match the
    /// same request (same host and prefix twice is a validation error, and different prefixes
    /// of one length cannot both be prefixes of one path).
    pub fn priority(&self) -> u32 {
        let prefix = self.path_prefix.as_deref().map_or(0, str::len);
        BASE_PRIORITY + u32::try_from(prefix).unwrap_or(u32::MAX - BASE_PRIORITY)
    }
}

impl TcpRoute {
    /// SNI routes before the catch-all of a plain TCP port, the order the Plan lists them in.
    pub fn priority(&self) -> u32 {
        if self.sni.is_empty() {
            1
        } else {
            BASE_PRIORITY
        }
    }
}

impl Plan {
    /// The plan of one project, by name.
    pub fn project(&self, name: &str) -> Option<&ProjectPlan> {
        self.projects.iter().find(|p| p.name == name)
    }
}
