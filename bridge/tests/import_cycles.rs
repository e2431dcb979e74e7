//! No import cycles between the files of any crate of the workspace.
//!
//! A file depends on another when it names one of its items by a path (`use crate::a::b::Item`,
//! `super::model::HdrExtIds`, `child::f()` …), re-exports included. Paths are resolved against the
//! module tree each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`) declares with
//! `mod name;`, to the deepest module that is a file of its own. Test code (`#[cfg(test)]` modules,
//! inline or in files) is left out: only what ships counts. A cycle (a strongly connected group of
//! two or more files) fails the test with one cycle path per group.
//!
//! Dependency-free on purpose (a small lexer, no `syn`): it runs in CI with the other tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// Cycles known and being removed elsewhere (`"crate: a.rs <-> b.rs"`, files relative to the
/// crate's `src/`). An entry that no longer matches a cycle fails the test too, so the list only
/// shrinks.
const KNOWN: &[&str] = &[
    // core/brewery.rs uses the per-input output queue (`Io`) from core/mod.rs, which owns it next
    // to the core's public types (`Output`, `CoreConfig`) it is built from.
    "focus: core/brewery.rs <-> core/mod.rs",
    // config/table.rs (the settings rows) fills in `Layer` from config.rs, which loads through the
    // rows; the table is split out only to keep config.rs short.
    "bridge: config/table.rs <-> config.rs",
    // config/toml_file.rs (the TOML layer) applies itself onto `Config` from config.rs, which
    // loads the file through it; the layer is split out only to keep config.rs short.
    "focus: config/toml_file.rs <-> config.rs",
];

#[test]
fn no_import_cycles_between_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut found: Vec<String> = Vec::new();
    let mut report = String::new();
    for member in workspace_members(&root) {
        let dir = root.join(&member);
        let name = crate_name(&dir).unwrap_or_else(|| member.clone());
        for crate_root in crate_roots(&dir) {
            let graph = Graph::build(&crate_root);
            for cycle in graph.cycles() {
                let rel = |p: &Path| {
                    p.strip_prefix(dir.join("src"))
                        .unwrap_or(p)
                        .display()
                        .to_string()
                };
                let files: Vec<String> = cycle.iter().map(|p| rel(p)).collect();
                let key = format!("{name}: {}", files.join(" <-> "));
                report.push_str(&format!("  {key}\n"));
                found.push(key);
            }
        }
    }
    let unexpected: Vec<&String> = found
        .iter()
        .filter(|f| !KNOWN.contains(&f.as_str()))
        .collect();
    let stale: Vec<&&str> = KNOWN
        .iter()
        .filter(|k| !found.iter().any(|f| f == **k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "import cycles between files (break them: move the shared item to a module both use):\n{report}"
    );
    assert!(
        stale.is_empty(),
        "these known cycles are gone: remove them from KNOWN in {}: {stale:?}",
        file!()
    );
}

