//! `.itsup/drain.json`, read by `itsup agent --drain-file`: the `<address>:<port>` of every
//! container being drained right now, and when each recently drained one was released:
//! `{"draining": [...], "released": {"<address>:<port>": <unix seconds>}}`.
//! The agent answers `drain` for the first and `ready` for the second; keeping the release
//! times in the file (not only in the agent's memory) lets an agent that restarted mid-rollout
//! still undo the drains it relayed. The HAProxy runtime API stays the primary mechanism.
//! Projects roll out in parallel, so entries change under one process-wide record and the whole
//! file is rewritten atomically each time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a released entry is kept; the agent says `ready` for as long as it is listed.
pub const RELEASE_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    draining: BTreeSet<String>,
    #[serde(default)]
    released: BTreeMap<String, u64>,
}

/// `None` until the first update of this process has read what an earlier apply left.
static RECORD: Mutex<Option<Record>> = Mutex::new(None);

/// Where the file lives under a root.
pub fn path(root: &Path) -> std::path::PathBuf {
    root.join(".itsup/drain.json")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Release times an earlier apply wrote. Its `draining` list is not taken over: under the apply
/// lock nothing else drains, so anything still listed there was left by an interrupted apply,
/// and those entries count as released now.
fn inherited(root: &Path, now: u64) -> Record {
    let Ok(bytes) = std::fs::read(path(root)) else {
        return Record::default();
    };
    let Ok(old) = serde_json::from_slice::<Record>(&bytes) else {
        return Record::default();
    };
    let mut released = old.released;
    for entry in old.draining {
        released.insert(entry, now);
    }
    Record {
        draining: BTreeSet::new(),
        released,
    }
}

/// Adds (`draining = true`) or releases entries and rewrites the file.
pub fn update(root: &Path, entries: &[String], draining: bool) -> anyhow::Result<()> {
    let now = unix_now();
    let content = {
        let mut guard = RECORD.lock().unwrap_or_else(|e| e.into_inner());
        let record = guard.get_or_insert_with(|| inherited(root, now));
        for e in entries {
            if draining {
                record.released.remove(e);
                record.draining.insert(e.clone());
            } else if record.draining.remove(e) {
                record.released.insert(e.clone(), now);
            }
        }
        let window = RELEASE_WINDOW.as_secs();
        record
            .released
            .retain(|_, at| now.saturating_sub(*at) < window);
        serde_json::to_vec_pretty(&*record)?
    };
    Ok(crate::atomic::write(&path(root), &content)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_what_is_draining_and_remembers_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = unix_now() - RELEASE_WINDOW.as_secs() - 5;
        std::fs::create_dir_all(dir.path().join(".itsup")).expect("mkdir");
        std::fs::write(
            path(dir.path()),
            format!(
                r#"{{"draining": ["10.0.0.9:80"], "released": {{"10.0.0.8:80": {}, "10.0.0.7:80": {stale}}}}}"#,
                unix_now() - 10
            ),
        )
        .expect("seed");
        let read = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(path(dir.path())).expect("read")).expect("json")
        };
        update(dir.path(), &["10.0.0.2:8080".into()], true).expect("add");
        update(dir.path(), &["10.0.0.3:8080".into()], true).expect("add");
        assert_eq!(read()["draining"].as_array().map(Vec::len), Some(2));
        let released = read()["released"].clone();
        assert!(released.get("10.0.0.8:80").is_some(), "kept: {released}");
        assert!(
            released.get("10.0.0.9:80").is_some(),
            "left draining by an interrupted apply: released now"
        );
        assert!(
            released.get("10.0.0.7:80").is_none(),
            "older than the window"
        );
        update(dir.path(), &["10.0.0.2:8080".into()], false).expect("remove");
        update(dir.path(), &["10.0.0.3:8080".into()], false).expect("remove");
        assert_eq!(read()["draining"], serde_json::json!([]));
        assert!(read()["released"].get("10.0.0.2:8080").is_some());
        update(dir.path(), &["10.0.0.2:8080".into()], true).expect("drain again");
        assert!(read()["released"].get("10.0.0.2:8080").is_none());
    }
}
