//! A tiny HTTP app used only by the deploy tests and the rollout benchmark (built into the local
//! image `itsup-test/app` by `.ci/images/app.sh`; no registry is reachable from CI).
//!
//! `testapp` serves `GET /` with `version=<APP_VERSION>` and `GET /health` with 200, or 503 when
//! `APP_BROKEN` is set or `/tmp/drain` exists (the Traefik drain contract). `testapp check`
//! is the container healthcheck: it asks `/health` on the local port and exits 0 only on 200.
//! It speaks HTTP/1.1 keep-alive because HAProxy reuses server connections, and it exits on
//! SIGTERM after in-flight requests are answered, since as PID 1 it would otherwise ignore it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn port() -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("check") {
        return match check().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testapp: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn check() -> std::io::Result<()> {
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port())),
    )
    .await??;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut reply)).await??;
    if reply.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&reply)
                .lines()
                .next()
                .unwrap_or("no reply")
                .to_string(),
        ))
    }
}

async fn serve() -> std::io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port())).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let version = std::env::var("APP_VERSION").unwrap_or_else(|_| "unknown".into());
    let broken = std::env::var_os("APP_BROKEN").is_some();
    let tracker = tokio_util_like::Tracker::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let version = version.clone();
                let guard = tracker.enter();
                tokio::spawn(async move {
                    let _guard = guard;
                    let _ = connection(stream, &version, broken).await;
                });
            }
            _ = term.recv() => break,
        }
    }
    // Idle keep-alive connections never finish on their own: give in-flight requests a moment.
    tracker.wait(Duration::from_secs(2)).await;
    Ok(())
}

async fn connection(mut stream: TcpStream, version: &str, broken: bool) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 16 * 1024 {
                return Ok(());
            }
            let mut chunk = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::other("idle"))??;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let close = head.to_ascii_lowercase().contains("connection: close");
        let (status, body) = if path == "/health" {
            if broken || std::path::Path::new("/tmp/drain").exists() {
                ("503 Service Unavailable", "unhealthy\n".to_string())
            } else {
                ("200 OK", "ok\n".to_string())
            }
        } else {
            ("200 OK", format!("version={version}\n"))
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(reply.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

/// Counts live connections so shutdown can wait for them (bounded).
mod tokio_util_like {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Default, Clone)]
    pub struct Tracker(Arc<AtomicUsize>);

    pub struct Guard(Arc<AtomicUsize>);

    impl Tracker {
        pub fn enter(&self) -> Guard {
            self.0.fetch_add(1, Ordering::SeqCst);
            Guard(self.0.clone())
        }

        pub async fn wait(&self, limit: Duration) {
            let deadline = tokio::time::Instant::now() + limit;
            while self.0.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
