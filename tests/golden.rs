//! Golden tests: render the bundled example and every fixture tree under `tests/fixtures/` with
//! each engine the tree lists, and compare every generated file byte for byte. Every rendered
//! `haproxy.cfg` is also checked by the real `haproxy -c`.
//!
//! Update all golden files after an intended change with:
//!     ITSUP_UPDATE_GOLDEN=1 cargo nextest run --test golden

mod common;

use std::path::PathBuf;

use common::golden::*;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example's Traefik output is checked in at the repository root (`proxy/`,
/// `upstream/`), so a review shows the diff of every generator change.
#[test]
fn example_traefik_matches_checked_in_output() {
    let root = manifest();
    let rendered = render_tree(&root.join("projects"), "traefik");
    compare_or_update(&rendered, &root, &["proxy", "upstream"]);
}

#[test]
fn example_haproxy_matches_golden_and_passes_haproxy_check() {
    let root = manifest();
    let rendered = render_tree(&root.join("projects"), "haproxy");
    haproxy_check(&rendered);
    compare_or_update(
        &rendered,
        &root.join("tests/golden/example-haproxy"),
        &["proxy", "upstream"],
    );
}

#[test]
fn fixtures_match_golden() {
    let fixtures = manifest().join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).expect("tests/fixtures") {
        let dir = entry.expect("entry").path();
        let engines_file = dir.join("engines");
        let Ok(engines) = std::fs::read_to_string(&engines_file) else {
            continue;
        };
        for engine in engines.split_whitespace() {
            let rendered = render_tree(&dir.join("projects"), engine);
            match engine {
                "haproxy" => haproxy_check(&rendered),
                "itsup" => itsup_proxy_check(&rendered),
                _ => {}
            }
            compare_or_update(
                &rendered,
                &dir.join("golden").join(engine),
                &["proxy", "upstream"],
            );
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected golden fixtures, found {seen}");
}

/// Engine itsup renders the bundled example's tcp rows: db's plain port of its own and mqtt's
/// passthrough by SNI on the https port, both published by the proxy's compose file; the
/// result passes the proxy's own `--check`. The shop API's http allowlist is taken out of the
/// copy: an http-row allowlist is the request path's (ipAllowList middleware), not this layer's.
#[test]
fn example_itsup_renders_tcp_rows() {
    let src = tempfile::tempdir().expect("tempdir");
    common::copy_dir(&manifest().join("projects"), src.path());
    let shop = src.path().join("shop-api/ingress.yml");
    let text = std::fs::read_to_string(&shop).expect("shop-api ingress");
    let without: String = text
        .lines()
        .filter(|l| !l.contains("allow_source_ips"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&shop, without).expect("write");
    let rendered = render_tree(src.path(), "itsup");
    itsup_proxy_check(&rendered);
    let proxy =
        std::fs::read_to_string(rendered.root().join("proxy/itsup/proxy.yml")).expect("proxy.yml");
    let config = itsup::proxy::config::parse(&proxy, "proxy.yml").expect("valid proxy.yml");
    let db = config
        .tcp
        .iter()
        .find(|l| l.address == "0.0.0.0:5432")
        .expect("db's port");
    assert_eq!(db.routes.len(), 1);
    assert!(db.routes[0].sni.is_empty(), "db takes the whole port");
    let https = config
        .tcp
        .iter()
        .find(|l| l.address == "0.0.0.0:443")
        .expect("SNI routes on the https port");
    let mqtt = https
        .routes
        .iter()
        .find(|r| r.sni == ["mqtt.example.com"])
        .expect("mqtt by SNI");
    assert_eq!(
        mqtt.tls,
        itsup::proxy::config::TcpTlsMode::Passthrough,
        "{proxy}"
    );
    assert!(
        config
            .listeners
            .iter()
            .any(|l| l.address == "0.0.0.0:443" && l.tls.is_some()),
        "the https listener shares the port"
    );
    let compose =
        std::fs::read_to_string(rendered.root().join("proxy/docker-compose.yml")).expect("compose");
    assert!(
        compose.contains("\"5432:5432\""),
        "db's port published: {compose}"
    );
}
