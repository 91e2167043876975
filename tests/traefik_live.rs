//! Engine traefik against the real Traefik (issue 12): `itsup render` output of the bundled
//! example and of the operator corpus loads into Traefik 3.6 (the rendered default) and the
//! latest 3.x with zero router, service or middleware errors, read from its API; and the bundled
//! example applied end to end through the rendered proxy stack.

mod deploy_support;
mod traefik_support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use traefik_support::{Labelled, VERSIONS, assert_loads, render_copy, unique_id};

/// Renders `projects` on a network of its own, runs its labelled containers, and loads it into
/// each Traefik version.
fn loads_in_every_version(projects: &Path, tolerated: &[&str]) {
    let network = format!("itsupt-tl-{}", unique_id());
    let root = render_copy(projects, &[("network", json!(network))], tolerated);
    let containers = Labelled::start(root.path(), &network);
    for version in VERSIONS {
        let raw = assert_loads(version, root.path(), &containers);
        // The dashboard with TRAEFIK_DASHBOARD_USERS unset: loaded, healthy, and locked.
        assert_eq!(
            raw["routers"]["dashboard@file"]["status"], "enabled",
            "{version}"
        );
        assert_eq!(
            raw["middlewares"]["dashboard-auth@file"]["status"], "enabled",
            "{version}"
        );
    }
}

#[test]
fn example_render_loads_into_real_traefik() {
    loads_in_every_version(&Path::new(env!("CARGO_MANIFEST_DIR")).join("projects"), &[]);
}

/// The operator tree of `../shared/corpus`. Its `itsup` project is refused today (a reserved
/// name); every router render produces is checked, so it is covered once it renders.
#[test]
fn corpus_render_loads_into_real_traefik() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/itsup-projects");
    let corpus = if corpus.is_dir() {
        corpus
    } else {
        Path::new("/work/shared/corpus/itsup-projects").to_path_buf()
    };
    loads_in_every_version(&corpus, &["itsup"]);
}

