//! The agent's module graph (STYLE.md, "Layout shows the architecture"):
//! no import cycles between top-level modules, the edge (`sys`) imports
//! nothing above it, and the two front ends (`cli`, `dbus`) reach the use
//! cases through `ops`, never through each other (`cli` may use the D-Bus
//! client; `dbus` never imports `cli`).
//!
//! Edges are read from the source: every `crate::NAME` path outside
//! `#[cfg(test)]` code, including `use crate::{a, b::c}` groups.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level module names a piece of source refers to via `crate::`.
fn references(src: &str) -> BTreeSet<String> {
    let code = src.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn collect(dir: &Path, top: Option<&str>, g: &mut Graph) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let module = top.map(str::to_string).unwrap_or_else(|| name.clone());
        if p.is_dir() {
            if top.is_none() && name == "bin" {
                continue;
            }
            collect(&p, Some(&module), g);
        } else if p.extension().is_some_and(|x| x == "rs") {
            if top.is_none() && name == "lib" {
                continue;
            }
            let refs = references(&std::fs::read_to_string(&p).unwrap());
            let entry = g.entry(module.clone()).or_default();
            entry.extend(refs.into_iter().filter(|r| *r != module));
        }
    }
}

fn graph() -> Graph {
    let mut g = Graph::new();
    collect(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        None,
        &mut g,
    );
    g
}

/// A cycle as a path `a -> b -> ... -> a`, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycles() {
    let g = graph();
    assert!(g.len() > 10, "read the modules: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_edge_and_the_front_ends_keep_their_places() {
    let g = graph();
    let sys = &g["sys"];
    assert!(
        sys.is_empty(),
        "sys imports {sys:?}; it must not import above itself"
    );
    assert!(!g["dbus"].contains("cli"), "dbus imports cli");
    assert!(g["cli"].contains("ops") && g["dbus"].contains("ops"));
    for lower in [
        "install", "control", "status", "state", "boot", "bundle", "config",
    ] {
        for front in ["cli", "dbus", "ops"] {
            assert!(
                !g[lower].contains(front),
                "{lower} imports {front}: front ends and use cases sit above it"
            );
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_and_reads_grouped_imports() {
    let r =
        references("use crate::{a, b::c};\nfn f() { crate::d::e(); }\n#[cfg(test)]\nuse crate::z;");
    assert_eq!(r, ["a", "b", "d"].iter().map(|s| s.to_string()).collect());
    let mut g = Graph::new();
    g.entry("x".into()).or_default().insert("y".into());
    assert!(find_cycle(&g).is_none());
    g.entry("y".into()).or_default().insert("x".into());
    assert_eq!(find_cycle(&g).unwrap(), ["x", "y", "x"]);
}
