//! `itsup watch` against the real Docker engine and a real HAProxy (started and supervised by
//! the watcher on free loopback ports). Needs the images from `.ci/images/watch-testsrv.sh`.

mod watch_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use watch_support::*;

/// The bound the issue sets for a change to show in routing.
const REFLECTED: Duration = Duration::from_secs(2);
/// How long after the status port shows a config HAProxy's new worker may still be starting
/// (HAProxy 2.6 reloads asynchronously).
const LOADED: Duration = Duration::from_secs(1);

fn route_hosts(status: &Value) -> BTreeSet<String> {
    status["routes"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r["host"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// host → its servers (`ip:port`), as the status port reports them.
fn route_servers(status: &Value) -> BTreeMap<String, BTreeSet<String>> {
    status["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let servers = r["servers"].as_array().into_iter().flatten();
            (
                r["host"].as_str().unwrap_or("").to_string(),
                servers
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

/// Waits until the status port's routes are exactly `want`; returns the status and the wait.
fn exact_routes(
    w: &Watcher,
    what: &str,
    within: Duration,
    want: &BTreeMap<String, BTreeSet<String>>,
) -> (Value, Duration) {
    wait_for(what, within, || {
        let s = w.status()?;
        let got = route_servers(&s);
        if &got == want {
            Ok(s)
        } else {
            Err(format!("routes differ: got {got:?}, want {want:?}"))
        }
    })
}

#[test]
fn two_compose_projects_with_the_same_services_get_distinct_hostnames() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let compose = run.tmp.path().join("docker-compose.yml");
    std::fs::write(
        &compose,
        format!(
            r#"version: "2.4"
services:
  web:
    image: {IMAGE}
    scale: 2
    labels:
      itsup.enable: "true"
      {RUN_LABEL}: "{id}"
  api:
    image: {IMAGE}
    command: ["http", "9000"]
    environment:
      REPLY: "api of ${{WORKTREE}}"
    labels:
      itsup.port: "9000"
      {RUN_LABEL}: "{id}"
networks:
  default:
    external: true
    name: {net}
"#,
            id = run.id,
            net = run.network
        ),
    )
    .expect("write compose file");
    let projects = [format!("{}-a", run.id), format!("{}-b", run.id)];
    for p in &projects {
        let out = Command::new("docker-compose")
            .args(["-p", p, "-f"])
            .arg(&compose)
            .args(["up", "-d"])
            .env("WORKTREE", p)
            .output()
            .expect("docker-compose");
        assert!(
            out.status.success(),
            "compose up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for p in &projects {
        // Replicas answer with their hostname, which is the container's short id.
        let ids = run
            .docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={p}"),
                "--filter",
                "label=com.docker.compose.service=web",
            ])
            .expect("docker ps");
        let ids: BTreeSet<String> = ids.split_whitespace().map(str::to_string).collect();
        assert_eq!(ids.len(), 2, "two web replicas in {p}");
        let host = format!("web.{p}.localhost");
        wait_for(
            &format!("{host} balances over both replicas"),
            Duration::from_secs(10),
            || {
                let seen = replies(&w, &host, 6)?;
                if seen == ids {
                    Ok(())
                } else {
                    Err(format!("saw {seen:?}, want {ids:?}"))
                }
            },
        );
        let api = format!("api.{p}.localhost");
        let (body, _) = wait_for(&api, Duration::from_secs(5), || answer(&w, &api));
        assert_eq!(body, format!("api of {p}"));
    }
    let status = w.status().expect("status");
    let want: BTreeSet<String> = projects
        .iter()
        .flat_map(|p| [format!("web.{p}.localhost"), format!("api.{p}.localhost")])
        .collect();
    assert_eq!(route_hosts(&status), want);
    assert_eq!(
        status["problems"].as_array().map(Vec::len),
        Some(0),
        "{status:#}"
    );
    assert_eq!(w.get("web.nobody.localhost").map(|(c, _)| c), Ok(503));

    // `itsup hosts` writes the same names into a managed block, idempotently.
    let hosts_file = run.tmp.path().join("hosts");
    std::fs::write(&hosts_file, "127.0.0.1 localhost\n").expect("hosts file");
    for expected in ["updated", "already up to date"] {
        let out = Command::new(itsup_bin())
            .args(["hosts", "--network", &run.network, "--file"])
            .arg(&hosts_file)
            .output()
            .expect("itsup hosts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(expected),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&hosts_file).expect("hosts file");
    assert!(
        text.starts_with("127.0.0.1 localhost\n# BEGIN itsup watch"),
        "{text}"
    );
    for host in &want {
        assert!(
            text.contains(&format!("127.0.0.1 {host}\n")),
            "{host} missing in {text}"
        );
    }
}

#[test]
fn stop_start_and_label_changes_are_reflected_within_two_seconds() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let project = format!("{}-p", run.id);
    let mut labels = compose_labels(&project, "web");
    labels.push(("itsup.enable", "true"));
    let c = run.start("web-1", IMAGE, &labels, &[("REPLY", "one")], &[]);
    let host = format!("web.{project}.localhost");
    wait_for("first route", Duration::from_secs(10), || answer(&w, &host));

    run.docker(&["stop", "-t", "0", &c]).expect("stop");
    let (_, took) = wait_for("stopped container leaves routing", REFLECTED, || {
        match w.get(&host)? {
            (503, _) => Ok(()),
            (code, body) => Err(format!("still {code} {body}")),
        }
    });
    eprintln!("stop reflected after {took:?}");

    run.docker(&["start", &c]).expect("start");
    let (body, took) = wait_for("restarted container is routed again", REFLECTED, || {
        answer(&w, &host)
    });
    assert_eq!(body, "one");
    eprintln!("start reflected after {took:?}");

    // Labels cannot change on a running container: compose recreates it, and so does this test.
    run.docker(&["rm", "-f", &c]).expect("rm");
    let renamed = format!("renamed.{project}.localhost");
    let mut labels = compose_labels(&project, "web");
    labels.push(("itsup.host", &renamed));
    run.start("web-2", IMAGE, &labels, &[("REPLY", "two")], &[]);
    let (body, took) = wait_for("new host label is routed", REFLECTED, || {
        answer(&w, &renamed)
    });
    assert_eq!(body, "two");
    assert_eq!(
        w.get(&host).map(|(c, _)| c),
        Ok(503),
        "old host must be gone"
    );
    eprintln!("label change reflected after {took:?}");
}

#[test]
fn tls_passthrough_is_routed_by_sni_on_one_shared_port() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    for name in ["db-a", "db-b"] {
        let project = format!("{}-{name}", run.id);
        let mut labels = compose_labels(&project, "db");
        labels.extend([("itsup.tls", "passthrough"), ("itsup.port", "9443")]);
        run.start(name, IMAGE, &labels, &[("REPLY", name)], &["tls", "9443"]);
    }
    for name in ["db-a", "db-b"] {
        let sni = format!("db.{}-{name}.localhost", run.id);
        let (greeting, _) = wait_for(&sni, Duration::from_secs(10), || tls_hello(w.https, &sni));
        assert_eq!(greeting, format!("{name} sni={sni}"));
    }
    assert!(
        tls_hello(w.https, "db.unknown.localhost").is_err(),
        "unknown SNI must not be routed"
    );
}

#[test]
fn an_unhealthy_container_is_removed_from_rotation() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let project = format!("{}-h", run.id);
    let mut labels = compose_labels(&project, "web");
    labels.push(("itsup.enable", "true"));
    let one = run.start("web-1", HEALTH_IMAGE, &labels, &[("REPLY", "one")], &[]);
    run.start("web-2", HEALTH_IMAGE, &labels, &[("REPLY", "two")], &[]);
    let host = format!("web.{project}.localhost");
    let both: BTreeSet<String> = ["one", "two"].map(String::from).into();
    wait_for(
        "both healthy replicas in rotation",
        Duration::from_secs(15),
        || {
            let seen = replies(&w, &host, 6)?;
            if seen == both {
                Ok(())
            } else {
                Err(format!("saw {seen:?}"))
            }
        },
    );

    run.docker(&["exec", &one, "/srv", "sick"])
        .expect("make unhealthy");
    let (_, took) = wait_for(
        "unhealthy replica leaves rotation",
        Duration::from_secs(10),
        || {
            let seen = replies(&w, &host, 6)?;
            if seen.len() == 1 && seen.contains("two") {
                Ok(())
            } else {
                Err(format!("saw {seen:?}"))
            }
        },
    );
    eprintln!("unhealthy replica left rotation {took:?} after its check started failing");
    let status = w.status().expect("status");
    let out = &status["routes"][0]["out_of_rotation"];
    assert_eq!(out, &serde_json::json!([one]), "{status:#}");

    run.docker(&["exec", &one, "/srv", "well"])
        .expect("make healthy");
    wait_for("recovered replica is back", Duration::from_secs(10), || {
        let seen = replies(&w, &host, 6)?;
        if seen == both {
            Ok(())
        } else {
            Err(format!("saw {seen:?}"))
        }
    });
}

#[test]
fn invalid_labels_are_reported_per_container_and_the_rest_keep_routing() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let project = format!("{}-x", run.id);
    let good = compose_labels(&project, "good")
        .into_iter()
        .chain([("itsup.enable", "true")])
        .collect::<Vec<_>>();
    run.start("good", IMAGE, &good, &[("REPLY", "good")], &[]);
    let bad: [(&str, (&str, &str), &str); 3] = [
        ("port0", ("itsup.port", "0"), "itsup.port=`0`"),
        ("spaces", ("itsup.host", "has space.localhost"), "has space"),
        ("mode", ("itsup.mode", "quic"), "itsup.mode=`quic`"),
    ];
    for (service, label, _) in &bad {
        let mut labels = compose_labels(&project, service);
        labels.push(*label);
        run.start(service, IMAGE, &labels, &[], &[]);
    }
    let host = format!("good.{project}.localhost");
    wait_for("good container routed", Duration::from_secs(10), || {
        answer(&w, &host)
    });
    let (status, _) = wait_for(
        "each bad container reported",
        Duration::from_secs(5),
        || {
            let s = w.status()?;
            let n = s["problems"].as_array().map_or(0, Vec::len);
            if n == bad.len() {
                Ok(s)
            } else {
                Err(format!("{n} problems: {s:#}"))
            }
        },
    );
    for (service, _, needle) in &bad {
        let container = format!("{}-{service}", run.id);
        let found = status["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| {
                p["container"] == container.as_str()
                    && p["severity"] == "error"
                    && p["message"].as_str().is_some_and(|m| m.contains(needle))
            });
        assert!(found, "{container}: `{needle}` not reported in {status:#}");
    }
    assert_eq!(route_hosts(&status), BTreeSet::from([host.clone()]));
    assert!(
        w.log_text().contains("itsup.mode=`quic`"),
        "problems are printed too"
    );
}

#[test]
fn churn_of_fifty_containers_ends_in_exact_routing_with_few_reloads() {
    /// Docker API requests in flight during the churn.
    const IN_FLIGHT: usize = 10;
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let before = w.status().expect("status");
    let reloads_before = before["reloads"].as_u64().unwrap_or(0);
    let events_before = before["events"].as_u64().unwrap_or(0);
    let project = format!("{}-c", run.id);

    // 25 services × 2 replicas; afterwards services 0..10 lose both replicas and 10..20 one.
    let specs: Vec<(String, String)> = (0..25)
        .flat_map(|s| (1..=2).map(move |r| (format!("s{s:02}"), format!("s{s:02}-{r}"))))
        .collect();
    // Creating is not part of the churn (no events that routing sees); starting and stopping is.
    let started = parallel(&specs, 10, |(service, name)| {
        let mut labels = compose_labels(&project, service);
        labels.push(("itsup.enable", "true"));
        run.create(name, IMAGE, &labels, &[("REPLY", name)], &[])
    });
    let api = Api::connect();
    let churn_start = Instant::now();
    api.start_all(&started, IN_FLIGHT);
    let all_started = churn_start.elapsed();
    let doomed: Vec<String> = started
        .iter()
        .filter(|name| {
            let s: u32 = name[name.len() - 4..name.len() - 2].parse().unwrap_or(99);
            s < 10 || (s < 20 && name.ends_with("-2"))
        })
        .cloned()
        .collect();
    api.stop_all(&doomed, IN_FLIGHT);
    let churn = churn_start.elapsed();
    let churn_end = Instant::now();
    // The issue's window is 10 s for the 50 starts and the stops. It is reported, not asserted:
    // the engine sets the pace, not the watcher. On the shared two-core test machine (Docker
    // 20.10 on fuse-overlayfs) the churn took 9.6-9.8 s at load 8-9 but up to 23 s while other
    // builds ran, and the same starts and stops with no watcher at all took 14.8-19.7 s at load
    // 12-19, whether 4, 10 or 25 requests were in flight (bench/watch-engine.sh,
    // bench/README.md). What must hold whatever the pace is the routing and the reload count.
    eprintln!(
        "churn: 50 starts in {all_started:?}, with the {} stops {churn:?} ({IN_FLIGHT} requests in flight; {} the 10 s window)",
        doomed.len(),
        if churn <= Duration::from_secs(10) {
            "within"
        } else {
            "outside"
        }
    );

    // Expected routing, computed from what is still running.
    let survivors: Vec<String> = started
        .iter()
        .filter(|n| !doomed.contains(n))
        .cloned()
        .collect();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // host → the replies of its replicas (each answers with its container name).
    let mut want_replies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, ip) in survivors.iter().zip(api.ips(&survivors, &run.network)) {
        let service = &name[name.len() - 5..name.len() - 2];
        let host = format!("{service}.{project}.localhost");
        want.entry(host.clone())
            .or_default()
            .insert(format!("{ip}:8080"));
        let reply = name.trim_start_matches(&format!("{}-", run.id)).to_string();
        want_replies.entry(host).or_default().insert(reply);
    }
    assert_eq!(want.len(), 15);
    let (status, _) = exact_routes(&w, "final routing is exact", Duration::from_secs(10), &want);
    let settle = churn_end.elapsed();
    // The status port shows a config once HAProxy was told to load it; the new worker takes a
    // moment more.
    for (host, names) in &want_replies {
        wait_for(
            &format!("{host}: every surviving replica answers"),
            LOADED,
            || {
                let seen = replies(&w, host, 2 * names.len())?;
                if &seen == names {
                    Ok(())
                } else {
                    Err(format!("saw {seen:?}, want {names:?}"))
                }
            },
        );
    }
    for s in 0..10 {
        let host = format!("s{s:02}.{project}.localhost");
        wait_for(&format!("{host} is gone"), LOADED, || {
            match w.get(&host)? {
                (503, _) => Ok(()),
                (code, body) => Err(format!("still {code} {body}")),
            }
        });
    }
    let reloads = status["reloads"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(reloads_before);
    let events = status["events"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(events_before);
    eprintln!(
        "churn: 50 starts + {} stops in {churn:?}; {events} docker events -> {reloads} HAProxy reloads; exact routing {settle:?} after the last stop",
        doomed.len()
    );
    assert!(
        events >= 50 + doomed.len() as u64,
        "events counted: {events}"
    );
    assert!(
        reloads >= 1 && reloads * 10 <= events,
        "{reloads} reloads for {events} events"
    );
}

/// The engine going away under a running watcher (as in a Docker restart) is simulated for the
/// watcher alone: it reaches the real engine through [`EngineLink`], a Unix-socket forwarder in
/// this process, which the test cuts (open connections drop, new ones are refused) and restores.
/// Containers change while it is cut; after the link is back, the watcher's rescan must catch the
/// events it missed.
#[test]
fn after_the_engine_comes_back_a_rescan_catches_the_events_missed_while_it_was_gone() {
    /// The watcher's longest wait between two reconnect attempts (`discovery::follow`).
    const MAX_BACKOFF: Duration = Duration::from_secs(8);
    let run = Run::new();
    let mut link = EngineLink::up(run.tmp.path().join("docker.sock"));
    let mut w = Watcher::start_env(&run, &[], &[("DOCKER_HOST", &link.docker_host())]);
    let project = format!("{}-r", run.id);
    let spec = |service: &'static str| {
        let mut labels = compose_labels(&project, service);
        labels.push(("itsup.enable", "true"));
        labels
    };
    let keep = run.start("keep", IMAGE, &spec("keep"), &[("REPLY", "keep")], &[]);
    let gone = run.start("gone", IMAGE, &spec("gone"), &[("REPLY", "gone")], &[]);
    // Created now, started while the engine is gone (creation alone changes no routing).
    let late = run.create("late", IMAGE, &spec("late"), &[("REPLY", "late")], &[]);
    let host = |service: &str| format!("{service}.{project}.localhost");
    let servers = |c: &str| BTreeSet::from([format!("{}:8080", run.ip(c))]);
    let before = BTreeMap::from([
        (host("keep"), servers(&keep)),
        (host("gone"), servers(&gone)),
    ]);
    exact_routes(
        &w,
        "routing before the cut",
        Duration::from_secs(10),
        &before,
    );
    assert!(
        link.accepted() > 0,
        "the watcher must reach Docker through the link"
    );

    link.cut();
    let cut_at = Instant::now();
    wait_for(
        "the watcher notices the engine is gone",
        Duration::from_secs(5),
        || {
            let log = w.log_text();
            if log.contains("docker event stream ended") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    run.docker(&["stop", "-t", "0", &gone]).expect("stop");
    run.docker(&["start", &late]).expect("start");
    let after = BTreeMap::from([
        (host("keep"), servers(&keep)),
        (host("late"), servers(&late)),
    ]);
    // Longer than a debounced batch: had the watcher still seen events, routing would change.
    thread::sleep(Duration::from_millis(1500));
    let blind = w.status().expect("status while the engine is gone");
    assert_eq!(
        route_servers(&blind),
        before,
        "the watcher must not see these events"
    );
    assert_eq!(
        answer(&w, &host("keep")).as_deref(),
        Ok("keep"),
        "HAProxy keeps routing"
    );
    assert!(
        w.log_text().contains("docker engine unreachable"),
        "reconnect attempts are logged"
    );
    let down = cut_at.elapsed();

    link.restore();
    // The reconnect attempts double their wait (250 ms, 500 ms, 1 s, ... 8 s) from the cut, so
    // the next one comes at most about as long after the engine is back as the engine was gone
    // (and at most 8 s); then a debounced rescan and a reload.
    let bound = (down + Duration::from_millis(250)).min(MAX_BACKOFF) + REFLECTED;
    let (_, caught_up) = exact_routes(&w, "routing right after the engine is back", bound, &after);
    // The status port shows a config once HAProxy was told to load it; the new worker takes a
    // moment more.
    let (body, _) = wait_for("late answers through HAProxy", LOADED, || {
        answer(&w, &host("late"))
    });
    assert_eq!(body, "late");
    wait_for(
        "gone (stopped while the engine was gone) answers 503",
        LOADED,
        || match w.get(&host("gone"))? {
            (503, _) => Ok(()),
            (code, body) => Err(format!("still {code} {body}")),
        },
    );
    assert!(w.running(), "the watcher must survive the outage");
    let log = w.log_text();
    assert!(
        log.contains("docker engine reachable again"),
        "the reconnect is logged: {log}"
    );
    eprintln!(
        "engine gone for {down:?}; routing exact {caught_up:?} after it came back; {} connections through the link",
        link.accepted()
    );
}

#[test]
fn a_host_claimed_by_two_projects_stays_with_the_older_claim() {
    let run = Run::new();
    let w = Watcher::start(&run, &[]);
    let shared = format!("shared.{}.localhost", run.id);
    for (name, reply) in [("old", "older"), ("new", "newer")] {
        let project = format!("{}-{name}", run.id);
        let mut labels = compose_labels(&project, "web");
        labels.push(("itsup.host", &shared));
        run.start(name, IMAGE, &labels, &[("REPLY", reply)], &[]);
        // Creation times must differ for "older" to mean something.
        thread::sleep(Duration::from_millis(300));
    }
    let (status, _) = wait_for("conflict reported", Duration::from_secs(10), || {
        let s = w.status()?;
        if s["problems"].as_array().is_some_and(|p| !p.is_empty()) {
            Ok(s)
        } else {
            Err(format!("{s:#}"))
        }
    });
    let problem = &status["problems"][0];
    assert_eq!(
        problem["container"],
        format!("{}-new", run.id).as_str(),
        "{status:#}"
    );
    assert!(
        problem["message"]
            .as_str()
            .is_some_and(|m| m.contains("conflict")),
        "{status:#}"
    );
    for _ in 0..4 {
        assert_eq!(answer(&w, &shared).as_deref(), Ok("older"));
    }
    // When the older claim goes away, the name passes to the remaining one.
    run.docker(&["stop", "-t", "0", &format!("{}-old", run.id)])
        .expect("stop");
    let (body, _) = wait_for("name passes on", REFLECTED, || {
        answer(&w, &shared).and_then(|b| if b == "newer" { Ok(b) } else { Err(b) })
    });
    assert_eq!(body, "newer");
}

#[test]
fn an_external_haproxy_is_reloaded_through_its_master_socket() {
    let run = Run::new();
    let dir = run.tmp.path().join("haproxy");
    std::fs::create_dir_all(dir.join("run")).expect("config dir");
    // Someone else's HAProxy, on a placeholder config, reading the directory the watcher writes.
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n    master-worker\n    stats socket unix@run/admin.sock mode 600 level admin expose-fd listeners\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
             frontend placeholder\n    bind 127.0.0.1:{}\n",
            free_port()
        ),
    )
    .expect("placeholder config");
    let haproxy = Command::new("haproxy")
        .args([
            "-W",
            "-n",
            "4000",
            "-S",
            "unix@run/master.sock",
            "-f",
            "haproxy.cfg",
        ])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start haproxy");
    let _haproxy = KillOnDrop(haproxy);
    wait_for("master socket", Duration::from_secs(5), || {
        if dir.join("run/master.sock").exists() {
            Ok(())
        } else {
            Err("no socket yet".to_string())
        }
    });
    let socket = dir.join("run/master.sock");
    let w = Watcher::start(&run, &["--master-socket", &socket.to_string_lossy()]);
    // The first reload applies the initial scan; waiting for it keeps the container's start
    // from being merged into that batch, so the route below needs a reload of its own.
    wait_for("the initial reload", Duration::from_secs(10), || {
        let status = w.status()?;
        match status["reloads"].as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(format!("{status:#}")),
        }
    });
    let project = format!("{}-e", run.id);
    let mut labels = compose_labels(&project, "web");
    labels.push(("itsup.enable", "true"));
    run.start("web", IMAGE, &labels, &[("REPLY", "external")], &[]);
    let host = format!("web.{project}.localhost");
    let (body, _) = wait_for(
        "routed by the external HAProxy",
        Duration::from_secs(10),
        || answer(&w, &host),
    );
    assert_eq!(body, "external");
    let status = w.status().expect("status");
    assert!(status["reloads"].as_u64().unwrap_or(0) >= 2, "{status:#}");
}

/// Kills a child this test started (by its own handle) when the test ends, even on failure.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` over `items` on `threads` threads; results in input order.
fn parallel<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(threads).max(1);
    thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}
