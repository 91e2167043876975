//! Last good configuration per project, kept in `.itsup/last-good/<project>.json`.
//!
//! When a project's files become invalid, the Plan keeps routing it with the configuration
//! that last validated, so a typo never takes a running project offline; the error is still
//! reported and the command still fails. Snapshots are written after a successful render or
//! apply and removed when their project folder is gone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::ProjectFile;
use crate::validate::ValidProject;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    file: ProjectFile,
    compose: Option<Map<String, Value>>,
}

fn dir(root: &Path) -> PathBuf {
    root.join(".itsup").join("last-good")
}

/// Snapshots by project name; unreadable ones are skipped (they are only a safety net).
pub fn load(root: &Path) -> BTreeMap<String, ValidProject> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir(root)) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        let snapshot = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Snapshot>(&bytes).ok());
        if let Some(s) = snapshot {
            found.insert(
                name.to_string(),
                ValidProject {
                    name: name.to_string(),
                    file: s.file,
                    compose: s.compose,
                },
            );
        }
    }
    found
}

/// Records `valid` (projects validated from their own files) and forgets projects whose folder
/// no longer exists. Writes only what changed, atomically.
pub fn save(root: &Path, valid: &[&ValidProject], existing: &[String]) -> std::io::Result<()> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir)?;
    for project in valid {
        let snapshot = Snapshot {
            file: project.file.clone(),
            compose: project.compose.clone(),
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
        let path = dir.join(format!("{}.json", project.name));
        if std::fs::read(&path).ok().as_deref() == Some(bytes.as_slice()) {
            continue;
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
    }
    for (name, _) in load(root) {
        if !existing.contains(&name) {
            let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        }
    }
    Ok(())
}
