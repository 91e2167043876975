//! The drain file written by `itsup apply` during rollouts: which backends to drain, re-read
//! only when the file changes, and which backends this agent drained and must now release.
//!
//! File format: `{"draining": ["<host>:<port>", ...], "released": {"<host>:<port>": <unix secs>}}`
//! (`released` optional); a missing file drains nothing. `released` is what lets a restarted
//! agent still say `ready` for drains an earlier run of it relayed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::protocol::{Admin, Target};

/// How often the file's metadata is looked at; checks in between reuse the last answer.
const STAT_INTERVAL: Duration = Duration::from_millis(200);

/// How long after its last `drain` a backend keeps getting `ready`: HAProxy holds a drain set
/// by the agent until the agent says `ready`, and several HAProxy servers or processes may
/// check the same backend, so one `ready` is not enough.
const READY_WINDOW: Duration = Duration::from_secs(600);

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainFile {
    draining: Vec<String>,
    #[serde(default)]
    released: HashMap<String, u64>,
}

/// Identity of one version of the file, so a replaced file is noticed even within one mtime tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    inode: u64,
}

struct State {
    next_stat: Instant,
    stamp: Option<Stamp>,
    draining: HashSet<(String, u16)>,
    /// Release times from the file, as unix seconds.
    released: HashMap<(String, u16), u64>,
    drained_at: HashMap<(String, u16), Instant>,
}

/// Drain decisions for checked backends.
pub struct Drain {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

fn parse_entry(entry: &str) -> Option<(String, u16)> {
    let (host, port) = entry.trim().rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

impl Drain {
    pub fn new(path: Option<PathBuf>) -> Self {
        Drain {
            path,
            state: Mutex::new(State {
                next_stat: Instant::now(),
                stamp: None,
                draining: HashSet::new(),
                released: HashMap::new(),
                drained_at: HashMap::new(),
            }),
        }
    }

    /// The admin word for `target`'s reply: `drain` while listed, `ready` for a while after.
    pub fn admin_for(&self, target: &Target) -> Option<Admin> {
        let path = self.path.as_ref()?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now >= state.next_stat {
            state.next_stat = now + STAT_INTERVAL;
            refresh(path, &mut state);
        }
        let key = (target.host.clone(), target.port);
        if state.draining.contains(&key) {
            state.drained_at.insert(key, now);
            return Some(Admin::Drain);
        }
        state
            .drained_at
            .retain(|_, at| now.duration_since(*at) < READY_WINDOW);
        let released_recently = state
            .released
            .get(&key)
            .is_some_and(|at| unix_now().saturating_sub(*at) < READY_WINDOW.as_secs());
        (released_recently || state.drained_at.contains_key(&key)).then_some(Admin::Ready)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn refresh(path: &PathBuf, state: &mut State) {
    use std::os::unix::fs::MetadataExt;
    let stamp = match std::fs::metadata(path) {
        Ok(meta) => Some(Stamp {
            mtime: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot stat drain file; keeping the last drain list");
            return;
        }
    };
    if stamp == state.stamp {
        return;
    }
    let Some(new_stamp) = stamp else {
        tracing::info!(path = %path.display(), "drain file gone: nothing drains");
        state.stamp = None;
        state.draining.clear();
        state.released.clear();
        return;
    };
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<DrainFile>(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(file) => {
            let mut draining = HashSet::new();
            for entry in &file.draining {
                match parse_entry(entry) {
                    Some(key) => {
                        draining.insert(key);
                    }
                    None => {
                        tracing::warn!(path = %path.display(), entry = %entry, "drain file entry is not <host>:<port>; ignored")
                    }
                }
            }
            let released = file
                .released
                .iter()
                .filter_map(|(entry, at)| Some((parse_entry(entry)?, *at)))
                .collect();
            tracing::info!(path = %path.display(), draining = ?file.draining, released = file.released.len(), "drain file loaded");
            state.draining = draining;
            state.released = released;
            state.stamp = Some(new_stamp);
        }
        Err(e) => {
            // Writers replace the file atomically, so a bad file is a real error, not a
            // half-written one: keep the previous list rather than undraining everything.
            tracing::warn!(path = %path.display(), error = %e, "drain file unreadable; keeping the last drain list");
            state.stamp = Some(new_stamp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
            tls: false,
            authority: "x".into(),
        }
    }

    fn write_atomic(path: &std::path::Path, body: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    fn force_stat(drain: &Drain) {
        drain
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_stat = Instant::now();
    }

    #[test]
    fn entries() {
        assert_eq!(parse_entry("10.0.0.1:80"), Some(("10.0.0.1".into(), 80)));
        assert_eq!(parse_entry("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(parse_entry("host"), None);
        assert_eq!(parse_entry("host:0"), None);
        assert_eq!(parse_entry(":80"), None);
    }

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drain.json");
        let drain = Drain::new(Some(path.clone()));
        let a = target("10.0.0.1", 80);
        let b = target("10.0.0.2", 80);

        assert_eq!(drain.admin_for(&a), None, "missing file drains nothing");

        write_atomic(&path, r#"{"draining": ["10.0.0.1:80"]}"#);
        force_stat(&drain);
        assert_eq!(drain.admin_for(&a), Some(Admin::Drain));
        assert_eq!(drain.admin_for(&b), None);

        write_atomic(&path, "{not json");
        force_stat(&drain);
        assert_eq!(
            drain.admin_for(&a),
            Some(Admin::Drain),
            "a bad file keeps the last list"
        );

        write_atomic(&path, r#"{"draining": []}"#);
        force_stat(&drain);
        assert_eq!(
            drain.admin_for(&a),
            Some(Admin::Ready),
            "released after drain"
        );
        assert_eq!(drain.admin_for(&b), None, "never drained: no admin word");

        std::fs::remove_file(&path).expect("remove");
        force_stat(&drain);
        assert_eq!(drain.admin_for(&a), Some(Admin::Ready));
    }

    #[test]
    fn a_restarted_agent_releases_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drain.json");
        let now = unix_now();
        let old = now - READY_WINDOW.as_secs() - 1;
        write_atomic(
            &path,
            &format!(
                r#"{{"draining": [], "released": {{"10.0.0.1:80": {now}, "10.0.0.2:80": {old}}}}}"#
            ),
        );
        // A fresh agent has never relayed a drain itself.
        let drain = Drain::new(Some(path));
        assert_eq!(drain.admin_for(&target("10.0.0.1", 80)), Some(Admin::Ready));
        assert_eq!(
            drain.admin_for(&target("10.0.0.2", 80)),
            None,
            "window over"
        );
        assert_eq!(drain.admin_for(&target("10.0.0.3", 80)), None);
    }

    #[test]
    fn no_path_no_admin() {
        assert_eq!(Drain::new(None).admin_for(&target("a", 1)), None);
    }
}
