//! The CLI contract (README, docs/deploy.md): exit codes, output formats, what `render` writes and
//! removes, `schema`, `init`/`create`, and how the root is chosen.

mod common;

use std::io::Read;
use std::process::Stdio;

use common::*;
use serde_json::Value;

const BAD_ROW: &str = "ingress:\n  - service: web\n    domian: bad.example.com\n";
const BAD_LINE: &str =
    "projects/bad/ingress.yml:3:5: error: unknown key `domian` (did you mean `domain`?)";

/// How many files `proxy/` and `upstream/` hold.
fn generated_count(root: &Root) -> usize {
    snapshot(&root.join("proxy")).len() + snapshot(&root.join("upstream")).len()
}

fn two_projects() -> Root {
    let root = Root::new();
    root.project("alpha", "alpha.example.com")
        .project("beta", "beta.example.com");
    root
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_valid_tree_exits_0() {
    let root = two_projects();
    let run = root.itsup(&["validate"]);
    run.code(0).exactly(&[]);
    assert_eq!(run.stdout.trim(), "2 project(s) valid");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn validate_reports_every_error_at_once_and_exits_1() {
    let root = two_projects();
    root.ingress("bad", BAD_ROW, &["web"]);
    root.ingress(
        "worse",
        "ingress:\n  - service: web\n    domain: worse.example.com\n    port: 0\n",
        &["web"],
    );
    let run = root.itsup(&["validate"]);
    run.code(1).exactly(&[
        BAD_LINE,
        "projects/worse/ingress.yml:4:11: error: `port` is 0, out of the port range 1–65535",
    ]);
    assert!(
        run.stderr.contains("2 error(s); left out: bad, worse"),
        "{}",
        run.stderr
    );
    // Validation writes nothing.
    assert!(!root.exists("proxy") && !root.exists("upstream"));
}

#[test]
fn validate_json_format() {
    let root = two_projects();
    root.ingress("bad", BAD_ROW, &["web"]);
    root.write("projects/itsup.yml", "proxy:\n  subnet: nope\n");
    let run = root.itsup(&["validate", "--format", "json"]);
    run.code(1);
    let v: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(
        v,
        serde_json::json!([
            {
                "file": "projects/bad/ingress.yml",
                "line": 3,
                "column": 5,
                "project": "bad",
                "message": "unknown key `domian` (did you mean `domain`?)"
            },
            {
                "file": "projects/itsup.yml",
                "line": 2,
                "column": 11,
                "project": null,
                "message": "`subnet` \"nope\" is not an IPv4 CIDR range"
            }
        ])
    );
}

#[test]
fn validate_json_of_a_valid_tree_is_an_empty_array() {
    let root = two_projects();
    let run = root.itsup(&["validate", "--format", "json"]);
    run.code(0);
    let v: Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn validate_selected_projects() {
    let root = two_projects();
    root.ingress("bad", BAD_ROW, &["web"]);
    root.itsup(&["validate", "alpha"]).code(0).exactly(&[]);
    root.itsup(&["validate", "alpha", "bad"])
        .code(1)
        .exactly(&[BAD_LINE]);
    let run = root.itsup(&["validate", "nope"]);
    run.code(1);
    assert!(run.stderr.contains("no project `nope`"), "{}", run.stderr);
}

#[test]
fn validate_selected_projects_still_checks_platform_files() {
    let root = two_projects();
    root.write("projects/itsup.yml", "proxy:\n  subnet: nope\n");
    root.itsup(&["validate", "alpha"])
        .code(1)
        .exactly(&["projects/itsup.yml:2:11: error: `subnet` \"nope\" is not an IPv4 CIDR range"]);
}

// ---------------------------------------------------------------------------------------------
// diff
// ---------------------------------------------------------------------------------------------

#[test]
fn diff_shows_new_files_and_exits_2_without_writing() {
    let root = two_projects();
    let run = root.itsup(&["diff", "--color", "never"]);
    run.code(2).exactly(&[]);
    assert!(
        run.stdout
            .contains("--- /dev/null\n+++ b/upstream/alpha/docker-compose.yml\n@@ -0,0 +1,"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("--- /dev/null\n+++ b/proxy/traefik/traefik.yml\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!("+{HEADER}\n")));
    assert!(
        !run.stdout.contains('\x1b'),
        "escape codes with --color never"
    );
    assert!(
        !root.exists("proxy") && !root.exists("upstream"),
        "diff wrote files"
    );
}

#[test]
fn diff_after_render_is_empty_and_exits_0() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    let run = root.itsup(&["diff"]);
    run.code(0).exactly(&[]);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn verbose_logs_the_generator_stages_and_quiet_by_default() {
    let root = two_projects();
    let plain = root.itsup(&["render"]);
    plain.code(0);
    assert!(!plain.stderr.contains("rendered"), "{}", plain.stderr);
    let verbose = root.itsup(&["-v", "render"]);
    verbose.code(0);
    for stage in ["loaded", "validated", "rendered"] {
        assert!(
            verbose.stderr.contains(stage),
            "-v must log the `{stage}` stage: {}",
            verbose.stderr
        );
    }
    assert!(
        !verbose.stderr.contains('\u{1b}'),
        "no colour when stderr is not a terminal: {}",
        verbose.stderr
    );
}

#[test]
fn diff_shows_modified_and_deleted_files() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    std::fs::remove_dir_all(root.join("projects/beta")).expect("rm beta");
    root.write(
        "projects/alpha/ingress.yml",
        "ingress:\n  - service: web\n    domain: alpha2.example.com\n    port: 80\n",
    );
    let run = root.itsup(&["diff", "--color", "never"]);
    run.code(2);
    assert!(
        run.stdout
            .contains("--- a/upstream/beta/docker-compose.yml\n+++ /dev/null\n@@ -1,"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "--- a/upstream/alpha/docker-compose.yml\n+++ b/upstream/alpha/docker-compose.yml\n"
        ),
        "{}",
        run.stdout
    );
    let changed = |sign: char, host: &str| {
        run.stdout.lines().any(|l| {
            l.starts_with(sign)
                && l.contains("traefik.http.routers.alpha-web-80.rule")
                && l.contains(&format!("Host(`{host}`)"))
        })
    };
    assert!(changed('-', "alpha.example.com"), "{}", run.stdout);
    assert!(changed('+', "alpha2.example.com"), "{}", run.stdout);
    // Nothing changed on disk.
    assert!(root.exists("upstream/beta/docker-compose.yml"));
}

#[test]
fn diff_of_selected_projects() {
    let root = two_projects();
    let run = root.itsup(&["diff", "beta"]);
    run.code(2);
    assert!(
        run.stdout
            .contains("+++ b/upstream/beta/docker-compose.yml")
    );
    assert!(!run.stdout.contains("upstream/alpha"), "{}", run.stdout);
    assert!(!run.stdout.contains("proxy/"), "{}", run.stdout);
    root.itsup(&["render"]).code(0);
    root.itsup(&["diff", "beta"]).code(0);
}

#[test]
fn diff_color() {
    let root = two_projects();
    let always = root.itsup(&["diff", "--color", "always"]);
    always.code(2);
    assert!(always.stdout.contains("\x1b[32m+"), "no colour with always");
    let never = root.itsup(&["diff", "--color", "never"]);
    never.code(2);
    assert!(!never.stdout.contains('\x1b'));
    // auto: stdout is a pipe here, so no colour.
    let mut c = cmd();
    c.env_remove("NO_COLOR")
        .arg("--root")
        .arg(root.path())
        .arg("diff");
    let auto = run(c);
    auto.code(2);
    assert!(!auto.stdout.contains('\x1b'), "colour on a pipe with auto");
    // The plain text is the same either way.
    assert_eq!(strip_ansi(&always.stdout), never.stdout);
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn diff_with_invalid_platform_exits_1() {
    let root = two_projects();
    root.write("projects/itsup.yml", "proxy:\n  subnet: nope\n");
    let run = root.itsup(&["diff", "--color", "never"]);
    run.code(1)
        .exactly(&["projects/itsup.yml:2:11: error: `subnet` \"nope\" is not an IPv4 CIDR range"]);
    assert!(run.stdout.is_empty());
    assert!(!run.stderr.contains('\x1b'));
}

#[test]
fn diff_with_an_invalid_project_exits_1_but_shows_the_rest() {
    let root = two_projects();
    root.ingress("bad", BAD_ROW, &["web"]);
    let run = root.itsup(&["diff", "--color", "never"]);
    run.code(1).exactly(&[BAD_LINE]);
    assert!(
        run.stdout
            .contains("+++ b/upstream/alpha/docker-compose.yml")
    );
    assert!(!run.stdout.contains("upstream/bad"));
}

#[test]

fn diff_into_a_closed_pipe_does_not_panic() {
    let root = Root::new();
    for i in 0..200 {
        root.project(&format!("p{i}"), &format!("p{i}.example.com"));
    }
    let mut child = std::process::Command::new(itsup_bin())
        .args(["--color", "never", "diff"])
        .env_remove("ITSUP_ROOT")
        .current_dir(root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Read a little, then hang up like `| head` does.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let _ = stdout.read(&mut buf);
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(
        !stderr.contains("panicked"),
        "status {status:?}\n--- stderr\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// render
// ---------------------------------------------------------------------------------------------

#[test]
fn render_writes_everything_then_nothing() {
    let root = two_projects();
    let run = root.itsup(&["render"]);
    run.code(0).exactly(&[]);
    assert!(
        run.stdout
            .contains("created upstream/alpha/docker-compose.yml")
    );
    let total = generated_count(&root);
    assert_eq!(
        total, 10,
        "proxy compose, traefik.yml, 4 dynamic files, the edge's 2 files, 2 projects"
    );
    assert!(
        run.stdout
            .contains(&format!("{total} file(s) changed, 0 unchanged")),
        "{}",
        run.stdout
    );
    for f in [
        "proxy/docker-compose.yml",
        "proxy/traefik/traefik.yml",
        "proxy/traefik/dynamic/routers-http.yml",
        "upstream/alpha/docker-compose.yml",
        "upstream/beta/docker-compose.yml",
    ] {
        assert!(root.read(f).starts_with(&format!("{HEADER}\n")), "{f}");
    }
    let before = snapshot(root.path());
    let again = root.itsup(&["render"]);
    again.code(0);
    assert_eq!(
        again.stdout.trim(),
        format!("0 file(s) changed, {total} unchanged")
    );
    assert_eq!(
        snapshot(root.path()),
        before,
        "unchanged files were rewritten"
    );
    // No temp files left behind.
    assert!(
        !before
            .keys()
            .any(|p| p.to_string_lossy().contains(".itsup-")),
        "{before:?}"
    );
}

#[test]
fn render_rewrites_only_changed_files() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    let before = snapshot(root.path());
    root.write(
        "projects/beta/docker-compose.yml",
        "services:\n  web:\n    image: nginx:1.27\n",
    );
    let run = root.itsup(&["render"]);
    run.code(0);
    assert_eq!(
        run.stdout.trim(),
        format!(
            "updated upstream/beta/docker-compose.yml\n1 file(s) changed, {} unchanged",
            generated_count(&root) - 1
        )
    );
    let after = snapshot(root.path());
    for (path, stamp) in &before {
        let rel = path.strip_prefix(root.path()).expect("rel");
        if rel.starts_with("upstream/beta")
            || rel.starts_with("projects/beta")
            || rel == std::path::Path::new(".itsup/last-good/beta.json")
        {
            continue;
        }
        assert_eq!(
            after.get(path),
            Some(stamp),
            "{} was rewritten",
            rel.display()
        );
    }
    assert!(
        root.read("upstream/beta/docker-compose.yml")
            .contains("nginx:1.27")
    );
}

#[test]
fn render_repairs_a_hand_edited_generated_file() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    let good = root.read("upstream/alpha/docker-compose.yml");
    root.write(
        "upstream/alpha/docker-compose.yml",
        format!("{good}# edited\n"),
    );
    let run = root.itsup(&["render"]);
    run.code(0);
    assert!(
        run.stdout
            .contains("updated upstream/alpha/docker-compose.yml")
    );
    assert_eq!(root.read("upstream/alpha/docker-compose.yml"), good);
}

#[test]
fn render_removes_stale_files_of_a_deleted_project() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    std::fs::remove_dir_all(root.join("projects/beta")).expect("rm");
    let run = root.itsup(&["render"]);
    run.code(0);
    assert!(
        run.stdout
            .contains("removed upstream/beta/docker-compose.yml"),
        "{}",
        run.stdout
    );
    assert!(
        !root.exists("upstream/beta"),
        "empty project folder left behind"
    );
    assert!(root.exists("upstream/alpha/docker-compose.yml"));
    assert!(!root.generated_text().contains("beta.example.com"));
    root.itsup(&["diff"]).code(0);
}

#[test]
fn render_never_deletes_hand_written_files() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    root.write("proxy/notes.yml", "# my notes\nkeep: me\n");
    root.write("proxy/traefik/dynamic/custom.yml", "http: {}\n");
    root.write(
        "proxy/haproxy/certs/site.pem",
        "-----BEGIN CERTIFICATE-----\n",
    );
    root.write("upstream/beta/.env", "SECRET=1\n");
    root.write("upstream/gone/data.txt", "user data\n");
    std::fs::remove_dir_all(root.join("projects/beta")).expect("rm");
    let run = root.itsup(&["render"]);
    run.code(0);
    for f in [
        "proxy/notes.yml",
        "proxy/traefik/dynamic/custom.yml",
        "proxy/haproxy/certs/site.pem",
        "upstream/beta/.env",
        "upstream/gone/data.txt",
    ] {
        assert!(root.exists(f), "{f} was deleted\n{}", run.stdout);
    }
    assert!(!root.exists("upstream/beta/docker-compose.yml"));
    // A second run has nothing to remove.
    assert!(root.itsup(&["render"]).stdout.contains("0 file(s) changed"));
}

#[test]
fn render_keeps_the_files_of_a_broken_project() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    let before = root.read("upstream/beta/docker-compose.yml");
    root.write(
        "projects/beta/ingress.yml",
        "ingress:\n  - service: web\n    domian: beta.example.com\n",
    );
    let run = root.itsup(&["render"]);
    run.code(1).exactly(&[
        "projects/beta/ingress.yml:3:5: error: unknown key `domian` (did you mean `domain`?)",
    ]);
    assert!(!run.stdout.contains("removed"), "{}", run.stdout);
    assert_eq!(root.read("upstream/beta/docker-compose.yml"), before);
    let diff = root.itsup(&["diff"]);
    diff.code(1);
    assert!(!diff.stdout.contains("upstream/beta"), "{}", diff.stdout);
}

#[test]
fn render_with_invalid_platform_writes_nothing() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    let before = snapshot(root.path());
    root.write(
        "projects/itsup.yml",
        "proxy:\n  engine: haproxy\n  subnet: nope\n",
    );
    let run = root.itsup(&["render"]);
    run.code(1);
    assert!(run.stderr.contains("nothing written"), "{}", run.stderr);
    let after = snapshot(root.path());
    let generated = |m: &std::collections::BTreeMap<std::path::PathBuf, Stamp>| {
        m.iter()
            .filter(|(p, _)| !p.starts_with(root.join("projects")))
            .map(|(p, s)| (p.clone(), s.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(generated(&after), generated(&before));
}

#[test]
fn render_out_dir() {
    let root = two_projects();
    let out = tempfile::tempdir().expect("tempdir");
    let target = out.path().join("build");
    let run = root.itsup(&["render", "--out", target.to_str().expect("utf8")]);
    run.code(0);
    assert!(target.join("upstream/alpha/docker-compose.yml").is_file());
    assert!(target.join("proxy/traefik/traefik.yml").is_file());
    assert!(
        !root.exists("proxy") && !root.exists("upstream"),
        "wrote into the root"
    );
    // Same bytes as a render into the root.
    root.itsup(&["render"]).code(0);
    for f in [
        "upstream/alpha/docker-compose.yml",
        "proxy/docker-compose.yml",
    ] {
        assert_eq!(
            std::fs::read_to_string(target.join(f)).expect("read"),
            root.read(f),
            "{f}"
        );
    }
    let again = root.itsup(&["render", "--out", target.to_str().expect("utf8")]);
    assert!(
        again.stdout.contains("0 file(s) changed"),
        "{}",
        again.stdout
    );
}

#[test]
fn render_is_deterministic_across_roots() {
    let a = two_projects();
    let b = two_projects();
    a.itsup(&["render"]).code(0);
    b.itsup(&["render"]).code(0);
    for f in [
        "proxy/docker-compose.yml",
        "proxy/traefik/traefik.yml",
        "proxy/traefik/dynamic/routers-http.yml",
        "proxy/traefik/dynamic/middlewares.yml",
        "upstream/alpha/docker-compose.yml",
    ] {
        assert_eq!(a.read(f), b.read(f), "{f}");
    }
}

#[test]
fn render_quiet() {
    let root = two_projects();
    let run = root.itsup(&["-q", "render"]);
    run.code(0);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(root.exists("upstream/alpha/docker-compose.yml"));
}

#[test]
fn switching_engine_removes_the_other_engines_files() {
    let root = two_projects();
    root.itsup(&["render"]).code(0);
    assert!(root.exists("proxy/traefik/traefik.yml"));
    root.write("projects/itsup.yml", "proxy:\n  engine: haproxy\n");
    let run = root.itsup(&["render"]);
    run.code(0);
    assert!(root.exists("proxy/haproxy/haproxy.cfg"));
    assert!(!root.exists("proxy/traefik"), "{}", run.stdout);
    assert!(
        !root
            .read("upstream/alpha/docker-compose.yml")
            .contains("traefik.")
    );
}

// ---------------------------------------------------------------------------------------------
// schema
// ---------------------------------------------------------------------------------------------

fn schema_of(which: &[&str]) -> Value {
    let mut c = cmd();
    c.arg("schema").args(which);
    let run = run(c);
    run.code(0);
    let schema: Value = serde_json::from_str(&run.stdout).expect("schema is JSON");
    assert!(
        jsonschema::meta::is_valid(&schema),
        "not a valid JSON Schema: {}",
        run.stdout
    );
    schema
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("yaml")
}

#[test]
fn schema_project_validates_project_files() {
    let schema = schema_of(&["project"]);
    assert_eq!(schema, schema_of(&[]), "`schema` defaults to project");
    let v = validator(&schema);
    let good = yaml(concat!(
        "enabled: true\n",
        "ingress:\n",
        "  - service: web\n    domain: a.example.com\n    port: 80\n    path_prefix: /api\n",
        "  - service: db\n    domain: db.example.com\n    router: tcp\n    hostport: 5432\n    proxyprotocol: null\n",
        "  - service: vpn\n    router: udp\n    protocol: udp\n    hostport: 1194\n",
        "egress:\n  - other:web\n",
    ));
    assert_valid(&v, &good, "sample ingress.yml");
    assert!(!v.is_valid(&yaml(
        "ingress:\n  - service: web\n    domian: a.example.com\n"
    )));
    assert!(!v.is_valid(&yaml("ingress:\n  - service: web\n    port: 70000\n")));
    assert!(!v.is_valid(&yaml("ingress:\n  - router: htp\n")));
}

#[test]
fn schema_project_accepts_the_corpus() {
    let v = validator(&schema_of(&["project"]));
    let corpus = shared_dir().join("corpus/itsup-projects");
    let mut seen = 0;
    for entry in std::fs::read_dir(&corpus).expect("corpus").flatten() {
        let file = entry.path().join("itsup-project.yml");
        if file.is_file() {
            assert_valid(&v, &yaml_file(&file), &file.display().to_string());
            seen += 1;
        }
    }
    assert!(seen > 10);
}

#[test]
fn schema_itsup_validates_itsup_yml() {
    let v = validator(&schema_of(&["itsup"]));
    let corpus = shared_dir().join("corpus/itsup-projects/itsup.yml");
    assert_valid(&v, &yaml_file(&corpus), "corpus itsup.yml");
    assert_valid(
        &v,
        &yaml(
            "proxy:\n  engine: haproxy\n  httpPort: 8080\n  httpsPort: 8443\n  subnet: 10.9.0.0/16\n",
        ),
        "sample itsup.yml",
    );
    assert!(!v.is_valid(&yaml("proxi:\n  engine: haproxy\n")));
    assert!(!v.is_valid(&yaml("proxy:\n  engine: nginx\n")));
}

#[test]
fn schema_of_unknown_file_is_a_usage_error() {
    let mut c = cmd();
    c.args(["schema", "nope"]);
    let run = run(c);
    assert_eq!(run.code, 2, "clap usage errors exit 2: {}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// init / create
// ---------------------------------------------------------------------------------------------

const LSP: &str = "# yaml-language-server: $schema=";

/// The schema a file's first line points at, resolved beside the file.
fn schema_beside(root: &Root, rel: &str) -> Value {
    let text = root.read(rel);
    let first = text.lines().next().unwrap_or_default();
    let target = first
        .strip_prefix(LSP)
        .unwrap_or_else(|| panic!("{rel} does not start with {LSP}: {first}"));
    let path = root.join(rel).parent().expect("parent").join(target);
    let schema = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{rel} points at {}: {e}", path.display()));
    serde_json::from_str(&schema).expect("schema JSON")
}

#[test]
fn init_scaffolds_a_valid_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = itsup(dir.path(), &["init"]);
    run.code(0);
    let root = Root { dir };
    let schema = schema_beside(&root, "projects/itsup.yml");
    assert_eq!(
        schema,
        schema_of(&["itsup"]),
        "the schema beside itsup.yml is current"
    );
    assert_valid(
        &validator(&schema),
        &yaml_file(&root.join("projects/itsup.yml")),
        "projects/itsup.yml",
    );
    let v = root.itsup(&["validate"]);
    v.code(0).exactly(&[]);
    assert_eq!(v.stdout.trim(), "0 project(s) valid");
    root.itsup(&["render"]).code(0).exactly(&[]);
    let text = root.read("projects/itsup.yml");
    assert!(
        !text.contains("\ntraefikDomain:"),
        "hard-coded dashboard domain: {text}"
    );
}

#[test]
fn init_with_dashboard_domain_and_twice() {
    let root = Root::new();
    root.itsup(&["init", "--dashboard-domain", "traefik.mine.example"])
        .code(0);
    let text = root.read("projects/itsup.yml");
    assert!(text.starts_with(LSP));
    assert!(
        text.contains("traefikDomain: traefik.mine.example\n"),
        "{text}"
    );
    root.itsup(&["validate"]).code(0);
    // A second init never overwrites what the operator wrote.
    root.write("projects/itsup.yml", format!("{text}# mine\n"));
    root.itsup(&["init"]).code(0);
    assert!(root.read("projects/itsup.yml").ends_with("# mine\n"));
}

#[test]
fn init_rejects_a_bad_dashboard_domain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = itsup(dir.path(), &["init", "--dashboard-domain", "a b"]);
    run.code(1);
    assert!(run.stderr.contains("--dashboard-domain"), "{}", run.stderr);
    assert!(!dir.path().join("projects/itsup.yml").exists());
}

#[test]
fn create_scaffolds_a_valid_project() {
    let root = Root::new();
    root.itsup(&["init"]).code(0);
    root.itsup(&["create", "shop", "--domain", "shop.example.com"])
        .code(0);
    let schema = schema_beside(&root, "projects/shop/ingress.yml");
    assert_eq!(schema, schema_of(&["project"]));
    assert_valid(
        &validator(&schema),
        &yaml_file(&root.join("projects/shop/ingress.yml")),
        "projects/shop/ingress.yml",
    );
    root.itsup(&["validate"]).code(0).exactly(&[]);
    root.itsup(&["render"]).code(0).exactly(&[]);
    assert!(
        root.read("upstream/shop/docker-compose.yml")
            .contains("Host(`shop.example.com`)")
    );
    let compose = yaml_file(&root.join("upstream/shop/docker-compose.yml"));
    assert_valid(
        &validator(&shared_schema("compose-spec.json")),
        &compose,
        "upstream/shop/docker-compose.yml",
    );
}

#[test]
fn create_without_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = itsup(
        dir.path(),
        &[
            "create",
            "shop",
            "--domain",
            "shop.example.com",
            "--port",
            "8080",
        ],
    );
    run.code(0);
    let root = Root { dir };
    assert!(root.read("projects/shop/ingress.yml").starts_with(LSP));
    assert!(
        root.read("projects/shop/ingress.yml")
            .contains("port: 8080")
    );
    root.itsup(&["validate"]).code(0).exactly(&[]);
}

#[test]
fn create_refuses_bad_names_domains_and_existing_projects() {
    let root = Root::new();
    for (args, needle) in [
        (
            vec!["create", "Shop", "--domain", "shop.example.com"],
            "lowercase",
        ),
        (
            vec!["create", "proxy", "--domain", "shop.example.com"],
            "reserved",
        ),
        (
            vec!["create", "../x", "--domain", "shop.example.com"],
            "not a DNS label",
        ),
        (
            vec!["create", "shop", "--domain", "shop example.com"],
            "--domain",
        ),
        (vec!["create", "shop", "--domain", "shop`.com"], "--domain"),
    ] {
        let run = root.itsup(&args);
        run.code(1);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        std::fs::read_dir(root.join("projects"))
            .expect("ls")
            .count(),
        0,
        "a refused create wrote files"
    );
    assert!(!root.join("x").exists());
    root.itsup(&["create", "shop", "--domain", "shop.example.com"])
        .code(0);
    let run = root.itsup(&["create", "shop", "--domain", "other.example.com"]);
    run.code(1);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert!(
        root.read("projects/shop/ingress.yml")
            .contains("shop.example.com")
    );
}

// ---------------------------------------------------------------------------------------------
// --root and ITSUP_ROOT
// ---------------------------------------------------------------------------------------------

#[test]
fn root_defaults_to_the_current_directory() {
    let root = two_projects();
    let mut c = cmd();
    c.current_dir(root.path()).arg("render");
    run(c).code(0);
    assert!(root.exists("upstream/alpha/docker-compose.yml"));
}

#[test]
fn root_from_itsup_root() {
    let root = two_projects();
    root.ingress("bad", BAD_ROW, &["web"]);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut c = cmd();
    c.current_dir(elsewhere.path())
        .env("ITSUP_ROOT", root.path())
        .arg("validate");
    // Paths stay relative to the root, however it was given.
    run(c).code(1).exactly(&[BAD_LINE]);
}

#[test]
fn root_flag_wins_over_itsup_root() {
    let root = two_projects();
    let other = Root::new();
    other
        .write("projects/bad/ingress.yml", BAD_ROW)
        .compose("bad", &["web"]);
    let mut c = cmd();
    c.env("ITSUP_ROOT", other.path())
        .arg("--root")
        .arg(root.path())
        .arg("render");
    run(c).code(0).exactly(&[]);
    assert!(root.exists("upstream/alpha/docker-compose.yml"));
    assert!(!other.exists("upstream"));
}

#[test]
fn root_flag_after_the_subcommand() {
    let root = two_projects();
    let mut c = cmd();
    c.arg("validate").arg("--root").arg(root.path());
    run(c).code(0).exactly(&[]);
}

#[test]
fn root_without_projects_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cmdname in ["validate", "render", "diff"] {
        let run = itsup(dir.path(), &[cmdname]);
        run.code(1);
        assert!(run.stderr.contains("projects"), "{cmdname}: {}", run.stderr);
    }
}

#[test]
fn a_broken_project_stays_routed_with_its_last_valid_configuration() {
    let root = Root::new();
    root.project("good", "good.example.com");
    root.project("typo", "typo.example.com");
    root.itsup(&["render"]).code(0);
    assert!(root.generated_text().contains("typo.example.com"));

    root.write(
        "projects/typo/ingress.yml",
        "ingress:\n  - service: web\n    domian: typo.example.com\n",
    );
    let run = root.itsup(&["render"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("still routed with their last valid configuration: typo"),
        "{}",
        run.stderr
    );
    assert!(
        root.generated_text().contains("typo.example.com"),
        "a typo must not drop the project's routes"
    );
    // Once its folder is gone, the snapshot goes too and its routes are removed.
    std::fs::remove_dir_all(root.join("projects/typo")).expect("rm");
    root.itsup(&["render"]).code(0);
    assert!(!root.generated_text().contains("typo.example.com"));
    assert!(!root.exists(".itsup/last-good/typo.json"));
}
