//! Crash safety of `itsup apply` against the real Docker engine and HAProxy: apply is killed
//! with SIGKILL (with its Compose child: the whole process group, as systemd or a lost host
//! would) at seeded random moments of a start-first rollout, a project's creation or prune
//! and its egress network's creation or prune; the next apply must bring the host to exactly
//! the desired state while an untouched service serves without a single failed request.
//!
//! `ITSUP_CRASH_SEED` replays a run (the seed is printed), `ITSUP_CRASH_POINTS` sets how many
//! kills (default 20; `bench/` runs more).

mod deploy_support;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::{APP_V1, Fixture, Load, eventually};

/// splitmix64: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `roll`: rolled out on every step (its version changes); `extra`: a project without routes
/// that comes and goes, consuming `roll` through an egress network.
fn write_projects(f: &Fixture, version: u32, extra: bool) {
    let roll = f.name("roll");
    f.write(
        &format!("projects/{roll}/ingress.yml"),
        "ingress:\n  - service: web\n    domain: roll.test\n    port: 8080\n",
    );
    f.write(
        &format!("projects/{roll}/docker-compose.yml"),
        &format!(
            "services:\n  web:\n    image: {APP_V1}\n    environment:\n      PORT: \"8080\"\n      APP_VERSION: \"r{version}\"\n    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n    stop_grace_period: 5s\n"
        ),
    );
    let dir = f.root.join("projects").join(f.name("extra"));
    if extra {
        f.write(
            &format!("projects/{}/ingress.yml", f.name("extra")),
            &format!("ingress: []\negress:\n  - {roll}:web\n"),
        );
        f.write(
            &format!("projects/{}/docker-compose.yml", f.name("extra")),
            &format!(
                "services:\n  job:\n    image: {APP_V1}\n    environment:\n      PORT: \"9000\"\n    stop_grace_period: 2s\n"
            ),
        );
    } else if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("remove extra");
    }
}

/// `project service state` of every container of this root.
fn containers(f: &Fixture) -> Vec<(String, String, String)> {
    deploy_support::docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.itsup.root={}", f.root.display()),
        "--format",
        "{{.Label \"com.docker.compose.project\"}} {{.Label \"com.docker.compose.service\"}} {{.State}} {{.Names}}",
    ])
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((
            w.next()?.to_string(),
            w.next()?.to_string(),
            format!("{} {}", w.next()?, w.next().unwrap_or("")),
        ))
    })
    .collect()
}

fn lock_is_free(f: &Fixture) -> bool {
    let Ok(file) = std::fs::File::open(f.root.join(".itsup/apply.lock")) else {
        return true;
    };
    let free = file.try_lock().is_ok();
    let _ = file.unlock();
    free
}

/// The host is exactly what `projects/` says, with nothing of an interrupted apply left.
fn assert_converged(f: &Fixture, version: u32, extra: bool, step: &str) {
    let dry = f.itsup(&["apply", "--dry-run"]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{step}: something is still pending:\n{}{}",
        text(&dry.stdout),
        text(&dry.stderr)
    );
    let all = containers(f);
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (p, s, state) in &all {
        assert!(
            state.starts_with("running"),
            "{step}: a container is not running: {p} {s} {state}\n{all:?}"
        );
        *per.entry((p.clone(), s.clone())).or_default() += 1;
    }
    for (k, n) in &per {
        assert_eq!(*n, 1, "{step}: {k:?} has {n} containers: {all:?}");
    }
    let projects: Vec<&str> = per.keys().map(|(p, _)| p.as_str()).collect();
    assert!(
        projects.contains(&f.name("keep").as_str()),
        "{step}: {all:?}"
    );
    assert!(
        projects.contains(&f.name("roll").as_str()),
        "{step}: {all:?}"
    );
    assert_eq!(
        projects.contains(&f.name("extra").as_str()),
        extra,
        "{step}: extra present={extra}: {all:?}"
    );
    let egress = format!("egress-{}-to-{}-web", f.name("extra"), f.name("roll"));
    let nets = deploy_support::docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(
        nets.lines().any(|n| n == egress),
        extra,
        "{step}: egress network present={extra}"
    );
    assert_eq!(
        nets.lines().any(|n| n.starts_with(&f.name("extra"))),
        extra,
        "{step}: extra's own network present={extra}"
    );
    let forced = eventually(Duration::from_secs(20), || {
        f.forced_slots().ok().filter(Vec::is_empty)
    });
    assert!(
        forced.is_some(),
        "{step}: HAProxy slots left in maintenance or drain: {:?}",
        f.forced_slots()
    );
    let body = f.get("roll.test").unwrap_or_else(|e| e);
    assert_eq!(body.trim(), format!("version=r{version}"), "{step}");
    if let Ok(bytes) = std::fs::read(f.root.join(".itsup/drain.json")) {
        let drain: serde_json::Value = serde_json::from_slice(&bytes).expect("drain.json parses");
        assert_eq!(drain["draining"], serde_json::json!([]), "{step}: {drain}");
    }
    let state = std::fs::read(f.root.join(".itsup/state.json")).expect("state.json");
    serde_json::from_slice::<serde_json::Value>(&state).expect("state.json parses");
    assert!(
        !f.root.join(".itsup/journal.json").exists(),
        "{step}: journal left"
    );
    assert!(lock_is_free(f), "{step}: the apply lock is held");
}

