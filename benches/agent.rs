//! Load benchmark of `itsup agent` (run with `bash bench/agent.sh`, release build).
//!
//! A real tonic-health backend (SERVING) runs in this process, the agent binary as a child.
//! Three phases: persistent connections (several lines per connection, the agent's best case),
//! one connection per check (what HAProxy does), and a paced 1000 checks/s run sampling the
//! agent's resident memory. Prints a markdown table.
//!
//! A fourth phase gives the floor for the one-connection-per-check pattern: the same client
//! against a trivial line server (this binary re-run as a child, tokio with 2 workers like the
//! agent, answering `up` to every line without any gRPC). What the kernel and the client cost
//! per connection on this machine shows there, so the agent's own share can be told apart.

#[path = "../tests/agent_support/mod.rs"]
mod agent_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    checks: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
    lat.sort_unstable();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        checks: lat.len(),
        errors,
        elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        max: lat.last().copied().unwrap_or_default(),
    }
}

type Worker = tokio::task::JoinHandle<(Vec<Duration>, usize)>;

/// Joins the load workers into one set of figures.
async fn gather(tasks: Vec<Worker>, started: Instant) -> Stats {
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    stats(all, errors, started.elapsed())
}

/// `conns` connections, each sending lines back to back for `dur`.
async fn persistent(agent: SocketAddr, line: String, conns: usize, dur: Duration) -> Stats {
    let started = Instant::now();
    let end = started + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let line = line.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0;
            let Ok(stream) = TcpStream::connect(agent).await else {
                return (lat, 1);
            };
            let _ = stream.set_nodelay(true);
            let (rd, mut wr) = stream.into_split();
            let mut rd = BufReader::new(rd);
            let mut reply = String::new();
            while Instant::now() < end {
                let t = Instant::now();
                if wr.write_all(line.as_bytes()).await.is_err() {
                    errors += 1;
                    break;
                }
                reply.clear();
                match rd.read_line(&mut reply).await {
                    Ok(n) if n > 0 && reply == "up\n" => lat.push(t.elapsed()),
                    _ => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

async fn one_check(agent: SocketAddr, line: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(agent).await else {
        return false;
    };
    let _ = stream.set_nodelay(true);
    if stream.write_all(line.as_bytes()).await.is_err() {
        return false;
    }
    let mut rd = BufReader::new(stream);
    let mut reply = String::new();
    matches!(rd.read_line(&mut reply).await, Ok(n) if n > 0 && reply == "up\n")
}

/// `conns` workers, each opening a new connection per check, for `dur`.
async fn per_connection(agent: SocketAddr, line: String, conns: usize, dur: Duration) -> Stats {
    let started = Instant::now();
    let end = started + dur;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let line = line.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(50_000);
            let mut errors = 0;
            while Instant::now() < end {
                let t = Instant::now();
                if one_check(agent, &line).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    gather(tasks, started).await
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Paced checks at `rate`/s, one connection each, for `dur`; returns (stats, max RSS KiB, peak KiB).
async fn paced(
    agent: SocketAddr,
    pid: u32,
    line: String,
    rate: u64,
    dur: Duration,
) -> (Stats, u64, u64) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut max_rss = 0;
    let mut sent = 0u64;
    let total = rate * dur.as_secs();
    while sent < total {
        tick.tick().await;
        sent += 1;
        let line = line.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let ok = one_check(agent, &line).await;
            let _ = tx.send((ok, t.elapsed()));
        });
        if sent.is_multiple_of(rate.max(1)) {
            max_rss = max_rss.max(rss_kib(pid).0);
        }
    }
    drop(tx);
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some((ok, d)) = rx.recv().await {
        if ok {
            lat.push(d);
        } else {
            errors += 1;
        }
    }
    let (rss, hwm) = rss_kib(pid);
    (stats(lat, errors, started.elapsed()), max_rss.max(rss), hwm)
}

/// User+system CPU seconds used so far by process `pid` ("self" for this one).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at state (field 3);
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU spent by the agent and by this process (backend + load generator) during `f`.
struct Cpu {
    agent_us: f64,
    rest_us: f64,
}

fn cpu_per_check(agent: f64, rest: f64, checks: usize) -> Cpu {
    let n = checks.max(1) as f64;
    Cpu {
        agent_us: agent * 1e6 / n,
        rest_us: rest * 1e6 / n,
    }
}

fn row(name: &str, s: &Stats, cpu: &Cpu) {
    println!(
        "| {name} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {:.0} | {:.0} |",
        s.checks,
        s.checks as f64 / s.elapsed.as_secs_f64(),
        s.p50.as_secs_f64() * 1000.0,
        s.p99.as_secs_f64() * 1000.0,
        s.max.as_secs_f64() * 1000.0,
        s.errors,
        cpu.agent_us,
        cpu.rest_us
    );
}

/// The floor server: answers `up` to each line, one tokio task per connection, like the agent.
fn floor_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (rd, mut wr) = stream.into_split();
                let mut rd = BufReader::new(rd);
                let mut line = String::new();
                while matches!(rd.read_line(&mut line).await, Ok(n) if n > 0) {
                    line.clear();
                    if wr.write_all(b"up\n").await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Starts the floor server as a child process; returns it and its address.
fn start_floor() -> (std::process::Child, SocketAddr) {
    use std::io::BufRead as _;
    let exe = std::env::current_exe().expect("current exe");
    let mut child = std::process::Command::new(exe)
        .env("AGENT_BENCH_FLOOR_SERVER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn floor server");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .expect("floor address");
    (child, first.trim().parse().expect("floor address"))
}

fn main() {
    if std::env::var_os("AGENT_BENCH_FLOOR_SERVER").is_some() {
        return floor_server();
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` would run us too: stay short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secs = if quick {
        1
    } else {
        env_u64("AGENT_BENCH_SECS", 10)
    };
    let conns = env_u64("AGENT_BENCH_CONNS", 16) as usize;
    let rate = env_u64("AGENT_BENCH_RATE", 1000);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let (backend, _reporter) = agent_support::health_backend().await;
        let agent = agent_support::Agent::start(&[]);
        let line = format!("127.0.0.1 {} no-ssl localhost\n", backend.addr.port());
        // Warm the cached channel.
        assert_eq!(agent_support::ask(agent.addr, &line).await, "up");

        println!(
            "| phase | checks | checks/s | p50 ms | p99 ms | max ms | errors | agent CPU µs/check | backend+client CPU µs/check |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let dur = Duration::from_secs(secs);
        let pid = agent.child.id().to_string();
        let mut mark = (cpu_secs(&pid), cpu_secs("self"));
        let mut cpu = |checks: usize| {
            let now = (cpu_secs(&pid), cpu_secs("self"));
            let used = cpu_per_check(now.0 - mark.0, now.1 - mark.1, checks);
            mark = now;
            used
        };
        let s = persistent(agent.addr, line.clone(), conns, dur).await;
        row(&format!("persistent, {conns} conns"), &s, &cpu(s.checks));
        let s = persistent(agent.addr, line.clone(), 1, dur).await;
        row("persistent, 1 conn", &s, &cpu(s.checks));
        let s = per_connection(agent.addr, line.clone(), conns, dur).await;
        row(&format!("new conn per check, {conns} workers"), &s, &cpu(s.checks));
        let (s, max_rss, hwm) = paced(agent.addr, agent.child.id(), line.clone(), rate, dur).await;
        row(&format!("paced {rate}/s, new conn per check"), &s, &cpu(s.checks));
        let (mut floor, floor_addr) = start_floor();
        let floor_pid = floor.id().to_string();
        let before = (cpu_secs(&floor_pid), cpu_secs("self"));
        let s = per_connection(floor_addr, line.clone(), conns, dur).await;
        let after = (cpu_secs(&floor_pid), cpu_secs("self"));
        let floor_cpu = cpu_per_check(after.0 - before.0, after.1 - before.1, s.checks);
        row(
            &format!("floor: trivial line server, new conn per check, {conns} workers (agent column = that server)"),
            &s,
            &floor_cpu,
        );
        let _ = floor.kill();
        let _ = floor.wait();
        println!();
        println!(
            "agent RSS during paced run: max {:.1} MiB (VmHWM over the whole run: {:.1} MiB)",
            max_rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    });
}
