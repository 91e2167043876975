//! The one way itsup writes a file: the new content goes to a synced temporary file in the
//! target's own folder and is renamed over the target, so a reader, a crash or a full disk never
//! leaves half a file, and the previous file stays intact until the rename. Errors name the path
//! they happened on.
//!
//! Temporary files are created with mode 0600 (tempfile's default) and keep it after the rename.

use std::io::Write;
use std::path::{Path, PathBuf};

/// An I/O error that names the file or folder it happened on (a full disk or a read-only
/// folder must say where).
pub(crate) fn at(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// New content on disk beside its target, not yet in place. Dropping it removes the temporary
/// file and leaves the target untouched.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    target: PathBuf,
}

impl Staged {
    /// Where the staged content is, for a check that must run on the file before it goes live
    /// (e.g. `haproxy -c`).
    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Renames the staged file over its target.
    pub(crate) fn commit(self) -> std::io::Result<()> {
        let target = self.target;
        self.tmp
            .persist(&target)
            .map_err(|e| at(&target, e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to a synced temporary file in `target`'s folder (created if missing).
pub(crate) fn stage(target: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".itsup-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| at(dir, e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| at(target, e))?;
    Ok(Staged {
        tmp,
        target: target.to_path_buf(),
    })
}

/// Replaces `target` with `bytes`, atomically.
pub(crate) fn write(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    stage(target, bytes)?.commit()
}

/// Like [`write`], but only when the content differs; returns whether it wrote.
pub(crate) fn write_if_changed(target: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    match std::fs::read(target) {
        Ok(old) if old == bytes => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(target, e)),
    }
    write(target, bytes)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/a.txt");
        assert!(write_if_changed(&path, b"one").expect("first write"));
        assert!(!write_if_changed(&path, b"one").expect("same content"));
        assert!(write_if_changed(&path, b"two").expect("new content"));
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn a_dropped_stage_leaves_the_target_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        write(&path, b"old").expect("write");
        let staged = stage(&path, b"new").expect("stage");
        assert_eq!(std::fs::read(staged.path()).expect("staged"), b"new");
        drop(staged);
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
