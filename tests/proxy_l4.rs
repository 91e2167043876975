//! `itsup proxy`'s TCP and UDP forwarding over real sockets (the `tcp:`/`udp:` sections): a
//! plain port, SNI routing before TLS on the shared HTTPS port (passthrough with the backend's
//! own certificate, termination, HTTPS for the other names), PROXY protocol out (read by a
//! test backend and by a real HAProxy) and in (trusted senders only), UDP sessions, a
//! server-first protocol, timeouts, caps and bad ClientHellos.

mod proxy_support;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proxy_support::tls::*;
use proxy_support::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const ADMIN: &str = "admin: {address: \"127.0.0.1:0\"}\n";

/// A TCP backend that echoes every byte back; `greeting` is written first, at accept (a
/// server-first protocol). The first 4 KiB of each connection are kept (PROXY headers), in
/// the order connections first sent something.
struct Echo {
    addr: SocketAddr,
    firsts: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    async fn start(greeting: &'static [u8]) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let firsts = Arc::new(Mutex::new(Vec::new()));
        let seen = firsts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = s.write_all(greeting).await;
                    let mut buf = vec![0u8; 65536];
                    let mut slot = None;
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // The first 4 KiB of each connection, however many reads they take.
                        {
                            let mut all = seen.lock().expect("lock");
                            let i = *slot.get_or_insert_with(|| {
                                all.push(Vec::new());
                                all.len() - 1
                            });
                            let kept: &mut Vec<u8> = &mut all[i];
                            let room = 4096usize.saturating_sub(kept.len()).min(n);
                            kept.extend_from_slice(&buf[..room]);
                        }
                        if s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Echo { addr, firsts, task }
    }

    fn first(&self, i: usize) -> Vec<u8> {
        self.firsts
            .lock()
            .expect("lock")
            .get(i)
            .cloned()
            .unwrap_or_default()
    }
}

/// Writes `data`, reads exactly as many bytes back.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, data: &[u8]) -> Vec<u8> {
    s.write_all(data).await.expect("write");
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("answer in time")
        .expect("read");
    back
}

/// Whether the proxy closed the connection (EOF or reset) within `limit`.
async fn closed(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn tcp_port(routes: &str, extra: &str) -> String {
    format!(
        "listeners: [{{address: \"127.0.0.9:0\"}}]\n{ADMIN}clusters: {{}}\ntcp:\n  - address: \"127.0.0.1:0\"\n{extra}    routes:\n{routes}"
    )
}

#[test]
fn tcp_echo_through_a_hostport_counts_bytes_per_route() {
    mt().block_on(async {
        let echo = Echo::start(b"").await;
        let proxy = Proxy::start(&tcp_port(
            &format!("      - {{name: db, servers: [\"{}\"]}}\n", echo.addr),
            "",
        ));
        let mut s = TcpStream::connect(proxy.l4[0]).await.expect("connect");
        let big = vec![7u8; 200_000];
        assert_eq!(round_trip(&mut s, b"ping").await, b"ping");
        assert_eq!(round_trip(&mut s, &big).await, big);
        drop(s);
        proxy
            .wait_for("byte counters", Duration::from_secs(5), || async {
                proxy
                    .metric("itsup_proxy_l4_received_bytes_total{route=\"db\",protocol=\"tcp\"}")
                    .await
                    == 200_004.0
            })
            .await;
        assert_eq!(
            proxy
                .metric("itsup_proxy_l4_sent_bytes_total{route=\"db\",protocol=\"tcp\"}")
                .await,
            200_004.0
        );
        assert_eq!(
            proxy
                .metric("itsup_proxy_l4_connections_total{route=\"db\",protocol=\"tcp\"}")
                .await,
            1.0
        );
    });
}

#[test]
fn a_server_first_protocol_on_a_single_route_port_is_not_kept_waiting() {
    mt().block_on(async {
        let smtp = Echo::start(b"220 mail.test ESMTP ready\r\n").await;
        let proxy = Proxy::start(&tcp_port(
            &format!("      - {{name: smtp, servers: [\"{}\"]}}\n", smtp.addr),
            "",
        ));
        let mut s = TcpStream::connect(proxy.l4[0]).await.expect("connect");
        // The client says nothing: the greeting must arrive anyway, long before hello_ms (5 s).
        let mut greeting = vec![0u8; 27];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut greeting))
            .await
            .expect("greeting without the client speaking first")
            .expect("read");
        assert_eq!(greeting, b"220 mail.test ESMTP ready\r\n");
        assert_eq!(round_trip(&mut s, b"EHLO x\r\n").await, b"EHLO x\r\n");
    });
}

