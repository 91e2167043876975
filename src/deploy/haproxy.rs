//! HAProxy's runtime API over its UNIX sockets, reachable from the host because the config
//! folder (with `run/`) is bind-mounted as a directory: the stats/admin socket of the worker for
//! server state, drain and session counts, the master socket for hitless reloads.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The sockets of one HAProxy.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub admin: PathBuf,
    pub master: PathBuf,
}

/// One slot of a `server-template` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub addr: Option<Ipv4Addr>,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    pub op_state: u8,
    /// `srv_admin_state` bit field (1 forced maintenance, 8 forced drain, 0x20 no address yet).
    pub admin_state: u32,
}

impl Slot {
    pub fn forced_maint(&self) -> bool {
        self.admin_state & 0x01 != 0
    }
    pub fn up(&self) -> bool {
        self.op_state == 2 && self.admin_state & 0x2f == 0
    }
}

impl Runtime {
    /// The sockets under a config folder (`proxy/haproxy/`).
    pub fn in_dir(dir: &Path) -> Runtime {
        Runtime {
            admin: dir.join("run/admin.sock"),
            master: dir.join("run/master.sock"),
        }
    }

    /// Sends one command and reads the whole answer (the socket closes after it).
    async fn send(socket: &Path, command: &str) -> anyhow::Result<String> {
        let run = async {
            let mut s = UnixStream::connect(socket).await?;
            s.write_all(command.as_bytes()).await?;
            s.write_all(b"\n").await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            Ok::<_, std::io::Error>(out)
        };
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .map_err(|_| anyhow::anyhow!("HAProxy did not answer `{command}` in 5 s"))?
            .with_context(|| format!("HAProxy socket {}", socket.display()))
    }

    /// A worker command; HAProxy's error answers become errors.
    pub async fn command(&self, command: &str) -> anyhow::Result<String> {
        let out = Self::send(&self.admin, command).await?;
        let first = out.lines().next().unwrap_or("").to_ascii_lowercase();
        if first.contains("unknown") || first.contains("no such") || first.contains("require") {
            anyhow::bail!("HAProxy refused `{command}`: {}", out.trim());
        }
        Ok(out)
    }

    /// Whether the worker answers at all.
    pub async fn alive(&self) -> bool {
        Self::send(&self.admin, "show info").await.is_ok()
    }

    /// The worker's pid (changes on every reload).
    pub async fn worker_pid(&self) -> anyhow::Result<String> {
        let info = self.command("show info").await?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .map(|p| p.trim().to_string())
            .context("`show info` has no Pid")
    }

    /// The slots of a backend.
    pub async fn slots(&self, backend: &str) -> anyhow::Result<Vec<Slot>> {
        let out = self
            .command(&format!("show servers state {backend}"))
            .await?;
        Ok(parse_slots(&out, backend))
    }

    /// `set server <backend>/<slot> state ready|drain|maint`.
    pub async fn set_state(&self, backend: &str, slot: &str, state: &str) -> anyhow::Result<()> {
        let out = self
            .command(&format!("set server {backend}/{slot} state {state}"))
            .await?;
        if !out.trim().is_empty() {
            anyhow::bail!(
                "HAProxy: set server {backend}/{slot} state {state}: {}",
                out.trim()
            );
        }
        Ok(())
    }

    /// Current sessions (`scur`) of one server.
    pub async fn sessions(&self, backend: &str, slot: &str) -> anyhow::Result<u64> {
        let out = self.command(&format!("show stat {backend} 4 -1")).await?;
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header.iter().position(|h| *h == "scur").unwrap_or(4);
        out.lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&backend) && f.get(1) == Some(&slot))
            .and_then(|f| f.get(col).and_then(|v| v.parse().ok()))
            .with_context(|| format!("no stats for {backend}/{slot}"))
    }

    /// Hitless reload through the master socket: new workers take the listening sockets over
    /// (`expose-fd listeners`), old ones finish their connections. Waits until a new worker
    /// answers on the admin socket.
    pub async fn reload(&self, timeout: Duration) -> anyhow::Result<()> {
        let before = self.worker_pid().await.ok();
        reload_master(&self.master).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(pid) = self.worker_pid().await
                && Some(&pid) != before.as_ref()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let procs = Self::send(&self.master, "show proc")
                    .await
                    .unwrap_or_default();
                anyhow::bail!(
                    "HAProxy did not come back with a new worker within {} s after reload (is the new configuration valid?)\n{}",
                    timeout.as_secs(),
                    procs.trim()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn parse_slots(out: &str, backend: &str) -> Vec<Slot> {
    out.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 7 || f[1] != backend {
                return None;
            }
            Some(Slot {
                name: f[3].to_string(),
                addr: f[4].parse().ok(),
                op_state: f[5].parse().ok()?,
                admin_state: f[6].parse().ok()?,
            })
        })
        .collect()
}

/// Asks an HAProxy master (master-worker mode) to reload through its CLI socket: the one
/// master-socket client of the crate (apply's hand-overs and `itsup watch` both use it). The
/// master re-executes and closes the connection; HAProxy 2.7+ first answers `Success=1` or
/// `Success=0` (then the old workers keep serving), which is the success test; 2.6 answers
/// nothing, and the caller's own check (a new worker, `haproxy -c` beforehand) decides.
pub async fn reload_master(master: &Path) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(master).await.with_context(|| {
        format!(
            "connecting to the HAProxy master socket {}",
            master.display()
        )
    })?;
    stream
        .write_all(b"reload\n")
        .await
        .with_context(|| format!("HAProxy master socket {}", master.display()))?;
    // The connection ends with the re-exec, so a read error here is the reload happening.
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    if text.contains("Success=0") {
        anyhow::bail!("HAProxy master reported a failed reload: {}", text.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_state() {
        let out = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state x\n\
                   3 be 1 s1 172.18.0.2 2 0 1\n3 be 2 s2 - 0 33 1\n3 other 1 s1 10.0.0.1 2 0 1\n";
        let slots = parse_slots(out, "be");
        assert_eq!(slots.len(), 2);
        assert_eq!(slots[0].addr, Some(Ipv4Addr::new(172, 18, 0, 2)));
        assert!(slots[0].up());
        assert!(slots[1].forced_maint());
        assert_eq!(slots[1].addr, None);
    }
}
