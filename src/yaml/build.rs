//! Builds a JSON value and a tree of positions from yaml-rust2's marked events.
//!
//! An explicit stack (no recursion) so deeply nested input cannot overflow ours; anchors are
//! stored once finished and cloned on alias, charging their node count to a budget. Positions
//! live in a [`SpanTree`] shaped like the value (children in key/index order) rather than in a
//! map keyed by JSON pointer: no string per node, which was most of the parse cost.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Document, Pos, Span, YamlError};

/// How many nodes alias expansion may add to one document before we call it a bomb.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Deepest nesting we accept; real configuration files stay far below this.
const MAX_DEPTH: usize = 256;

/// Positions of a node and, for collections, of its children in the value's order.
/// Nodes copied from an alias or a merge key have no children: lookups below them stop there.
#[derive(Debug, Clone)]
pub struct SpanTree {
    pub span: Span,
    pub children: Vec<SpanTree>,
}

impl SpanTree {
    fn leaf(span: Span) -> Self {
        SpanTree {
            span,
            children: Vec::new(),
        }
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        spans: Vec<SpanTree>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Map<String, Value>,
        spans: Vec<SpanTree>,
        merges: Vec<(Value, Pos, usize)>,
        pending_key: Option<(String, Pos, bool)>,
        span: Span,
        anchor: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<(Value, SpanTree)>,
    anchors: HashMap<usize, (Value, usize)>,
    alias_budget: usize,
    error: Option<YamlError>,
    documents: usize,
}

fn pos(mark: &Marker) -> Pos {
    Pos {
        line: mark.line(),
        col: mark.col() + 1,
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag
        && (tag.suffix == "str" || tag.handle == "!")
    {
        return Value::String(text);
    }
    if style != TScalarStyle::Plain {
        return Value::String(text);
    }
    // Numbers are kept as numbers only when writing them back gives the same text, so a
    // user's `0755` or `1e3` survives into generated compose files exactly as written.
    match Yaml::from_str(&text) {
        Yaml::Integer(i) if i.to_string() == text => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .filter(|n| n.to_string() == text)
            .map(Value::Number)
            .unwrap_or(Value::String(text)),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Null => Value::Null,
        _ => Value::String(text),
    }
}

/// A merge key's value as the list of mappings it contributes.
fn merge_sources(merge: Value) -> Option<Vec<Map<String, Value>>> {
    match merge {
        Value::Object(m) => Some(vec![m]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Builder {
    fn fail(&mut self, at: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { pos: at, message });
        }
    }

    /// True when the parent mapping is waiting for a key rather than a value.
    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map {
                pending_key: None,
                ..
            })
        )
    }

    /// The span of a node starting at `at`, with the key that introduced it.
    fn span_here(&self, at: Pos) -> Span {
        let key = match self.stack.last() {
            Some(Frame::Map {
                pending_key: Some((_, kp, _)),
                ..
            }) => Some(*kp),
            _ => None,
        };
        Span { key, value: at }
    }

