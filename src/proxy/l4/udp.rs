//! UDP forwarding for one `udp:` entry: each client address gets a session, a socket
//! connected to the next server (round robin), whose answers go back to that client from
//! the listening socket. A session with no datagram either way for `idle_ms` is forgotten;
//! past `max_sessions`, datagrams from new clients are dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::proxy::base::cidr::Cidrs;
use crate::proxy::base::config_l4::UdpListener;
use crate::proxy::runtime::metrics::L4RouteMetrics;
use crate::proxy::runtime::state::Shared;

/// Largest datagram relayed (the IPv4 UDP maximum).
const MAX_DATAGRAM: usize = 65_535;

struct Session {
    upstream: UdpSocket,
    /// Milliseconds since the listener started at the last datagram either way.
    last: AtomicU64,
}

type Sessions = Arc<Mutex<HashMap<SocketAddr, Arc<Session>>>>;

struct Port {
    sock: Arc<UdpSocket>,
    servers: Vec<String>,
    next: AtomicUsize,
    idle: Duration,
    max: usize,
    allow: Cidrs,
    started: Instant,
    sessions: Sessions,
    metrics: Arc<L4RouteMetrics>,
}

impl Port {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

pub async fn serve(
    sock: UdpSocket,
    cfg: UdpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let port = Arc::new(Port {
        sock: Arc::new(sock),
        servers: cfg.servers.clone(),
        next: AtomicUsize::new(0),
        idle: Duration::from_millis(cfg.idle_ms),
        max: cfg.max_sessions,
        allow: Cidrs::parse(&cfg.allow_source_ips).unwrap_or_default(),
        started: Instant::now(),
        sessions: Arc::default(),
        metrics: shared.metrics.l4.route(&cfg.name, "udp"),
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            received = port.sock.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors surface here on some systems; they concern one client.
                    tracing::debug!(error = %e, "udp receive failed");
                    continue;
                }
            }
        };
        if !port.allow.allows(client.ip()) {
            port.metrics.denied.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(session) = session_for(&port, client, &shared).await else {
            continue;
        };
        session.last.store(port.now(), Ordering::Relaxed);
        if session.upstream.send(&buf[..n]).await.is_ok() {
            port.metrics.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The client's session, opened when there is none (and room for one).
async fn session_for(
    port: &Arc<Port>,
    client: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<Arc<Session>> {
    {
        let sessions = port.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sessions.get(&client) {
            return Some(s.clone());
        }
        if sessions.len() >= port.max {
            shared
                .metrics
                .l4
                .udp_sessions_refused
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    let upstream = open_upstream(port).await?;
    let session = Arc::new(Session {
        upstream,
        last: AtomicU64::new(port.now()),
    });
    port.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(client, session.clone());
    port.metrics
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    port.metrics.active.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(answers(port.clone(), client, session.clone()));
    Some(session)
}

/// A socket connected to the next server that resolves.
async fn open_upstream(port: &Port) -> Option<UdpSocket> {
    let n = port.servers.len();
    let start = port.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..n {
        let server = &port.servers[(start + i) % n];
        let Ok(Some(addr)) = tokio::net::lookup_host(server.as_str())
            .await
            .map(|mut a| a.next())
        else {
            port.metrics
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        if let Ok(sock) = UdpSocket::bind(bind).await
            && sock.connect(addr).await.is_ok()
        {
            return Some(sock);
        }
        port.metrics
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    None
}

/// Relays the server's answers to the client until the session is idle.
async fn answers(port: Arc<Port>, client: SocketAddr, session: Arc<Session>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let quiet = port
            .now()
            .saturating_sub(session.last.load(Ordering::Relaxed));
        let left = port.idle.saturating_sub(Duration::from_millis(quiet));
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, session.upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                session.last.store(port.now(), Ordering::Relaxed);
                if port.sock.send_to(&buf[..n], client).await.is_ok() {
                    port.metrics
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            // A refused datagram (ICMP port unreachable) is not the end of the session.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => {}
        }
    }
    port.sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&client);
    port.metrics.active.fetch_sub(1, Ordering::Relaxed);
}
