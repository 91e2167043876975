//! `itsup migrate`: an itsUP tree (the corpus with one project file renamed back to
//! `ingress.yml`) comes out byte for byte as the original; a second run and `--dry-run` change
//! nothing; inside a git work tree the rename is a `git mv`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/itsup-projects"
    ))
}

/// Relative path → bytes of every file under `dir`, `.git` left out.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(dir)
        .into_keys()
        .filter(|p| !p.strip_prefix(dir).is_ok_and(|r| r.starts_with(".git")))
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p.strip_prefix(dir).expect("inside").to_path_buf(), bytes)
        })
        .collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The corpus as `projects/` with `adguard`'s file renamed back to itsUP's `ingress.yml`.
fn itsup_tree(with_git: bool) -> (Root, BTreeMap<PathBuf, Vec<u8>>) {
    let root = Root::new();
    copy_dir(&corpus_dir(), &root.join("projects"));
    let original = contents(root.path());
    if with_git {
        git(root.path(), &["init", "-q"]);
        git(root.path(), &["add", "-A"]);
        git(root.path(), &["commit", "-qm", "itsUP tree"]);
        git(
            root.path(),
            &[
                "mv",
                "projects/adguard/itsup-project.yml",
                "projects/adguard/ingress.yml",
            ],
        );
        git(root.path(), &["commit", "-qm", "as itsUP names it"]);
    } else {
        std::fs::rename(
            root.join("projects/adguard/itsup-project.yml"),
            root.join("projects/adguard/ingress.yml"),
        )
        .expect("rename");
    }
    (root, original)
}

#[test]
fn migrate_in_a_git_work_tree_restores_the_original_with_git_mv() {
    let (root, original) = itsup_tree(true);
    let before = contents(root.path());
    assert_ne!(before, original);

    let dry = root.itsup(&["migrate", "--dry-run"]);
    dry.code(2);
    assert!(
        dry.stdout.contains(
            "would rename projects/adguard/ingress.yml -> projects/adguard/itsup-project.yml"
        ),
        "{}",
        dry.stdout
    );
    assert_eq!(contents(root.path()), before, "--dry-run touched the tree");

    let run = root.itsup(&["migrate"]);
    run.code(0);
    assert_eq!(
        contents(root.path()),
        original,
        "migrated tree differs from the original"
    );
    let status = git(root.path(), &["status", "--porcelain"]);
    assert_eq!(
        status.trim(),
        "R  projects/adguard/ingress.yml -> projects/adguard/itsup-project.yml",
        "the rename must be staged as a git mv"
    );

    let stamps = snapshot(root.path());
    let again = root.itsup(&["migrate"]);
    again.code(0);
    assert!(
        again.stdout.contains("already migrated"),
        "{}",
        again.stdout
    );
    assert_eq!(snapshot(root.path()), stamps, "a second run changed files");
    root.itsup(&["migrate", "--dry-run"]).code(0);
}

#[test]
fn migrate_outside_git_renames_and_sets_schema_version() {
    let (root, original) = itsup_tree(false);
    // itsUP trees older than v2.1 have no schemaVersion.
    let itsup_yml = root.read("projects/itsup.yml");
    let without: String = itsup_yml
        .lines()
        .filter(|l| !l.starts_with("schemaVersion:"))
        .map(|l| format!("{l}\n"))
        .collect();
    root.write("projects/itsup.yml", &without);

    let run = root.itsup(&["migrate"]);
    run.code(0);
    assert!(
        run.stdout.contains("set schemaVersion: 2.1.0"),
        "{}",
        run.stdout
    );
    let after = contents(root.path());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        root.read("projects/itsup.yml"),
        format!("schemaVersion: 2.1.0\n{without}")
    );
    root.itsup(&["validate"]).code(0);
    root.itsup(&["migrate", "--dry-run"]).code(0);
}

#[test]
fn migrate_refuses_a_project_with_both_files() {
    let root = Root::new();
    root.project("shop", "shop.example.com");
    root.write("projects/shop/itsup-project.yml", "ingress: []\n");
    let before = contents(root.path());
    let run = root.itsup(&["migrate"]);
    run.code(1);
    assert!(run.stderr.contains("both exist"), "{}", run.stderr);
    assert_eq!(contents(root.path()), before);
}
