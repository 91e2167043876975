//! Engine itsup as the edge, end to end (issue 13): the bundled example applied with
//! `proxy.engine: itsup` (the rendered proxy stack, `itsup proxy` in the image apply builds from
//! the binary under test) against a real ACME server, Debian's `pebble`.
//!
//! DNS: `pebble-challtestsrv` is pebble's resolver and answers every name with 127.0.0.1, where
//! the proxy's http port is published; HTTP-01 is validated for real (no
//! `PEBBLE_VA_ALWAYS_VALID`). Pebble's HTTPS certificate and its CA are generated with
//! `openssl`; the proxy reaches pebble on the proxy network's gateway through `acme.caServer`,
//! trusting it through `acme.caBundle`. Certificates are checked with `openssl s_client` and
//! `curl` against pebble's issuing root.

mod deploy_support;
mod traefik_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deploy_support::pebble::{Pebble, PebbleOptions, pebble_certs, served_serial};
use deploy_support::{EXAMPLE_IMAGES, ExampleNetworks, Fixture, docker, eventually};

/// A verified HTTPS GET with curl (pebble's root, the name resolved to 127.0.0.1): status and
/// body, or curl's complaint.
fn curl(dir: &Path, port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert", "root.pem"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://{host}:{port}{path}"))
        .current_dir(dir)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl exit {:?}: {text}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code
        .trim()
        .parse()
        .map_err(|_| format!("status {code:?}"))?;
    Ok((code, body.to_string()))
}

/// A plain HTTP/1.1 request (`method path`, `Host: host`) on 127.0.0.1:port: the answer's head.
fn plain(port: u16, method: &str, host: &str, path: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(req.as_bytes());
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply
        .split_once("\r\n\r\n")
        .map(|(head, _)| head.to_string())
        .unwrap_or(reply)
}

/// The example's `nas` box, stood in for by a host process answering `nas` to every request
/// (the proxy's container reaches it on the network's gateway).
fn nas_box() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnas\n",
                );
            });
        }
    });
    port
}

