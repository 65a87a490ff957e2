//! The module graph of the library and of the policy core, read from the
//! sources: no cycle between sibling modules at any level, no module
//! reaching up into a layer above it, and a policy core that does no I/O.
//!
//! A file is a module (`foo.rs`, `foo/mod.rs`); its dependencies are the
//! paths it names with `crate::`, `super::`, `self::` or a child module's
//! name, in `use` lines (groups expanded) and inline. A dependency from
//! `a::b` to `a::c` is the edge `b → c` among the children of `a`; from
//! `a::b` to `d::e`, the edge `a → d` at the top. Test code (`tests.rs`
//! files and `#[cfg(test)] mod tests` blocks) is left out: a test may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type ModPath = Vec<String>;

/// Where a dependency was seen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Evidence {
    file: String,
    line: usize,
    text: String,
}

/// One module's dependencies on other modules of the same crate.
#[derive(Debug, Default)]
struct Graph {
    modules: BTreeMap<ModPath, String>,
    deps: Vec<(ModPath, ModPath, Evidence)>,
}

/// The module path of a source file, relative to the crate's `src/`.
fn module_of(rel: &str) -> Option<ModPath> {
    let rel = rel.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    match parts.last().map(String::as_str) {
        Some("lib") | Some("main") if parts.len() == 1 => return Some(vec![]),
        Some("mod") => {
            parts.pop();
        }
        _ => {}
    }
    Some(parts)
}

fn is_test_module(m: &ModPath) -> bool {
    m.iter().any(|p| p == "tests")
}

/// The source with comments, string and char literals blanked (lengths and
/// line breaks kept), and the trailing `#[cfg(test)] mod ... {` block cut.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                i += 1;
            }
            out.push_str("  ");
            i += 2;
        } else if c == b'r' && b.get(i + 1) == Some(&b'#') && b.get(i + 2) == Some(&b'"') {
            // r#"..."#
            let end = src[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            while i < end {
                out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                i += 1;
            }
        } else if c == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped char literal: '\n', '\"', '\x7f', '\u{..}'.
            let end = (i + 3..b.len().min(i + 12))
                .find(|&j| b[j] == b'\'')
                .map_or(i + 1, |j| j + 1);
            while i < end {
                out.push(' ');
                i += 1;
            }
        } else if c == b'"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    if let Some(at) = out
        .find("#[cfg(test)]\nmod ")
        .or_else(|| out.find("#[cfg(test)]\npub(crate) mod "))
    {
        out.truncate(at);
    }
    out
}

