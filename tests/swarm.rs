//! `orchestrator: swarm` (docs/swarm.md) against the real Docker engine in Swarm mode: render
//! and validation of stack files, then apply with engine haproxy (every name routed), an
//! update under load (zero failed requests, ends on the new version), a broken release (Swarm
//! rolls back, apply exits 1, the old version serves throughout) and a removed project.
//!
//! The engine is shared with other suites: a test initialises Swarm only when the engine is
//! not in one, and leaves it afterwards only then ([`SwarmGuard`]); it labels the node with its
//! own ingress label, and removes only the services and networks of its own platform. The
//! tests run one at a time (nextest group `swarm`).

mod deploy_support;

use std::process::Command;
use std::time::Duration;

use deploy_support::{APP_V1, APP_V2, Fixture, Load, docker, eventually};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// This engine in Swarm mode for the test's lifetime, and the node carrying `label=true`.
struct SwarmGuard {
    initialised: bool,
    label: String,
    node: String,
}

impl SwarmGuard {
    fn join(label: &str) -> SwarmGuard {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let initialised = state.trim() != "active";
        if initialised {
            let out = Command::new("docker")
                .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
                .output()
                .expect("docker swarm init");
            assert!(
                out.status.success(),
                "docker swarm init: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"])
            .trim()
            .to_string();
        docker(&[
            "node",
            "update",
            "--label-add",
            &format!("{label}=true"),
            &node,
        ]);
        SwarmGuard {
            initialised,
            label: label.to_string(),
            node,
        }
    }
}

impl Drop for SwarmGuard {
    fn drop(&mut self) {
        docker(&["node", "update", "--label-rm", &self.label, &self.node]);
        if self.initialised {
            docker(&["swarm", "leave", "--force"]);
        }
    }
}

/// A test platform on Swarm: its services are removed before the fixture's networks and
/// before Swarm is left (field order).
struct SwarmFixture {
    f: Fixture,
    _guard: SwarmGuard,
}

impl SwarmFixture {
    /// Engine haproxy on Swarm, on the fixture's own ports, network, label and stack prefix.
    fn haproxy() -> SwarmFixture {
        SwarmFixture::on(Fixture::new())
    }

    /// Engine traefik (the real Traefik image, the socket proxy stand-in) on Swarm; no CA is
    /// reachable (Traefik serves its default certificate).
    fn traefik() -> SwarmFixture {
        SwarmFixture::on(Fixture::traefik(
            deploy_support::TRAEFIK,
            "acme:\n  caServer: https://127.0.0.1:9/dir\n",
        ))
    }

    fn on(f: Fixture) -> SwarmFixture {
        let label = format!("{}.ingress", f.prefix);
        let guard = SwarmGuard::join(&label);
        let itsup = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("itsup.yml");
        f.write(
            "projects/itsup.yml",
            &format!(
                "{itsup}orchestrator: swarm\nswarm:\n  ingressLabel: {label}\n  stackPrefix: {}-\n",
                f.prefix
            ),
        );
        SwarmFixture { f, _guard: guard }
    }

    /// Names of this platform's Swarm services.
    fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = docker(&[
            "service",
            "ls",
            "--filter",
            &format!("label=io.itsup.platform={}", self.f.network),
            "--format",
            "{{.Name}}",
        ])
        .lines()
        .map(str::to_string)
        .collect();
        names.sort();
        names
    }

    fn stack(&self, project: &str) -> String {
        format!("{}-{project}", self.f.prefix)
    }
}

impl Drop for SwarmFixture {
    fn drop(&mut self) {
        let prefix = self.f.prefix.clone();
        let mine = |list: String| -> Vec<String> {
            list.split_whitespace()
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_string)
                .collect()
        };
        for stack in mine(docker(&["stack", "ls", "--format", "{{.Name}}"])) {
            docker(&["stack", "rm", &stack]);
        }
        for s in self.services() {
            docker(&["service", "rm", &s]);
        }
        // Tasks and their network endpoints go asynchronously: a network can be removed only
        // once they are gone, so try until it is.
        eventually(Duration::from_secs(90), || {
            let services = mine(docker(&["service", "ls", "--format", "{{.Name}}"]));
            let containers = docker(&["ps", "-aq", "--filter", &format!("name={prefix}")]);
            if !services.is_empty() || !containers.trim().is_empty() {
                return None;
            }
            let nets = mine(docker(&["network", "ls", "--format", "{{.Name}}"]));
            for n in &nets {
                docker(&["network", "rm", n]);
            }
            mine(docker(&["network", "ls", "--format", "{{.Name}}"]))
                .is_empty()
                .then_some(())
        });
        for c in mine(docker(&["config", "ls", "--format", "{{.Name}}"])) {
            docker(&["config", "rm", &c]);
        }
    }
}

