//! Engine faults during `itsup apply` against the real Docker engine and HAProxy: the Docker
//! API connection cut or stalled in the middle of a start-first rollout (apply talks to the
//! engine through a Unix-socket forwarder, the watch tests' technique, so the engine other tests
//! use is never touched), `compose up` failing, and HAProxy's admin and master sockets gone.
//! Each time: a clear error (after a bounded wait when nothing answers), exit 1, the old version
//! serving without a failed request, and the next apply converging.
// Both support modules include the shared TLS client helper; only the engine forwarder of the
// watch tests is used from the second.
#![allow(clippy::duplicate_mod)]

mod deploy_support;
mod watch_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// Containers of the project `app` that run.
fn running_app_containers(f: &Fixture, app: &str) -> Vec<String> {
    deploy_support::docker(&[
        "ps",
        "--filter",
        &format!("label=io.itsup.root={}", f.root.display()),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .filter(|n| n.starts_with(app))
    .map(str::to_string)
    .collect()
}

/// `itsup apply --timeout 20 [targets]` in the background, through `docker_host` when given.
fn spawn_apply(f: &Fixture, docker_host: Option<String>, targets: &[&str]) -> Child {
    let mut cmd = Command::new(deploy_support::itsup_bin());
    cmd.arg("--root")
        .arg(&f.root)
        .args(["apply", "--timeout", "20"])
        .args(targets)
        .env("CI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.spawn().expect("spawn apply")
}

/// Whether a process has children (apply running Compose).
fn has_children(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .is_ok_and(|c| !c.trim().is_empty())
}

/// The app's next version with a first health check 8 s after start (Docker runs the first one
/// an `interval` after the container starts): apply spends those seconds in its readiness wait,
/// asking the engine, after Compose has returned: the moment the faults below hit.
fn slow_ready_v2(f: &Fixture) {
    f.app_project("app", APP_V2, "");
    let app = f.name("app");
    f.edit(
        &format!("projects/{app}/docker-compose.yml"),
        "interval: 1s",
        "interval: 8s",
    );
}

/// Waits until the rollout's new container runs and Compose has returned: apply is then in
/// its readiness wait.
fn wait_for_readiness_wait(f: &Fixture, app: &str, before: usize, apply: &Child) {
    let waiting = eventually(Duration::from_secs(90), || {
        (running_app_containers(f, app).len() > before && !has_children(apply.id())).then_some(())
    });
    assert!(waiting.is_some(), "the new container never ran");
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
    let child = spawn_apply(&f, Some(link.docker_host()), &[]);
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

/// The engine stalls (every connection stays open and nothing answers any more, as a hung
/// daemon does) while apply waits for the new container to be ready: apply gives up after the
/// bounded wait of a Docker call with an error saying so, exit 1, the old version serving
/// without a failed request; once the engine answers again, the next apply heals and rolls out.
#[test]
fn engine_stalled_mid_rollout_fails_after_a_bounded_wait_and_the_next_apply_converges() {
    let f = Fixture::new();
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("app.test").ok());
    assert_eq!(body.as_deref().map(str::trim), Some("version=v1"));
    let before = app_containers(&f, &app);
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(600));

    slow_ready_v2(&f);
    let link = watch_support::EngineLink::up(f.dir.path().join("engine.sock"));
    let child = spawn_apply(&f, Some(link.docker_host()), &[]);
    wait_for_readiness_wait(&f, &app, before.len(), &child);
    link.stall();
    let stalled = Instant::now();
    let out = child.wait_with_output().expect("apply");
    let waited = stalled.elapsed();
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!(
        "apply gave up {:.1} s after the engine stalled:\n{report}",
        waited.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("the Docker engine did not answer within 30 s"),
        "the report names the stalled engine:\n{report}"
    );
    // One stalled call (30 s) fails the readiness wait; the clean-up's calls then fail at once
    // instead of waiting the bound again each (the next apply finishes the clean-up).
    assert!(
        waited < Duration::from_secs(60),
        "apply gave up only after {waited:?}"
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v1".to_string()),
        "the old version serves"
    );

    // The engine answers again: the next apply removes the new container the stalled one could
    // not, then rolls out.
    drop(link);
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        text(&out.stderr).contains("found leftovers of an interrupted apply"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v2".to_string())
    );
    assert_eq!(app_containers(&f, &app).len(), before.len(), "no stray");
    f.itsup_expect(&["apply", "--dry-run"], 0);
    let stats = load.finish();
    deploy_support::assert_no_failed(&stats, "failed requests while the engine stalled");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
}

/// HAProxy's admin and master sockets gone (moved away, as when `proxy/haproxy/run/` is wiped)
/// while apply waits for the new container: the admission fails with an error naming the
/// socket, exit 1, the new container removed and the old version serving without a failed
/// request; with the sockets back, the next apply puts the slots the failed one parked back
/// in rotation and rolls out.
#[test]
fn haproxy_sockets_gone_mid_rollout_leave_the_old_version_serving_and_the_next_apply_converges() {
    let f = Fixture::new();
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("app.test").ok());
    assert_eq!(body.as_deref().map(str::trim), Some("version=v1"));
    let before = app_containers(&f, &app);
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(600));

    slow_ready_v2(&f);
    let run = f.root.join("proxy/haproxy/run");
    let sockets = ["admin.sock", "master.sock"];
    let child = spawn_apply(&f, None, &[]);
    wait_for_readiness_wait(&f, &app, before.len(), &child);
    for s in sockets {
        std::fs::rename(run.join(s), run.join(format!("{s}.away"))).expect("move the socket");
    }
    let out = child.wait_with_output().expect("apply");
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("apply with HAProxy's sockets gone:\n{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("run/admin.sock"),
        "the report names the socket:\n{report}"
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v1".to_string()),
        "the old version serves"
    );
    assert_eq!(
        app_containers(&f, &app),
        before,
        "the new container is gone"
    );

    for s in sockets {
        std::fs::rename(run.join(format!("{s}.away")), run.join(s)).expect("put the socket back");
    }
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        text(&out.stderr).contains("HAProxy slot(s) set ready"),
        "the slots the failed apply parked are restored:\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        f.get("app.test").map(|b| b.trim().to_string()),
        Ok("version=v2".to_string())
    );
    assert_eq!(app_containers(&f, &app).len(), before.len(), "no stray");
    let forced = eventually(Duration::from_secs(20), || {
        f.forced_slots().ok().filter(Vec::is_empty)
    });
    assert!(
        forced.is_some(),
        "HAProxy slots left in maintenance or drain: {:?}",
        f.forced_slots()
    );
    f.itsup_expect(&["apply", "--dry-run"], 0);
    let stats = load.finish();
    deploy_support::assert_no_failed(&stats, "failed requests while HAProxy's sockets were gone");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
}

