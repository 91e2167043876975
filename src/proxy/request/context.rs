//! What a client connection shares with its requests: the [`ConnCtx`] (runtime state, peer,
//! supervisor watch, a pending [`Tunnel`]), and the [`Claim`] on a server's in-flight slot a
//! request or tunnel holds.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::proxy::base::headers::PeerInfo;
use crate::proxy::runtime::state::Shared;
use crate::proxy::runtime::supervisor::ConnWatch;
use crate::proxy::upstream::server::ServerState;

/// What every request of one client connection needs, shared in one allocation so a
/// request costs a single reference-count increment.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    pub peer: PeerInfo,
    pub watch: Arc<ConnWatch>,
    /// What the listener that accepted the connection does besides proxying.
    pub edge: Edge,
    /// An upgrade answered with 101, waiting for hyper to hand back the client socket.
    tunnel: Mutex<Option<Tunnel>>,
}

/// Per-listener behaviour of the edge.
#[derive(Debug, Clone, Copy, Default)]
pub struct Edge {
    /// The connection is TLS (HSTS is added where a route asks for it).
    pub tls: bool,
    /// Plain HTTP answered with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
}

impl ConnCtx {
    pub fn new(shared: Arc<Shared>, peer: PeerInfo, watch: Arc<ConnWatch>) -> Self {
        Self {
            shared,
            peer,
            watch,
            edge: Edge::default(),
            tunnel: Mutex::new(None),
        }
    }

    pub fn with_edge(mut self, edge: Edge) -> Self {
        self.edge = edge;
        self
    }

    pub fn start_tunnel(&self, tunnel: Tunnel) {
        if let Ok(mut slot) = self.tunnel.lock() {
            *slot = Some(tunnel);
        }
    }

    pub fn take_tunnel(&self) -> Option<Tunnel> {
        self.tunnel.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Holds one in-flight slot of a server until disarmed or dropped.
pub struct Claim(pub Option<Arc<ServerState>>);

impl Claim {
    pub fn disarm(mut self) -> Option<Arc<ServerState>> {
        self.0.take()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.release_inflight();
        }
    }
}

/// The upstream half of an upgraded (WebSocket) exchange, waiting for the client socket.
pub struct Tunnel {
    pub upstream: OnUpgrade,
    pub claim: Claim,
}

impl Tunnel {
    /// Copies bytes both ways between the client socket and the upgraded upstream
    /// connection. It holds no config, so it survives reloads.
    pub async fn run<C>(self, mut client: C, shared: Arc<Shared>)
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let Ok(u) = self.upstream.await else {
            return;
        };
        shared
            .metrics
            .active_tunnels
            .fetch_add(1, Ordering::Relaxed);
        let mut u = TokioIo::new(u);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut u).await;
        shared
            .metrics
            .active_tunnels
            .fetch_sub(1, Ordering::Relaxed);
        drop(self.claim);
    }
}
