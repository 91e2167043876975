//! The itsup image (`proxy.itsupImage`, default `itsup:<version>`), which engine itsup and the
//! gRPC agent run: built here from the running executable when the engine lacks it. No base
//! image and no registry: a root filesystem holding the binary (stripped when `strip` is there)
//! as `/usr/local/bin/itsup` and the libraries `ldd` lists (none for a static binary) is packed
//! into a tar and imported through the Docker API, as `docker import` would.
//! The repository's `Dockerfile` builds the same image where a registry is reachable.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::TryStreamExt;

/// Where the binary lives in the image (on the image's PATH).
pub const BINARY: &str = "/usr/local/bin/itsup";

/// Whether the engine has `reference` locally.
pub async fn exists(docker: &Docker, reference: &str) -> bool {
    docker.inspect_image(reference).await.is_ok()
}

/// Builds `reference` (`name[:tag]`) from this process's executable.
pub async fn build(docker: &Docker, reference: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this itsup executable")?;
    let work = tempfile::tempdir().context("cannot create a temporary folder")?;
    let tar_path = work.path().join("rootfs.tar");
    {
        let exe = exe.clone();
        let tar_path = tar_path.clone();
        let scratch = work.path().to_path_buf();
        tokio::task::spawn_blocking(move || write_rootfs(&exe, &scratch, &tar_path))
            .await
            .context("the image packing task failed")??;
    }
    let (repo, tag) = split_reference(reference);
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .changes(vec![
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            format!("ENTRYPOINT [\"{BINARY}\"]"),
            "CMD [\"--help\"]".into(),
        ])
        .build();
    let file = tokio::fs::File::open(&tar_path)
        .await
        .with_context(|| format!("cannot read {}", tar_path.display()))?;
    let body = tokio_util::io::ReaderStream::new(file).map_ok(bytes::Bytes::from);
    // An import streams the whole binary (a debug build: hundreds of MB) and the engine
    // unpacks it before it answers: on a busy host that takes far longer than the per-call
    // bound meant for API calls that answer at once.
    docker
        .clone()
        .with_timeout(IMPORT_TIMEOUT)
        .create_image(Some(options), Some(bollard::body_try_stream(body)), None)
        .try_collect::<Vec<_>>()
        .await
        .with_context(|| format!("cannot import the itsup image {reference}"))?;
    Ok(())
}

/// How long the engine may take to import the itsup image.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `name:tag` → (`name`, `tag`); no tag is `latest`. A registry port (`host:5000/name`) is not
/// a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// Writes the image's root filesystem as a tar: the binary, its libraries, an empty `/tmp`.
fn write_rootfs(exe: &Path, scratch: &Path, tar_path: &Path) -> anyhow::Result<()> {
    let binary = stripped_copy(exe, scratch);
    let file = std::fs::File::create(tar_path)
        .with_context(|| format!("cannot write {}", tar_path.display()))?;
    let mut tar = tar::Builder::new(file);
    tar.follow_symlinks(true);
    let mut tmp = tar::Header::new_gnu();
    tmp.set_entry_type(tar::EntryType::Directory);
    tmp.set_mode(0o1777);
    tmp.set_size(0);
    tar.append_data(&mut tmp, "tmp/", std::io::empty())
        .context("cannot pack /tmp")?;
    tar.append_path_with_name(&binary, BINARY.trim_start_matches('/'))
        .with_context(|| format!("cannot pack {}", binary.display()))?;
    for lib in libraries(exe)? {
        tar.append_path_with_name(&lib, lib.strip_prefix("/").unwrap_or(&lib))
            .with_context(|| format!("cannot pack {}", lib.display()))?;
    }
    tar.into_inner()
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", tar_path.display()))?;
    Ok(())
}

/// A stripped copy of `exe` in `scratch` when `strip` is installed (a debug build shrinks
/// tenfold), else `exe` itself.
fn stripped_copy(exe: &Path, scratch: &Path) -> PathBuf {
    let out = scratch.join("itsup");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(exe)
        .output()
        .is_ok_and(|o| o.status.success());
    if ok { out } else { exe.to_path_buf() }
}

/// The shared libraries `exe` loads, as `ldd` lists them (the loader included); none for a
/// static binary, or where there is no `ldd` (then the binary must be static to run).
fn libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(out) = Command::new("ldd").arg(exe).output() else {
        return Ok(Vec::new());
    };
    if !out.status.success() {
        // "not a dynamic executable"
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Absolute paths in `ldd` output (`libc.so.6 => /lib/…/libc.so.6 (0x…)`, `/lib64/ld-… (0x…)`).
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs: Vec<PathBuf> = text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_and_references() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert_eq!(split_reference("itsup:0.1.0"), ("itsup", "0.1.0"));
        assert_eq!(
            split_reference("reg:5000/itsup"),
            ("reg:5000/itsup", "latest")
        );
        assert_eq!(
            split_reference("reg:5000/me/itsup:t"),
            ("reg:5000/me/itsup", "t")
        );
    }

    #[test]
    fn rootfs_holds_the_binary_its_libraries_and_tmp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar_path = dir.path().join("r.tar");
        let exe = Path::new("/bin/true");
        write_rootfs(exe, dir.path(), &tar_path).expect("rootfs");
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).expect("open"));
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert!(
            names.contains(&"usr/local/bin/itsup".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"tmp/".to_string()) || names.contains(&"tmp".to_string()));
        for lib in libraries(exe).expect("ldd") {
            let rel = lib
                .strip_prefix("/")
                .expect("absolute")
                .display()
                .to_string();
            assert!(names.contains(&rel), "{rel} missing: {names:?}");
        }
    }
}
