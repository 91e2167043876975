//! ACME certificates served by `itsup proxy`'s TLS listeners, against Debian's `pebble` (its
//! VA really connects; `pebble-challtestsrv` resolves every name to 127.0.0.1): a TLS-ALPN-01
//! validation answered by the listener's resolver (ALPN `acme-tls/1`), then the issued
//! certificate served by SNI, verified up to pebble's root, while another name still gets the
//! self-signed default.

mod proxy_support;

use std::time::Duration;

use hyper::StatusCode;
use proxy_support::pebble::{Pebble, PebbleOptions, pebble_certs};
use proxy_support::tls::*;
use proxy_support::*;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

#[test]
fn tls_alpn01_certificate_is_issued_and_served_by_sni() {
    mt().block_on(async {
        let up = Upstream::start("web").await;
        let tls_port = free_port();
        let work = tempfile::tempdir().expect("tempdir");
        let dir = work.path().join("pebble");
        std::fs::create_dir_all(&dir).expect("mkdir");
        pebble_certs(&dir, "127.0.0.1");
        let pebble = Pebble::start(
            &dir,
            PebbleOptions {
                tls_port,
                authz_reuse: Some(0),
                ..PebbleOptions::http(free_port())
            },
        );
        let proxy = Proxy::start(&format!(
            "listeners:\n  - {{address: \"127.0.0.1:{tls_port}\", tls: {{}}}}\n\
             admin: {{address: \"127.0.0.1:0\"}}\n\
             routes: [{{cluster: web}}]\n\
             clusters: {{web: {{servers: [{{address: \"{}\"}}]}}}}\n\
             acme:\n  ca_server: {}\n  ca_bundle: {}\n  store: {}\n  challenge: tls-alpn-01\n  certificates:\n    - names: [alpn.example.com]\n",
            up.addr,
            pebble.directory("127.0.0.1"),
            pebble.dir.join("ca.pem").display(),
            work.path().join("store").display(),
        ));
        let addr = proxy.tls[0];

        let root_pem = std::fs::read(pebble.fetch_root()).expect("root");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&root_pem) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let trusting = client(Some(roots), &["http/1.1"]);
        proxy
            .wait_for(
                "the certificate from pebble, served by SNI",
                Duration::from_secs(60),
                || {
                    let trusting = trusting.clone();
                    async move { dial(addr, "alpn.example.com", trusting).await.is_ok() }
                },
            )
            .await;
        assert_eq!(pebble.issued(), 1, "one order");
        let log = proxy.stderr.lock().expect("lock").join("\n");
        assert!(!log.contains("answered an ACME HTTP-01"), "validated over TLS-ALPN-01: {log}");

        // Requests go through on it; another name still gets the self-signed default.
        let s = dial(addr, "alpn.example.com", trusting.clone()).await.expect("tls");
        let req = hyper::Request::get("/")
            .header("host", "alpn.example.com")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let (status, _, body) = h1(s, req).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "web"));
        let other = dial(addr, "other.example.com", client(None, &["http/1.1"])).await.expect("tls");
        let needle = b"itsup-default.invalid";
        assert!(
            peer_leaf(&other).as_ref().windows(needle.len()).any(|w| w == needle),
            "the self-signed default for a name without certificate"
        );
    });
}
