//! `itsup proxy`'s TLS edge over real sockets: certificates made by a test CA (rcgen), the real
//! binary, rustls clients. SNI selection (exact, wildcard, default, unknown rejected), ALPN and
//! HTTP/2 over TLS, the watched certificate folder, the HTTP→HTTPS redirect and HSTS, upstream
//! TLS and mutual TLS with verification failures answered 502 and logged, and a WebSocket
//! upgraded through the HTTPS listener.

mod proxy_support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use proxy_support::tls::*;
use proxy_support::*;

fn tls_listener(certs: &[(std::path::PathBuf, std::path::PathBuf)], extra: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{cert: \"{}\", key: \"{}\"}}", c.display(), k.display()))
        .collect();
    format!(
        "  - address: \"127.0.0.1:0\"\n    tls: {{certificates: [{}]{extra}}}\n",
        list.join(", ")
    )
}

#[test]
fn sni_picks_exact_then_wildcard_then_default_and_unknown_can_be_refused() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let ca = Ca::new("test ca");
        let dir = tempfile::tempdir().expect("tempdir");
        let exact = ca.leaf(&["a.test"]);
        let wild = ca.leaf(&["*.wild.test"]);
        let pairs = vec![exact.write(dir.path(), "a"), wild.write(dir.path(), "wild")];
        let config = format!(
            "listeners:\n{}{}admin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n",
            tls_listener(&pairs, ""),
            tls_listener(&pairs, ", unknown_sni: reject"),
            up.addr
        );
        let proxy = Proxy::start(&config);
        let (lenient, strict) = (proxy.tls[0], proxy.tls[1]);
        let trusting = client(Some(ca.roots()), &["http/1.1"]);

        let s = dial(lenient, "a.test", trusting.clone()).await.expect("exact");
        assert_eq!(peer_leaf(&s), exact.der, "exact name");
        let s = dial(lenient, "x.wild.test", trusting.clone()).await.expect("wildcard");
        assert_eq!(peer_leaf(&s), wild.der, "wildcard");
        // A wildcard covers one label only: the default (the first configured) answers.
        let any = client(None, &["http/1.1"]);
        let s = dial(lenient, "y.x.wild.test", any.clone()).await.expect("default");
        assert_eq!(peer_leaf(&s), exact.der, "default certificate");
        let s = dial(lenient, "127.0.0.1", any.clone()).await.expect("no sni");
        assert_eq!(peer_leaf(&s), exact.der, "no SNI gets the default");

        let s = dial(strict, "x.wild.test", trusting.clone()).await.expect("known");
        assert_eq!(peer_leaf(&s), wild.der);
        let err = dial(strict, "unknown.test", any.clone()).await.expect_err("refused");
        assert!(err.to_string().contains("alert"), "{err}");
        dial(strict, "127.0.0.1", any.clone()).await.expect_err("no SNI refused");

        // The request goes through and the upstream learns it came over TLS.
        let (status, _, body) = get_tls(lenient, "a.test", "/hello").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
        let seen = up.last();
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert!(seen.headers["forwarded"].contains("proto=https"), "{:?}", seen.headers);

        assert!(proxy.metric("itsup_proxy_tls_handshakes_total{result=\"ok\"}").await >= 5.0);
        assert!(proxy.metric("itsup_proxy_tls_handshakes_total{result=\"failed\"}").await >= 2.0);
    });
}

