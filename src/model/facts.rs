//! Facts derived from the input model that both validation and the Plan need: the names a row
//! answers to, a compose file's services, where an egress target points. Kept here, below both,
//! so that validation never reaches up into the Plan.

use serde_json::{Map, Value};

use std::net::Ipv4Addr;

use super::{Dns, Ingress};

/// Where ACME HTTP-01 challenges arrive; such routes stay on plain HTTP.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge";

/// Every name a row answers to: its domain, then its certificate's names, without repeats.
pub fn row_hosts(row: &Ingress) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let tls_names = row
        .tls
        .iter()
        .flat_map(|t| std::iter::once(&t.main).chain(t.sans.iter()));
    for name in row.domain.iter().chain(tls_names) {
        // DNS names are case-insensitive and `a.com.` is `a.com`: one spelling per host.
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
    hosts
}

/// Resolves `project:service` to the provider project and its compose service. itsUP writes the
/// service either by its compose name or without the `<project>-` prefix its services carry.
/// `projects` gives each project's name with its compose file.
pub fn resolve_egress<'a>(
    projects: impl IntoIterator<Item = (&'a str, Option<&'a Map<String, Value>>)>,
    target: &str,
) -> Option<(&'a str, String)> {
    let (project, service) = target.split_once(':')?;
    let (provider, compose) = projects.into_iter().find(|(name, _)| *name == project)?;
    let services = compose_service_names(compose);
    let prefixed = format!("{project}-{service}");
    let found = services
        .iter()
        .find(|s| *s == service)
        .or_else(|| services.iter().find(|s| **s == prefixed))?;
    Some((provider, found.clone()))
}

/// Service names of a compose file, in file order.
pub fn compose_service_names(compose: Option<&Map<String, Value>>) -> Vec<String> {
    compose
        .and_then(|c| c.get("services"))
        .and_then(Value::as_object)
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default()
}

/// The DNS honeypot's address when `dns:` is enabled: `dns.address`, else the subnet's last
/// usable address (Docker hands addresses out from the low end).
pub fn dns_address(dns: &Dns, subnet: ipnet::Ipv4Net) -> Option<Ipv4Addr> {
    if !dns.enabled {
        return None;
    }
    Some(
        dns.address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.broadcast()).saturating_sub(1))),
    )
}