/// A stream whose first write is cut in two TCP segments 50 ms apart (a ClientHello split
/// in two, as large post-quantum hellos are).
struct SplitFirst {
    inner: TcpStream,
    state: u8,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for SplitFirst {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SplitFirst {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.state {
            0 => {
                let half = (data.len() / 2).max(1);
                let res = Pin::new(&mut self.inner).poll_write(cx, &data[..half]);
                if matches!(res, Poll::Ready(Ok(_))) {
                    self.state = 1;
                    self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                }
                res
            }
            1 => {
                if let Some(p) = self.pause.as_mut() {
                    std::task::ready!(p.as_mut().poll(cx));
                }
                self.state = 2;
                Pin::new(&mut self.inner).poll_write(cx, data)
            }
            _ => Pin::new(&mut self.inner).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

use std::future::Future as _;

/// A TLS backend with its own certificate that echoes the plaintext.
async fn tls_echo(leaf: &Leaf) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der.clone()], leaf.key())
    .expect("cert");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = s.flush().await;
                }
            });
        }
    });
    (addr, task)
}

/// The shared HTTPS port: `mqtt.l4.test` passed through, `db.l4.test` terminated, every
/// other name HTTPS to `web`.
fn shared_port(
    cert: &(std::path::PathBuf, std::path::PathBuf),
    mqtt: SocketAddr,
    db: SocketAddr,
    web: SocketAddr,
) -> String {
    format!(
        "listeners:\n  - address: \"127.0.0.1:0\"\n    tls: {{certificates: [{{cert: \"{}\", key: \"{}\"}}]}}\n{ADMIN}routes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{web}\"}}]}}}}\ntcp:\n  - address: \"127.0.0.1:0\"\n    routes:\n      - {{name: mqtt, sni: [mqtt.l4.test], servers: [\"{mqtt}\"]}}\n      - {{name: db, sni: [db.l4.test], tls: terminate, servers: [\"{db}\"]}}\n",
        cert.0.display(),
        cert.1.display()
    )
}

#[test]
fn sni_passthrough_terminate_and_https_share_one_port() {
    mt().block_on(async {
        let ca = Ca::new("l4 ca");
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy_leaf = ca.leaf(&["db.l4.test", "app.l4.test"]);
        let backend_leaf = ca.leaf(&["mqtt.l4.test"]);
        let pair = proxy_leaf.write(dir.path(), "proxy");
        let (mqtt, _mqtt_task) = tls_echo(&backend_leaf).await;
        let db = Echo::start(b"").await;
        let web = Upstream::start("web").await;
        let proxy = Proxy::start(&shared_port(&pair, mqtt, db.addr, web.addr));
        let port = proxy.tls[0];
        let roots = client(Some(ca.roots()), &[]);

        // Passthrough, the ClientHello in two segments: the backend's own certificate.
        let split = SplitFirst {
            inner: TcpStream::connect(port).await.expect("connect"),
            state: 0,
            pause: None,
        };
        let name = ServerName::try_from("mqtt.l4.test").expect("name");
        let mut s = tokio_rustls::TlsConnector::from(roots.clone())
            .connect(name, split)
            .await
            .expect("passthrough handshake");
        let leaf = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned();
        assert_eq!(
            leaf,
            Some(backend_leaf.der.clone()),
            "the backend's own certificate"
        );
        assert_eq!(round_trip(&mut s, b"CONNECT mqtt").await, b"CONNECT mqtt");

        // Terminated here, plain TCP behind.
        let mut s = dial(port, "db.l4.test", roots.clone())
            .await
            .expect("terminate");
        assert_eq!(peer_leaf(&s), proxy_leaf.der, "the proxy's certificate");
        assert_eq!(round_trip(&mut s, b"SELECT 1").await, b"SELECT 1");
        assert_eq!(db.first(0), b"SELECT 1", "the backend got plaintext");

        // Any other name: HTTPS as before, on the same port.
        let (status, _, body) = get_tls(port, "app.l4.test", "/").await;
        assert_eq!((status.as_u16(), body.as_str()), (200, "web"));

        for route in ["mqtt", "db"] {
            assert_eq!(
                proxy
                    .metric(&format!(
                        "itsup_proxy_l4_connections_total{{route=\"{route}\",protocol=\"tcp\"}}"
                    ))
                    .await,
                1.0,
                "{route}"
            );
        }
    });
}

