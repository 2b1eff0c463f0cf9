//! The crate's import graph has no cycles: between its top-level modules (`crate::x` paths),
//! and between the sibling modules inside each folder module (`super::x`, `crate::m::x`), so
//! that the layers stack (vocabulary at the bottom; the daemon; the dashboard, reports and
//! commands above it; `serve` and `main` on top). Paths in comments and in test-only code
//! (`#[cfg(test)]` modules) do not count. A failure names each cycle with one line per edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module, as its path below the crate root (`["daemon", "runner"]`).
type Module = Vec<String>;

/// Where a reference was seen: file and line.
type Seen = String;

struct Source {
    module: Module,
    code: Vec<(usize, String)>,
}

/// Every library module's file (not `main.rs`, not test-only files), with its code lines.
fn sources(src: &Path) -> Vec<Source> {
    let mut found = Vec::new();
    let mut test_only = BTreeSet::new();
    walk(src, &mut |path| {
        let rel = path.strip_prefix(src).expect("below src");
        let mut module: Module = rel.with_extension("").iter().map(|s| s.to_string_lossy().into_owned()).collect();
        if module == ["main"] {
            return;
        }
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(path).expect("a readable source file");
        let lines: Vec<&str> = text.lines().collect();
        let mut code = Vec::new();
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index].trim();
            if line == "#[cfg(test)]" {
                let next = lines.get(index + 1).map_or("", |l| l.trim());
                let declared = next.trim_start_matches("pub ").trim_start_matches("pub(crate) ");
                if let Some(name) = declared.strip_prefix("mod ").and_then(|n| n.strip_suffix(';')) {
                    // A test-only child module file.
                    let mut child = module.clone();
                    child.push(name.to_string());
                    test_only.insert(child);
                } else if declared.starts_with("mod ") {
                    // An inline test module: by convention the file's last item.
                    break;
                }
            }
            if !line.starts_with("//") {
                code.push((index + 1, lines[index].to_string()));
            }
            index += 1;
        }
        found.push(Source { module, code });
    });
    found.retain(|s| !test_only.iter().any(|t| s.module.starts_with(t)));
    found
}

fn walk(dir: &Path, each: &mut dyn FnMut(&Path)) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("a readable folder").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, each);
        } else if path.extension().is_some_and(|e| e == "rs") {
            each(&path);
        }
    }
}

/// The paths a line names from `crate::` or `super::`, made absolute, with `use` groups
/// (`crate::{a, b::{c}}`) expanded.
fn paths_in(line: &str, module: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    for (start, _) in line.char_indices() {
        let rest = &line[start..];
        let preceded_by_ident = start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':');
        if preceded_by_ident {
            continue;
        }
        let (base, tail) = if let Some(tail) = rest.strip_prefix("crate::") {
            (Vec::new(), tail)
        } else if rest.starts_with("super::") {
            let mut base = module.clone();
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                base.pop();
                tail = t;
            }
            (base, tail)
        } else {
            continue;
        };
        expand(base, tail, &mut out);
    }
    out
}

/// Expands one path tail (`a::b::{c, d::e}` …) after `base` into `out`.
fn expand(base: Module, tail: &str, out: &mut Vec<Module>) {
    let mut path = base;
    let mut rest = tail;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            for item in split_group(group) {
                expand(path.clone(), item.trim(), out);
            }
            return;
        }
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let ident = &rest[..end];
        if ident.is_empty() || ident == "self" {
            break;
        }
        path.push(ident.to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    out.push(path);
}

