//! The agent-check listener: accepts HAProxy's connections, reads request lines under size and
//! time limits, answers each with one reply line, and stops accepting on shutdown while letting
//! checks already in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

use super::channels::ChannelCache;
use super::check::{self, Health};
use super::config::Config;
use super::drain::Drain;
use super::metrics::{ErrorLabel, Metrics, ResultLabel};
use super::protocol::{self, MAX_LINE, Reply, State};

/// Everything a connection needs, shared by all of them.
pub struct Context {
    pub config: Config,
    pub cache: ChannelCache,
    pub drain: Drain,
    pub metrics: Arc<Metrics>,
    trace_seq: AtomicU64,
    trace_salt: u64,
}

impl Context {
    pub fn new(config: Config, cache: ChannelCache, drain: Drain, metrics: Arc<Metrics>) -> Self {
        Context {
            config,
            cache,
            drain,
            metrics,
            trace_seq: AtomicU64::new(0),
            trace_salt: rand::random(),
        }
    }

    /// A per-check id unique within the process and unlikely to repeat across restarts.
    fn trace_id(&self) -> String {
        let seq = self.trace_seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016x}",
            self.trace_salt ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )
    }
}

/// What reading the next request line produced.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A `\n`-terminated line (terminator removed).
    Full(Vec<u8>),
    /// Bytes without a newline, cut short by EOF or the read deadline; answered, then closed.
    Partial(Vec<u8>),
    TooLong,
    Idle,
    Eof,
}

/// Buffered line reader that never holds more than one line's worth of bytes.
struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(256),
        }
    }

    async fn next(&mut self, idle: Duration, partial: Duration) -> std::io::Result<Line> {
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        let idle_deadline = tokio::time::Instant::now() + idle;
        let mut chunk = [0u8; 2048];
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                if pos > MAX_LINE {
                    return Ok(Line::TooLong);
                }
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                return Ok(Line::Full(line));
            }
            if self.buf.len() > MAX_LINE {
                return Ok(Line::TooLong);
            }
            let deadline = match started {
                Some(at) => tokio::time::Instant::from_std(at + partial),
                None => idle_deadline,
            };
            match tokio::time::timeout_at(deadline, self.inner.read(&mut chunk)).await {
                Err(_elapsed) if self.buf.is_empty() => return Ok(Line::Idle),
                Err(_elapsed) => return Ok(Line::Partial(std::mem::take(&mut self.buf))),
                Ok(Ok(0)) if self.buf.is_empty() => return Ok(Line::Eof),
                Ok(Ok(0)) => return Ok(Line::Partial(std::mem::take(&mut self.buf))),
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    started.get_or_insert_with(Instant::now);
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

/// Counts an open connection for as long as it lives.
struct ConnectionGauge(Arc<Metrics>);

impl ConnectionGauge {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connections.inc();
        ConnectionGauge(metrics)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// Answers one request line.
async fn answer(ctx: &Context, raw: &[u8]) -> Reply {
    let started = Instant::now();
    let reply = match protocol::parse_request(raw) {
        Err(e) => {
            tracing::debug!(error = %e, "bad request");
            ctx.metrics
                .errors
                .get_or_create(&ErrorLabel {
                    r#type: "bad_request",
                })
                .inc();
            Reply::down(format!("bad request: {e}"))
        }
        Ok(req) => {
            let deadline = req.timeout.unwrap_or(ctx.config.timeout);
            let admin = ctx.drain.admin_for(&req.target);
            let span = tracing::debug_span!(
                "target",
                host = %req.target.host,
                port = req.target.port,
                tls = req.target.tls,
                authority = %req.target.authority,
                service = %req.service,
            );
            let outcome = check::check(&ctx.cache, &req, deadline)
                .instrument(span.clone())
                .await;
            let _entered = span.enter();
            let reply = match &outcome {
                Ok(Health::Serving) => Reply::up(),
                Ok(health) => Reply::down(health.reason()),
                Err(e) => {
                    ctx.metrics
                        .errors
                        .get_or_create(&ErrorLabel { r#type: e.kind() })
                        .inc();
                    Reply::down(e.reason())
                }
            }
            .with_admin(admin);
            let up = reply.state == State::Up;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            match (&outcome, ctx.cache.record(&req.target, up)) {
                (_, Some(before)) if before != up => {
                    tracing::info!(reply = %reply.to_string().trim_end(), elapsed_ms, detail = ?outcome, "backend changed state");
                }
                (_, None) => {
                    tracing::info!(reply = %reply.to_string().trim_end(), elapsed_ms, detail = ?outcome, "first check of backend");
                }
                _ => {
                    tracing::debug!(reply = %reply.to_string().trim_end(), elapsed_ms, detail = ?outcome, "checked");
                }
            }
            reply
        }
    };
    ctx.metrics
        .requests
        .get_or_create(&ResultLabel {
            result: match reply.state {
                State::Up => "up",
                State::Down => "down",
            },
        })
        .inc();
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    reply
}

async fn write_reply(stream: &mut TcpStream, reply: &Reply) -> bool {
    let line = reply.to_string();
    // A peer that doesn't read its reply must not pin the connection.
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await,
        Ok(Ok(()))
    )
}

async fn handle(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _gauge = ConnectionGauge::new(ctx.metrics.clone());
    // Best effort: an error here only costs latency.
    let _ = stream.set_nodelay(true);
    let mut reader = LineReader::new(stream);
    loop {
        let line = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop), if reader.buf.is_empty() => break,
            line = reader.next(ctx.config.idle_timeout, ctx.config.read_timeout) => line,
        };
        let (raw, last) = match line {
            Ok(Line::Full(raw)) => (raw, false),
            Ok(Line::Partial(raw)) => (raw, true),
            Ok(Line::TooLong) => {
                ctx.metrics
                    .errors
                    .get_or_create(&ErrorLabel {
                        r#type: "bad_request",
                    })
                    .inc();
                ctx.metrics
                    .requests
                    .get_or_create(&ResultLabel { result: "down" })
                    .inc();
                tracing::debug!(peer = %peer, "request line too long");
                let reply =
                    Reply::down(format!("bad request: {}", protocol::RequestError::TooLong));
                write_reply(&mut reader.inner, &reply).await;
                break;
            }
            Ok(Line::Idle) | Ok(Line::Eof) => break,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "read failed");
                break;
            }
        };
        let span = tracing::info_span!("check", trace_id = %ctx.trace_id(), peer = %peer);
        let reply = answer(&ctx, &raw).instrument(span).await;
        if !write_reply(&mut reader.inner, &reply).await || last || *shutdown.borrow() {
            break;
        }
    }
    // Flushes nothing (replies are written whole) but tells the peer we are done.
    let _ = reader.inner.shutdown().await;
}

