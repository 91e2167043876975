//! ACME for real: the rendered Traefik stack (the real Traefik in `traefik:v3.6`, its Docker
//! socket proxy stand-in) obtains certificates from Debian's `pebble` through `acme.caServer`,
//! trusting pebble's HTTPS certificate through `acme.caBundle`, serves them for the bundled
//! example's website names (`example.com` + `www.example.com`, one certificate), and keeps them
//! across a restart of the Traefik container (same serial, no new order at pebble).
//!
//! DNS: `pebble-challtestsrv` is pebble's resolver and answers every name with 127.0.0.1, where
//! Traefik's HTTP entrypoint is published; HTTP-01 is validated for real (no
//! `PEBBLE_VA_ALWAYS_VALID`). Pebble's HTTPS certificate and its CA are generated here with
//! `openssl`; Traefik reaches pebble on the proxy network's gateway.

mod deploy_support;

use std::time::Duration;

use deploy_support::pebble::{Pebble, PebbleOptions, pebble_certs, served_serial, sh};
use deploy_support::*;

#[test]
fn traefik_obtains_pebble_certificates_and_keeps_them_across_a_restart() {
    clean_stale();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    // Traefik reaches pebble on the gateway of the network apply creates with this subnet.
    let probe = Fixture::traefik(TRAEFIK, "");
    let gateway = probe.gateway();
    pebble_certs(dir, &gateway);
    // Containers reach pebble on the proxy network's gateway: it listens on every address.
    let pebble = Pebble::start(
        dir,
        PebbleOptions {
            listen_ip: "0.0.0.0".to_string(),
            ..PebbleOptions::http(probe.http_port)
        },
    );
    let acme_port = pebble.acme_port;
    let f = probe;
    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("ca");
    f.write("projects/ca/pebble.pem", &ca);
    let itsup_yml = std::fs::read_to_string(f.root.join("projects/itsup.yml")).expect("itsup.yml");
    f.write(
        "projects/itsup.yml",
        &format!(
            "{itsup_yml}acme:\n  email: ops@example.com\n  staging: true\n  caServer: https://{gateway}:{acme_port}/dir\n  caBundle: ca/pebble.pem\n"
        ),
    );
    // The bundled example's website: one certificate for the apex and www.
    let web = f.name("web");
    f.write(
        &format!("projects/{web}/ingress.yml"),
        "ingress:\n  - service: app\n    port: 8080\n    tls:\n      main: example.com\n      sans: [www.example.com]\n",
    );
    f.write(
        &format!("projects/{web}/docker-compose.yml"),
        &format!(
            "services:\n  app:\n    image: {APP_V1}\n    environment:\n      PORT: \"8080\"\n    healthcheck:\n      test: [\"CMD\", \"/usr/local/bin/testapp\", \"check\"]\n      interval: 1s\n      timeout: 2s\n      retries: 2\n"
        ),
    );
    f.itsup_expect(&["apply"], 0);
    let rendered = std::fs::read_to_string(f.root.join("proxy/traefik/traefik.yml")).expect("yml");
    assert!(
        rendered.contains(&format!("caServer: \"https://{gateway}:{acme_port}/dir\""))
            && rendered.contains("/etc/traefik/ca/acme-ca.pem"),
        "caServer wins over staging, the bundle is trusted:\n{rendered}"
    );

    // Pebble's issuing root: new at every pebble start, so fetched, not generated.
    pebble.fetch_root();
    let serial = eventually(Duration::from_secs(60), || {
        served_serial(dir, f.https_port, "www.example.com").ok()
    })
    .unwrap_or_else(|| {
        let logs = f
            .proxy_container("traefik")
            .map(|id| docker(&["logs", "--tail", "30", &id]))
            .unwrap_or_default();
        panic!(
            "no pebble certificate served for www.example.com: {:?}\ntraefik: {logs}\npebble: {}",
            served_serial(dir, f.https_port, "www.example.com"),
            pebble.log()
        )
    });
    assert_eq!(
        served_serial(dir, f.https_port, "example.com").as_deref(),
        Ok(serial.as_str()),
        "one certificate for the apex and www"
    );
    // A verified request end to end: pebble's chain, the right container.
    sh(
        dir,
        &format!(
            "curl -sf --cacert root.pem --resolve www.example.com:{p}:127.0.0.1 \
               https://www.example.com:{p}/ | grep -q v1",
            p = f.https_port
        ),
    );
    let orders = pebble.issued();
    assert_eq!(orders, 1, "one order for one certificate");

    let traefik = f.proxy_container("traefik").expect("traefik runs");
    docker(&["restart", "-t", "5", &traefik]);
    let again = eventually(Duration::from_secs(30), || {
        served_serial(dir, f.https_port, "www.example.com").ok()
    });
    assert_eq!(
        again.as_deref(),
        Some(serial.as_str()),
        "the stored certificate is served after a restart"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pebble.issued(), orders, "no new order after the restart");
    assert!(
        f.root.join("proxy/data/acme/acme.json").is_file(),
        "acme.json kept on the host"
    );
}
