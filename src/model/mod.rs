//! The input model: typed mirrors of `projects/itsup.yml` and `projects/<p>/ingress.yml`.
//!
//! These serde + schemars types are the single source of truth: `itsup schema` prints the JSON
//! Schema derived from them and `validate` checks files against that schema before the typed
//! values are built, so the schema and the parser can never disagree.

mod itsup;
mod project;

pub use itsup::*;
pub use project::*;

use schemars::JsonSchema;

/// JSON Schema of one input type, as a JSON value.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
}

/// The reserved project names: they collide with the proxy stack's own services and networks.
pub const RESERVED_PROJECT_NAMES: &[&str] = &["dns", "proxy", "traefik", "itsup", "monitor", "api"];
