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
