//! Debian's `pebble` (a real ACME server, RFC 8555) and `pebble-challtestsrv` (its DNS: every
//! name resolves to 127.0.0.1) for the ACME tests, installed by `.ci/setup.sh`. Pebble's own
//! HTTPS certificate and its CA are generated here with `openssl`; challenges are validated for
//! real (no `PEBBLE_VA_ALWAYS_VALID`): the VA connects to `http_port` for HTTP-01 and
//! `tls_port` for TLS-ALPN-01 on 127.0.0.1.
//!
//! Included by the `*_support` modules (`#[path = "../shared/pebble.rs"] pub mod pebble;`)
//! beside `support.rs`, whose port and polling helpers it uses.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::support::{eventually, free_port};

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a bash script in `dir`; panics with its stderr when it fails.
pub fn sh(dir: &Path, script: &str) {
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

/// A CA (`ca.pem`) and pebble's server certificate for `ip` and 127.0.0.1 (`cert.pem`,
/// `key.pem`), in `dir`.
pub fn pebble_certs(dir: &Path, ip: &str) {
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

/// How a pebble is set up.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// Address pebble's ACME API listens on (`0.0.0.0` for containers on a bridge).
    pub listen_ip: String,
    /// Port the VA connects to for HTTP-01.
    pub http_port: u16,
    /// Port the VA connects to for TLS-ALPN-01.
    pub tls_port: u16,
    /// Lifetime of issued certificates in seconds (pebble's default: 5 years).
    pub validity_secs: Option<u64>,
    /// `PEBBLE_AUTHZREUSE`: percentage of valid authorizations reused by new orders (pebble's
    /// default 50; 0 makes every order validate).
    pub authz_reuse: Option<u8>,
}

impl PebbleOptions {
    pub fn http(http_port: u16) -> Self {
        Self {
            listen_ip: "127.0.0.1".to_string(),
            http_port,
            tls_port: free_port(),
            validity_secs: None,
            authz_reuse: None,
        }
    }
}

/// A running pebble and its DNS server, stopped when dropped.
pub struct Pebble {
    pub dir: PathBuf,
    pub acme_port: u16,
    pub mgmt_port: u16,
    pub options: PebbleOptions,
    dns_port: u16,
    challtestsrv: Proc,
    pebble: Option<Proc>,
    /// While pebble is stopped: its ports, bound but not listening (connections are refused
    /// and no other test process can take them before [`Pebble::resume`]).
    reserved: Vec<socket2::Socket>,
}

impl Pebble {
    /// Starts `pebble-challtestsrv` (DNS only, every name → 127.0.0.1) and pebble using it, in
    /// `dir`, which must hold the files of [`pebble_certs`]. Pebble logs to `pebble.log`.
    pub fn start(dir: &Path, options: PebbleOptions) -> Pebble {
        let (dns_port, challtest_mgmt) = (free_port(), free_port());
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
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
        let mut pebble = Pebble {
            dir: dir.to_path_buf(),
            acme_port: free_port(),
            mgmt_port: free_port(),
            options,
            dns_port,
            challtestsrv: Proc(challtestsrv),
            pebble: None,
            reserved: Vec::new(),
        };
        pebble.resume();
        pebble
    }

    /// Stops pebble (the DNS server stays): the CA refuses connections.
    pub fn stop(&mut self) {
        self.pebble = None;
        for port in [self.acme_port, self.mgmt_port] {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
            socket.bind(&addr.into()).expect("reserve pebble's port");
            self.reserved.push(socket);
        }
    }

    /// Starts pebble again on the same ports (a new pebble: new roots, no accounts).
    pub fn resume(&mut self) {
        self.reserved.clear();
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("{}:{}", self.options.listen_ip, self.acme_port),
            "managementListenAddress": format!("127.0.0.1:{}", self.mgmt_port),
            "certificate": self.dir.join("cert.pem"),
            "privateKey": self.dir.join("key.pem"),
            "httpPort": self.options.http_port,
            "tlsPort": self.options.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        if let Some(secs) = self.options.validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        std::fs::write(self.dir.join("pebble.json"), config.to_string()).expect("pebble config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pebble.log"))
            .expect("pebble log");
        let mut cmd = Command::new("pebble");
        cmd.args(["-config", "pebble.json", "-dnsserver"])
            .arg(format!("127.0.0.1:{}", self.dns_port))
            .current_dir(&self.dir)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(reuse) = self.options.authz_reuse {
            cmd.env("PEBBLE_AUTHZREUSE", reuse.to_string());
        }
        self.pebble = Some(Proc(cmd.spawn().expect("pebble (apt install pebble)")));
        let port = self.acme_port;
        let up = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "pebble did not listen on {port}");
    }

    /// The ACME directory URL for a client on `host`.
    pub fn directory(&self, host: &str) -> String {
        format!("https://{host}:{}/dir", self.acme_port)
    }

    /// Certificates pebble issued so far (over every start).
    pub fn issued(&self) -> usize {
        self.log().matches("Issued certificate serial").count()
    }

    /// Everything pebble logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// The current issuing root (new at every pebble start), written to `root.pem`.
    pub fn fetch_root(&self) -> PathBuf {
        sh(
            &self.dir,
            &format!(
                "curl -sf --cacert ca.pem https://127.0.0.1:{}/roots/0 > root.pem",
                self.mgmt_port
            ),
        );
        self.dir.join("root.pem")
    }
}

/// The certificate served on 127.0.0.1:`port` for `name`, verified by `openssl s_client`
/// against pebble's issuing root (`root.pem` in `dir`, see [`Pebble::fetch_root`]) for that
/// name: its serial, or why not.
pub fn served_serial(dir: &Path, port: u16, name: &str) -> Result<String, String> {
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
