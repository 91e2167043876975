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

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deploy_support::*;

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and pebble's server certificate for `ip` (and 127.0.0.1), in `dir`.
fn pebble_certs(dir: &Path, ip: &str) {
    sh(
        dir,
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
               -keyout ca.key -out ca.pem -subj /CN=itsup-test-pebble-ca \
               -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
               -keyout key.pem -out req.csr -subj /CN=pebble 2>/dev/null
             printf 'subjectAltName=IP:{ip},IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
             openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
               -extfile ext.cnf -out cert.pem 2>/dev/null"
        ),
    );
}

/// pebble-challtestsrv (DNS only, every name → 127.0.0.1) and pebble using it.
fn start_pebble(dir: &Path, http_port: u16) -> (Proc, Proc, u16, u16) {
    let (dns, challtest_mgmt, acme, mgmt) = (free_port(), free_port(), free_port(), free_port());
    let challtestsrv = Command::new("pebble-challtestsrv")
        .args([
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-management",
            &format!("127.0.0.1:{challtest_mgmt}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (apt install pebble)");
    let config = serde_json::json!({"pebble": {
        // Containers reach it on the proxy network's gateway: listen on every address.
        "listenAddress": format!("0.0.0.0:{acme}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("cert.pem"),
        "privateKey": dir.join("key.pem"),
        "httpPort": http_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).expect("pebble config");
    let log = std::fs::File::create(dir.join("pebble.log")).expect("pebble log");
    let pebble = Command::new("pebble")
        .args(["-config", "pebble.json", "-dnsserver"])
        .arg(format!("127.0.0.1:{dns}"))
        .current_dir(dir)
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("pebble (apt install pebble)");
    let up = eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", acme)).ok()
    });
    assert!(up.is_some(), "pebble did not listen");
    (Proc(challtestsrv), Proc(pebble), acme, mgmt)
}

/// Orders pebble issued a certificate for so far.
fn issued(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("pebble.log"))
        .unwrap_or_default()
        .matches("Issued certificate serial")
        .count()
}

/// The certificate served for `name`, verified against pebble's root (`root.pem`) for that
/// name: its serial, or why not.
fn served_serial(dir: &Path, port: u16, name: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} -CAfile root.pem \
               -verify_return_error -verify_hostname {name} </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .current_dir(dir)
        .output()
        .expect("openssl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn traefik_obtains_pebble_certificates_and_keeps_them_across_a_restart() {
    clean_stale();
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    // Traefik reaches pebble on the gateway of the network apply creates with this subnet.
    let probe = Fixture::traefik(TRAEFIK, "");
    let gateway = probe.gateway();
    pebble_certs(dir, &gateway);
    let (_challtestsrv, _pebble, acme_port, mgmt_port) = start_pebble(dir, probe.http_port);
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
    sh(
        dir,
        &format!("curl -sf --cacert ca.pem https://127.0.0.1:{mgmt_port}/roots/0 > root.pem"),
    );
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
            std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
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
    let orders = issued(dir);
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
    assert_eq!(issued(dir), orders, "no new order after the restart");
    assert!(
        f.root.join("proxy/data/acme/acme.json").is_file(),
        "acme.json kept on the host"
    );
}
