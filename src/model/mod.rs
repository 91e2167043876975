//! The input model: typed mirrors of `projects/itsup.yml` and `projects/<p>/ingress.yml`.
//!
//! These serde + schemars types are the single source of truth: `itsup schema` prints the JSON
//! Schema derived from them and `validate` checks files against that schema before the typed
//! values are built, so the schema and the parser can never disagree.

mod facts;
mod itsup;
mod project;

pub use facts::*;
pub use itsup::*;
pub use project::*;

use schemars::JsonSchema;

/// JSON Schema of one input type, as a JSON value.
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(serde_json::Value::Null)
}

/// Project names that collide with something itsup itself creates, each with the reason shown in
/// the error. Only real collisions are reserved: itsUP's loader accepted any name, and operator
/// trees (the corpus has a project `itsup`) must load as they are.
pub const RESERVED_PROJECT_NAMES: &[(&str, &str)] = &[(
    "proxy",
    "it names the proxy stack (`itsup svc proxy`, the generated `proxy/` folder and the proxy's deploy state)",
)];