/// Accepts connections until `shutdown` turns true, then waits (up to `grace`) for the
/// connections still answering a check.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let limit = Arc::new(Semaphore::new(ctx.config.max_connections));
    // Each connection task holds a sender; when all are dropped, `recv` returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on a full fd table.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, max = ctx.config.max_connections, "too many connections; closing");
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            handle(ctx, stream, peer, shutdown).await;
            drop(permit);
            drop(alive);
        });
    }
    drop(listener);
    drop(alive_tx);
    let open = ctx.config.max_connections - limit.available_permits();
    tracing::info!(
        open_connections = open,
        "stopped accepting; finishing checks in flight"
    );
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!("grace period over; dropping connections still open");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<Line> {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(input).await.expect("write");
        drop(client);
        let mut reader = LineReader::new(server);
        let mut out = Vec::new();
        for _ in 0..10 {
            let line = reader
                .next(Duration::from_millis(200), Duration::from_millis(50))
                .await
                .expect("read");
            let end = matches!(
                line,
                Line::Eof | Line::Idle | Line::Partial(_) | Line::TooLong
            );
            out.push(line);
            if end {
                break;
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_pipelined_lines() {
        assert_eq!(
            lines(b"a 1 ssl x\nb 2 no-ssl y\n").await,
            vec![
                Line::Full(b"a 1 ssl x".to_vec()),
                Line::Full(b"b 2 no-ssl y".to_vec()),
                Line::Eof
            ]
        );
    }

    #[tokio::test]
    async fn partial_and_too_long() {
        assert_eq!(
            lines(b"no newline").await,
            vec![Line::Partial(b"no newline".to_vec())]
        );
        assert_eq!(lines(&[b'x'; 3000]).await, vec![Line::TooLong]);
        let mut long = vec![b'x'; MAX_LINE + 1];
        long.push(b'\n');
        assert_eq!(lines(&long).await, vec![Line::TooLong]);
        let mut max = vec![b'x'; MAX_LINE];
        max.push(b'\n');
        assert_eq!(
            lines(&max).await,
            vec![Line::Full(vec![b'x'; MAX_LINE]), Line::Eof]
        );
    }

    #[tokio::test]
    async fn partial_by_deadline_while_open() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"half a line").await.expect("write");
        let mut reader = LineReader::new(server);
        let started = Instant::now();
        let line = reader
            .next(Duration::from_secs(5), Duration::from_millis(50))
            .await
            .expect("read");
        assert_eq!(line, Line::Partial(b"half a line".to_vec()));
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }
}