/// Engine itsup: the proxy's admin socket (`proxy/itsup/run/admin.sock`) gone while apply waits
/// for the new container: admitting it fails with an error naming the socket, exit 1, the new
/// container removed, the rendered proxy file back (no pin left) and the old version serving
/// without a failed request; with the socket back, the next apply rolls out through it.
#[test]
fn itsup_admin_socket_gone_mid_rollout_leaves_the_old_version_serving_and_the_next_apply_converges()
{
    let mut tags = deploy_support::ImageTags::new();
    // Built by apply from the binary under test (as in deploy_ops' engine-itsup tests).
    let image = deploy_support::itsup_image_tag();
    tags.adopt(&image);
    let f = Fixture::itsup_engine(&image);
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply", &app], 0);
    f.run_itsup_proxy(&image, deploy_support::free_port());
    let get = || {
        deploy_support::Client::connect(f.https_port)
            .and_then(|mut c| c.get("app.test"))
            .map(|b| b.trim().to_string())
    };
    let body = eventually(Duration::from_secs(20), || get().ok());
    assert_eq!(body.as_deref(), Some("version=v1"));
    let socket = f.root.join("proxy/itsup/run/admin.sock");
    eventually(Duration::from_secs(10), || socket.exists().then_some(()))
        .expect("the proxy's admin socket appears in proxy/itsup/run/");
    let before = app_containers(&f, &app);
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(600));

    slow_ready_v2(&f);
    let child = spawn_apply(&f, None, &[&app]);
    wait_for_readiness_wait(&f, &app, before.len(), &child);
    let away = socket.with_extension("sock.away");
    std::fs::rename(&socket, &away).expect("move the socket");
    let out = child.wait_with_output().expect("apply");
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    eprintln!("apply with the itsup proxy's admin socket gone:\n{report}");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("proxy/itsup/run/admin.sock"),
        "the report names the socket:\n{report}"
    );
    assert_eq!(
        get(),
        Ok("version=v1".to_string()),
        "the old version serves"
    );
    assert_eq!(
        app_containers(&f, &app),
        before,
        "the new container is gone"
    );
    f.itsup_expect(&["diff"], 0);

    std::fs::rename(&away, &socket).expect("put the socket back");
    let out = f.itsup_expect(&["apply", &app], 0);
    assert!(
        text(&out.stdout).contains("through the itsup proxy's admin API"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(get(), Ok("version=v2".to_string()));
    assert_eq!(app_containers(&f, &app).len(), before.len(), "no stray");
    f.itsup_expect(&["diff"], 0);
    let stats = load.finish();
    deploy_support::assert_no_failed(&stats, "failed requests while the admin socket was gone");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
}
