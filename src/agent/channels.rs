//! gRPC channels to backends: how to connect (TCP, optional TLS with ALPN h2) and the cache that
//! keeps one channel per (host, port, tls, authority) until it has been idle too long.
//!
//! Connecting is done by our own connector rather than tonic's so that connect and TLS failures
//! surface as [`ConnectError`] in the error chain and can be told apart from RPC failures.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use super::metrics::Metrics;
use super::protocol::Target;

/// Why a connection to a backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect refused")]
    Refused,
    #[error("connect error: {0}")]
    Io(#[source] io::Error),
    #[error("connect timeout")]
    Timeout,
    #[error("TLS error: {0}")]
    Tls(#[source] io::Error),
    #[error("TLS error: invalid server name {0:?}")]
    ServerName(String),
    #[error("TLS error: server did not negotiate h2")]
    NoH2,
}

/// Failure to build the TLS client configuration at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("CA file {0} holds no PEM certificate")]
    Empty(String),
    #[error("CA file {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client TLS configuration: only the CA file's certificates when one is given
/// (a private PKI should not also trust the world), else the system roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<(rustls::ClientConfig, usize), TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| TlsSetupError::Read {
                path: shown.clone(),
                source,
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| TlsSetupError::Invalid {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsSetupError::Empty(shown));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| TlsSetupError::Invalid {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(error = %err, "while loading system root certificates");
            }
            // Some system bundles carry certificates webpki can't parse; skipping them is
            // what every client does.
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        }
    }
    let count = roots.len();
    // Name the provider so a second crypto backend elsewhere in the binary can't make
    // `ClientConfig::builder()` ambiguous at run time.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, count))
}

async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectError::Refused,
            _ => ConnectError::Io(e),
        })?;
    // Checks are tiny request/response exchanges: Nagle would add delay to each one.
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    Ok(stream)
}

/// The part of the authority TLS verifies: host without port or brackets.
fn tls_name(authority: &str) -> Result<ServerName<'static>, ConnectError> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::ServerName(host.to_owned()))
}

/// Cached channel plus when it last served a check.
struct Entry {
    channel: Channel,
    last_used: Instant,
    /// Last verdict for this target, to log only transitions at info level.
    last_up: Option<bool>,
}

/// One gRPC channel per target, created lazily and dropped after `idle` without checks.
pub struct ChannelCache {
    entries: Mutex<HashMap<Target, Entry>>,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    idle: Duration,
    metrics: Arc<Metrics>,
}

impl ChannelCache {
    pub fn new(
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        idle: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        ChannelCache {
            entries: Mutex::new(HashMap::new()),
            tls: Arc::new(tls),
            connect_timeout,
            idle,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // operation on it is a single insert/remove), so keep using it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The channel for `target`, creating it on first use. Must run inside the runtime: a
    /// channel spawns its worker task.
    pub fn get(&self, target: &Target) -> Result<Channel, ConnectError> {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(target) {
            entry.last_used = Instant::now();
            return Ok(entry.channel.clone());
        }
        let channel = self.build(target)?;
        entries.insert(
            target.clone(),
            Entry {
                channel: channel.clone(),
                last_used: Instant::now(),
                last_up: None,
            },
        );
        self.metrics.channels.set(entries.len() as i64);
        Ok(channel)
    }

    /// Records a verdict and returns the previous one for the same target.
    pub fn record(&self, target: &Target, up: bool) -> Option<bool> {
        self.lock()
            .get_mut(target)
            .and_then(|e| e.last_up.replace(up))
    }

    /// Drops channels idle for longer than the configured time; returns how many remain.
    pub fn evict_idle(&self) -> usize {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|_, e| now.duration_since(e.last_used) < self.idle);
        self.metrics.channels.set(entries.len() as i64);
        entries.len()
    }

    /// How often [`evict_idle`](Self::evict_idle) should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }

    fn build(&self, target: &Target) -> Result<Channel, ConnectError> {
        // The endpoint URI only names where to connect (our connector ignores it); the origin
        // sets :scheme and :authority of every RPC.
        let uri = |scheme: &str| -> Result<Uri, ConnectError> {
            format!("{scheme}://{}", target.authority)
                .parse::<Uri>()
                .map_err(|e| ConnectError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))
        };
        let origin = uri(if target.tls { "https" } else { "http" })?;
        let endpoint = Endpoint::from(uri("http")?)
            .origin(origin)
            .tcp_nodelay(true);
        let host = target.host.clone();
        let port = target.port;
        let timeout = self.connect_timeout;
        let channel = if target.tls {
            let name = tls_name(&target.authority)?;
            let connector = TlsConnector::from(self.tls.clone());
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let host = host.clone();
                let name = name.clone();
                let connector = connector.clone();
                async move {
                    let connect = async {
                        let tcp = connect_tcp(&host, port).await?;
                        let tls = connector
                            .connect(name, tcp)
                            .await
                            .map_err(ConnectError::Tls)?;
                        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                            return Err(ConnectError::NoH2);
                        }
                        Ok(TokioIo::new(tls))
                    };
                    tokio::time::timeout(timeout, connect)
                        .await
                        .unwrap_or(Err(ConnectError::Timeout))
                }
            }))
        } else {
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let host = host.clone();
                async move {
                    tokio::time::timeout(timeout, connect_tcp(&host, port))
                        .await
                        .unwrap_or(Err(ConnectError::Timeout))
                        .map(TokioIo::new)
                }
            }))
        };
        Ok(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_name_strips_port_and_brackets() {
        let name = |a: &str| tls_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(
            name("api.example.com").ok().as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            name("api.example.com:443").ok().as_deref(),
            Some("api.example.com")
        );
        assert_eq!(name("[::1]:443").ok().as_deref(), Some("::1"));
        assert!(name("bad_name!").is_err());
    }

    #[test]
    fn ca_file_errors_are_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = tls_config(Some(&missing)).expect_err("missing file");
        assert!(err.to_string().contains("cannot read CA file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem\n").expect("write");
        let err = tls_config(Some(&empty)).expect_err("no cert");
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }
}