#[test]
fn garbage_and_truncated_client_hellos_are_closed_and_counted() {
    mt().block_on(async {
        let ca = Ca::new("l4 ca");
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = ca.leaf(&["db.l4.test"]).write(dir.path(), "proxy");
        let db = Echo::start(b"").await;
        let web = Upstream::start("web").await;
        let proxy = Proxy::start(&shared_port(&pair, db.addr, db.addr, web.addr));
        let port = proxy.tls[0];

        // A TLS record header followed by garbage.
        let mut s = TcpStream::connect(port).await.expect("connect");
        s.write_all(&[22, 3, 1, 0, 8, 9, 9, 9, 9, 9, 9, 9, 9])
            .await
            .expect("write");
        assert!(
            closed(&mut s, Duration::from_secs(3)).await,
            "garbage hello closed"
        );

        // Half a ClientHello, then the client stops sending.
        let hello = sample_hello("db.l4.test");
        let mut s = TcpStream::connect(port).await.expect("connect");
        s.write_all(&hello[..hello.len() / 2]).await.expect("write");
        s.shutdown().await.expect("half close");
        assert!(
            closed(&mut s, Duration::from_secs(3)).await,
            "truncated hello closed"
        );
        assert!(
            proxy
                .metric("itsup_proxy_l4_refused_total{reason=\"bad_hello\"}")
                .await
                >= 2.0
        );
        assert_eq!(
            db.firsts.lock().expect("lock").len(),
            0,
            "nothing reached a backend"
        );

        // The proxy is still up and serving.
        let (status, _, _) = get_tls(port, "app.l4.test", "/").await;
        assert_eq!(status.as_u16(), 200);
    });
}

