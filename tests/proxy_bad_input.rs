//! `itsup proxy` under hostile or broken input: malformed requests, huge headers, slowloris,
//! request smuggling probes and invalid config files. Each gets the right status or a clear
//! error, and the proxy keeps serving.

mod proxy_support;

use std::process::Command;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use proxy_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxy_for(extra: &str) -> (Upstream, Proxy) {
    let a = Upstream::start("a").await;
    let config = format!(
        "{HEAD}{extra}routes: [{{cluster: c}}]\nclusters:\n  c: {{servers: [{{address: '{}'}}]}}\n",
        a.addr
    );
    let proxy = Proxy::start(&config);
    (a, proxy)
}

async fn still_serving(proxy: &Proxy) {
    let (s, _, body) = get(proxy.addr, "ok.test", "/").await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "a"),
        "proxy must keep serving"
    );
}

#[test]
fn malformed_requests_get_400() {
    mt().block_on(async {
        let (a, proxy) = proxy_for("").await;
        for probe in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
            b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let answer = raw(proxy.addr, probe, Duration::from_secs(3)).await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "{probe:?} got {answer:?}"
            );
        }
        assert_eq!(a.count(), 0, "nothing malformed reached the upstream");
        still_serving(&proxy).await;
    });
}

#[test]
fn one_mebibyte_of_headers_gets_431() {
    mt().block_on(async {
        let (a, proxy) = proxy_for("").await;
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        req.extend_from_slice(b"\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        // The proxy may hang up before reading everything; the answer is what matters.
        let _ = stream.write_all(&req).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out)).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(answer.starts_with("HTTP/1.1 431"), "got {answer:?}");
        assert_eq!(a.count(), 0);
        still_serving(&proxy).await;
    });
}

