//! `itsup agent` against real tonic gRPC servers: every verdict the agent can give, TLS,
//! deadlines, drain file, metrics and graceful shutdown, driving the real binary.

mod agent_support;

use std::time::{Duration, Instant};

use agent_support::*;

fn line(port: u16, extra: &str) -> String {
    format!("127.0.0.1 {port} no-ssl localhost{extra}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_not_serving_and_flipping() {
    let (backend, reporter) = health_backend().await;
    let agent = Agent::start(&[]);
    let req = line(backend.addr.port(), "");

    assert_eq!(ask(agent.addr, &req).await, "up");
    set_status(&reporter, "", false).await;
    assert_eq!(ask(agent.addr, &req).await, "down #NOT_SERVING");
    set_status(&reporter, "", true).await;
    assert_eq!(ask(agent.addr, &req).await, "up");
    for round in 0..5 {
        let serving = round % 2 == 1;
        set_status(&reporter, "", serving).await;
        let want = if serving { "up" } else { "down #NOT_SERVING" };
        assert_eq!(ask(agent.addr, &req).await, want, "round {round}");
    }
    let logs = agent.logs_text();
    assert!(
        logs.contains("backend changed state"),
        "transitions are logged:\n{logs}"
    );
    assert!(
        logs.contains("trace_id"),
        "checks carry a trace id:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_service_status() {
    let (backend, reporter) = health_backend().await;
    set_status(&reporter, "pkg.Orders", true).await;
    set_status(&reporter, "pkg.Billing", false).await;
    let agent = Agent::start(&[]);
    let port = backend.addr.port();

    assert_eq!(
        ask(agent.addr, &line(port, " service=pkg.Orders")).await,
        "up"
    );
    assert_eq!(
        ask(agent.addr, &line(port, " service=pkg.Billing")).await,
        "down #NOT_SERVING"
    );
    assert_eq!(
        ask(agent.addr, &line(port, " service=pkg.Missing")).await,
        "down #SERVICE_UNKNOWN"
    );
    set_status(&reporter, "pkg.Billing", true).await;
    assert_eq!(
        ask(agent.addr, &line(port, " service=pkg.Billing timeout=500")).await,
        "up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_dead_and_killed_backends() {
    let agent = Agent::start(&[]);

    let bare = unimplemented_backend().await;
    assert_eq!(
        ask(agent.addr, &line(bare.addr.port(), "")).await,
        "down #UNIMPLEMENTED"
    );

    let dead = dead_port().port();
    assert_eq!(
        ask(agent.addr, &line(dead, "")).await,
        "down #connect refused"
    );

    // A cached channel whose server goes away must notice, not keep answering `up`.
    let (backend, _reporter) = health_backend().await;
    let req = line(backend.addr.port(), "");
    assert_eq!(ask(agent.addr, &req).await, "up");
    backend.stop().await;
    let reply = ask_until(
        agent.addr,
        &req,
        "down #connect refused",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(reply, "down #connect refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_hits_the_deadline() {
    let slow = slow_backend(Duration::from_secs(3)).await;
    let agent = Agent::start(&["--timeout-ms", "400"]);
    let port = slow.addr.port();

    let started = Instant::now();
    assert_eq!(ask(agent.addr, &line(port, "")).await, "down #timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1200),
        "configured deadline 400 ms, took {took:?}"
    );

    let started = Instant::now();
    assert_eq!(
        ask(agent.addr, &line(port, " timeout=150")).await,
        "down #timeout"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "per-request deadline 150 ms, took {took:?}"
    );

    // A listener that never answers the HTTP/2 handshake: the deadline covers it too.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let started = Instant::now();
    assert_eq!(
        ask(agent.addr, &line(silent_port, " timeout=200")).await,
        "down #timeout"
    );
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_generated_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write ca");
    let (backend, reporter) = tls_health_backend(&pki).await;
    let port = backend.addr.port();
    let tls_line = format!("127.0.0.1 {port} ssl localhost\n");

    let trusting = Agent::start(&["--ca-file", ca.to_str().expect("utf-8 path")]);
    assert_eq!(ask(trusting.addr, &tls_line).await, "up");
    set_status(&reporter, "", false).await;
    assert_eq!(ask(trusting.addr, &tls_line).await, "down #NOT_SERVING");
    // The certificate names localhost only.
    assert_eq!(
        ask(
            trusting.addr,
            &format!("127.0.0.1 {port} ssl other.example\n")
        )
        .await,
        "down #TLS error"
    );
    // Plaintext to a TLS port is a failed RPC, never `up`.
    let reply = ask(trusting.addr, &line(port, " timeout=500")).await;
    assert!(reply.starts_with("down #"), "{reply}");

    // System roots don't know the generated CA.
    let system = Agent::start(&[]);
    assert_eq!(ask(system.addr, &tls_line).await, "down #TLS error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_file_drives_drain_and_ready() {
    let (backend, _reporter) = health_backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let drain = dir.path().join("drain.json");
    let agent = Agent::start(&["--drain-file", drain.to_str().expect("utf-8 path")]);
    let port = backend.addr.port();
    let req = line(port, "");

    assert_eq!(ask(agent.addr, &req).await, "up", "missing file: no drain");

    let write = |body: String| {
        let tmp = dir.path().join("drain.json.tmp");
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, &drain).expect("rename");
    };
    write(format!(
        r#"{{"draining": ["127.0.0.1:{port}", "10.9.9.9:80"]}}"#
    ));
    assert_eq!(
        ask_until(agent.addr, &req, "up drain", Duration::from_secs(3)).await,
        "up drain"
    );
    write(r#"{"draining": []}"#.to_owned());
    assert_eq!(
        ask_until(agent.addr, &req, "up ready", Duration::from_secs(3)).await,
        "up ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_checks() {
    let (backend, reporter) = health_backend().await;
    let agent = Agent::start(&[]);
    let port = backend.addr.port();
    for _ in 0..3 {
        assert_eq!(ask(agent.addr, &line(port, "")).await, "up");
    }
    set_status(&reporter, "", false).await;
    assert_eq!(ask(agent.addr, &line(port, "")).await, "down #NOT_SERVING");
    assert_eq!(
        ask(agent.addr, &line(dead_port().port(), "")).await,
        "down #connect refused"
    );
    let _ = ask(agent.addr, "garbage\n").await;

    let text = scrape(agent.metrics.expect("metrics bound")).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(
        metric(&text, "check_requests_total{result=\"up\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "check_requests_total{result=\"down\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "check_errors_total{type=\"connect_refused\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "check_errors_total{type=\"bad_request\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&text, "check_duration_seconds_count"), Some(6.0));
    assert_eq!(
        metric(&text, "check_duration_seconds_bucket{le=\"2.0\"}"),
        Some(6.0)
    );
    assert_eq!(metric(&text, "grpc_channels_active"), Some(2.0));
    assert!(metric(&text, "haproxy_connections_active").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_port_taken_does_not_stop_the_agent() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    let (backend, _reporter) = health_backend().await;
    let mut agent = Agent::start(&["--metrics-listen", &taken_addr]);
    assert_eq!(agent.metrics, None);
    assert_eq!(ask(agent.addr, &line(backend.addr.port(), "")).await, "up");
    assert!(agent.is_running());
    assert!(agent.logs_text().contains("cannot bind metrics port"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_checks_in_flight() {
    let slow = slow_backend(Duration::from_millis(600)).await;
    let mut agent = Agent::start(&[]);
    let addr = agent.addr;
    let port = slow.addr.port();
    let metrics = agent.metrics.expect("metrics bound");
    let in_flight = tokio::spawn(async move { ask(addr, &line(port, "")).await });
    // Signal only once the agent holds the connection, so the check is really in flight.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&scrape(metrics).await, "haproxy_connections_active") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the check never reached the agent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The backend holds the check for 600 ms; this leaves the agent time to read the line.
    tokio::time::sleep(Duration::from_millis(100)).await;
    agent.terminate();
    assert_eq!(
        in_flight.await.expect("join"),
        "up",
        "the check in flight got its answer"
    );
    let code = tokio::task::spawn_blocking(move || {
        let code = agent.wait_exit(Duration::from_secs(5));
        (code, agent)
    })
    .await
    .expect("join");
    assert_eq!(code.0, Some(0), "clean exit:\n{}", code.1.logs_text());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_channels_are_evicted() {
    let (backend, _reporter) = health_backend().await;
    let agent = Agent::start(&["--channel-idle-secs", "1"]);
    let metrics = agent.metrics.expect("metrics bound");
    let req = line(backend.addr.port(), "");
    assert_eq!(ask(agent.addr, &req).await, "up");
    assert_eq!(
        metric(&scrape(metrics).await, "grpc_channels_active"),
        Some(1.0)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let active = metric(&scrape(metrics).await, "grpc_channels_active");
        if active == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channel still cached: {active:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new check builds a fresh channel.
    assert_eq!(ask(agent.addr, &req).await, "up");
    assert_eq!(
        metric(&scrape(metrics).await, "grpc_channels_active"),
        Some(1.0)
    );
}
