//! `projects/<p>/ingress.yml` (itsUP v2.1 name: `itsup-project.yml`): how a project is reached.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One project's routing file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "itsup project file (ingress.yml / itsup-project.yml)")]
pub struct ProjectFile {
    /// A disabled project is neither routed nor deployed; its generated files stay so `apply` can stop it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// External host (IP or DNS name) that rows without a `service` route to (no compose needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Routes from the proxy to this project.
    #[serde(default)]
    pub ingress: Vec<Ingress>,
    /// Services of other projects this project may reach, as `project:service`.
    #[serde(default)]
    pub egress: Vec<String>,
    /// Rollout strategy per compose service (default: start-first when the service can run
    /// twice side by side, stop-first otherwise).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollout: BTreeMap<String, Rollout>,
}

impl Default for ProjectFile {
    fn default() -> Self {
        ProjectFile {
            enabled: true,
            host: None,
            ingress: Vec::new(),
            egress: Vec::new(),
            rollout: BTreeMap::new(),
        }
    }
}

/// One ingress row: a domain (and optional path) or a TCP/UDP port routed to a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    /// Compose service that receives the traffic (omit to route to the project's `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Domain routed to the service (http: Host; tcp: TLS SNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Certificate names: `main` plus `sans`; each name is routed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Port the service listens on inside its container.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Router kind.
    #[serde(default)]
    pub router: Router,
    /// Only requests whose path starts with this prefix (http rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Remove `path_prefix` before the request reaches the service.
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_prefix: bool,
    /// Host port of a dedicated TCP/UDP entrypoint (the https port shares the TLS entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub hostport: Option<u16>,
    /// Pass TLS through untouched, routed by SNI (tcp rows).
    #[serde(default, skip_serializing_if = "is_false")]
    pub passthrough: bool,
    /// Transport of the port (`udp` needs `router: udp`).
    #[serde(default)]
    pub protocol: Protocol,
    /// PROXY protocol version sent to the service on tcp rows (`null` for none).
    #[serde(default = "default_proxy_protocol")]
    pub proxyprotocol: Option<ProxyProtocol>,
    /// Only these client addresses or CIDR ranges may use the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_source_ips: Vec<String>,
    /// Fixed address of the service on the proxy network (inside `proxy.subnet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// DNS servers for the service's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Extra middlewares (names from `projects/middlewares.yml`) applied to this http route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
    /// The service speaks gRPC: HAProxy checks its health through `itsup agent`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub grpc: bool,
}

/// Certificate names of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Main name of the certificate.
    pub main: String,
    /// Further names on the same certificate.
    #[serde(default)]
    pub sans: Vec<String>,
}

/// Router kind of an ingress row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Router {
    #[default]
    Http,
    Tcp,
    Udp,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// How a service is replaced when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Rollout {
    /// Start the new container beside the old one, switch, then stop the old (no downtime).
    StartFirst,
    /// Stop the old container, then start the new one (for services that cannot run twice).
    StopFirst,
}

/// PROXY protocol version; itsUP files write it as a number or a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

impl ProxyProtocol {
    /// The version number.
    pub fn version(self) -> u8 {
        match self {
            ProxyProtocol::V1 => 1,
            ProxyProtocol::V2 => 2,
        }
    }
}

impl Serialize for ProxyProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.version())
    }
}

impl<'de> Deserialize<'de> for ProxyProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(1) => Ok(ProxyProtocol::V1),
            Raw::N(2) => Ok(ProxyProtocol::V2),
            Raw::S(s) if s == "1" => Ok(ProxyProtocol::V1),
            Raw::S(s) if s == "2" => Ok(ProxyProtocol::V2),
            _ => Err(serde::de::Error::custom(
                "proxyprotocol must be 1, 2 or null",
            )),
        }
    }
}

impl JsonSchema for ProxyProtocol {
    fn schema_name() -> Cow<'static, str> {
        "ProxyProtocol".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "PROXY protocol version (1 or 2, as number or string).",
            "enum": [1, 2, "1", "2"]
        })
    }
}

fn yes() -> bool {
    true
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn default_port() -> u16 {
    8080
}
fn default_proxy_protocol() -> Option<ProxyProtocol> {
    Some(ProxyProtocol::V2)
}
