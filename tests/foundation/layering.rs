//! The module map holds (ARCHITECTURE.md): read from the `crate::`, `super::` and `self::`
//! paths of every file under src/ (test modules, after a top-level `#[cfg(test)]`, left out),
//! no file imports itself back through others, no top-level module does either, and the
//! directions ARCHITECTURE.md names as forbidden are not taken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`serve::sts`, `` for the crate root) -> the modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// What sits above the broker: its API, the front ends, the daemon and the workflows.
const ABOVE_BROKER: [&str; 8] = [
    "api",
    "backend",
    "cli",
    "remote",
    "serve",
    "session",
    "tui",
    "workflows",
];

/// Top-level module -> the top-level modules it must never import.
fn forbidden() -> Vec<(&'static str, Vec<&'static str>)> {
    let above_and = |more: &[&'static str]| [&ABOVE_BROKER[..], more].concat();
    vec![
        // Shared by client and daemon, so it may know neither, nor what sits above them.
        ("wire", above_and(&["broker"])),
        // The client and the daemon meet only in `wire`.
        ("remote", vec!["serve", "backend"]),
        ("serve", vec!["remote", "tui", "backend"]),
        // The backend serves the CLI and the TUI and knows neither; the daemon is reached only
        // through its client.
        ("backend", vec!["cli", "tui", "serve"]),
        // The broker is below its API and everything that serves it.
        ("broker", above_and(&[])),
        // The fleet is the AWS adapter only: what the broker does with it is `workflows`.
        ("fleet", above_and(&["broker"])),
        (
            "config",
            vec!["api", "backend", "broker", "cli", "remote", "serve"],
        ),
    ]
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` -> `a::b`; `src/a/mod.rs` -> `a`; `src/lib.rs` -> ``.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src_dir()).unwrap().with_extension("");
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
    parts.join("::")
}

/// The module paths a line names: `crate::a::b` anywhere, and at the file's top level
/// `use super::...` and `use self::...` resolved against `module`.
fn named_paths(line: &str, module: &str, is_dir: bool) -> Vec<String> {
    let mut found = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + "crate::".len()..];
        let path: String = tail.chars().take_while(|c| ident(*c)).collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            found.push(path.trim_end_matches(':').to_string());
        }
        rest = tail;
    }
    let top = line
        .strip_prefix("pub use ")
        .or_else(|| line.strip_prefix("pub(crate) use "))
        .or_else(|| line.strip_prefix("use "));
    let parent = |m: &str| m.rsplit_once("::").map_or(String::new(), |(p, _)| p.into());
    let under = |base: String, path: &str| {
        if base.is_empty() {
            path.to_string()
        } else {
            format!("{base}::{path}")
        }
    };
    if top.is_none() {
        // A path written inline, `super::x::f(..)`: an arrow all the same.
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            let before = rest[..at].chars().last();
            let tail = &rest[at + "super::".len()..];
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                let path: String = tail.chars().take_while(|c| ident(*c)).collect();
                found.push(under(parent(module), path.trim_end_matches(':')));
            }
            rest = tail;
        }
    }
    if let Some(top) = top {
        let (base, tail) = if let Some(t) = top.strip_prefix("super::") {
            // In `a/b.rs` super is `a`; in `a/b/mod.rs` (module `a::b`) it is `a` too.
            (parent(module), t)
        } else if let Some(t) = top.strip_prefix("self::") {
            (
                if is_dir {
                    module.to_string()
                } else {
                    parent(module)
                },
                t,
            )
        } else {
            return found;
        };
        let path: String = tail.chars().take_while(|c| ident(*c)).collect();
        found.push(under(base, path.trim_end_matches(':')));
    }
    found
}

/// The file-level import graph of src/.
fn graph() -> Graph {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut g = Graph::new();
    for file in &files {
        let module = module_of(file);
        let is_dir = file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
        let text = std::fs::read_to_string(file).unwrap();
        // Test modules may reach anywhere; they are not part of the map.
        let product = text.split("\n#[cfg(test)]").next().unwrap_or("");
        let edges = g.entry(module.clone()).or_default();
        for line in product.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for path in named_paths(line, &module, is_dir) {
                // The longest prefix that is a file of its own.
                let mut segs: Vec<&str> = path.split("::").collect();
                while !segs.is_empty() && !modules.contains(&segs.join("::")) {
                    segs.pop();
                }
                let target = segs.join("::");
                if !segs.is_empty() && target != module {
                    edges.insert(target);
                }
            }
        }
    }
    g
}

fn top_level(g: &Graph) -> Graph {
    let head = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut t = Graph::new();
    for (from, tos) in g {
        for to in tos {
            if head(from) != head(to) && !from.is_empty() && !to.is_empty() {
                t.entry(head(from)).or_default().insert(head(to));
            }
        }
    }
    t
}

/// One import cycle, if the graph has any.
fn a_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), false);
        stack.push(node.to_string());
        for next in g.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(false) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(true) => {}
                None => {
                    if let Some(c) = visit(g, next, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in g.keys() {
        if !state.contains_key(node)
            && let Some(c) = visit(g, node, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_reader_sees_the_imports_it_must() {
    // Guards the check itself: a few arrows known to exist are found.
    let g = graph();
    for (from, to) in [
        ("remote::connector", "wire::proof"),
        ("broker::error", "wire"),
        ("workflows::reaper", "session"),
        ("lab::api", "lab::call"),
        // Written inline, not in a `use` line.
        ("tui::watch", "tui::recording_rows"),
    ] {
        assert!(
            g[from].contains(to),
            "{from} -> {to} not read: {:?}",
            g[from]
        );
    }
    let cycle: Graph = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(
        a_cycle(&cycle),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

#[test]
fn no_file_imports_itself_back() {
    let g = graph();
    assert_eq!(a_cycle(&g), None, "an import circle between files of src/");
}

#[test]
fn no_top_level_module_imports_itself_back() {
    let t = top_level(&graph());
    assert_eq!(
        a_cycle(&t),
        None,
        "an import circle between modules of src/"
    );
}

#[test]
fn forbidden_directions_are_not_taken() {
    let t = top_level(&graph());
    for (from, never) in forbidden() {
        let taken: Vec<_> = t
            .get(from)
            .into_iter()
            .flatten()
            .filter(|to| never.contains(&to.as_str()))
            .collect();
        assert!(taken.is_empty(), "{from} must not import {taken:?}");
    }
}
