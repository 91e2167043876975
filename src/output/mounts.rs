//! Host folders the proxy stack bind-mounts: created by `render` and `apply` before Docker
//! would.
//!
//! Docker creates a missing bind-mount source itself, as root and under the daemon's umask, and
//! cannot create one at all when its mount point lies inside a read-only mount. So every
//! relative source of `proxy/docker-compose.yml` (as rendered, templates overrides included)
//! that does not exist yet is created here, mode 0755 whatever the umask, owned by whoever runs
//! itsup. Existing paths are never touched.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::render::Artifact;

/// The rendered proxy stack.
const PROXY_COMPOSE: &str = "proxy/docker-compose.yml";

/// Creates the missing bind-mount sources of the proxy stack under `out`; returns them
/// (relative to `out`).
pub fn prepare(out: &Path, artifacts: &[Artifact]) -> std::io::Result<Vec<PathBuf>> {
    let Some(compose) = artifacts
        .iter()
        .find(|a| a.path == Path::new(PROXY_COMPOSE))
    else {
        return Ok(Vec::new());
    };
    let Ok(doc) = crate::yaml::parse(&compose.content) else {
        return Ok(Vec::new());
    };
    let mut made = Vec::new();
    for source in bind_sources(&doc.value) {
        let Some(rel) = inside_proxy(&source) else {
            continue;
        };
        let path = out.join(&rel);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        create_each(out, &rel)?;
        made.push(rel);
    }
    Ok(made)
}

/// Relative bind-mount sources of every service (short `./src:/dst[:mode]` and long
/// `{type: bind, source}` syntax).
fn bind_sources(compose: &Value) -> Vec<String> {
    let services = compose.get("services").and_then(Value::as_object);
    let volumes = services
        .into_iter()
        .flat_map(|s| s.values())
        .filter_map(|s| s.get("volumes").and_then(Value::as_array))
        .flatten();
    volumes
        .filter_map(|v| match v {
            Value::String(short) => short.split(':').next().map(str::to_string),
            Value::Object(long) if long.get("type").and_then(Value::as_str) == Some("bind") => long
                .get("source")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        })
        .filter(|s| s.starts_with("./") || s.starts_with("../"))
        .collect()
}

/// `proxy/<source>` normalised, when it stays inside `proxy/` (sources elsewhere, such as
/// `../.itsup`, belong to other parts of itsup).
fn inside_proxy(source: &str) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = vec!["proxy".as_ref()];
    for c in Path::new(source).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            _ => return None,
        }
    }
    (parts.first() == Some(&"proxy".as_ref()) && parts.len() > 1).then(|| parts.iter().collect())
}

/// Creates `rel` under `out` one component at a time, each new folder mode 0755.
fn create_each(out: &Path, rel: &Path) -> std::io::Result<()> {
    let mut path = out.to_path_buf();
    for c in rel.components() {
        path.push(c);
        match std::fs::create_dir(&path) {
            Ok(()) => set_mode(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_mode(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_sources_inside_proxy_only() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("proxy/traefik")).expect("mkdir");
        let compose = Artifact::new(
            PROXY_COMPOSE,
            "services:\n  t:\n    volumes:\n      - ./traefik:/etc/traefik:ro\n      - ./data/acme:/var/lib/traefik/acme\n      - /var/run/docker.sock:/var/run/docker.sock:ro\n      - ../.itsup:/x:ro\n      - {type: bind, source: ./data/logs, target: /l}\n      - named:/v\n",
        );
        #[cfg(unix)]
        let old = umask(0o077);
        let made = prepare(dir.path(), std::slice::from_ref(&compose)).expect("prepare");
        #[cfg(unix)]
        umask(old);
        assert_eq!(
            made,
            [PathBuf::from("proxy/data/acme"), "proxy/data/logs".into()]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in ["proxy/data", "proxy/data/acme", "proxy/data/logs"] {
                let mode = std::fs::metadata(dir.path().join(p))
                    .expect("made")
                    .permissions();
                assert_eq!(mode.mode() & 0o777, 0o755, "{p} under umask 077");
            }
        }
        assert!(!dir.path().join(".itsup").exists(), "outside proxy/");
        assert!(prepare(dir.path(), &[compose]).expect("again").is_empty());
    }

    /// Sets the process umask, returning the previous one. nextest runs each test in its own
    /// process, and no other test of this crate depends on the umask.
    #[cfg(unix)]
    fn umask(mask: libc::mode_t) -> libc::mode_t {
        // SAFETY: umask(2) only swaps the process's mask; it cannot fail.
        unsafe { libc::umask(mask) }
    }
}
