//! The one home of the helpers every integration-test suite needs: the binary under test,
//! ports, polling, copying fixture trees, random names and the Docker CLI with the clean-up
//! of what a killed test left behind. Included by `tests/common` and each `tests/*_support`
//! (`#[path = "../shared/support.rs"] mod support; pub use support::*;`), so a suite sees
//! them under its usual module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The `itsup` binary, copied once per test process: the target folder may be shared with
/// builds of other branches of the same crate, and the last build's binary is what sits at
/// the common path. When the one there is not this branch's, a `cargo build` puts this
/// branch's back (the compiled crates are kept apart by cargo, so that is only a relink).
/// `ITSUP_TEST_BIN` pins another build by hand (the agent's benchmark uses it).
pub fn itsup_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(pinned) = std::env::var_os("ITSUP_TEST_BIN") {
            return PathBuf::from(pinned);
        }
        // Hard links in the target folder's temp dir (same filesystem, no space used); those
        // of test processes that are gone are removed.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(tmp) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("itsupt-bin-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("itsupt-bin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("bin dir");
        let bin = dir.join("itsup");
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                let status = Command::new(env!("CARGO"))
                    .args(["build", "--quiet", "--bin", "itsup"])
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .status()
                    .expect("cargo build");
                assert!(status.success(), "cargo build --bin itsup failed");
            }
            let _ = std::fs::remove_file(&bin);
            if std::fs::hard_link(env!("CARGO_BIN_EXE_itsup"), &bin).is_err() {
                std::fs::copy(env!("CARGO_BIN_EXE_itsup"), &bin).expect("copy itsup binary");
            }
            let help = Command::new(&bin)
                .args(["apply", "--help"])
                .output()
                .expect("run itsup");
            if help.status.success() {
                return bin;
            }
            last = String::from_utf8_lossy(&help.stderr).into_owned();
        }
        panic!("the itsup binary at the shared path has no `apply`: {last}");
    })
}

/// A free TCP port on loopback right now (bound and released; good enough for a test on
/// one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A loopback port with nothing listening: connects to it are refused. The socket stays
/// bound (not listening) for the rest of the test process, so a later bind to port 0, such
/// as the proxy's own listener or admin port, can never be given the same port.
pub fn dead_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::mem::forget(socket);
    addr
}

/// Calls `f` every `every` until it returns `Ok` or `within` passes: the value and how long
/// it took, or the last error. The one polling loop of the tests.
pub fn poll<T, E>(
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(T, Duration), E> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok((v, start.elapsed())),
            Err(e) if start.elapsed() > within => return Err(e),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `limit` passes.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    poll(limit, Duration::from_millis(100), || f().ok_or(()))
        .ok()
        .map(|(v, _)| v)
}

/// Copies a folder tree (folders and regular files; symlinks are followed).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from)
        .expect("read dir")
        .filter_map(Result::ok)
    {
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy file");
        }
    }
}

/// A random number for unique names (time, pid and a counter through splitmix64; no
/// dependency needed).
pub fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Runs the docker CLI: its stdout, whatever the exit status.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the docker CLI: trimmed stdout on success, the command and its stderr on failure.
pub fn docker_checked(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes every container carrying `label` (`key=value`), then the named networks: the
/// clean-up of one test's own Docker objects.
pub fn docker_remove_labelled(label: &str, networks: &[&str]) {
    let filter = format!("label={label}");
    if let Ok(ids) = docker_checked(&["ps", "-aq", "--filter", &filter]) {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = docker_checked(&args);
        }
    }
    for n in networks {
        let _ = docker_checked(&["network", "rm", n]);
    }
}

/// Whether a name made by these tests (`…itsupt-root-<pid>-…`, `itsupt-<pid>-…`) belongs to a
/// test process that is gone.
fn stale(name: &str, marker: &str) -> bool {
    name.split(marker)
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists())
}

/// Removes what a test process killed before its clean-up left behind (its containers,
/// networks, temporary root and itsup image): only names carrying the pid of a process that
/// is gone, so concurrent tests are never touched.
pub fn clean_stale() {
    let root_marker = "itsupt-root-";
    for line in docker(&[
        "ps",
        "-a",
        "--filter",
        "label=io.itsup.root",
        "--format",
        "{{.ID}} {{.Label \"io.itsup.root\"}}",
    ])
    .lines()
    {
        if let Some((id, root)) = line.split_once(' ')
            && stale(root, root_marker)
        {
            docker(&["rm", "-f", id]);
            let _ = std::fs::remove_dir_all(root);
        }
    }
    for line in docker(&[
        "network",
        "ls",
        "--filter",
        "label=io.itsup.root",
        "--format",
        "{{.Name}} {{.Label \"io.itsup.root\"}}",
    ])
    .lines()
    {
        if let Some((net, root)) = line.split_once(' ')
            && stale(root, root_marker)
        {
            docker(&["network", "rm", net]);
        }
    }
    for image in docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
        if image.starts_with("itsupt-") && stale(image, "itsupt-") {
            docker(&["rmi", "--no-prune", image]);
        }
    }
}
