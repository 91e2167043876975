//! A diagnostic: one error, located at `file:line:col`, optionally owned by a project.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::yaml::Pos;

/// One error found while loading or validating.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// Path relative to the root.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The project it belongs to (`None` for platform-wide files).
    pub project: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        file: impl Into<PathBuf>,
        at: Pos,
        project: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line: at.line.max(1),
            column: at.col.max(1),
            project: project.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}