/// The bundled example with engine itsup against pebble: every http name is served over HTTPS
/// with a certificate pebble issued (one order per row's name set), plain HTTP is redirected
/// (301 for GET, 308 otherwise, the non-default https port kept), `/api` reaches the shop API
/// with its prefix stripped, the gRPC greeter answers over TLS (HTTP/2 by ALPN, h2c behind),
/// and a `docker restart` of the proxy serves the stored certificates with no new order.
///
/// Every other row of the example is served like engine traefik serves it (issue 14): the
/// database's dedicated tcp hostport, the mqtt broker's SNI passthrough on the shared https
/// port (the ClientHello reaches the broker untouched), and the shop API's source allowlist
/// (403 for this client, then 200 once the allowlist admits it).
///
/// The copy of `projects/` is edited like the other engines' tests (ports, network, subnet, the
/// nas address: here a host process on the gateway).
#[test]
fn deploy_bundled_example_through_itsup_with_pebble_certificates() {
    deploy_support::example_host_clear();
    let mut tags = deploy_support::ImageTags::new();
    let image = deploy_support::itsup_image_tag();
    tags.adopt(&image);
    for example in EXAMPLE_IMAGES {
        tags.tag(deploy_support::APP_EXAMPLE, example);
    }
    let f = Fixture::example_itsup(&image);
    let _networks = ExampleNetworks(f.root.display().to_string());
    let (https, http) = (f.https_port, f.http_port);
    let gateway = f.gateway();

    let db_port: u16 = std::fs::read_to_string(f.root.join("projects/db/ingress.yml"))
        .expect("db ingress")
        .lines()
        .find_map(|l| l.trim().strip_prefix("hostport:")?.trim().parse().ok())
        .expect("db hostport");
    let nas = nas_box();
    f.edit(
        "projects/nas/ingress.yml",
        "host: 127.0.0.1",
        &format!("host: {gateway}"),
    );
    f.edit(
        "projects/nas/ingress.yml",
        "port: 5000",
        &format!("port: {nas}"),
    );

    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    pebble_certs(dir, &gateway);
    let pebble = Pebble::start(
        dir,
        PebbleOptions {
            listen_ip: "0.0.0.0".to_string(),
            ..PebbleOptions::http(http)
        },
    );
    f.write(
        "projects/ca/pebble.pem",
        &std::fs::read_to_string(dir.join("ca.pem")).expect("ca"),
    );
    f.edit(
        "projects/itsup.yml",
        "  staging: true\n",
        &format!(
            "  staging: true\n  caServer: https://{gateway}:{}/dir\n  caBundle: ca/pebble.pem\n",
            pebble.acme_port
        ),
    );

    f.itsup_expect(&["apply"], 0);
    let compose = std::fs::read_to_string(f.root.join("proxy/docker-compose.yml")).expect("yml");
    for port in [http, https] {
        assert!(
            compose.contains(&format!("\"{port}:{port}\"")),
            "both ports published on all interfaces:\n{compose}"
        );
    }

    // Every http name of the example, each with a certificate from pebble (verified up to
    // pebble's root, for that name) within 60 s.
    pebble.fetch_root();
    let names = [
        "example.com",
        "www.example.com",
        "grpc.example.com",
        "nas.example.com",
    ];
    let mut serials = Vec::new();
    for name in names {
        let serial = eventually(Duration::from_secs(60), || {
            served_serial(dir, https, name).ok()
        })
        .unwrap_or_else(|| {
            let logs = f
                .proxy_container("itsup-proxy")
                .map(|id| docker(&["logs", "--tail", "40", &id]))
                .unwrap_or_default();
            panic!(
                "no pebble certificate for {name}: {:?}\nproxy: {logs}\npebble: {}",
                served_serial(dir, https, name),
                pebble.log()
            )
        });
        serials.push(serial);
    }
    // One order per row's name set: the website's (apex + www), the shop API's (apex), the
    // greeter's and the nas's.
    assert_eq!(
        eventually(Duration::from_secs(30), || (pebble.issued() == 4)
            .then_some(4)),
        Some(4),
        "four orders: {}",
        pebble.issued()
    );

    // Verified requests, each reaching the right container.
    for host in ["example.com", "www.example.com"] {
        assert_eq!(
            curl(dir, https, host, "/"),
            Ok((200, "version=example\n".to_string())),
            "{host}"
        );
    }
    // The shop API's path on the apex beats the website's host-only route, and its allowlist
    // refuses this client (the proxy sees the published port's gateway, not 203.0.113.0/24).
    assert_eq!(
        curl(dir, https, "example.com", "/api/orders").map(|(code, _)| code),
        Ok(403),
        "the shop API's allowlist"
    );

    // The database's dedicated tcp port (the test app answers the bytes as HTTP).
    let reply =
        eventually(Duration::from_secs(20), || deploy_support::tcp_get(db_port)).expect("db port");
    assert!(reply.contains("version="), "{reply}");

    // SNI passthrough on the shared https port: the ClientHello for mqtt.example.com reaches
    // the broker untouched (the test app answers it in plain HTTP; a proxy terminating TLS
    // would answer with a TLS record).
    let mut hello = traefik_support::client_hello("mqtt.example.com");
    hello.extend_from_slice(b"\r\n\r\n");
    let reply = traefik_support::raw_exchange(https, &hello);
    assert!(reply.starts_with("HTTP/1.1 200"), "passthrough: {reply:?}");
    assert_eq!(
        curl(dir, https, "nas.example.com", "/"),
        Ok((200, "nas\n".to_string()))
    );

    // Plain HTTP is redirected to HTTPS, path, query and the non-default port kept.
    let location = format!("location: https://example.com:{https}/shop?x=1");
    let get = plain(http, "GET", "example.com", "/shop?x=1");
    assert!(
        get.starts_with("HTTP/1.1 301") && get.to_ascii_lowercase().contains(&location),
        "{get}"
    );
    let post = plain(http, "POST", "example.com", "/shop?x=1");
    assert!(
        post.starts_with("HTTP/1.1 308") && post.to_ascii_lowercase().contains(&location),
        "{post}"
    );

    // gRPC health over TLS (ALPN h2) through the proxy to the greeter's h2c replicas.
    let status = eventually(Duration::from_secs(20), || {
        traefik_support::grpc_health(https, "grpc.example.com").ok()
    });
    assert_eq!(status, Some(1), "gRPC health SERVING through itsup proxy");

    // A restart serves the stored certificates: same serials, no new order. (The apex sits on
    // two rows, so either of the two certificates covering it may be served: valid is enough.)
    let proxy = f.proxy_container("itsup-proxy").expect("the proxy runs");
    docker(&["restart", "-t", "5", &proxy]);
    for (name, serial) in names.iter().zip(&serials) {
        let again = eventually(Duration::from_secs(30), || {
            served_serial(dir, https, name).ok()
        });
        assert!(
            again.is_some(),
            "{name}: a pebble certificate after a restart"
        );
        if *name != "example.com" {
            assert_eq!(
                again.as_ref(),
                Some(serial),
                "{name}: the stored certificate"
            );
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pebble.issued(), 4, "no new order after the restart");

    // Once the allowlist admits this client, `/api` reaches the shop API with its prefix
    // stripped.
    f.edit(
        "projects/shop-api/ingress.yml",
        "allow_source_ips: [203.0.113.0/24, 10.8.0.0/16]",
        "allow_source_ips: [0.0.0.0/0]",
    );
    f.itsup_expect(&["apply"], 0);
    assert_eq!(
        eventually(Duration::from_secs(30), || curl(
            dir,
            https,
            "example.com",
            "/api/health"
        )
        .ok()
        .filter(|(code, _)| *code == 200)),
        Some((200, "ok\n".to_string())),
        "the prefix is stripped before the shop API"
    );
    assert_eq!(
        curl(dir, https, "example.com", "/api/orders"),
        Ok((200, "version=unknown\n".to_string())),
        "/api goes to the shop API (no SITE_NAME there), not the website"
    );
}
