//! Last good configuration per project, kept in `.itsup/last-good/<project>.json`.
//!
//! When a project's files become invalid, the Plan keeps routing it with the configuration
//! that last validated, so a typo never takes a running project offline; the error is still
//! reported and the command still fails. Snapshots are written after a successful render or
//! apply and removed when their project folder is gone.

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

/// The snapshot of one project, if there is a readable one. Read only for broken projects:
/// valid ones never need it.
pub fn load(root: &Path, name: &str) -> Option<ValidProject> {
    let bytes = std::fs::read(dir(root).join(format!("{name}.json"))).ok()?;
    let snapshot: Snapshot = serde_json::from_slice(&bytes).ok()?;
    Some(ValidProject {
        name: name.to_string(),
        file: snapshot.file,
        compose: snapshot.compose,
    })
}

/// Names of the projects that have a snapshot.
fn names(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir(root)) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect()
}

/// Records `valid` (projects validated from their own files) and forgets projects whose folder
/// no longer exists. Writes only what changed, atomically.
pub fn save(root: &Path, valid: &[&ValidProject], existing: &[String]) -> std::io::Result<()> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir).map_err(|e| super::at(&dir, e))?;
    for project in valid {
        let snapshot = Snapshot {
            file: project.file.clone(),
            compose: project.compose.clone(),
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
        let path = dir.join(format!("{}.json", project.name));
        crate::atomic::write_if_changed(&path, &bytes)?;
    }
    for name in names(root) {
        if !existing.contains(&name) {
            let _ = std::fs::remove_file(dir.join(format!("{name}.json")));
        }
    }
    Ok(())
}
