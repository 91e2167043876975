//! Reading one YAML input file safely: regular files only, bounded size, UTF-8, one document.

use std::io::Read;
use std::path::Path;

use crate::yaml::{self, Document, Pos};

/// Largest input file we read; real configuration files are a few KiB.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and parses a YAML file, or says where and why it failed.
pub fn read_yaml(path: &Path) -> Result<Document, (Pos, String)> {
    let start = Pos { line: 1, col: 1 };
    let meta = path
        .symlink_metadata()
        .map_err(|e| (start, format!("cannot read: {e}")))?;
    if meta.file_type().is_symlink() {
        return Err((
            start,
            "is a symlink; input files must be regular files".into(),
        ));
    }
    if !meta.is_file() {
        return Err((start, "is not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err((
            start,
            format!(
                "file is {:.1} MiB, more than the {} MiB an input file may have",
                meta.len() as f64 / 1048576.0,
                MAX_FILE_BYTES / 1048576
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| (start, format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        (Pos { line, col }, "file is not valid UTF-8".to_string())
    })?;
    yaml::parse(&text).map_err(|e| (e.pos, format!("invalid YAML: {}", e.message)))
}
