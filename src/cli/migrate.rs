//! `itsup migrate [--dry-run]`: bring an itsUP `projects/` tree to itsup's names. Renames every
//! `ingress.yml` to `itsup-project.yml` (`git mv` when the file is tracked in a git work tree, so
//! history follows it; a plain rename otherwise), sets `schemaVersion` in `itsup.yml`, then
//! validates. Idempotent: a migrated tree is left alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::Global;

/// The schema version itsup reads (itsUP v2.1's files, unchanged in meaning).
pub const SCHEMA_VERSION: &str = "2.1.0";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would change; touch nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One change migrate makes.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Rename { from: PathBuf, to: PathBuf },
    SchemaVersion { file: PathBuf, text: String },
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<i32> {
    let projects = global.root.join("projects");
    anyhow::ensure!(
        projects.is_dir(),
        "{} is not a folder: run migrate in the root that holds projects/",
        projects.display()
    );
    let steps = plan(&projects)?;
    for step in &steps {
        let line = match step {
            Step::Rename { from, to } => format!(
                "rename {} -> {}",
                rel(&global.root, from),
                rel(&global.root, to)
            ),
            Step::SchemaVersion { file, .. } => format!(
                "set schemaVersion: {SCHEMA_VERSION} in {}",
                rel(&global.root, file)
            ),
        };
        if !global.quiet {
            println!("{}{line}", if args.dry_run { "would " } else { "" });
        }
    }
    if args.dry_run {
        return Ok(if steps.is_empty() { 0 } else { 2 });
    }
    for step in &steps {
        apply(step)?;
    }
    if !global.quiet && steps.is_empty() {
        println!("already migrated: nothing to change");
    }
    let generated = crate::pipeline::generate(&global.root)?;
    super::report::diagnostics(
        global,
        &generated.outcome.diagnostics,
        &generated.outcome.broken,
    );
    Ok(i32::from(!generated.outcome.is_valid()))
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What migrate would do, in a stable order (projects by name, then itsup.yml).
fn plan(projects: &Path) -> anyhow::Result<Vec<Step>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(projects)
        .with_context(|| format!("cannot read {}", projects.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut steps = Vec::new();
    for dir in dirs {
        let from = dir.join("ingress.yml");
        let to = dir.join("itsup-project.yml");
        if !from.is_file() {
            continue;
        }
        anyhow::ensure!(
            !to.exists(),
            "{} and {} both exist: keep one (itsup reads either, never both)",
            from.display(),
            to.display()
        );
        steps.push(Step::Rename { from, to });
    }
    let file = projects.join("itsup.yml");
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    if let Some(text) =
        with_schema_version(&text).with_context(|| format!("cannot migrate {}", file.display()))?
    {
        steps.push(Step::SchemaVersion { file, text });
    }
    Ok(steps)
}

/// `text` with `schemaVersion` set to [`SCHEMA_VERSION`], or `None` when it already is. Only the
/// value on the key's line changes (comments and layout stay); a missing key is added first.
fn with_schema_version(text: &str) -> anyhow::Result<Option<String>> {
    let doc = crate::yaml::parse(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    match doc.value.get("schemaVersion") {
        Some(v) if v.as_str() == Some(SCHEMA_VERSION) => Ok(None),
        Some(v) => {
            let line = doc.key_pos("/schemaVersion").line;
            anyhow::ensure!(
                !(v.is_array() || v.is_object()) && doc.value_pos("/schemaVersion").line == line,
                "schemaVersion is not a plain `schemaVersion: value` line; set it to {SCHEMA_VERSION} by hand"
            );
            let mut out = String::with_capacity(text.len());
            for (i, l) in text.split_inclusive('\n').enumerate() {
                if i + 1 == line && l.starts_with("schemaVersion:") {
                    let comment = l.find(" #").map(|at| &l[at..]).unwrap_or("");
                    let comment = comment.trim_end_matches(['\n', '\r']);
                    out.push_str(&format!("schemaVersion: {SCHEMA_VERSION}{comment}\n"));
                } else {
                    out.push_str(l);
                }
            }
            anyhow::ensure!(
                out != text,
                "schemaVersion is not a plain top-level `schemaVersion: value` line; set it to {SCHEMA_VERSION} by hand"
            );
            Ok(Some(out))
        }
        None => Ok(Some(format!("schemaVersion: {SCHEMA_VERSION}\n{text}"))),
    }
}

fn apply(step: &Step) -> anyhow::Result<()> {
    match step {
        Step::Rename { from, to } => {
            if !git_mv(from, to)? {
                std::fs::rename(from, to).with_context(|| {
                    format!("cannot rename {} to {}", from.display(), to.display())
                })?;
            }
            Ok(())
        }
        Step::SchemaVersion { file, text } => Ok(crate::atomic::write(file, text.as_bytes())?),
    }
}

/// `git mv` when `from` is tracked in a git work tree; `Ok(false)` when git does not apply
/// (no git, not a work tree, untracked file), so the caller renames plainly.
fn git_mv(from: &Path, to: &Path) -> anyhow::Result<bool> {
    let dir = from.parent().context("file without a folder")?;
    let quiet = |args: &[&std::ffi::OsStr]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let name = |p: &Path| p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let (from_name, to_name) = (name(from), name(to));
    let tracked = quiet(&[
        "ls-files".as_ref(),
        "--error-unmatch".as_ref(),
        "--".as_ref(),
        from_name.as_os_str(),
    ]);
    if !tracked {
        return Ok(false);
    }
    let out = Command::new("git")
        .args(["mv", "--"])
        .arg(&from_name)
        .arg(&to_name)
        .current_dir(dir)
        .output()
        .context("cannot run git")?;
    anyhow::ensure!(
        out.status.success(),
        "git mv {} {} failed: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_set_once_keeping_comments() {
        assert_eq!(with_schema_version("schemaVersion: 2.1.0\n").unwrap(), None);
        assert_eq!(
            with_schema_version("a: 1\n").unwrap().as_deref(),
            Some("schemaVersion: 2.1.0\na: 1\n")
        );
        assert_eq!(
            with_schema_version("# top\nschemaVersion: 2.0.0 # old\nb: 2\n")
                .unwrap()
                .as_deref(),
            Some("# top\nschemaVersion: 2.1.0 # old\nb: 2\n")
        );
        assert!(with_schema_version("schemaVersion:\n  - 1\n").is_err());
    }
}
