//! Schema check: the JSON Schema derived from the model types, run by `jsonschema`, with its
//! errors turned into located, readable diagnostics (unknown keys get a "did you mean").

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::yaml::{Document, Pos, escape_pointer};

/// A compiled schema plus the raw schema (to look up allowed keys for suggestions).
pub struct SchemaCheck {
    schema: Value,
    validator: Validator,
}

/// One schema violation, located in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub pos: Pos,
    pub message: String,
}

impl SchemaCheck {
    pub fn new(schema: Value) -> anyhow::Result<Self> {
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| anyhow::anyhow!("internal schema does not compile: {e}"))?;
        Ok(SchemaCheck { schema, validator })
    }

    /// Every violation in the document, in file order.
    pub fn check(&self, doc: &Document) -> Vec<Violation> {
        let mut out: Vec<Violation> = self
            .validator
            .iter_errors(&doc.value)
            .flat_map(|e| self.describe(doc, &e))
            .collect();
        out.sort_by(|a, b| a.pos.cmp(&b.pos).then_with(|| a.message.cmp(&b.message)));
        out.dedup();
        out
    }

    fn describe(&self, doc: &Document, err: &ValidationError<'_>) -> Vec<Violation> {
        let pointer = err.instance_path().as_str().to_string();
        let key = last_key(&pointer);
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = self.allowed_keys(err.schema_path().as_str());
                unexpected
                    .iter()
                    .map(|k| {
                        let at = doc.key_pos(&format!("{pointer}/{}", escape_pointer(k)));
                        Violation {
                            pos: at,
                            message: format!("unknown key `{k}`{}", suggest(k, &allowed)),
                        }
                    })
                    .collect()
            }
            ValidationErrorKind::Required { property } => vec![Violation {
                pos: doc.key_pos(&pointer),
                message: format!(
                    "{}missing required key `{}`",
                    key.map(|k| format!("`{k}`: ")).unwrap_or_default(),
                    property.as_str().unwrap_or_default()
                ),
            }],
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context }
                if const_options(context).is_some() =>
            {
                let names = const_options(context).unwrap_or_default();
                vec![self.enum_violation(doc, &pointer, key, err, &names)]
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context } => {
                // Option<T> becomes anyOf [T, null]; the branch that is not `null` says what's wrong.
                let best = context
                    .iter()
                    .filter(|branch| {
                        !branch.iter().any(|e| {
                            matches!(e.kind(), ValidationErrorKind::Type { .. })
                                && e.to_string().ends_with("\"null\"")
                        })
                    })
                    .find(|branch| !branch.is_empty());
                match best {
                    Some(branch) => branch.iter().flat_map(|e| self.describe(doc, e)).collect(),
                    None => vec![self.plain(doc, &pointer, key, err)],
                }
            }
            ValidationErrorKind::Enum { options } => {
                let names: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.to_string().trim_matches('"').to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                vec![self.enum_violation(doc, &pointer, key, err, &names)]
            }
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. }
                if key.is_some_and(|k| k.contains("port") || k.ends_with("Port")) =>
            {
                vec![Violation {
                    pos: doc.value_pos(&pointer),
                    message: format!(
                        "`{}` is {}, out of the port range 1–65535",
                        key.unwrap_or("port"),
                        err.instance()
                    ),
                }]
            }
            _ => vec![self.plain(doc, &pointer, key, err)],
        }
    }

    fn enum_violation(
        &self,
        doc: &Document,
        pointer: &str,
        key: Option<&str>,
        err: &ValidationError<'_>,
        names: &[String],
    ) -> Violation {
        let found = err.instance().to_string();
        let hint = suggest(found.trim_matches('"'), names);
        Violation {
            pos: doc.value_pos(pointer),
            message: format!(
                "`{}` must be one of {}, found {found}{hint}",
                key.unwrap_or("value"),
                names.join(", ")
            ),
        }
    }

    fn plain(
        &self,
        doc: &Document,
        pointer: &str,
        key: Option<&str>,
        err: &ValidationError<'_>,
    ) -> Violation {
        Violation {
            pos: doc.value_pos(pointer),
            message: match key {
                Some(k) => format!("`{k}`: {err}"),
                None => err.to_string(),
            },
        }
    }

    /// Property names allowed where an `additionalProperties` error was raised, found by walking
    /// the schema path (following `$ref`s) to the object schema that owns the keyword.
    fn allowed_keys(&self, schema_path: &str) -> Vec<String> {
        let mut node = &self.schema;
        let segments: Vec<&str> = schema_path.split('/').filter(|s| !s.is_empty()).collect();
        let stop = segments.len().saturating_sub(1);
        for seg in &segments[..stop] {
            if *seg == "$ref" {
                let target = node.get("$ref").and_then(Value::as_str).unwrap_or("");
                node = self
                    .schema
                    .pointer(target.trim_start_matches('#'))
                    .unwrap_or(node);
                continue;
            }
            let seg = seg.replace("~1", "/").replace("~0", "~");
            node = match node {
                Value::Object(m) => m.get(&seg).unwrap_or(node),
                Value::Array(a) => seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| a.get(i))
                    .unwrap_or(node),
                _ => node,
            };
        }
        node.get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// schemars writes an enum with documented variants as `oneOf` of `const`s: when every branch
/// failed only on its constant, the options are those constants.
fn const_options(context: &[Vec<ValidationError<'static>>]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for branch in context {
        let [only] = branch.as_slice() else {
            return None;
        };
        let ValidationErrorKind::Constant { expected_value } = only.kind() else {
            return None;
        };
        names.push(expected_value.as_str()?.to_string());
    }
    (!names.is_empty()).then_some(names)
}

fn last_key(pointer: &str) -> Option<&str> {
    pointer
        .rsplit('/')
        .find(|s| !s.is_empty() && s.parse::<usize>().is_err())
}

/// ` (did you mean `x`?)` when a known name is close enough to the unknown one.
pub fn suggest(unknown: &str, known: &[String]) -> String {
    // Jaro-Winkler for longer names; an edit distance of one (swaps count as one) catches
    // typos in short names such as `wbe` for `web`.
    known
        .iter()
        .map(|k| {
            let close = strsim::osa_distance(unknown, k) <= 1;
            (
                strsim::jaro_winkler(unknown, k) + if close { 1.0 } else { 0.0 },
                k,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProjectFile, schema_of};

    fn check(text: &str) -> Vec<Violation> {
        let doc = crate::yaml::parse(text).expect("yaml");
        SchemaCheck::new(schema_of::<ProjectFile>())
            .expect("schema")
            .check(&doc)
    }

    #[test]
    fn unknown_key_is_located_with_suggestion() {
        let v = check("ingress:\n  - service: web\n    domian: a.example.com\n");
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].pos, Pos { line: 3, col: 5 });
        assert_eq!(
            v[0].message,
            "unknown key `domian` (did you mean `domain`?)"
        );
    }

    #[test]
    fn port_range_and_types() {
        let v = check(
            "ingress:\n  - service: web\n    port: 70000\n    router: htp\n    passthrough: 'yes'\n",
        );
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert!(
            messages.contains(&"`port` is 70000, out of the port range 1–65535"),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with(
                "`router` must be one of http, tcp, udp, found \"htp\" (did you mean `http`?)"
            )),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.starts_with("`passthrough`:")),
            "{messages:?}"
        );
    }

    #[test]
    fn option_struct_reports_the_inner_problem() {
        let v = check("ingress:\n  - service: web\n    tls:\n      mian: a.b\n");
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("unknown key `mian` (did you mean `main`?)")),
            "{messages:?}"
        );
    }
}
