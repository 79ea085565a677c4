//! The engine's module graph has no cycles: no top-level module of `engine/src` names
//! (`crate::x`, in code or in a doc link) a module that names it back, directly or through
//! others. A cycle means two modules can only be understood, and changed, together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The top-level modules of the crate at `src` and, for each, the modules its files name.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("files are found under src");
        let first = relative.components().next().expect("a file has a name");
        let module = first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        // The crate root and the binary list every module; they stand above the graph.
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("source files are readable");
        let named = graph.entry(module.clone()).or_default();
        named.extend(crate_paths(&text).into_iter().filter(|name| *name != module));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the source folder is readable") {
        let path = entry.expect("a folder entry is readable").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The first segment after every `crate::` in `text`, including each name of a grouped
/// `crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `postwire_plugins::crate::` does not occur; a preceding identifier character means a
        // longer word such as `mycrate::`.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level, up to its matching brace.
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.extend(identifier(group[start..i].trim_start()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.extend(identifier(group[start..i].trim_start()));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            names.extend(identifier(rest));
        }
    }
    names
}

fn identifier(text: &str) -> Option<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    // Items of the crate root itself (`crate::Error`) are not modules.
    let name = &text[..end];
    (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase())).then(|| name.to_owned())
}

/// Every cycle of the graph, each as the modules along it, found once from its smallest module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(graph: &Graph, start: &str, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
        let here = path.last().expect("the path is never empty").clone();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                found.push(cycle);
            } else if next.as_str() > start && !path.contains(next) && graph.contains_key(next) {
                path.push(next.clone());
                walk(graph, start, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut found);
    }
    found
}

#[test]
fn no_module_names_one_that_names_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10 && graph.contains_key("store") && graph["worker"].contains("store"),
        "the graph reads the engine's modules: {graph:?}"
    );
    let found = cycles(&graph);
    let shown: Vec<String> = found.iter().map(|c| c.join(" → ")).collect();
    assert!(found.is_empty(), "module cycles in engine/src:\n{}", shown.join("\n"));
}

#[test]
fn cycles_are_found_however_long() {
    let graph: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a", "d"]),
        ("d", &[]),
        ("e", &["e"]),
    ]
    .into_iter()
    .map(|(m, named)| (m.to_owned(), named.iter().map(|n| n.to_string()).collect()))
    .collect();
    assert_eq!(cycles(&graph), [vec!["a", "b", "c", "a"], vec!["e", "e"]]);
}

#[test]
fn grouped_imports_and_doc_links_are_read() {
    let text = "use crate::{render::{Place, Template}, error::Invalid};\n\
                /// See [`Store`](crate::store::Store); and crate::Error, mycrate::x.\n";
    let names: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(names, ["error", "render", "store"]);
}
