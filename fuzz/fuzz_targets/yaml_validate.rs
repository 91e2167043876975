//! The YAML loader and validation over any bytes as a project's compose file, its ingress
//! file or the platform file: never a panic, and every diagnostic names a file, a line and a
//! column (1-based).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const FILES: [&str; 3] = [
    "projects/app/docker-compose.yml",
    "projects/app/ingress.yml",
    "projects/itsup.yml",
];

/// One root per process; the fuzzed file is rewritten, the others put back, per input.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::create_dir_all(dir.join("projects/app")).expect("mkdir");
        dir
    })
}

fn baseline(i: usize) -> &'static str {
    match i {
        0 => "services:\n  web:\n    image: nginx\n",
        1 => "ingress:\n  - service: web\n    domain: app.example.com\n    port: 80\n",
        _ => "proxy:\n  engine: haproxy\n",
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let which = usize::from(which) % FILES.len();
    let root = root();
    for (i, rel) in FILES.iter().enumerate() {
        let content: &[u8] = if i == which {
            text
        } else {
            baseline(i).as_bytes()
        };
        std::fs::write(root.join(rel), content).expect("write");
    }
    let tree = match itsup::fuzz_api::load_tree(root) {
        Ok(tree) => tree,
        Err(e) => {
            assert!(!format!("{e:#}").is_empty());
            return;
        }
    };
    let outcome = itsup::fuzz_api::validate(&tree, &|_| None);
    for d in &outcome.diagnostics {
        assert!(
            !d.file.as_os_str().is_empty() && d.line >= 1 && d.column >= 1,
            "diagnostic without file:line:col: {d:?}"
        );
    }
});
