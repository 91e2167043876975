//! Start-first rollouts through the real Traefik (`traefik:v3.6`, the rendered stack with its
//! Docker socket proxy stand-in), observed from both sides: a load loop through Traefik's HTTPS
//! entrypoint sees zero failed requests, and Traefik's own API (`/api/rawdata`, enabled for the
//! test through `projects/traefik.yml`) shows the new container admitted only once healthy, the
//! old one dropped while it still runs (the drain-file healthcheck path: `/tmp/drain` makes its
//! healthcheck fail, Traefik's Docker provider stops routing to an unhealthy container), and
//! never an empty server list. A broken release exits 1, is never admitted, the old serves.

mod deploy_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_support::*;

/// No CA is reachable from the tests: point the resolver at a closed local port rather than
/// at Let's Encrypt (Traefik serves its default certificate meanwhile).
const NO_ACME: &str = "acme:\n  caServer: https://127.0.0.1:9/dir\n";

/// `GET path` on `ip:port` (HTTP/1.0: no chunked body to decode), the body of a 200.
fn http_get(ip: &str, port: u16, path: &str) -> Option<String> {
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: traefik\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1);
    (status == Some("200")).then(|| body.to_string())
}

/// The server URLs Traefik routes to for the services of `project` (from `/api/rawdata`).
fn traefik_servers(api_ip: &str, project: &str) -> Option<BTreeSet<String>> {
    let raw: serde_json::Value = serde_json::from_str(&http_get(api_ip, 8080, "/api/rawdata")?)
        .ok()
        .filter(|v: &serde_json::Value| v.get("services").is_some())?;
    let mut urls = BTreeSet::new();
    for (name, svc) in raw["services"].as_object()? {
        if !name.starts_with(project) {
            continue;
        }
        for s in svc["loadBalancer"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(u) = s["url"].as_str() {
                urls.insert(u.to_string());
            }
        }
    }
    Some(urls)
}

fn ip_on(container: &str, network: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    ])
    .trim()
    .to_string()
}

/// What Traefik routes to, polled with the old container's state.
#[derive(Debug, Clone)]
struct Seen {
    servers: BTreeSet<String>,
    old_running: bool,
}

/// Polls Traefik's API and the old container until stopped.
struct Observer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Observer {
    fn start(api_ip: String, project: String, old: String) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(servers) = traefik_servers(&api_ip, &project) {
                    let state = docker(&["inspect", "-f", "{{.State.Running}}", &old]);
                    log.lock().expect("seen").push(Seen {
                        servers,
                        old_running: state.trim() == "true",
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Observer {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().expect("seen").clone()
    }
}

fn app_containers(f: &Fixture, project: &str) -> Vec<String> {
    running(f)
        .into_iter()
        .filter(|n| n.starts_with(project))
        .collect()
}

#[test]
fn traefik_rollout_under_load_drains_through_traefik_and_refuses_a_broken_release() {
    clean_stale();
    let f = Fixture::traefik(TRAEFIK, NO_ACME);
    f.write("projects/traefik.yml", "api:\n  insecure: true\n");
    let app = f.app_project("app", APP_V1, "");
    f.itsup_expect(&["apply"], 0);
    let body = eventually(Duration::from_secs(30), || f.get("app.test").ok())
        .expect("the app answers through Traefik");
    assert_eq!(body.trim(), "version=v1");
    let traefik = f.proxy_container("traefik").expect("traefik runs");
    let api_ip = ip_on(&traefik, &f.network);
    let before = app_containers(&f, &app);
    assert_eq!(before.len(), 1, "{before:?}");
    let old_url = format!("http://{}:8080", ip_on(&before[0], &f.network));
    let listed = eventually(Duration::from_secs(10), || {
        traefik_servers(&api_ip, &app).filter(|s| s.contains(&old_url))
    });
    assert!(
        listed.is_some(),
        "Traefik's API lists the app at {old_url}: {:?}",
        http_get(&api_ip, 8080, "/api/rawdata")
    );

    // New version under load: start-first through Traefik.
    f.app_project("app", APP_V2, "");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(120));
    eventually(Duration::from_secs(10), || {
        (load.stats().ok > 20).then_some(())
    })
    .expect("load loop running before the rollout");
    let observer = Observer::start(api_ip.clone(), app.clone(), before[0].clone());
    let out = f.itsup_expect(&["apply"], 0);
    std::thread::sleep(Duration::from_secs(1));
    let seen = observer.finish();
    let stats = load.finish();
    let after = app_containers(&f, &app);
    assert_clean_rollout(
        &stats,
        "version=v2",
        &before,
        &after,
        "the app was replaced",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("start-first"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let new_url = format!("http://{}:8080", ip_on(&after[0], &f.network));
    assert!(
        seen.iter().all(|s| !s.servers.is_empty()),
        "Traefik never had an empty server list: {seen:?}"
    );
    let both = seen
        .iter()
        .position(|s| s.servers.contains(&old_url) && s.servers.contains(&new_url));
    let dropped = seen
        .iter()
        .position(|s| !s.servers.contains(&old_url) && s.servers.contains(&new_url));
    assert!(
        both.is_some() && dropped.is_some() && both < dropped,
        "the new container was admitted beside the old, then the old dropped: {seen:?}"
    );
    assert!(
        dropped.is_some_and(|i| seen[i].old_running),
        "Traefik dropped the old container while it still ran (drained by its healthcheck, \
         not by its stop): {seen:?}"
    );

    // A broken release: its healthcheck fails, Traefik never routes to it, apply exits 1.
    f.app_project("app", APP_V2, "      APP_BROKEN: \"1\"\n");
    let load = Load::start(f.https_port, "app.test", Duration::from_secs(120));
    let observer = Observer::start(api_ip.clone(), app.clone(), after[0].clone());
    let out = f.itsup_expect(&["apply", "--timeout", "15"], 1);
    let seen = observer.finish();
    let stats = load.finish();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("FAILED") && report.contains("old container still serves"),
        "{report}"
    );
    assert_no_failed(&stats, "the broken release took traffic");
    assert!(
        seen.iter()
            .all(|s| s.servers == BTreeSet::from([new_url.clone()])),
        "Traefik only ever routed to the serving container: {seen:?}"
    );
    assert_eq!(f.get("app.test").expect("old serves").trim(), "version=v2");
    assert_eq!(app_containers(&f, &app), after, "no stray container");

    // A new Traefik version: the plan says it is replaced blue/green behind the edge (done
    // under load in tests/proxy_update.rs).
    let itsup_yml = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("read");
    f.write(
        "projects/itsup.yml",
        &itsup_yml.replace(
            &format!("image: {TRAEFIK}"),
            &format!("image: {TRAEFIK_LATEST}"),
        ),
    );
    let dry = f.itsup_expect(&["apply", "--dry-run"], 2);
    let plan = String::from_utf8_lossy(&dry.stdout);
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("traefik "))
        .unwrap_or_default();
    assert!(
        line.contains("rollout") && line.contains("blue/green"),
        "{plan}"
    );
}
