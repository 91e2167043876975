//! Certificate ownership: which router asks the ACME resolver for which names.
//!
//! Several rows can name the same host (the website's apex and www on one row, the apex again
//! on another project's path row). If each of their routers requested a certificate, Traefik
//! would order the same name several times, and which order wins would depend on its internal
//! ordering. So every name gets exactly one owner, decided here from the Plan: the dashboard
//! for its domain, then routes asking for more names first (a row's `tls.main` + `sans` is one
//! certificate, kept whole where possible), then the Plan's order. An owner requests only the
//! names no earlier owner took; the other routers terminate TLS with whatever certificate the
//! proxy holds for the name.

use std::collections::{BTreeMap, BTreeSet};

use super::{HttpRoute, TcpRoute, TcpTls};

/// Owner key of the dashboard's router.
pub const DASHBOARD: &str = "dashboard";

/// Router name → the names it requests (main first). Every requested name appears once.
pub fn certificate_owners(
    dashboard: Option<&str>,
    http: &[HttpRoute],
    tcp: &[TcpRoute],
) -> BTreeMap<String, Vec<String>> {
    let mut candidates: Vec<(&str, &[String])> = http
        .iter()
        .filter(|r| r.https)
        .map(|r| (r.name.as_str(), r.cert_names.as_slice()))
        .chain(
            tcp.iter()
                .filter(|r| r.tls == TcpTls::Terminate)
                .map(|r| (r.name.as_str(), r.sni.as_slice())),
        )
        .collect();
    // Stable: equal sizes keep the Plan's order (http before tcp, most specific first).
    candidates.sort_by_key(|(_, names)| std::cmp::Reverse(names.len()));

    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let mut owners = BTreeMap::new();
    let dashboard_names = dashboard.map(|d| vec![d.to_string()]);
    if let Some(names) = &dashboard_names {
        taken.extend(names.iter().map(String::as_str));
        owners.insert(DASHBOARD.to_string(), names.clone());
    }
    for (router, names) in candidates {
        let mine: Vec<String> = names
            .iter()
            .filter(|n| taken.insert(n.as_str()))
            .cloned()
            .collect();
        if !mine.is_empty() {
            owners.insert(router.to_string(), mine);
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Backend, Server};

    fn route(name: &str, names: &[&str], prefix: Option<&str>) -> HttpRoute {
        HttpRoute {
            name: name.into(),
            project: name.into(),
            service: Some("s".into()),
            hosts: names.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.map(str::to_string),
            strip_prefix: false,
            https: true,
            cert_names: names.iter().map(|h| h.to_string()).collect(),
            allow_source_ips: vec![],
            middlewares: vec![],
            backend: Backend {
                name: name.into(),
                servers: vec![Server {
                    address: "s".into(),
                    port: 80,
                }],
                dns: true,
                grpc: false,
            },
        }
    }

    #[test]
    fn each_name_has_one_owner_whatever_the_order() {
        // The example: the shop API's path row comes first in the Plan, yet the website's row
        // (apex + www, one certificate) owns both names.
        let api = route("shop-api-api-8080", &["example.com"], Some("/api"));
        let web = route("web-app-80", &["example.com", "www.example.com"], None);
        let dash = route("x", &["traefik.example.com"], None);
        for http in [
            vec![api.clone(), web.clone(), dash.clone()],
            vec![web.clone(), dash.clone(), api.clone()],
        ] {
            let owners = certificate_owners(Some("traefik.example.com"), &http, &[]);
            assert_eq!(
                owners,
                BTreeMap::from([
                    (
                        DASHBOARD.to_string(),
                        vec!["traefik.example.com".to_string()]
                    ),
                    (
                        "web-app-80".to_string(),
                        vec!["example.com".to_string(), "www.example.com".to_string()]
                    ),
                ])
            );
        }
        // A row sharing one name and adding another requests only the new one.
        let more = route("more", &["www.example.com", "shop.example.com"], Some("/s"));
        let owners = certificate_owners(None, &[web, more], &[]);
        assert_eq!(owners["more"], vec!["shop.example.com".to_string()]);
    }
}