#[test]
fn alpn_chooses_http2_or_http1_and_both_are_proxied() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n",
            up.addr
        ));
        let addr = proxy.tls[0];
        // No certificate configured: the self-signed default made at start.
        let s = dial(addr, "any.test", client(None, &["h2", "http/1.1"])).await.expect("tls");
        let leaf = peer_leaf(&s);
        let needle = b"itsup-default.invalid";
        assert!(
            leaf.as_ref().windows(needle.len()).any(|w| w == needle),
            "the self-signed default names itsup-default.invalid"
        );
        assert_eq!(alpn(&s).as_deref(), Some("h2"));
        let req = Request::get("https://any.test/x")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, _, body) = h2(s, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));

        let s = dial(addr, "any.test", client(None, &["http/1.1"])).await.expect("tls");
        assert_eq!(alpn(&s).as_deref(), Some("http/1.1"));
        let req = Request::get("/y").header("host", "any.test").body(Full::new(Bytes::new())).expect("r");
        let (status, _, body) = h1(s, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));

        // No ALPN at all: HTTP/1.1.
        let s = dial(addr, "any.test", client(None, &[])).await.expect("tls");
        assert_eq!(alpn(&s), None);
        let req = Request::get("/z").header("host", "any.test").body(Full::new(Bytes::new())).expect("r");
        assert_eq!(h1(s, req).await.0, StatusCode::OK);
        assert_eq!(proxy.metric("itsup_proxy_tls_alpn_h2_total").await, 1.0);
    });
}

#[test]
fn the_certificate_folder_is_reloaded_without_a_restart() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let ca = Ca::new("test ca");
        let certs = tempfile::tempdir().expect("tempdir");
        let first = ca.leaf(&["app.test"]);
        first.write(certs.path(), "app");
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{cert_dir: \"{}\", unknown_sni: reject}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n",
            certs.path().display(),
            up.addr
        ));
        let addr = proxy.tls[0];
        let trusting = client(Some(ca.roots()), &["http/1.1"]);
        let s = dial(addr, "app.test", trusting.clone()).await.expect("first");
        assert_eq!(peer_leaf(&s), first.der);
        // An open connection keeps working across the swap.
        let keep = s;

        // Renewed in place (written to a temp name, renamed, as certbot-like tools do), and a
        // new name added.
        let second = ca.leaf(&["app.test"]);
        let staging = tempfile::tempdir_in(certs.path().parent().expect("parent")).expect("stage");
        let (c, k) = second.write(staging.path(), "app");
        std::fs::rename(k, certs.path().join("app.key")).expect("rename key");
        std::fs::rename(c, certs.path().join("app.crt")).expect("rename cert");
        ca.leaf(&["new.test"]).write(certs.path(), "new");
        proxy
            .wait_for("the renewed certificate", Duration::from_secs(10), || {
                let trusting = trusting.clone();
                let want = second.der.clone();
                async move {
                    dial(addr, "app.test", trusting)
                        .await
                        .is_ok_and(|s| peer_leaf(&s) == want)
                }
            })
            .await;
        dial(addr, "new.test", trusting.clone()).await.expect("added name served");

        // A half-written pair keeps the last good certificate.
        std::fs::write(certs.path().join("app.crt"), "-----BEGIN CERTIFICATE-----\ngarbage").expect("w");
        tokio::time::sleep(Duration::from_millis(800)).await;
        let s = dial(addr, "app.test", trusting.clone()).await.expect("still served");
        assert_eq!(peer_leaf(&s), second.der);

        // Removed: the name is unknown again.
        std::fs::remove_file(certs.path().join("new.crt")).expect("rm");
        proxy
            .wait_for("the removed name to be refused", Duration::from_secs(10), || {
                let trusting = trusting.clone();
                async move { dial(addr, "new.test", trusting).await.is_err() }
            })
            .await;
        let req = Request::get("/still").header("host", "app.test").body(Full::new(Bytes::new())).expect("r");
        assert_eq!(h1(keep, req).await.0, StatusCode::OK, "the old connection still serves");
    });
}