/// A minimal ClientHello for `name` (one record, TLS 1.2 record version).
fn sample_hello(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut ext = vec![0, 0];
    ext.extend_from_slice(&((n.len() + 5) as u16).to_be_bytes());
    ext.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
    ext.extend_from_slice(n);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[1u8; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut msg = vec![1];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(&msg);
    rec
}

/// Reads a PROXY header as a backend would, independently of the proxy's own reader: the
/// client address it names.
fn parse_header(bytes: &[u8]) -> (String, usize) {
    if let Some(line) = bytes.strip_prefix(b"PROXY ") {
        let end = line.windows(2).position(|w| w == b"\r\n").expect("CRLF");
        let text = String::from_utf8_lossy(&line[..end]).into_owned();
        let f: Vec<&str> = text.split(' ').collect();
        return (format!("{}:{}", f[1], f[3]), end + 8);
    }
    assert_eq!(&bytes[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
    assert_eq!((bytes[12], bytes[13]), (0x21, 0x11), "PROXY, TCP over IPv4");
    let len = u16::from_be_bytes([bytes[14], bytes[15]]) as usize;
    let a = &bytes[16..];
    let src = format!(
        "{}.{}.{}.{}:{}",
        a[0],
        a[1],
        a[2],
        a[3],
        u16::from_be_bytes([a[8], a[9]])
    );
    (src, 16 + len)
}

#[test]
fn proxy_protocol_v1_and_v2_reach_the_backend() {
    mt().block_on(async {
        let echo = Echo::start(b"").await;
        let routes = format!(
            "      - {{name: v1, sni: [v1.l4.test], servers: [\"{0}\"], proxy_protocol: 1}}\n      - {{name: v2, servers: [\"{0}\"], proxy_protocol: 2}}\n",
            echo.addr
        );
        let proxy = Proxy::start(&tcp_port(&routes, ""));
        // v1 by SNI (the hello itself is the payload), v2 by the catch-all.
        let mut s = TcpStream::connect(proxy.l4[0]).await.expect("connect");
        let hello = sample_hello("v1.l4.test");
        s.write_all(&hello).await.expect("hello");
        let client = s.local_addr().expect("local").to_string();
        echo_first(&echo, 0).await;
        let (src, len) = parse_header(&echo.first(0));
        assert_eq!(src, client, "v1 names the client");
        assert_eq!(&echo.first(0)[len..], &hello[..], "then the untouched hello");

        let mut s = TcpStream::connect(proxy.l4[0]).await.expect("connect");
        s.write_all(b"plain text, not TLS").await.expect("write");
        let client = s.local_addr().expect("local").to_string();
        echo_first(&echo, 1).await;
        let (src, len) = parse_header(&echo.first(1));
        assert_eq!(src, client, "v2 names the client");
        assert!(echo.first(1)[len..].starts_with(b"plain"), "then the data");
    });
}

async fn echo_first(echo: &Echo, i: usize) {
    for _ in 0..100 {
        if echo.firsts.lock().expect("lock").len() > i {
            // The header and the first bytes may come in two reads; give the rest a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend saw no connection {i}");
}

/// HAProxy with `accept-proxy` answers every request with the client address it parsed.
fn haproxy(dir: &std::path::Path, port: u16) -> std::process::Child {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\nfrontend f\n    bind 127.0.0.1:{port} accept-proxy\n    http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port]\"\n"
        ),
    )
    .expect("write haproxy.cfg");
    std::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("haproxy (Debian package haproxy)")
}

#[test]
fn haproxy_reads_our_proxy_headers_v1_and_v2() {
    mt().block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut hap = haproxy(dir.path(), port);
        let routes = format!(
            "      - {{name: v1, sni: [v1.l4.test], servers: [\"127.0.0.1:{port}\"], proxy_protocol: 1}}\n      - {{name: v2, servers: [\"127.0.0.1:{port}\"], proxy_protocol: 2}}\n"
        );
        // v1 needs a ClientHello to be chosen; HAProxy speaks HTTP, so both go by the
        // catch-all here with v2, and v1 through a second port.
        let proxy = Proxy::start(&tcp_port(&routes, ""));
        let v1_only = Proxy::start(&tcp_port(
            &format!("      - {{name: v1only, servers: [\"127.0.0.1:{port}\"], proxy_protocol: 1}}\n"),
            "",
        ));
        for (addr, what) in [(proxy.l4[0], "v2"), (v1_only.l4[0], "v1")] {
            let mut answer = String::new();
            for _ in 0..50 {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let client = s.local_addr().expect("local").to_string();
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .await
                    .expect("request");
                answer.clear();
                let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut answer)).await;
                if answer.starts_with("HTTP/1.1 200") {
                    assert!(answer.ends_with(&client), "{what}: HAProxy saw {answer:?}, client {client}");
                    break;
                }
                // HAProxy still starting.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer:?}");
        }
        let _ = hap.kill();
        let _ = hap.wait();
    });
}

