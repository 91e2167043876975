//! Load: find and read the input files of a root folder, never following anything outside it.
//!
//! A project is a non-hidden directory directly under `projects/` holding `ingress.yml` or
//! `itsup-project.yml`. Reading problems (too large, not UTF-8, not YAML, a symlink leading
//! out) become diagnostics for the file's project, so one broken project never stops the rest.

mod read;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use read::{MAX_FILE_BYTES, read_yaml};

use crate::diagnostic::Diagnostic;
use crate::yaml::{Document, Pos};

/// The project file names, itsup's first, then itsUP v2.1's.
pub const PROJECT_FILE_NAMES: [&str; 2] = ["ingress.yml", "itsup-project.yml"];
/// The compose file name of a project.
pub const COMPOSE_FILE_NAME: &str = "docker-compose.yml";

/// A parsed input file.
#[derive(Debug, Clone)]
pub struct Source {
    /// Path relative to the root, as shown in diagnostics.
    pub path: PathBuf,
    pub doc: Document,
}

/// One project folder.
#[derive(Debug, Clone)]
pub struct ProjectSource {
    pub name: String,
    /// Relative path of the project file (even when it failed to parse).
    pub file_path: PathBuf,
    pub file: Option<Source>,
    pub compose: Option<Source>,
    /// Set when reading failed; the diagnostics say why.
    pub broken: bool,
}

/// Everything read from a root folder.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub root: PathBuf,
    pub itsup: Option<Source>,
    pub traefik: Option<Source>,
    pub middlewares: Option<Source>,
    pub projects: Vec<ProjectSource>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads `root/projects`. Fails only when the folder itself cannot be listed.
pub fn load(root: &Path) -> anyhow::Result<Tree> {
    let projects_dir = root.join("projects");
    let mut tree = Tree {
        root: root.to_path_buf(),
        ..Tree::default()
    };
    let mut entries: Vec<_> = std::fs::read_dir(&projects_dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", projects_dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());

    tree.itsup = optional(&mut tree.diagnostics, root, "projects/itsup.yml", None);
    tree.traefik = optional(&mut tree.diagnostics, root, "projects/traefik.yml", None);
    tree.middlewares = optional(
        &mut tree.diagnostics,
        root,
        "projects/middlewares.yml",
        None,
    );

    // Reading and parsing dominate; each folder is independent, so do them in parallel and keep
    // the sorted order when merging.
    let found: Vec<(Option<ProjectSource>, Vec<Diagnostic>)> = entries
        .par_iter()
        .map(|entry| project_at(root, entry))
        .collect();
    for (project, diagnostics) in found {
        tree.diagnostics.extend(diagnostics);
        tree.projects.extend(project);
    }
    Ok(tree)
}

/// Reads one entry of `projects/`: a project, a broken project, or nothing (not a project).
fn project_at(root: &Path, entry: &std::fs::DirEntry) -> (Option<ProjectSource>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let Some(name) = entry.file_name().to_str().map(str::to_string) else {
        let lossy = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && has_project_file(&entry.path()) {
            diagnostics.push(Diagnostic::new(
                Path::new("projects").join(&lossy),
                Pos::default(),
                Some(&lossy),
                "project folder name is not UTF-8",
            ));
        }
        return (None, diagnostics);
    };
    if name.starts_with('.') || name == "tpl" {
        return (None, diagnostics);
    }
    // A symlinked folder could point anywhere (or at itself): projects are real folders.
    let Ok(kind) = entry.file_type() else {
        return (None, diagnostics);
    };
    if !kind.is_dir() {
        if kind.is_symlink() && has_project_file(&entry.path()) {
            diagnostics.push(Diagnostic::new(
                Path::new("projects").join(&name),
                Pos::default(),
                Some(&name),
                "project folder is a symlink; projects must be real folders inside projects/",
            ));
            // Broken, not gone: its generated files must survive until it is fixed.
            let project = ProjectSource {
                file_path: Path::new("projects").join(&name),
                name,
                file: None,
                compose: None,
                broken: true,
            };
            return (Some(project), diagnostics);
        }
        return (None, diagnostics);
    }
    let rel_dir = Path::new("projects").join(&name);
    let present: Vec<&str> = PROJECT_FILE_NAMES
        .iter()
        .copied()
        .filter(|f| entry.path().join(f).symlink_metadata().is_ok())
        .collect();
    let Some(&file_name) = present.first() else {
        return (None, diagnostics);
    };
    let file_path = rel_dir.join(file_name);
    if present.len() > 1 {
        diagnostics.push(Diagnostic::new(
            rel_dir.join(PROJECT_FILE_NAMES[1]),
            Pos::default(),
            Some(&name),
            format!(
                "project has both {} and {}; keep one (they share one schema)",
                PROJECT_FILE_NAMES[0], PROJECT_FILE_NAMES[1]
            ),
        ));
    }
    let file = optional(
        &mut diagnostics,
        root,
        &file_path.to_string_lossy(),
        Some(&name),
    );
    let compose = optional(
        &mut diagnostics,
        root,
        &rel_dir.join(COMPOSE_FILE_NAME).to_string_lossy(),
        Some(&name),
    );
    let project = ProjectSource {
        name,
        file_path,
        file,
        compose,
        broken: !diagnostics.is_empty(),
    };
    (Some(project), diagnostics)
}

fn has_project_file(dir: &Path) -> bool {
    PROJECT_FILE_NAMES.iter().any(|f| dir.join(f).exists())
}

/// Reads a file if it exists; problems become diagnostics.
fn optional(
    diagnostics: &mut Vec<Diagnostic>,
    root: &Path,
    rel: &str,
    project: Option<&str>,
) -> Option<Source> {
    let path = root.join(rel);
    if path.symlink_metadata().is_err() {
        return None;
    }
    match read_yaml(&path) {
        Ok(doc) => Some(Source {
            path: PathBuf::from(rel),
            doc,
        }),
        Err((at, message)) => {
            diagnostics.push(Diagnostic::new(rel, at, project, message));
            None
        }
    }
}