/// The lexer and resolver on a hand-made tree: a cycle through `super::`, one through a `use`
/// group and a child module path; test modules and comments do not count.
#[test]
fn the_checker_finds_cycles_and_ignores_test_code() {
    let dir = tempdir("cycles");
    let src = dir.join("src");
    fs::create_dir_all(src.join("sfu")).unwrap();
    let w = |p: &str, s: &str| fs::write(src.join(p), s).unwrap();
    w(
        "lib.rs",
        "pub mod sfu;\npub mod media;\npub mod leaf;\n#[cfg(test)]\nmod tests;\n",
    );
    w("tests.rs", "use crate::media::X;\n");
    w(
        "sfu/mod.rs",
        "mod a;\nmod b;\npub use a::A;\n// crate::media::Y in a comment\nconst S: &str = \"crate::media\";\n",
    );
    w("sfu/a.rs", "use super::b::{self, B};\npub struct A;\n");
    w(
        "sfu/b.rs",
        "pub struct B(crate::sfu::a::A);\n#[cfg(test)]\nmod tests { use crate::leaf::L; }\n",
    );
    w(
        "media.rs",
        "use crate::{leaf::{self, L}, sfu};\npub struct X;\nfn f() -> char { '{' }\n",
    );
    w(
        "leaf.rs",
        "pub struct L<'a>(&'a str);\nfn g() { let _ = r#\"crate::media\"#; }\n",
    );
    let g = Graph::build(&src.join("lib.rs"));
    let cycles: Vec<Vec<String>> = g
        .cycles()
        .iter()
        .map(|c| {
            c.iter()
                .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        cycles,
        vec![vec!["sfu/a.rs".to_owned(), "sfu/b.rs".to_owned()]]
    );
    // media -> leaf and media -> sfu/mod.rs; leaf has no edges (raw string, lifetime).
    let media = &g.edges[&src.join("media.rs")];
    assert!(media.contains(&src.join("leaf.rs")) && media.contains(&src.join("sfu/mod.rs")));
    assert!(g.edges[&src.join("leaf.rs")].is_empty());
    // sfu/mod.rs -> a (re-export); the comment and the string do not count; tests.rs is test code.
    assert_eq!(
        g.edges[&src.join("sfu/mod.rs")],
        BTreeSet::from([src.join("sfu/a.rs")])
    );
    assert!(!g.edges.contains_key(&src.join("tests.rs")));
    fs::remove_dir_all(&dir).unwrap();
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("import-cycles-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

// ------------------------------------------------------------------------------------ workspace

/// `members = [...]` of the root `Cargo.toml`.
fn workspace_members(root: &Path) -> Vec<String> {
    let toml = fs::read_to_string(root.join("Cargo.toml")).expect("root Cargo.toml");
    let start = toml.find("members").expect("workspace members");
    let open = start + toml[start..].find('[').expect("members list");
    let close = open + toml[open..].find(']').expect("members list end");
    toml[open + 1..close]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn crate_name(dir: &Path) -> Option<String> {
    let toml = fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    let line = toml.lines().find(|l| l.trim_start().starts_with("name"))?;
    Some(line.split('=').nth(1)?.trim().trim_matches('"').to_owned())
}

fn crate_roots(dir: &Path) -> Vec<PathBuf> {
    let src = dir.join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.exists())
        .collect();
    if let Ok(rd) = fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}

// ------------------------------------------------------------------------------------ lexer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Tokens of Rust source without comments, string/char literals and lifetimes.
fn lex(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_string(b, i + 1),
            b'r' | b'b' if raw_string_start(b, i).is_some() => {
                let (hashes, body) = raw_string_start(b, i).unwrap_or((0, i + 1));
                i = body;
                loop {
                    if i >= b.len() {
                        break;
                    }
                    if b[i] == b'"' && b[i + 1..].iter().take(hashes).all(|h| *h == b'#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
            }
            b'b' if b.get(i + 1) == Some(&b'"') => i = skip_string(b, i + 2),
            b'b' if b.get(i + 1) == Some(&b'\'') => i = skip_char(b, i + 1),
            b'\'' => i = skip_char(b, i),
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push(Tok::Path);
                i += 2;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let s = i;
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                // `r#ident`
                let word = &src[s..i];
                out.push(Tok::Ident(word.to_owned()));
            }
            c if c.is_ascii_whitespace() => i += 1,
            c => {
                if c.is_ascii() {
                    out.push(Tok::Punct(char::from(c)));
                }
                i += 1;
            }
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, `br#"` at `i`: (number of #, index after the opening quote).
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1] == b'_' || b[i - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let mut j = i;
    if b[j] == b'b' {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while b.get(j) == Some(&b'#') {
        hashes += 1;
        j += 1;
    }
    (b.get(j) == Some(&b'"')).then_some((hashes, j + 1))
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// A char literal at `i` (the quote), or a lifetime / label (skipped as well).
fn skip_char(b: &[u8], i: usize) -> usize {
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(b'\\'), _) => {
            let mut j = i + 3;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            j + 1
        }
        (Some(_), Some(b'\'')) => i + 3,
        _ => {
            // Multi-byte char literal or a lifetime: skip the quote and the identifier.
            let mut j = i + 1;
            while j < b.len() && (b[j] == b'_' || b[j].is_ascii_alphanumeric() || b[j] >= 0x80) {
                j += 1;
            }
            if b.get(j) == Some(&b'\'') { j + 1 } else { j }
        }
    }
}

/// Removes `#[cfg(test)]` items (the attribute and the item after it: `mod x;`, `mod x { … }`,
/// `use …;`, `fn … { … }`).
fn strip_test_items(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(&toks[i..]) {
            i += 7;
            // Further attributes.
            while toks.get(i) == Some(&Tok::Punct('#')) {
                i = skip_group(&toks, i + 1);
            }
            // To the end of the item: `;` at depth 0 or a closing `}` back at depth 0.
            let mut depth = 0i32;
            while i < toks.len() {
                match toks[i] {
                    Tok::Punct('{') | Tok::Punct('(') | Tok::Punct('[') => depth += 1,
                    Tok::Punct('}') | Tok::Punct(')') | Tok::Punct(']') => {
                        depth -= 1;
                        if depth == 0 && toks[i] == Tok::Punct('}') {
                            i += 1;
                            break;
                        }
                    }
                    Tok::Punct(';') if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

/// `# [ cfg ( test ) ]`
fn is_cfg_test(t: &[Tok]) -> bool {
    matches!(t, [Tok::Punct('#'), Tok::Punct('['), Tok::Ident(c), Tok::Punct('('), Tok::Ident(x), Tok::Punct(')'), Tok::Punct(']'), ..] if c == "cfg" && x == "test")
}

/// Index after the bracket group starting at `i` (`[`…`]`).
fn skip_group(t: &[Tok], mut i: usize) -> usize {
    let mut depth = 0;
    while i < t.len() {
        match t[i] {
            Tok::Punct('[') => depth += 1,
            Tok::Punct(']') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

// ------------------------------------------------------------------------------------ graph

struct Graph {
    /// Module path (from the crate root) → file.
    modules: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

struct FileInfo {
    path: PathBuf,
    module: Vec<String>,
    toks: Vec<Tok>,
    /// `mod x;` children declared here (not test modules).
    children: Vec<String>,
}

impl Graph {
    fn build(root: &Path) -> Graph {
        let mut modules = BTreeMap::new();
        let mut files: Vec<FileInfo> = Vec::new();
        let mut queue = vec![(root.to_path_buf(), Vec::<String>::new())];
        while let Some((path, module)) = queue.pop() {
            let Ok(src) = fs::read_to_string(&path) else {
                continue;
            };
            let toks = strip_test_items(lex(&src));
            let children = declared_modules(&toks);
            let is_mod_root = matches!(
                path.file_name().and_then(|f| f.to_str()),
                Some("mod.rs" | "lib.rs" | "main.rs")
            ) || module.is_empty();
            let dir = if is_mod_root {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                path.with_extension("")
            };
            for c in &children {
                let a = dir.join(format!("{c}.rs"));
                let b = dir.join(c).join("mod.rs");
                let child = if a.exists() { a } else { b };
                let mut m = module.clone();
                m.push(c.clone());
                queue.push((child, m));
            }
            modules.insert(module.clone(), path.clone());
            files.push(FileInfo {
                path,
                module,
                toks,
                children,
            });
        }
        let mut g = Graph {
            modules,
            edges: BTreeMap::new(),
        };
        for f in &files {
            let mut out = BTreeSet::new();
            for p in paths(&f.toks, &f.children) {
                if let Some(abs) = absolute(&f.module, &p)
                    && let Some(target) = g.resolve(&abs)
                    && target != f.path
                {
                    out.insert(target);
                }
            }
            g.edges.insert(f.path.clone(), out);
        }
        g
    }

    /// The file of the deepest module on `path`.
    fn resolve(&self, path: &[String]) -> Option<PathBuf> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.modules.get(&path[..n]).cloned())
    }

    /// Strongly connected groups of two or more files (Tarjan), each as one cycle path.
    fn cycles(&self) -> Vec<Vec<PathBuf>> {
        let nodes: Vec<&PathBuf> = self.edges.keys().collect();
        let index: HashMap<&PathBuf, usize> =
            nodes.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let adj: Vec<Vec<usize>> = nodes
            .iter()
            .map(|p| {
                self.edges[*p]
                    .iter()
                    .filter_map(|q| index.get(q).copied())
                    .collect()
            })
            .collect();
        let mut t = Tarjan {
            adj: &adj,
            index: vec![None; nodes.len()],
            low: vec![0; nodes.len()],
            on_stack: vec![false; nodes.len()],
            stack: Vec::new(),
            next: 0,
            groups: Vec::new(),
        };
        for v in 0..nodes.len() {
            if t.index[v].is_none() {
                t.visit(v);
            }
        }
        let mut out: Vec<Vec<PathBuf>> = t
            .groups
            .into_iter()
            .filter(|g| g.len() > 1)
            .map(|g| {
                let in_group: BTreeSet<usize> = g.iter().copied().collect();
                let start = *in_group.iter().next().unwrap_or(&0);
                cycle_path(&adj, &in_group, start)
                    .into_iter()
                    .map(|i| nodes[i].clone())
                    .collect()
            })
            .collect();
        out.sort();
        out
    }
}

/// One cycle through `start` inside a strongly connected group (breadth-first back to `start`).
fn cycle_path(adj: &[Vec<usize>], group: &BTreeSet<usize>, start: usize) -> Vec<usize> {
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if !group.contains(&w) {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut x = v;
                while let Some(&p) = prev.get(&x) {
                    path.push(p);
                    x = p;
                }
                path.reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(w) {
                slot.insert(v);
                queue.push_back(w);
            }
        }
    }
    vec![start]
}

struct Tarjan<'a> {
    adj: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    groups: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for k in 0..self.adj[v].len() {
            let w = self.adj[v][k];
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut g = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                g.push(w);
                if w == v {
                    break;
                }
            }
            self.groups.push(g);
        }
    }
}

/// `mod name;` declarations (inline `mod name { … }` bodies stay part of this file).
fn declared_modules(t: &[Tok]) -> Vec<String> {
    let mut out = Vec::new();
    for w in t.windows(3) {
        if let [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';')] = w
            && m == "mod"
        {
            out.push(name.clone());
        }
    }
    out
}

/// Every path that may name another module: `use` trees expanded, and `a::b::c` sequences in code
/// that start with `crate`, `super`, `self` or a child module of this file.
fn paths(t: &[Tok], children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == Tok::Ident("use".into()) {
            let (tree_end, mut leaves) = use_tree(t, i + 1, Vec::new());
            out.append(&mut leaves);
            i = tree_end;
            continue;
        }
        if let Tok::Ident(first) = &t[i]
            && (first == "crate" || first == "super" || first == "self" || children.contains(first))
            && t.get(i + 1) == Some(&Tok::Path)
            && (i == 0 || t[i - 1] != Tok::Path)
        {
            let mut p = vec![first.clone()];
            let mut j = i + 1;
            while t.get(j) == Some(&Tok::Path) {
                match t.get(j + 1) {
                    Some(Tok::Ident(s)) => {
                        p.push(s.clone());
                        j += 2;
                    }
                    _ => break,
                }
            }
            out.push(p);
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Parses a use tree starting at `i` with `prefix`; returns the index after it and its leaves.
fn use_tree(t: &[Tok], mut i: usize, prefix: Vec<String>) -> (usize, Vec<Vec<String>>) {
    let mut path = prefix;
    let mut leaves = Vec::new();
    if t.get(i) == Some(&Tok::Path) {
        i += 1; // leading `::`
    }
    loop {
        match t.get(i) {
            Some(Tok::Ident(s)) => {
                if s != "self" || path.is_empty() {
                    path.push(s.clone());
                }
                i += 1;
                match t.get(i) {
                    Some(Tok::Path) => i += 1,
                    Some(Tok::Ident(a)) if a == "as" => {
                        i += 2;
                        leaves.push(path);
                        return (end_of_use(t, i), leaves);
                    }
                    _ => {
                        leaves.push(path);
                        return (end_of_use(t, i), leaves);
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                leaves.push(path);
                return (end_of_use(t, i + 1), leaves);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match t.get(i) {
                        Some(Tok::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => i += 1,
                        None => break,
                        _ => {
                            let (j, mut sub) = use_tree(t, i, path.clone());
                            leaves.append(&mut sub);
                            i = j;
                        }
                    }
                }
                return (end_of_use(t, i), leaves);
            }
            _ => return (i, leaves),
        }
    }
}

/// Inside a group, stops before `,` or `}`; at the top level, after `;`.
fn end_of_use(t: &[Tok], mut i: usize) -> usize {
    while let Some(tok) = t.get(i) {
        match tok {
            Tok::Punct(',') | Tok::Punct('}') => return i,
            Tok::Punct(';') => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// A path as seen from `module`, made absolute from the crate root (None: another crate).
fn absolute(module: &[String], p: &[String]) -> Option<Vec<String>> {
    let mut cur: Vec<String> = module.to_vec();
    let mut rest = p;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            cur.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                cur.pop()?;
                rest = &rest[1..];
            }
        }
        Some("self") => rest = &rest[1..],
        // A child module (2018 paths) — or another crate, which resolves to nothing below.
        _ => {}
    }
    cur.extend(rest.iter().cloned());
    Some(cur)
}
