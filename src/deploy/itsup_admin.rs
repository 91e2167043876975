//! Engine itsup: rollouts through the runtime proxy's admin API (`itsup proxy`, see
//! `docs/proxy.md`): `GET /servers` lists each cluster's servers with their admin state, health
//! and in-flight requests; `PUT /servers/{cluster}/{address}` sets `ready`, `drain` or `maint`.
//!
//! The generated `proxy/itsup/proxy.yml` names each routed service once, by its Docker DNS alias
//! (`<project>-<service>:<port>`), which resolves to every container of the service: a new
//! container would take traffic as soon as it joins the network, and the old one cannot be
//! drained on its own. The admin API can change a server's state but not add one, so during a
//! rollout the service's clusters are *pinned*: the proxy's file is rewritten with the
//! containers' own addresses (the proxy reloads it by itself, keeping in-flight requests on the
//! configuration they started with), first the old ones only, then the new ones once healthy;
//! the old ones are drained through the admin API until their in-flight count is 0; and once
//! they are removed the rendered file is put back, whose alias now resolves to the new
//! containers only. Every step is confirmed in `GET /servers` before the next one. Pins of
//! services rolled out at the same time are kept together (one writer).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};

/// One server as `GET /servers` shows it (the fields a rollout needs).
#[derive(Debug, Clone, Deserialize)]
pub struct ServerView {
    pub cluster: String,
    pub address: String,
    /// `ready`, `drain` or `maint`.
    pub state: String,
    pub up: bool,
    pub inflight: u32,
}

/// Where the admin API is reached: by default the Unix socket the generated proxy stack
/// shares with the host (`proxy/itsup/run/admin.sock`), or a TCP address given by the operator.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// The admin socket under a root, as the generated proxy stack mounts it.
pub fn default_socket(root: &std::path::Path) -> PathBuf {
    root.join("proxy/itsup/run/admin.sock")
}

/// A client of the admin API (HTTP/1.1 through hyper, one connection per request).
#[derive(Debug, Clone)]
pub struct AdminClient {
    pub endpoint: Endpoint,
}

async fn exchange<S>(stream: S, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

impl AdminClient {
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "itsup-proxy-admin")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .context("cannot build the admin request")?;
        let endpoint = &self.endpoint;
        let answer = async {
            match endpoint {
                Endpoint::Tcp(addr) => {
                    exchange(tokio::net::TcpStream::connect(addr).await?, req).await
                }
                Endpoint::Unix(path) => {
                    exchange(tokio::net::UnixStream::connect(path).await?, req).await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .with_context(|| format!("the proxy admin API at {endpoint} did not answer"))?
            .with_context(|| format!("cannot reach the proxy admin API at {endpoint}"))
    }

    /// `GET /servers`.
    pub async fn servers(&self) -> anyhow::Result<Vec<ServerView>> {
        let (status, body) = self.request("GET", "/servers", None).await?;
        if status != 200 {
            anyhow::bail!("GET /servers: {status} {}", body.trim());
        }
        serde_json::from_str(&body).context("GET /servers: unexpected JSON")
    }

    /// `PUT /servers/{cluster}/{address}` with `{"state": state}`.
    pub async fn set_state(&self, cluster: &str, address: &str, state: &str) -> anyhow::Result<()> {
        let body = json!({ "state": state }).to_string();
        let (status, answer) = self
            .request("PUT", &format!("/servers/{cluster}/{address}"), Some(&body))
            .await?;
        if status != 200 {
            anyhow::bail!(
                "set {cluster}/{address} {state}: {status} {}",
                answer.trim()
            );
        }
        Ok(())
    }

    /// Waits until `done` holds for the server list, polling until `timeout`. When the admin
    /// API stopped answering, the error says so (the socket gone, the proxy down) rather than
    /// only that the change was not seen.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[ServerView]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let unreachable = match self.servers().await {
                Ok(servers) if done(&servers) => return Ok(()),
                Ok(_) => None,
                Err(e) => Some(e),
            };
            if tokio::time::Instant::now() >= deadline {
                let seen = anyhow::anyhow!(
                    "{what}: not seen at the proxy within {} s",
                    timeout.as_secs()
                );
                return Err(match unreachable {
                    Some(e) => e.context(seen),
                    None => seen,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The addresses of one cluster's servers in a server list.
pub fn addresses_of<'a>(servers: &'a [ServerView], cluster: &str) -> Vec<&'a str> {
    servers
        .iter()
        .filter(|s| s.cluster == cluster)
        .map(|s| s.address.as_str())
        .collect()
}

#[derive(Debug, Default)]
struct PinState {
    /// The rendered file, kept while any cluster is pinned.
    base: Option<String>,
    /// Cluster → the addresses it is pinned to.
    pins: BTreeMap<String, Vec<String>>,
}

/// The proxy's config file with some clusters pinned to container addresses.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    state: Mutex<PinState>,
}

const PINNED_HEADER: &str = "# written by itsup apply during a rollout: clusters pinned to container addresses.\n# The rendered file is put back when the rollout ends (and by the next apply).\n";

impl Pins {
    pub fn new(path: PathBuf) -> Pins {
        Pins {
            path,
            state: Mutex::new(PinState::default()),
        }
    }

    fn base_text(&self, st: &PinState) -> anyhow::Result<String> {
        match &st.base {
            Some(b) => Ok(b.clone()),
            None => std::fs::read_to_string(&self.path)
                .with_context(|| format!("cannot read {}", self.path.display())),
        }
    }

    /// The rendered server address of `cluster` (`alias:port`), from the rendered file.
    pub fn rendered_address(&self, cluster: &str) -> anyhow::Result<String> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let base = self.base_text(&st)?;
        let doc = crate::yaml::parse(&base)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?;
        doc.value
            .pointer(&format!("/clusters/{}/servers/0/address", escape(cluster)))
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("{} has no cluster {cluster}", self.path.display()))
    }

    /// Pins `cluster` to `addresses`, or restores its rendered servers (`None`), and writes
    /// the file (the rendered one again once nothing is pinned).
    pub fn set(&self, cluster: &str, addresses: Option<Vec<String>>) -> anyhow::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let base = self.base_text(&st)?;
        let mut pins = st.pins.clone();
        match addresses {
            Some(a) => {
                pins.insert(cluster.to_string(), a);
            }
            None => {
                pins.remove(cluster);
            }
        }
        let text = if pins.is_empty() {
            base.clone()
        } else {
            let mut doc = crate::yaml::parse(&base)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))?
                .value;
            for (c, addrs) in &pins {
                let servers: Vec<Value> = addrs.iter().map(|a| json!({"address": a})).collect();
                let slot = doc
                    .pointer_mut(&format!("/clusters/{}/servers", escape(c)))
                    .with_context(|| format!("{} has no cluster {c}", self.path.display()))?;
                *slot = Value::Array(servers);
            }
            format!("{PINNED_HEADER}{}", crate::render::to_yaml(&doc))
        };
        crate::atomic::write(&self.path, text.as_bytes())?;
        st.base = (!pins.is_empty()).then_some(base);
        st.pins = pins;
        Ok(())
    }
}