#[test]
fn websocket_upgrades_through_the_https_listener() {
    mt().block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", tls: {{}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes: [{{cluster: web}}]\nclusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n",
            up.addr
        ));
        let stream = dial(proxy.tls[0], "ws.test", client(None, &["http/1.1"]))
            .await
            .expect("tls");
        assert_eq!(alpn(&stream).as_deref(), Some("http/1.1"));
        let (mut ws, resp) = tokio_tungstenite::client_async("wss://ws.test/ws", stream)
            .await
            .expect("upgrade over TLS");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(proxy.metric("itsup_proxy_active_tunnels").await, 1.0);
        // Messages both ways, one larger than a TLS record.
        for text in ["hello".to_string(), "x".repeat(40_000)] {
            ws.send(Message::text(text.clone())).await.expect("send");
            let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("an echo")
                .expect("a message")
                .expect("ok");
            assert_eq!(echo.into_text().expect("text").as_str(), text);
        }
        // The closing handshake through the tunnel, then the client goes.
        ws.close(None).await.expect("close");
        let rest = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        assert!(rest.is_ok(), "the upstream's close frame came back");
        drop(ws);
        proxy
            .wait_for("the tunnel closed", Duration::from_secs(5), || async {
                proxy.metric("itsup_proxy_active_tunnels").await == 0.0
            })
            .await;
    });
}

#[test]
fn plain_http_is_redirected_except_acme_challenges_and_hsts_is_sent_over_tls() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:0\", redirect_https: {{port: 8443}}}}\n  - {{address: \"127.0.0.1:0\", tls: {{}}}}\nadmin: {{address: \"127.0.0.1:0\"}}\nroutes:\n  - {{cluster: web, hsts: {{max_age_s: 600, include_subdomains: true}}}}\nclusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n",
            up.addr
        ));
        let (status, headers, _) = get(proxy.addr, "shop.test:80", "/a/b?x=1&y=2").await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers["location"], "https://shop.test:8443/a/b?x=1&y=2");
        let req = Request::post("/form")
            .header("host", "shop.test")
            .body(Full::new(Bytes::from_static(b"a=1")))
            .expect("r");
        let (status, headers, _) = send(proxy.addr, req).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers["location"], "https://shop.test:8443/form");
        // ACME HTTP-01 validations are proxied as they are, never redirected.
        let (status, _, body) = get(proxy.addr, "shop.test", "/.well-known/acme-challenge/tok").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
        assert_eq!(up.last().path, "/.well-known/acme-challenge/tok");
        assert!(proxy.metric("itsup_proxy_https_redirects_total").await >= 2.0);

        let (status, headers, _) = get_tls(proxy.tls[0], "shop.test", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["strict-transport-security"], "max-age=600; includeSubDomains");
    });
}

