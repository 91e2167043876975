//! YAML output for generated files.
//!
//! Why not serde_yaml_ng's serializer: it leaves strings plain when YAML 1.2 reads them back as
//! strings, but Compose v1 (PyYAML) reads YAML 1.1, where plain `yes`, `on`, `2222:22` (base
//! 60) and `1_000` are booleans and integers. A port mapping or an environment value would
//! change meaning. So: a string is written plain only when it is unambiguous in both versions,
//! and double-quoted (JSON escaping, which YAML accepts) otherwise.
//!
//! Traefik's file provider runs Go templates over each file before it parses the YAML, so a
//! template action (`{{ env "X" }}`) must reach it byte for byte: a backslash escape inside the
//! action is a Go syntax error that disables every file-provider file. A string holding `{{` is
//! therefore written in a style without escapes (single-quoted, else double-quoted when it needs
//! no escape), so the text Go sees is the text the template or the operator wrote.

use std::fmt::Write;

use serde_json::Value;

/// Words YAML 1.1 or 1.2 resolve to booleans or null (case-insensitively).
const RESERVED: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// Whether a string may be written without quotes.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s)) {
        return false;
    }
    // `.inf`/`.nan` start with '.', excluded above; anything else made of these is a plain word.
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | '+' | '='))
        && !s.ends_with(['-', '+', '.'])
}

fn scalar(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) if plain_ok(s) => out.push_str(s),
        Value::String(s) => match template_quote(s) {
            Some('\'') => {
                out.push('\'');
                out.push_str(&s.replace('\'', "''"));
                out.push('\'');
            }
            Some(q) => {
                out.push(q);
                out.push_str(s);
                out.push(q);
            }
            None => out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())),
        },
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// For a string holding a Go template action, the quote that writes it without backslash
/// escapes. Single quotes (a `'` doubled, which Go copies through so YAML still reads one `'`),
/// unless a `'` sits inside an action (where `''` is Go syntax only inside a string literal)
/// and double quotes need no escape at all. Line breaks fold in both styles, so a string with a
/// control character gets `None` (JSON escaping).
fn template_quote(s: &str) -> Option<char> {
    if !s.contains("{{") || s.chars().any(char::is_control) {
        return None;
    }
    let quote_in_action = s.split("{{").skip(1).any(|rest| {
        let action = rest.split("}}").next().unwrap_or(rest);
        action.contains('\'')
    });
    if quote_in_action && !s.contains(['"', '\\']) {
        Some('"')
    } else {
        Some('\'')
    }
}

fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => true,
    }
}

fn key(out: &mut String, k: &str) {
    scalar(out, &Value::String(k.to_string()));
}

fn node(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (i, (k, child)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(indent));
                }
                key(out, k);
                out.push(':');
                child_value(out, child, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&" ".repeat(indent));
                }
                out.push_str("- ");
                if is_empty_collection(item) {
                    scalar(out, item);
                    out.push('\n');
                } else {
                    node(out, item, indent + 2);
                }
            }
        }
        other => {
            scalar(out, other);
            out.push('\n');
        }
    }
}

fn child_value(out: &mut String, child: &Value, indent: usize) {
    if is_empty_collection(child) {
        out.push(' ');
        scalar(out, child);
        out.push('\n');
    } else {
        out.push('\n');
        out.push_str(&" ".repeat(indent + 2));
        node(out, child, indent + 2);
    }
}

/// Serialises a value as block-style YAML.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    if is_empty_collection(v) {
        scalar(&mut out, v);
        out.push('\n');
    } else {
        node(&mut out, v, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted_and_round_trip() {
        let v = json!({
            "ports": ["2222:22", "80:80"],
            "env": {"A": "yes", "B": "on", "C": "1_000", "D": "0b101", "E": "${X:-1}", "F": "plain-word", "G": "multi\nline", "H": ""},
            "n": 5, "f": 1.5, "b": true, "z": null, "e": {}, "l": [],
            "nested": [{"a": 1, "b": [1, 2]}, [3, 4], "x"],
            "Host(`a`)": "key needs quotes"
        });
        let text = to_string(&v);
        assert!(text.contains("- \"2222:22\""), "{text}");
        assert!(text.contains("A: \"yes\""), "{text}");
        assert!(text.contains("C: \"1_000\""), "{text}");
        assert!(text.contains("F: plain-word"), "{text}");
        let back = crate::yaml::parse(&text).expect("parse").value;
        assert_eq!(back, v, "{text}");
    }

    /// Traefik's file provider templates the text before parsing it: a `{{ … }}` action is
    /// written without backslash escapes and still reads back as the same string.
    #[test]
    fn template_actions_reach_go_byte_for_byte() {
        let action = r#"{{ env "TRAEFIK_DASHBOARD_USERS" }}"#;
        let v = json!({
            "users": [action],
            "quote": "{{ 'x' }} it's",
            "literal": "{{ \"it's\" }} ok",
            "line": "{{ x }}\n"
        });
        let text = to_string(&v);
        assert!(
            text.contains(&format!("- '{action}'")),
            "single-quoted, no escapes:\n{text}"
        );
        assert!(text.contains(r#"quote: "{{ 'x' }} it's""#), "{text}");
        assert!(text.contains(r#"literal: '{{ "it''s" }} ok'"#), "{text}");
        let back = crate::yaml::parse(&text).expect("parse").value;
        assert_eq!(back, v, "{text}");
        // What Go's templating leaves (the action replaced by its value) is still valid YAML
        // holding that value.
        let templated = text
            .replace(action, "admin:$apr1$x$y")
            .replace(r#"{{ "it''s" }}"#, "it''s");
        let back = crate::yaml::parse(&templated)
            .expect("templated parse")
            .value;
        assert_eq!(back["users"][0], "admin:$apr1$x$y");
        assert_eq!(
            back["literal"], "it's ok",
            "Go copies `''` through, YAML reads `'`"
        );
    }
}
