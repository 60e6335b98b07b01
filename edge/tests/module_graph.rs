//! No import circles between the edge's modules (issue 20).
//!
//! Reads every `edge/src/**/*.rs` as text (the `glue` modules too, though they
//! compile only for wasm32), collects the `crate::` and `super::` paths outside
//! `#[cfg(test)]` items (tests may reach anywhere) and outside comments, plus
//! a `mod.rs`'s relative paths into its own submodules, and maps each path to
//! the file that defines the module it names (the longest prefix that is a
//! file; inline modules such as `model::keys` count as their file).
//!
//! Two granularities, both must be acyclic:
//! - groups: a top-level folder (`api`, `calls`, `dispatch`, ...) or a
//!   top-level file (`model`, `ids`, ...) is one node; so `calls` may use
//!   `dispatch` or the reverse, never both, even through different files.
//! - files: every file is a node, which covers the files inside each group
//!   (a group's `mod.rs` is a file like the others).
//!
//! A re-export (`pub use`) counts as an import of what it re-exports, so it
//! cannot hide a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path from the crate root: `["dispatch", "queue"]`.
type ModPath = Vec<String>;

#[test]
fn edge_modules_have_no_import_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    assert!(
        files.len() > 20,
        "found only {} files under {src:?}",
        files.len()
    );
    let files = drop_test_only_files(files);
    let edges = file_edges(&files);
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "too few imports found; is the scanner broken?"
    );
    let groups = group_edges(&edges);
    if let Some(circle) = find_cycle(&groups) {
        panic!(
            "import circle between groups: {}\nall group imports:\n{}",
            circle.join(" -> "),
            listing(&groups)
        );
    }
    let by_file: BTreeMap<String, BTreeSet<String>> = edges
        .iter()
        .map(|(from, to)| (show(from), to.iter().map(show).collect()))
        .collect();
    if let Some(circle) = find_cycle(&by_file) {
        panic!(
            "import circle between files: {}\nall file imports:\n{}",
            circle.join(" -> "),
            listing(&by_file)
        );
    }
}

#[test]
fn the_check_sees_circles_through_paths_groups_and_re_exports() {
    let files = |texts: &[(&str, &str)]| -> Vec<(ModPath, String)> {
        texts
            .iter()
            .map(|(path, text)| (split(path), text.to_string()))
            .collect()
    };
    let cyclic_groups = |texts: &[(&str, &str)]| {
        find_cycle(&group_edges(&file_edges(&drop_test_only_files(files(
            texts,
        )))))
        .is_some()
    };
    // a::x -> b::y -> a::z: no file circle, but a group circle.
    assert!(cyclic_groups(&[
        ("", "pub mod a; pub mod b;"),
        ("a", "pub mod x; pub mod z;"),
        ("a::x", "use crate::b::y::Thing;"),
        ("a::z", ""),
        ("b", "pub mod y;"),
        ("b::y", "fn f() { crate::a::z::g() }"),
    ]));
    // `super::` inside an inline module is the file itself, not its parent.
    let edges = file_edges(&files(&[
        ("", "pub mod a;"),
        ("a", "pub mod x;\npub fn f() { x::g() }"),
        (
            "a::x",
            "pub fn g() {}\npub mod memory {\n    use super::*;\n}\nuse super::f;",
        ),
    ]));
    assert_eq!(edges[&split("a::x")], BTreeSet::from([split("a")]));
    let edges = file_edges(&files(&[
        ("", "pub mod a;"),
        ("a", "pub mod x;\npub fn f() { x::g() }"),
        (
            "a::x",
            "pub fn g() {}\npub mod memory {\n    use super::*;\n}\n",
        ),
    ]));
    assert!(edges[&split("a::x")].is_empty());
    // Through a use group and super::.
    assert!(cyclic_groups(&[
        ("", "pub mod a; pub mod b;"),
        ("a", "pub mod x;"),
        ("a::x", "use super::super::{b::{self, Y}};"),
        ("b", "pub use crate::a::x::T;"),
    ]));
    // Tests and comments do not count.
    assert!(!cyclic_groups(&[
        ("", "pub mod a; pub mod b;"),
        ("a", "use crate::b::T;\n#[cfg(test)]\nmod tests;"),
        ("a::tests", "use crate::b::T;"),
        (
            "b",
            "// crate::a::X\n/// [`crate::a`]\n#[cfg(test)]\nmod tests {\n    use crate::a::X;\n}\n",
        ),
    ]));
    // Braces in a test's string, raw string and char literals and comments do not end it early.
    assert!(!cyclic_groups(&[
        ("", "pub mod a; pub mod b;"),
        ("a", "use crate::b::T;"),
        (
            "b",
            "#[cfg(test)]\nmod tests {\n    const S: &str = \"}}\\\"}\";\n    const R: &str = r#\"}\"#;\n    const C: char = '}'; // }\n    use crate::a::X;\n}\n",
        ),
    ]));
    // A mod.rs reaching into its own child, which uses the mod.rs: a file circle.
    let edges = file_edges(&files(&[
        ("", "pub mod a;"),
        ("a", "mod child;\npub fn f() { child::g() }"),
        ("a::child", "pub fn g() { crate::a::f() }"),
    ]));
    let by_file = edges
        .iter()
        .map(|(k, v)| (show(k), v.iter().map(show).collect()))
        .collect();
    assert!(find_cycle(&by_file).is_some());
}

