//! Secrets: `secrets/itsup.txt` (shared, and the proxy's) and `secrets/<project>.txt` as
//! `KEY=value` lines, handed to Compose as process environment only, so values never land in a
//! generated file. Layering is shared first, then the project's file overrides.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

/// Environment for one stack, by variable name.
pub type Env = BTreeMap<String, String>;

/// The environment of a project's stack (`None`: the proxy, which gets the shared file only).
pub fn env_for(root: &Path, project: Option<&str>) -> anyhow::Result<Env> {
    let mut env = read(&root.join("secrets/itsup.txt"))?;
    if let Some(project) = project {
        env.extend(read(&root.join(format!("secrets/{project}.txt")))?);
    }
    Ok(env)
}

/// Reads one secrets file; a missing file is empty. Blank lines and `#` comments are skipped,
/// an optional `export ` prefix is accepted, and matching outer quotes are removed.
pub fn read(path: &Path) -> anyhow::Result<Env> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Env::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse(&text).map_err(|(line, msg)| anyhow::anyhow!("{}:{line}: {msg}", path.display()))
}

fn parse(text: &str) -> Result<Env, (usize, String)> {
    let mut env = Env::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((i + 1, "expected KEY=value".into()));
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err((i + 1, format!("{key:?} is not a valid variable name")));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        env.insert(key.to_string(), unquoted.to_string());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).expect("mkdir");
        std::fs::write(secrets.join("itsup.txt"), "# shared\nA=1\nB='two'\n").expect("write");
        std::fs::write(secrets.join("p.txt"), "export B=\"three\"\n\nC=x=y\n").expect("write");
        let env = env_for(dir.path(), Some("p")).expect("env");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("three"));
        assert_eq!(env.get("C").map(String::as_str), Some("x=y"));
        let proxy = env_for(dir.path(), None).expect("env");
        assert_eq!(proxy.get("B").map(String::as_str), Some("two"));
        assert!(env_for(dir.path(), Some("absent")).is_ok());
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse("NOEQUALS").map_err(|e| e.0), Err(1));
        assert_eq!(parse("A=1\n1X=2").map_err(|e| e.0), Err(2));
    }
}