/// Render and validate only (no engine needed): the stack file keeps what the user wrote and
/// carries Swarm's rollout settings; refused keys are errors at `file:line:col`.
#[test]
fn swarm_render_writes_stack_files_and_refuses_keys() {
    let f = Fixture::new();
    let itsup = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("itsup.yml");
    f.write(
        "projects/itsup.yml",
        &format!("{itsup}orchestrator: swarm\nswarm:\n  ingressLabel: edge\n"),
    );
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["render"], 0);
    let text = std::fs::read_to_string(f.root.join(format!("upstream/{app}/docker-compose.yml")))
        .expect("stack file");
    let doc: serde_json::Value = yaml(&text);
    let web = &doc["services"]["web"];
    assert_eq!(doc["version"], "3.9", "{text}");
    assert_eq!(web["image"], APP_V1, "user's keys kept:\n{text}");
    assert_eq!(web["stop_grace_period"], "5s", "{text}");
    let deploy = &web["deploy"];
    assert_eq!(deploy["replicas"], 1, "{text}");
    assert_eq!(deploy["endpoint_mode"], "dnsrr", "{text}");
    assert_eq!(deploy["update_config"]["order"], "start-first", "{text}");
    assert_eq!(
        deploy["update_config"]["failure_action"], "rollback",
        "{text}"
    );
    // interval 1 s × retries 2, plus one interval, under the 10 s floor.
    assert_eq!(deploy["update_config"]["monitor"], "10s", "{text}");
    assert_eq!(deploy["rollback_config"]["order"], "start-first", "{text}");
    assert_eq!(deploy["restart_policy"]["condition"], "any", "{text}");
    assert_eq!(deploy["labels"]["io.itsup.project"], app.as_str(), "{text}");
    assert_eq!(
        web["networks"][&f.network]["aliases"][0],
        format!("{app}-web"),
        "{text}"
    );
    assert_eq!(doc["networks"][&f.network]["external"], true, "{text}");

    let proxy = std::fs::read_to_string(f.root.join("proxy/docker-compose.yml")).expect("proxy");
    let doc: serde_json::Value = yaml(&proxy);
    let haproxy = &doc["services"]["haproxy"];
    assert_eq!(haproxy["deploy"]["mode"], "global", "{proxy}");
    assert_eq!(
        haproxy["deploy"]["placement"]["constraints"][0], "node.labels.edge == true",
        "{proxy}"
    );
    assert_eq!(haproxy["ports"][0]["mode"], "host", "{proxy}");
    let cfg = std::fs::read_to_string(f.root.join("proxy/haproxy/haproxy.cfg")).expect("cfg");
    assert!(
        cfg.contains(&format!("tasks.{app}_web:8080")),
        "routes to the tasks:\n{cfg}"
    );
    assert!(
        cfg.contains("hold obsolete 0s") && cfg.contains("option redispatch"),
        "{cfg}"
    );
    assert!(!f.root.join("proxy/haproxy/hold.cfg").exists());
    // The real HAProxy accepts the rendered file.
    std::fs::create_dir_all(f.root.join("proxy/haproxy/certs")).expect("certs");
    let check = Command::new("docker")
        .args(["run", "--rm", "-v"])
        .arg(format!(
            "{}:/usr/local/etc/haproxy:ro",
            f.root.join("proxy/haproxy").display()
        ))
        .args(["-w", "/usr/local/etc/haproxy", "--entrypoint", "haproxy"])
        .args([deploy_support::HAPROXY, "-c", "-f", "haproxy.cfg"])
        .output()
        .expect("haproxy -c");
    assert!(
        check.status.success(),
        "haproxy -c: {}{}",
        stdout(&check),
        stderr(&check)
    );

    // Refused keys, each at its place.
    f.write(
        &format!("projects/{app}/docker-compose.yml"),
        "services:\n  web:\n    image: x\n    container_name: web\n    build: .\n    ports:\n      - \"8080:8080\"\n    depends_on:\n      db:\n        condition: service_healthy\n  db:\n    image: y\n",
    );
    let out = f.itsup_expect(&["validate"], 1);
    let errors = stderr(&out) + &stdout(&out);
    let file = format!("projects/{app}/docker-compose.yml");
    for (at, what) in [
        ("4:5", "container_name"),
        ("5:5", "does not build"),
        ("7:9", "routed by the proxy"),
        ("10:9", "depends_on"),
    ] {
        assert!(
            errors.contains(&format!("{file}:{at}: error:")) && errors.contains(what),
            "{file}:{at} ({what}) missing in:\n{errors}"
        );
    }
}

/// A rendered YAML file as a JSON value.
fn yaml(text: &str) -> serde_json::Value {
    serde_yaml_ng::from_str(text).expect("rendered YAML parses")
}

