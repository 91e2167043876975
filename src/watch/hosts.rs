//! Keeps the watcher's host names in a managed block of a hosts file, for resolvers that don't
//! map `*.localhost` to the loopback address (or for another suffix such as `.local`).
//!
//! Only the block between the markers is ever touched, and an unchanged block is not written,
//! so running it repeatedly (or from a hook) is harmless.

use std::path::Path;

use anyhow::Context;

pub const BEGIN: &str = "# BEGIN itsup watch (managed by `itsup hosts`; edits inside are lost)";
pub const END: &str = "# END itsup watch";

/// `existing` with its managed block replaced by one mapping `hosts` to `address` (removed when
/// `hosts` is empty). The rest of the file is kept byte for byte.
pub fn with_block(existing: &str, address: &str, hosts: &[String]) -> String {
    let mut block = String::new();
    if !hosts.is_empty() {
        block.push_str(BEGIN);
        block.push('\n');
        for host in hosts {
            block.push_str(&format!("{address} {host}\n"));
        }
        block.push_str(END);
        block.push('\n');
    }
    let begin = existing
        .find(&format!("{BEGIN}\n"))
        .or_else(|| existing.strip_suffix(BEGIN).map(|before| before.len()));
    if let Some(start) = begin {
        let after_begin = &existing[start..];
        // A block without its end marker was cut short: everything after the begin marker is ours.
        let end = after_begin
            .find(&format!("\n{END}"))
            .map(|i| {
                let stop = start + i + 1 + END.len();
                if existing[stop..].starts_with('\n') {
                    stop + 1
                } else {
                    stop
                }
            })
            .unwrap_or(existing.len());
        return format!("{}{}{}", &existing[..start], block, &existing[end..]);
    }
    if block.is_empty() {
        return existing.to_string();
    }
    let mut out = existing.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&block);
    out
}

/// Rewrites the block in `path`; returns whether the file changed.
pub fn write(path: &Path, address: &str, hosts: &[String]) -> anyhow::Result<bool> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let updated = with_block(&existing, address, hosts);
    if updated == existing {
        return Ok(false);
    }
    let atomic = crate::atomic::stage(path, updated.as_bytes()).and_then(|staged| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(staged.path(), meta.permissions())?;
        }
        staged.commit()
    });
    if atomic.is_err() {
        // /etc/hosts is often a bind mount (containers) where rename fails: write in place.
        std::fs::write(path, &updated).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn appends_replaces_and_removes_the_block_only() {
        let base = "127.0.0.1 localhost\n::1 localhost";
        let once = with_block(
            base,
            "127.0.0.1",
            &hosts(&["a.x.localhost", "b.x.localhost"]),
        );
        assert_eq!(
            once,
            format!(
                "127.0.0.1 localhost\n::1 localhost\n{BEGIN}\n127.0.0.1 a.x.localhost\n127.0.0.1 b.x.localhost\n{END}\n"
            )
        );
        assert_eq!(
            with_block(
                &once,
                "127.0.0.1",
                &hosts(&["a.x.localhost", "b.x.localhost"])
            ),
            once
        );
        let with_tail = format!("{once}10.0.0.1 other\n");
        let replaced = with_block(&with_tail, "127.0.0.1", &hosts(&["c.localhost"]));
        assert_eq!(
            replaced,
            format!(
                "127.0.0.1 localhost\n::1 localhost\n{BEGIN}\n127.0.0.1 c.localhost\n{END}\n10.0.0.1 other\n"
            )
        );
        let removed = with_block(&replaced, "127.0.0.1", &[]);
        assert_eq!(
            removed,
            "127.0.0.1 localhost\n::1 localhost\n10.0.0.1 other\n"
        );
    }

    #[test]
    fn a_truncated_block_is_replaced_whole() {
        let broken = format!("1.2.3.4 keep\n{BEGIN}\n127.0.0.1 stale.localhost\n");
        let fixed = with_block(&broken, "127.0.0.1", &hosts(&["new.localhost"]));
        assert_eq!(
            fixed,
            format!("1.2.3.4 keep\n{BEGIN}\n127.0.0.1 new.localhost\n{END}\n")
        );
    }

    #[test]
    fn writes_idempotently() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n")?;
        assert!(write(&path, "127.0.0.1", &hosts(&["w.p.localhost"]))?);
        assert!(!write(&path, "127.0.0.1", &hosts(&["w.p.localhost"]))?);
        let text = std::fs::read_to_string(&path)?;
        assert!(text.starts_with("127.0.0.1 localhost\n"));
        assert!(text.contains("127.0.0.1 w.p.localhost\n"));
        Ok(())
    }
}
