//! JSON access log with deterministic sampling, written by a background task so request tasks
//! never block on stdout or the disk. Files are hourly (`log_yyyy_mm_dd_HH.log`, UTC) with
//! retention by age; lines are dropped (and counted) if the writer falls behind.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::proxy::base::clock::{hourly_file_name, rfc3339, unix_ms};
use crate::proxy::base::config::{AccessLog as Settings, AccessLogTarget};

const QUEUE: usize = 8192;

pub struct AccessLog {
    pub settings: Settings,
    tx: mpsc::Sender<String>,
    seen: AtomicU64,
    pub dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer; `None` when logging is off. Must run inside the runtime.
    pub fn start(settings: &Settings) -> Option<Arc<Self>> {
        if settings.target == AccessLogTarget::Off || settings.sample_rate <= 0.0 {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        match settings.target {
            AccessLogTarget::Files => {
                let dir = PathBuf::from(settings.dir.clone().unwrap_or_default());
                tokio::spawn(write_files(rx, dir, settings.retention_hours));
            }
            _ => {
                tokio::spawn(write_stdout(rx));
            }
        }
        Some(Arc::new(Self {
            settings: settings.clone(),
            tx,
            seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }))
    }

    /// Whether this request is logged: exactly `rate` of requests, evenly spread.
    pub fn sample(&self) -> bool {
        let rate = self.settings.sample_rate;
        if rate >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }

    fn send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One request's log line, filled in as the request progresses.
pub struct Entry {
    pub sink: Arc<AccessLog>,
    pub start: Instant,
    pub time_ms: u64,
    pub client: IpAddr,
    pub method: String,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub upstream: Option<String>,
    pub route: Option<String>,
    pub retries: u32,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: IpAddr,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    duration: f64,
    upstream: Option<&'a str>,
    route: Option<&'a str>,
    retries: u32,
}

impl Entry {
    pub fn emit(&self) {
        let line = Line {
            time: rfc3339(self.time_ms),
            client: self.client,
            method: &self.method,
            host: &self.host,
            path: &self.path,
            status: self.status,
            bytes: self.bytes,
            duration: self.start.elapsed().as_secs_f64(),
            upstream: self.upstream.as_deref(),
            route: self.route.as_deref(),
            retries: self.retries,
        };
        if let Ok(mut text) = serde_json::to_string(&line) {
            text.push('\n');
            self.sink.send(text);
        }
    }
}

async fn write_stdout(mut rx: mpsc::Receiver<String>) {
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        let mut batch = line;
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
            if batch.len() > 64 * 1024 {
                break;
            }
        }
        if out.write_all(batch.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

async fn write_files(mut rx: mpsc::Receiver<String>, dir: PathBuf, retention_hours: u32) {
    let mut current: Option<(String, tokio::fs::File)> = None;
    while let Some(line) = rx.recv().await {
        let mut batch = line;
        while let Ok(more) = rx.try_recv() {
            batch.push_str(&more);
            if batch.len() > 64 * 1024 {
                break;
            }
        }
        let now_secs = unix_ms() / 1000;
        let name = hourly_file_name(now_secs);
        if current.as_ref().is_none_or(|(n, _)| *n != name) {
            if let Err(e) = tokio::fs::create_dir_all(&dir).await {
                tracing::warn!(error = %e, dir = %dir.display(), "access log directory");
            }
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(&name))
                .await
            {
                Ok(f) => current = Some((name, f)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open access log file");
                    continue;
                }
            }
            prune(&dir, now_secs, retention_hours).await;
        }
        if let Some((_, f)) = current.as_mut()
            && let Err(e) = f.write_all(batch.as_bytes()).await
        {
            tracing::warn!(error = %e, "cannot write access log");
            current = None;
        }
    }
}

/// Deletes hourly files older than the retention; names sort chronologically.
async fn prune(dir: &std::path::Path, now_secs: u64, retention_hours: u32) {
    let cutoff = hourly_file_name(now_secs.saturating_sub(u64::from(retention_hours) * 3600));
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("log_")
            && name.ends_with(".log")
            && name.len() == cutoff.len()
            && name < cutoff
        {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sampling_is_exact() {
        let settings = Settings {
            target: AccessLogTarget::Stdout,
            sample_rate: 0.25,
            ..Settings::default()
        };
        let log = AccessLog::start(&settings).expect("enabled");
        let logged = (0..100).filter(|_| log.sample()).count();
        assert_eq!(logged, 25);
    }

    #[tokio::test]
    async fn prune_removes_only_old_hourly_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1_709_210_096;
        let old = hourly_file_name(now - 5 * 3600);
        let fresh = hourly_file_name(now - 3600);
        for n in [&old, &fresh, &"other.txt".to_string()] {
            std::fs::write(dir.path().join(n), "x").expect("write");
        }
        prune(dir.path(), now, 2).await;
        assert!(!dir.path().join(&old).exists());
        assert!(dir.path().join(&fresh).exists());
        assert!(dir.path().join("other.txt").exists());
    }
}