/// Applies killed in a row before one may finish.
const KILLS_PER_ROUND: u32 = 4;

/// Runs apply (in its own process group) and SIGKILLs the group after `at`; `Some(duration)`
/// when it finished first. Its stderr is appended to `log`.
fn apply_killed_after(f: &Fixture, at: Duration, log: &mut String) -> Option<Duration> {
    let started = Instant::now();
    let err_path = f.dir.path().join("apply.stderr");
    let mut child = Command::new(deploy_support::itsup_bin())
        .arg("--root")
        .arg(&f.root)
        .arg("apply")
        .env("CI", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("spawn apply");
    let mut read_log = |status: String| {
        log.push_str(&format!("--- apply ({status}):\n"));
        log.push_str(&std::fs::read_to_string(&err_path).unwrap_or_default());
    };
    loop {
        if let Some(status) = child.try_wait().expect("wait apply") {
            read_log(status.to_string());
            return Some(started.elapsed());
        }
        if started.elapsed() >= at {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pgid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on the process group this test created for the child.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    read_log(format!("killed after {:.2} s", at.as_secs_f64()));
    None
}

#[test]
fn apply_killed_at_random_points_heals_on_the_next_apply() {
    let seed: u64 = std::env::var("ITSUP_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(deploy_support::random);
    let points: u32 = std::env::var("ITSUP_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("crash test: ITSUP_CRASH_SEED={seed} ITSUP_CRASH_POINTS={points}");
    let mut rng = Rng(seed);
    let f = Fixture::new();
    f.app_project("keep", APP_V1, "");
    let mut version = 0;
    let mut extra = true;
    write_projects(&f, version, extra);
    f.itsup_expect(&["apply"], 0);
    let keep = eventually(Duration::from_secs(20), || f.get("keep.test").ok());
    assert!(keep.is_some(), "the untouched service answers");
    assert_converged(&f, version, extra, "first apply");
    let load = Load::start(f.https_port, "keep.test", Duration::from_secs(1800));

    // Kills land anywhere inside an apply that heals and rolls out (measured, then the
    // longest seen). Several killed applies in a row (each healing what the last one left,
    // and killed itself, healing included) before one may finish and the host is checked.
    let mut span = Duration::from_secs(10);
    let (mut killed, mut healed, mut round) = (0, 0, 0);
    while killed < points {
        round += 1;
        let mut kills = Vec::new();
        let mut log = String::new();
        for _ in 0..KILLS_PER_ROUND.min(points - killed) {
            version += 1;
            if rng.next().is_multiple_of(2) {
                extra = !extra;
            }
            write_projects(&f, version, extra);
            let at = Duration::from_millis(rng.next() % (span.as_millis() as u64).max(1));
            match apply_killed_after(&f, at, &mut log) {
                Some(took) => {
                    span = span.max(took);
                    kills.push(format!(
                        "r{version} finished in {:.1} s",
                        took.as_secs_f64()
                    ));
                }
                None => {
                    killed += 1;
                    kills.push(format!("r{version} killed at {:.2} s", at.as_secs_f64()));
                }
            }
        }
        let t = Instant::now();
        let out = f.itsup(&["apply"]);
        let took = t.elapsed();
        span = span.max(took);
        let err = text(&out.stderr);
        log.push_str(&format!("--- converging apply:\n{err}"));
        let name = format!(
            "round {round} (seed {seed}; {}; then r{version} with extra {extra})",
            kills.join(", ")
        );
        eprintln!("{name}");
        if std::env::var_os("ITSUP_CRASH_VERBOSE").is_some() {
            eprintln!("{log}");
        }
        let name = format!("{name}\n{log}");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: the next apply failed:\n{}{err}",
            text(&out.stdout)
        );
        if err.contains("found leftovers of an interrupted apply") {
            healed += 1;
            for l in err.lines().filter(|l| l.starts_with("  ")) {
                eprintln!("  healed: {}", l.trim());
            }
        }
        let t = Instant::now();
        assert_converged(&f, version, extra, &name);
        eprintln!(
            "  converging apply {:.1} s, check {:.1} s",
            took.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    let stats = load.finish();
    eprintln!(
        "crash test: {killed} applies killed in {round} rounds, {healed} converging applies healed leftovers; untouched service: {} ok, {} failed",
        stats.ok, stats.failed
    );
    deploy_support::assert_no_failed(&stats, "the untouched service failed requests");
    assert!(stats.ok > 100, "too few requests: {}", stats.ok);
}
