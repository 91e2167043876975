//! Output: compare rendered artifacts with what is on disk, show the difference, write it.
//!
//! Writes are two-phase: every changed file is first written to a temp file beside its target,
//! and only when all temp files exist are they renamed into place (rename is atomic within a
//! directory). A failure in the first phase leaves the tree untouched. Unchanged files are
//! never rewritten, so mtimes and file watchers stay quiet.

mod diff;
pub mod last_good;
pub mod mounts;
mod stale;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use diff::unified;

use crate::render::Artifact;

/// What happens to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Modify,
    Delete,
}

/// One file that differs from the rendered result.
#[derive(Debug, Clone)]
pub struct Change {
    /// Path relative to the output root.
    pub path: PathBuf,
    pub kind: ChangeKind,
    pub old: String,
    pub new: String,
}

/// Changes needed to make `out` match `artifacts`. Generated files no artifact claims are
/// deleted, except under `upstream/<p>/` for projects in `keep` (broken ones: a typo must never
/// make the next apply prune a running project).
pub fn changes(
    out: &Path,
    artifacts: &[Artifact],
    keep: &BTreeSet<String>,
) -> std::io::Result<Vec<Change>> {
    let claimed: BTreeSet<&Path> = artifacts.iter().map(|a| a.path.as_path()).collect();
    let compared: Vec<Option<Change>> = artifacts
        .par_iter()
        .map(|artifact| compare(out, artifact))
        .collect::<std::io::Result<_>>()?;
    let mut result: Vec<Change> = compared.into_iter().flatten().collect();
    for path in stale::generated_files(out, &claimed)? {
        if stale::belongs_to(&path, keep) {
            continue;
        }
        let old = std::fs::read_to_string(out.join(&path)).unwrap_or_default();
        result.push(Change {
            path,
            kind: ChangeKind::Delete,
            old,
            new: String::new(),
        });
    }
    result.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(result)
}

pub(crate) use crate::atomic::at;

/// The change one artifact needs, if any.
fn compare(out: &Path, artifact: &Artifact) -> std::io::Result<Option<Change>> {
    match std::fs::read(out.join(&artifact.path)) {
        Ok(bytes) if bytes == artifact.content.as_bytes() => Ok(None),
        Ok(bytes) => Ok(Some(Change {
            path: artifact.path.clone(),
            kind: ChangeKind::Modify,
            old: String::from_utf8_lossy(&bytes).into_owned(),
            new: artifact.content.clone(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Change {
            path: artifact.path.clone(),
            kind: ChangeKind::Create,
            old: String::new(),
            new: artifact.content.clone(),
        })),
        Err(e) => Err(at(&out.join(&artifact.path), e)),
    }
}

/// Applies changes under `out`, all or nothing as far as the filesystem allows.
pub fn write(out: &Path, changes: &[Change]) -> std::io::Result<()> {
    // Phase one, in parallel (fsync dominates): every new file lands beside its target.
    let staged: Vec<crate::atomic::Staged> = changes
        .par_iter()
        .filter(|c| c.kind != ChangeKind::Delete)
        .map(|change| crate::atomic::stage(&out.join(&change.path), change.new.as_bytes()))
        .collect::<std::io::Result<_>>()?;
    // Phase two: every new file is on disk; move them into place.
    for file in staged {
        file.commit()?;
    }
    for change in changes.iter().filter(|c| c.kind == ChangeKind::Delete) {
        let target = out.join(&change.path);
        match std::fs::remove_file(&target) {
            Ok(()) => stale::remove_empty_parents(out, &target),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&target, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_modifies_deletes_and_keeps() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        let a = Artifact::new("proxy/a.yml", "a: 1");
        let b = Artifact::new("upstream/p/docker-compose.yml", "b: 1");
        let keep: BTreeSet<String> = BTreeSet::new();
        let first = changes(root, &[a.clone(), b.clone()], &keep).expect("changes");
        assert!(first.iter().all(|c| c.kind == ChangeKind::Create));
        write(root, &first).expect("write");
        assert!(
            changes(root, &[a.clone(), b.clone()], &keep)
                .expect("again")
                .is_empty()
        );

        let a2 = Artifact::new("proxy/a.yml", "a: 2");
        let second = changes(root, std::slice::from_ref(&a2), &keep).expect("changes");
        let kinds: Vec<ChangeKind> = second.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![ChangeKind::Modify, ChangeKind::Delete]);
        let broken: BTreeSet<String> = ["p".to_string()].into();
        let spared = changes(root, std::slice::from_ref(&a2), &broken).expect("changes");
        assert_eq!(spared.len(), 1, "a broken project's files are not deleted");
        write(root, &second).expect("write");
        assert!(
            !root.join("upstream/p").exists(),
            "empty project folder removed"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("proxy/a.yml")).expect("read"),
            a2.content
        );
    }

    #[test]
    fn hand_written_files_are_never_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("proxy/haproxy/certs")).expect("mkdir");
        std::fs::write(dir.path().join("proxy/haproxy/certs/site.pem"), "pem").expect("write");
        let c = changes(dir.path(), &[], &BTreeSet::new()).expect("changes");
        assert!(c.is_empty());
    }
}
