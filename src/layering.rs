//! The layering test: parses the `crate::…` and `super::…` paths of every file under `src/`
//! and fails when a dependency points the wrong way, between top-level modules (the pipeline
//! order, with agent, proxy and watch as peers) or between the proxy's layer folders, or when
//! the proxy's files form a circle. Known generator circles are listed as named exceptions,
//! to be removed as they are fixed; any new one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, lowest first. A module may use only modules of a lower rank; modules
/// of the same rank (the companions) may not use each other. `proxy` sits low because the
/// generator renders its config format (`render::itsup` uses `proxy::config`).
const TOP: &[(&str, u8)] = &[
    ("model", 0),
    ("atomic", 0),
    ("logging", 0),
    ("http_serve", 0),
    ("yaml", 1),
    ("diagnostic", 2),
    ("proxy", 3),
    ("load", 4),
    ("validate", 5),
    ("plan", 6),
    ("render", 7),
    ("output", 8),
    ("deploy", 9),
    ("pipeline", 10),
    ("agent", 11),
    ("watch", 11),
    ("cli", 12),
];

/// The proxy's layer folders, lowest first; `proxy` itself (mod.rs) wires them together.
const PROXY: &[&str] = &[
    "base",
    "acme",
    "tls",
    "upstream",
    "middleware",
    "runtime",
    "l4",
    "request",
    "serve",
];

/// Known circles, allowed until fixed: (from, to, why). The generator's (load → validate,
/// validate → plan, validate → output) are gone; any new one fails.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/proxy/serve/admin.rs` → `["proxy", "serve", "admin"]`; `mod.rs` names its folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Code lines of a file, without comments and without its inline `mod tests` (whose
/// `super::` means the file itself).
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path that starts with `crate::` or `super::`, resolved to absolute segments
/// (brace groups expanded one level: `crate::proxy::{a, b}` gives both).
fn paths(module: &[String], text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let start_ok = i == 0 || !ident(bytes[i - 1]);
        let (mut base, skip) = if start_ok && rest.starts_with(b"crate::") {
            (Vec::new(), "crate::".len())
        } else if start_ok && rest.starts_with(b"super::") {
            // A file `a/b.rs` is module a::b, its parent a; `a/mod.rs` is a, its parent the root.
            let mut b = module.to_vec();
            b.pop();
            let mut n = "super::".len();
            while text[i + n..].starts_with("super::") {
                b.pop();
                n += "super::".len();
            }
            (b, n)
        } else {
            i += 1;
            continue;
        };
        let mut j = i + skip;
        loop {
            let k = j + text[j..].bytes().take_while(|&c| ident(c)).count();
            if k > j {
                base.push(text[j..k].to_string());
            }
            if text[k..].starts_with("::{") {
                let close = text[k..].find('}').map_or(text.len(), |c| k + c);
                for item in text[k + 3..close].split(',') {
                    let first = item.trim().split("::").next().unwrap_or("").trim();
                    if !first.is_empty() && first != "self" && first.bytes().all(ident) {
                        let mut p = base.clone();
                        p.push(first.to_string());
                        out.push(p);
                    }
                }
                out.push(base.clone());
                j = close;
                break;
            }
            if text[k..].starts_with("::") {
                j = k + 2;
            } else {
                j = k;
                break;
            }
        }
        out.push(base);
        i = j.max(i + 1);
    }
    out
}

/// File-level dependency graph: module path (joined with `::`) → modules it uses.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut g = Graph::new();
    for f in &files {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let deps = g.entry(module.join("::")).or_default();
        for mut p in paths(&module, &code(&text)) {
            // Keep the longest prefix that is a file module.
            while !p.is_empty() && !modules.contains(&p) {
                p.pop();
            }
            if !p.is_empty() && p != module {
                deps.insert(p.join("::"));
            }
        }
    }
    g
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

fn top_rank(m: &str) -> Option<u8> {
    TOP.iter().find(|(n, _)| *n == top(m)).map(|(_, r)| *r)
}

/// The proxy layer of a module under `proxy::` (the proxy's own mod.rs ranks above all).
fn proxy_rank(m: &str) -> Option<usize> {
    let mut parts = m.split("::");
    if parts.next() != Some("proxy") {
        return None;
    }
    Some(match parts.next() {
        Some(layer) => PROXY
            .iter()
            .position(|l| *l == layer)
            .unwrap_or(PROXY.len()),
        None => PROXY.len(),
    })
}

fn wrong_way(g: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, deps) in g {
        for to in deps {
            let (tf, tt) = (top(from), top(to));
            if tf != tt {
                if EXCEPTIONS.iter().any(|(a, b, _)| *a == tf && *b == tt) {
                    continue;
                }
                match (top_rank(from), top_rank(to)) {
                    (Some(a), Some(b)) if b < a => {}
                    (None, _) => {} // lib.rs / main.rs sit above everything
                    _ => bad.push(format!("{from} -> {to} (top-level {tf} may not use {tt})")),
                }
            } else if let (Some(a), Some(b)) = (proxy_rank(from), proxy_rank(to))
                && b > a
            {
                bad.push(format!(
                    "{from} -> {to} (a proxy layer may only use the ones below)"
                ));
            }
        }
    }
    bad
}

/// Circles among the given modules (Tarjan's strongly connected components of size > 1).
fn circles(g: &Graph, within: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str, within: &dyn Fn(&str) -> bool) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten().filter(|w| within(w)) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w, within);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys().filter(|v| within(v)) {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v, &within);
        }
    }
    s.out
}

#[test]
fn dependencies_point_one_way() {
    let g = graph();
    assert!(
        g.contains_key("proxy::request::forward"),
        "source tree not found"
    );
    let bad = wrong_way(&g);
    assert!(
        bad.is_empty(),
        "dependencies against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn proxy_agent_watch_have_no_circles() {
    let g = graph();
    let companions = |m: &str| matches!(top(m), "proxy" | "agent" | "watch");
    let found = circles(&g, companions);
    assert!(found.is_empty(), "import circles: {found:?}");
}

#[test]
fn the_parser_sees_edges() {
    let m = vec![
        "proxy".to_string(),
        "serve".to_string(),
        "admin".to_string(),
    ];
    let got = paths(
        &m,
        "use crate::proxy::{base::clock, runtime::state::Shared};\nuse super::view;",
    );
    let got: BTreeSet<String> = got.iter().map(|p| p.join("::")).collect();
    for want in ["proxy::base", "proxy::runtime", "proxy::serve::view"] {
        assert!(got.contains(want), "{want} missing from {got:?}");
    }
    // A circle is found.
    let mut g = Graph::new();
    g.entry("proxy::a".into())
        .or_default()
        .insert("proxy::b".into());
    g.entry("proxy::b".into())
        .or_default()
        .insert("proxy::a".into());
    assert_eq!(circles(&g, |_| true).len(), 1);
    assert_eq!(
        wrong_way(&BTreeMap::from([(
            "proxy::base::clock".to_string(),
            BTreeSet::from(["proxy::serve::admin".to_string()])
        )]))
        .len(),
        1
    );
}
