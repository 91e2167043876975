//! Helpers for the `itsup watch` tests against real Docker and a real HAProxy: a per-test
//! network and containers cleaned up on drop (even after a failed assertion), the watcher as a
//! child process on free loopback ports, and tiny HTTP / TLS clients.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../shared/support.rs"]
mod support;
pub use support::*;

pub const IMAGE: &str = "itsup-watch-test/testsrv:latest";
pub const HEALTH_IMAGE: &str = "itsup-watch-test/testsrv-health:latest";
/// Every container and network a test creates carries this label with its run id; cleanup
/// removes exactly those, never another engineer's `itsupt-` objects.
pub const RUN_LABEL: &str = "org.itsup.watch-test.run";

/// One test's Docker objects.
pub struct Run {
    pub id: String,
    pub network: String,
    pub tmp: tempfile::TempDir,
    _lock: File,
}

impl Run {
    /// Serializes the Docker-heavy tests (timing bounds are part of what they prove, and the
    /// machine has two cores), checks the images exist and creates the network.
    pub fn new() -> Run {
        let lock =
            File::create(std::env::temp_dir().join("itsup-watch-tests.lock")).expect("lock file");
        lock.lock().expect("test lock");
        for image in [IMAGE, HEALTH_IMAGE] {
            let ok = Command::new("docker")
                .args(["image", "inspect", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "image {image} missing: run `bash .ci/images/watch-testsrv.sh`"
            );
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("itsupw-{:08x}{:04x}", nanos, std::process::id() & 0xffff);
        let run = Run {
            network: id.clone(),
            id,
            tmp: tempfile::tempdir().expect("tempdir"),
            _lock: lock,
        };
        run.docker(&[
            "network",
            "create",
            "--label",
            &format!("{RUN_LABEL}={}", run.id),
            &run.network,
        ])
        .expect("network create");
        run
    }

    /// Runs the docker CLI; stdout on success, stderr on failure.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        docker_checked(args)
    }

    /// Starts a container on the run's network; `name` gets the run id as prefix.
    pub fn start(
        &self,
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
        env: &[(&str, &str)],
        cmd: &[&str],
    ) -> String {
        self.container(&["run", "-d"], name, image, labels, env, cmd)
    }

    /// Creates (without starting) a container like [`Run::start`] would.
    pub fn create(
        &self,
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
        env: &[(&str, &str)],
        cmd: &[&str],
    ) -> String {
        self.container(&["create"], name, image, labels, env, cmd)
    }

    fn container(
        &self,
        verb: &[&str],
        name: &str,
        image: &str,
        labels: &[(&str, &str)],
        env: &[(&str, &str)],
        cmd: &[&str],
    ) -> String {
        let full = format!("{}-{name}", self.id);
        let mut args: Vec<String> = verb.iter().map(|s| s.to_string()).collect();
        args.extend([
            "--name".into(),
            full.clone(),
            "--network".into(),
            self.network.clone(),
            "--label".into(),
            format!("{RUN_LABEL}={}", self.id),
        ]);
        for (k, v) in labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push(image.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.docker(&refs).expect("docker run/create");
        full
    }

    /// The container's address on the run's network.
    pub fn ip(&self, container: &str) -> String {
        self.docker(&[
            "inspect",
            "-f",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                self.network
            ),
            container,
        ])
        .expect("inspect ip")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        docker_remove_labelled(&format!("{RUN_LABEL}={}", self.id), &[&self.network]);
    }
}

/// `itsup watch` (with its HAProxy) as a child process.
pub struct Watcher {
    child: Child,
    pub http: u16,
    pub https: u16,
    pub status: u16,
    pub log: PathBuf,
}

impl Watcher {
    pub fn start(run: &Run, extra: &[&str]) -> Watcher {
        Watcher::start_env(run, extra, &[])
    }

