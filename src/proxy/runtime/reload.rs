//! Hot reload triggers: a watch on the config *directory* (editors and config-map style
//! updates replace the file or a symlink instead of writing in place, which a watch on the
//! file itself would miss) and SIGHUP. Bursts of events are coalesced; an unchanged file is
//! not a reload.
//!
//! The watch is an inotify descriptor read by the runtime's own reactor, not a watcher
//! thread: with `--threads 1` the proxy stays a single-threaded process, which keeps the
//! kernel's per-syscall file lookups on their lock-free path.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

use crate::proxy::runtime::state::Shared;

/// Starts watching the config directory and listening for SIGHUP; both run as tasks on the
/// current runtime until it ends.
pub fn watch(shared: Arc<Shared>) -> anyhow::Result<()> {
    let dir = match shared.config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let inotify = Inotify::init()?;
    inotify.watches().add(
        &dir,
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::ATTRIB,
    )?;
    let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
    let reloader = shared.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "config directory watch failed; SIGHUP still reloads");
                return;
            }
            // Coalesce the burst one save produces (write, chmod, rename...).
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Some(Some(_)) = futures_util::FutureExt::now_or_never(events.next()) {}
            let _ = reloader.reload("config directory changed");
        }
    });
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = shared.reload("SIGHUP");
        }
    });
    Ok(())
}