/// JSON pointer escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// `ip:port` for each address, with the port of the cluster's rendered server.
pub fn with_port(ips: &[Ipv4Addr], rendered: &str) -> anyhow::Result<Vec<String>> {
    let port = rendered
        .rsplit_once(':')
        .map(|(_, p)| p)
        .with_context(|| format!("server {rendered} has no port"))?;
    Ok(ips.iter().map(|ip| format!("{ip}:{port}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "# generated\nlisteners:\n  - address: \"0.0.0.0:80\"\nroutes:\n  - name: a-web-8080\n    host: a.test\n    path: \"/\"\n    strip_prefix: false\n    cluster: a-web-8080\nclusters:\n  a-web-8080:\n    protocol: http1\n    servers:\n      - address: \"a-web:8080\"\n  b-api-9000:\n    protocol: http1\n    servers:\n      - address: \"b-api:9000\"\n";

    #[test]
    fn pins_and_restores_the_rendered_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("proxy.yml");
        std::fs::write(&path, RENDERED).expect("write");
        let pins = Pins::new(path.clone());
        let rendered = pins.rendered_address("a-web-8080").expect("address");
        assert_eq!(rendered, "a-web:8080");
        let ips: Vec<Ipv4Addr> = vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)];
        let addrs = with_port(&ips, &rendered).expect("port");
        assert_eq!(addrs, vec!["10.0.0.5:8080", "10.0.0.6:8080"]);

        pins.set("a-web-8080", Some(addrs)).expect("pin a");
        pins.set("b-api-9000", Some(vec!["10.0.0.9:9000".into()]))
            .expect("pin b");
        let pinned = std::fs::read_to_string(&path).expect("read");
        let config: crate::proxy::ProxyConfig =
            serde_json::from_value(crate::yaml::parse(&pinned).expect("yaml").value)
                .expect("still a proxy config");
        assert!(config.check().is_empty(), "{:?}", config.check());
        let servers = |c: &str| -> Vec<String> {
            config.clusters[c]
                .servers
                .iter()
                .map(|s| s.address.clone())
                .collect()
        };
        assert_eq!(
            servers("a-web-8080"),
            vec!["10.0.0.5:8080", "10.0.0.6:8080"]
        );
        assert_eq!(servers("b-api-9000"), vec!["10.0.0.9:9000"]);
        // Still answers with the rendered address while pinned.
        assert_eq!(
            pins.rendered_address("a-web-8080").expect("address"),
            "a-web:8080"
        );

        pins.set("a-web-8080", None).expect("unpin a");
        let one = std::fs::read_to_string(&path).expect("read");
        assert!(one.contains("a-web:8080") && one.contains("10.0.0.9:9000"));
        pins.set("b-api-9000", None).expect("unpin b");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), RENDERED);
        assert!(pins.set("nope", Some(vec!["10.0.0.1:1".into()])).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), RENDERED);
    }
}
