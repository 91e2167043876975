//! Engine traefik against the real Traefik (issue 12): `itsup render` output of the bundled
//! example and of the operator corpus loads into Traefik 3.6 (the rendered default) and the
//! latest 3.x with zero router, service or middleware errors, read from its API; and the bundled
//! example applied end to end through the rendered proxy stack.

mod traefik_support;

use std::path::Path;

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
