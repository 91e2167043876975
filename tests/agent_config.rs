//! Start-up configuration of `itsup agent` through the real binary: precedence of flags,
//! environment and TOML file, and exit code 2 with a clear message on invalid values.

mod agent_support;

use std::process::Command;
use std::time::Duration;

use agent_support::Agent;

fn agent_cmd() -> Command {
    let mut cmd = Command::new(agent_support::itsup_bin());
    cmd.arg("agent")
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
    for (key, _) in std::env::vars() {
        if key.starts_with("ITSUP_AGENT_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn refused(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run itsup agent");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    stderr
}

#[test]
fn invalid_values_exit_2_with_a_clear_message() {
    let stderr = refused(agent_cmd().args(["--timeout-ms", "5"]));
    assert!(
        stderr.contains("timeout_ms (flag) = 5: must be between 10 and 60000"),
        "{stderr}"
    );

    let stderr = refused(agent_cmd().env("ITSUP_AGENT_TIMEOUT_MS", "fast"));
    assert!(
        stderr.contains("ITSUP_AGENT_TIMEOUT_MS=\"fast\""),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\ntimeout_msec = 100\n").expect("write");
    let stderr = refused(agent_cmd().arg("--config").arg(&file));
    assert!(stderr.contains("unknown field `timeout_msec`"), "{stderr}");

    let stderr = refused(agent_cmd().args(["--config", "/nonexistent/agent.toml"]));
    assert!(stderr.contains("cannot read config file"), "{stderr}");

    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "no certificate here").expect("write");
    let stderr = refused(agent_cmd().arg("--ca-file").arg(&ca));
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");

    // clap's own refusals use the same exit code.
    let out = agent_cmd()
        .args(["--listen", "not-an-address"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_is_logged_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "timeout_ms = 900\nread_timeout_ms = 300\nidle_timeout_ms = 700\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let agent = Agent::start_with_env(
        &["--config", path, "--timeout-ms", "1000"],
        &[
            ("ITSUP_AGENT_TIMEOUT_MS", "1100"),
            ("ITSUP_AGENT_READ_TIMEOUT_MS", "400"),
        ],
    );
    let logs = agent.logs_text();
    let line = logs
        .lines()
        .find(|l| l.contains("effective configuration"))
        .unwrap_or_else(|| panic!("no effective configuration in:\n{logs}"));
    let record: serde_json::Value = serde_json::from_str(line).expect("json log");
    let fields = &record["fields"];
    assert_eq!(fields["timeout_ms"], 1000, "flag beats env: {line}");
    assert_eq!(fields["read_timeout_ms"], 400, "env beats file: {line}");
    assert_eq!(fields["idle_timeout_ms"], 700, "file beats default: {line}");
    let sources = fields["sources"].as_str().unwrap_or_default();
    for want in [
        "timeout_ms=flag",
        "read_timeout_ms=env",
        "idle_timeout_ms=file",
        "channel_idle_secs=default",
    ] {
        assert!(sources.contains(want), "{sources}");
    }
    // It is running with those values: a silent connection is closed after 700 ms.
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(agent.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut stream, &mut buf),
    )
    .await
    .expect("closed within 5 s");
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
}
