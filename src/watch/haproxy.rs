//! Runs HAProxy for the watcher: writes each config atomically, has `haproxy -c` check it, and
//! only then makes it live, by starting HAProxy in master-worker mode or by asking its master
//! to reload (hitless: the listeners are handed over through `expose-fd listeners`). An
//! external HAProxy is driven the same way through its master socket.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::deploy::haproxy::reload_master;

/// Config file name inside the config directory.
pub const CONFIG: &str = "haproxy.cfg";
/// Master CLI socket of the HAProxy the watcher starts, relative to the config directory.
pub const MASTER_SOCKET: &str = "run/master.sock";

/// Where HAProxy lives and how it is reached.
#[derive(Debug, Clone)]
pub struct HaproxyOptions {
    pub bin: PathBuf,
    /// Working directory of HAProxy: the config's relative paths are relative to it.
    pub dir: PathBuf,
    /// Master socket of an HAProxy run by someone else; `None` to start and supervise our own.
    pub external_master: Option<PathBuf>,
}

/// Why a config was not made live.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// `haproxy -c` refused it; the previous config keeps running.
    #[error("haproxy -c rejected the new config (the previous one keeps running):\n{0}")]
    Rejected(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Owns the HAProxy process (or the link to an external one).
#[derive(Debug)]
pub struct HaproxyProcess {
    opts: HaproxyOptions,
    child: Option<Child>,
    /// Reloads requested since start (the initial start is not one).
    pub reloads: u64,
    /// Starts, including restarts after a crash.
    pub starts: u64,
}

impl HaproxyProcess {
    pub fn new(opts: HaproxyOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(opts.dir.join("run"))
            .with_context(|| format!("creating {}", opts.dir.join("run").display()))?;
        Ok(HaproxyProcess {
            opts,
            child: None,
            reloads: 0,
            starts: 0,
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.opts.dir.join(CONFIG)
    }

    /// Checks `config` and makes it live. On rejection nothing on disk or in HAProxy changes.
    pub async fn apply(&mut self, config: &str) -> Result<(), ApplyError> {
        let candidate = crate::atomic::stage(&self.config_path(), config.as_bytes())
            .map_err(anyhow::Error::from)?;
        let check = Command::new(&self.opts.bin)
            .args(["-c", "-f"])
            .arg(candidate.path())
            .current_dir(&self.opts.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} -c", self.opts.bin.display()))?;
        if !check.status.success() {
            drop(candidate);
            // The version banner (NOTICE lines) says nothing about what is wrong.
            let text = String::from_utf8_lossy(&check.stderr).into_owned()
                + &String::from_utf8_lossy(&check.stdout);
            let reasons: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.contains("[NOTICE]"))
                .collect();
            return Err(ApplyError::Rejected(reasons.join("\n")));
        }
        // rename(2) is atomic: HAProxy (or a restart of it) never reads a half-written file.
        candidate.commit().map_err(anyhow::Error::from)?;
        if let Some(master) = self.opts.external_master.clone() {
            reload_master(&master).await?;
            self.reloads += 1;
        } else if self.running() {
            reload_master(&self.opts.dir.join(MASTER_SOCKET)).await?;
            self.reloads += 1;
        } else {
            self.start().await?;
        }
        Ok(())
    }

    fn running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Starts HAProxy on the live config, in master-worker mode with a master socket.
    async fn start(&mut self) -> anyhow::Result<()> {
        let socket = self.opts.dir.join(MASTER_SOCKET);
        let _ = std::fs::remove_file(&socket);
        let mut command = Command::new(&self.opts.bin);
        if let Some(maxconn) = maxconn_cap() {
            // `-n` beats the config's `maxconn`, and survives reloads (the master re-executes
            // itself with the same arguments).
            command.arg("-n").arg(maxconn.to_string());
        }
        let child = command
            .args(["-W", "-S"])
            .arg(format!("unix@{MASTER_SOCKET},mode,600"))
            .args(["-f", CONFIG])
            .current_dir(&self.opts.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.opts.bin.display()))?;
        self.child = Some(child);
        self.starts += 1;
        // The master socket appearing is the sign that HAProxy parsed the config and bound.
        for _ in 0..100 {
            if socket.exists() {
                return Ok(());
            }
            if !self.running() {
                bail!("haproxy exited right after start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("haproxy did not open its master socket within 5 s")
    }

    /// Resolves when the supervised HAProxy exits; never for an external one or none at all.
    pub async fn exited(&mut self) -> String {
        match self.child.as_mut() {
            Some(child) => {
                let status = child.wait().await;
                self.child = None;
                match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Stops the supervised HAProxy gracefully (SIGUSR1: finish current connections), then
    /// for good after a grace period.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + grace;
        // Resent every second: a signal that lands while the master is re-executing itself
        // after a reload is lost.
        while tokio::time::Instant::now() < deadline {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGUSR1);
                }
            }
            if tokio::time::timeout(Duration::from_secs(1), child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = child.kill().await;
    }
}

/// A connection limit HAProxy can honour under this process's hard open-files limit. HAProxy
/// needs about two descriptors per connection and refuses to start when the config's `maxconn`
/// would exceed the hard limit (common in containers and CI, where it cannot be raised).
fn maxconn_cap() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    cap_for(limit.rlim_max)
}

/// The `-n` value for a hard descriptor limit, or `None` when the template's 20000 fits.
fn cap_for(hard: u64) -> Option<u64> {
    const WANTED: u64 = 20_000;
    let fits = hard.saturating_sub(200) / 2;
    (fits < WANTED).then_some(fits.max(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_config() -> anyhow::Result<String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(format!(
            "global\n    master-worker\n    stats socket unix@run/admin.sock mode 600 level admin expose-fd listeners\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n\
             frontend web\n    bind 127.0.0.1:{port}\n"
        ))
    }

    fn haproxy_installed() -> bool {
        std::process::Command::new("haproxy")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    #[tokio::test]
    async fn a_rejected_config_is_never_made_live() -> anyhow::Result<()> {
        assert!(
            haproxy_installed(),
            "haproxy is required (.ci/setup.sh installs it)"
        );
        let dir = tempfile::tempdir()?;
        let mut sup = HaproxyProcess::new(HaproxyOptions {
            bin: "haproxy".into(),
            dir: dir.path().to_path_buf(),
            external_master: None,
        })?;
        let err = sup.apply("frontend web\n    bind :notaport\n").await;
        match err {
            Err(ApplyError::Rejected(reason)) => assert!(reason.contains("ALERT"), "{reason}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert!(
            !sup.config_path().exists(),
            "nothing may be written in place"
        );
        let staged_left = std::fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(".itsup-"));
        assert!(!staged_left, "the rejected candidate must be removed");

        let valid = valid_config()?;
        sup.apply(&valid).await?;
        assert_eq!(std::fs::read_to_string(sup.config_path())?, valid);
        assert_eq!((sup.starts, sup.reloads), (1, 0));
        // A bad config while running leaves the running one (and its file) alone.
        assert!(sup.apply("bogus\n").await.is_err());
        assert_eq!(std::fs::read_to_string(sup.config_path())?, valid);
        sup.apply(&format!("{valid}# changed\n")).await?;
        assert_eq!((sup.starts, sup.reloads), (1, 1));
        sup.stop(Duration::from_secs(5)).await;
        Ok(())
    }

    #[test]
    fn the_connection_cap_fits_the_descriptor_limit() {
        assert_eq!(cap_for(20_000), Some(9_900));
        assert_eq!(cap_for(1_024), Some(412));
        assert_eq!(cap_for(64), Some(100));
        assert_eq!(cap_for(1_048_576), None);
        assert_eq!(cap_for(u64::MAX), None);
    }
}
