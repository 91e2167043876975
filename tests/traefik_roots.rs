//! Two itsup roots with engine traefik on one Docker engine: each Traefik's Docker provider
//! routes only the containers of its own platform (the rendered constraint on the
//! `traefik.docker.network` label), as each Traefik's own API says. The API is read the way
//! apply reads it before admitting a new Traefik: through the rendered `itsup-api` router on
//! the `ping` entrypoint, from the host (the proxy network's gateway), nothing published.

mod deploy_support;

use std::io::{Read, Write};
use std::time::Duration;

use deploy_support::*;

/// No CA is reachable from the tests: the resolver points at a closed local port.
const NO_ACME: &str = "acme:\n  caServer: https://127.0.0.1:9/dir\n";

/// Traefik's `/api/rawdata` on its ping entrypoint, from the host.
fn rawdata(f: &Fixture) -> Option<serde_json::Value> {
    let traefik = f.proxy_container("traefik")?;
    let ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            f.network
        ),
        &traefik,
    ]);
    let addr: std::net::SocketAddr = format!("{}:8082", ip.trim()).parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /api/rawdata HTTP/1.0\r\nHost: traefik\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200"))
        .then(|| serde_json::from_str(body).ok())
        .flatten()
}

/// Names of the routers Traefik took from container labels.
fn docker_routers(raw: &serde_json::Value) -> Vec<String> {
    raw["routers"]
        .as_object()
        .map(|r| {
            r.keys()
                .filter(|k| k.ends_with("@docker"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_roots_on_one_engine_each_traefik_routes_only_its_own_containers() {
    clean_stale();
    let a = Fixture::traefik(TRAEFIK, NO_ACME);
    let b = Fixture::traefik(TRAEFIK, NO_ACME);
    let one = a.app_project("one", APP_V1, "");
    let two = b.app_project("two", APP_V2, "");
    a.itsup_expect(&["apply"], 0);
    b.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(30), || a.get("one.test").ok())
        .expect("root a serves its app");
    assert_eq!(body.trim(), "version=v1");
    let body = eventually(Duration::from_secs(30), || b.get("two.test").ok())
        .expect("root b serves its app");
    assert_eq!(body.trim(), "version=v2");

    for (f, own, other) in [(&a, &one, &two), (&b, &two, &one)] {
        let raw = eventually(Duration::from_secs(10), || rawdata(f))
            .expect("Traefik's API answers the host on the ping entrypoint");
        let routers = docker_routers(&raw);
        assert!(
            !routers.is_empty() && routers.iter().all(|r| r.starts_with(own.as_str())),
            "Traefik of {own} routes only its own containers: {routers:?}"
        );
        assert!(
            !routers.iter().any(|r| r.starts_with(other.as_str())),
            "Traefik of {own} routes {other}'s containers: {routers:?}"
        );
    }
    let err = b
        .get("one.test")
        .expect_err("root b's Traefik does not route root a's app");
    assert!(err.contains("404"), "{err}");
}