/// Apply, update under load, broken release, removal, all on engine haproxy.
#[test]
fn swarm_haproxy_apply_update_rollback_remove() {
    let sf = SwarmFixture::haproxy();
    let f = &sf.f;
    let app = f.app_project("app", APP_V1, "");
    let stack = sf.stack(&app);

    // Plan before act.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = stdout(&dry);
    assert!(
        plan.contains(&format!("(stack {stack})")) && plan.contains("create"),
        "{plan}"
    );
    assert!(sf.services().is_empty(), "dry run created services");

    let out = f.itsup_expect(&["apply"], 0);
    assert!(stdout(&out).contains("ok"), "{}", stdout(&out));
    let body = eventually(Duration::from_secs(30), || f.get("app.test").ok())
        .expect("the app answers through HAProxy on Swarm");
    assert_eq!(body.trim(), "version=v1");
    assert_eq!(
        sf.services(),
        [
            format!("{stack}_web"),
            format!("{}-itsup-proxy_haproxy", f.prefix)
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let status = f.itsup_expect(&["status", "--format", "json"], 0);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let web = rows
        .as_array()
        .and_then(|r| r.iter().find(|r| r["stack"] == stack.as_str()))
        .expect("status row of the app");
    assert_eq!(
        (web["desired"].as_u64(), web["running"].as_u64()),
        (Some(1), Some(1)),
        "{rows}"
    );
    assert_eq!(web["drift"], "ok", "{rows}");

    let dry = f.itsup_expect(&["apply", "--dry-run"], 0);
    assert!(stdout(&dry).contains("unchanged"), "{}", stdout(&dry));

    // An update under load: zero failed requests, ends on v2.
    f.app_project("app", APP_V2, "");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("update"), "{}", stdout(&dry));
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load running before the update");
    let out = f.itsup_expect(&["apply"], 0);
    std::thread::sleep(Duration::from_secs(3));
    let stats = load.finish();
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));
    deploy_support::assert_no_failed(&stats, "failed requests during the Swarm update");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
    assert_eq!(stats.last_body.trim(), "version=v2");

    // A broken release: Swarm rolls back, apply exits 1, v2 serves throughout.
    f.app_project("app", APP_V2, "      APP_BROKEN: \"1\"\n");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(240));
    let out = f.itsup_expect(&["apply", "--timeout", "120"], 1);
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    let report = stdout(&out);
    assert!(
        report.contains("FAILED") && report.contains("rolled back"),
        "{report}"
    );
    deploy_support::assert_no_failed(&stats, "the broken release took traffic");
    assert_eq!(f.get("app.test").expect("old serves").trim(), "version=v2");
    // Not recorded as applied: the next dry run still wants the update.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("update"), "{}", stdout(&dry));

    // The project removed: its stack goes with its networks.
    std::fs::remove_dir_all(f.root.join("projects").join(&app)).expect("remove project");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("remove"), "{}", stdout(&dry));
    f.itsup_expect(&["apply"], 0);
    assert!(
        !sf.services().iter().any(|s| s.starts_with(&stack)),
        "{:?}",
        sf.services()
    );
    let nets = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
        "-q",
    ]);
    assert!(nets.trim().is_empty(), "stack networks left: {nets}");
    f.itsup_expect(&["apply", "--dry-run"], 0);
}

/// Engine traefik on Swarm: the rendered static and dynamic files load into the real Traefik
/// (its swarm provider through the socket proxy), and the app is routed by its `deploy.labels`.
#[test]
fn swarm_traefik_routes_by_deploy_labels() {
    let sf = SwarmFixture::traefik();
    let f = &sf.f;
    let app = f.app_project("app", APP_V1, "");
    let out = f.itsup_expect(&["apply", "--timeout", "180"], 0);
    assert!(stdout(&out).contains("ok"), "{}", stdout(&out));
    let body = eventually(Duration::from_secs(60), || f.get("app.test").ok())
        .expect("the app answers through Traefik on Swarm");
    assert_eq!(body.trim(), "version=v1");
    // Traefik logged no configuration error.
    let proxy = format!("{}-itsup-proxy_traefik", f.prefix);
    let logs = Command::new("docker")
        .args(["service", "logs", "--raw", &proxy])
        .output()
        .expect("service logs");
    let logs =
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"error\"") && !l.contains("acme"))
        .collect();
    assert!(errors.is_empty(), "Traefik errors:\n{}", errors.join("\n"));

    // An update under load with Traefik's swarm provider: zero failed requests, ends on v2.
    f.app_project("app", APP_V2, "");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load running before the update");
    f.itsup_expect(&["apply"], 0);
    std::thread::sleep(Duration::from_secs(3));
    let stats = load.finish();
    deploy_support::assert_no_failed(&stats, "failed requests during the update behind Traefik");
    assert_eq!(stats.last_body.trim(), "version=v2");
    let _ = app;
}

/// Faults end in clear errors: a proxy no node may run (no node carries the ingress label),
/// and a service whose image no node has.
#[test]
fn swarm_faults_are_named() {
    let sf = SwarmFixture::haproxy();
    let f = &sf.f;
    let itsup = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("itsup.yml");
    let nowhere = itsup.replace(".ingress\n", ".nowhere\n");
    assert_ne!(nowhere, itsup);
    f.write("projects/itsup.yml", &nowhere);
    let out = f.itsup_expect(&["apply", "--timeout", "30"], 1);
    assert!(
        stdout(&out).contains("no node matches its placement"),
        "{}",
        stdout(&out)
    );

    f.write("projects/itsup.yml", &itsup);
    f.app_project("app", "itsup-test/app:absent", "");
    let out = f.itsup_expect(&["apply", "--timeout", "20"], 1);
    let report = stdout(&out);
    assert!(
        report.contains("FAILED")
            && report.contains("not converged within 20 s")
            && report.contains("No such image"),
        "{report}"
    );
}
