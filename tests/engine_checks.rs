//! Every rendered file passes its engine's own check exactly as a plain `itsup render` leaves
//! it: the real `haproxy -c` (no certificate added by the test: render provides the default
//! one) and Compose's own `docker-compose config -q` on every generated compose file, for the
//! bundled example, every fixture tree and the itsUP corpus.
//!
//! Compose v2 (`docker compose`) is not installed here and not packaged by Debian bookworm
//! (`apt-cache policy docker-compose-plugin docker-compose-v2` finds neither), so Compose v1
//! (`docker-compose` 1.29) is the Compose that checks; when the v2 plugin is present it checks too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::golden::render_tree;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (label, projects folder, engines) of every tree itsup must render valid files for.
/// The corpus's upstream files under HAProxy differ from Traefik's only by having no labels,
/// so its second engine checks haproxy.cfg and the proxy stack (CI time: each Compose check
/// is a Python start-up).
fn trees() -> Vec<(String, PathBuf, Vec<String>)> {
    let all = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut trees = vec![(
        "example".to_string(),
        manifest().join("projects"),
        all(&["traefik", "haproxy"]),
    )];
    let fixtures = manifest().join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .expect("tests/fixtures")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        if let Ok(engines) = std::fs::read_to_string(dir.join("engines")) {
            trees.push((
                dir.display().to_string(),
                dir.join("projects"),
                engines.split_whitespace().map(str::to_string).collect(),
            ));
        }
    }
    trees.push((
        "corpus".to_string(),
        manifest().join("../shared/corpus/itsup-projects"),
        all(&["traefik", "haproxy"]),
    ));
    trees
}

fn compose_files(root: &Path, upstream: bool) -> Vec<PathBuf> {
    let mut files = vec![root.join("proxy/docker-compose.yml")];
    if !upstream {
        return files;
    }
    for entry in std::fs::read_dir(root.join("upstream"))
        .into_iter()
        .flatten()
    {
        let file = entry.expect("entry").path().join("docker-compose.yml");
        if file.is_file() {
            files.push(file);
        }
    }
    files
}

/// Whether the operator's own compose file (the input of `file`) fails Compose v1's check too:
/// then the refusal is about a key the operator wrote that v1 predates (the corpus uses
/// `healthcheck.start_interval`, Compose spec 2.20+), not about anything itsup generated.
fn input_fails_too(projects: &Path, root: &Path, file: &Path) -> bool {
    let Ok(rel) = file.strip_prefix(root.join("upstream")) else {
        return false;
    };
    let input = projects.join(rel);
    let fails = input.is_file()
        && !Command::new("docker-compose")
            .arg("-f")
            .arg(&input)
            .args(["config", "-q"])
            .current_dir(input.parent().expect("parent"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run docker-compose")
            .success();
    if fails {
        eprintln!(
            "note: {} is refused by Compose v1 as the operator wrote it; not itsup's output",
            input.display()
        );
    }
    fails
}

/// Compose v1 (1.29) validates against a schema older than the Compose specification: it
/// rejects healthcheck `start_interval`, which the specification, Compose v2 and the Docker
/// engine (API 1.44+) accept and which the itsUP corpus uses. That one v1-only gap is tolerated
/// (only when it is the sole complaint); Compose v2, when installed, still checks it.
fn v1_schema_gap_only(stderr: &str) -> bool {
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.contains("does not match") || l.contains("Unsupported") || l.contains("ERROR")
        })
        .collect();
    stderr.contains("is invalid because")
        && !complaints.is_empty()
        && complaints
            .iter()
            .all(|l| l.contains("healthcheck value 'start_interval' does not match"))
}

fn compose_v2() -> bool {
    Command::new("docker")
        .args(["compose", "version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn rendered_trees_pass_haproxy_and_compose_checks() {
    let v2 = compose_v2();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (label, projects, engines) in trees() {
        for engine in engines {
            let rendered = render_tree(&projects, &engine);
            let root = rendered.root();
            if engine == "haproxy" {
                let out = Command::new("haproxy")
                    .args(["-c", "-f", "haproxy.cfg"])
                    .current_dir(root.join("proxy/haproxy"))
                    .output()
                    .expect("run haproxy (apt-get install haproxy)");
                if !out.status.success() {
                    failures.push(format!(
                        "{label} ({engine}): haproxy -c: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            // Start every compose check at once: each is a separate Python start-up.
            let mut running = Vec::new();
            let upstream = !(label == "corpus" && engine == "haproxy");
            for file in compose_files(root, upstream) {
                let mut commands = vec![{
                    let mut c = Command::new("docker-compose");
                    c.arg("-f").arg(&file);
                    c
                }];
                if v2 {
                    let mut c = Command::new("docker");
                    c.args(["compose", "-f"]).arg(&file);
                    commands.push(c);
                }
                for (v1, mut c) in [true, false].into_iter().zip(commands) {
                    let child = c
                        .args(["config", "-q"])
                        .current_dir(file.parent().expect("parent"))
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("run docker-compose (Compose v1)");
                    running.push((file.clone(), v1, child));
                }
            }
            for (file, v1, child) in running {
                let out = child.wait_with_output().expect("wait");
                checked += 1;
                let stderr = String::from_utf8_lossy(&out.stderr);
                let tolerated =
                    v1 && v1_schema_gap_only(&stderr) || input_fails_too(&projects, root, &file);
                if !out.status.success() && !tolerated {
                    failures.push(format!(
                        "{label} ({engine}): compose config {}: {}",
                        file.strip_prefix(root).unwrap_or(&file).display(),
                        stderr
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} compose files checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