fn listing(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    graph
        .iter()
        .map(|(from, to)| {
            format!(
                "  {from} -> {}",
                Vec::from_iter(to.iter().cloned()).join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn split(path: &str) -> ModPath {
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(ModPath, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under src");
        let mut module: ModPath = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        out.push((module, text));
    }
}

/// Source text without comments and without `#[cfg(test)]` items; also the
/// names of the `#[cfg(test)] mod x;` files it declares.
fn production_text(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut test_mods = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(raw) = lines.next() {
        let line = strip_comment(raw);
        if line.trim() != "#[cfg(test)]" {
            out.push_str(&line);
            out.push('\n');
            continue;
        }
        // Skip the item the attribute applies to: further attributes, then
        // one line ending in `;` or everything up to its closing brace
        // (braces in string and char literals and in comments do not count).
        let mut depth = 0i32;
        let mut opened = false;
        let mut lexer = Lexer::default();
        for raw in lines.by_ref() {
            let item = strip_comment(raw);
            let t = item.trim();
            if !opened && t.starts_with("#[") {
                continue;
            }
            if !opened {
                if let Some(name) = t
                    .trim_start_matches("pub ")
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
                {
                    test_mods.push(name.trim().to_string());
                }
            }
            for delta in lexer.code_braces(raw) {
                depth += delta;
                opened |= delta > 0;
            }
            if (opened && depth <= 0) || (!opened && t.ends_with(';')) {
                break;
            }
        }
    }
    (out, test_mods)
}

/// Where a scan of Rust source stands between lines: inside a string
/// literal (a raw one with this many `#`s) or not.
#[derive(Default)]
struct Lexer {
    in_string: bool,
    raw_hashes: Option<usize>,
}

impl Lexer {
    /// +1 per `{` and -1 per `}` of code in `line`: not in string or char
    /// literals (which may span lines) nor after a `//` comment.
    fn code_braces(&mut self, line: &str) -> Vec<i32> {
        let chars: Vec<char> = line.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if self.in_string {
                match self.raw_hashes {
                    Some(n)
                        if c == '"'
                            && chars[i + 1..].iter().take(n).filter(|h| **h == '#').count()
                                == n =>
                    {
                        self.in_string = false;
                        i += n;
                    }
                    Some(_) => {}
                    None if c == '\\' => i += 1,
                    None if c == '"' => self.in_string = false,
                    None => {}
                }
            } else if c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            } else if c == '"' {
                self.in_string = true;
                self.raw_hashes = None;
            } else if c == 'r'
                && matches!(chars.get(i + 1), Some('"' | '#'))
                && (i == 0 || !chars[i - 1].is_alphanumeric())
            {
                let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
                if chars.get(i + 1 + hashes) == Some(&'"') {
                    self.in_string = true;
                    self.raw_hashes = Some(hashes);
                    i += 1 + hashes;
                }
            } else if c == '\'' {
                // A char literal: 'x', or an escape ('\'', '\u{7f}'); else a lifetime.
                if chars.get(i + 2) == Some(&'\'') {
                    i += 2;
                } else if chars.get(i + 1) == Some(&'\\') {
                    let close = (i + 3..chars.len().min(i + 12)).find(|j| chars[*j] == '\'');
                    i = close.unwrap_or(i);
                }
            } else if c == '{' {
                out.push(1);
            } else if c == '}' {
                out.push(-1);
            }
            i += 1;
        }
        out
    }
}

/// The line without a `//` comment (doc comments included); `//` inside a
/// string literal (a URL) ends the line early, which only loses text.
fn strip_comment(line: &str) -> String {
    match line.find("//") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// Files minus those only declared under `#[cfg(test)]`, each with its
/// production text.
fn drop_test_only_files(files: Vec<(ModPath, String)>) -> Vec<(ModPath, String)> {
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    let mut kept = Vec::new();
    for (module, text) in &files {
        let (prod, test_mods) = production_text(text);
        for name in test_mods {
            let mut child = module.clone();
            child.push(name);
            test_only.insert(child);
        }
        kept.push((module.clone(), prod));
    }
    kept.retain(|(m, _)| !test_only.iter().any(|t| m.starts_with(t)));
    kept
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path in `text` that starts with `head` (`crate` or `super`), as
/// segment lists, use groups expanded: `crate::a::{b, c::D}` gives
/// `a::b` and `a::c::D`; `super::super::x` gives `super::x` after `head`.
fn paths_after(text: &str, head: &str) -> Vec<(usize, Vec<String>)> {
    let needle = format!("{head}::");
    let mut out = Vec::new();
    let s = text;
    let mut from = 0;
    while let Some(i) = s[from..].find(&needle) {
        let start = from + i;
        from = start + needle.len();
        let before = s[..start].chars().last();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut rest = s[from..].chars().peekable();
        let mut found = Vec::new();
        parse_tree(&mut rest, Vec::new(), &mut found);
        out.extend(found.into_iter().map(|p| (start, p)));
    }
    out
}

/// The inline modules (`mod memory { ... }`) enclosing byte `at` of `text`,
/// outermost first, so `super::` inside them resolves as rustc does.
fn inline_modules_at(text: &str, at: usize) -> Vec<String> {
    let mut open: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut pending: Option<String> = None;
    let mut word = String::new();
    let mut last_word = String::new();
    for (i, c) in text.char_indices() {
        if i >= at {
            break;
        }
        if is_ident(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            if last_word == "mod" {
                pending = Some(word.clone());
            }
            last_word = std::mem::take(&mut word);
        }
        match c {
            '{' => {
                if let Some(name) = pending.take() {
                    open.push((name, depth));
                }
                depth += 1;
            }
            '}' => {
                depth -= 1;
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
            }
            ';' => pending = None,
            _ => {}
        }
    }
    open.into_iter().map(|(name, _)| name).collect()
}

/// Parses `a::b::{c, d::{e}}` from `rest` into `out`, each prefixed by `prefix`.
fn parse_tree(
    rest: &mut std::iter::Peekable<std::str::Chars<'_>>,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    let mut path = prefix;
    loop {
        while rest.peek().is_some_and(|c| c.is_whitespace()) {
            rest.next();
        }
        if rest.peek() == Some(&'{') {
            rest.next();
            loop {
                parse_tree(rest, path.clone(), out);
                // Past `as alias` to the separator.
                while rest.peek().is_some_and(|c| *c != ',' && *c != '}') {
                    rest.next();
                }
                match rest.next() {
                    Some(',') => {
                        while rest.peek().is_some_and(|c| c.is_whitespace()) {
                            rest.next();
                        }
                        if rest.peek() == Some(&'}') {
                            rest.next();
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }
        let mut ident = String::new();
        while let Some(&c) = rest.peek() {
            if is_ident(c) {
                ident.push(c);
                rest.next();
            } else {
                break;
            }
        }
        if ident.is_empty() || ident == "self" {
            out.push(path);
            return;
        }
        path.push(ident);
        let mut look = rest.clone();
        if look.next() == Some(':') && look.next() == Some(':') {
            rest.next();
            rest.next();
            continue;
        }
        // `as alias` and anything else end the path.
        out.push(path);
        return;
    }
}

/// For each file, the files it imports (itself excluded).
fn file_edges(files: &[(ModPath, String)]) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let known: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let resolve = |path: &[String]| -> Option<ModPath> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|p| known.contains(p))
    };
    let mut edges = BTreeMap::new();
    for (module, text) in files {
        let mut targets = BTreeSet::new();
        for (_, path) in paths_after(text, "crate") {
            targets.extend(resolve(&path));
        }
        for (at, path) in paths_after(text, "super") {
            // `super::super::x`: `super` segments after the first pop further.
            let mut base = module.clone();
            base.extend(inline_modules_at(text, at));
            base.pop();
            let mut rest = path.as_slice();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            targets.extend(resolve(&base));
        }
        // A parent's relative paths into its own submodules (`child::f()`).
        for child in known
            .iter()
            .filter(|k| k.len() == module.len() + 1 && k.starts_with(module) && !module.is_empty())
        {
            let name = format!("{}::", child[child.len() - 1]);
            let mut from = 0;
            while let Some(i) = text[from..].find(&name) {
                let at = from + i;
                from = at + name.len();
                let before = text[..at].chars().last();
                if !before.is_some_and(|c| is_ident(c) || c == ':') {
                    targets.insert(child.clone());
                }
            }
        }
        targets.remove(module);
        // The crate root only declares modules.
        targets.remove(&Vec::new());
        if !module.is_empty() {
            edges.insert(module.clone(), targets);
        }
    }
    edges
}

/// The same edges between top-level groups (a top-level folder or file).
fn group_edges(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> BTreeMap<String, BTreeSet<String>> {
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in edges {
        let g = from[0].clone();
        let entry = groups.entry(g.clone()).or_default();
        for to in tos {
            if to[0] != g {
                entry.insert(to[0].clone());
            }
        }
    }
    groups
}

/// One circle, if there is any (depth-first search, three colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}