    /// Like [`Watcher::start`], with extra environment variables (e.g. `DOCKER_HOST`).
    pub fn start_env(run: &Run, extra: &[&str], env: &[(&str, &str)]) -> Watcher {
        let (http, https, status) = (free_port(), free_port(), free_port());
        let log = run.tmp.path().join("watch.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(itsup_bin())
            .args(["watch", "--network", &run.network])
            .args([
                "--http-port",
                &http.to_string(),
                "--https-port",
                &https.to_string(),
            ])
            .args(["--status", &format!("127.0.0.1:{status}")])
            .arg("--dir")
            .arg(run.tmp.path().join("haproxy"))
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start itsup watch");
        let w = Watcher {
            child,
            http,
            https,
            status,
            log,
        };
        wait_for("status port answers", Duration::from_secs(10), || {
            w.status()
        });
        w
    }

    /// The status JSON.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        let (code, body) = http_get(self.status, "status", "/status")?;
        if code != 200 {
            return Err(format!("status port answered {code}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("status JSON: {e}"))
    }

    /// GET / on the HTTP port with this Host header.
    pub fn get(&self, host: &str) -> Result<(u16, String), String> {
        http_get(self.http, host, "/")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the watcher process is still running (it has not exited or crashed).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- itsup watch log ----\n{}", self.log_text());
        }
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn http_get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect {port}: {e}"))?;
    // Short: a request that went to a just-stopped container hangs until HAProxy's connect
    // timeout; the next poll (after the reload) gets a fresh answer.
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Body of a 200 answer for `host`, or why not.
pub fn answer(w: &Watcher, host: &str) -> Result<String, String> {
    match w.get(host)? {
        (200, body) => Ok(body.trim().to_string()),
        (code, _) => Err(format!("{host}: HTTP {code}")),
    }
}

/// Distinct bodies seen over `n` requests (round robin shows every replica).
pub fn replies(w: &Watcher, host: &str, n: usize) -> Result<BTreeSet<String>, String> {
    (0..n).map(|_| answer(w, host)).collect()
}

/// TLS to the https port with `sni`; returns the server's first line (the backend's greeting),
/// after checking that an echoed line comes back through the passthrough.
pub fn tls_hello(port: u16, sni: &str) -> Result<String, String> {
    let config = insecure_tls::client_config();
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(conn, sock));
    let mut greeting = String::new();
    reader
        .read_line(&mut greeting)
        .map_err(|e| format!("tls read: {e}"))?;
    reader
        .get_mut()
        .write_all(b"echo me\n")
        .map_err(|e| format!("tls write: {e}"))?;
    let mut echo = String::new();
    reader
        .read_line(&mut echo)
        .map_err(|e| format!("tls read: {e}"))?;
    if echo != "echo me\n" {
        return Err(format!("echo came back as {echo:?}"));
    }
    Ok(greeting.trim().to_string())
}

#[path = "../shared/insecure_tls.rs"]
mod insecure_tls;

/// Labels compose puts on a service's containers (for containers the tests start themselves).
pub fn compose_labels<'a>(project: &'a str, service: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("com.docker.compose.project", project),
        ("com.docker.compose.service", service),
    ]
}

/// A Unix-socket forwarder between the watcher and the real engine socket, run on its own
/// runtime inside the test process: the watcher speaks the real Docker API through it (via
/// `DOCKER_HOST`), and [`EngineLink::cut`] makes the engine vanish for the watcher alone, the way
/// an engine restart does (open connections, the event stream among them, drop; new ones are
/// refused), without restarting the Docker engine other people use. [`EngineLink::stall`] makes
/// it hang instead: every connection, open or new, stays open and nothing more is forwarded.
pub struct EngineLink {
    runtime: tokio::runtime::Runtime,
    pub path: PathBuf,
    upstream: PathBuf,
    serving: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
    stalled: tokio::sync::watch::Sender<bool>,
}

impl EngineLink {
    /// Listens on `path`, forwarding each connection to `/var/run/docker.sock`.
    pub fn up(path: PathBuf) -> EngineLink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("forwarder runtime");
        let mut link = EngineLink {
            runtime,
            path,
            upstream: PathBuf::from("/var/run/docker.sock"),
            serving: None,
            accepted: Arc::default(),
            stalled: tokio::sync::watch::channel(false).0,
        };
        link.restore();
        link
    }

    /// `DOCKER_HOST` value that points at the link.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes every forwarded connection and stops listening; returns once they are closed.
    /// The socket file stays, so new connections are refused (ECONNREFUSED).
    pub fn cut(&mut self) {
        if let Some((stop, task)) = self.serving.take() {
            let _ = stop.send(true);
            let _ = self.runtime.block_on(task);
        }
    }

