//! Release artifacts: `dist/release.sh` (run with the debug binary to stay fast) writes
//! `itsup-<version>-<target>.tar.gz` and `SHA256SUMS`; the tarball unpacked in a clean folder
//! holds a working binary, README, LICENSE, the systemd unit examples, a man page `man` renders,
//! and completions that the real shells load (bash always; zsh and fish when installed, which
//! `.ci/setup.sh` does).

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn release_tarball_unpacks_to_a_working_install() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("tempdir");
    let printed = run(Command::new("bash")
        .arg(manifest.join("dist/release.sh"))
        .arg(out.path())
        .env("ITSUP_BIN", env!("CARGO_BIN_EXE_itsup")));
    let tarball = Path::new(printed.trim());
    let version = env!("CARGO_PKG_VERSION");
    let name = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .expect("tarball name");
    assert!(
        name.starts_with(&format!("itsup-{version}-")) && name.ends_with(".tar.gz"),
        "{name}"
    );
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out.path()));

    let clean = tempfile::tempdir().expect("tempdir");
    run(Command::new("tar")
        .arg("-xzf")
        .arg(tarball)
        .arg("-C")
        .arg(clean.path()));
    let pkg = clean.path().join(name.trim_end_matches(".tar.gz"));
    for file in [
        "itsup",
        "README.md",
        "LICENSE",
        "man/itsup.1",
        "completions/itsup.bash",
        "completions/_itsup",
        "completions/itsup.fish",
        "systemd/itsup-agent.service",
        "systemd/itsup-proxy.service",
        "systemd/itsup-watch.service",
    ] {
        assert!(pkg.join(file).is_file(), "{file} missing from {name}");
    }
    let bin = pkg.join("itsup");
    let shown = run(Command::new(&bin).arg("--version"));
    assert_eq!(shown.trim(), format!("itsup {version}"));
    // Stripped: no symbol table left.
    let symbols = Command::new("nm").arg(&bin).output().expect("nm");
    assert!(
        String::from_utf8_lossy(&symbols.stderr).contains("no symbols"),
        "binary not stripped"
    );

    // bash: load the script and call its function the way bash's `complete -F` does (command,
    // current word, previous word) for `itsup ma` and `itsup completions `.
    let script = pkg.join("completions/itsup.bash");
    let complete = |line: &str| {
        let words = line.split(' ').collect::<Vec<_>>();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _itsup itsup '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        run(Command::new("bash").args(["-c", &program]))
    };
    let subcommands = complete("itsup ma");
    assert!(subcommands.lines().any(|l| l == "man"), "{subcommands}");
    let shells = complete("itsup completions ");
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.lines().any(|l| l == shell), "{shells}");
    }

    if has("zsh") {
        run(Command::new("zsh")
            .arg("-n")
            .arg(pkg.join("completions/_itsup")));
    }
    if has("fish") {
        // Load the script and ask fish itself for the candidates after `itsup `.
        let program = format!(
            "source {}; complete -C 'itsup '",
            pkg.join("completions/itsup.fish").display()
        );
        let listed = run(Command::new("fish").args(["--no-config", "-c", &program]));
        assert!(listed.lines().any(|l| l.starts_with("render")), "{listed}");
    }

    let page = run(Command::new("man")
        .arg("-l")
        .arg(pkg.join("man/itsup.1"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    assert!(page.contains("completions"), "{page}");
}
