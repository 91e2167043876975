//! ACME for real in `itsup proxy`: the real binary obtains certificates from Debian's `pebble`
//! over HTTP-01, answered on the proxy's own plain-HTTP listener (pebble's VA `httpPort` is
//! the proxy's listener port; `pebble-challtestsrv` resolves every name to 127.0.0.1). No
//! `PEBBLE_VA_ALWAYS_VALID`: every validation request really reaches the proxy, and
//! `PEBBLE_AUTHZREUSE=0` makes every order validate again. Pebble's HTTPS certificate is made
//! here and trusted through `acme.ca_bundle`.
//!
//! The certificates are read from the store folder (the TLS listeners serving them are the
//! other half of issue 13): names, issuer and the chain verified against pebble's root with
//! rustls/webpki, key files 0600. Orders are counted at pebble (its log) and in `/metrics`.

mod proxy_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use proxy_support::pebble::{Pebble, PebbleOptions, pebble_certs};
use proxy_support::*;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// A pebble, its folder and a store folder for the proxies of one test.
struct Ca {
    work: tempfile::TempDir,
    pebble: Pebble,
}

impl Ca {
    fn start(http_port: u16, validity_secs: Option<u64>) -> Ca {
        let work = tempfile::tempdir().expect("tempdir");
        let dir = work.path().join("pebble");
        std::fs::create_dir_all(&dir).expect("mkdir");
        pebble_certs(&dir, "127.0.0.1");
        let pebble = Pebble::start(
            &dir,
            PebbleOptions {
                validity_secs,
                authz_reuse: Some(0),
                ..PebbleOptions::http(http_port)
            },
        );
        Ca { work, pebble }
    }

    fn store(&self) -> PathBuf {
        self.work.path().join("store")
    }

    /// A proxy config: one listener on `http_port`, admin on any port, ACME for `sets`.
    fn config(&self, http_port: u16, sets: &[&[&str]]) -> String {
        let mut certs = String::new();
        for names in sets {
            certs.push_str(&format!("    - names: [{}]\n", names.join(", ")));
        }
        if sets.is_empty() {
            certs.push_str("    []\n");
        }
        format!(
            "listeners: [{{address: \"127.0.0.1:{http_port}\"}}]\n\
             admin: {{address: \"127.0.0.1:0\"}}\n\
             clusters: {{}}\n\
             acme:\n  email: ops@example.com\n  ca_server: {}\n  ca_bundle: {}\n  store: {}\n  challenge: http-01\n  certificates:\n{certs}",
            self.pebble.directory("127.0.0.1"),
            self.pebble.dir.join("ca.pem").display(),
            self.store().display(),
        )
    }
}

/// The stored chain and key of the set whose first name is `first`.
fn stored(store: &Path, first: &str) -> Option<(PathBuf, String)> {
    let dir = std::fs::read_dir(store.join("certificates"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{first}-")))
        })?;
    let chain = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    Some((dir, chain))
}

/// What the test checks of a leaf certificate.
#[derive(Debug, PartialEq)]
struct Leaf {
    serial: String,
    names: Vec<String>,
    issuer: String,
    not_before: i64,
    not_after: i64,
}

