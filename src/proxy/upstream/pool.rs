//! Upstream connections per server: idle HTTP/1.1 keep-alive connections of the direct path
//! (see [`crate::proxy::upstream::h1`]) and of hyper's client (requests with bodies, upgrades), or one shared
//! multiplexed h2c connection.
//!
//! Connecting happens before the request is handed over, so a connect failure provably means
//! the request never reached the server and can be retried anywhere, even a POST.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::proxy::base::config::UpstreamProtocol;
use crate::proxy::tls::client::TlsClient;
use crate::proxy::upstream::body::UpBody;
use crate::proxy::upstream::h1::H1Conn;

/// Idle connections kept per server; more are closed when released. A burst of concurrent
/// requests opens as many connections as it needs, but each idle HTTP/1 connection holds
/// about 25 KiB (hyper's read and write buffers, its request channel, a task), so only as
/// many as a busy server typically reuses are kept (nginx's `keepalive` is often set to the
/// same).
const MAX_IDLE: usize = 128;

/// Longest time an idle direct-path connection is kept. Upstreams that close sooner are
/// noticed when the connection is next taken (it turned readable), so this only bounds
/// how long sockets of a quiet server linger.
const MAX_IDLE_TIME: Duration = Duration::from_secs(60);

pub enum Conn {
    H1(http1::SendRequest<UpBody>),
    H2(http2::SendRequest<UpBody>),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("{0} resolves to no address")]
    NoAddress(String),
    #[error("connect timed out")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
    /// The TLS handshake failed (verification, mTLS refusal, protocol): never retried
    /// silently, always logged as a warning.
    #[error("TLS handshake with {server} failed: {error}")]
    Tls {
        server: String,
        error: std::io::Error,
    },
    #[error("`{0}` is no valid TLS server name (set the cluster's tls.server_name)")]
    ServerName(String),
}

#[derive(Default)]
pub struct Pool {
    /// Idle connections of the direct path, oldest first (reused newest first).
    direct: Mutex<VecDeque<H1Conn>>,
    idle: Mutex<Vec<http1::SendRequest<UpBody>>>,
    h2: Mutex<Option<http2::SendRequest<UpBody>>>,
}

impl Pool {
    /// A ready connection: a pooled one when possible, else a fresh one.
    pub async fn acquire(
        &self,
        address: &str,
        fixed: Option<SocketAddr>,
        protocol: UpstreamProtocol,
        tls: Option<&TlsClient>,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        match protocol {
            UpstreamProtocol::Http1 => loop {
                let candidate = self.idle.lock().ok().and_then(|mut v| v.pop());
                let Some(mut sender) = candidate else { break };
                if sender.is_closed() {
                    continue;
                }
                // Released right after the last body frame, the dispatcher may not have
                // flagged itself idle yet; this resolves as soon as it does.
                if sender.ready().await.is_ok() {
                    return Ok(Conn::H1(sender));
                }
            },
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
                if let Some(sender) = self.h2.lock().ok().and_then(|g| g.clone())
                    && !sender.is_closed()
                {
                    return Ok(Conn::H2(sender));
                }
            }
        }
        // Boxed: connecting (resolve, connect, handshake) is a large future that most requests
        // never need, and it would otherwise make every request future that size.
        Box::pin(self.open(address, fixed, protocol, tls, connect_timeout)).await
    }

    async fn open(
        &self,
        address: &str,
        fixed: Option<SocketAddr>,
        protocol: UpstreamProtocol,
        tls: Option<&TlsClient>,
        connect_timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        let stream = connect(address, fixed, connect_timeout).await?;
        match tls {
            None => self.handshake(stream, protocol).await,
            Some(tls) => {
                let name = tls
                    .server_name(address)
                    .ok_or_else(|| ConnectError::ServerName(address.to_string()))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
                    .await
                    .map_err(|_| ConnectError::Timeout)?
                    .map_err(|error| ConnectError::Tls {
                        server: address.to_string(),
                        error,
                    })?;
                self.handshake(stream, protocol).await
            }
        }
    }

    /// The HTTP handshake on a connected (and maybe TLS-wrapped) stream.
    async fn handshake<S>(
        &self,
        stream: S,
        protocol: UpstreamProtocol,
    ) -> Result<Conn, ConnectError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match protocol {
            UpstreamProtocol::Http1 => {
                let (sender, conn) = http1::Builder::new()
                    .handshake(TokioIo::new(stream))
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.with_upgrades().await {
                        tracing::debug!(error = %e, "upstream connection ended");
                    }
                });
                Ok(Conn::H1(sender))
            }
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(stream))
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream h2 connection ended");
                    }
                });
                if let Ok(mut slot) = self.h2.lock() {
                    *slot = Some(sender.clone());
                }
                Ok(Conn::H2(sender))
            }
        }
    }

    /// Returns a connection whose response is complete.
    pub fn put(&self, conn: Conn) {
        if let Conn::H1(sender) = conn
            && !sender.is_closed()
            && let Ok(mut idle) = self.idle.lock()
        {
            if idle.len() < MAX_IDLE {
                idle.push(sender);
            } else {
                // Dropping the sender ends the connection; let the allocator give the memory
                // back after the burst.
                crate::proxy::base::memory::note_freed();
            }
        }
    }

    /// A connection for the direct HTTP/1.1 path: the most recently used idle one that is
    /// still alive, else a fresh one.
    pub async fn acquire_direct(
        &self,
        address: &str,
        fixed: Option<SocketAddr>,
        connect_timeout: Duration,
    ) -> Result<H1Conn, ConnectError> {
        while let Some(conn) = self.direct.lock().ok().and_then(|mut v| v.pop_back()) {
            if conn.alive(MAX_IDLE_TIME) {
                return Ok(conn);
            }
        }
        Self::open_direct(address, fixed, connect_timeout).await
    }

    /// A fresh connection for the direct path (boxed for the same reason as `open`).
    pub async fn open_direct(
        address: &str,
        fixed: Option<SocketAddr>,
        connect_timeout: Duration,
    ) -> Result<H1Conn, ConnectError> {
        Ok(H1Conn::new(
            Box::pin(connect(address, fixed, connect_timeout)).await?,
        ))
    }

    /// Returns a direct-path connection whose response is complete. Connections idle
    /// longer than the upstream would keep them are closed on the way.
    pub fn put_direct(&self, conn: H1Conn) {
        let Ok(mut idle) = self.direct.lock() else {
            return;
        };
        while idle.front().is_some_and(|c| c.idle_for() > MAX_IDLE_TIME) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(conn);
        } else {
            crate::proxy::base::memory::note_freed();
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
            + self.direct.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// Opens a TCP connection with TCP_NODELAY, trying each resolved address in turn.
pub async fn connect(
    address: &str,
    fixed: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let attempt = async {
        let addrs: Vec<SocketAddr> = match fixed {
            Some(a) => vec![a],
            None => tokio::net::lookup_host(address)
                .await
                .map_err(|e| ConnectError::Resolve(address.to_string(), e))?
                .collect(),
        };
        let mut last = ConnectError::NoAddress(address.to_string());
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = ConnectError::Io(e),
            }
        }
        Err(last)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout)?
}
