//! The state file `.itsup/state.json`: the desired state of the last apply, per stack.
//! Containers carry their hash as a label too; the state file adds what labels cannot say:
//! which projects and services existed before (so removed ones are pruned even when their
//! containers are stopped) and the proxy's configuration hash (for reloads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What was applied last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub proxy: Option<StackState>,
    #[serde(default)]
    pub projects: BTreeMap<String, StackState>,
}

/// One stack as applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackState {
    pub enabled: bool,
    /// Service → content hash.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// Hash of the proxy's configuration files (proxy only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(".itsup/state.json")
}

impl State {
    /// Reads the state; none yet is the empty state.
    pub fn load(root: &Path) -> anyhow::Result<State> {
        let p = path(root);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt (delete it to start over)", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        Ok(crate::atomic::write(&path(root), &json)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(State::load(dir.path()).expect("load"), State::default());
        let mut s = State::default();
        s.projects.insert(
            "p".into(),
            StackState {
                enabled: true,
                services: [("web".to_string(), "abc".to_string())]
                    .into_iter()
                    .collect(),
                config: None,
            },
        );
        s.save(dir.path()).expect("save");
        assert_eq!(State::load(dir.path()).expect("load"), s);
        std::fs::write(path(dir.path()), "{").expect("write");
        assert!(State::load(dir.path()).is_err());
    }
}