/// Expands `a::{b, c::{d, e}}` (the text after `use `, before `;`) into paths.
fn expand_use(tree: &str) -> Vec<String> {
    // One space between words, none around the punctuation of a use tree.
    let mut tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in ["{", "}", ",", "::"] {
        tree = tree
            .replace(&format!(" {p}"), p)
            .replace(&format!("{p} "), p);
    }
    fn go(prefix: &str, t: &str, out: &mut Vec<String>) {
        match t.find('{') {
            None => out.push(format!("{prefix}{t}")),
            Some(open) => {
                let head = &t[..open];
                let inner = &t[open + 1..t.len() - 1];
                let mut depth = 0;
                let mut start = 0;
                for (i, ch) in inner.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            go(&format!("{prefix}{head}"), &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                if start < inner.len() {
                    go(&format!("{prefix}{head}"), &inner[start..], out);
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out.into_iter()
        .map(|p| p.split(" as ").next().unwrap_or("").to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The paths (as written) that a file's code names, with their lines.
fn named_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // `use` items, possibly spanning lines.
    let mut rest = code;
    let mut offset = 0;
    while let Some(at) = rest.find("use ") {
        let abs = offset + at;
        let before = code[..abs].chars().last();
        let starts_item = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let end = rest[at..].find(';').map(|e| at + e);
        if let (true, Some(end)) = (starts_item, end) {
            let line = code[..abs].matches('\n').count() + 1;
            for p in expand_use(&rest[at + 4..end]) {
                found.push((line, p.trim_start_matches("::").to_owned()));
            }
            offset += end;
            rest = &code[offset..];
        } else {
            offset += at + 4;
            rest = &code[offset..];
        }
    }
    // Inline paths: crate::a::b, super::a, self::a.
    for (n, line) in code.lines().enumerate() {
        for start in ["crate::", "super::", "self::"] {
            let mut from = 0;
            while let Some(at) = line[from..].find(start) {
                let abs = from + at;
                let prev = line[..abs].chars().last();
                if prev.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    let path: String = line[abs..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    found.push((n + 1, path.trim_end_matches(':').to_owned()));
                }
                from = abs + start.len();
            }
        }
    }
    found
}

/// The module a written path names, from `module` (the file's own).
fn resolve(path: &str, module: &ModPath, modules: &BTreeMap<ModPath, String>) -> Option<ModPath> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let (mut base, rest): (ModPath, &[&str]) = match parts.first()? {
        &"crate" => (vec![], &parts[1..]),
        &"self" => (module.clone(), &parts[1..]),
        &"super" => {
            let mut b = module.clone();
            let mut i = 0;
            while parts.get(i) == Some(&"super") {
                b.pop()?;
                i += 1;
            }
            (b, &parts[i..])
        }
        first => {
            // A child module of this one, named bare (`use trail::…`).
            let mut child = module.clone();
            child.push((*first).to_owned());
            if !modules.contains_key(&child) {
                return None;
            }
            (module.clone(), &parts[..])
        }
    };
    for p in rest {
        let mut next = base.clone();
        next.push((*p).to_owned());
        if modules.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

impl Graph {
    /// Reads every module of a crate from `files` (path relative to `src/`, text).
    fn of(files: &BTreeMap<String, String>, label: &str) -> Graph {
        let mut g = Graph::default();
        for (rel, text) in files {
            if let Some(m) = module_of(rel)
                && !is_test_module(&m)
            {
                g.modules.insert(m, text.clone());
            }
        }
        let modules = g.modules.clone();
        for (m, text) in &modules {
            let rel = files
                .iter()
                .find(|(r, _)| module_of(r).as_ref() == Some(m))
                .map(|(r, _)| r.clone())
                .unwrap_or_default();
            let code = code_only(text);
            for (line, path) in named_paths(&code) {
                if let Some(target) = resolve(&path, m, &modules)
                    && &target != m
                    && !g
                        .deps
                        .iter()
                        .any(|(f, t, e)| f == m && t == &target && e.line == line)
                {
                    let text = text.lines().nth(line - 1).unwrap_or("").trim().to_owned();
                    g.deps.push((
                        m.clone(),
                        target,
                        Evidence {
                            file: format!("{label}{rel}"),
                            line,
                            text,
                        },
                    ));
                }
            }
        }
        g
    }

    /// Edges between siblings: parent → (child → child → evidence).
    fn sibling_edges(&self) -> BTreeMap<ModPath, BTreeMap<(String, String), Vec<Evidence>>> {
        let mut by_parent: BTreeMap<ModPath, BTreeMap<(String, String), Vec<Evidence>>> =
            BTreeMap::new();
        for (from, to, ev) in &self.deps {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                // Into its own subtree, or up to an ancestor's items.
                continue;
            }
            by_parent
                .entry(from[..common].to_vec())
                .or_default()
                .entry((from[common].clone(), to[common].clone()))
                .or_default()
                .push(ev.clone());
        }
        by_parent
    }

    /// Every cycle between siblings, each as the edges inside one strongly
    /// connected group.
    fn cycles(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (parent, edges) in self.sibling_edges() {
            let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
            let reach = |from: &String| -> BTreeSet<String> {
                let mut seen = BTreeSet::new();
                let mut todo = vec![from.clone()];
                while let Some(n) = todo.pop() {
                    for (a, b) in edges.keys() {
                        if *a == n && seen.insert(b.clone()) {
                            todo.push(b.clone());
                        }
                    }
                }
                seen
            };
            let mut done = BTreeSet::new();
            for n in &nodes {
                if done.contains(*n) {
                    continue;
                }
                let group: BTreeSet<String> = reach(n)
                    .into_iter()
                    .filter(|m| reach(m).contains(*n))
                    .collect();
                if group.len() < 2 {
                    continue;
                }
                let mut text = format!(
                    "cycle in {}: {}\n",
                    if parent.is_empty() {
                        "the crate root".to_owned()
                    } else {
                        parent.join("::")
                    },
                    group.iter().cloned().collect::<Vec<_>>().join(" ⇄ ")
                );
                for ((a, b), evs) in &edges {
                    if group.contains(a) && group.contains(b) {
                        for e in evs.iter().take(3) {
                            text.push_str(&format!(
                                "  {a} → {b}: {}:{}: {}\n",
                                e.file, e.line, e.text
                            ));
                        }
                    }
                }
                done.extend(group);
                out.push(text);
            }
        }
        out
    }

    /// Dependencies from a module under `from` to one under any of `banned`.
    fn reaching(&self, from: &str, banned: &[&str]) -> Vec<String> {
        self.deps
            .iter()
            .filter(|(f, t, _)| {
                f.first().map(String::as_str) == Some(from)
                    && t.first().is_some_and(|t| banned.contains(&t.as_str()))
            })
            .map(|(f, t, e)| {
                format!(
                    "{} → {}: {}:{}: {}",
                    f.join("::"),
                    t[0],
                    e.file,
                    e.line,
                    e.text
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn read_tree(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The library (`src/` without the binary's `main.rs` and `cli.rs`).
fn library() -> Graph {
    let mut files = read_tree(&root().join("src"));
    files.retain(|rel, _| rel != "main.rs" && rel != "cli.rs" && !rel.starts_with("cli/"));
    Graph::of(&files, "src/")
}

#[test]
fn no_module_cycle_in_the_library_or_the_policy_core() {
    let mut cycles = library().cycles();
    cycles.extend(
        Graph::of(
            &read_tree(&root().join("crates/policy/src")),
            "crates/policy/src/",
        )
        .cycles(),
    );
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn no_module_cycle_in_the_server() {
    let cycles = Graph::of(
        &read_tree(&root().join("crates/server/src")),
        "crates/server/src/",
    )
    .cycles();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// The packages a package links (its normal dependencies, transitively),
/// from cargo's own resolution of the workspace.
fn linked(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of = |id: &str| {
        meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["name"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let start = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == package)
        .and_then(|p| p["id"].as_str())
        .expect("the package")
        .to_owned();
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        let Some(node) = nodes.iter().find(|n| n["id"] == id.as_str()) else {
            continue;
        };
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap().to_owned();
            if normal && seen.insert(name_of(&dep_id)) {
                todo.push(dep_id);
            }
        }
    }
    seen
}

#[test]
fn the_helper_links_no_async_runtime_and_no_database_driver() {
    let server_stack = [
        "tokio",
        "hyper",
        "axum",
        "rusqlite",
        "libsqlite3-sys",
        "tokio-postgres",
        "argon2",
    ];
    let helper = linked("sshjit");
    let found: Vec<&&str> = server_stack
        .iter()
        .filter(|c| helper.contains(**c))
        .collect();
    assert!(found.is_empty(), "sshjit links {found:?}");
    // The check sees the server's stack where it is.
    let server = linked("sshjit-server");
    for c in server_stack {
        assert!(server.contains(c), "sshjit-server should link {c}");
    }
}

#[test]
fn the_cli_layer_lives_in_the_binary_and_nothing_imports_it() {
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let code = code_only(&lib);
    assert!(
        !code.lines().any(|l| l
            .trim_start()
            .trim_start_matches("pub ")
            .starts_with("mod cli")),
        "src/lib.rs declares a cli module: the command line belongs to the binary"
    );
    let main = code_only(&fs::read_to_string(root().join("src/main.rs")).unwrap());
    assert!(main.contains("mod cli;"), "src/main.rs owns the cli module");
}

#[test]
fn the_store_never_reaches_up_into_commands_the_terminal_or_the_login_path() {
    let bad = library().reaching("store", &["commands", "term", "login", "cli"]);
    assert!(bad.is_empty(), "the store reaches up:\n{}", bad.join("\n"));
}

#[test]
fn the_policy_core_depends_on_std_serde_and_the_key_crates_only() {
    let manifest: toml::Table =
        toml::from_str(&fs::read_to_string(root().join("crates/policy/Cargo.toml")).unwrap())
            .unwrap();
    let deps: BTreeSet<&str> = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let allowed: BTreeSet<&str> = ["serde", "serde_json", "ssh-key", "ssh-encoding"].into();
    assert!(
        deps.is_subset(&allowed),
        "the policy core depends on {deps:?}"
    );
    for (rel, text) in read_tree(&root().join("crates/policy/src")) {
        let code = code_only(&text);
        for banned in [
            "std::fs",
            "std::net",
            "std::process",
            "std::os",
            "libc::",
            "std::env",
        ] {
            assert!(
                !code.contains(banned),
                "crates/policy/src/{rel} uses {banned}: the core does no I/O"
            );
        }
    }
}

// The checker itself, on small trees, so that it can fail.

fn tree(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect()
}

#[test]
fn the_checker_finds_a_cycle_between_top_level_modules() {
    let g = Graph::of(
        &tree(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::b::thing;\n"),
            ("b/mod.rs", "pub mod inner;\n"),
            ("b/inner.rs", "pub fn f() { crate::a::g() }\n"),
        ]),
        "",
    );
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("a ⇄ b"), "{}", cycles[0]);
    assert!(cycles[0].contains("b/inner.rs:1"), "{}", cycles[0]);
}

#[test]
fn the_checker_finds_a_cycle_between_siblings_through_groups_and_super() {
    let g = Graph::of(
        &tree(&[
            ("lib.rs", "pub mod cmd;\n"),
            ("cmd/mod.rs", "pub mod grant;\npub mod revoke;\n"),
            ("cmd/grant.rs", "use super::{revoke, Other};\n"),
            ("cmd/revoke.rs", "use crate::{cmd::{grant::Args}};\n"),
        ]),
        "",
    );
    let cycles = g.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("in cmd: grant ⇄ revoke"),
        "{}",
        cycles[0]
    );
}

#[test]
fn the_checker_passes_a_layered_tree_and_ignores_tests_comments_and_strings() {
    let g = Graph::of(
        &tree(&[
            ("lib.rs", "pub mod low;\npub mod high;\n"),
            ("low/mod.rs", "pub mod part;\npub struct T;\nuse part::X;\n"),
            (
                "low/part.rs",
                "use super::T; // crate::high\nconst S: &str = \"crate::high::x\";\n",
            ),
            ("low/tests.rs", "use crate::high::everything;\n"),
            (
                "high.rs",
                "use crate::low::{part::X, T};\n#[cfg(test)]\nmod tests {\n    use crate::low;\n}\n",
            ),
        ]),
        "",
    );
    assert_eq!(g.cycles(), Vec::<String>::new());
    assert!(g.reaching("low", &["high"]).is_empty());
    assert_eq!(g.reaching("high", &["low"]).len(), 1);
}

#[test]
fn the_checker_sees_a_store_reaching_up() {
    let g = Graph::of(
        &tree(&[
            ("lib.rs", "pub mod commands;\npub mod store;\n"),
            ("commands.rs", "pub struct Who;\n"),
            ("store.rs", "use crate::commands::Who;\n"),
        ]),
        "",
    );
    let bad = g.reaching("store", &["commands"]);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].contains("store.rs:1"), "{bad:?}");
}
