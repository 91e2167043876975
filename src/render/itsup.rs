//! Engine itsup: `proxy/itsup/proxy.yml` for `itsup proxy`, checked against the proxy's own
//! config types (the same parser the running proxy uses) before it is written. Every http row
//! with a name is served on the https port (certificates by SNI); the http port redirects to
//! it, ACME HTTP-01 validations excepted. TCP rows become `tcp:` listeners (SNI rows on the
//! https port share it with HTTPS, chosen before TLS), UDP rows `udp:` ports.

use serde_json::json;

use super::{Artifact, RenderError, Templates, to_yaml};
use crate::plan::{Plan, TcpTls};
use crate::proxy::config::ProxyConfig;

/// Admin API port inside the proxy container (loopback only).
pub const ADMIN_PORT: u16 = 9901;

/// Where `acme.caBundle` is written: inside the folder mounted at `/etc/itsup`.
pub const ACME_CA_FILE: &str = "proxy/itsup/acme-ca.pem";
/// The same file as the proxy sees it.
const ACME_CA_MOUNTED: &str = "/etc/itsup/acme-ca.pem";

/// The `acme` section: one order per distinct name set of the https rows (`tls.main` +
/// `tls.sans`, else the domain), the CA settings of `itsup.yml`; `None` without https rows.
fn acme(plan: &Plan) -> Option<serde_json::Value> {
    let mut sets: Vec<&[String]> = Vec::new();
    let http = plan
        .http
        .iter()
        .filter(|r| r.https && !r.cert_names.is_empty())
        .map(|r| r.cert_names.as_slice());
    // TCP rows that terminate TLS need certificates for their SNI names too.
    let tcp = plan
        .tcp
        .iter()
        .filter(|r| r.tls == TcpTls::Terminate && !r.sni.is_empty())
        .map(|r| r.sni.as_slice());
    for names in http.chain(tcp) {
        if !sets.contains(&names) {
            sets.push(names);
        }
    }
    if sets.is_empty() {
        return None;
    }
    let a = &plan.settings.acme;
    Some(json!({
        "email": a.email,
        "staging": a.staging,
        "ca_server": a.ca_server,
        "ca_bundle": plan.settings.acme_ca_pem.as_ref().map(|_| ACME_CA_MOUNTED),
        "certificates": sets,
    }))
}

/// The `tcp` listeners: one per port, its rows as routes (SNI or catch-all).
fn tcp_listeners(plan: &Plan) -> Vec<serde_json::Value> {
    let mut ports: Vec<u16> = plan.tcp.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .map(|port| {
            let rows: Vec<_> = plan
                .tcp
                .iter()
                .filter(|r| r.port == port && !r.backend.servers.is_empty())
                .collect();
            let routes: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "sni": r.sni,
                        "tls": (if r.tls == TcpTls::Terminate { "terminate" } else { "passthrough" }),
                        "servers": r.backend.servers,
                        "proxy_protocol": r.proxy_protocol,
                        "allow": r.allow_source_ips,
                    })
                })
                .collect();
            let shared = port == plan.settings.https_port;
            json!({
                "port": port,
                "tls": !shared && rows.iter().any(|r| r.tls == TcpTls::Terminate),
                "routes": routes,
            })
        })
        .filter(|l| l["routes"].as_array().is_some_and(|r| !r.is_empty()))
        .collect()
}

/// `proxy/itsup/proxy.yml` (and the ACME CA bundle when there is one).
pub fn render(plan: &Plan, templates: &Templates) -> Result<Vec<Artifact>, RenderError> {
    let routes: Vec<serde_json::Value> = plan
        .http
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "hosts": r.hosts,
                "path": r.path_prefix.as_deref().unwrap_or("/"),
                "strip_prefix": r.strip_prefix,
                "grpc": r.backend.grpc,
                "servers": r.backend.servers,
            })
        })
        .collect();
    let value = templates.yaml(
        "itsup-proxy.yml",
        &json!({
            "http_port": plan.settings.http_port,
            "https_port": plan.settings.https_port,
            "https": plan.http.iter().any(|r| r.https)
                || plan.tcp.iter().any(|r| r.port == plan.settings.https_port),
            "admin_port": ADMIN_PORT,
            "acme": acme(plan),
            "routes": routes,
            "tcp": tcp_listeners(plan),
            "udp": plan.udp.iter().filter(|r| !r.backend.servers.is_empty()).map(|r| json!({
                "name": r.name,
                "port": r.port,
                "servers": r.backend.servers,
                "allow": r.allow_source_ips,
            })).collect::<Vec<_>>(),
        }),
    )?;
    let invalid = |message: String| RenderError::Template {
        name: "itsup-proxy.yml".into(),
        message,
    };
    let config: ProxyConfig =
        serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?;
    let problems = config.check();
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    let mut out = Vec::new();
    // The header line is harmless: PEM readers skip text before `-----BEGIN`.
    if let Some(pem) = &plan.settings.acme_ca_pem {
        out.push(Artifact::new(ACME_CA_FILE, pem));
    }
    out.push(Artifact::new("proxy/itsup/proxy.yml", &to_yaml(&value)));
    Ok(out)
}
