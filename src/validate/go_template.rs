//! Go template actions in `projects/middlewares.yml`.
//!
//! Traefik runs Go templates over every file-provider file before it parses the YAML, and one
//! file it cannot template disables the whole file provider (every `@file` middleware, so every
//! router using one). Operators may use actions on purpose (`{{ env "X" }}`), so they are kept;
//! but a `{{` that does not open a well-formed action (no closing `}}`, an unclosed string
//! literal) is reported here with its file, line and key instead of failing inside Traefik.

use serde_json::Value;

use super::Diagnostic;
use crate::load::Source;

/// Reports every string of the file whose template actions Go could not parse.
pub fn check(src: &Source, diagnostics: &mut Vec<Diagnostic>) {
    walk(&src.doc.value, String::new(), &mut |pointer, text| {
        if let Some(problem) = action_problem(text) {
            let key = pointer.rsplit('/').next().unwrap_or_default().to_string();
            diagnostics.push(Diagnostic::new(
                &src.path,
                src.doc.value_pos(pointer),
                None,
                format!(
                    "`{key}`: {problem}; Traefik runs Go templates over this file (write {{{{ \"{{{{\" }}}} for a literal `{{{{`)"
                ),
            ));
        }
    });
}

fn walk(value: &Value, pointer: String, f: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(s) => f(&pointer, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{pointer}/{i}"), f);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk(
                    v,
                    format!("{pointer}/{}", crate::yaml::escape_pointer(k)),
                    f,
                );
            }
        }
        _ => {}
    }
}

/// Why the template actions of `text` would not parse, or `None`: every `{{` must be closed
/// by a `}}` outside string literals (`"…"` with escapes, `` `…` ``, `'…'`).
pub fn action_problem(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let action = &rest[open + 2..];
        let mut chars = action.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' | '`' | '\'' => {
                    let mut closed = false;
                    while let Some((_, d)) = chars.next() {
                        if d == '\\' && c != '`' {
                            chars.next();
                        } else if d == c {
                            closed = true;
                            break;
                        }
                    }
                    if !closed {
                        return Some(format!("unterminated {c} literal in a template action"));
                    }
                }
                '}' if action[i..].starts_with("}}") => {
                    end = Some(i + 2);
                    break;
                }
                '{' if action[i..].starts_with("{{") => {
                    return Some("`{{` inside a template action".into());
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Some("`{{` without a closing `}}`".into());
        };
        rest = &action[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_actions_pass_and_stray_braces_are_named() {
        assert_eq!(action_problem(r#"{{ env "X" | default "a}}b" }}"#), None);
        assert_eq!(action_problem("plain } text }}"), None);
        assert_eq!(action_problem(r#"{{ "{{" }} literal"#), None);
        assert!(action_problem("a {{ b").is_some_and(|m| m.contains("closing")));
        assert!(action_problem(r#"{{ env "X }}"#).is_some_and(|m| m.contains("unterminated")));
        assert!(action_problem("{{ a {{ b }} }}").is_some());
    }
}
