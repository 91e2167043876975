//! `itsup agent` checked by a real HAProxy (`/usr/sbin/haproxy`): HAProxy's own view of the
//! servers, read from its stats socket, follows the gRPC health and the drain file.

mod agent_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::*;

const HAPROXY: &str = "/usr/sbin/haproxy";
/// agent-inter of every server in the test config.
const INTERVAL: Duration = Duration::from_millis(300);

/// HAProxy child process; killed on drop so a failing test leaves nothing behind.
struct Haproxy {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    fn start(dir: &Path, servers: &[(&str, u16)], agent_port: u16) -> Haproxy {
        let socket = dir.join("haproxy.sock");
        let mut cfg = format!(
            "global\n    stats socket {} mode 600 level admin\n\n\
             defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    \
             timeout server 5s\n    timeout check 1s\n\nbackend be\n",
            socket.display()
        );
        for (name, port) in servers {
            cfg.push_str(&format!(
                "    server {name} 127.0.0.1:{port} check inter 1s agent-check agent-addr 127.0.0.1 \
                 agent-port {agent_port} agent-inter {}ms agent-send \"127.0.0.1 {port} no-ssl localhost\\n\"\n",
                INTERVAL.as_millis()
            ));
        }
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("write haproxy.cfg");
        let check = Command::new(HAPROXY)
            .args(["-c", "-f"])
            .arg(&cfg_path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let log = dir.join("haproxy.log");
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&cfg_path)
            .arg("-db")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.join("haproxy.err")).expect("err file"))
            .spawn()
            .expect("spawn haproxy");
        let haproxy = Haproxy { child, socket, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&haproxy.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy stats socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        haproxy
    }

    fn command(&self, cmd: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("stats socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        stream
            .write_all(format!("{cmd}\n").as_bytes())
            .expect("send command");
        let mut out = String::new();
        stream.read_to_string(&mut out).expect("read answer");
        out
    }

    /// `status` column of `show stat` for server `name` of backend `be` (UP, DOWN, DRAIN, …).
    fn status(&self, name: &str) -> String {
        let csv = self.command("show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header
            .iter()
            .position(|h| *h == "status")
            .expect("status column");
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|row| row.first() == Some(&"be") && row.get(1) == Some(&name))
            .and_then(|row| row.get(col).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no row for be/{name} in:\n{csv}"))
    }

    /// Polls until `name`'s status starts with `want`; returns how long that took.
    async fn wait_status(&self, name: &str, want: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.status(name);
            if status.starts_with(want) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "be/{name} still {status:?}, wanted {want} within {within:?}\n{}",
                self.command("show servers state be")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn diagnostics(&self) -> String {
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("haproxy stderr:\n{err}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_follows_grpc_health_and_drain() {
    assert!(
        Path::new(HAPROXY).exists(),
        "{HAPROXY} missing: run .ci/setup.sh"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let drain = dir.path().join("drain.json");
    let (flip, flip_reporter) = health_backend().await;
    let (steady, _steady_reporter) = health_backend().await;
    let drain_arg = drain.to_str().expect("utf-8 path");
    let mut agent = Agent::start(&["--drain-file", drain_arg]);
    let haproxy = Haproxy::start(
        dir.path(),
        &[("flip", flip.addr.port()), ("steady", steady.addr.port())],
        agent.addr.port(),
    );
    let settle = Duration::from_secs(5);
    haproxy.wait_status("flip", "UP", settle).await;
    haproxy.wait_status("steady", "UP", settle).await;

    // NOT_SERVING: DOWN within two agent intervals.
    set_status(&flip_reporter, "", false).await;
    let took = haproxy.wait_status("flip", "DOWN", settle).await;
    eprintln!("flip DOWN after {took:?}");
    assert!(
        took <= 2 * INTERVAL,
        "DOWN took {took:?} > 2 × {INTERVAL:?}\n{}",
        haproxy.diagnostics()
    );
    assert!(haproxy.command("show servers state be").contains("flip"));
    let steady_status = haproxy.status("steady");
    assert!(
        steady_status.starts_with("UP"),
        "the other server is untouched: {steady_status}"
    );

    // SERVING again: back UP.
    set_status(&flip_reporter, "", true).await;
    let took = haproxy.wait_status("flip", "UP", settle).await;
    eprintln!("flip UP after {took:?}");
    assert!(took <= 2 * INTERVAL, "UP took {took:?}");

    // Rollout drains `steady` through the drain file, then releases it.
    let write = |body: String| {
        let tmp = dir.path().join("drain.json.tmp");
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, &drain).expect("rename");
    };
    write(format!(
        r#"{{"draining": ["127.0.0.1:{}"]}}"#,
        steady.addr.port()
    ));
    let took = haproxy.wait_status("steady", "DRAIN", settle).await;
    eprintln!("steady DRAIN after {took:?}");
    assert!(haproxy.status("flip").starts_with("UP"));
    write(r#"{"draining": []}"#.to_owned());
    let took = haproxy.wait_status("steady", "UP", settle).await;
    eprintln!("steady UP (ready) after {took:?}");

    // The agent restarts while `steady` is drained; the file's release time (as apply writes
    // it) is all the new agent knows, and it still undoes the drain.
    write(format!(
        r#"{{"draining": ["127.0.0.1:{}"]}}"#,
        steady.addr.port()
    ));
    haproxy.wait_status("steady", "DRAIN", settle).await;
    let listen = agent.addr.to_string();
    drop(agent);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    write(format!(
        r#"{{"draining": [], "released": {{"127.0.0.1:{}": {now}}}}}"#,
        steady.addr.port()
    ));
    std::thread::sleep(2 * INTERVAL);
    assert!(
        haproxy.status("steady").starts_with("DRAIN"),
        "no agent, so the drain stays: {}",
        haproxy.status("steady")
    );
    agent = Agent::start(&["--drain-file", drain_arg, "--listen", &listen]);
    let took = haproxy.wait_status("steady", "UP", settle).await;
    eprintln!("steady UP after the agent restarted: {took:?}");
    assert!(agent.is_running());

    // The backend process dies: DOWN too (connect refused).
    flip.stop().await;
    haproxy.wait_status("flip", "DOWN", settle).await;
    drop(haproxy);
}
