//! Finding generated files (by their header) so that files of deleted projects are removed
//! and hand-written files (certificates, data) are never touched.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::render::HEADER;

/// Folders under the output root that hold generated files.
const GENERATED_DIRS: [&str; 2] = ["proxy", "upstream"];
/// Generated trees are shallow; anything deeper is not ours.
const MAX_DEPTH: usize = 4;

/// Relative paths of every file under `proxy/` and `upstream/` that starts with the header,
/// except those in `skip` (files about to be written anyway: no need to open them).
pub fn generated_files(out: &Path, skip: &BTreeSet<&Path>) -> std::io::Result<Vec<PathBuf>> {
    // One folder per project under upstream/: walk them in parallel, they are independent.
    let mut tops: Vec<PathBuf> = Vec::new();
    for dir in GENERATED_DIRS {
        match std::fs::read_dir(out.join(dir)) {
            Ok(entries) => {
                for entry in entries {
                    tops.push(Path::new(dir).join(entry?.file_name()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let found: Vec<Vec<PathBuf>> = tops
        .par_iter()
        .map(|top| {
            let mut found = Vec::new();
            let meta = std::fs::symlink_metadata(out.join(top))?;
            if meta.is_dir() {
                walk(out, top, 1, skip, &mut found)?;
            } else if meta.is_file()
                && !skip.contains(top.as_path())
                && starts_with_header(&out.join(top))
            {
                found.push(top.clone());
            }
            Ok(found)
        })
        .collect::<std::io::Result<_>>()?;
    let mut found: Vec<PathBuf> = found.into_iter().flatten().collect();
    found.sort();
    Ok(found)
}

fn walk(
    out: &Path,
    rel: &Path,
    depth: usize,
    skip: &BTreeSet<&Path>,
    found: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(out.join(rel)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = rel.join(entry.file_name());
        if kind.is_dir() && depth < MAX_DEPTH {
            walk(out, &path, depth + 1, skip, found)?;
        } else if kind.is_file()
            && !skip.contains(path.as_path())
            && starts_with_header(&out.join(&path))
        {
            found.push(path);
        }
    }
    Ok(())
}

fn starts_with_header(path: &Path) -> bool {
    let mut buf = vec![0u8; HEADER.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok_and(|()| buf == HEADER.as_bytes())
}

/// Whether a generated path lies under `upstream/<p>/` for a project in `projects`.
pub fn belongs_to(path: &Path, projects: &BTreeSet<String>) -> bool {
    let mut parts = path.components();
    matches!(parts.next(), Some(c) if c.as_os_str() == "upstream")
        && parts
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .is_some_and(|p| projects.contains(p))
}

/// Removes now-empty folders between a deleted file and the output root.
pub fn remove_empty_parents(out: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == out || !d.starts_with(out) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
