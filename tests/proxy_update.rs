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
