//! A tiny HTTP app used only by the deploy tests and the rollout benchmark (built into the local
//! images `itsup-test/app` by `.ci/images/app.sh`; no registry is reachable from CI).
//!
//! `testapp` serves `GET /` with `version=<APP_VERSION>` (else `$SITE_NAME`, the bundled
//! example's web variable) and `GET /health` with 200, or 503 when `/tmp/drain` exists (the
//! Traefik drain contract); with `APP_BROKEN` set every path answers 503, as a broken release
//! would. It listens on `$PORT`, else on every port of `$PORTS` (comma-separated), else 8080,
//! and with `$GRPC_PORT` also serves the gRPC health service (h2c) there. `testapp check` is the
//! container healthcheck: it asks `/health` on the (first) local port and exits 0 only on 200;
//! `testapp resolve NAME` prints what the container's resolver answers for NAME (DNS tests).
//! A connection that starts with a PROXY protocol v2 header has it consumed, and every reply on
//! it carries the client address the header named as `X-Proxy-Source: ip:port` (`local` for a
//! LOCAL header), so tests can see what a proxy sent.
//! It speaks HTTP/1.1 keep-alive because HAProxy reuses server connections, and it exits on
//! SIGTERM after in-flight requests are answered, since as PID 1 it would otherwise ignore it.
//!
//! The same binary stands in for the bundled example's images (`.ci/images/app.sh` installs it
//! under several names; it acts by the name it was called by): `/api` (`/api healthcheck`
//! checks, anything else serves), `wget -q -O- URL` (exit 0 on a 2xx), `pg_isready` (the
//! Postgres port accepts a connection) and a minimal `sh -c 'WORDS'` that runs one of these, for
//! `CMD-SHELL` healthchecks in an image without a shell.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The ports to listen on: `$PORT`, else `$PORTS`, else 8080.
fn ports() -> Vec<u16> {
    if let Some(p) = std::env::var("PORT").ok().and_then(|p| p.parse().ok()) {
        return vec![p];
    }
    let list: Vec<u16> = std::env::var("PORTS")
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    if list.is_empty() { vec![8080] } else { list }
}

fn port() -> u16 {
    ports().first().copied().unwrap_or(8080)
}

fn exit(r: std::io::Result<()>, what: &str) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    applet(&args).await
}

/// Runs what `args[0]` names (its file name), with `args[1..]` as its arguments.
async fn applet(args: &[String]) -> std::process::ExitCode {
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let rest = args.get(1..).unwrap_or_default();
    match name.as_str() {
        "sh" => {
            // `sh -c 'CMD ARGS'`: one simple command, words split on whitespace.
            let words: Vec<String> = match rest {
                [flag, cmd, ..] if flag == "-c" => {
                    cmd.split_whitespace().map(str::to_string).collect()
                }
                _ => Vec::new(),
            };
            if words.is_empty() {
                eprintln!("sh: only `sh -c 'COMMAND ARGS'` is supported");
                return std::process::ExitCode::from(2);
            }
            Box::pin(applet(&words)).await
        }
        "wget" => exit(wget(rest).await, "wget"),
        "pg_isready" => exit(pg_isready().await, "pg_isready"),
        "api" if rest.first().map(String::as_str) == Some("healthcheck") => {
            exit(check().await, "unhealthy")
        }
        _ if rest.first().map(String::as_str) == Some("check") => exit(check().await, "unhealthy"),
        _ if rest.first().map(String::as_str) == Some("resolve") => {
            exit(resolve(rest.get(1..).unwrap_or_default()).await, "resolve")
        }
        _ => exit(serve().await, "testapp"),
    }
}

/// `testapp resolve NAME`: the addresses the container's resolver (glibc, through Docker's
/// embedded DNS and the `dns:` servers behind it) gives for NAME, one a line; exit 0 on any.
async fn resolve(args: &[String]) -> std::io::Result<()> {
    let name = args
        .first()
        .ok_or_else(|| std::io::Error::other("usage: testapp resolve NAME"))?;
    for addr in tokio::net::lookup_host((name.as_str(), 0)).await? {
        println!("{}", addr.ip());
    }
    Ok(())
}

