//! Content hash of a rendered service: what must match for a running container to count as
//! up to date. It covers the service's rendered definition, the resolved image ID (a re-tagged
//! image changes the hash even when the reference did not), the content of bind-mounted files
//! and `env_file`s, and the values of the secrets its definition interpolates. The hash is
//! stored as a container label and in the state file.
//!
//! Bind mounts count as configuration when read-only (`:ro`, `read_only: true`): their whole
//! content is hashed. A writable mount of a folder is the service's data (a database's files
//! change while it runs, which must never look like a new version); only a writable mount of a
//! single file (a config file mounted without `:ro`) is hashed. A missing source hashes like an
//! empty folder, since that is what Docker creates for it at the first start.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::secrets::Env;

/// Everything the hash depends on beyond the definition itself.
pub struct HashInputs<'a> {
    /// Directory relative paths of the compose file resolve against (`upstream/<p>`).
    pub project_dir: &'a Path,
    /// Image ID of the service's image, when it is present locally.
    pub image_id: Option<&'a str>,
    pub env: &'a Env,
    /// Whether bind-mounted files count. Not for the proxy: its mounted folders hold the
    /// configuration (applied by reload or the file provider, never by a restart) and runtime
    /// sockets.
    pub mounts: bool,
}

/// Hex SHA-256 (first 24 characters: plenty to tell versions apart, short in `docker ps`).
pub fn service_hash(definition: &Value, inputs: &HashInputs<'_>) -> String {
    let mut h = Sha256::new();
    let canonical = canonical(definition);
    h.update(b"definition\0");
    h.update(canonical.to_string().as_bytes());
    h.update(b"\0image\0");
    h.update(inputs.image_id.unwrap_or("").as_bytes());
    let paths = if inputs.mounts {
        mounted_paths(definition)
    } else {
        Vec::new()
    };
    for (path, read_only) in paths {
        h.update(b"\0file\0");
        h.update(path.as_bytes());
        let full = inputs.project_dir.join(&path);
        if read_only || full.is_file() {
            hash_path(&mut h, &full, 0);
        } else {
            h.update(b"<data>");
        }
    }
    let text = canonical.to_string();
    for name in interpolated(&text) {
        if let Some(value) = inputs.env.get(&name) {
            h.update(b"\0env\0");
            h.update(name.as_bytes());
            h.update(b"=");
            h.update(value.as_bytes());
        }
    }
    let digest = hex::encode(h.finalize());
    digest[..24].to_string()
}

/// Keys sorted at every level, so reordering a mapping is no change.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Relative host paths the service reads, each with whether it is mounted read-only: bind
/// mounts (short and long syntax) and env files (read by Compose, so read-only). Absolute paths
/// are the operator's own; named volumes are data, never part of a version.
fn mounted_paths(definition: &Value) -> Vec<(String, bool)> {
    let mut paths = Vec::new();
    let relative = |s: &str| s.starts_with("./") || s.starts_with("../") || s == ".";
    if let Some(volumes) = definition.get("volumes").and_then(Value::as_array) {
        for v in volumes {
            let source = match v {
                Value::String(s) => {
                    let mut parts = s.split(':');
                    let source = parts.next().map(str::to_string);
                    let ro = parts
                        .nth(1)
                        .is_some_and(|opts| opts.split(',').any(|o| o == "ro"));
                    source.map(|s| (s, ro))
                }
                Value::Object(m) => m.get("source").and_then(Value::as_str).map(|s| {
                    let ro = m.get("read_only") == Some(&Value::Bool(true));
                    (s.to_string(), ro)
                }),
                _ => None,
            };
            if let Some(s) = source.filter(|(s, _)| relative(s)) {
                paths.push(s);
            }
        }
    }
    match definition.get("env_file") {
        Some(Value::String(s)) => paths.push((s.clone(), true)),
        Some(Value::Array(a)) => paths.extend(a.iter().filter_map(|v| {
            match v {
                Value::String(s) => Some((s.clone(), true)),
                Value::Object(m) => m
                    .get("path")
                    .and_then(Value::as_str)
                    .map(|s| (s.to_string(), true)),
                _ => None,
            }
        })),
        _ => {}
    }
    paths.sort();
    paths.dedup();
    paths
}