/// The bundled example applied with engine traefik (the rendered proxy stack: `traefik:v3.6`
/// and the Docker socket proxy stand-in), end to end through the real Traefik: every router
/// enabled without error in its API, each name and path answered by the right container,
/// priorities, `strip_prefix`, the allowlist, the redirect to a non-default https port, the
/// dashboard's basic auth, the tcp hostport, SNI passthrough, TLS terminated with a PROXY v2
/// header at the backend, h2c to both gRPC replicas. The copy of `projects/` is edited like the
/// haproxy test's (ports, network, subnet, the db host port, the nas address) plus one row:
/// the mqtt broker's port 8080 as a TLS-terminated tcp route (the example has none).
#[test]
fn deploy_bundled_example_through_traefik() {
    use deploy_support::{EXAMPLE_IMAGES, ExampleNetworks, Fixture, eventually, tcp_get};
    use traefik_support::{
        body_of_200, client_hello, grpc_health, https_get, https_raw, raw_exchange,
    };

    deploy_support::example_host_clear();
    traefik_support::ensure_images();
    let mut tags = deploy_support::ImageTags::new();
    for image in EXAMPLE_IMAGES {
        tags.tag(deploy_support::APP_EXAMPLE, image);
    }
    let f = Fixture::example_traefik();
    let _networks = ExampleNetworks(f.root.display().to_string());
    let (https, http) = (f.https_port, f.http_port);
    let mqtt = std::fs::read_to_string(f.root.join("projects/mqtt/ingress.yml")).expect("mqtt");
    f.write(
        "projects/mqtt/ingress.yml",
        &format!(
            "{mqtt}  - service: broker\n    router: tcp\n    domain: mqtts.example.com\n    tls:\n      main: mqtts.example.com\n    port: 8080\n"
        ),
    );
    f.write(
        "secrets/itsup.txt",
        &format!(
            "TRAEFIK_DASHBOARD_USERS={}\n",
            traefik_support::htpasswd("admin", "s3cret")
        ),
    );
    let db_port: u16 = std::fs::read_to_string(f.root.join("projects/db/ingress.yml"))
        .expect("db ingress")
        .lines()
        .find_map(|l| l.trim().strip_prefix("hostport:")?.trim().parse().ok())
        .expect("db hostport");

    f.itsup_expect(&["apply"], 0);

    // Traefik's own view, read through the rendered dashboard router with credentials: every
    // router render produced, none disabled, nothing in error.
    let want = traefik_support::rendered_routers(&f.root);
    let creds = Some("admin:s3cret");
    let mut last = serde_json::Value::Null;
    let loaded = eventually(Duration::from_secs(60), || {
        let reply = https_get(https, "traefik.example.com", "/api/rawdata", creds).ok()?;
        last = serde_json::from_str(&body_of_200(&reply)?).ok()?;
        (traefik_support::missing_routers(&last, &want).is_empty()
            && traefik_support::problems(&last).is_empty())
        .then(|| last.clone())
    });
    let raw = loaded.unwrap_or_else(|| {
        panic!(
            "Traefik's API: missing {:?}, problems {:#?}",
            traefik_support::missing_routers(&last, &want),
            traefik_support::problems(&last)
        )
    });

    // The dashboard: 401 without credentials, 200 with them.
    let denied = https_get(https, "traefik.example.com", "/api/overview", None).expect("dashboard");
    assert!(denied.starts_with("HTTP/1.0 401"), "{denied}");

    // The website on both names; the shop API's path on the apex beats the website's host-only
    // route (priority) and refuses this client (allowlist).
    for host in ["example.com", "www.example.com"] {
        let reply = https_get(https, host, "/", None).expect("website");
        assert_eq!(
            body_of_200(&reply).as_deref(),
            Some("version=example\n"),
            "{host}: {reply}"
        );
    }
    let reply = https_get(https, "example.com", "/api/orders", None).expect("shop api");
    assert!(reply.starts_with("HTTP/1.0 403"), "allowlist: {reply}");

    // http → https keeps the non-default https port.
    let reply = plain_get(http, "example.com", "/shop?x=1");
    let location = format!("location: https://example.com:{https}/shop?x=1");
    assert!(
        reply.starts_with("HTTP/1.0 301") && reply.to_ascii_lowercase().contains(&location),
        "redirect: {reply}"
    );

    // The database's dedicated tcp port.
    let reply = eventually(Duration::from_secs(20), || tcp_get(db_port)).expect("db port");
    assert!(reply.contains("version="), "{reply}");

    // SNI passthrough: the ClientHello for mqtt.example.com reaches the broker untouched (the
    // test app answers the bytes in plain HTTP; Traefik terminating would answer in TLS).
    let mut hello = client_hello("mqtt.example.com");
    hello.extend_from_slice(b"\r\n\r\n");
    let reply = raw_exchange(https, &hello);
    assert!(reply.starts_with("HTTP/1.1 200"), "passthrough: {reply:?}");

    // TLS terminated by Traefik, then a PROXY v2 header in front of the bytes at the backend.
    let reply = https_raw(
        https,
        "mqtts.example.com",
        "GET / HTTP/1.1\r\nHost: mqtts.example.com\r\nConnection: close\r\n\r\n",
    )
    .expect("terminated tcp");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("X-Proxy-Source: "),
        "PROXY v2 at the backend: {reply}"
    );
    // The client's address survives the edge (its own PROXY v2 header to Traefik): the
    // backend is told of the client as the edge saw it, never of the edge itself.
    let edge = f
        .proxy_container("edge-net")
        .expect("the edge's holder runs");
    let edge_ip = deploy_support::docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            f.network
        ),
        &edge,
    ]);
    let source = reply
        .lines()
        .find_map(|l| l.strip_prefix("X-Proxy-Source: "))
        .unwrap_or_default()
        .trim();
    let client: Option<std::net::SocketAddr> = source.parse().ok();
    assert!(
        !edge_ip.trim().is_empty() && client.is_some_and(|c| c.ip().to_string() != edge_ip.trim()),
        "the backend sees the client ({source}), not the edge ({})",
        edge_ip.trim()
    );

    // h2c to the gRPC service, both replicas in Traefik's load balancer.
    let status = eventually(Duration::from_secs(20), || {
        grpc_health(https, "grpc.example.com").ok()
    });
    assert_eq!(status, Some(1), "gRPC health SERVING through Traefik");
    let servers = &raw["services"]["greeter-greeter-50051@docker"]["serverStatus"];
    assert_eq!(
        servers.as_object().map(|s| s.len()),
        Some(2),
        "both greeter replicas: {servers}"
    );
    assert!(servers.to_string().contains("h2c://"), "{servers}");

    // strip_prefix, once this client is allowed: `/api/health` reaches the API as `/health`.
    f.edit(
        "projects/shop-api/ingress.yml",
        "allow_source_ips: [203.0.113.0/24, 10.8.0.0/16]",
        "allow_source_ips: [0.0.0.0/0]",
    );
    f.itsup_expect(&["apply"], 0);
    let reply = eventually(Duration::from_secs(30), || {
        let r = https_get(https, "example.com", "/api/health", None).ok()?;
        body_of_200(&r).filter(|b| b == "ok\n")
    });
    assert_eq!(
        reply.as_deref(),
        Some("ok\n"),
        "prefix stripped before the API"
    );
    let reply = https_get(https, "example.com", "/api/orders", None).expect("shop api");
    assert_eq!(
        body_of_200(&reply).as_deref(),
        Some("version=unknown\n"),
        "{reply}"
    );
}

/// A plain-HTTP/1.0 GET; the reply's text.
fn plain_get(port: u16, host: &str, path: &str) -> String {
    traefik_support::raw_exchange(
        port,
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes(),
    )
}
