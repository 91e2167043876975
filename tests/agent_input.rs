//! Hostile and broken input to `itsup agent`: every case must be answered or closed within a
//! bounded time, and the agent must keep serving afterwards.

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `bytes` (optionally half-closing) and returns everything the agent sent back before
/// closing, or what it sent within `within` if it kept the connection open.
async fn exchange(
    agent: std::net::SocketAddr,
    bytes: &[u8],
    half_close: bool,
    within: Duration,
) -> String {
    let mut stream = TcpStream::connect(agent).await.expect("connect");
    // The agent may close before reading everything (oversized lines): a failed write is fine.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_get_a_bad_request_reply() {
    let (backend, _reporter) = health_backend().await;
    let mut agent = Agent::start(&[]);
    let cases: &[(&str, &str)] = &[
        (
            "garbage\n",
            "down #bad request: expected <host> <port> <ssl|no-ssl> <authority>",
        ),
        ("\n", "down #bad request: empty request"),
        ("\r\n", "down #bad request: empty request"),
        (
            "127.0.0.1 0 no-ssl localhost\n",
            "down #bad request: invalid port 0",
        ),
        (
            "127.0.0.1 70000 no-ssl localhost\n",
            "down #bad request: invalid port 70000",
        ),
        (
            "127.0.0.1 80 tls localhost\n",
            "down #bad request: expected ssl or no-ssl, got tls",
        ),
        (
            "127.0.0.1 80 no-ssl localhost color=red\n",
            "down #bad request: unknown key color",
        ),
        (
            "127.0.0.1 80 no-ssl localhost timeout=0\n",
            "down #bad request: timeout must be 10..=60000 ms, got 0",
        ),
        ("\u{1b}[2J 80 no-ssl x\n", "down #bad request: invalid host"),
    ];
    for (input, want) in cases {
        assert_eq!(ask(agent.addr, input).await, *want, "input {input:?}");
    }
    let binary = exchange(
        agent.addr,
        &[0xff, 0x00, 0xfe, b'\n'],
        false,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(binary, "down #bad request: not UTF-8\n");

    assert_eq!(
        ask(
            agent.addr,
            &format!("127.0.0.1 {} no-ssl localhost\n", backend.addr.port())
        )
        .await,
        "up"
    );
    assert!(agent.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_partial_and_half_open() {
    let (backend, _reporter) = health_backend().await;
    let mut agent = Agent::start(&["--read-timeout-ms", "1000", "--idle-timeout-ms", "800"]);
    let good = format!("127.0.0.1 {} no-ssl localhost", backend.addr.port());

    // 10 KiB without a newline, and 10 KiB with one: refused, then closed.
    let big = vec![b'a'; 10 * 1024];
    let reply = exchange(agent.addr, &big, false, Duration::from_secs(3)).await;
    assert_eq!(reply, "down #bad request: line too long\n");
    let mut big_line = big.clone();
    big_line.push(b'\n');
    let reply = exchange(agent.addr, &big_line, false, Duration::from_secs(3)).await;
    assert_eq!(reply, "down #bad request: line too long\n");

    // No newline, connection left open: answered when the read deadline (1 s) runs out,
    // then closed.
    let started = Instant::now();
    let reply = exchange(agent.addr, good.as_bytes(), false, Duration::from_secs(5)).await;
    assert_eq!(reply, "up\n");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // No newline, write side closed: answered at EOF, without waiting for the deadline.
    let started = Instant::now();
    let reply = exchange(agent.addr, good.as_bytes(), true, Duration::from_secs(5)).await;
    assert_eq!(reply, "up\n");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // Connected but silent: closed after the idle timeout, nothing sent.
    let started = Instant::now();
    let reply = exchange(agent.addr, b"", false, Duration::from_secs(5)).await;
    assert_eq!(reply, "");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Half-closed without sending anything: closed at once.
    let reply = exchange(agent.addr, b"", true, Duration::from_secs(3)).await;
    assert_eq!(reply, "");

    // Several lines on one connection, pipelined: one reply each, in order.
    let three = format!("{good}\ngarbage\n{good} service=\n");
    let reply = exchange(agent.addr, three.as_bytes(), true, Duration::from_secs(3)).await;
    assert_eq!(
        reply,
        "up\ndown #bad request: expected <host> <port> <ssl|no-ssl> <authority>\nup\n"
    );
    assert!(agent.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections() {
    let (backend, _reporter) = health_backend().await;
    let mut agent = Agent::start(&["--idle-timeout-ms", "3000"]);
    let good = format!("127.0.0.1 {} no-ssl localhost\n", backend.addr.port());
    let dead = format!("127.0.0.1 {} no-ssl localhost\n", dead_port().port());

    let mut tasks = Vec::new();
    for i in 0..1000 {
        let addr = agent.addr;
        let input = match i % 4 {
            0 | 1 => good.clone(),
            2 => dead.clone(),
            // Half-open: never sends anything.
            _ => String::new(),
        };
        tasks.push(tokio::spawn(async move {
            let reply = exchange(addr, input.as_bytes(), false, Duration::from_secs(8)).await;
            (i % 4, reply)
        }));
    }
    let started = Instant::now();
    let mut up = 0;
    for task in tasks {
        let (kind, reply) = task.await.expect("join");
        match kind {
            0 | 1 => {
                assert_eq!(reply, "up\n");
                up += 1;
            }
            2 => assert_eq!(reply, "down #connect refused\n"),
            _ => assert_eq!(reply, ""),
        }
    }
    assert_eq!(up, 500);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(agent.is_running());
    // Still healthy afterwards, and the connection gauge went back down.
    assert_eq!(ask(agent.addr, &good).await, "up");
    let metrics = agent.metrics.expect("metrics bound");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(metrics).await;
        let active = metric(&text, "haproxy_connections_active");
        if active == Some(0.0) || Instant::now() > deadline {
            assert_eq!(active, Some(0.0), "{text}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
