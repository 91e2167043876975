//! The compiled routing table: exact hosts in a hash map, wildcard suffixes longest first,
//! then the host-less default routes; inside each group, longest path prefix first. A request
//! whose path matches nothing in its host group falls through to the next group.

use std::collections::HashMap;

pub struct RouteTable {
    exact: HashMap<String, Vec<usize>>,
    /// (".example.com", routes), longest suffix first.
    wildcard: Vec<(String, Vec<usize>)>,
    default: Vec<usize>,
    /// Normalised prefix per route: no trailing slash, `""` for `/`.
    prefixes: Vec<String>,
}

/// Result of a lookup.
pub struct Match {
    pub route: usize,
    /// Length of the matched prefix (what `strip_prefix` removes).
    pub prefix_len: usize,
}

impl RouteTable {
    /// `routes` are (host pattern, path prefix) in config order.
    pub fn new<'a>(routes: impl Iterator<Item = (Option<&'a str>, &'a str)>) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut wildcard: Vec<(String, Vec<usize>)> = Vec::new();
        let mut default = Vec::new();
        let mut prefixes = Vec::new();
        for (i, (host, path)) in routes.enumerate() {
            prefixes.push(path.trim_end_matches('/').to_string());
            match host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()) {
                None => default.push(i),
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => match wildcard.iter_mut().find(|(s, _)| s == suffix) {
                        Some((_, list)) => list.push(i),
                        None => wildcard.push((suffix.to_string(), vec![i])),
                    },
                    None => exact.entry(h).or_default().push(i),
                },
            }
        }
        let by_len =
            |list: &mut Vec<usize>| list.sort_by_key(|&i| std::cmp::Reverse(prefixes[i].len()));
        exact.values_mut().for_each(by_len);
        wildcard.iter_mut().for_each(|(_, l)| by_len(l));
        by_len(&mut default);
        wildcard.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Self {
            exact,
            wildcard,
            default,
            prefixes,
        }
    }

    pub fn find(&self, host: Option<&str>, path: &str) -> Option<Match> {
        if let Some(host) = host.map(normalise_host) {
            let lowered;
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                lowered = host.to_ascii_lowercase();
                lowered.as_str()
            } else {
                host
            };
            if let Some(list) = self.exact.get(host)
                && let Some(m) = self.first_path_match(list, path)
            {
                return Some(m);
            }
            for (suffix, list) in &self.wildcard {
                if host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && let Some(m) = self.first_path_match(list, path)
                {
                    return Some(m);
                }
            }
        }
        self.first_path_match(&self.default, path)
    }

    fn first_path_match(&self, list: &[usize], path: &str) -> Option<Match> {
        list.iter().find_map(|&i| {
            let p = &self.prefixes[i];
            let hit = path.starts_with(p.as_str())
                && matches!(path.as_bytes().get(p.len()), None | Some(b'/'));
            hit.then_some(Match {
                route: i,
                prefix_len: p.len(),
            })
        })
    }
}

/// Drops the port and a trailing dot from a Host value.
fn normalise_host(host: &str) -> &str {
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    without_port.trim_end_matches('.')
}

/// Path after removing a matched prefix; never empty.
pub fn strip(path: &str, prefix_len: usize) -> &str {
    match path.get(prefix_len..) {
        Some(rest) if !rest.is_empty() => rest,
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(
            [
                (Some("app.example.com"), "/"),
                (Some("app.example.com"), "/api"),
                (Some("app.example.com"), "/api/v2/"),
                (Some("*.example.com"), "/"),
                (Some("*.deep.example.com"), "/"),
                (None, "/static"),
                (None, "/"),
            ]
            .into_iter(),
        )
    }

    fn route(host: Option<&str>, path: &str) -> Option<usize> {
        table().find(host, path).map(|m| m.route)
    }

    #[test]
    fn host_and_longest_prefix() {
        assert_eq!(route(Some("app.example.com"), "/"), Some(0));
        assert_eq!(route(Some("APP.example.com:8080"), "/api"), Some(1));
        assert_eq!(route(Some("app.example.com"), "/api/x"), Some(1));
        assert_eq!(route(Some("app.example.com"), "/apix"), Some(0));
        assert_eq!(route(Some("app.example.com"), "/api/v2/users"), Some(2));
        assert_eq!(route(Some("x.example.com"), "/"), Some(3));
        assert_eq!(route(Some("a.b.example.com"), "/"), Some(3));
        assert_eq!(route(Some("x.deep.example.com"), "/"), Some(4));
        assert_eq!(route(Some("example.com"), "/static/a.css"), Some(5));
        assert_eq!(route(None, "/anything"), Some(6));
    }

    #[test]
    fn strip_keeps_a_slash() {
        assert_eq!(strip("/api", 4), "/");
        assert_eq!(strip("/api/x", 4), "/x");
        assert_eq!(strip("/x", 0), "/x");
    }

    #[test]
    fn no_default_means_no_match() {
        let t = RouteTable::new([(Some("a.com"), "/a")].into_iter());
        assert!(t.find(Some("a.com"), "/b").is_none());
        assert!(t.find(Some("b.com"), "/a").is_none());
    }
}
