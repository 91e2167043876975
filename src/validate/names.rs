//! Name rules: DNS names, DNS labels (project names), addresses. Anything that reaches a Traefik
//! rule or an HAProxy line passes through here first, so quotes, backticks, `#`, whitespace and
//! newlines can never be injected into a generated config.

use std::net::IpAddr;

/// Why a domain is not a valid DNS name, or `None` when it is.
pub fn domain_problem(name: &str) -> Option<String> {
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || "\"'`#;,\\{}()[]|&$!<>".contains(*c))
    {
        return Some(format!("{name:?} is not a valid domain: it contains {c:?}"));
    }
    if name.is_empty() {
        return Some("domain is empty".into());
    }
    if name.len() > 253 {
        return Some(format!(
            "{name:?} is not a valid domain: longer than 253 characters"
        ));
    }
    if name.starts_with("*.") {
        return Some(format!(
            "{name:?}: wildcard domains are not supported; list each name"
        ));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Some(format!("{name:?} is an IP address, not a domain"));
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        if let Some(problem) = label_problem(label) {
            return Some(format!("{name:?} is not a valid domain: {problem}"));
        }
    }
    if !name.contains('.') && name != "localhost" {
        return Some(format!(
            "{name:?} is not a valid domain: it needs a dot (e.g. `{name}.example.com`)"
        ));
    }
    None
}

/// Why a DNS label is invalid, or `None`.
pub fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("empty label".into());
    }
    if label.len() > 63 {
        return Some(format!("label `{label}` is longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        return Some(format!(
            "label `{label}` contains {c:?} (only a-z, 0-9 and `-`)"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("label `{label}` starts or ends with `-`"));
    }
    None
}

/// Why a project name is unusable, or `None`.
pub fn project_name_problem(name: &str) -> Option<String> {
    if let Some((_, why)) = crate::model::RESERVED_PROJECT_NAMES
        .iter()
        .find(|(reserved, _)| *reserved == name)
    {
        return Some(format!("project name `{name}` is reserved: {why}"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!(
            "project name `{name}` must be lowercase (it becomes a DNS label and a compose project name)"
        ));
    }
    label_problem(name).map(|p| format!("project name `{name}` is not a DNS label: {p}"))
}

/// Why a project name collides with the Compose project of the proxy stack (`<network>-proxy`),
/// whose containers and networks apply and `down` would then take for the project's, or `None`.
pub fn project_name_collision(name: &str, network: &str) -> Option<String> {
    (name == format!("{network}-proxy")).then(|| {
        format!(
            "project name `{name}` is reserved: it is the Compose project name of the proxy stack \
             (`<proxy.network>-proxy`), so its containers and networks would be mixed with the proxy's"
        )
    })
}

/// Why a host (IP address or DNS name) is invalid, or `None`.
pub fn host_problem(host: &str) -> Option<String> {
    if host.parse::<IpAddr>().is_ok() {
        return None;
    }
    domain_problem(host)
}

/// Why an allow-list entry is neither an IP address nor a CIDR range, or `None`.
pub fn source_range_problem(entry: &str) -> Option<String> {
    if entry.parse::<IpAddr>().is_ok() || entry.parse::<ipnet::IpNet>().is_ok() {
        return None;
    }
    Some(format!(
        "{entry:?} is neither an IP address nor a CIDR range"
    ))
}

/// Why a path prefix is unusable, or `None`.
pub fn path_prefix_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("path_prefix {path:?} must start with `/`"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'`#\\{}".contains(*c))
    {
        return Some(format!("path_prefix {path:?} contains {c:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain_problem("a.example.com"), None);
        assert_eq!(domain_problem("xn--bcher-kva.example"), None);
        assert!(domain_problem("a b.com").is_some_and(|m| m.contains("' '")));
        assert!(domain_problem("a`.com").is_some_and(|m| m.contains("'`'")));
        assert!(domain_problem("a.com\n").is_some());
        assert!(domain_problem("a#b.com").is_some());
        assert!(domain_problem("-a.com").is_some());
        assert!(domain_problem("a..com").is_some());
        assert!(domain_problem("single").is_some());
        assert!(domain_problem(&format!("{}.com", "a".repeat(64))).is_some());
    }

    #[test]
    fn project_names() {
        assert_eq!(project_name_problem("my-app"), None);
        assert!(project_name_problem("proxy").is_some_and(|m| m.contains("reserved")));
        assert_eq!(project_name_problem("itsup"), None);
        assert!(project_name_collision("proxynet-proxy", "proxynet").is_some());
        assert_eq!(project_name_collision("proxynet", "proxynet"), None);
        assert!(project_name_problem("My").is_some());
        assert!(project_name_problem("a_b").is_some());
    }

    #[test]
    fn ranges_and_paths() {
        assert_eq!(source_range_problem("10.0.0.0/8"), None);
        assert_eq!(source_range_problem("192.168.1.1"), None);
        assert!(source_range_problem("10.0.0.0/33").is_some());
        assert_eq!(path_prefix_problem("/api"), None);
        assert!(path_prefix_problem("api").is_some());
        assert!(path_prefix_problem("/a b").is_some());
    }
}
