//! The real-world itsUP corpus (`../shared/corpus/itsup-projects`): rendered with both engines,
//! every route present, every generated file valid against the vendored upstream schemas,
//! HAProxy accepts its config, and a second render is a no-op.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/itsup-projects"
    ));
    assert!(
        dir.join("itsup.yml").is_file(),
        "the itsUP corpus is missing: expected a copy of itsUP's projects/ folder at {}",
        dir.display()
    );
    dir
}

/// A temp root holding the corpus as `projects/`, with `extra` appended to itsup.yml.
fn corpus_root(extra: &str) -> Root {
    let root = Root::new();
    copy_dir(&corpus_dir(), &root.join("projects"));
    if !extra.is_empty() {
        let mut text = root.read("projects/itsup.yml");
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(extra);
        root.write("projects/itsup.yml", text);
    }
    root
}

/// One project of the corpus, as far as routing goes.
struct CorpusProject {
    name: String,
    enabled: bool,
    has_compose: bool,
    /// Domains that must appear in a Host/HostSNI rule.
    routed_domains: Vec<String>,
    /// Host ports of plain-TCP rows (no TLS, no passthrough): routed by port, not by name.
    plain_tcp_ports: Vec<u64>,
}

fn corpus_projects() -> Vec<CorpusProject> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("read corpus")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let dir = entry.path();
        let Some(file) = ["ingress.yml", "itsup-project.yml"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
        else {
            continue;
        };
        let doc = yaml_file(&file);
        let mut routed = Vec::new();
        let mut plain_tcp_ports = Vec::new();
        for row in doc["ingress"].as_array().into_iter().flatten() {
            let router = row["router"].as_str().unwrap_or("http");
            let tls = row.get("tls").is_some_and(|t| !t.is_null());
            let passthrough = row["passthrough"].as_bool().unwrap_or(false);
            if router == "udp" {
                continue;
            }
            if router == "tcp" && !tls && !passthrough {
                if let Some(p) = row["hostport"].as_u64() {
                    plain_tcp_ports.push(p);
                }
                continue;
            }
            routed.extend(row["domain"].as_str().map(str::to_string));
            if tls {
                routed.extend(row["tls"]["main"].as_str().map(str::to_string));
                for san in row["tls"]["sans"].as_array().into_iter().flatten() {
                    routed.extend(san.as_str().map(str::to_string));
                }
            }
        }
        out.push(CorpusProject {
            name: entry.file_name().to_string_lossy().into_owned(),
            enabled: doc["enabled"].as_bool().unwrap_or(true),
            has_compose: dir.join("docker-compose.yml").is_file(),
            routed_domains: routed,
            plain_tcp_ports,
        });
    }
    assert!(out.len() > 10, "the corpus has too few projects");
    out
}

fn rule_strings_of_labels(labels: &Value, rules: &mut Vec<String>) {
    match labels {
        Value::Object(map) => {
            for (k, v) in map {
                if k.ends_with(".rule") {
                    rules.extend(v.as_str().map(str::to_string));
                }
            }
        }
        Value::Array(list) => {
            for item in list.iter().filter_map(Value::as_str) {
                if let Some((k, v)) = item.split_once('=')
                    && k.ends_with(".rule")
                {
                    rules.push(v.to_string());
                }
            }
        }
        _ => {}
    }
}

