//! What the watcher knows about one running container: the few facts routing depends on,
//! detached from bollard's wire types so the label → Plan mapping is testable without Docker.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

/// Docker health as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No health check defined: the container is routed as soon as it runs.
    None,
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Only containers that are known good (or cannot be judged) receive traffic; a container
    /// still starting would answer errors, and an unhealthy one is out of rotation by definition.
    pub fn routable(self) -> bool {
        matches!(self, Health::None | Health::Healthy)
    }
}

/// One running container, as seen on the proxy network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: String,
    /// Creation time as a sortable key (see [`created_key`]): the older claim wins a conflict.
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// Address on the proxy network; `None` when the container is not attached to it.
    pub ip: Option<Ipv4Addr>,
    /// TCP ports the image or container exposes, ascending.
    pub exposed_tcp: Vec<u16>,
    pub health: Health,
}

impl Container {
    /// Compose project, when the container was started by compose.
    pub fn project(&self) -> Option<&str> {
        self.labels
            .get("com.docker.compose.project")
            .map(String::as_str)
    }

    /// Compose service, when the container was started by compose.
    pub fn service(&self) -> Option<&str> {
        self.labels
            .get("com.docker.compose.service")
            .map(String::as_str)
    }

    /// Short id for messages.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// Turns Docker's RFC 3339 timestamp (fraction of variable length, trailing zeros trimmed)
/// into a key that sorts chronologically as a plain string: the fraction is padded to
/// nanoseconds, since `…:05.1Z` must sort before `…:05.12Z`.
pub fn created_key(rfc3339: &str) -> String {
    let trimmed = rfc3339.trim_end_matches('Z');
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
    format!("{whole}.{digits:0<9}")
}

/// Parses `8080/tcp` (or a bare `8080`); other protocols are not routable by HAProxy here.
pub fn parse_exposed(spec: &str) -> Option<u16> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if proto != "tcp" {
        return None;
    }
    port.parse().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keys_sort_chronologically() {
        let a = created_key("2026-11-22T04:47:05.1Z");
        let b = created_key("2026-11-22T04:47:05.12Z");
        let c = created_key("2026-11-22T04:47:06Z");
        assert!(a < b, "{a} < {b}");
        assert!(b < c, "{b} < {c}");
        assert_eq!(a, "2026-11-22T04:47:05.100000000");
    }

    #[test]
    fn exposed_ports_keep_tcp_only() {
        assert_eq!(parse_exposed("8080/tcp"), Some(8080));
        assert_eq!(parse_exposed("53/udp"), None);
        assert_eq!(parse_exposed("80"), Some(80));
        assert_eq!(parse_exposed("0/tcp"), None);
        assert_eq!(parse_exposed("x/tcp"), None);
    }

    #[test]
    fn only_good_or_unchecked_health_is_routable() {
        assert!(Health::None.routable());
        assert!(Health::Healthy.routable());
        assert!(!Health::Starting.routable());
        assert!(!Health::Unhealthy.routable());
    }
}
