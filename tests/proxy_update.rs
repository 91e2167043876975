//! Updating the proxy itself: a new HAProxy image applied under load is a hand-over, not a
//! recreate. The stack's `haproxy-net` service holds the network namespace (published ports,
//! proxy network); a second HAProxy starts in it, takes the listening sockets over from the
//! running one (`-x run/admin.sock`), and the old one soft-stops (SIGUSR1), finishing its
//! connections. The load loop through the HTTPS port sees zero failed requests.

mod deploy_support;

use std::time::Duration;

use deploy_support::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn haproxy_image_change_under_load_is_a_hand_over() {
    clean_stale();
    let f = Fixture::new();
    f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("app.test").ok())
        .expect("the app answers through HAProxy");
    assert_eq!(body.trim(), "version=v1");
    let old = f.proxy_container("haproxy").expect("haproxy runs");
    let holder = f.proxy_container("haproxy-net").expect("haproxy-net runs");

    // The same HAProxy under another tag: a new image for the proxy service.
    let mut tags = ImageTags::new();
    let next = format!(
        "itsupt-{}-{:06x}/haproxy:next",
        std::process::id(),
        random() % 0xff_ffff
    );
    tags.adopt(&next);
    tags.tag(HAPROXY, &next);
    let itsup_yml = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("read");
    f.write(
        "projects/itsup.yml",
        &itsup_yml.replace(&format!("image: {HAPROXY}"), &format!("image: {next}")),
    );
    let dry = stdout(&f.itsup_expect(&["apply", "--dry-run"], 2));
    assert!(
        dry.contains("rollout") && dry.contains("hand-over"),
        "the plan says how the proxy is updated:\n{dry}"
    );

    let load = Load::start(f.https_port, "app.test", Duration::from_secs(120));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the update");
    let out = f.itsup_expect(&["apply"], 0);
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    assert_no_failed(&stats, "failed requests while HAProxy was replaced");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
    let new = f.proxy_container("haproxy").expect("a haproxy runs");
    assert_ne!(new, old, "HAProxy was replaced:\n{}", stdout(&out));
    assert_eq!(
        docker(&["inspect", "-f", "{{.Config.Image}}", &new]).trim(),
        next,
        "the new HAProxy runs the new image"
    );
    assert_eq!(
        f.proxy_container("haproxy-net").as_deref(),
        Some(holder.as_str()),
        "the namespace holder (and its ports) stayed"
    );
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("id={old}")])
            .trim()
            .is_empty(),
        "the old HAProxy is removed"
    );
    // The new HAProxy is the one apply talks to: a config change is still a hitless reload.
    f.app_project("app", APP_V1, "");
    f.write(
        &format!("projects/{}/ingress.yml", f.name("app")),
        "ingress:\n  - service: web\n    domain: app.test\n    port: 8080\n  - service: web\n    domain: app2.test\n    port: 8080\n",
    );
    let out = f.itsup_expect(&["apply"], 0);
    assert!(stdout(&out).contains("reload"), "{}", stdout(&out));
    let body = eventually(Duration::from_secs(20), || f.get("app2.test").ok())
        .expect("the new route answers after the reload");
    assert_eq!(body.trim(), "version=v1");
}

/// No CA is reachable from the tests: the resolver points at a closed local port.
const NO_ACME: &str = "acme:\n  caServer: https://127.0.0.1:9/dir\n";

/// One update of Traefik under load through the edge: a new Traefik container (of `image`)
/// replaced the old one, the edge and its namespace holder stayed, no request failed.
fn traefik_update_under_load(f: &Fixture, what: &str, image: &str) {
    let old = f.proxy_container("traefik").expect("traefik runs");
    let edge = f.proxy_container("edge").expect("the edge runs");
    let holder = f.proxy_container("edge-net").expect("edge-net runs");
    let dry = stdout(&f.itsup_expect(&["apply", "--dry-run"], 2));
    let line = dry
        .lines()
        .find(|l| l.trim_start().starts_with("traefik "))
        .unwrap_or_default();
    assert!(
        line.contains("rollout") && line.contains("blue/green"),
        "{what}: the plan says Traefik is replaced blue/green behind the edge:\n{dry}"
    );
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the update");
    let started = load.stats();
    let apply_start = std::time::Instant::now();
    let out = f.itsup_expect(&["apply"], 0);
    let apply_took = apply_start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    assert_no_failed(
        &stats,
        &format!(
            "{what}: failed requests ({} ok before apply, apply took {:.1} s)\n{}\nedge log:\n{}",
            started.ok,
            apply_took.as_secs_f64(),
            stdout(&out),
            docker(&["logs", "--tail", "40", &edge])
        ),
    );
    assert!(stats.ok > 100, "{what}: too few requests: {}", stats.ok);
    let report = stdout(&out);
    let new = f.proxy_container("traefik").expect("a traefik runs");
    assert_ne!(new, old, "{what}: Traefik was replaced:\n{report}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.Config.Image}}", &new]).trim(),
        image,
        "{what}: the new Traefik runs {image}"
    );
    assert!(
        docker(&["ps", "-aq", "--filter", &format!("id={old}")])
            .trim()
            .is_empty(),
        "{what}: the old Traefik is removed"
    );
    assert_eq!(f.proxy_container("edge").as_deref(), Some(edge.as_str()));
    assert_eq!(
        f.proxy_container("edge-net").as_deref(),
        Some(holder.as_str()),
        "{what}: the ports' holder stayed"
    );
    f.itsup_expect(&["apply", "--dry-run"], 0);
}

#[test]
fn traefik_update_under_load_is_blue_green_behind_the_edge() {
    clean_stale();
    let f = Fixture::traefik(TRAEFIK, NO_ACME);
    f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(30), || f.get("app.test").ok())
        .expect("the app answers through the edge and Traefik");
    assert_eq!(body.trim(), "version=v1");

    // A new entrypoint in Traefik's static configuration (an operator override).
    f.write(
        "projects/traefik.yml",
        "entryPoints:\n  metrics:\n    address: \":8089\"\n",
    );
    traefik_update_under_load(&f, "a new entrypoint", TRAEFIK);

    // A new Traefik version.
    let itsup_yml = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("read");
    f.write(
        "projects/itsup.yml",
        &itsup_yml.replace(
            &format!("image: {TRAEFIK}"),
            &format!("image: {TRAEFIK_LATEST}"),
        ),
    );
    traefik_update_under_load(&f, "v3.6 -> v3.7", TRAEFIK_LATEST);
    let body = f
        .get("app.test")
        .expect("the app answers through the new Traefik");
    assert_eq!(body.trim(), "version=v1");
}
