//! The module graph of `tandem-image` has no cycle (STYLE.md: "The module
//! graph has no cycles — check it when you add an import").
//!
//! Edges, read from the source text: a file's `crate::m` paths (in `use`
//! lists and in expressions) point at module `m`; `crate::X` for an item
//! `X` that is not a module points at the crate root, since only the root
//! can hold it. The root's own edges are its bare `m::` paths (it reaches
//! its modules without `crate::`). `mod` declarations are not edges. A
//! cycle through the root means a module uses an item of `lib.rs` that
//! `lib.rs`'s own code depends on the module for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const ROOT: &str = "<crate root>";

/// Module name of each file under src/ (bin/ is a separate crate).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            let key = if name == "lib" {
                ROOT.to_string()
            } else {
                name
            };
            out.entry(key).or_insert_with(String::new).push_str(&text);
        } else if p.is_dir() && name != "bin" {
            // src/m/*.rs: submodules, counted as part of m.
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&f).unwrap();
                    out.entry(name.clone())
                        .or_insert_with(String::new)
                        .push_str(&text);
                }
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments after each `crate::` (brace lists expanded).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let inner = &list[..list.find('}').unwrap_or(list.len())];
            for item in inner.split(',') {
                let id = ident(item.trim());
                if !id.is_empty() {
                    out.insert(id.to_string());
                }
            }
        } else {
            let id = ident(rest);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
    }
    out
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let names: BTreeSet<String> = mods.keys().filter(|k| *k != ROOT).cloned().collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, text) in &mods {
        // Comments and doc text are not code.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut edges = BTreeSet::new();
        for r in crate_refs(&code) {
            edges.insert(if names.contains(&r) { r } else { ROOT.into() });
        }
        if m == ROOT {
            for n in &names {
                let bare = format!("{n}::");
                let used = code.match_indices(&bare).any(|(i, _)| {
                    let before = code[..i].chars().last();
                    !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                });
                if used {
                    edges.insert(n.clone());
                }
            }
        }
        edges.remove(m);
        g.insert(m.clone(), edges);
    }
    g
}

/// A cycle, if any (depth-first search).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == m).unwrap();
                    let mut c = path[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_is_acyclic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    let listing: Vec<String> = g
        .iter()
        .map(|(m, e)| {
            format!(
                "{m} -> {}",
                e.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    if let Some(c) = find_cycle(&g) {
        panic!(
            "module cycle: {}\nthe graph:\n{}",
            c.join(" -> "),
            listing.join("\n")
        );
    }
    eprintln!("{}", listing.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
    assert_eq!(
        crate_refs("use crate::{run, tool::x};\n crate::oci::apply(); crate::is_root()"),
        BTreeSet::from(["run".into(), "tool".into(), "oci".into(), "is_root".into()])
    );
}
