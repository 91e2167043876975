//! The TLS parts of `proxy.yml`: a listener's `tls` (certificates, SNI policy, handshake
//! limits), a listener's `redirect_https`, a route's `hsts` and a cluster's upstream `tls`.
//! Plain data like the rest of the config; [`check_listener`] and [`check_cluster`] hold the
//! rules the schema cannot express.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// HTTPS on a listener. Certificates are chosen by SNI: exact names first, then `*.` wildcards,
/// then the default (the first `certificates` entry, else a self-signed one made at start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain + key pairs; their names come from the certificates' DNS SANs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertPair>,
    /// A folder of `<name>.crt`/`<name>.pem` + `<name>.key` pairs, watched: a changed, added or
    /// removed pair is picked up without touching connections or anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_dir: Option<String>,
    /// A ClientHello whose SNI matches no certificate (or has none).
    #[serde(default)]
    pub unknown_sni: UnknownSni,
    /// A TLS handshake not finished in this time is dropped (slow-handshake defence).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// At most this many handshakes at once on this listener; more connections are closed at
    /// once (counted as `itsup_proxy_tls_handshakes_total{result="shed"}`).
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

fn default_max_handshakes() -> usize {
    1024
}

/// One certificate chain with its private key (PEM files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// PEM file: the leaf certificate first, then intermediates.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, SEC1 or PKCS#1).
    pub key: String,
}

/// What a handshake gets when no certificate matches its SNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownSni {
    /// The default certificate.
    #[default]
    Default,
    /// A handshake failure alert.
    Reject,
}

/// Plain HTTP answered with a redirect to HTTPS (301 for GET and HEAD, 308 otherwise), except
/// `/.well-known/acme-challenge/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectHttps {
    /// The HTTPS port clients are sent to (left out of the URL when 443).
    #[serde(default = "default_https_port")]
    pub port: u16,
}

fn default_https_port() -> u16 {
    443
}

/// `Strict-Transport-Security` added to a route's answers over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// `max-age` in seconds.
    #[serde(default = "default_hsts_max_age")]
    pub max_age_s: u64,
    /// Adds `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Adds `preload`.
    #[serde(default)]
    pub preload: bool,
}

fn default_hsts_max_age() -> u64 {
    31_536_000
}

impl Hsts {
    /// The header value.
    pub fn value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age_s);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// TLS to a cluster's servers (protocol `http1` = HTTPS, `h2` = HTTP/2 over TLS, e.g. gRPC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs trusted for the servers; absent: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Name sent as SNI and verified in the server certificate; absent: the host of each
    /// server's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS; needs `client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    /// Client private key (PEM) for mutual TLS; needs `client_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Verify the server certificate. `false` accepts any certificate (logged as a warning
    /// at every load): for test rigs only.
    #[serde(default = "default_true")]
    pub verify: bool,
}

fn default_true() -> bool {
    true
}

/// Rules of one listener's `tls` and `redirect_https`.
pub fn check_listener(
    i: usize,
    tls: Option<&ListenerTls>,
    redirect: Option<&RedirectHttps>,
    errors: &mut Vec<String>,
) {
    if tls.is_some() && redirect.is_some() {
        errors.push(format!(
            "listeners[{i}].redirect_https: a TLS listener cannot redirect to HTTPS"
        ));
    }
    if redirect.is_some_and(|r| r.port == 0) {
        errors.push(format!("listeners[{i}].redirect_https.port: must be > 0"));
    }
    let Some(tls) = tls else { return };
    for (j, pair) in tls.certificates.iter().enumerate() {
        for (key, path) in [("cert", &pair.cert), ("key", &pair.key)] {
            if path.is_empty() {
                errors.push(format!(
                    "listeners[{i}].tls.certificates[{j}].{key}: must not be empty"
                ));
            }
        }
    }
    if tls.cert_dir.as_deref() == Some("") {
        errors.push(format!("listeners[{i}].tls.cert_dir: must not be empty"));
    }
    if tls.handshake_timeout_ms == 0 {
        errors.push(format!(
            "listeners[{i}].tls.handshake_timeout_ms: must be > 0"
        ));
    }
    if tls.max_handshakes == 0 {
        errors.push(format!("listeners[{i}].tls.max_handshakes: must be > 0"));
    }
}

/// Rules of one cluster's `tls` (its fit with the protocol is checked with the cluster).
pub fn check_cluster(name: &str, tls: Option<&UpstreamTls>, errors: &mut Vec<String>) {
    let Some(tls) = tls else { return };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        errors.push(format!(
            "clusters.{name}.tls: client_cert and client_key go together"
        ));
    }
    if let Some(sn) = &tls.server_name
        && rustls::pki_types::ServerName::try_from(sn.as_str()).is_err()
    {
        errors.push(format!(
            "clusters.{name}.tls.server_name: `{sn}` is not a DNS name or IP"
        ));
    }
}
