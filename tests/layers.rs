//! The layer rule of `src/lib.rs` ("# Layers"): each module of the library imports only
//! modules of lower layers, or of its own layer listed before it. The order is read
//! from the crate doc itself, so the doc and the check cannot drift apart; every
//! top-level module must appear in it. Test code (`#[cfg(test)]` items, `tests.rs`
//! files) may import anything.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module -> (layer, position within the layer), from the crate doc's table.
fn layer_order(lib_rs: &str) -> BTreeMap<String, (u32, usize)> {
    let mut order = BTreeMap::new();
    let mut in_table = false;
    let mut after_heading = false;
    for line in lib_rs.lines() {
        let text = line.trim_start_matches("//!").trim();
        if text == "# Layers" {
            after_heading = true;
            continue;
        }
        if after_heading && text.starts_with("```") {
            if in_table {
                break;
            }
            in_table = true;
            continue;
        }
        if in_table {
            let (layer, names) = text.split_once(' ').expect("`<layer>  <modules>` rows");
            let layer: u32 = layer.parse().expect("a layer number");
            for (pos, name) in names.split(',').map(str::trim).enumerate() {
                assert!(order.insert(name.to_string(), (layer, pos)).is_none(), "{name} listed twice");
            }
        }
    }
    assert!(!order.is_empty(), "no `# Layers` table in src/lib.rs");
    order
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

/// `source` without its `#[cfg(test)]` items (a `mod tests { .. }` block, to its
/// matching brace, or a one-line item such as `mod tests;`).
fn without_tests(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = rest[at + "#[cfg(test)]".len()..].trim_start();
        let next_line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let item_start = &rest[..next_line_end];
        match (item_start.find('{'), item_start.find(';')) {
            (Some(open), semi) if semi.is_none_or(|s| open < s) => {
                let mut depth = 0usize;
                let mut end = rest.len();
                for (i, c) in rest.char_indices().skip(open) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &rest[end..];
            }
            _ => rest = &rest[next_line_end..],
        }
    }
    out.push_str(rest);
    out
}

/// The top-level modules named by `crate::<name>` in non-test code.
fn imports(source: &str) -> Vec<String> {
    let code = without_tests(source);
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                found.extend(inner.split(',').map(|p| p.trim().split("::").next().unwrap_or_default().to_string()));
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.push(name);
            }
        }
    }
    found.retain(|n| !n.is_empty() && n != "self");
    found
}

#[test]
fn modules_import_only_from_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = layer_order(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if rel == "lib.rs" || rel == "main.rs" || rel.starts_with("bin/") || rel.ends_with("tests.rs") {
            continue;
        }
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let Some(&from) = order.get(&top) else {
            violations.push(format!("src/{rel}: module `{top}` is not in the layer table of src/lib.rs"));
            continue;
        };
        for target in imports(&std::fs::read_to_string(&file).unwrap()) {
            if target == top {
                continue;
            }
            match order.get(&target) {
                None => violations.push(format!("src/{rel}: imports `{target}`, which is not in the layer table")),
                Some(&to) if to >= from => violations.push(format!(
                    "src/{rel}: `{top}` (layer {}) imports `{target}` (layer {}), which is not below it",
                    from.0, to.0
                )),
                Some(_) => {}
            }
        }
    }
    assert!(violations.is_empty(), "layer violations:\n{}", violations.join("\n"));
}

/// The pairs the architecture issue names outright, checked besides the order: a
/// lower module never reaches a front door, the worker or the turn engine, and the
/// stores never reach the HTTP codec.
const FORBIDDEN: &[(&[&str], &[&str])] = &[
    (&["http", "upstream", "provider"], &["api", "ws", "worker", "server", "turn", "session", "ratelimit"]),
    (&["session", "ratelimit", "store"], &["api", "ws", "http", "worker", "turn"]),
];

#[test]
fn the_named_lower_modules_never_import_the_named_higher_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        if rel.starts_with("bin/") || rel.ends_with("tests.rs") {
            continue;
        }
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let imported = imports(&std::fs::read_to_string(&file).unwrap());
        for (lower, higher) in FORBIDDEN {
            if !lower.contains(&top.as_str()) {
                continue;
            }
            for target in imported.iter().filter(|t| higher.contains(&t.as_str())) {
                violations.push(format!("src/{rel}: `{top}` imports `{target}`"));
            }
        }
    }
    assert!(violations.is_empty(), "forbidden imports:\n{}", violations.join("\n"));
}

#[test]
fn the_import_scan_sees_paths_groups_and_skips_comments_and_tests() {
    let src = "use crate::{http::Request, auth};\n// crate::api in a comment\nlet x = crate::json::max_depth();\n\
               #[cfg(test)]\nmod tests { use crate::server; }";
    assert_eq!(imports(src), ["http", "auth", "json"]);
    let after = "#[cfg(test)]\nmod tests {\n    use crate::server;\n    fn f() { if x { crate::api::y() } }\n}\n\
                 #[cfg(test)]\nmod more;\nfn g() { crate::worker::z() }";
    assert_eq!(imports(after), ["worker"]);
}