    /// Stops forwarding without closing anything: requests in flight and new ones get no
    /// answer, the way a hung engine (or a stuck socket in between) behaves. Until [`cut`] or
    /// [`restore`].
    ///
    /// [`cut`]: EngineLink::cut
    /// [`restore`]: EngineLink::restore
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Listens again (after [`EngineLink::cut`] or [`EngineLink::stall`]).
    pub fn restore(&mut self) {
        self.cut();
        self.stalled.send_replace(false);
        let _ = std::fs::remove_file(&self.path);
        let listener = {
            let _guard = self.runtime.enter();
            tokio::net::UnixListener::bind(&self.path).expect("bind the forwarder socket")
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = self.runtime.spawn(forward(
            listener,
            self.upstream.clone(),
            stopped,
            self.stalled.subscribe(),
            self.accepted.clone(),
        ));
        self.serving = Some((stop, task));
    }
}

impl Drop for EngineLink {
    fn drop(&mut self) {
        self.cut();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn forward(
    listener: tokio::net::UnixListener,
    upstream: PathBuf,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    stalled: tokio::sync::watch::Receiver<bool>,
    accepted: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            conn = listener.accept() => {
                let Ok((mut client, _)) = conn else { continue };
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let upstream = upstream.clone();
                let mut stalled = stalled.clone();
                connections.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect(&upstream).await {
                        let stall = async {
                            if stalled.wait_for(|s| *s).await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut engine) => {}
                            // Both sockets stay open, silent, until the link is cut.
                            () = stall => std::future::pending::<()>().await,
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Aborts every forwarding task and waits until they (and so their sockets) are gone.
    connections.shutdown().await;
}

/// The Docker API called from the test itself (bollard), for the churn: the docker CLI costs a
/// process (tens of ms of CPU) per call, which on a loaded two-core machine is a good part of
/// what it measures.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    docker: bollard::Docker,
}

impl Api {
    pub fn connect() -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("API runtime");
        let docker = runtime
            .block_on(async {
                bollard::Docker::connect_with_defaults()?
                    .negotiate_version()
                    .await
            })
            .expect("connect to Docker");
        Api { runtime, docker }
    }

    /// Starts the containers, `in_flight` requests at a time.
    pub fn start_all(&self, names: &[String], in_flight: usize) {
        use futures_util::{StreamExt, TryStreamExt};
        let docker = &self.docker;
        self.runtime
            .block_on(
                futures_util::stream::iter(names)
                    .map(|name| async move {
                        docker
                            .start_container(name, None)
                            .await
                            .map_err(|e| format!("start {name}: {e}"))
                    })
                    .buffer_unordered(in_flight)
                    .try_collect::<Vec<()>>(),
            )
            .expect("start containers");
    }

    /// Stops the containers at once (`docker stop -t 0`), `in_flight` requests at a time.
    pub fn stop_all(&self, names: &[String], in_flight: usize) {
        use futures_util::{StreamExt, TryStreamExt};
        let docker = &self.docker;
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(0)
            .build();
        self.runtime
            .block_on(
                futures_util::stream::iter(names)
                    .map(|name| {
                        let options = options.clone();
                        async move {
                            docker
                                .stop_container(name, Some(options))
                                .await
                                .map_err(|e| format!("stop {name}: {e}"))
                        }
                    })
                    .buffer_unordered(in_flight)
                    .try_collect::<Vec<()>>(),
            )
            .expect("stop containers");
    }

    /// Each container's address on `network` (in input order).
    pub fn ips(&self, names: &[String], network: &str) -> Vec<String> {
        use futures_util::{StreamExt, TryStreamExt};
        let docker = &self.docker;
        self.runtime
            .block_on(
                futures_util::stream::iter(names)
                    .map(|name| async move {
                        let c = docker
                            .inspect_container(
                                name,
                                None::<bollard::query_parameters::InspectContainerOptions>,
                            )
                            .await
                            .map_err(|e| format!("inspect {name}: {e}"))?;
                        c.network_settings
                            .and_then(|n| n.networks)
                            .and_then(|mut nets| nets.remove(network))
                            .and_then(|ep| ep.ip_address)
                            .ok_or_else(|| format!("{name}: no address on {network}"))
                    })
                    .buffered(8)
                    .try_collect::<Vec<String>>(),
            )
            .expect("container addresses")
    }
}

/// Polls `f` every 50 ms until it succeeds or `within` passes (then panics with the last
/// error); returns the value and how long it took.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    f: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    poll(within, Duration::from_millis(50), f)
        .unwrap_or_else(|e| panic!("{what}: not within {within:?}: {e}"))
}