#[test]
fn slowloris_is_cut_off_while_others_are_served() {
    mt().block_on(async {
        let (_a, proxy) = proxy_for("timeouts: {request_header_ms: 800}\n").await;
        let addr = proxy.addr;
        let mut slow = Vec::new();
        for _ in 0..20 {
            slow.push(tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
                // One header line every 150 ms, forever (bounded by the 10 s guard).
                while started.elapsed() < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    if stream.write_all(b"X-Drip: 1\r\n").await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf))
                        .await
                    {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                started.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        still_serving(&proxy).await;
        for s in slow {
            let lasted = s.await.expect("join");
            assert!(
                lasted < Duration::from_secs(3),
                "slow client kept for {lasted:?}"
            );
        }
        still_serving(&proxy).await;
    });
}

#[test]
fn smuggling_probes_are_refused_or_normalised() {
    mt().block_on(async {
        let (a, proxy) = proxy_for("").await;
        // Conflicting Content-Length values: 400.
        let answer = raw(
            proxy.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            Duration::from_secs(3),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "duplicate CL: {answer:?}");
        // chunked not last: 400.
        let answer = raw(
            proxy.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "bad TE: {answer:?}");
        assert_eq!(a.count(), 0);

        // CL + TE with a request hidden behind the chunked terminator: Transfer-Encoding
        // wins, the upstream gets one re-framed request, and the client connection is closed
        // after the answer so the hidden bytes are never read as a request.
        let answer = raw(
            proxy.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "one answer only: {answer:?}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
        let seen = a.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen.iter().all(|s| s.path != "/smuggled"));
        assert!(seen[0].body.is_empty());
        still_serving(&proxy).await;
    });
}

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.yml");
    std::fs::write(&path, config).expect("write");
    let out = Command::new(itsup_bin())
        .args(["proxy", "--check", "--config"])
        .arg(&path)
        .output()
        .expect("run itsup proxy --check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_config_files_are_refused_with_clear_errors() {
    let cases = [
        ("listeners: [\n", "while parsing"),
        (
            "listeners: []\nclusters: {}\nroutez: []\n",
            "unknown field `routez`",
        ),
        (
            "listeners: [{address: '127.0.0.1:0'}]\nroutes: [{cluster: web}]\nclusters: {}\n",
            "unknown cluster `web`",
        ),
        (
            "listeners: [{address: 'localhost'}]\nclusters: {}\n",
            "is not ip:port",
        ),
        (
            "listeners: [{address: '127.0.0.1:0'}]\nclusters: {c: {servers: []}}\n",
            "at least one server",
        ),
        (
            "listeners: [{address: '127.0.0.1:0'}]\nclusters: {c: {lb: random, servers: [{address: 'a:1'}]}}\n",
            "unknown variant `random`",
        ),
        (
            "listeners: [{address: '127.0.0.1:0'}]\nroutes: [{host: 'a.*.b', cluster: c}]\nclusters: {c: {servers: [{address: 'a:1'}]}}\n",
            "leading `*.`",
        ),
    ];
    for (config, needle) in cases {
        let (code, stderr) = check(config);
        assert_eq!(code, 1, "{config:?} should be refused");
        assert!(
            stderr.contains(needle),
            "{config:?}: expected {needle:?} in {stderr:?}"
        );
    }
    let (code, _) = check(
        "listeners: [{address: '127.0.0.1:0'}]\nroutes: [{cluster: c}]\nclusters: {c: {servers: [{address: 'app:8080', weight: 3}]}}\n",
    );
    assert_eq!(code, 0);
    // Starting on an invalid file fails fast.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.yml");
    std::fs::write(&path, "clusters: 3\n").expect("write");
    let out = Command::new(itsup_bin())
        .args(["proxy", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let schema = Command::new(itsup_bin())
        .args(["proxy", "--print-schema"])
        .output()
        .expect("run");
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).expect("schema is JSON");
    assert!(
        schema["properties"]["clusters"].is_object() && schema["properties"]["routes"].is_object()
    );
}

#[test]
fn invalid_acme_sections_are_refused_at_their_line() {
    let head = "listeners: [{address: '127.0.0.1:0'}]\nclusters: {}\n";
    let cases = [
        ("acme: {email: ops@example.com}\n", "missing field `store`"),
        (
            "acme:\n  store: /var/lib/acme\n  challenge: dns-01\n",
            "unknown variant `dns-01`",
        ),
        (
            "acme:\n  store: var/acme\n",
            "proxy.yml:4:3: acme.store: `var/acme` is not an absolute path",
        ),
        (
            "acme:\n  store: /var/lib/acme\n  ca_server: http://ca.test/dir\n",
            "proxy.yml:5:3: acme.ca_server: `http://ca.test/dir` is not an https:// URL",
        ),
        (
            "acme:\n  store: /var/lib/acme\n  certificates:\n    - names: [example.com]\n    - names: ['*.example.com']\n",
            "proxy.yml:7:15: acme.certificates[1].names[0]: `*.example.com`: wildcard names need DNS-01",
        ),
    ];
    for (acme, needle) in cases {
        let (code, stderr) = check(&format!("{head}{acme}"));
        assert_eq!(code, 1, "{acme:?} should be refused");
        assert!(
            stderr.contains(needle),
            "{acme:?}: expected {needle:?} in {stderr:?}"
        );
    }
    // Valid for --check, refused at start: what only the file system can tell, named by key.
    let dir = tempfile::tempdir().expect("tempdir");
    for (acme, needle) in [
        (
            format!(
                "acme:\n  store: {}\n  ca_bundle: /nonexistent/ca.pem\n",
                dir.path().join("store").display()
            ),
            "acme.ca_bundle: cannot read /nonexistent/ca.pem",
        ),
        (
            "acme:\n  store: /proc/itsup-acme\n".to_string(),
            "acme.store: /proc/itsup-acme",
        ),
    ] {
        let path = dir.path().join("proxy.yml");
        std::fs::write(&path, format!("{head}{acme}")).expect("write");
        assert_eq!(check(&format!("{head}{acme}")).0, 0, "{acme}");
        let out = Command::new(itsup_bin())
            .args(["proxy", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "expected {needle:?} in {stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "names the file: {stderr}"
        );
    }
}
