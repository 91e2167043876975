//! Hot reload triggers: a watcher on the config *directory* (editors and config-map style
//! updates replace the file or a symlink instead of writing in place, which a watch on the
//! file itself would miss) and SIGHUP. Bursts of events are coalesced; an unchanged file is
//! not a reload.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::state::Shared;

/// Starts watching; the returned watcher must be kept alive.
pub fn watch(shared: Arc<Shared>) -> anyhow::Result<notify::RecommendedWatcher> {
    let dir = match shared.config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(ev) = event
            && !ev.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let reloader = shared.clone();
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
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
    Ok(watcher)
}
