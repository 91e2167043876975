//! A full disk and a read-only folder under `render` and `apply`: a clear error naming the
//! path, exit 1, no partial, empty or temporary file, the previous files intact. The root lives
//! on a small tmpfs mounted by the test (root is needed to mount; elsewhere the test says so and
//! does nothing).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Root, itsup};

/// A tmpfs of `size` mounted over a fresh folder, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Every file under `dir` (relative path → content), inputs and itsup's own folder excluded.
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("under base").to_path_buf();
            if rel.starts_with("projects")
                || rel.starts_with(".itsup")
                || rel == Path::new("filler")
            {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).expect("read output"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Fills the file system holding `dir` up to the last byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
}

fn assert_intact(root: &Path, before: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    let after = outputs(root);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{what}: the set of files changed (temporary or partial files left?)"
    );
    for (path, content) in before {
        assert!(
            after.get(path) == Some(content),
            "{what}: {} changed",
            path.display()
        );
    }
}

#[test]
fn full_disk_and_read_only_root_leave_previous_files_intact() {
    let Some(fs) = Tmpfs::mount("2m") else {
        eprintln!("disk_faults: cannot mount a tmpfs (not root?): nothing tested");
        return;
    };
    let root = fs.path();
    // The fixture helpers write through `Root`; here the root is the mount point itself.
    let seed = Root::new();
    seed.project("shop", "shop.example.com");
    seed.write(
        "projects/itsup.yml",
        "proxy:\n  engine: haproxy\n  httpPort: 8080\n",
    );
    let copy = |rel: &str| {
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(seed.join(rel), to).expect("copy input");
    };
    for rel in [
        "projects/itsup.yml",
        "projects/shop/ingress.yml",
        "projects/shop/docker-compose.yml",
    ] {
        copy(rel);
    }
    itsup(root, &["render"]).code(0);
    let before = outputs(root);
    assert!(
        before.keys().any(|p| p.starts_with("upstream")),
        "rendered: {:?}",
        before.keys()
    );

    // A second project and a changed one: every output file would change or appear.
    let big = "x".repeat(64 * 1024);
    std::fs::create_dir_all(root.join("projects/blog")).expect("mkdir");
    std::fs::write(
        root.join("projects/blog/ingress.yml"),
        "ingress:\n  - service: web\n    domain: blog.example.com\n    port: 80\n",
    )
    .expect("write");
    std::fs::write(
        root.join("projects/blog/docker-compose.yml"),
        format!(
            "services:\n  web:\n    image: nginx:alpine\n    environment:\n      BIG: \"{big}\"\n"
        ),
    )
    .expect("write");

    fill(root);
    for args in [&["render"][..], &["apply"][..]] {
        let run = itsup(root, args);
        run.code(1);
        assert!(
            run.stderr.contains("No space left on device")
                && run.stderr.contains(&root.display().to_string()),
            "{args:?}: the error names the path and the cause:\n{}",
            run.stderr
        );
        assert_intact(root, &before, &format!("{args:?} on a full disk"));
    }
    std::fs::remove_file(root.join("filler")).expect("remove filler");

    fs.remount("ro");
    for args in [&["render"][..], &["apply"][..]] {
        let run = itsup(root, args);
        run.code(1);
        assert!(
            run.stderr.contains("Read-only file system")
                && run.stderr.contains(&root.display().to_string()),
            "{args:?}: the error names the path and the cause:\n{}",
            run.stderr
        );
        assert_intact(root, &before, &format!("{args:?} on a read-only root"));
    }
    fs.remount("rw");
    itsup(root, &["render"]).code(0);
    assert!(
        outputs(root)
            .keys()
            .any(|p| p.to_string_lossy().contains("blog")),
        "renders once there is room again"
    );
}
