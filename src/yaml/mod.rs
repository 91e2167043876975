//! YAML in and out: the only module that touches YAML crates.
//!
//! Input is read with yaml-rust2's event parser because it reports a line and column for every
//! event; we build a `serde_json::Value` from the events plus an index from JSON pointer to
//! position, so the schema validator (which speaks JSON pointers) and the semantic rules can both
//! name `file:line:col`. Anchors and merge keys are expanded here, with a budget against alias
//! bombs. Output is written by [`emit`], which quotes for YAML 1.1 readers as well.

mod build;
mod emit;

pub use build::MAX_ALIAS_NODES;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where a node sits in its file: the key that introduced it (for mapping entries) and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// A parsed YAML document: its value as JSON plus the position of every node.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: serde_json::Value,
    spans: build::SpanTree,
}

impl Document {
    /// Position of the node at a JSON pointer (`/ingress/0/domain`); the key when `prefer_key`.
    /// Falls back to the nearest ancestor that has one, then to the top of the file.
    pub fn pos(&self, pointer: &str, prefer_key: bool) -> Pos {
        let mut value = &self.value;
        let mut tree = &self.spans;
        for raw in pointer.split('/').skip(1) {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            let index = match value {
                // Lookups happen only when reporting an error: a linear scan is fine.
                serde_json::Value::Object(map) => map.keys().position(|k| *k == segment),
                serde_json::Value::Array(items) => {
                    segment.parse::<usize>().ok().filter(|i| *i < items.len())
                }
                _ => None,
            };
            let (Some(i), Some(child)) = (index, index.and_then(|i| tree.children.get(i))) else {
                break;
            };
            value = match value {
                serde_json::Value::Object(map) => map.get(&segment).unwrap_or(value),
                serde_json::Value::Array(items) => &items[i],
                _ => value,
            };
            tree = child;
        }
        match (prefer_key, tree.span.key) {
            (true, Some(k)) => k,
            _ => tree.span.value,
        }
    }

    /// Position of the key of a mapping entry, falling back like [`Document::pos`].
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.pos(pointer, true)
    }

    /// Position of a value, falling back like [`Document::pos`].
    pub fn value_pos(&self, pointer: &str) -> Pos {
        self.pos(pointer, false)
    }
}

/// A YAML syntax or structure error with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty file is `null`.
pub fn parse(text: &str) -> Result<Document, YamlError> {
    build::parse(text)
}

/// Serialises a value as YAML (block style, keys in their given order), quoting every string
/// that YAML 1.1 or 1.2 could read as something else.
pub fn to_string(value: &serde_json::Value) -> String {
    emit::to_string(value)
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_values_and_positions() {
        let doc = parse("a: 1\nb:\n  - x\n  - \"y\"\nc: yes\nd: 08\n").expect("parse");
        assert_eq!(
            doc.value,
            json!({"a": 1, "b": ["x", "y"], "c": "yes", "d": "08"})
        );
        assert_eq!(doc.key_pos("/b"), Pos { line: 2, col: 1 });
        assert_eq!(doc.value_pos("/b/1"), Pos { line: 4, col: 5 });
        assert_eq!(doc.key_pos("/b/1/nothing"), Pos { line: 4, col: 5 });
    }

    #[test]
    fn expands_anchors_and_merge_keys() {
        let doc = parse("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n").expect("parse");
        assert_eq!(doc.value["c"], json!({"x": 1, "y": 3}));
        let keys: Vec<&String> = doc.value["c"].as_object().expect("map").keys().collect();
        assert_eq!(keys, ["x", "y"], "merged keys stand where `<<` was");
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.pos, Pos { line: 3, col: 1 });
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);
    }

    #[test]
    fn stops_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&text).expect_err("bomb");
        assert!(err.message.contains("alias"), "{}", err.message);
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("syntax");
        assert!(err.pos.line >= 1);
    }

    #[test]
    fn empty_is_null_and_escapes_round_trip() {
        assert_eq!(parse("").expect("empty").value, serde_json::Value::Null);
        assert_eq!(escape_pointer("a/b~c"), "a~1b~0c");
    }
}