/// The items of a `{…}` group (its closing brace and what follows are left off).
fn split_group(group: &str) -> Vec<&str> {
    let (mut depth, mut from, mut items) = (0, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[from..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[from..]);
    items
}

/// `pub use child::{A, B}` in a folder module: item → the child module that defines it.
fn reexports(sources: &[Source], modules: &BTreeSet<Module>) -> BTreeMap<Module, Module> {
    let mut map = BTreeMap::new();
    for source in sources {
        for (_, line) in &source.code {
            let line = line.trim();
            let Some(used) = line.strip_prefix("pub use ").or_else(|| line.strip_prefix("pub(crate) use ")) else {
                continue;
            };
            let mut paths = Vec::new();
            expand(source.module.clone(), used.trim_end_matches(';'), &mut paths);
            for path in paths {
                if let Some(defining) = owning_module(&path, modules)
                    && defining.len() > source.module.len()
                {
                    let mut item = source.module.clone();
                    item.push(path.last().cloned().unwrap_or_default());
                    map.insert(item, defining);
                }
            }
        }
    }
    map
}

/// The longest known module that `path` starts with.
fn owning_module(path: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
}

/// Edges between siblings (and between top-level modules), each with where it was seen.
fn edges(sources: &[Source]) -> BTreeMap<(Module, Module), Seen> {
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    let reexported = reexports(sources, &modules);
    let mut edges = BTreeMap::new();
    for source in sources {
        if source.module.is_empty() {
            continue;
        }
        for (number, line) in &source.code {
            for path in paths_in(line, &source.module) {
                let target = match reexported.get(&path) {
                    Some(defining) => defining.clone(),
                    None => match owning_module(&path, &modules) {
                        Some(m) => m,
                        None => continue,
                    },
                };
                // Where the two paths part: an edge between the two siblings there.
                let common = source.module.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common >= source.module.len() || common >= target.len() {
                    continue; // into itself, a child, or an ancestor's own items
                }
                let from = source.module[..=common].to_vec();
                let to = target[..=common].to_vec();
                let seen = format!("src/{}: line {number}: {}", source.module.join("/"), line.trim());
                edges.entry((from, to)).or_insert(seen);
            }
        }
    }
    edges
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<(Module, Module), Seen>) -> Vec<Vec<Module>> {
    struct Search<'a> {
        next: BTreeMap<&'a Module, Vec<&'a Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut Search<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in s.next.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut next: BTreeMap<&Module, Vec<&Module>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let nodes: Vec<&Module> = next.keys().copied().collect();
    let mut search =
        Search { next, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in nodes {
        if !search.index.contains_key(v) {
            visit(&mut search, v);
        }
    }
    search.found
}

#[test]
fn the_module_graph_has_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = sources(&src);
    assert!(sources.len() > 50, "the crate's source files are found ({})", sources.len());
    let edges = edges(&sources);
    assert!(edges.len() > 50, "the crate's imports are found ({})", edges.len());
    let mut report = String::new();
    for component in cycles(&edges) {
        let names: Vec<String> = component.iter().map(|m| m.join("::")).collect();
        report.push_str(&format!("cycle: {}\n", names.join(", ")));
        for ((from, to), seen) in &edges {
            if component.contains(from) && component.contains(to) {
                report.push_str(&format!("  {} -> {}   ({seen})\n", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(report.is_empty(), "import cycles between modules:\n{report}");
}

#[test]
fn the_checker_sees_paths_groups_and_cycles() {
    let module = |p: &str| p.split("::").map(String::from).collect::<Module>();
    let found = paths_in("use crate::{api::{self, Client}, job::JobState};", &module("daemon::runner"));
    assert_eq!(found, [module("api"), module("api::Client"), module("job::JobState")]);
    assert_eq!(paths_in("use super::context::Ctx;", &module("daemon::runner")), [module("daemon::context::Ctx")]);
    assert_eq!(paths_in("use super::Thing; // → x", &module("daemon")), [module("Thing")]);
    assert!(paths_in("let x = my_crate::y;", &module("a")).is_empty());
    let edge = |a: &str, b: &str| ((module(a), module(b)), String::new());
    let looped: BTreeMap<_, _> = [edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("c", "d")].into_iter().collect();
    assert_eq!(cycles(&looped), [vec![module("a"), module("b"), module("c")]]);
    let straight: BTreeMap<_, _> = [edge("a", "b"), edge("b", "c"), edge("a", "c")].into_iter().collect();
    assert!(cycles(&straight).is_empty());
}

/// Every source file is in the README's source map (by its path, or by its folder and its
/// name), and every top-level module in `lib.rs`'s map, so a newcomer finds each one.
#[test]
fn the_readme_and_lib_maps_name_every_source_file_and_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("## Source map").expect("README has a source map");
    let map = &readme[start..];
    let map = &map[..map[3..].find("\n## ").map_or(map.len(), |end| end + 3)];
    let mut missing = Vec::new();
    walk(&root.join("src"), &mut |path| {
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let folder = format!("{}/", Path::new(&rel).parent().unwrap().display());
        // A command is named by its command (`run`), other files by their file name.
        let stem = name.trim_end_matches(".rs");
        let in_folder = map.contains(&format!("`{name}`")) || map.contains(&format!("`{stem}`"));
        let named = map.contains(&rel) || (map.contains(&folder) && in_folder);
        if !named && !rel.ends_with("/lib.rs") && !rel.contains("/assets/") {
            missing.push(rel);
        }
    });
    assert!(missing.is_empty(), "README's source map does not name: {missing:?}");
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let unnamed: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';')))
        .filter(|m| !lib.contains(&format!("[`{m}`]")) && *m != "testkit")
        .collect();
    assert!(unnamed.is_empty(), "lib.rs's map does not name: {unnamed:?}");
}