    fn push_value(&mut self, value: Value, tree: SpanTree, at: Pos, anchor: usize) {
        if anchor != 0 {
            let size = count_nodes(&value);
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let problem = match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some((value, tree));
                }
                None
            }
            Some(Frame::Seq { items, spans, .. }) => {
                items.push(value);
                spans.push(tree);
                None
            }
            Some(Frame::Map {
                entries,
                spans,
                merges,
                pending_key,
                ..
            }) => match pending_key.take() {
                Some((_, _, true)) => {
                    merges.push((value, at, entries.len()));
                    None
                }
                Some((key, key_pos, false)) => {
                    if entries.contains_key(&key) {
                        Some((key_pos, format!("duplicate key `{key}`")))
                    } else {
                        entries.insert(key, value);
                        spans.push(tree);
                        None
                    }
                }
                None => Some((at, "a mapping value without a key".to_string())),
            },
        };
        if let Some((where_, message)) = problem {
            self.fail(where_, message);
        }
    }

    fn deep_enough(&mut self, at: Pos) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(at, format!("nesting deeper than {MAX_DEPTH} levels"));
            return false;
        }
        true
    }

    /// yaml-rust2 marks a block mapping where its first key's `:` is; people read a mapping as
    /// starting at its first key, so that is where errors about the whole mapping point.
    fn place_mapping_at_first_key(&mut self, at: Pos) {
        if let Some(Frame::Map {
            entries,
            merges,
            span,
            ..
        }) = self.stack.last_mut()
            && entries.is_empty()
            && merges.is_empty()
            && at < span.value
        {
            span.value = at;
        }
    }

    fn key_from(&mut self, value: &Value, at: Pos, merge: bool) {
        let key = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_string(),
            _ => {
                self.fail(at, "mapping keys must be scalars".to_string());
                return;
            }
        };
        if let Some(Frame::Map { pending_key, .. }) = self.stack.last_mut() {
            *pending_key = Some((key, at, merge));
        }
    }

    /// Merged keys go where the `<<` stood; explicit keys win wherever they appear, and earlier
    /// merge sources win over later ones, as YAML's merge key says.
    fn finish_map(
        &mut self,
        entries: Map<String, Value>,
        spans: Vec<SpanTree>,
        merges: Vec<(Value, Pos, usize)>,
    ) -> (Map<String, Value>, Vec<SpanTree>) {
        if merges.is_empty() {
            return (entries, spans);
        }
        let mut inserts: Vec<(usize, Pos, Map<String, Value>)> = Vec::new();
        for (merge, at, position) in merges {
            let Some(sources) = merge_sources(merge) else {
                self.fail(at, "`<<` takes a mapping or a list of mappings".into());
                continue;
            };
            let mut block = Map::new();
            for source in sources {
                for (k, v) in source {
                    let taken = entries.contains_key(&k)
                        || block.contains_key(&k)
                        || inserts.iter().any(|(_, _, b)| b.contains_key(&k));
                    if !taken {
                        block.insert(k, v);
                    }
                }
            }
            inserts.push((position, at, block));
        }
        let total = entries.len();
        let mut out = Map::new();
        let mut out_spans = Vec::with_capacity(total);
        let mut explicit = entries.into_iter().zip(spans);
        for i in 0..=total {
            for (_, at, block) in inserts.iter_mut().filter(|(p, _, _)| *p == i) {
                for (k, v) in std::mem::take(block) {
                    out.insert(k, v);
                    out_spans.push(SpanTree::leaf(Span {
                        key: None,
                        value: *at,
                    }));
                }
            }
            if let Some(((k, v), tree)) = explicit.next() {
                out.insert(k, v);
                out_spans.push(tree);
            }
        }
        (out, out_spans)
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = pos(&mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(at, "only one YAML document per file is supported".into());
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let merge = style == TScalarStyle::Plain && text == "<<";
                let value = resolve_scalar(text, style, tag.as_ref());
                if self.expecting_key() {
                    self.place_mapping_at_first_key(at);
                    self.key_from(&value, at, merge);
                    if anchor != 0 {
                        self.anchors.insert(anchor, (value, 1));
                    }
                } else if self.deep_enough(at) {
                    let tree = SpanTree::leaf(self.span_here(at));
                    self.push_value(value, tree, at, anchor);
                }
            }
            Event::Alias(id) => {
                let Some((value, size)) = self.anchors.get(&id).cloned() else {
                    self.fail(at, "alias to an unknown anchor".into());
                    return;
                };
                if self.alias_budget < size {
                    self.fail(
                        at,
                        format!(
                            "alias expansion exceeds {MAX_ALIAS_NODES} nodes (a YAML alias bomb?)"
                        ),
                    );
                    return;
                }
                self.alias_budget -= size;
                if self.expecting_key() {
                    self.place_mapping_at_first_key(at);
                    self.key_from(&value, at, false);
                } else if self.deep_enough(at) {
                    let tree = SpanTree::leaf(self.span_here(at));
                    self.push_value(value, tree, at, 0);
                }
            }
            Event::SequenceStart(anchor, _) => {
                if self.expecting_key() {
                    self.fail(at, "mapping keys must be scalars".into());
                    return;
                }
                if self.deep_enough(at) {
                    let span = self.span_here(at);
                    self.stack.push(Frame::Seq {
                        items: Vec::new(),
                        spans: Vec::new(),
                        span,
                        anchor,
                    });
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    self.fail(at, "mapping keys must be scalars".into());
                    return;
                }
                if self.deep_enough(at) {
                    let span = self.span_here(at);
                    self.stack.push(Frame::Map {
                        entries: Map::new(),
                        spans: Vec::new(),
                        merges: Vec::new(),
                        pending_key: None,
                        span,
                        anchor,
                    });
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    spans,
                    span,
                    anchor,
                }) = self.stack.pop()
                {
                    let tree = SpanTree {
                        span,
                        children: spans,
                    };
                    self.push_value(Value::Array(items), tree, at, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    entries,
                    spans,
                    merges,
                    span,
                    anchor,
                    ..
                }) = self.stack.pop()
                {
                    let (map, children) = self.finish_map(entries, spans, merges);
                    let tree = SpanTree { span, children };
                    self.push_value(Value::Object(map), tree, at, anchor);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

pub(super) fn parse(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        alias_budget: MAX_ALIAS_NODES,
        error: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(YamlError {
            pos: pos(e.marker()),
            message: e.info().to_string(),
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    let (value, spans) = builder.root.unwrap_or_else(|| {
        let start = Pos { line: 1, col: 1 };
        (
            Value::Null,
            SpanTree::leaf(Span {
                key: None,
                value: start,
            }),
        )
    });
    Ok(Document { value, spans })
}
