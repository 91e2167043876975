//! `.itsup/journal.json`: the start-first rollouts in flight, so that an apply killed halfway
//! (SIGKILL, power loss) leaves enough behind for the next one to heal the host
//! ([`super::heal`]). One entry per rollout, written (atomically) before its new containers
//! start and removed when the rollout ends, whatever its outcome; the file is removed when no
//! rollout is in flight. Under the apply lock nothing else rolls out, so a journal found at the
//! start of an apply was left by one that died.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The rollouts of one apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// The apply that wrote it (for the message of the one that heals).
    pub pid: u32,
    /// Unix seconds when its first rollout began.
    pub started: u64,
    #[serde(default)]
    pub rollouts: Vec<Rollout>,
}

/// One start-first rollout in flight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub compose_project: String,
    pub service: String,
    /// The hash the new containers carry.
    pub hash: String,
    /// IDs of the containers serving when it began (the old ones).
    pub old: Vec<String>,
    /// HAProxy backends whose slots it parks, admits and drains.
    #[serde(default)]
    pub backends: Vec<String>,
    /// Entries it put in `.itsup/drain.json`.
    #[serde(default)]
    pub drain_entries: Vec<String>,
    /// The new containers serve and the old ones are drained: it began to stop them (a stop
    /// Docker carries on with after apply died), so it can only be completed.
    #[serde(default)]
    pub stopping: bool,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(".itsup/journal.json")
}

/// This process's journal (projects roll out in parallel: one writer).
static CURRENT: Mutex<Option<(PathBuf, Journal)>> = Mutex::new(None);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The journal an earlier apply left, if any. One that does not parse (it is written
/// atomically, so only by hand) is reported, not trusted.
pub fn leftover(root: &Path) -> anyhow::Result<Option<Journal>> {
    let p = path(root);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is corrupt (delete it to go on)", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// Forgets a healed journal.
pub fn clear(root: &Path) -> anyhow::Result<()> {
    let p = path(root);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", p.display())),
    }
}

/// Changes this process's journal under `root` and writes it (or removes the file once empty).
fn change(root: &Path, f: impl FnOnce(&mut Journal)) -> anyhow::Result<()> {
    let mut guard = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|(r, _)| r != root) {
        *guard = Some((
            root.to_path_buf(),
            Journal {
                pid: std::process::id(),
                started: unix_now(),
                rollouts: Vec::new(),
            },
        ));
    }
    let Some((_, journal)) = guard.as_mut() else {
        return Ok(());
    };
    f(journal);
    if journal.rollouts.is_empty() {
        return clear(root);
    }
    let mut json = serde_json::to_vec_pretty(journal)?;
    json.push(b'\n');
    Ok(crate::atomic::write(&path(root), &json)?)
}

/// Records a rollout before it changes anything.
pub fn begin(root: &Path, rollout: Rollout) -> anyhow::Result<()> {
    change(root, |j| {
        j.rollouts.retain(|r| {
            (&r.compose_project, &r.service) != (&rollout.compose_project, &rollout.service)
        });
        j.rollouts.push(rollout);
    })
}

/// Adds drain entries to a recorded rollout.
pub fn draining(
    root: &Path,
    project: &str,
    service: &str,
    entries: &[String],
) -> anyhow::Result<()> {
    change(root, |j| {
        for r in j
            .rollouts
            .iter_mut()
            .filter(|r| r.compose_project == project && r.service == service)
        {
            r.drain_entries.extend(entries.iter().cloned());
        }
    })
}

/// Marks a rollout as past the point of no return (stopping the old containers).
pub fn stopping(root: &Path, project: &str, service: &str) -> anyhow::Result<()> {
    change(root, |j| {
        for r in j
            .rollouts
            .iter_mut()
            .filter(|r| r.compose_project == project && r.service == service)
        {
            r.stopping = true;
        }
    })
}

/// Forgets a rollout that ended (done or undone).
pub fn end(root: &Path, project: &str, service: &str) -> anyhow::Result<()> {
    change(root, |j| {
        j.rollouts
            .retain(|r| !(r.compose_project == project && r.service == service));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rollouts_in_flight_and_disappears_when_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        assert_eq!(leftover(root).expect("none"), None);
        let r = |service: &str| Rollout {
            compose_project: "p".into(),
            service: service.into(),
            hash: "h".into(),
            old: vec!["abc".into()],
            backends: vec!["be".into()],
            drain_entries: Vec::new(),
            stopping: false,
        };
        begin(root, r("web")).expect("begin");
        begin(root, r("api")).expect("begin");
        draining(root, "p", "web", &["10.0.0.2:80".into()]).expect("drain");
        stopping(root, "p", "web").expect("stopping");
        let j = leftover(root).expect("read").expect("written");
        assert_eq!(j.pid, std::process::id());
        assert_eq!(j.rollouts.len(), 2);
        assert_eq!(j.rollouts[0].drain_entries, vec!["10.0.0.2:80".to_string()]);
        assert!(j.rollouts[0].stopping && !j.rollouts[1].stopping);
        end(root, "p", "web").expect("end");
        assert_eq!(
            leftover(root)
                .expect("read")
                .expect("one left")
                .rollouts
                .len(),
            1
        );
        end(root, "p", "api").expect("end");
        assert!(!path(root).exists(), "removed when nothing is in flight");
        std::fs::write(path(root), "{").expect("corrupt");
        let err = leftover(root).expect_err("corrupt");
        assert!(format!("{err:#}").contains("journal.json"), "{err:#}");
    }
}
