//! A watched certificate folder (`tls.cert_dir`): every `<name>.crt` or `<name>.pem` with a
//! `<name>.key` beside it is served. The folder is watched with inotify on the runtime's own
//! reactor; a burst of changes is coalesced and the folder re-read, and only the store's
//! folder source is swapped. A pair that fails to load (half-written, wrong key) keeps the
//! version that loaded before, so a bad write never takes a certificate away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};

use super::certs::{Loaded, load_pair};
use super::store::{Source, Store};

/// What was loaded from the folder, by pair name.
pub type Loadeds = BTreeMap<String, Loaded>;

/// Reads the folder; `previous` supplies the last good version of a pair that fails now.
pub fn scan(dir: &Path, previous: &Loadeds) -> Loadeds {
    let mut out = Loadeds::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read the certificate folder");
            return previous.clone();
        }
    };
    let mut pairs: BTreeMap<String, (PathBuf, PathBuf)> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if stem.starts_with('.') || !matches!(ext, "crt" | "pem") {
            continue;
        }
        let key = dir.join(format!("{stem}.key"));
        if key.is_file() {
            pairs.insert(stem.to_string(), (path, key));
        }
    }
    for (name, (cert, key)) in pairs {
        match load_pair(&cert, &key) {
            Ok(loaded) => {
                out.insert(name, loaded);
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate pair not loaded");
                if let Some(old) = previous.get(&name) {
                    out.insert(name, old.clone());
                }
            }
        }
    }
    out
}

/// Loads the folder into the store now, then keeps it current until the runtime ends.
pub fn watch(dir: PathBuf, store: Arc<Store>) -> std::io::Result<()> {
    let inotify = Inotify::init()?;
    inotify.watches().add(
        &dir,
        WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM,
    )?;
    let mut events = inotify.into_event_stream(vec![0u8; 4096])?;
    let mut loaded = scan(&dir, &Loadeds::new());
    store.set(Source::Dir, loaded.values().cloned().collect());
    tracing::info!(dir = %dir.display(), pairs = loaded.len(), "certificate folder loaded");
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "certificate folder watch failed");
                return;
            }
            // A certificate and its key are usually written one after the other.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while let Some(Some(_)) = futures_util::FutureExt::now_or_never(events.next()) {}
            loaded = scan(&dir, &loaded);
            store.set(Source::Dir, loaded.values().cloned().collect());
            tracing::info!(dir = %dir.display(), pairs = loaded.len(), "certificate folder reloaded");
        }
    });
    Ok(())
}
