//! Reads one container's `itsup.*` labels into a routing claim, filling the gaps by inference
//! (host from the compose project and service, port from the single exposed port).
//!
//! Every bad value is reported, all at once, and the container is skipped: a typo in one
//! stack must never take the other stacks' routes down with it.

use serde::Serialize;

use super::container::Container;

/// How traffic reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plain HTTP, routed by Host header (and path prefix).
    Http,
    /// TLS passed through, routed by SNI on the shared https port.
    Tcp,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Tcp => "tcp",
        }
    }
}

/// What one container asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Lower-case host names, deduplicated, in label order.
    pub hosts: Vec<String>,
    pub port: u16,
    pub mode: Mode,
    pub path: Option<String>,
}

/// Why a container is not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The labels are wrong.
    Error,
    /// The labels are valid but not enough to decide without guessing.
    Warning,
}

/// One finding about one container's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    fn error(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            message: message.into(),
        }
    }
    fn warning(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

const PREFIX: &str = "itsup.";
const KNOWN: &[&str] = &["enable", "host", "port", "mode", "path", "tls"];

/// Whether the container opted in to routing at all (any `itsup.*` label does).
pub fn is_labelled(c: &Container) -> bool {
    c.labels.keys().any(|k| k.starts_with(PREFIX))
}

/// The claim of a labelled container: `Ok(None)` when it opted out with `itsup.enable=false`.
pub fn parse(c: &Container, suffix: &str) -> Result<Option<Claim>, Vec<Finding>> {
    let mut errors = Vec::new();
    for key in c.labels.keys() {
        if let Some(name) = key.strip_prefix(PREFIX)
            && !KNOWN.contains(&name)
        {
            errors.push(Finding::error(format!(
                "unknown label `{key}` (known: {})",
                KNOWN
                    .iter()
                    .map(|k| format!("{PREFIX}{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let label = |name: &str| c.labels.get(&format!("{PREFIX}{name}")).map(|v| v.trim());

    if let Some(value) = label("enable") {
        match value.to_ascii_lowercase().as_str() {
            "true" => {}
            "false" => return Ok(None),
            _ => errors.push(Finding::error(format!(
                "itsup.enable=`{value}`: expected true or false"
            ))),
        }
    }

    let tls = match label("tls") {
        None => None,
        Some("passthrough") => Some(()),
        Some(other) => {
            errors.push(Finding::error(format!(
                "itsup.tls=`{other}`: only `passthrough` is supported (TLS goes through to the container)"
            )));
            None
        }
    };
    // The only TCP routing a shared port allows is by SNI, so `tcp` and `passthrough` imply
    // each other; saying one is enough.
    let mode = match label("mode") {
        None if tls.is_some() => Some(Mode::Tcp),
        None | Some("http") => Some(Mode::Http),
        Some("tcp") => Some(Mode::Tcp),
        Some(other) => {
            errors.push(Finding::error(format!(
                "itsup.mode=`{other}`: expected http or tcp"
            )));
            None
        }
    };
    if mode == Some(Mode::Http) && tls.is_some() {
        errors.push(Finding::error(
            "itsup.tls=passthrough needs itsup.mode=tcp (TLS cannot be passed through an HTTP route)",
        ));
    }

    let path = match label("path") {
        None => None,
        Some(p) => match check_path(p) {
            Ok(()) if mode == Some(Mode::Tcp) => {
                errors.push(Finding::error(
                    "itsup.path applies to HTTP only (a TLS passthrough route sees no paths)",
                ));
                None
            }
            Ok(()) => Some(p.to_string()).filter(|p| p != "/"),
            Err(e) => {
                errors.push(Finding::error(format!("itsup.path=`{p}`: {e}")));
                None
            }
        },
    };

    let hosts = match label("host") {
        Some(list) => {
            let mut hosts: Vec<String> = Vec::new();
            for raw in list.split(',') {
                let host = raw.trim().to_ascii_lowercase();
                match check_host(&host) {
                    Ok(()) if !hosts.contains(&host) => hosts.push(host),
                    Ok(()) => {}
                    Err(e) => errors.push(Finding::error(format!("itsup.host `{raw}`: {e}"))),
                }
            }
            hosts
        }
        None => match default_host(c, suffix) {
            Ok(h) => vec![h],
            Err(e) => {
                errors.push(Finding::error(e));
                Vec::new()
            }
        },
    };

    let port = match label("port") {
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                errors.push(Finding::error(format!(
                    "itsup.port=`{p}`: expected a port number from 1 to 65535"
                )));
                None
            }
            Ok(n) => Some(n),
        },
        None => match c.exposed_tcp.as_slice() {
            [one] => Some(*one),
            [] => {
                errors.push(Finding::error(
                    "no port: the container exposes no TCP port; set itsup.port",
                ));
                None
            }
            several => {
                let list: Vec<String> = several.iter().map(u16::to_string).collect();
                if errors.is_empty() {
                    return Err(vec![Finding::warning(format!(
                        "exposes several ports ({}) and has no itsup.port: not guessing, set itsup.port",
                        list.join(", ")
                    ))]);
                }
                None
            }
        },
    };

    match (mode, port) {
        (Some(mode), Some(port)) if errors.is_empty() && !hosts.is_empty() => Ok(Some(Claim {
            hosts,
            port,
            mode,
            path,
        })),
        _ => {
            if errors.is_empty() {
                errors.push(Finding::error("itsup.host lists no host name"));
            }
            Err(errors)
        }
    }
}

/// `<service>.<project><suffix>`: unique per compose project, so worktrees never clash.
fn default_host(c: &Container, suffix: &str) -> Result<String, String> {
    let base = match (c.service(), c.project()) {
        (Some(service), Some(project)) => format!("{service}.{project}"),
        _ => c.name.clone(),
    };
    // Compose allows `_` in project and service names; host names do not.
    let host = format!("{base}{suffix}")
        .to_ascii_lowercase()
        .replace('_', "-");
    check_host(&host)
        .map(|()| host.clone())
        .map_err(|e| format!("inferred host `{host}` is not usable ({e}); set itsup.host"))
}

/// Host names as DNS allows them (RFC 1123 labels), which is also what HAProxy can match safely.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if host.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    if let Some(bad) = host
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '.'))
    {
        return Err(format!(
            "invalid character {bad:?} (letters, digits, `-` and `.` only)"
        ));
    }
    for part in host.split('.') {
        if part.is_empty() {
            return Err("empty label (two dots, or a leading or trailing dot)".into());
        }
        if part.len() > 63 {
            return Err(format!("label `{part}` longer than 63 characters"));
        }
        if part.starts_with('-') || part.ends_with('-') {
            return Err(format!("label `{part}` starts or ends with `-`"));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with `/`".into());
    }
    if let Some(bad) = path
        .chars()
        .find(|ch| !ch.is_ascii_graphic() || matches!(ch, '?' | '#' | '"' | '\\'))
    {
        return Err(format!("invalid character {bad:?} in a path prefix"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::container::Health;
    use super::*;

    fn container(labels: &[(&str, &str)], exposed: &[u16]) -> Container {
        Container {
            id: "0123456789abcdef".into(),
            name: "app-web-1".into(),
            created: "2026-01-01T00:00:00.000000000".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: Some(
                "172.30.0.2"
                    .parse()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
            ),
            exposed_tcp: exposed.to_vec(),
            health: Health::None,
        }
    }

    const COMPOSE: [(&str, &str); 2] = [
        ("com.docker.compose.project", "shop_feature"),
        ("com.docker.compose.service", "web"),
    ];

    #[test]
    fn infers_host_from_compose_and_port_from_single_exposed_port() {
        let c = container(&[COMPOSE[0], COMPOSE[1], ("itsup.enable", "true")], &[8080]);
        let claim = parse(&c, ".localhost").expect("valid").expect("routed");
        assert_eq!(claim.hosts, ["web.shop-feature.localhost"]);
        assert_eq!(claim.port, 8080);
        assert_eq!(claim.mode, Mode::Http);
        assert_eq!(claim.path, None);
        let local = parse(&c, ".local").expect("valid").expect("routed");
        assert_eq!(local.hosts, ["web.shop-feature.local"]);
    }

    #[test]
    fn any_itsup_label_opts_in_and_enable_false_opts_out() {
        let plain = container(&COMPOSE, &[80]);
        assert!(!is_labelled(&plain));
        let c = container(&[COMPOSE[0], COMPOSE[1], ("itsup.port", "3000")], &[80]);
        assert!(is_labelled(&c));
        assert_eq!(
            parse(&c, ".localhost").map(|o| o.map(|c| c.port)),
            Ok(Some(3000))
        );
        let off = container(&[("itsup.enable", "false"), ("itsup.port", "3000")], &[]);
        assert_eq!(parse(&off, ".localhost"), Ok(None));
    }

    #[test]
    fn explicit_hosts_path_and_tcp_passthrough() {
        let c = container(
            &[
                (
                    "itsup.host",
                    "A.example.test, b.example.test,a.example.test",
                ),
                ("itsup.path", "/api"),
            ],
            &[80],
        );
        let claim = parse(&c, ".localhost").expect("valid").expect("routed");
        assert_eq!(claim.hosts, ["a.example.test", "b.example.test"]);
        assert_eq!(claim.path.as_deref(), Some("/api"));

        let db = container(&[("itsup.tls", "passthrough"), ("itsup.port", "5432")], &[]);
        let claim = parse(&db, ".localhost").expect("valid").expect("routed");
        assert_eq!(claim.mode, Mode::Tcp);
        assert_eq!(claim.hosts, ["app-web-1.localhost"]);
        let tcp = container(&[("itsup.mode", "tcp")], &[6379]);
        assert_eq!(
            parse(&tcp, ".localhost").map(|o| o.map(|c| c.mode)),
            Ok(Some(Mode::Tcp))
        );
    }

    #[test]
    fn several_exposed_ports_warn_instead_of_guessing() {
        let c = container(&[("itsup.enable", "true")], &[80, 443]);
        let findings = parse(&c, ".localhost").expect_err("must not guess");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(findings[0].message.contains("80, 443"), "{:?}", findings);
        let none = container(&[("itsup.enable", "true")], &[]);
        let findings = parse(&none, ".localhost").expect_err("no port");
        assert_eq!(findings[0].severity, Severity::Error);
    }

    #[test]
    fn bad_values_are_each_reported() {
        let c = container(
            &[
                ("itsup.port", "0"),
                ("itsup.host", "my host.localhost"),
                ("itsup.mode", "udp"),
                ("itsup.prot", "80"),
                ("itsup.path", "api"),
                ("itsup.enable", "yes"),
            ],
            &[80],
        );
        let findings = parse(&c, ".localhost").expect_err("invalid");
        let text: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(findings.len(), 6, "{text:#?}");
        assert!(findings.iter().all(|f| f.severity == Severity::Error));
        for needle in [
            "itsup.port=`0`",
            "my host",
            "itsup.mode=`udp`",
            "itsup.prot",
            "itsup.path",
            "itsup.enable",
        ] {
            assert!(
                text.iter().any(|m| m.contains(needle)),
                "{needle} missing in {text:#?}"
            );
        }
    }

    #[test]
    fn contradictions_are_errors() {
        let c = container(
            &[("itsup.mode", "http"), ("itsup.tls", "passthrough")],
            &[443],
        );
        assert!(parse(&c, ".localhost").is_err());
        let c = container(
            &[("itsup.tls", "passthrough"), ("itsup.path", "/x")],
            &[443],
        );
        assert!(parse(&c, ".localhost").is_err());
        let c = container(&[("itsup.tls", "terminate")], &[443]);
        assert!(parse(&c, ".localhost").is_err());
        let c = container(&[("itsup.host", " , ")], &[80]);
        assert!(parse(&c, ".localhost").is_err());
        let c = container(&[("itsup.port", "70000")], &[]);
        assert!(parse(&c, ".localhost").is_err());
    }

    #[test]
    fn host_rules() {
        assert!(check_host("web.app.localhost").is_ok());
        assert!(check_host("a-b.c").is_ok());
        assert!(check_host("-a.c").is_err());
        assert!(check_host("a..c").is_err());
        assert!(check_host("a_b.c").is_err());
        assert!(check_host(&"x".repeat(64)).is_err());
    }
}