#[test]
fn upstream_tls_and_mutual_tls_verify_by_default_and_failures_are_502_with_a_log_line() {
    mt().block_on(async {
        let ca = Ca::new("upstream ca");
        let client_ca = Ca::new("client ca");
        let other_ca = Ca::new("someone else");
        let dir = tempfile::tempdir().expect("tempdir");
        let server_leaf = ca.leaf(&["backend.internal"]);
        let plain_tls = TlsUpstream::start(&server_leaf, None).await;
        let mtls = TlsUpstream::start(&server_leaf, Some(&client_ca)).await;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("ca");
        let other_file = dir.path().join("other.pem");
        std::fs::write(&other_file, other_ca.pem()).expect("other");
        let (client_cert, client_key) = client_ca.leaf(&["proxy.internal"]).write(dir.path(), "client");
        let cluster = |name: &str, addr, protocol: &str, tls: String| {
            format!("  {name}: {{protocol: {protocol}, servers: [{{address: \"{addr}\"}}], tls: {{server_name: backend.internal{tls}}}}}\n")
        };
        let ca_opt = format!(", ca: \"{}\"", ca_file.display());
        let client_opt = format!(
            "{ca_opt}, client_cert: \"{}\", client_key: \"{}\"",
            client_cert.display(),
            client_key.display()
        );
        let mut config = format!(
            "{HEAD}routes:\n{}clusters:\n",
            ["https", "h2tls", "mtls", "nocert", "wrongca", "wrongname", "noverify"]
                .iter()
                .map(|c| format!("  - {{host: {c}.test, cluster: {c}, retries: 0}}\n"))
                .collect::<String>()
        );
        config += &cluster("https", plain_tls.addr, "http1", ca_opt.clone());
        config += &cluster("h2tls", plain_tls.addr, "h2", ca_opt.clone());
        config += &cluster("mtls", mtls.addr, "http1", client_opt.clone());
        config += &cluster("nocert", mtls.addr, "http1", ca_opt.clone());
        config += &cluster("wrongca", plain_tls.addr, "http1", format!(", ca: \"{}\"", other_file.display()));
        config += &format!(
            "  wrongname: {{servers: [{{address: \"{}\"}}], tls: {{server_name: other.internal{ca_opt}}}}}\n",
            plain_tls.addr
        );
        config += &format!(
            "  noverify: {{servers: [{{address: \"{}\"}}], tls: {{verify: false}}}}\n",
            plain_tls.addr
        );
        // Health checks speak TLS too: a verified server comes up, an unverifiable one goes down.
        for (name, tls) in [("checked", ca_opt.clone()), ("checkedbad", format!(", ca: \"{}\"", other_file.display()))] {
            config += &format!(
                "  {name}: {{servers: [{{address: \"{}\"}}], health_check: {{path: /h, interval_ms: 100, rise: 1, fall: 1}}, tls: {{server_name: backend.internal{tls}}}}}\n",
                plain_tls.addr
            );
        }
        let proxy = Proxy::start(&config);
        let up = |cluster: &'static str| {
            let proxy = &proxy;
            let name = format!(
                "itsup_proxy_upstream_up{{cluster=\"{cluster}\",server=\"{}\"}}",
                plain_tls.addr
            );
            async move { proxy.metric(&name).await }
        };
        proxy
            .wait_for("health checks over TLS", Duration::from_secs(5), || async {
                up("checked").await == 1.0 && up("checkedbad").await == 0.0
            })
            .await;

        let (status, _, body) = get(proxy.addr, "https.test", "/p").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "tls-upstream HTTP/1.1 /p"));
        let (status, _, body) = get(proxy.addr, "h2tls.test", "/q").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "tls-upstream HTTP/2.0 /q"));
        let (status, _, body) = get(proxy.addr, "mtls.test", "/m").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "tls-upstream HTTP/1.1 /m"));
        let (status, _, body) = get(proxy.addr, "noverify.test", "/n").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "tls-upstream HTTP/1.1 /n"));

        for host in ["nocert.test", "wrongca.test", "wrongname.test"] {
            let (status, _, _) = get(proxy.addr, host, "/").await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{host}");
        }
        let logs = || proxy.stderr.lock().expect("lock").join("\n");
        proxy
            .wait_for("the TLS failure log lines", Duration::from_secs(5), || {
                let text = logs();
                async move {
                    text.matches("upstream TLS failed").count() >= 3
                }
            })
            .await;
        let text = logs();
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("not valid for name"), "{text}");
        assert!(text.contains("CertificateRequired"), "{text}");
        assert!(text.contains("verification is OFF"), "{text}");
        assert!(text.contains("\"cluster\":\"wrongca\""), "{text}");
        assert!(text.contains("\"cluster\":\"nocert\""), "{text}");
    });
}

#[test]
fn broken_tls_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let config = dir.path().join("proxy.yml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: \"127.0.0.1:0\"}}]\nclusters: {{c: {{servers: [{{address: \"127.0.0.1:1\"}}], tls: {{ca: \"{}\"}}}}}}\n",
            missing.display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(itsup_bin())
        .args(["proxy", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clusters.c.tls") && err.contains("missing.pem"),
        "{err}"
    );

    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: \"127.0.0.1:0\", tls: {{certificates: [{{cert: \"{0}\", key: \"{0}\"}}]}}}}]\nclusters: {{c: {{protocol: h2, servers: [{{address: \"127.0.0.1:1\"}}]}}}}\n",
            missing.display()
        ),
    )
    .expect("write");
    let out = std::process::Command::new(itsup_bin())
        .args(["proxy", "--check", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clusters.c.protocol: h2 is HTTP/2 over TLS"),
        "{err}"
    );
}