/// Every router rule Traefik would see: file-provider routers plus docker labels.
fn traefik_rules(root: &Root) -> Vec<String> {
    let mut rules = Vec::new();
    for file in yaml_files(&root.join("proxy/traefik/dynamic")) {
        let doc = yaml_file(&file);
        for kind in ["http", "tcp", "udp"] {
            for router in doc[kind]["routers"].as_object().into_iter().flatten() {
                rules.extend(router.1["rule"].as_str().map(str::to_string));
            }
        }
    }
    for file in upstream_composes(root) {
        let doc = yaml_file(&file);
        for svc in doc["services"].as_object().into_iter().flatten() {
            rule_strings_of_labels(&svc.1["labels"], &mut rules);
        }
    }
    rules
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

fn upstream_composes(root: &Root) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("upstream"))
        .expect("upstream/ exists")
        .flatten()
        .map(|e| e.path().join("docker-compose.yml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn rendered_names(root: &Root) -> BTreeSet<String> {
    std::fs::read_dir(root.join("upstream"))
        .expect("upstream/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn traefik_render_accepts_the_whole_corpus() {
    let root = corpus_root("");
    let run = root.itsup(&["render"]);
    run.code(0);
    assert!(!run.stderr.contains("error"), "stderr: {}", run.stderr);

    let projects = corpus_projects();
    let rendered = rendered_names(&root);
    let want: BTreeSet<String> = projects
        .iter()
        .filter(|p| p.has_compose)
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        rendered, want,
        "upstream/ must hold exactly the projects with a compose file"
    );
    for name in &want {
        let text = root.read(&format!("upstream/{name}/docker-compose.yml"));
        assert!(text.starts_with(HEADER), "{name}: header missing");
    }
    // The project `itsup` (an external host, no compose file) is routed like any other.
    assert!(!root.exists("upstream/itsup"));

    let rules = traefik_rules(&root);
    let tcp = yaml_file(&root.join("proxy/traefik/dynamic/routers-tcp.yml"));
    let mut missing = Vec::new();
    for p in projects.iter().filter(|p| p.enabled) {
        for d in &p.routed_domains {
            let host = format!("Host(`{d}`)");
            let sni = format!("HostSNI(`{d}`)");
            if !rules.iter().any(|r| r.contains(&host) || r.contains(&sni)) {
                missing.push(format!("{}: {d}", p.name));
            }
        }
        for port in &p.plain_tcp_ports {
            let ep = format!("tcp-{port}");
            let found = tcp["tcp"]["routers"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(name, r)| {
                    name.starts_with(&p.name)
                        && r["entryPoints"]
                            .as_array()
                            .is_some_and(|eps| eps.iter().any(|e| e == &Value::from(ep.clone())))
                        && r["rule"] == "HostSNI(`*`)"
                });
            if !found {
                missing.push(format!("{}: plain tcp router on {ep}", p.name));
            }
        }
    }
    assert!(missing.is_empty(), "not routed:\n{}", missing.join("\n"));

    assert!(
        rules.iter().any(|r| r.contains("itsup.srv.instrukt.ai")),
        "the project `itsup` was not routed"
    );
    // A disabled project is not routed (its compose file is still generated).
    assert!(
        !rules.iter().any(|r| r.contains("mail.srv.instrukt.ai")),
        "the disabled project mailforwarder was routed"
    );
}

#[test]
fn traefik_output_validates_against_upstream_schemas() {
    let root = corpus_root("");
    root.itsup(&["render"]).code(0);

    let static_v = validator(&shared_schema("traefik-v3.json"));
    assert_valid(
        &static_v,
        &yaml_file(&root.join("proxy/traefik/traefik.yml")),
        "proxy/traefik/traefik.yml",
    );

    let dynamic_v = validator(&shared_schema("traefik-v3-file-provider.json"));
    let dynamic = yaml_files(&root.join("proxy/traefik/dynamic"));
    assert!(dynamic.len() >= 2, "dynamic files: {dynamic:?}");
    for file in dynamic {
        let mut doc = yaml_file(&file);
        // An empty dynamic file is valid for Traefik; the schema wants an object.
        if doc.is_null() {
            doc = Value::Object(Default::default());
        }
        assert_valid(&dynamic_v, &doc, &file.display().to_string());
    }

    let compose_v = validator(&shared_schema("compose-spec.json"));
    let mut composes = upstream_composes(&root);
    composes.push(root.join("proxy/docker-compose.yml"));
    assert!(composes.len() > 10);
    for file in composes {
        assert_valid(&compose_v, &yaml_file(&file), &file.display().to_string());
    }
}

#[test]
fn second_render_changes_nothing() {
    let root = corpus_root("");
    let first = root.itsup(&["render"]);
    first.code(0);
    let before = snapshot(root.path());
    assert!(!before.is_empty());

    let second = root.itsup(&["render"]);
    second.code(0);
    assert!(
        second.stdout.contains("0 file(s) changed"),
        "stdout: {}",
        second.stdout
    );
    assert_eq!(
        snapshot(root.path()),
        before,
        "a second render rewrote or removed files"
    );

    // `diff` has nothing to show: exit 0.
    let diff = root.itsup(&["diff"]);
    diff.code(0);
    assert!(
        !diff.stdout.contains("--- ") && !diff.stdout.contains("+++ "),
        "diff shows changes after render:\n{}",
        diff.stdout
    );
    assert_eq!(snapshot(root.path()), before, "diff touched files");
}

#[test]
fn haproxy_render_passes_haproxy_check() {
    let root = corpus_root("proxy:\n  engine: haproxy\n");
    let run = root.itsup(&["render"]);
    run.code(0);
    assert!(root.exists("proxy/haproxy/haproxy.cfg"));
    assert!(
        !root.exists("proxy/traefik"),
        "engine haproxy must not write Traefik files"
    );
    let projects = corpus_projects();
    let want: BTreeSet<String> = projects
        .iter()
        .filter(|p| p.has_compose)
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(rendered_names(&root), want);

    let cfg = root.read("proxy/haproxy/haproxy.cfg");
    let words: BTreeSet<&str> = cfg.split_whitespace().collect();
    for p in projects.iter().filter(|p| p.enabled) {
        for d in &p.routed_domains {
            assert!(
                words.contains(d.as_str()),
                "{}: {d} not routed in haproxy.cfg",
                p.name
            );
        }
        for port in &p.plain_tcp_ports {
            assert!(
                cfg.contains(&format!("bind :{port}\n")),
                "{}: no frontend on :{port}",
                p.name
            );
        }
    }
    assert!(words.contains("itsup.srv.instrukt.ai"));

    haproxy_check(&root.join("proxy/haproxy"));

    // The compose files of the haproxy flavour are valid too.
    let compose_v = validator(&shared_schema("compose-spec.json"));
    let mut composes = upstream_composes(&root);
    composes.push(root.join("proxy/docker-compose.yml"));
    for file in composes {
        assert_valid(&compose_v, &yaml_file(&file), &file.display().to_string());
    }

    // The certificate is hand-written: a second render leaves it and everything else alone.
    let before = snapshot(root.path());
    let again = root.itsup(&["render"]);
    again.code(0);
    assert!(
        again.stdout.contains("0 file(s) changed"),
        "{}",
        again.stdout
    );
    assert_eq!(snapshot(root.path()), before);
}

/// Guards the guards: the vendored schemas compile offline to validators that do reject bad
/// documents (a schema that silently compiled to "accept anything" would make the tests above
/// meaningless).
#[test]
fn schemas_reject_known_bad_documents() {
    let cases = [
        (
            "traefik-v3.json",
            serde_json::json!({"entryPoints": {"web": {"address": 80}}}),
        ),
        (
            "traefik-v3-file-provider.json",
            serde_json::json!({"http": {"routers": {"r": {"rule": ["Host(`a`)"]}}}}),
        ),
        (
            "compose-spec.json",
            serde_json::json!({"services": {"web": {"image": "nginx", "ports": {"a": 1}}}}),
        ),
        (
            "compose-spec.json",
            serde_json::json!({"services": {"web": {"imagee": "nginx"}}}),
        ),
    ];
    for (schema, doc) in cases {
        let v = validator(&shared_schema(schema));
        assert!(!v.is_valid(&doc), "{schema} accepted {doc}");
    }
}
