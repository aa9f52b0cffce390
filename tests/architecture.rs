//! Executable layering contract. Every library module states in its `//!` header which crate
//! modules it may use (`May import: `crate::domain`, `crate::store`, …`); a file without such a
//! line inherits its parent module's. This test reads every file under `src/` (test-only code
//! excluded), fails on a `crate::` path outside the file's list, fails on an import cycle between
//! top-level modules, and fails when the pure layers (`domain`, `detect`, `checks`) name a
//! transport, storage or runtime crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::repo_path;

/// Crates the pure layers must not name.
const IMPURE_CRATES: &[&str] = &[
    "rmcp", "axum", "rusqlite", "reqwest", "tokio", "sqlx", "lettre",
];
/// Top-level modules that must stay pure.
const PURE: &[&str] = &["domain", "detect", "checks"];

struct Module {
    /// Path relative to `src/`, e.g. `service/screening.rs`.
    rel: String,
    /// Module path segments, e.g. `["service", "screening"]`.
    segs: Vec<String>,
    /// The `May import:` paths of this file's header, if it has the line.
    may_import: Option<Vec<Vec<String>>>,
    /// Code with comments and test-only parts removed.
    code: String,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name.ends_with("_tests.rs")
}

fn module_segs(rel: &str) -> Vec<String> {
    let stem = rel.trim_end_matches(".rs");
    let mut segs: Vec<String> = stem.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    segs
}

/// The `crate::` paths named in the header's `May import:` paragraph (up to "Must not"/"Never").
fn parse_may_import(src: &str) -> Option<Vec<Vec<String>>> {
    let header: Vec<&str> = src
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    let start = header.iter().position(|l| l.contains("May import:"))?;
    let mut text = String::new();
    for (i, l) in header[start..].iter().enumerate() {
        if i > 0 && l.is_empty() {
            break;
        }
        text.push_str(l);
        text.push(' ');
    }
    let text = text.split("May import:").nth(1).unwrap_or("");
    let text = text.split("Must not").next().unwrap_or("");
    let text = text.split("Never").next().unwrap_or("");
    Some(crate_paths(text))
}

fn strip_comments_and_tests(src: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = src.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        if t == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|n| n.trim_start().starts_with("mod "))
        {
            // A test module at the end of the file (inline or in its own file): not layered code.
            if lines.get(i + 1).is_some_and(|n| n.contains('{')) {
                break;
            }
            continue;
        }
        let code = match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a use tree starting right after `crate::` into full paths (module segments only
/// matter, so a path may end in a type or function name).
fn parse_tree(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && s[*i].is_whitespace() {
            *i += 1;
        }
    };
    let mut path = prefix.to_vec();
    loop {
        skip_ws(i);
        if *i < s.len() && s[*i] == '{' {
            *i += 1;
            loop {
                skip_ws(i);
                if *i >= s.len() {
                    return;
                }
                if s[*i] == '}' {
                    *i += 1;
                    return;
                }
                if s[*i] == ',' {
                    *i += 1;
                    continue;
                }
                parse_tree(s, i, &path, out);
            }
        }
        let st = *i;
        while *i < s.len() && is_ident(s[*i]) {
            *i += 1;
        }
        if st == *i {
            break;
        }
        let seg: String = s[st..*i].iter().collect();
        if seg != "self" {
            path.push(seg);
        }
        if *i + 1 < s.len() && s[*i] == ':' && s[*i + 1] == ':' {
            *i += 2;
            continue;
        }
        break;
    }
    if path.len() > prefix.len() || !path.is_empty() {
        out.push(path);
    }
}

fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("crate::") {
        let byte = from + pos;
        // not part of a longer identifier such as `my_crate::`
        let before = text[..byte].chars().next_back();
        from = byte + "crate::".len();
        if before.is_some_and(is_ident) {
            continue;
        }
        let start = text[..from].chars().count();
        let mut i = start;
        parse_tree(&chars, &mut i, &[], &mut out);
    }
    out
}