fn leaf(chain_pem: &str) -> Leaf {
    let der = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let names = cert
        .subject_alternative_name()
        .expect("san")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Leaf {
        serial: cert.raw_serial_as_string(),
        names,
        issuer: cert.issuer().to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// Verifies the chain for `name` against pebble's current root, as a TLS client would.
fn verify(chain_pem: &str, root: &Path, name: &str) -> Result<(), rustls::Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain PEM");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).expect("root") {
        roots.add(cert.expect("root PEM")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .expect("verifier");
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_string()).expect("name"),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// A metric series of the ACME manager for a name set (`names` label).
async fn set_metric(proxy: &Proxy, name: &str, names: &str) -> f64 {
    proxy.metric(&format!("{name}{{names=\"{names}\"}}")).await
}

/// Waits until the store holds a chain for `first` with a serial not in `not`.
async fn wait_for_new_chain(
    store: &Path,
    first: &str,
    not: &[&str],
    limit: Duration,
    proxies: &[&Proxy],
    ca: &Ca,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((_, chain)) = stored(store, first)
            && !not.contains(&leaf(&chain).serial.as_str())
        {
            return chain;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = proxies
                .iter()
                .map(|p| p.stderr.lock().expect("lock").join("\n"))
                .collect();
            panic!(
                "no new certificate for {first} within {limit:?}\nproxies:\n{}\npebble:\n{}",
                logs.join("\n----\n"),
                ca.pebble.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn http01_certificate_is_stored_0600_and_a_restart_reuses_it() {
    mt().block_on(async {
        let http_port = free_port();
        let ca = Ca::start(http_port, None);
        let config = ca.config(http_port, &[&["site.example.com", "www.site.example.com"]]);
        let proxy = Proxy::start(&config);
        let store = ca.store();
        let chain = wait_for_new_chain(
            &store,
            "site.example.com",
            &[],
            Duration::from_secs(60),
            &[&proxy],
            &ca,
        )
        .await;
        let first = leaf(&chain);
        assert_eq!(first.names, ["site.example.com", "www.site.example.com"]);
        assert!(first.issuer.contains("Pebble Intermediate"), "{first:?}");
        let root = ca.pebble.fetch_root();
        for name in ["site.example.com", "www.site.example.com"] {
            verify(&chain, &root, name).expect("chain valid for the name up to pebble's root");
        }
        assert!(
            verify(&chain, &root, "other.example.com").is_err(),
            "not valid for another name"
        );

        // Keys are 0600, the folder 0700; the account is kept.
        let (set_dir, _) = stored(&store, "site.example.com").expect("stored");
        assert_eq!(mode(&set_dir.join("key.pem")), 0o600);
        assert_eq!(mode(&store), 0o700);
        let accounts: Vec<PathBuf> = std::fs::read_dir(store.join("accounts"))
            .expect("accounts")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        assert_eq!(accounts.len(), 1, "{accounts:?}");
        assert_eq!(mode(&accounts[0]), 0o600);

        // The validation request reached the proxy's listener, answered before routing
        // (the config has no route at all).
        let stderr = proxy.stderr.lock().expect("lock").join("\n");
        assert!(
            stderr.contains("answered an ACME HTTP-01 validation request"),
            "{stderr}"
        );
        let label = "site.example.com,www.site.example.com";
        proxy
            .wait_for(
                "metrics of the issued certificate",
                Duration::from_secs(5),
                || async { proxy.metric("itsup_proxy_acme_certificates").await == 1.0 },
            )
            .await;
        assert_eq!(
            set_metric(&proxy, "itsup_proxy_acme_orders_total", label).await,
            1.0
        );
        assert_eq!(
            set_metric(
                &proxy,
                "itsup_proxy_acme_certificate_not_after_seconds",
                label
            )
            .await,
            first.not_after as f64
        );
        // Default validity (years): renewal when a third is left.
        let renew_at = first.not_after - (first.not_after - first.not_before) / 3;
        let next = set_metric(&proxy, "itsup_proxy_acme_next_attempt_seconds", label).await;
        assert!(
            (next - renew_at as f64).abs() <= 1.0,
            "{next} vs {renew_at}"
        );
        assert_eq!(ca.pebble.issued(), 1, "one order at pebble");

        // A restart serves the stored certificate and orders nothing.
        drop(proxy);
        let proxy = Proxy::start(&config);
        proxy
            .wait_for("the stored certificate", Duration::from_secs(5), || async {
                proxy.metric("itsup_proxy_acme_certificates").await == 1.0
            })
            .await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            set_metric(&proxy, "itsup_proxy_acme_orders_total", label).await,
            0.0
        );
        assert_eq!(ca.pebble.issued(), 1, "no new order after the restart");
        let (_, again) = stored(&store, "site.example.com").expect("stored");
        assert_eq!(again, chain, "the store is untouched");
        let stderr = proxy.stderr.lock().expect("lock").join("\n");
        assert!(
            stderr.contains("certificate loaded from the store"),
            "{stderr}"
        );
    });
}

#[test]
fn short_lived_certificates_are_renewed_and_an_unreachable_ca_is_retried_with_backoff() {
    mt().block_on(async {
        let http_port = free_port();
        // 30 s certificates: renewal due 20 s after issue.
        let mut ca = Ca::start(http_port, Some(30));
        let names = "renew.example.com";
        let proxy = Proxy::start(&ca.config(http_port, &[&[names]]));
        let store = ca.store();
        let limit = Duration::from_secs(60);
        let first = wait_for_new_chain(&store, names, &[], limit, &[&proxy], &ca).await;
        let first = leaf(&first);
        // Pebble's notAfter is the last valid second: notBefore + 30 s - 1 s.
        assert!(
            (29..=30).contains(&(first.not_after - first.not_before)),
            "{first:?}"
        );

        // Renewal when a third of the lifetime is left, the old certificate in use until then.
        let second =
            wait_for_new_chain(&store, names, &[&first.serial], limit, &[&proxy], &ca).await;
        let second = leaf(&second);
        let renewed_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!(
            renewed_at >= first.not_after - 10 - 2 && renewed_at < first.not_after,
            "renewed at {renewed_at}, first certificate {first:?}"
        );
        assert_eq!(ca.pebble.issued(), 2);
        assert_eq!(
            proxy.metric("itsup_proxy_acme_certificates").await,
            1.0,
            "a certificate is in use throughout"
        );

        // The CA goes away: the certificate stays, orders fail and back off (5 s, 10 s, …).
        ca.pebble.stop();
        proxy
            .wait_for("two failed renewals", Duration::from_secs(40), || async {
                set_metric(&proxy, "itsup_proxy_acme_consecutive_failures", names).await >= 2.0
            })
            .await;
        let (_, kept) = stored(&store, names).expect("kept in the store");
        assert_eq!(
            leaf(&kept).serial,
            second.serial,
            "the store keeps the certificate"
        );
        assert_eq!(
            set_metric(
                &proxy,
                "itsup_proxy_acme_certificate_not_after_seconds",
                names
            )
            .await,
            second.not_after as f64,
            "the certificate in use is kept"
        );
        let next = set_metric(&proxy, "itsup_proxy_acme_next_attempt_seconds", names).await;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as f64;
        assert!(
            next > now + 3.0,
            "the third attempt waits for the doubled backoff: next {next}, now {now}"
        );
        let stderr = proxy.stderr.lock().expect("lock").join("\n");
        let retries: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ACME order failed"))
            .collect();
        assert!(retries.len() >= 2, "{stderr}");
        assert!(retries[0].contains("\"retry_in_s\":5"), "{}", retries[0]);
        assert!(retries[1].contains("\"retry_in_s\":10"), "{}", retries[1]);

        // The CA is back (a new pebble, which does not know the account): the next retry
        // registers again and renews.
        ca.pebble.resume();
        let third = wait_for_new_chain(
            &store,
            names,
            &[&first.serial, &second.serial],
            Duration::from_secs(40),
            &[&proxy],
            &ca,
        )
        .await;
        verify(&third, &ca.pebble.fetch_root(), names).expect("issued by the new pebble");
        assert_eq!(
            set_metric(&proxy, "itsup_proxy_acme_consecutive_failures", names).await,
            0.0
        );
    });
}

#[test]
fn two_proxies_sharing_a_store_place_one_order_per_name_set() {
    mt().block_on(async {
        // Pebble validates on proxy A's port only.
        let (port_a, port_b) = (free_port(), free_port());
        let ca = Ca::start(port_a, None);
        let shared = ["shared.example.com"];
        let only_b = ["b-only.example.com"];
        let a = Proxy::start(&ca.config(port_a, &[&shared]));
        let b = Proxy::start(&ca.config(port_b, &[&shared, &only_b]));
        let store = ca.store();
        let limit = Duration::from_secs(60);
        let chain = wait_for_new_chain(&store, shared[0], &[], limit, &[&a, &b], &ca).await;
        // B's own set is validated through A, which answers from the shared store.
        wait_for_new_chain(&store, only_b[0], &[], limit, &[&a, &b], &ca).await;
        for p in [&a, &b] {
            p.wait_for(
                "the shared certificate",
                Duration::from_secs(15),
                || async {
                    set_metric(
                        p,
                        "itsup_proxy_acme_certificate_not_after_seconds",
                        shared[0],
                    )
                    .await
                        == leaf(&chain).not_after as f64
                },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
        let orders = set_metric(&a, "itsup_proxy_acme_orders_total", shared[0]).await
            + set_metric(&b, "itsup_proxy_acme_orders_total", shared[0]).await;
        assert_eq!(
            orders, 1.0,
            "one order for the shared set between both proxies"
        );
        assert_eq!(
            set_metric(&b, "itsup_proxy_acme_orders_total", only_b[0]).await,
            1.0
        );
        assert_eq!(
            ca.pebble.issued(),
            2,
            "one certificate per name set at pebble"
        );
        let a_log = a.stderr.lock().expect("lock").join("\n");
        let answered = a_log
            .matches("answered an ACME HTTP-01 validation request")
            .count();
        assert!(answered >= 2, "A answered both validations:\n{a_log}");
    });
}
