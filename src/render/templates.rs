//! The template set: embedded defaults from `tpl/`, each replaceable by a file of the same name
//! in `projects/tpl/`.

use std::path::Path;

use serde_json::Value;
use tera::{Context, Tera};

use super::RenderError;

/// Embedded templates: (name, text).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("traefik.yml", include_str!("../../tpl/traefik.yml")),
    (
        "routers-http.yml",
        include_str!("../../tpl/routers-http.yml"),
    ),
    ("routers-tcp.yml", include_str!("../../tpl/routers-tcp.yml")),
    ("routers-udp.yml", include_str!("../../tpl/routers-udp.yml")),
    ("middlewares.yml", include_str!("../../tpl/middlewares.yml")),
    (
        "traefik-labels.txt",
        include_str!("../../tpl/traefik-labels.txt"),
    ),
    ("haproxy.cfg", include_str!("../../tpl/haproxy.cfg")),
    ("edge.cfg", include_str!("../../tpl/edge.cfg")),
    (
        "haproxy-hold.cfg",
        include_str!("../../tpl/haproxy-hold.cfg"),
    ),
    (
        "proxy-compose.yml",
        include_str!("../../tpl/proxy-compose.yml"),
    ),
    (
        "crowdsec-acquis.yaml",
        include_str!("../../tpl/crowdsec-acquis.yaml"),
    ),
    ("itsup-proxy.yml", include_str!("../../tpl/itsup-proxy.yml")),
    ("swarm-proxy.yml", include_str!("../../tpl/swarm-proxy.yml")),
];

/// Compiled templates.
pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// The embedded set.
    pub fn embedded() -> Result<Self, RenderError> {
        Self::with_overrides(&[])
    }

    /// The embedded set with operator overrides from `<root>/projects/tpl/` applied.
    pub fn load(root: &Path) -> Result<Self, RenderError> {
        let dir = root.join("projects").join("tpl");
        let mut overrides = Vec::new();
        for (name, _) in EMBEDDED {
            let path = dir.join(name);
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|e| RenderError::Template {
                    name: path.display().to_string(),
                    message: e.to_string(),
                })?;
                overrides.push((name.to_string(), text));
            }
        }
        Self::with_overrides(&overrides)
    }

    fn with_overrides(overrides: &[(String, String)]) -> Result<Self, RenderError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        let set: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(name, text)| {
                let text = overrides
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(*text, |(_, t)| t.as_str());
                (name.to_string(), text.to_string())
            })
            .collect();
        tera.add_raw_templates(set)
            .map_err(|e| RenderError::Template {
                name: "tpl".into(),
                message: error_chain(&e),
            })?;
        Ok(Templates { tera })
    }

    /// Renders a template to text.
    pub fn text(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let context = Context::from_value(ctx.clone()).map_err(|e| RenderError::Template {
            name: name.into(),
            message: error_chain(&e),
        })?;
        self.tera
            .render(name, &context)
            .map_err(|e| RenderError::Template {
                name: name.into(),
                message: error_chain(&e),
            })
    }

    /// Renders a YAML template and parses it back into a value.
    pub fn yaml(&self, name: &str, ctx: &Value) -> Result<Value, RenderError> {
        let text = self.text(name, ctx)?;
        crate::yaml::parse(&text)
            .map(|d| d.value)
            .map_err(|e| RenderError::Yaml {
                name: name.into(),
                message: e.message,
                line: e.pos.line,
            })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
