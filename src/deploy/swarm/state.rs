//! Fingerprints of what the last successful apply deployed to Swarm, per stack and service
//! (`.itsup/swarm.json`): a service whose rendered spec and secrets hash to the same value is
//! unchanged. A service Swarm rolled back keeps its old fingerprint, so the next apply tries
//! again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Stack → service → fingerprint.
    #[serde(default)]
    pub stacks: BTreeMap<String, BTreeMap<String, String>>,
}

fn path(root: &Path) -> PathBuf {
    root.join(".itsup/swarm.json")
}

impl State {
    pub fn load(root: &Path) -> anyhow::Result<State> {
        let p = path(root);
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid (delete it to start over)", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    pub fn save(&self, root: &Path) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        if let Some(dir) = path(root).parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::atomic::write(&path(root), text.as_bytes())
            .with_context(|| format!("cannot write {}", path(root).display()))
    }
}