#[test]
fn proxy_headers_are_taken_from_trusted_senders_only() {
    mt().block_on(async {
        let echo = Echo::start(b"").await;
        let route = |name: &str| {
            format!(
                "      - {{name: {name}, servers: [\"{}\"], proxy_protocol: 1}}\n",
                echo.addr
            )
        };
        let trusted = Proxy::start(&tcp_port(
            &route("trusted"),
            "    accept_proxy: {trusted: [127.0.0.0/8], timeout_ms: 500}\n",
        ));
        let untrusted = Proxy::start(&tcp_port(
            &route("untrusted"),
            "    accept_proxy: {trusted: [192.0.2.1]}\n",
        ));
        // From a trusted sender: the header's client reaches the backend.
        let mut s = TcpStream::connect(trusted.l4[0]).await.expect("connect");
        s.write_all(b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 5432\r\nhello")
            .await
            .expect("write");
        // The echo sends back our PROXY header too, then the data.
        assert!(read_until(&mut s, b"hello").await.ends_with(b"hello"));
        let (src, _) = parse_header(&echo.first(0));
        assert_eq!(src, "203.0.113.9:40000");

        // A trusted sender that sends no header in time, or garbage: refused.
        let mut s = TcpStream::connect(trusted.l4[0]).await.expect("connect");
        assert!(
            closed(&mut s, Duration::from_secs(3)).await,
            "no header in time"
        );
        let mut s = TcpStream::connect(trusted.l4[0]).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        assert!(closed(&mut s, Duration::from_secs(3)).await, "not a header");
        assert_eq!(
            trusted
                .metric("itsup_proxy_l4_refused_total{reason=\"proxy_header\"}")
                .await,
            2.0
        );

        // From anyone else a header is refused before it reaches the backend.
        let mut s = TcpStream::connect(untrusted.l4[0]).await.expect("connect");
        s.write_all(b"PROXY TCP4 203.0.113.66 10.0.0.1 40000 5432\r\nhello")
            .await
            .expect("write");
        assert!(
            closed(&mut s, Duration::from_secs(3)).await,
            "untrusted header refused"
        );
        assert_eq!(
            untrusted
                .metric("itsup_proxy_l4_refused_total{reason=\"proxy_header\"}")
                .await,
            1.0
        );
        let forged = echo
            .firsts
            .lock()
            .expect("lock")
            .iter()
            .any(|f| f.windows(12).any(|w| w == b"203.0.113.66"));
        assert!(!forged, "the forged address never reached the backend");
        // Plain data from the untrusted peer still goes through under its own address.
        let mut s = TcpStream::connect(untrusted.l4[0]).await.expect("connect");
        let me = s.local_addr().expect("local").to_string();
        s.write_all(b"hi").await.expect("write");
        assert!(read_until(&mut s, b"hi").await.ends_with(b"hi"));
        let last = echo
            .firsts
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("seen");
        assert_eq!(parse_header(&last).0, me);
    });
}

/// Reads until what arrived ends with `suffix` (5 s at most).
async fn read_until(s: &mut TcpStream, suffix: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(suffix) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn connect_and_idle_timeouts_and_the_connection_cap() {
    mt().block_on(async {
        let echo = Echo::start(b"").await;
        let proxy = Proxy::start(&format!(
            "listeners: [{{address: \"127.0.0.9:0\"}}]\n{ADMIN}clusters: {{}}\ntcp:\n  - address: \"127.0.0.1:0\"\n    max_connections: 1\n    timeouts: {{idle_ms: 400}}\n    routes: [{{name: capped, servers: [\"{}\"]}}]\n  - address: \"127.0.0.2:0\"\n    timeouts: {{connect_ms: 300}}\n    routes: [{{name: dead, servers: [\"{}\"]}}]\n",
            echo.addr,
            dead_port()
        ));
        let (capped, dead) = (proxy.l4[0], proxy.l4[1]);
        let mut first = TcpStream::connect(capped).await.expect("connect");
        assert_eq!(round_trip(&mut first, b"one").await, b"one");
        let mut second = TcpStream::connect(capped).await.expect("connect");
        assert!(closed(&mut second, Duration::from_secs(2)).await, "over the cap");
        assert_eq!(proxy.metric("itsup_proxy_l4_refused_total{reason=\"max_connections\"}").await, 1.0);
        // Quiet for longer than idle_ms: closed, and the slot is free again.
        assert!(closed(&mut first, Duration::from_secs(3)).await, "idle timeout");
        assert_eq!(
            proxy.metric("itsup_proxy_l4_idle_timeouts_total{route=\"capped\",protocol=\"tcp\"}").await,
            1.0
        );
        // The slot is given back as the connection's task ends, just after the close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(capped).await.expect("connect");
        assert_eq!(round_trip(&mut third, b"three").await, b"three");

        // No server accepts: the client is closed and the failure counted.
        let mut s = TcpStream::connect(dead).await.expect("connect");
        assert!(closed(&mut s, Duration::from_secs(3)).await, "connect failure closes");
        assert_eq!(
            proxy.metric("itsup_proxy_l4_connect_failures_total{route=\"dead\",protocol=\"tcp\"}").await,
            1.0
        );
    });
}

#[test]
fn tcp_allowlist_refuses_other_sources() {
    mt().block_on(async {
        let echo = Echo::start(b"").await;
        let proxy = Proxy::start(&tcp_port(
            &format!(
                "      - {{name: office, servers: [\"{}\"], allow_source_ips: [192.0.2.0/24]}}\n",
                echo.addr
            ),
            "",
        ));
        let mut s = TcpStream::connect(proxy.l4[0]).await.expect("connect");
        assert!(
            closed(&mut s, Duration::from_secs(2)).await,
            "not on the list"
        );
        assert_eq!(
            proxy
                .metric("itsup_proxy_l4_denied_total{route=\"office\",protocol=\"tcp\"}")
                .await,
            1.0
        );
    });
}

#[test]
fn udp_echo_with_a_session_per_client_and_a_session_cap() {
    mt().block_on(async {
        let backend = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let backend_addr = backend.local_addr().expect("addr");
        let echo = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = backend.recv_from(&mut buf).await {
                let _ = backend.send_to(&buf[..n], from).await;
            }
        });
        let proxy = Proxy::start(&format!(
            "listeners: [{{address: \"127.0.0.9:0\"}}]\n{ADMIN}clusters: {{}}\nudp:\n  - {{name: dns, address: \"127.0.0.1:0\", servers: [\"{backend_addr}\"], idle_ms: 500, max_sessions: 1}}\n"
        ));
        let port = proxy.l4[0];
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut buf = [0u8; 64];
        for msg in [&b"query one"[..], b"query two"] {
            a.send_to(msg, port).await.expect("send");
            let (n, from) = tokio::time::timeout(Duration::from_secs(3), a.recv_from(&mut buf))
                .await
                .expect("answer in time")
                .expect("recv");
            assert_eq!((&buf[..n], from), (msg, port));
        }
        // A second client while the first session lives: over max_sessions, dropped.
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        b.send_to(b"other", port).await.expect("send");
        let dropped = tokio::time::timeout(Duration::from_millis(300), b.recv_from(&mut buf)).await;
        assert!(dropped.is_err(), "no answer over the cap");
        assert_eq!(proxy.metric("itsup_proxy_l4_refused_total{reason=\"max_sessions\"}").await, 1.0);
        // Once the first session idled out, the second client gets one.
        tokio::time::sleep(Duration::from_millis(800)).await;
        b.send_to(b"other", port).await.expect("send");
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), b.recv_from(&mut buf))
            .await
            .expect("answer after expiry")
            .expect("recv");
        assert_eq!(&buf[..n], b"other");
        assert_eq!(
            proxy.metric("itsup_proxy_l4_connections_total{route=\"dns\",protocol=\"udp\"}").await,
            2.0
        );
        echo.abort();
    });
}