fn load() -> Vec<Module> {
    let src = repo_path("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if is_test_file(&rel) || rel == "main.rs" || rel == "lib.rs" {
                return None;
            }
            let text = std::fs::read_to_string(&p).expect("read file");
            Some(Module {
                segs: module_segs(&rel),
                may_import: parse_may_import(&text),
                code: strip_comments_and_tests(&text),
                rel,
            })
        })
        .collect()
}

/// The allowed paths of a module: its own line, else the nearest ancestor's.
fn allowed<'a>(
    m: &'a Module,
    by_segs: &'a BTreeMap<Vec<String>, &'a Module>,
) -> Option<&'a Vec<Vec<String>>> {
    let mut segs = m.segs.clone();
    loop {
        if let Some(a) = by_segs.get(&segs).and_then(|x| x.may_import.as_ref()) {
            return Some(a);
        }
        segs.pop()?;
        if segs.is_empty() {
            return None;
        }
    }
}

/// All layering violations of the tree, as sentences.
fn violations(mods: &[Module]) -> Vec<String> {
    let by_segs: BTreeMap<Vec<String>, &Module> =
        mods.iter().map(|m| (m.segs.clone(), m)).collect();
    let mut bad = Vec::new();
    for m in mods {
        let Some(allow) = allowed(m, &by_segs) else {
            bad.push(format!(
                "src/{}: no `//! May import:` line here or in its parent module",
                m.rel
            ));
            continue;
        };
        for p in crate_paths(&m.code) {
            let own = p.first() == m.segs.first();
            let ok = own || allow.iter().any(|a| p.starts_with(a));
            if !ok {
                bad.push(format!(
                    "src/{} imports crate::{} but its May import line allows only {}",
                    m.rel,
                    p.join("::"),
                    allow
                        .iter()
                        .map(|a| format!("crate::{}", a.join("::")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    bad
}

/// Edges between top-level modules, from the actual code.
fn top_level_graph(mods: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in mods {
        let from = m.segs[0].clone();
        let e = g.entry(from.clone()).or_default();
        for p in crate_paths(&m.code) {
            if let Some(to) = p.first()
                && *to != from
            {
                e.insert(to.clone());
            }
        }
    }
    g
}

fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
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
            if let Some(c) = dfs(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = dfs(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn every_crate_import_is_allowed_by_its_module_header() {
    let mods = load();
    assert!(
        mods.len() > 20,
        "found only {} modules under src/",
        mods.len()
    );
    let bad = violations(&mods);
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let g = top_level_graph(&load());
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle between top-level modules: {}", c.join(" -> "));
    }
}

#[test]
fn pure_layers_name_no_transport_storage_or_runtime_crate() {
    let mut bad = Vec::new();
    for m in load().iter().filter(|m| PURE.contains(&m.segs[0].as_str())) {
        for c in IMPURE_CRATES {
            let needle = format!("{c}::");
            let hit = m
                .code
                .match_indices(&needle)
                .any(|(i, _)| !m.code[..i].chars().next_back().is_some_and(is_ident));
            if hit {
                bad.push(format!("src/{} names `{c}`", m.rel));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "pure layers must stay pure:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    // The parser itself: a grouped `use` and an inline path are both expanded to module paths.
    let p = crate_paths(
        "use crate::domain::{incident::{A, B}, policy};\nlet x = crate::store::sqlite::open(1);",
    );
    let s: Vec<String> = p.iter().map(|v| v.join("::")).collect();
    assert_eq!(
        s,
        [
            "domain::incident::A",
            "domain::incident::B",
            "domain::policy",
            "store::sqlite::open"
        ]
    );
    let h = parse_may_import("//! Owns x.\n//!\n//! May import: `crate::domain`,\n//! `crate::store::Store`. Never rmcp.\n//!\n//! More.\n")
        .expect("line");
    assert_eq!(
        h,
        vec![
            vec!["domain".to_string()],
            vec!["store".into(), "Store".into()]
        ]
    );
}
