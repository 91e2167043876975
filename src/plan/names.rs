//! Names the Plan hands out: entrypoints, network aliases, unique router names.

use std::collections::HashSet;

/// Entrypoint name of a listening port: the https port is the shared TLS entrypoint.
pub fn entrypoint_name(port: u16, udp: bool, https_port: u16) -> String {
    match (udp, port == https_port) {
        (true, _) => format!("udp-{port}"),
        (false, true) => "web-secure".to_string(),
        (false, false) => format!("tcp-{port}"),
    }
}

/// Project-scoped alias of a service on the proxy network, so two projects' `web` services
/// never answer to the same name.
pub fn service_alias(project: &str, service: &str) -> String {
    format!("{project}-{service}")
}

/// Hands out names unique across the whole Plan: the first claim of `base` keeps it, later ones
/// get `-2`, `-3`… in claim order, which is deterministic (projects by name, rows in file order).
#[derive(Debug, Default)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl UniqueNames {
    pub fn claim(&mut self, base: &str) -> String {
        if self.taken.insert(base.to_string()) {
            return base.to_string();
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|candidate| self.taken.insert(candidate.clone()))
            .unwrap_or_else(|| base.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_stable() {
        let mut names = UniqueNames::default();
        assert_eq!(names.claim("a-web-80"), "a-web-80");
        assert_eq!(names.claim("a-web-80"), "a-web-80-2");
        assert_eq!(names.claim("a-web-80-2"), "a-web-80-2-2");
        assert_eq!(names.claim("a-web-80"), "a-web-80-3");
        assert_eq!(entrypoint_name(443, false, 443), "web-secure");
        assert_eq!(entrypoint_name(5432, false, 443), "tcp-5432");
        assert_eq!(entrypoint_name(1194, true, 443), "udp-1194");
    }
}
