//! End-to-end deploy against the real Docker engine with engine haproxy: create, zero-failure
//! start-first rollout under load, a broken version that must leave the old one serving,
//! disable (stop) and remove (prune). Images are built locally by `.ci/images/*.sh`.

mod deploy_support;

use std::time::Duration;

use deploy_support::{APP_V1, APP_V2, Fixture, Load, eventually};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn deploy_rollout_under_load_then_broken_version_then_prune() {
    let f = Fixture::new();
    let app = f.app_project("app", APP_V1, "");

    // Plan before act: a dry run lists the creates, exits 2 and touches nothing.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = stdout(&dry);
    assert!(plan.contains("+++ b/upstream/"), "file diff shown:\n{plan}");
    assert!(
        plan.contains("haproxy") && plan.contains("create"),
        "{plan}"
    );
    assert!(!f.root.join("upstream").exists(), "dry run wrote files");
    assert!(f.containers().is_empty(), "dry run started containers");

    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("app.test").ok())
        .expect("the app answers through HAProxy on 127.0.0.1");
    assert_eq!(body.trim(), "version=v1");
    assert!(f.root.join("proxy/haproxy/certs/default.pem").is_file());

    // Nothing changed: dry run exits 0, apply touches nothing.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 0);
    assert!(stdout(&dry).contains("unchanged"), "{}", stdout(&dry));
    let before = f.containers();

    // New image under load: start-first, zero failed requests, ends on v2.
    f.app_project("app", APP_V2, "");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("rollout"), "{}", stdout(&dry));
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the rollout");
    let out = f.itsup_expect(&["apply"], 0);
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    assert!(stdout(&out).contains("rollout"), "{}", stdout(&out));
    assert_eq!(
        stats.failed,
        0,
        "failed requests during the rollout: {:?}",
        &stats.errors[..stats.errors.len().min(5)]
    );
    assert!(
        stats.ok > 100,
        "too few requests to mean anything: {}",
        stats.ok
    );
    assert_eq!(stats.last_body.trim(), "version=v2");
    let after = f.containers();
    assert_eq!(
        after.len(),
        before.len(),
        "old container removed: {after:?}"
    );
    assert_ne!(after, before, "the app container was replaced");
    let drain: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.root.join(".itsup/drain.json")).expect("drain file written for the agent"),
    )
    .expect("drain json");
    assert_eq!(
        drain["draining"],
        serde_json::json!([]),
        "nothing left draining"
    );

    // A broken new version fails its healthcheck: exit 1, the old one serves, no stray.
    f.app_project("app", APP_V2, "      APP_BROKEN: \"1\"\n");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    let out = f.itsup_expect(&["apply", "--timeout", "30"], 1);
    let stats = load.finish();
    let report = stdout(&out);
    assert!(
        report.contains("FAILED") && report.contains("old container still serves"),
        "{report}"
    );
    assert!(!report.contains("succeeded"), "{report}");
    assert_eq!(
        stats.failed,
        0,
        "the broken version took traffic: {:?}",
        &stats.errors[..stats.errors.len().min(5)]
    );
    assert_eq!(
        f.get("app.test").expect("old still serves").trim(),
        "version=v2"
    );
    assert_eq!(f.containers(), after, "no stray container left");

    // Disable: stop (kept), then remove the project: pruned, its network too.
    f.app_project("app", APP_V2, "");
    f.write(
        &format!("projects/{app}/ingress.yml"),
        "enabled: false\ningress:\n  - service: web\n    domain: app.test\n    port: 8080\n",
    );
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("stop"), "{}", stdout(&dry));
    f.itsup_expect(&["apply"], 0);
    let running = deploy_support::running(&f);
    assert!(
        !running.iter().any(|n| n.starts_with(&app)),
        "disabled project still running: {running:?}"
    );
    std::fs::remove_dir_all(f.root.join("projects").join(&app)).expect("remove project");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(stdout(&dry).contains("prune"), "{}", stdout(&dry));
    let out = f.itsup_expect(&["apply", "--format", "json"], 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["ok"], true);
    assert_eq!(json["stacks"][0]["services"][0]["action"], "prune");
    assert!(
        !f.containers().iter().any(|n| n.starts_with(&app)),
        "pruned: {:?}",
        f.containers()
    );
    f.itsup_expect(&["apply", "--dry-run"], 0);
}
