//! Waiting for a new container to be ready: Docker health when the service has a healthcheck,
//! otherwise the service port accepting connections on the container's address. Always bounded.

use std::net::Ipv4Addr;
use std::time::Duration;

use bollard::Docker;

use super::docker::{self, Health};

/// What readiness can be judged by, beyond Docker's own health.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub addr: Option<Ipv4Addr>,
    pub port: Option<u16>,
}

/// Waits until the container is healthy (or accepts connections); fails early when it turns
/// unhealthy or exits, and after `timeout` otherwise. Returns how readiness was judged.
pub async fn wait_ready(
    docker: &Docker,
    id: &str,
    probe: Probe,
    timeout: Duration,
    mut tick: impl FnMut(&str),
) -> anyhow::Result<&'static str> {
    let deadline = tokio::time::Instant::now() + timeout;
    let started = tokio::time::Instant::now();
    loop {
        match docker::health(docker, id).await? {
            Health::Healthy => return Ok("healthy"),
            Health::Unhealthy(why) => anyhow::bail!("unhealthy: {}", one_line(&why)),
            Health::Down(why) => anyhow::bail!("{why}"),
            Health::Starting => tick("waiting for health"),
            Health::NoCheck => match (probe.addr, probe.port) {
                (Some(addr), Some(port)) => {
                    tick("waiting for the port");
                    let connect = tokio::net::TcpStream::connect((addr, port));
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(Duration::from_millis(500), connect).await
                    {
                        return Ok("port open");
                    }
                }
                // Nothing to judge by: a container that stays up for a moment is as good as
                // it gets, and the plan says the service has no healthcheck.
                _ => {
                    tick("running (no healthcheck, no port)");
                    if started.elapsed() >= Duration::from_secs(2) {
                        return Ok("running");
                    }
                }
            },
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("not ready after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn one_line(s: &str) -> String {
    let line = s.lines().last().unwrap_or("").trim();
    if line.is_empty() {
        "healthcheck failed".into()
    } else {
        line.to_string()
    }
}
