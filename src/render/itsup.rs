//! Engine itsup: `proxy/itsup/proxy.yml` for `itsup proxy`, checked against the proxy's own
//! config types (the same parser the running proxy uses) before it is written. Every http row
//! with a name is served on the https port (certificates by SNI); the http port redirects to
//! it, ACME HTTP-01 validations excepted.

use serde_json::json;

use super::{Artifact, RenderError, Templates, to_yaml};
use crate::plan::Plan;
use crate::proxy::config::ProxyConfig;

/// Admin API port inside the proxy container (loopback only).
pub const ADMIN_PORT: u16 = 9901;

/// `proxy/itsup/proxy.yml`.
pub fn render(plan: &Plan, templates: &Templates) -> Result<Artifact, RenderError> {
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
            "https": plan.http.iter().any(|r| r.https),
            "admin_port": ADMIN_PORT,
            "routes": routes,
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
    Ok(Artifact::new("proxy/itsup/proxy.yml", &to_yaml(&value)))
}
