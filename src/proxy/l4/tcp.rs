//! The accept loop of a TCP listener on a port of its own: a connection over
//! `max_connections` is closed at once (counted); every other one runs [`super::front`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::front;
use super::listener::Listener;
use crate::proxy::runtime::state::Shared;

pub async fn serve(
    sock: TcpListener,
    l: Arc<Listener>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            accepted = sock.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = l.slots.clone().try_acquire_owned() else {
                        shared.metrics.l4.refused_max_connections.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let (l, shared) = (l.clone(), shared.clone());
                    tokio::spawn(async move {
                        front::serve(&l, stream, peer, Some(slot), &shared.metrics.l4).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}
