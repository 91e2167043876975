//! `.itsup/drain.json`, read by `itsup agent --drain-file`: the `<address>:<port>` of every
//! container being drained right now (`{"draining": [...]}`), so the agent can answer `drain`
//! for them too. The HAProxy runtime API stays the primary mechanism; this file only mirrors it.
//! Projects roll out in parallel, so entries are added and removed under one process-wide set
//! and the whole file is rewritten atomically each time.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

static DRAINING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Where the file lives under a root.
pub fn path(root: &Path) -> std::path::PathBuf {
    root.join(".itsup/drain.json")
}

/// Adds (`draining = true`) or removes entries and rewrites the file.
pub fn update(root: &Path, entries: &[String], draining: bool) -> anyhow::Result<()> {
    let content = {
        let mut set = DRAINING.lock().unwrap_or_else(|e| e.into_inner());
        for e in entries {
            if draining {
                set.insert(e.clone());
            } else {
                set.remove(e);
            }
        }
        let list: Vec<&String> = set.iter().collect();
        serde_json::to_vec_pretty(&serde_json::json!({ "draining": list }))?
    };
    super::state::write_atomic(&path(root), &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_what_is_draining() {
        let dir = tempfile::tempdir().expect("tempdir");
        let read = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(path(dir.path())).expect("read")).expect("json")
        };
        update(dir.path(), &["10.0.0.2:8080".into()], true).expect("add");
        update(dir.path(), &["10.0.0.3:8080".into()], true).expect("add");
        assert_eq!(read()["draining"].as_array().map(Vec::len), Some(2));
        update(dir.path(), &["10.0.0.2:8080".into()], false).expect("remove");
        update(dir.path(), &["10.0.0.3:8080".into()], false).expect("remove");
        assert_eq!(read()["draining"], serde_json::json!([]));
    }
}
