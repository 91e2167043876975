//! End-to-end deploy against the real Docker engine with engine haproxy: create, zero-failure
//! start-first rollout under load, a broken version that must leave the old one serving,
//! disable (stop) and remove (prune). Images are built locally by `.ci/images/*.sh`.

mod deploy_support;

use std::time::Duration;

use deploy_support::{
    APP_V1, APP_V2, EXAMPLE_IMAGES, EXAMPLE_STACKS, ExampleNetworks, Fixture, Load, eventually,
    tcp_get,
};

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
    let after = f.containers();
    deploy_support::assert_clean_rollout(
        &stats,
        "version=v2",
        &before,
        &after,
        "the app container was replaced",
    );
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
    deploy_support::assert_no_failed(&stats, "the broken version took traffic");
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

fn haproxy_up(f: &Fixture, backend: &str) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runtime = itsup::deploy::haproxy::Runtime::in_dir(&f.root.join("proxy/haproxy"));
    rt.block_on(runtime.slots(backend))
        .map(|slots| slots.iter().filter(|s| s.addr.is_some() && s.up()).count())
        .unwrap_or(0)
}

/// The bundled example itself (a copy of `projects/`, switched to engine haproxy), its images
/// stood in for by the local test app: every step of the end-to-end proof.
#[test]
fn deploy_bundled_example_end_to_end() {
    use std::process::{Command, Stdio};

    deploy_support::example_host_clear();
    let mut tags = deploy_support::ImageTags::new();
    // `itsup agent` runs the itsup image, which apply builds from the binary under test.
    let itsup_image = deploy_support::itsup_image_tag();
    tags.adopt(&itsup_image);
    for image in EXAMPLE_IMAGES {
        tags.tag(deploy_support::APP_EXAMPLE, image);
    }
    let f = Fixture::example(&itsup_image);
    let _networks = ExampleNetworks(f.root.display().to_string());
    let db_port: u16 = std::fs::read_to_string(f.root.join("projects/db/ingress.yml"))
        .expect("db ingress")
        .lines()
        .find_map(|l| l.trim().strip_prefix("hostport:")?.trim().parse().ok())
        .expect("db hostport");

    // Plan before act: every service of the example is created; stop-first where it must be.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = stdout(&dry);
    for service in [
        "app", "api", "worker", "postgres", "broker", "greeter", "haproxy",
    ] {
        assert!(
            plan.lines()
                .any(|l| l.trim_start().starts_with(service) && l.contains("create")),
            "{service} created:\n{plan}"
        );
    }
    f.itsup_expect(&["apply"], 0);

    // Through HAProxy on 127.0.0.1: the website (both names of its certificate), the shop API's
    // source allowlist, the database's TCP port, and the gRPC greeter's two replicas judged
    // healthy by `itsup agent` over gRPC health.
    for host in ["example.com", "www.example.com"] {
        let body = eventually(Duration::from_secs(20), || f.get(host).ok())
            .unwrap_or_else(|| panic!("{host} answers through HAProxy"));
        assert_eq!(body.trim(), "version=example");
    }
    let mut c = deploy_support::Client::connect(f.https_port).expect("connect");
    let denied = c
        .get_path("example.com", "/api/orders")
        .expect_err("not allowed");
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    let reply = eventually(Duration::from_secs(20), || tcp_get(db_port))
        .expect("the db port reaches the postgres service");
    assert!(reply.contains("version=unknown"), "{reply}");
    assert_eq!(
        eventually(Duration::from_secs(30), || {
            (haproxy_up(&f, "greeter-greeter-50051") == 2).then_some(2)
        }),
        Some(2),
        "both greeter replicas up in HAProxy"
    );

    // Nothing changed: the dry run exits 0.
    let dry = f.itsup_expect(&["apply", "--dry-run"], 0);
    assert!(stdout(&dry).contains("unchanged"), "{}", stdout(&dry));

    // status: every service runs with a matching hash; svc passes Compose through.
    let status = f.itsup_expect(&["status", "--format", "json"], 0);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let rows = rows.as_array().expect("rows");
    for stack in EXAMPLE_STACKS {
        let mine: Vec<_> = rows.iter().filter(|r| r["stack"] == stack).collect();
        assert!(!mine.is_empty(), "{stack} in status");
        for r in mine {
            assert_eq!(r["drift"], "ok", "{r}");
            assert_eq!(r["hash_match"], true, "{r}");
        }
    }
    let greeter = rows
        .iter()
        .find(|r| r["stack"] == "greeter")
        .expect("greeter row");
    assert_eq!(greeter["running"], 2, "deploy.replicas: 2");
    let ps = f.itsup_expect(&["svc", "web", "ps"], 0);
    assert!(stdout(&ps).contains("app"), "{}", stdout(&ps));
    let failing = f.itsup(&["svc", "web", "exec", "-T", "app", "/no/such/binary"]);
    assert_ne!(
        failing.status.code(),
        Some(0),
        "compose's exit code passed back"
    );

    // The website's env changes (its SITE_NAME secret): a start-first rollout under load with
    // zero failed requests; meanwhile a second apply refuses and a third waits for the lock.
    f.write("secrets/web.txt", "SITE_NAME=v2\n");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let dry = stdout(&dry);
    let rollouts: Vec<&str> = dry.lines().filter(|l| l.contains(" rollout ")).collect();
    assert_eq!(
        rollouts.len(),
        1,
        "only the website rolls out: {rollouts:?}"
    );
    assert!(rollouts[0].trim_start().starts_with("app"), "{rollouts:?}");
    let before = f.containers();
    let load = Load::start(f.https_port, "example.com", Duration::from_secs(240));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the rollout");
    let spawn = |extra: &[&str]| {
        Command::new(deploy_support::itsup_bin())
            .arg("--root")
            .arg(&f.root)
            .arg("apply")
            .args(extra)
            .env("CI", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn apply")
    };
    let started = std::time::Instant::now();
    let first = spawn(&[]);
    deploy_support::wait_for_apply_lock(&f.root, "the rollout holds the lock");
    let waiter = spawn(&["--lock-timeout", "240"]);
    let refused = f.itsup(&["apply", "--lock-timeout", "0"]);
    let first = first.wait_with_output().expect("rollout apply");
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    eprintln!(
        "example rollout under load: {} requests served, {} failed, apply {:.1} s",
        stats.ok,
        stats.failed,
        took.as_secs_f64()
    );
    let waiter = waiter.wait_with_output().expect("waiting apply");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        stdout(&first),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout(&first).contains("rollout"), "{}", stdout(&first));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another itsup apply"));
    assert_eq!(waiter.status.code(), Some(0), "{waiter:?}");
    assert!(
        String::from_utf8_lossy(&waiter.stderr).contains("waiting for another itsup apply"),
        "{waiter:?}"
    );
    let after = f.containers();
    deploy_support::assert_clean_rollout(
        &stats,
        "version=v2",
        &before,
        &after,
        "the website's container was replaced",
    );

    // A broken release of the website's image (every request fails, so does its healthcheck):
    // exit 1, the old container still serves, nothing stray is left.
    tags.tag(deploy_support::APP_EXAMPLE_BROKEN, "nginx:1.27-alpine");
    let load = Load::start(f.https_port, "example.com", Duration::from_secs(240));
    let out = f.itsup_expect(&["apply", "--timeout", "60"], 1);
    let stats = load.finish();
    eprintln!(
        "example broken release under load: {} requests served, {} failed",
        stats.ok, stats.failed
    );
    let report = stdout(&out);
    assert!(
        report.contains("FAILED") && report.contains("old container still serves"),
        "{report}"
    );
    deploy_support::assert_no_failed(&stats, "the broken release took traffic");
    assert_eq!(
        f.get("example.com").expect("old serves").trim(),
        "version=v2"
    );
    assert_eq!(f.containers(), after, "no stray container left");
    tags.tag(deploy_support::APP_EXAMPLE, "nginx:1.27-alpine");
    f.itsup_expect(&["apply", "--dry-run"], 0);

    // Remove a project: the shop API is pruned with its own network and its egress network
    // to the database; the database itself keeps running.
    std::fs::remove_dir_all(f.root.join("projects/shop-api")).expect("remove shop-api");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = stdout(&dry);
    assert!(plan.contains("prune"), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.contains("egress-shop-api-to-db-postgres") && l.contains("prune")),
        "{plan}"
    );
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        !f.containers().iter().any(|n| n.starts_with("shop-api")),
        "pruned: {:?}",
        f.containers()
    );
    let nets = deploy_support::docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !nets
            .lines()
            .any(|n| n.starts_with("shop-api") || n == "egress-shop-api-to-db-postgres"),
        "the shop API's networks are gone: {nets}\n{}",
        stdout(&out)
    );
    assert!(
        deploy_support::running(&f)
            .iter()
            .any(|n| n.starts_with("db")),
        "the database still runs"
    );
    f.itsup_expect(&["apply", "--dry-run"], 0);
}