/// Hashes a file, or a folder's files in name order (bounded depth; symlinks not followed out).
/// A missing path hashes like an empty folder (Docker creates a missing mount source as one).
fn hash_path(h: &mut Sha256, path: &Path, depth: usize) {
    let Ok(meta) = path.symlink_metadata() else {
        return;
    };
    if meta.is_file() {
        match std::fs::read(path) {
            Ok(bytes) => h.update(&bytes),
            Err(_) => h.update(b"<unreadable>"),
        }
    } else if meta.is_dir() && depth < 16 {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            h.update(b"\0entry\0");
            h.update(name.as_encoded_bytes());
            hash_path(h, &path.join(&name), depth + 1);
        }
    } else if meta.file_type().is_symlink()
        && let Ok(target) = std::fs::read_link(path)
    {
        h.update(target.as_os_str().as_encoded_bytes());
    }
}

/// Variable names a definition interpolates (`$NAME`, `${NAME}`, `${NAME:-x}`), sorted.
fn interpolated(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            if bytes.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            let start = if bytes.get(i + 1) == Some(&b'{') {
                i + 2
            } else {
                i + 1
            };
            let end = bytes[start..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .map_or(bytes.len(), |p| start + p);
            if end > start {
                names.push(text[start..end].to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hash(def: &Value, dir: &Path, image: Option<&str>, env: &Env) -> String {
        service_hash(
            def,
            &HashInputs {
                project_dir: dir,
                image_id: image,
                env,
                mounts: true,
            },
        )
    }

    #[test]
    fn hash_follows_what_the_container_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("files")).expect("mkdir");
        std::fs::write(dir.path().join("files/a.conf"), "one").expect("write");
        let env: Env = [
            ("TOKEN".to_string(), "s1".to_string()),
            ("OTHER".into(), "x".into()),
        ]
        .into_iter()
        .collect();
        let def = json!({"image": "app:v1", "volumes": ["./files:/etc/app:ro"],
                         "environment": {"T": "${TOKEN}"}});
        let base = hash(&def, dir.path(), Some("sha256:1"), &env);
        let reordered = json!({"environment": {"T": "${TOKEN}"}, "volumes": ["./files:/etc/app:ro"],
                               "image": "app:v1"});
        assert_eq!(hash(&reordered, dir.path(), Some("sha256:1"), &env), base);
        assert_ne!(
            hash(&def, dir.path(), Some("sha256:2"), &env),
            base,
            "image id"
        );
        let mut env2 = env.clone();
        env2.insert("OTHER".into(), "changed".into());
        assert_eq!(
            hash(&def, dir.path(), Some("sha256:1"), &env2),
            base,
            "unused secret"
        );
        env2.insert("TOKEN".into(), "s2".into());
        assert_ne!(
            hash(&def, dir.path(), Some("sha256:1"), &env2),
            base,
            "used secret"
        );
        std::fs::write(dir.path().join("files/a.conf"), "two").expect("write");
        assert_ne!(
            hash(&def, dir.path(), Some("sha256:1"), &env),
            base,
            "mounted file"
        );
    }

    #[test]
    fn writable_data_folders_do_not_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env::default();
        let def = json!({"image": "db", "volumes": [
            "./data:/var/lib/db",
            {"type": "bind", "source": "./conf", "target": "/etc/db", "read_only": true},
            "./config:/etc/broker:ro,z",
            "./app.conf:/etc/app.conf"
        ]});
        let base = hash(&def, dir.path(), None, &env);
        // Docker creates the missing sources as empty folders at the first start.
        for d in ["data", "conf", "config"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        assert_eq!(
            hash(&def, dir.path(), None, &env),
            base,
            "created by Docker"
        );
        std::fs::write(dir.path().join("data/PG_VERSION"), "16").expect("write");
        assert_eq!(
            hash(&def, dir.path(), None, &env),
            base,
            "the service's data"
        );
        std::fs::write(dir.path().join("conf/db.conf"), "x").expect("write");
        let conf = hash(&def, dir.path(), None, &env);
        assert_ne!(conf, base, "read-only (long syntax) config");
        std::fs::write(dir.path().join("config/b.conf"), "x").expect("write");
        let config = hash(&def, dir.path(), None, &env);
        assert_ne!(
            config, conf,
            "read-only (short syntax, more options) config"
        );
        std::fs::write(dir.path().join("app.conf"), "x").expect("write");
        assert_ne!(
            hash(&def, dir.path(), None, &env),
            config,
            "a writable single file is configuration"
        );
    }

    #[test]
    fn finds_interpolations() {
        assert_eq!(interpolated("a $A ${B:-x} $$C ${D}"), vec!["A", "B", "D"]);
    }
}
