//! `projects/itsup.yml`: platform-wide settings (itsUP v2.1 keys plus the `proxy` and `acme` blocks).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Platform-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "itsup.yml")]
pub struct ItsupConfig {
    /// Version of this file's schema (itsUP v2.1 writes `2.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// Domain of the Traefik dashboard. The dashboard is only ever served behind basic auth
    /// (users from the `TRAEFIK_DASHBOARD_USERS` secret, `user:hash` in htpasswd format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik_domain: Option<String>,
    /// The LAN router's IP (kept for itsUP compatibility; informational).
    #[serde(default, rename = "routerIP", skip_serializing_if = "Option::is_none")]
    pub router_ip: Option<String>,
    /// Image versions of the proxy stack's components.
    #[serde(default)]
    pub versions: Versions,
    /// CrowdSec intrusion prevention beside Traefik.
    #[serde(default)]
    pub crowdsec: Crowdsec,
    /// Backup settings (used by the backup job, not by the generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// Alerting hook (used by the monitor, not by the generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<Alert>,
    /// Let's Encrypt settings of the TLS certificate resolver.
    #[serde(default)]
    pub acme: Acme,
    /// Which data plane fronts the projects and on which ports and network.
    #[serde(default)]
    pub proxy: ProxySettings,
    /// The DNS honeypot: a dnsmasq on the proxy network that logs every query of the routed
    /// services and forwards it upstream.
    #[serde(default)]
    pub dns: Dns,
    /// What runs the stacks: `compose` (default: Docker Compose on this host, rolled out by
    /// itsup) or `swarm` (Docker Swarm stacks, rolled out by Swarm; docs/swarm.md).
    #[serde(default)]
    pub orchestrator: Orchestrator,
    /// Settings used with `orchestrator: swarm`.
    #[serde(default)]
    pub swarm: SwarmSettings,
}

/// What deploys the stacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Orchestrator {
    /// Docker Compose on one host (itsup's own zero-downtime rollouts).
    #[default]
    Compose,
    /// Docker Swarm: one stack per project, rolling updates, health gating and rollback by Swarm.
    Swarm,
}

/// Docker Swarm settings (`orchestrator: swarm`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SwarmSettings {
    /// Node label that marks the nodes running the proxy (a global service with host-mode
    /// ports): `docker node update --label-add <label>=true NODE`.
    #[serde(default = "default_ingress_label")]
    pub ingress_label: String,
    /// Prefix of every stack name (`<prefix><project>`, the proxy `<prefix>itsup-proxy`), so
    /// that two platforms, or a platform and Compose projects of the same names, share an engine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stack_prefix: String,
}

impl Default for SwarmSettings {
    fn default() -> Self {
        SwarmSettings {
            ingress_label: default_ingress_label(),
            stack_prefix: String::new(),
        }
    }
}

fn default_ingress_label() -> String {
    "itsup.ingress".to_string()
}

/// Image tags of the proxy stack's components.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// Traefik image tag (default `v3.6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traefik: Option<String>,
    /// CrowdSec image tag (default `v1.7.8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<String>,
    /// HAProxy image tag (default `2.6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<String>,
    /// Tag of the DNS honeypot's dnsmasq image `4km3/dnsmasq` (default `2.86-r0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnsmasq: Option<String>,
}

/// The DNS honeypot (itsUP's `dns-honeypot`): dnsmasq at a fixed address on the proxy network,
/// logging every query, used as the `dns:` of every routed service whose ingress rows set none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Run the honeypot (default off).
    #[serde(default)]
    pub enabled: bool,
    /// Its address on the proxy network, inside `proxy.subnet` (default: the subnet's last
    /// usable address, far from the low end Docker hands out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// DNS servers it forwards to, as IP addresses (default Docker's embedded DNS, 127.0.0.11,
    /// which resolves container names on the proxy network and forwards the rest to the
    /// host's resolvers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// Image of the honeypot: any image with `dnsmasq` on its PATH (default
    /// `4km3/dnsmasq:<versions.dnsmasq>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// CrowdSec settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Crowdsec {
    /// Run CrowdSec beside the proxy.
    #[serde(default)]
    pub enabled: bool,
    /// Hub collections to install.
    #[serde(default)]
    pub collections: Vec<String>,
    /// Bouncer API key (usually `${CROWDSEC_APIKEY}` from secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apikey: Option<String>,
}

/// Backup settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Projects left out of the backup.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// S3 target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3>,
}

/// S3 bucket coordinates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

/// Alerting hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Command that receives the alert body on stdin.
    pub command: String,
}

/// Let's Encrypt settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// Account e-mail for Let's Encrypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Use Let's Encrypt's staging CA (untrusted certificates, generous rate limits).
    #[serde(default)]
    pub staging: bool,
    /// ACME directory URL of another CA (`https://…/directory`); wins over `staging`.
    #[serde(default, rename = "caServer", skip_serializing_if = "Option::is_none")]
    pub ca_server: Option<String>,
    /// PEM file of extra root certificates to trust when talking to `caServer` (a private CA),
    /// as a path relative to `projects/` (e.g. `ca/root.pem`).
    #[serde(default, rename = "caBundle", skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// The data plane in front of the projects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Traefik v3 with docker + file providers (itsUP's engine).
    #[default]
    Traefik,
    /// HAProxy in master-worker mode, reloaded hitlessly.
    Haproxy,
    /// itsup's own runtime proxy (`itsup proxy`).
    Itsup,
}

impl Engine {
    /// The engine's name as written in itsup.yml.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Traefik => "traefik",
            Engine::Haproxy => "haproxy",
            Engine::Itsup => "itsup",
        }
    }
}

/// Proxy engine, ports and the shared network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProxySettings {
    /// Which proxy routes traffic: `traefik` (default), `haproxy` or `itsup`.
    #[serde(default)]
    pub engine: Engine,
    /// Image of the proxy container, overriding the engine's default (e.g. a locally built one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image of the itsup binary, for `itsup agent` beside HAProxy and engine `itsup`
    /// (default `itsup:<version of this binary>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itsup_image: Option<String>,
    /// Host port for plain HTTP.
    #[serde(default = "default_http_port")]
    #[schemars(range(min = 1))]
    pub http_port: u16,
    /// Host port for HTTPS (and TLS passthrough by SNI).
    #[serde(default = "default_https_port")]
    #[schemars(range(min = 1))]
    pub https_port: u16,
    /// Port (inside the proxy container, not published) of HAProxy's `/healthz` and `/stats`.
    #[serde(default = "default_stats_port")]
    #[schemars(range(min = 1))]
    pub stats_port: u16,
    /// Name of the Docker network shared by the proxy and every routed service.
    #[serde(default = "default_network")]
    pub network: String,
    /// IPv4 subnet of that network (pinned `ipv4_address` values must lie in it).
    #[serde(default = "default_subnet")]
    pub subnet: String,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            engine: Engine::default(),
            image: None,
            itsup_image: None,
            http_port: default_http_port(),
            https_port: default_https_port(),
            stats_port: default_stats_port(),
            network: default_network(),
            subnet: default_subnet(),
        }
    }
}

fn default_http_port() -> u16 {
    80
}
fn default_https_port() -> u16 {
    443
}
fn default_stats_port() -> u16 {
    8404
}
fn default_network() -> String {
    "proxynet".to_string()
}
fn default_subnet() -> String {
    "172.20.0.0/16".to_string()
}
