//! Deploy operations against the real Docker engine: the apply lock, egress order, secrets,
//! `svc` passthrough, `status`, and the Traefik drain-file contract (the container side only:
//! no Traefik image can be pulled here).

mod deploy_support;

use std::process::{Command, Stdio};
use std::time::Duration;

use deploy_support::{APP_V1, Fixture, Load, eventually};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn created(name: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("name={name}"),
            "--format",
            "{{.ID}}",
        ])
        .output()
        .expect("docker ps");
    let id = text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.Created}}", &id])
        .output()
        .expect("docker inspect");
    text(&out.stdout).trim().to_string()
}

#[test]
fn deploy_concurrent_applies_wait_or_refuse() {
    let f = Fixture::new();
    f.app_project("a", APP_V1, "");
    let first = Command::new(deploy_support::itsup_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["apply", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("first apply");
    deploy_support::wait_for_apply_lock(&f.root, "the first apply holds the lock");
    // Both start while the first apply holds the lock: one waits for it, one refuses at once.
    let waiter = Command::new(deploy_support::itsup_bin())
        .arg("--root")
        .arg(&f.root)
        .args(["apply", "--lock-timeout", "120"])
        .env("CI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("waiting apply");
    let refused = f.itsup(&["apply", "--lock-timeout", "0"]);
    let waiter = waiter.wait_with_output().expect("waiting apply ends");
    let first = first.wait_with_output().expect("first apply ends");
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("another itsup apply"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(waiter.status.code(), Some(0), "{}", text(&waiter.stderr));
    assert!(
        text(&waiter.stderr).contains("waiting for another itsup apply"),
        "{}",
        text(&waiter.stderr)
    );
    assert!(
        text(&waiter.stdout).contains("0 stack(s) deployed")
            || text(&waiter.stdout).contains("unchanged"),
        "the second apply found nothing left to do: {}",
        text(&waiter.stdout)
    );
}

#[test]
fn deploy_egress_order_secrets_svc_and_status() {
    let f = Fixture::new();
    let db = f.name("db");
    let api = f.name("api");
    // Provider: not routed, reached by `api` through an egress network.
    f.write(&format!("projects/{db}/ingress.yml"), "ingress: []\n");
    f.write(
        &format!("projects/{db}/docker-compose.yml"),
        &format!(
            "services:\n  store:\n    image: {APP_V1}\n    environment:\n      PORT: \"9000\"\n"
        ),
    );
    // Consumer: its version comes from a secret, layered shared → project.
    f.write(&format!("projects/{api}/ingress.yml"), &format!("ingress:\n  - service: web\n    domain: api.test\n    port: 8080\negress:\n  - {db}:store\n"));
    f.write(
        &format!("projects/{api}/docker-compose.yml"),
        &format!("services:\n  web:\n    image: {APP_V1}\n    environment:\n      PORT: \"8080\"\n      APP_VERSION: \"${{APP_TAG}}-${{SHARED_ONLY}}\"\n    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      retries: 2\n"),
    );
    f.write("secrets/itsup.txt", "APP_TAG=shared\nSHARED_ONLY=layered\n");
    f.write(&format!("secrets/{api}.txt"), "APP_TAG=s3cr3t-tag\n");

    f.itsup_expect(&["apply", "--parallel", "4"], 0);
    let body = eventually(Duration::from_secs(20), || f.get("api.test").ok()).expect("api answers");
    assert_eq!(body.trim(), "version=s3cr3t-tag-layered");
    let generated =
        std::fs::read_to_string(f.root.join(format!("upstream/{api}/docker-compose.yml")))
            .expect("generated");
    assert!(
        !generated.contains("s3cr3t"),
        "secret value written into a generated file"
    );
    assert!(
        created(&format!("{db}_store")) < created(&format!("{api}_web")),
        "provider first"
    );
    let egress = format!("egress-{api}-to-{db}-store");
    let nets = Command::new("docker")
        .args(["network", "inspect", &egress])
        .output()
        .expect("inspect");
    assert!(
        nets.status.success(),
        "egress network {egress} created by deploy"
    );

    // svc: passthrough with the exit code passed back; a hand-run `up -d` recreates nothing.
    let ps = f.itsup_expect(&["svc", &api, "ps"], 0);
    assert!(text(&ps.stdout).contains("web"), "{}", text(&ps.stdout));
    let before = f.containers();
    f.itsup_expect(&["svc", &api, "up", "-d"], 0);
    assert_eq!(
        f.containers(),
        before,
        "svc up -d recreated a container apply left running"
    );
    let failing = f.itsup(&[
        "svc",
        &api,
        "exec",
        "-T",
        "web",
        "/usr/bin/touch",
        "/no/such/dir/x",
    ]);
    assert_eq!(
        failing.status.code(),
        Some(1),
        "compose's exit code: {}",
        text(&failing.stderr)
    );

    // status: everything matches; a changed secret shows as drift before the next apply.
    let status = f.itsup_expect(&["status", "--format", "json"], 0);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let rows = rows.as_array().expect("rows");
    let web = rows
        .iter()
        .find(|r| r["stack"] == api.as_str() && r["service"] == "web")
        .expect("api/web row");
    assert_eq!(web["hash_match"], true);
    assert_eq!(web["drift"], "ok");
    assert_eq!(web["health"][0], "healthy");
    assert!(
        rows.iter()
            .any(|r| r["stack"] == "proxy" && r["running"] == 1)
    );
    f.write(&format!("secrets/{api}.txt"), "APP_TAG=rotated\n");
    let status = f.itsup_expect(&["status"], 0);
    let table = text(&status.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with(&api))
        .expect("api line");
    assert!(
        line.contains("outdated") && line.contains("differ"),
        "{table}"
    );
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(20), || {
        f.get("api.test").ok().filter(|b| b.contains("rotated"))
    })
    .expect("rotated secret deployed");
    assert_eq!(body.trim(), "version=rotated-layered");

    // The egress row goes: both sides roll out without the network, which apply then removes
    // (the dry run says so); a network of the same shape that itsup did not create is kept.
    let foreign = format!("egress-{api}-to-{db}-other");
    deploy_support::docker(&["network", "create", &foreign]);
    f.write(
        &format!("projects/{api}/ingress.yml"),
        "ingress:\n  - service: web\n    domain: api.test\n    port: 8080\n",
    );
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = text(&dry.stdout);
    assert!(
        plan.lines()
            .any(|l| l.trim_start().starts_with(&egress) && l.contains("prune")),
        "{plan}"
    );
    assert!(!plan.contains(&foreign), "{plan}");
    let out = f.itsup_expect(&["apply", "--format", "json"], 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["networks"][0]["network"], egress.as_str(), "{json}");
    assert_eq!(json["networks"][0]["removed"], true, "{json}");
    let gone = Command::new("docker")
        .args(["network", "inspect", &egress])
        .output()
        .expect("inspect");
    assert!(!gone.status.success(), "{egress} removed");
    let kept = Command::new("docker")
        .args(["network", "inspect", &foreign])
        .output()
        .expect("inspect");
    deploy_support::docker(&["network", "rm", &foreign]);
    assert!(
        kept.status.success(),
        "a network itsup did not create is kept"
    );
    f.itsup_expect(&["apply", "--dry-run"], 0);

    // A project with a typo is left exactly as it runs: never pruned; apply says so (exit 1).
    let store = deploy_support::running(&f)
        .into_iter()
        .filter(|n| n.starts_with(&db))
        .collect::<Vec<_>>();
    f.write(&format!("projects/{db}/ingress.yml"), "ingres: []\n");
    let out = f.itsup_expect(&["apply"], 1);
    assert!(text(&out.stderr).contains(&db), "{}", text(&out.stderr));
    let still: Vec<String> = deploy_support::running(&f)
        .into_iter()
        .filter(|n| n.starts_with(&db))
        .collect();
    assert_eq!(still, store, "the broken project's container keeps running");
}

#[test]
fn deploy_traefik_drain_marks_the_container_unhealthy() {
    use itsup::deploy::admission::Admission;
    use itsup::deploy::docker::{self, Health};

    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
        }
    }
    deploy_support::ensure_images();
    let name = format!("itsupt-{:06x}-drain", deploy_support::random() % 0xff_ffff);
    let _gone = Gone(name.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let d = docker::connect().await.expect("docker");
        // Exec form: the image has no shell, so `docker run --health-cmd` (CMD-SHELL) can't work.
        let body = bollard::models::ContainerCreateBody {
            image: Some(APP_V1.into()),
            healthcheck: Some(bollard::models::HealthConfig {
                test: Some(vec![
                    "CMD".into(),
                    "/usr/local/bin/testapp".into(),
                    "check".into(),
                ]),
                interval: Some(500_000_000),
                retries: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&name)
            .build();
        let id = d
            .create_container(Some(opts), body)
            .await
            .expect("create")
            .id;
        d.start_container(
            &id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start");
        let mut healthy = false;
        for _ in 0..100 {
            if docker::health(&d, &id).await.expect("health") == Health::Healthy {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(healthy, "the app container became healthy");
        Admission::Traefik
            .drain(&d, &[(id.clone(), None)], Duration::from_secs(20))
            .await
            .expect("drain");
        assert!(
            matches!(
                docker::health(&d, &id).await.expect("health"),
                Health::Unhealthy(_)
            ),
            "after the drain file the healthcheck fails, so Traefik's Docker provider drops it"
        );
    });
}

#[test]
fn deploy_stop_first_for_a_service_with_host_ports() {
    let f = Fixture::new();
    let name = f.name("ports");
    let port = deploy_support::free_port();
    let compose = |version: &str| {
        format!(
            "services:\n  web:\n    image: {APP_V1}\n    environment:\n      PORT: \"8080\"\n      APP_VERSION: {version}\n    ports:\n      - \"127.0.0.1:{port}:8080\"\n    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      retries: 2\n    stop_grace_period: 2s\n"
        )
    };
    f.write(&format!("projects/{name}/ingress.yml"), "ingress: []\n");
    f.write(
        &format!("projects/{name}/docker-compose.yml"),
        &compose("one"),
    );
    f.itsup_expect(&["apply"], 0);
    let direct = || {
        let out = Command::new("curl")
            .args(["-sf", "-m", "2", &format!("http://127.0.0.1:{port}/")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| text(&out.stdout).trim().to_string())
    };
    assert_eq!(
        eventually(Duration::from_secs(10), direct).as_deref(),
        Some("version=one")
    );

    f.write(
        &format!("projects/{name}/docker-compose.yml"),
        &compose("two"),
    );
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = text(&dry.stdout);
    let line = plan.lines().find(|l| l.contains("web")).unwrap_or_default();
    assert!(
        line.contains("recreate") && line.contains("publishes host ports"),
        "{plan}"
    );
    let before = f.containers();
    f.itsup_expect(&["apply"], 0);
    assert_eq!(
        eventually(Duration::from_secs(10), || direct()
            .filter(|b| b.contains("two")))
        .as_deref(),
        Some("version=two")
    );
    let after = f.containers();
    assert_eq!(
        after.len(),
        before.len(),
        "one container, replaced: {after:?}"
    );
}

/// `GET /servers` of an itsup proxy's admin API: (cluster, address, state, inflight) rows.
fn admin_servers(port: u16) -> Vec<(String, String, String)> {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /servers HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return Vec::new();
    }
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let rows: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    rows.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                    (field("cluster"), field("address"), field("state"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Engine itsup: a start-first rollout pins the service's cluster to the containers'
/// addresses, admits the new one and drains the old one through the admin API of a real
/// `itsup proxy` (the binary under test, in a container on the proxy network so that Docker DNS
/// works, its listener and admin API published on 127.0.0.1), under load with zero failed
/// requests; a broken release is never admitted; the rendered proxy file is back afterwards.
#[test]
fn deploy_itsup_engine_rollout_through_the_admin_api() {
    let mut tags = deploy_support::ImageTags::new();
    // Built by apply from the binary under test (see deploy_apply_builds_the_missing_itsup_image).
    let image = deploy_support::itsup_image_tag();
    tags.adopt(&image);
    let f = Fixture::itsup_engine(&image);
    let app = f.app_project("app", APP_V1, "");
    // The project only: the proxy runs by hand below, with its admin API reachable from here.
    f.itsup_expect(&["apply", &app], 0);
    let admin = deploy_support::free_port();
    let proxy = f.run_itsup_proxy(&image, admin);
    let get = || {
        deploy_support::Client::connect(f.https_port)
            .and_then(|mut c| c.get("app.test"))
            .ok()
    };
    let body =
        eventually(Duration::from_secs(20), get).expect("the app answers through itsup proxy");
    assert_eq!(body.trim(), "version=v1");
    // Plain HTTP is sent to HTTPS on the https port, path kept.
    let redirect = deploy_support::Client::connect_plain(f.http_port)
        .and_then(|mut c| c.get_path("app.test", "/x?y=1"))
        .expect_err("plain HTTP is redirected");
    assert!(
        redirect.contains("301")
            && redirect.contains(&format!("https://app.test:{}/x?y=1", f.https_port)),
        "{redirect}"
    );
    let cluster = format!("{app}-web-8080");
    let alias = vec![(
        cluster.clone(),
        format!("{app}-web:8080"),
        "ready".to_string(),
    )];
    assert_eq!(admin_servers(admin), alias);

    // New image under load: pinned, admitted, drained through the admin API, reached (with no
    // flag) through the socket the rendered proxy file puts in proxy/itsup/run/; zero failures.
    let socket = f.root.join("proxy/itsup/run/admin.sock");
    eventually(Duration::from_secs(10), || socket.exists().then_some(()))
        .expect("the proxy's admin socket appears in proxy/itsup/run/");
    f.app_project("app", deploy_support::APP_V2, "");
    let admin_addr = format!("127.0.0.1:{admin}");
    let before = f.containers();
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the rollout");
    let started = std::time::Instant::now();
    let out = f.itsup_expect(&["apply", &app], 0);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let stats = load.finish();
    eprintln!(
        "engine itsup rollout under load: {} requests served, {} failed, apply {:.1} s",
        stats.ok,
        stats.failed,
        took.as_secs_f64()
    );
    assert!(
        text(&out.stdout).contains("through the itsup proxy's admin API"),
        "{}",
        text(&out.stdout)
    );
    let after = f.containers();
    deploy_support::assert_clean_rollout(
        &stats,
        "version=v2",
        &before,
        &after,
        "the app container was replaced",
    );
    let logs = Command::new("docker")
        .args(["logs", &proxy])
        .output()
        .expect("docker logs");
    let logs = text(&logs.stderr);
    assert!(
        logs.lines()
            .any(|l| l.contains("admin state changed") && l.contains("Drain")),
        "the old container was drained through the admin API:\n{logs}"
    );
    // The rendered file is back: the alias again, nothing left for `itsup diff`.
    assert_eq!(admin_servers(admin), alias);
    f.itsup_expect(&["diff"], 0);

    // A broken release is never admitted: exit 1, the old one serves, no stray container. This
    // time over TCP (`--proxy-admin`), the way to reach a proxy run outside the generated stack.
    f.app_project("app", deploy_support::APP_V2, "      APP_BROKEN: \"1\"\n");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(180));
    let out = f.itsup_expect(
        &[
            "apply",
            &app,
            "--proxy-admin",
            &admin_addr,
            "--timeout",
            "30",
        ],
        1,
    );
    let stats = load.finish();
    eprintln!(
        "engine itsup broken release under load: {} requests served, {} failed",
        stats.ok, stats.failed
    );
    assert!(
        text(&out.stdout).contains("old container still serves"),
        "{}",
        text(&out.stdout)
    );
    deploy_support::assert_no_failed(&stats, "the broken release took traffic");
    assert_eq!(get().as_deref().map(str::trim), Some("version=v2"));
    assert_eq!(f.containers(), after, "no stray container left");
    assert_eq!(admin_servers(admin), alias);
    f.itsup_expect(&["diff"], 0);
}

/// Removes a named volume when dropped (Fixture removes containers and networks, not volumes).
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        deploy_support::docker(&["volume", "rm", "-f", &self.0]);
    }
}

fn exists(kind: &str, name: &str) -> bool {
    Command::new("docker")
        .args([kind, "inspect", name])
        .output()
        .expect("docker inspect")
        .status
        .success()
}

#[test]
fn deploy_down_stops_then_cleans_and_apply_brings_it_back() {
    let f = Fixture::new();
    let name = f.name("vol");
    f.write(
        &format!("projects/{name}/ingress.yml"),
        "ingress:\n  - service: web\n    domain: vol.test\n    port: 8080\n",
    );
    f.write(
        &format!("projects/{name}/docker-compose.yml"),
        &format!(
            "services:\n  web:\n    image: {APP_V1}\n    environment:\n      PORT: \"8080\"\n    volumes:\n      - data:/data\n    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      retries: 2\n    stop_grace_period: 5s\nvolumes:\n  data: {{}}\n"
        ),
    );
    let volume = format!("{name}_data");
    let _volume = VolumeGuard(volume.clone());
    let serving = |what: &str| {
        eventually(Duration::from_secs(30), || f.get("vol.test").ok())
            .unwrap_or_else(|| panic!("vol.test does not answer {what}"));
    };
    f.itsup_expect(&["apply"], 0);
    serving("after the first apply");
    let all = f.containers();
    assert!(all.len() >= 3, "proxy and project containers: {all:?}");

    // A target this root does not run is refused, and nothing is stopped.
    let out = f.itsup_expect(&["down", "no-such-project"], 1);
    assert!(
        text(&out.stderr).contains("no-such-project"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(deploy_support::running(&f).len(), all.len());

    // down: nothing runs, every container and the volume are kept.
    let out = f.itsup_expect(&["down"], 0);
    let report = text(&out.stdout);
    let project_line = report.find(&format!("{name}:")).expect("project line");
    let proxy_line = report.find("proxy:").expect("proxy line");
    assert!(project_line < proxy_line, "projects first: {report}");
    assert!(deploy_support::running(&f).is_empty(), "{report}");
    assert_eq!(f.containers(), all, "down without --clean keeps containers");
    assert!(exists("volume", &volume));
    assert!(f.get("vol.test").is_err(), "the proxy is down");

    // apply brings the same containers back.
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        text(&out.stdout).contains("create"),
        "{}",
        text(&out.stdout)
    );
    serving("after apply following down");
    assert_eq!(f.containers(), all);

    // down --clean: containers and the networks apply and Compose created are gone; the
    // volume stays.
    let out = f.itsup_expect(&["down", "--clean", "--format", "json"], 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(json["ok"], true, "{json}");
    assert!(f.containers().is_empty(), "{json}");
    assert!(!exists("network", &f.network), "{json}");
    assert!(!exists("network", &format!("{name}_default")), "{json}");
    assert!(exists("volume", &volume), "volumes are never removed");
    let removed: Vec<&str> = json["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .filter(|n| n["removed"] == true)
        .filter_map(|n| n["network"].as_str())
        .collect();
    assert!(removed.contains(&f.network.as_str()), "{json}");

    // Nothing left: down says so and succeeds; apply starts everything again.
    let out = f.itsup_expect(&["down"], 0);
    assert!(
        text(&out.stdout).contains("nothing"),
        "{}",
        text(&out.stdout)
    );
    f.itsup_expect(&["apply"], 0);
    serving("after apply following down --clean");

    // One project only: its containers and Compose network go, the proxy and its network stay.
    let out = f.itsup_expect(&["down", &name, "--clean"], 0);
    let report = text(&out.stdout);
    assert!(!report.contains("proxy:"), "{report}");
    assert!(!exists("network", &format!("{name}_default")), "{report}");
    assert!(exists("network", &f.network), "{report}");
    let left = deploy_support::running(&f);
    assert!(
        !left.is_empty() && left.iter().all(|c| !c.starts_with(&name)),
        "{left:?}"
    );
    assert!(exists("volume", &volume));
}

/// The DNS honeypot of `dns:` in itsup.yml with the real dnsmasq (Debian's, image
/// `.ci/images/dnsmasq.sh`): the routed service's `dns:` is the honeypot, a name resolves
/// through it from inside that service's container, and the query is in the honeypot's log.
/// Upstream is a second real dnsmasq on the proxy network holding the name (a stand-in for the
/// host's resolvers: no test may reach an outside DNS server).
#[test]
fn deploy_dns_honeypot_logs_and_forwards_queries() {
    deploy_support::run_image_script(".ci/images/app.sh");
    deploy_support::run_image_script(".ci/images/dnsmasq.sh");
    let f = Fixture::new();
    let net: ipnet::Ipv4Net = f.subnet.parse().expect("subnet");
    let host = |n: u32| std::net::Ipv4Addr::from(u32::from(net.network()) + n).to_string();
    let upstream = host(200);
    let honeypot = host(254);
    let itsup_yml = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("itsup.yml");
    f.write(
        "projects/itsup.yml",
        &format!(
            "{itsup_yml}dns:\n  enabled: true\n  image: itsup-test/dnsmasq:debian\n  upstream: [{upstream}]\n"
        ),
    );
    let name = f.app_project("dns", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let generated =
        std::fs::read_to_string(f.root.join(format!("upstream/{name}/docker-compose.yml")))
            .expect("generated");
    assert!(generated.contains(&honeypot), "{generated}");

    let probe = format!("probe-{}.test", f.prefix);
    deploy_support::docker(&[
        "run",
        "-d",
        "--name",
        &format!("{}-upstream", f.prefix),
        "--network",
        &f.network,
        "--ip",
        &upstream,
        "itsup-test/dnsmasq:debian",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        &format!("--host-record={probe},10.9.8.7"),
    ]);
    let web = deploy_support::docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={name}"),
    ])
    .trim()
    .to_string();
    assert!(!web.is_empty(), "the project's container runs");
    let dns = deploy_support::docker(&["inspect", "-f", "{{json .HostConfig.Dns}}", &web]);
    assert_eq!(dns.trim(), format!("[\"{honeypot}\"]"));
    let answer = eventually(Duration::from_secs(20), || {
        let out = deploy_support::docker(&["exec", &web, "testapp", "resolve", &probe]);
        out.contains("10.9.8.7").then_some(out)
    });
    assert!(
        answer.is_some(),
        "{probe} did not resolve through the honeypot"
    );

    let dnsmasq = f
        .proxy_container("dns-honeypot")
        .expect("the honeypot runs");
    let logs = Command::new("docker")
        .args(["logs", &dnsmasq])
        .output()
        .expect("docker logs");
    let logs = format!("{}{}", text(&logs.stdout), text(&logs.stderr));
    assert!(
        logs.contains(&format!("query[A] {probe} from")),
        "the query is logged: {logs}"
    );
    assert!(
        logs.contains(&format!("forwarded {probe} to {upstream}")),
        "and forwarded upstream: {logs}"
    );
    assert!(
        logs.contains("reply") && logs.contains("10.9.8.7"),
        "{logs}"
    );
}

/// The itsup image is built by apply from its own executable when the engine lacks it (a tag
/// unique to this test through `proxy.itsupImage`), runs `itsup --version` as its entrypoint,
/// serves as engine itsup, and is not rebuilt by the next apply.
#[test]
fn deploy_apply_builds_the_missing_itsup_image() {
    let mut tags = deploy_support::ImageTags::new();
    let image = deploy_support::itsup_image_tag();
    tags.adopt(&image);
    assert!(!exists("image", &image), "{image} is new");
    let f = Fixture::itsup_engine(&image);
    f.app_project("app", APP_V1, "");
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    assert!(
        text(&dry.stderr).contains(&format!("the itsup image {image} is missing")),
        "{}",
        text(&dry.stderr)
    );
    assert!(!exists("image", &image), "a dry run builds nothing");
    let out = f.itsup_expect(&["apply"], 0);
    assert!(
        text(&out.stderr).contains(&format!("built {image}")),
        "{}",
        text(&out.stderr)
    );
    let version = Command::new("docker")
        .args(["run", "--rm", &image, "--version"])
        .output()
        .expect("docker run");
    assert_eq!(
        text(&version.stdout).trim(),
        format!("itsup {}", env!("CARGO_PKG_VERSION")),
        "{}",
        text(&version.stderr)
    );
    // Over HTTPS: engine itsup redirects plain HTTP there.
    let body = eventually(Duration::from_secs(30), || {
        deploy_support::Client::connect(f.https_port)
            .and_then(|mut c| c.get("app.test"))
            .ok()
    })
    .expect("the app answers through the itsup proxy of the built image");
    assert_eq!(body.trim(), "version=v1");
    let again = f.itsup_expect(&["apply"], 0);
    assert!(
        !text(&again.stderr).contains("building"),
        "{}",
        text(&again.stderr)
    );
}
