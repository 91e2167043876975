//! The `tcp:` and `udp:` sections of `proxy.yml`: layer-4 listeners, their routes (by SNI or
//! catch-all), PROXY protocol in and out, source allowlists, timeouts and caps. Kept apart
//! from [`super::config`] so that the HTTP side and this one evolve independently. Changing
//! these sections needs a restart, like `listeners`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::cidr::Cidrs;
use super::config_tls::ListenerTls;

/// A TCP listener. When `address` is also an HTTPS listener's address, the routes here are
/// chosen by SNI on that port before any TLS is done and every other name is served as
/// HTTPS; otherwise the listener is its own port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpListener {
    /// `ip:port` to bind (or the address of an HTTPS listener to share).
    pub address: String,
    /// Routes: those with `sni` are chosen by the ClientHello's server name; at most one
    /// without `sni` takes everything else (and, when it is the only route, connections are
    /// forwarded at once, without waiting for the client to speak first).
    pub routes: Vec<TcpRoute>,
    /// Connections open at once on this listener; more are closed at accept and counted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Accept a PROXY protocol header (v1 or v2) from these senders only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_proxy: Option<AcceptProxy>,
    /// Timeouts of this listener's connections.
    #[serde(default)]
    pub timeouts: TcpTimeouts,
    /// Certificates for `terminate` routes on a port of its own (a shared HTTPS port uses
    /// its listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

fn default_max_connections() -> usize {
    10_000
}

/// Trusted senders of PROXY protocol headers (a load balancer in front of the proxy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptProxy {
    /// CIDRs or IPs whose connections must start with a PROXY header; from any other peer a
    /// header is refused (the connection closed) and the peer's own address is used.
    pub trusted: Vec<String>,
    /// The header must have arrived within this many milliseconds.
    #[serde(default = "default_proxy_timeout")]
    pub timeout_ms: u64,
}

fn default_proxy_timeout() -> u64 {
    3_000
}

/// Timeouts in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TcpTimeouts {
    /// TCP connect to a backend server (the next server is tried on failure).
    pub connect_ms: u64,
    /// A connection with no bytes in either direction is closed.
    pub idle_ms: u64,
    /// Waiting for the ClientHello on a port routed by SNI.
    pub hello_ms: u64,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            idle_ms: 600_000,
            hello_ms: 5_000,
        }
    }
}

/// How a TCP route treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TcpTlsMode {
    /// Bytes as they come (on an SNI route: the client's TLS, untouched).
    #[default]
    Passthrough,
    /// TLS terminated here (certificate by SNI), plain TCP to the servers.
    Terminate,
}

/// One TCP route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpRoute {
    /// Name in metrics and logs; unique among TCP routes.
    pub name: String,
    /// Server names (exact or `*.suffix`) matched against the ClientHello; empty: catch-all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni: Vec<String>,
    /// Pass TLS through or terminate it.
    #[serde(default)]
    pub tls: TcpTlsMode,
    /// `host:port` of each server; connections go round robin, skipping servers that refuse.
    pub servers: Vec<String>,
    /// Send a PROXY protocol header (1 or 2) to the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<u8>,
    /// Client CIDRs or IPs allowed; empty allows everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_source_ips: Vec<String>,
}

/// A UDP port forwarded to servers, one session per client address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UdpListener {
    /// Name in metrics and logs.
    pub name: String,
    /// `ip:port` to bind.
    pub address: String,
    /// `host:port` of each server; a new session goes to the next one (round robin).
    pub servers: Vec<String>,
    /// A session without datagrams either way for this long is forgotten.
    #[serde(default = "default_udp_idle")]
    pub idle_ms: u64,
    /// Sessions at once; datagrams from new clients beyond it are dropped and counted.
    #[serde(default = "default_udp_sessions")]
    pub max_sessions: usize,
    /// Client CIDRs or IPs allowed; empty allows everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_source_ips: Vec<String>,
}

fn default_udp_idle() -> u64 {
    30_000
}

fn default_udp_sessions() -> usize {
    10_000
}

/// Checks the `tcp` and `udp` sections; `https` are the addresses of HTTPS listeners and
/// `plain` those of plain HTTP listeners.
pub fn check(
    tcp: &[TcpListener],
    udp: &[UdpListener],
    https: &[&str],
    plain: &[&str],
    errors: &mut Vec<String>,
) {
    let mut names = std::collections::HashSet::new();
    let mut addresses = std::collections::HashSet::new();
    for (i, l) in tcp.iter().enumerate() {
        let at = format!("tcp[{i}]");
        if l.address.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!("{at}.address: `{}` is not ip:port", l.address));
        }
        if !addresses.insert(l.address.as_str()) {
            errors.push(format!("{at}.address: `{}` listed twice", l.address));
        }
        if plain.contains(&l.address.as_str()) {
            errors.push(format!(
                "{at}.address: `{}` is a plain HTTP listener; TCP routes share only HTTPS ports",
                l.address
            ));
        }
        let shared = https.contains(&l.address.as_str());
        check_listener(&at, l, shared, errors);
        for (j, r) in l.routes.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                errors.push(format!("{at}.routes[{j}].name: `{}` used twice", r.name));
            }
        }
    }
    for (i, u) in udp.iter().enumerate() {
        let at = format!("udp[{i}]");
        if u.address.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!("{at}.address: `{}` is not ip:port", u.address));
        }
        check_servers(&at, &u.servers, errors);
        if u.idle_ms == 0 || u.max_sessions == 0 {
            errors.push(format!("{at}: idle_ms and max_sessions must be > 0"));
        }
        if let Err(e) = Cidrs::parse(&u.allow_source_ips) {
            errors.push(format!("{at}.allow_source_ips: {e}"));
        }
    }
}

