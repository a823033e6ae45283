//! The layer table (`advmnist::LAYERS`) enforced: every `crate::` and `super::` path in every
//! `.rs` file under `src/` (in `use` lines, multi-line `use` groups and inline paths such as
//! `crate::kernels::logistic::logistic(x)`) is resolved to the top-level module it names, and
//! the test fails, naming the file, the line, the path and both layers, on
//!
//! - a path that climbs to a higher layer;
//! - a circle between top-level modules (possible only within one layer);
//! - a module that is not in the table;
//! - any path in `models/params.rs` out of the file (the seam imports nothing of the crate);
//! - code outside a test that uses `testutil`.
//!
//! Test code is what a `#[cfg(test)] mod NAME { ... }` block holds (the test checks that
//! `cfg(test)` is used in no other form); it may use its own layer, lower ones, and
//! `testutil`. The binary (`src/main.rs`, `src/cli/`) sits above every layer: its own
//! `crate::` paths stay inside it, and its `advmnist::` paths may name any module but
//! `testutil`. Comments, doc comments, string and character literals are blanked before
//! paths are looked for, so a path written in them never counts.

use advmnist::{BINARY_LAYER, LAYERS, TESTS_ONLY, TESTUTIL_USES_UP_TO};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---- reading Rust source ----

/// `src` with every comment, string literal and character literal replaced by spaces
/// (newlines kept), so that line numbers stay and no text inside them is read as code.
fn blank_comments_and_literals(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = c.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let is_ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let at = |i: usize| c.get(i).copied();
    let mut i = 0;
    while i < c.len() {
        let starts_word = i == 0 || !is_ident(c[i - 1]);
        match c[i] {
            '/' if at(i + 1) == Some('/') => {
                let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
                blank(&mut out, i, end);
                i = end;
            }
            '/' if at(i + 1) == Some('*') => {
                // Block comments nest in Rust.
                let (mut depth, mut j) = (0usize, i);
                while j < c.len() {
                    if c[j] == '/' && at(j + 1) == Some('*') {
                        depth += 1;
                        j += 2;
                    } else if c[j] == '*' && at(j + 1) == Some('/') {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            // A raw string: r"..", r#".."#, br#".."# (the `b` is left as a harmless word).
            'r' if (starts_word
                || (i >= 1 && c[i - 1] == 'b' && (i < 2 || !is_ident(c[i - 2]))))
                && {
                    let hashes = (i + 1..c.len()).take_while(|&j| c[j] == '#').count();
                    at(i + 1 + hashes) == Some('"')
                } =>
            {
                let hashes = (i + 1..c.len()).take_while(|&j| c[j] == '#').count();
                let mut j = i + 2 + hashes;
                while j < c.len() {
                    if c[j] == '"' && (1..=hashes).all(|h| at(j + h) == Some('#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                blank(&mut out, i, j);
                i = j;
            }
            '"' => {
                let mut j = i + 1;
                while j < c.len() && c[j] != '"' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            // A character literal ('x', '\n', '\'', '\u{1F600}'), not a lifetime or label ('a).
            '\'' if at(i + 1) == Some('\\') => {
                let j = (i + 3..c.len()).find(|&j| c[j] == '\'').unwrap_or(c.len());
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            '\'' if at(i + 2) == Some('\'') => {
                blank(&mut out, i, i + 3);
                i += 3;
            }
            _ => i += 1,
        }
    }
    out.into_iter().collect()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

/// The tokens of blanked source: words, `::`, braces, commas, `*`, and single other characters.
fn tokens(code: &str) -> Vec<Token> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let ch = c[i];
        let tok = match ch {
            '\n' => {
                line += 1;
                i += 1;
                continue;
            }
            ch if ch.is_whitespace() => {
                i += 1;
                continue;
            }
            ch if ch.is_alphanumeric() || ch == '_' => {
                let end = (i..c.len())
                    .find(|&j| !(c[j].is_alphanumeric() || c[j] == '_'))
                    .unwrap_or(c.len());
                let word: String = c[i..end].iter().collect();
                i = end;
                out.push(Token {
                    tok: Tok::Word(word),
                    line,
                });
                continue;
            }
            ':' if c.get(i + 1) == Some(&':') => {
                i += 1;
                Tok::PathSep
            }
            '{' => Tok::Open,
            '}' => Tok::Close,
            ',' => Tok::Comma,
            '*' => Tok::Star,
            other => Tok::Other(other),
        };
        out.push(Token { tok, line });
        i += 1;
    }
    out
}

/// One path found in the source: its segments as written (`["super", "super", "rng",
/// "stream"]`; a `use` group gives one path per leaf), the line of its last segment, the
/// inline modules it sits in (`["tests"]`), and whether it is test code.
#[derive(Clone, Debug, PartialEq)]
struct FoundPath {
    segments: Vec<String>,
    line: usize,
    inline_modules: Vec<String>,
    in_tests: bool,
}

impl FoundPath {
    fn text(&self) -> String {
        self.segments.join("::")
    }
}

/// Reads one path tree from `t[i]` on (after its `prefix`): `a::b::c`, `a::*`, `a::{b, c::{d,
/// e as f}, self}`. Pushes each leaf with its line; returns the index after the tree.
fn path_tree(
    t: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    leaves: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut segments = prefix;
    loop {
        let Some(token) = t.get(i) else {
            leaves.push((segments, t.last().map_or(0, |t| t.line)));
            return i;
        };
        match &token.tok {
            Tok::Word(w) => {
                segments.push(w.clone());
                i += 1;
                if t.get(i).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                leaves.push((segments, token.line));
                return i;
            }
            Tok::Star => {
                segments.push("*".into());
                leaves.push((segments, token.line));
                return i + 1;
            }
            Tok::Open => {
                i += 1;
                loop {
                    match t.get(i).map(|t| &t.tok) {
                        Some(Tok::Close) => return i + 1,
                        None => return i,
                        _ => {}
                    }
                    i = path_tree(t, i, segments.clone(), leaves);
                    if matches!(t.get(i).map(|t| &t.tok), Some(Tok::Word(w)) if w == "as") {
                        i += 2; // `as alias`
                    }
                    match t.get(i).map(|t| &t.tok) {
                        Some(Tok::Comma) => i += 1,
                        Some(Tok::Close) => return i + 1,
                        other => panic!(
                            "line {}: unexpected {other:?} in a `use` group",
                            t.get(i).map_or(0, |t| t.line)
                        ),
                    }
                }
            }
            // `::<` (a turbofish) or anything else ends the path.
            _ => {
                leaves.push((segments, token.line));
                return i;
            }
        }
    }
}

/// The file's test code: for each `#[cfg(test)] [pub(..)] mod NAME { ... }` block, the token
/// range from its `#` to its closing brace. Fails on any other use of `cfg(test)` (on a
/// function, in `cfg(any(test, ..))`, on a module in a file of its own), the forms this test
/// does not read as test code.
fn test_code_ranges(t: &[Token]) -> Result<Vec<std::ops::RangeInclusive<usize>>, String> {
    let word = |i: usize, w: &str| matches!(t.get(i).map(|t| &t.tok), Some(Tok::Word(x)) if x == w);
    let other = |i: usize, ch: char| t.get(i).map(|t| &t.tok) == Some(&Tok::Other(ch));
    let form = "test code must be a `#[cfg(test)] mod tests { ... }` block in the file";
    let mut ranges = Vec::new();
    for i in 0..t.len() {
        if !(other(i, '#') && other(i + 1, '[') && word(i + 2, "cfg") && other(i + 3, '(')) {
            continue;
        }
        let close = (i + 4..t.len())
            .find(|&j| other(j, ']'))
            .ok_or_else(|| format!("line {}: unclosed attribute", t[i].line))?;
        if !(i + 4..close).any(|j| word(j, "test")) {
            continue;
        }
        let plain = word(i + 4, "test") && other(i + 5, ')') && close == i + 6;
        // Skip a visibility, `pub` or `pub(crate)`.
        let mut j = close + 1;
        if word(j, "pub") {
            j += 1;
            if other(j, '(') {
                j = (j..t.len())
                    .find(|&k| other(k, ')'))
                    .map_or(t.len(), |k| k + 1);
            }
        }
        let is_module = word(j, "mod")
            && matches!(t.get(j + 1).map(|t| &t.tok), Some(Tok::Word(_)))
            && t.get(j + 2).map(|t| &t.tok) == Some(&Tok::Open);
        if !plain || !is_module {
            return Err(format!("line {}: {form}", t[i].line));
        }
        let mut depth = 0usize;
        let end = t
            .iter()
            .enumerate()
            .skip(j + 2)
            .find(|(_, token)| {
                match token.tok {
                    Tok::Open => depth += 1,
                    Tok::Close => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(k, _)| k)
            .ok_or_else(|| format!("line {}: unclosed test module", t[i].line))?;
        ranges.push(i..=end);
    }
    Ok(ranges)
}

/// Every path in blanked source `code` that starts with one of `roots` (`crate`, `super`, and
/// for the binary `advmnist`), with the inline modules around it and whether it is test code.
fn paths_in(code: &str, roots: &[&str]) -> Result<Vec<FoundPath>, String> {
    let t = tokens(code);
    let tests = test_code_ranges(&t)?;
    let mut found = Vec::new();
    let mut modules: Vec<(String, usize)> = Vec::new(); // (name, brace depth inside it)
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match &t[i].tok {
            Tok::Open => {
                depth += 1;
                if i >= 2 && matches!(&t[i - 2].tok, Tok::Word(w) if w == "mod") {
                    if let Tok::Word(name) = &t[i - 1].tok {
                        modules.push((name.clone(), depth));
                    }
                }
            }
            Tok::Close => {
                if modules.last().is_some_and(|(_, d)| *d == depth) {
                    modules.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Word(w)
                if roots.contains(&w.as_str())
                    && t.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep)
                    && (i == 0 || t[i - 1].tok != Tok::PathSep) =>
            {
                let mut leaves = Vec::new();
                let end = path_tree(&t, i, Vec::new(), &mut leaves);
                for (segments, line) in leaves {
                    found.push(FoundPath {
                        segments,
                        line,
                        inline_modules: modules.iter().map(|(m, _)| m.clone()).collect(),
                        in_tests: tests.iter().any(|r| r.contains(&i)),
                    });
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(found)
}

/// The module path, from the crate root, that `segments` names when written in module
/// `module`: `crate::a::b` is `a::b` anywhere; each `super` goes up one module.
fn resolve(module: &[String], segments: &[String]) -> Result<Vec<String>, String> {
    let mut at = match segments.first().map(String::as_str) {
        Some("crate") | Some("advmnist") => return Ok(segments[1..].to_vec()),
        Some("super") => module.to_vec(),
        _ => return Err(format!("`{}` is not a crate path", segments.join("::"))),
    };
    let supers = segments.iter().take_while(|s| *s == "super").count();
    for _ in 0..supers {
        if at.pop().is_none() {
            return Err(format!(
                "`{}` goes above the crate root",
                segments.join("::")
            ));
        }
    }
    at.extend(segments[supers..].iter().filter(|s| *s != "self").cloned());
    Ok(at)
}

// ---- the crate's files ----

struct SourceFile {
    /// `src/kernels/gemm.rs`
    name: String,
    /// The module the file is: `["kernels", "gemm"]`; `[]` for `lib.rs` and `main.rs`.
    module: Vec<String>,
    /// Part of the binary (`main.rs`, `cli/`, `bin/`) rather than the library.
    binary: bool,
    text: String,
}

fn source_files() -> Vec<SourceFile> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    walk(&root.join("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(root.join("src")).expect("under src/");
            let mut module: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            let first = module.first().map(String::as_str);
            let binary = relative == Path::new("main.rs") || matches!(first, Some("cli" | "bin"));
            SourceFile {
                name: format!("src/{}", relative.display()),
                module,
                binary,
                text: std::fs::read_to_string(&path).expect("readable source"),
            }
        })
        .collect()
}

/// The top-level modules `src/lib.rs` declares (`pub mod x;`, `mod x;`).
fn declared_modules(lib: &str) -> Vec<String> {
    let t = tokens(&blank_comments_and_literals(lib));
    (0..t.len().saturating_sub(2))
        .filter(|&i| t[i].tok == Tok::Word("mod".into()) && t[i + 2].tok == Tok::Other(';'))
        .filter_map(|i| match &t[i + 1].tok {
            Tok::Word(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The items `src/lib.rs` defines itself (`fn tune_allocator`, `const LAYERS`, ...): they use
/// nothing of the crate, so they count as layer 0.
fn root_items(lib: &str) -> Vec<String> {
    let t = tokens(&blank_comments_and_literals(lib));
    let mut depth = 0usize;
    let mut items = Vec::new();
    for (i, token) in t.iter().enumerate() {
        match &token.tok {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            Tok::Word(w)
                if depth == 0
                    && matches!(
                        w.as_str(),
                        "fn" | "const" | "static" | "struct" | "enum" | "trait" | "type"
                    ) =>
            {
                if let Some(Tok::Word(name)) = t.get(i + 1).map(|t| &t.tok) {
                    items.push(name.clone());
                }
            }
            _ => {}
        }
    }
    items
}

fn layer_name(layer: u8) -> String {
    if layer == TESTS_ONLY {
        "tests only".into()
    } else {
        format!("layer {layer}")
    }
}

// ---- the rules ----

/// Everything that breaks the layer rules in `files`, one message per fault.
fn layering_faults(files: &[SourceFile]) -> Vec<String> {
    let mut table: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut faults = Vec::new();
    assert_eq!(table.len(), LAYERS.len(), "a module is in LAYERS twice");
    let lib_items = files
        .iter()
        .find(|f| f.name == "src/lib.rs")
        .map(|lib| root_items(&lib.text))
        .unwrap_or_default();
    for item in &lib_items {
        table.entry(item.as_str()).or_insert(0);
    }
    let missing = |module: &str| {
        format!("module `{module}` is not in the layer table: add it to `LAYERS` in src/lib.rs")
    };
    if let Some(lib) = files.iter().find(|f| f.name == "src/lib.rs") {
        for module in declared_modules(&lib.text) {
            if !table.contains_key(module.as_str()) {
                faults.push(format!("src/lib.rs: {}", missing(&module)));
            }
        }
    }
    // Edges between different top-level modules, each with where it was first seen.
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in files {
        if file.name == "src/lib.rs" {
            continue; // the crate root only declares the modules
        }
        let roots: &[&str] = if file.binary {
            &["crate", "super", "advmnist"]
        } else {
            &["crate", "super"]
        };
        let found = match paths_in(&blank_comments_and_literals(&file.text), roots) {
            Ok(found) => found,
            Err(e) => {
                faults.push(format!("{}: {e}", file.name));
                continue;
            }
        };
        for path in found {
            let at = format!("{}:{}", file.name, path.line);
            let text = path.text();
            if file.binary {
                // The binary's own paths stay inside it; it may use any module of the library
                // but testutil, outside its tests.
                if path.segments[0] == "advmnist" {
                    let target = path.segments.get(1).map(String::as_str).unwrap_or("");
                    if !table.contains_key(target) {
                        faults.push(format!("{at}: `{text}`: {}", missing(target)));
                    } else if table[target] == TESTS_ONLY && !path.in_tests {
                        faults.push(format!("{at}: `{text}`: testutil is for tests only, but this is the binary's code (layer {BINARY_LAYER})"));
                    }
                }
                continue;
            }
            let mut module = file.module.clone();
            module.extend(path.inline_modules.iter().cloned());
            let resolved = match resolve(&module, &path.segments) {
                Ok(r) if !r.is_empty() => r,
                Ok(_) => {
                    faults.push(format!("{at}: `{text}` names the crate root"));
                    continue;
                }
                Err(e) => {
                    faults.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if file.module == ["models", "params"] && !resolved.starts_with(&file.module) {
                faults.push(format!("{at}: `{text}`: models/params.rs must import nothing of the crate (every network and optimiser depends on it)"));
            }
            let (from, to) = (file.module[0].as_str(), resolved[0].as_str());
            if from == to {
                continue;
            }
            let (Some(&from_layer), Some(&to_layer)) = (table.get(from), table.get(to)) else {
                let unknown = if table.contains_key(from) { to } else { from };
                faults.push(format!("{at}: `{text}`: {}", missing(unknown)));
                continue;
            };
            if to_layer == TESTS_ONLY {
                if !path.in_tests {
                    faults.push(format!("{at}: `{text}`: testutil is for tests only, but this is `{from}`'s code outside its `#[cfg(test)] mod tests`"));
                }
                continue;
            }
            let allowed = if from_layer == TESTS_ONLY {
                TESTUTIL_USES_UP_TO
            } else {
                from_layer
            };
            if to_layer > allowed {
                faults.push(format!(
                    "{at}: `{text}` climbs: `{from}` ({}) uses `{to}` ({}){}",
                    layer_name(from_layer),
                    layer_name(to_layer),
                    if from_layer == TESTS_ONLY {
                        format!(", but testutil may use only layers up to {TESTUTIL_USES_UP_TO}")
                    } else {
                        String::new()
                    }
                ));
                continue;
            }
            if from_layer != TESTS_ONLY {
                edges
                    .entry((from.to_string(), to.to_string()))
                    .or_insert_with(|| format!("{at} `{text}`"));
            }
        }
    }
    faults.extend(circles(&edges, &table));
    faults
}

/// Every circle among the top-level modules, as one message each naming every edge with the
/// place it was first seen. (No path climbs by then, so a circle lies within one layer.)
fn circles(edges: &BTreeMap<(String, String), String>, table: &BTreeMap<&str, u8>) -> Vec<String> {
    let nodes: BTreeSet<&str> = edges
        .keys()
        .flat_map(|(a, b)| [a.as_str(), b.as_str()])
        .collect();
    let reaches = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(n) = stack.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<String>> = nodes.iter().map(|&n| (n, reaches(n))).collect();
    // Modules on a circle, grouped by the circle (the modules that reach each other).
    let mut done = BTreeSet::new();
    let mut messages = Vec::new();
    for &n in &nodes {
        if done.contains(n) || !reach[n].contains(n) {
            continue;
        }
        let group: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .filter(|&m| reach[n].contains(m) && reach[m].contains(n))
            .collect();
        done.extend(group.iter().copied());
        let inside: Vec<String> = edges
            .iter()
            .filter(|((a, b), _)| group.contains(a.as_str()) && group.contains(b.as_str()))
            .map(|((a, b), at)| format!("  {a} -> {b}: {at}"))
            .collect();
        let layers: BTreeSet<String> = group.iter().map(|m| layer_name(table[m])).collect();
        messages.push(format!(
            "a circle between top-level modules {group:?} ({}):\n{}",
            layers.into_iter().collect::<Vec<_>>().join(", "),
            inside.join("\n")
        ));
    }
    messages
}

#[test]
fn no_import_climbs_a_layer_and_no_circle() {
    let faults = layering_faults(&source_files());
    assert!(
        faults.is_empty(),
        "{} fault(s) against the layer table (`LAYERS` in src/lib.rs):\n{}",
        faults.len(),
        faults.join("\n")
    );
}

/// The reader finds what the crate is known to use, so the test above cannot pass by reading
/// nothing.
#[test]
fn the_crates_own_imports_are_found() {
    let files = source_files();
    let conv = files
        .iter()
        .find(|f| f.name == "src/layers/conv.rs")
        .expect("src/layers/conv.rs");
    let found = paths_in(
        &blank_comments_and_literals(&conv.text),
        &["crate", "super"],
    )
    .unwrap();
    let texts: Vec<String> = found.iter().map(FoundPath::text).collect();
    for want in [
        "crate::kernels::gemm::gemm",
        "crate::kernels::scalar::Scalar",
        "super::*",
    ] {
        assert!(
            texts.iter().any(|t| t == want),
            "{want} not found in {texts:?}"
        );
    }
    assert!(found.iter().any(|p| p.in_tests) && found.iter().any(|p| !p.in_tests));
    let lib = files
        .iter()
        .find(|f| f.name == "src/lib.rs")
        .expect("src/lib.rs");
    assert!(declared_modules(&lib.text).contains(&"kernels".to_string()));
}

// ---- the reader itself, on tricky snippets ----

fn found(code: &str, roots: &[&str]) -> Vec<(String, usize, Vec<String>, bool)> {
    paths_in(&blank_comments_and_literals(code), roots)
        .unwrap()
        .into_iter()
        .map(|p| (p.text(), p.line, p.inline_modules.clone(), p.in_tests))
        .collect()
}

fn texts(code: &str) -> Vec<String> {
    found(code, &["crate", "super"])
        .into_iter()
        .map(|f| f.0)
        .collect()
}

#[test]
fn reads_nested_multi_line_groups_with_renames_and_globs() {
    let code = "use crate::{\n    a,\n    b::{c, d::{self, E as F}},\n    g::*,\n};\n";
    let got = found(code, &["crate"]);
    let leaves: Vec<(String, usize)> = got.iter().map(|f| (f.0.clone(), f.1)).collect();
    assert_eq!(
        leaves,
        [
            ("crate::a".to_string(), 2),
            ("crate::b::c".to_string(), 3),
            ("crate::b::d::self".to_string(), 3),
            ("crate::b::d::E".to_string(), 3),
            ("crate::g::*".to_string(), 4),
        ]
    );
}

#[test]
fn reads_inline_paths_and_stops_at_turbofish_calls_and_struct_literals() {
    let code = "fn f(v: &mut [f32]) {\n    crate::kernels::logistic::logistic(v);\n    let x = crate::rng::random_array::<f32, Ix2>((2, 2), 1);\n    let m = crate::models::DropoutRates { input: 0.0, ..crate::models::DropoutRates::NONE };\n    let y: <f32 as crate::kernels::scalar::Scalar>::Thing;\n}\n";
    assert_eq!(
        texts(code),
        [
            "crate::kernels::logistic::logistic",
            "crate::rng::random_array",
            "crate::models::DropoutRates",
            "crate::models::DropoutRates::NONE",
            "crate::kernels::scalar::Scalar",
        ]
    );
}

#[test]
fn ignores_comments_strings_chars_and_visibility() {
    let code = r###"
//! Module doc: crate::report::x
/// Item doc naming [`crate::report`].
/* block /* nested crate::report */ crate::report */
pub(crate) fn f<'a>(s: &'a str) -> char {
    let _ = "a string with crate::report and \" an escaped quote crate::report";
    let _ = r#"a raw "string" crate::report"#;
    let _ = br"raw bytes crate::report";
    let _ = b"bytes crate::report";
    let _ = '"'; let _ = '\''; let _ = '\u{1F600}';
    'outer: loop { break 'outer; }
    crate::kernels::k(); // a comment crate::report
    '{'
}
"###;
    assert_eq!(texts(code), ["crate::kernels::k"]);
}

#[test]
fn resolves_super_through_files_and_inline_modules() {
    let code = "mod tests {\n    use super::*;\n    use super::super::rng::stream;\n    mod deeper {\n        use super::super::super::data::{self, CLASSES};\n    }\n}\nuse super::sibling::f;\n";
    let got = paths_in(&blank_comments_and_literals(code), &["crate", "super"]).unwrap();
    let file_module: Vec<String> = vec!["kernels".into(), "gemm".into()];
    let resolved: Vec<String> = got
        .iter()
        .map(|p| {
            let mut module = file_module.clone();
            module.extend(p.inline_modules.iter().cloned());
            resolve(&module, &p.segments).unwrap().join("::")
        })
        .collect();
    assert_eq!(
        resolved,
        [
            "kernels::gemm::*",
            "kernels::rng::stream",
            "kernels::data",
            "kernels::data::CLASSES",
            "kernels::sibling::f",
        ]
    );
    assert!(resolve(
        &["limits".to_string()],
        &["super".into(), "super".into(), "x".into()]
    )
    .is_err());
    assert_eq!(
        resolve(
            &["limits".to_string(), "tests".to_string()],
            &["super".into(), "super".into(), "data".into()]
        )
        .unwrap(),
        ["data"]
    );
}

#[test]
fn test_code_is_what_cfg_test_modules_hold() {
    let code = "use crate::a::b;\n#[cfg(test)]\npub(crate) mod fixtures {\n    use crate::testutil::x;\n    fn f() { if true { } }\n}\nfn after() { crate::c::d(); }\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n";
    let got = found(code, &["crate", "super"]);
    assert_eq!(
        got.iter().map(|f| (f.0.as_str(), f.3)).collect::<Vec<_>>(),
        [
            ("crate::a::b", false),
            ("crate::testutil::x", true),
            ("crate::c::d", false),
            ("super::*", true)
        ]
    );
    assert_eq!(got[1].2, ["fixtures"]);
    assert_eq!(got[3].2, ["tests"]);
    // Any other form is refused, so nothing is taken for test code that is not.
    for bad in [
        "#[cfg(test)]\nfn helper() {}\n",
        "#[cfg(any(test, feature = \"x\"))]\nmod tests {}\n",
        "#[cfg(test)]\nmod tests;\n",
    ] {
        let t = tokens(&blank_comments_and_literals(bad));
        assert!(test_code_ranges(&t).is_err(), "accepted: {bad}");
    }
    // The attribute inside a string does not count.
    let t = tokens(&blank_comments_and_literals("let s = \"#[cfg(test)]\";\n"));
    assert_eq!(test_code_ranges(&t), Ok(vec![]));
}

/// The rules on a made-up crate: each fault is found, and named with its file, line and layers.
#[test]
fn faults_name_the_file_the_line_the_path_and_both_layers() {
    let file = |name: &str, text: &str| {
        let relative = name
            .strip_prefix("src/")
            .unwrap()
            .strip_suffix(".rs")
            .unwrap();
        let mut module: Vec<String> = relative.split('/').map(String::from).collect();
        if module.last().map(String::as_str) == Some("mod") {
            module.pop();
        }
        SourceFile {
            name: name.into(),
            binary: false,
            module,
            text: text.into(),
        }
    };
    let files = [
        file("src/kernels/gemm.rs", "fn f() {}\n\nuse crate::report::plot;\n"),
        file("src/layers/conv.rs", "use crate::defences::lowpass;\n"),
        file("src/defences/lowpass.rs", "use crate::layers::conv;\n"),
        file("src/models/params.rs", "use crate::kernels::scalar::Scalar;\n"),
        file("src/bench/mod.rs", "use crate::testutil::random_array;\n"),
        file("src/nowhere.rs", "use crate::data::X;\n"),
        file("src/train/mod.rs", "#[cfg(test)]\nmod tests {\n    use crate::testutil::random_array;\n    use super::super::models::LeNet;\n}\n"),
    ];
    let faults = layering_faults(&files);
    let expect = [
        "src/kernels/gemm.rs:3: `crate::report::plot` climbs: `kernels` (layer 1) uses `report` (layer 7)",
        "src/models/params.rs:1: `crate::kernels::scalar::Scalar`: models/params.rs must import nothing",
        "src/bench/mod.rs:1: `crate::testutil::random_array`: testutil is for tests only",
        "src/nowhere.rs:1: `crate::data::X`: module `nowhere` is not in the layer table",
        "a circle between top-level modules {\"defences\", \"layers\"} (layer 2):\n  defences -> layers: src/defences/lowpass.rs:1 `crate::layers::conv`\n  layers -> defences: src/layers/conv.rs:1 `crate::defences::lowpass`",
    ];
    for e in expect {
        assert!(
            faults.iter().any(|f| f.starts_with(e)),
            "no fault starting {e:?} in:\n{}",
            faults.join("\n")
        );
    }
    assert_eq!(faults.len(), expect.len(), "{}", faults.join("\n"));
}
