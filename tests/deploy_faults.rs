//! Engine faults during `itsup apply` against the real Docker engine and HAProxy: the Docker
//! API connection cut in the middle of a start-first rollout (apply talks to the engine through
//! a Unix-socket forwarder, the watch tests' technique, so the engine other tests use is never
//! touched), and `compose up` failing. Each time: a clear error, exit 1, the old version serving
//! without a failed request, and the next apply converging.
// Both support modules include the shared TLS client helper; only the engine forwarder of the
// watch tests is used from the second.
#![allow(clippy::duplicate_mod)]

mod deploy_support;
mod watch_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use deploy_support::{APP_V1, APP_V2, Fixture, Load, eventually};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Containers of the project `app` (running or not).
fn app_containers(f: &Fixture, app: &str) -> Vec<String> {
    f.containers()
        .into_iter()
        .filter(|n| n.starts_with(app))
        .collect()
}

#[test]
fn engine_cut_mid_rollout_and_failing_compose_leave_the_old_version_serving() {
    let f = Fixture::new();
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("app.test").ok());
    assert_eq!(body.as_deref().map(str::trim), Some("version=v1"));
    let before = app_containers(&f, &app);
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(300));

    // The engine goes away as soon as the new container exists.
    f.app_project("app", APP_V2, "");
    let mut link = watch_support::EngineLink::up(f.dir.path().join("engine.sock"));
    let child = Command::new(deploy_support::itsup_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["apply", "--timeout", "20"])
        .env("CI", "1")
        .env("DOCKER_HOST", link.docker_host())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apply");
    let started = eventually(Duration::from_secs(60), || {
        (app_containers(&f, &app).len() > before.len()).then_some(())
    });
    link.cut();
    let out = child.wait_with_output().expect("apply");
    assert!(started.is_some(), "the new container never appeared");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("FAILED"),
        "the report says what failed:\n{stdout}{stderr}"
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v1".to_string()),
        "the old version serves"
    );

    // The engine is back: the next apply finishes what the cut one could not, then rolls out.
    drop(link);
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        text(&out.stderr).contains("found leftovers of an interrupted apply"),
        "the new container the cut apply could not remove is healed:\n{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("rollout"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v2".to_string())
    );
    assert_eq!(app_containers(&f, &app).len(), before.len(), "no stray");

    // `compose up` fails (an image that is not there and cannot be pulled): exit 1 naming it,
    // the running version untouched; the next apply with a good image converges.
    f.app_project("app", "itsup-test/app:no-such-tag", "");
    let out = f.itsup_expect(&["apply", "--timeout", "30"], 1);
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(report.contains("no-such-tag"), "{report}");
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v2".to_string())
    );
    assert_eq!(app_containers(&f, &app).len(), before.len(), "no stray");
    f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    f.itsup_expect(&["apply", "--dry-run"], 0);
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v1".to_string())
    );
    let stats = load.finish();
    deploy_support::assert_no_failed(&stats, "failed requests while the engine failed");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
}