fn check_listener(at: &str, l: &TcpListener, shared: bool, errors: &mut Vec<String>) {
    if l.routes.is_empty() {
        errors.push(format!("{at}.routes: at least one route is required"));
    }
    if l.max_connections == 0 {
        errors.push(format!("{at}.max_connections: must be > 0"));
    }
    let t = &l.timeouts;
    if t.connect_ms == 0 || t.idle_ms == 0 || t.hello_ms == 0 {
        errors.push(format!("{at}.timeouts: every timeout must be > 0"));
    }
    if let Some(a) = &l.accept_proxy {
        if a.trusted.is_empty() {
            errors.push(format!(
                "{at}.accept_proxy.trusted: name at least one sender"
            ));
        }
        if let Err(e) = Cidrs::parse(&a.trusted) {
            errors.push(format!("{at}.accept_proxy.trusted: {e}"));
        }
        if a.timeout_ms == 0 {
            errors.push(format!("{at}.accept_proxy.timeout_ms: must be > 0"));
        }
    }
    if shared && l.tls.is_some() {
        errors.push(format!(
            "{at}.tls: a shared HTTPS port uses its listener's certificates"
        ));
    }
    let catch_alls = l.routes.iter().filter(|r| r.sni.is_empty()).count();
    if catch_alls > 1 {
        errors.push(format!("{at}.routes: at most one route without `sni`"));
    }
    if shared && catch_alls > 0 {
        errors.push(format!(
            "{at}.routes: a shared HTTPS port sends names without a route to HTTPS; every route needs `sni`"
        ));
    }
    for (j, r) in l.routes.iter().enumerate() {
        let at = format!("{at}.routes[{j}]");
        check_servers(&at, &r.servers, errors);
        for (k, name) in r.sni.iter().enumerate() {
            if let Err(e) = super::address::check_host_pattern(name) {
                errors.push(format!("{at}.sni[{k}]: {e}"));
            }
        }
        if let Some(v) = r.proxy_protocol
            && !(1..=2).contains(&v)
        {
            errors.push(format!("{at}.proxy_protocol: must be 1 or 2"));
        }
        if let Err(e) = Cidrs::parse(&r.allow_source_ips) {
            errors.push(format!("{at}.allow_source_ips: {e}"));
        }
        if r.tls == TcpTlsMode::Terminate && !shared && l.tls.is_none() {
            errors.push(format!(
                "{at}.tls: terminate needs the listener's `tls` (or a shared HTTPS port)"
            ));
        }
    }
}

fn check_servers(at: &str, servers: &[String], errors: &mut Vec<String>) {
    if servers.is_empty() {
        errors.push(format!("{at}.servers: at least one server is required"));
    }
    for (k, s) in servers.iter().enumerate() {
        if !super::address::valid_host_port(s) {
            errors.push(format!("{at}.servers[{k}]: `{s}` is not host:port"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proxy::base::config::{ConfigError, parse};

    const BASE: &str = "listeners: [{address: \"127.0.0.1:8443\", tls: {}}, {address: \"127.0.0.1:8080\"}]\nclusters: {}\n";

    #[test]
    fn a_full_l4_section_parses() {
        let text = format!(
            "{BASE}tcp:\n  - address: \"127.0.0.1:8443\"\n    routes: [{{name: mqtt, sni: [mqtt.example.com], servers: [\"broker:8883\"], proxy_protocol: 2}}]\n  - address: \"0.0.0.0:5432\"\n    accept_proxy: {{trusted: [10.0.0.0/8]}}\n    routes: [{{name: db, servers: [\"db:5432\"], allow_source_ips: [192.0.2.0/24]}}]\nudp:\n  - {{name: dns, address: \"0.0.0.0:5353\", servers: [\"dns:53\"]}}\n"
        );
        let cfg = parse(&text, "t").expect("valid");
        assert_eq!(cfg.tcp.len(), 2);
        assert_eq!(cfg.udp[0].max_sessions, 10_000);
    }

    #[test]
    fn l4_mistakes_are_named_with_their_position() {
        let text = format!(
            "{BASE}tcp:\n  - address: \"127.0.0.1:8443\"\n    routes: [{{name: a, servers: [\"x:1\"]}}]\n  - address: \"0.0.0.0:9000\"\n    routes:\n      - {{name: b, sni: [b.example], tls: terminate, servers: [\"x:1\"], proxy_protocol: 3}}\n  - address: \"127.0.0.1:8080\"\n    routes: [{{name: a, servers: [nope]}}]\n"
        );
        let Err(ConfigError::Invalid { errors, .. }) = parse(&text, "p.yml") else {
            panic!("expected invalid");
        };
        let all = errors.join("\n");
        for needle in [
            "p.yml:5:5: tcp[0].routes: a shared HTTPS port",
            "tcp[1].routes[0].proxy_protocol: must be 1 or 2",
            "tcp[1].routes[0].tls: terminate needs",
            "tcp[2].address: `127.0.0.1:8080` is a plain HTTP listener",
            "tcp[2].routes[0].servers[0]: `nope` is not host:port",
            "tcp[2].routes[0].name: `a` used twice",
        ] {
            assert!(all.contains(needle), "missing {needle} in\n{all}");
        }
    }
}