/// `wget [-q] [-O FILE] URL`: GET an `http://host[:port]/path` URL, body to stdout, exit 0 on 2xx.
async fn wget(args: &[String]) -> std::io::Result<()> {
    let url = args
        .iter()
        .rev()
        .find_map(|a| a.strip_prefix("http://"))
        .ok_or_else(|| std::io::Error::other("no http:// URL"))?;
    let (authority, path) = match url.find('/') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let reply = request(&addr, path).await?;
    let ok = reply
        .split(|b| *b == b' ')
        .nth(1)
        .is_some_and(|code| code.first() == Some(&b'2'));
    if ok {
        Ok(())
    } else {
        Err(std::io::Error::other(first_line(&reply)))
    }
}

/// `pg_isready`: the Postgres port (`$PGPORT`, else 5432) accepts a connection.
async fn pg_isready() -> std::io::Result<()> {
    let port: u16 = std::env::var("PGPORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await??;
    Ok(())
}

fn first_line(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply)
        .lines()
        .next()
        .unwrap_or("no reply")
        .to_string()
}

/// One `GET path` with `Connection: close`; the whole reply.
async fn request(addr: &str, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut reply)).await??;
    Ok(reply)
}

async fn check() -> std::io::Result<()> {
    let reply = request(&format!("127.0.0.1:{}", port()), "/health").await?;
    if reply.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(first_line(&reply)))
    }
}

async fn serve() -> std::io::Result<()> {
    let mut listeners = Vec::new();
    for port in ports() {
        listeners.push(TcpListener::bind(("0.0.0.0", port)).await?);
    }
    if let Some(port) = std::env::var("GRPC_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    {
        let grpc = TcpListener::bind(("0.0.0.0", port)).await?;
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("testapp: grpc: {e}");
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let version = std::env::var("APP_VERSION")
        .or_else(|_| std::env::var("SITE_NAME"))
        .unwrap_or_else(|_| "unknown".into());
    let broken = std::env::var_os("APP_BROKEN").is_some();
    let tracker = tokio_util_like::Tracker::default();
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<TcpStream>(64);
    for listener in listeners {
        let tx = conn_tx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if tx.send(stream).await.is_err() {
                    return;
                }
            }
        });
    }
    loop {
        tokio::select! {
            accepted = conn_rx.recv() => {
                let Some(stream) = accepted else { break };
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

/// The PROXY protocol v2 signature.
const PROXY_V2: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Consumes a PROXY v2 header at the start of the connection; the client address it names.
async fn proxy_v2_source(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut sig = [0u8; 12];
    if stream.peek(&mut sig).await? < 12 || &sig != PROXY_V2 {
        return Ok(None);
    }
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[14], head[15]]))];
    stream.read_exact(&mut body).await?;
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    Ok(Some(match head[13] >> 4 {
        1 if body.len() >= 12 => format!(
            "{}.{}.{}.{}:{}",
            body[0],
            body[1],
            body[2],
            body[3],
            port(8)
        ),
        2 if body.len() >= 36 => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&body[..16]);
            format!("[{}]:{}", std::net::Ipv6Addr::from(ip), port(32))
        }
        _ => "local".to_string(),
    }))
}

async fn connection(mut stream: TcpStream, version: &str, broken: bool) -> std::io::Result<()> {
    let proxy_source = proxy_v2_source(&mut stream)
        .await?
        .map(|s| format!("X-Proxy-Source: {s}\r\n"))
        .unwrap_or_default();
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
        let (status, body) = if broken {
            ("503 Service Unavailable", "broken\n".to_string())
        } else if path == "/health" {
            if std::path::Path::new("/tmp/drain").exists() {
                ("503 Service Unavailable", "unhealthy\n".to_string())
            } else {
                ("200 OK", "ok\n".to_string())
            }
        } else {
            ("200 OK", format!("version={version}\n"))
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{proxy_source}{}\r\n{body}",
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
