//! Unified diffs of changes, coloured for terminals.

use similar::{ChangeTag, TextDiff};

use super::{Change, ChangeKind};

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The unified diff of one change (`--- a/path` / `+++ b/path`, 3 lines of context).
pub fn unified(change: &Change, color: bool) -> String {
    let path = change.path.display();
    let old_name = match change.kind {
        ChangeKind::Create => "/dev/null".to_string(),
        _ => format!("a/{path}"),
    };
    let new_name = match change.kind {
        ChangeKind::Delete => "/dev/null".to_string(),
        _ => format!("b/{path}"),
    };
    let diff = TextDiff::from_lines(&change.old, &change.new);
    let mut out = String::new();
    let paint = |out: &mut String, style: &str, text: &str| {
        if color {
            out.push_str(style);
            out.push_str(text);
            out.push_str(RESET);
        } else {
            out.push_str(text);
        }
    };
    paint(&mut out, BOLD, &format!("--- {old_name}\n+++ {new_name}\n"));
    for group in diff.grouped_ops(3) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        paint(
            &mut out,
            CYAN,
            &format!(
                "@@ -{},{} +{},{} @@\n",
                old.start + usize::from(!old.is_empty()),
                old.len(),
                new.start + usize::from(!new.is_empty()),
                new.len()
            ),
        );
        for op in &group {
            for change in diff.iter_changes(op) {
                let (sign, style) = match change.tag() {
                    ChangeTag::Delete => ("-", RED),
                    ChangeTag::Insert => ("+", GREEN),
                    ChangeTag::Equal => (" ", ""),
                };
                let mut line = format!("{sign}{}", change.value());
                if !line.ends_with('\n') {
                    line.push_str("\n\\ No newline at end of file\n");
                }
                if style.is_empty() {
                    out.push_str(&line);
                } else {
                    paint(&mut out, style, &line);
                }
            }
        }
    }
    out
}
