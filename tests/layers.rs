//! The layer rules of ARCHITECTURE.md, checked on the source: every `crate::` and `super::` path
//! in the library's code (use declarations and paths in expressions; comments and `#[cfg(test)]`
//! modules excluded) is resolved to the component it names, and each component may only name
//! the components its rule lists. The component graph must also be free of cycles. The command
//! line (`cli/`, its own package) may name only the library's public interface: no module that
//! is public only with the `unstable` feature.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each component may import, besides itself. Keep in step with ARCHITECTURE.md.
const RULES: &[(&str, &[&str])] = &[
    ("core", &[]),
    ("format", &["core"]),
    ("render", &["core"]),
    ("cuda", &["core", "format", "render"]),
    ("encode::digest", &["core"]),
    ("encode::runtime", &["core", "encode::digest"]),
    ("encode::input", &["core", "format"]),
    ("encode::rate", &["core", "format"]),
    ("encode::optim", &["core", "format", "render", "cuda"]),
    (
        "encode::analytic",
        &["core", "format", "render", "encode::optim", "encode::rate"],
    ),
    (
        "encode::network",
        &[
            "core",
            "format",
            "render",
            "cuda",
            "encode::analytic",
            "encode::digest",
            "encode::memory",
            "encode::optim",
            "encode::rate",
            "encode::runtime",
        ],
    ),
    (
        "encode::memory",
        &["core", "encode::analytic", "encode::input"],
    ),
    // The façade of the encode layer re-exports its parts, and the file type they return.
    ("encode", &["core", "format", "*encode"]),
    // The viewer's API: decoding, rendering on either backend, and the upscaler's network
    // (its ensemble maps the picture through the optimizer's symmetries).
    (
        "view",
        &[
            "core",
            "format",
            "render",
            "cuda",
            "encode",
            "encode::optim",
        ],
    ),
    // The `image` crate's hooks sit on the viewer's API (and detect files by the signature).
    ("image_hooks", &["core", "format", "view"]),
    // The crate root and the fuzz-target bodies sit on top of everything.
    ("lib", &["*"]),
    ("fuzzing", &["*"]),
];

/// The component a module path (without `crate`) belongs to.
fn component(module: &[String]) -> String {
    let first = module.first().map(String::as_str).unwrap_or("");
    match first {
        "" => "lib".into(),
        "core" | "format" | "render" | "cuda" | "fuzzing" => first.into(),
        "encode" => match module.get(1).map(String::as_str) {
            Some(
                s @ ("optim" | "runtime" | "network" | "input" | "analytic" | "rate" | "memory"
                | "digest"),
            ) => format!("encode::{s}"),
            _ => "encode".into(),
        },
        // Another top-level module (it needs a rule in RULES), or a name re-exported at the
        // crate root (`Error`, `read`, ...), which `graph` maps to its home.
        other => other.into(),
    }
}

/// The module path of a source file: `src/encode/network/mod.rs` → `[encode, network]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` items.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i64> = None;
    let mut depth = 0i64;
    let mut pending_test = false;
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i64;
        let closes = code.matches('}').count() as i64;
        if pending_test && opens > 0 {
            skip_depth = Some(depth);
            pending_test = false;
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Flattens a use tree (`a::{b, c::{d, e}}`) into paths.
fn flatten(tree: &str) -> Vec<String> {
    let tree = tree.replace(" as ", "@");
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let mut out = Vec::new();
    fn walk(prefix: &str, s: &str, out: &mut Vec<String>) {
        // Split `s` at top-level commas.
        let mut depth = 0;
        let mut start = 0;
        let bytes = s.as_bytes();
        let mut items = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    items.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&s[start..]);
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            if let Some(open) = item.find('{') {
                let head = item[..open].trim_end_matches("::");
                let inner = &item[open + 1..item.len() - 1];
                let p = join(prefix, head);
                walk(&p, inner, out);
            } else {
                let item = item.split('@').next().unwrap();
                out.push(join(prefix, item));
            }
        }
    }
    fn join(a: &str, b: &str) -> String {
        match (a.is_empty(), b.is_empty()) {
            (true, _) => b.to_string(),
            (_, true) => a.to_string(),
            _ => format!("{a}::{b}"),
        }
    }
    walk("", &tree, &mut out);
    out
}

/// Every path a file's code names, starting with `crate` or `super`.
fn paths_of(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    // Use declarations, whole trees.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if before_ok {
            let tree = after[..end].trim();
            if tree.starts_with("crate") || tree.starts_with("super") {
                paths.extend(flatten(tree));
            }
        }
        rest = &after[end.min(after.len())..];
    }
    // Paths in expressions and types.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let prev = code[..at].chars().last().unwrap_or(' ');
            from = at + start.len();
            if prev.is_alphanumeric() || prev == '_' || prev == ':' {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            // `crate::{…}` and `super::*` are use trees, read above.
            if !tail.ends_with("::") {
                paths.push(tail);
            }
        }
    }
    paths
}

/// Resolves a `crate::…` or `super::…` path seen in `module` to a module path without `crate`.
fn resolve(module: &[String], path: &str) -> Vec<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String> = if segs.first() == Some(&"crate") {
        segs.remove(0);
        Vec::new()
    } else {
        // `super` in `a/b.rs` (module a::b) is `a`; in `a/mod.rs` (module a) it is the root.
        let mut b = module.to_vec();
        while segs.first() == Some(&"super") {
            segs.remove(0);
            b.pop();
        }
        b
    };
    base.extend(segs.iter().map(|s| s.to_string()));
    base
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The component graph of the library's source: component → the components it names, with
/// one example (file and path) per edge.
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Names re-exported at the crate root, to the component they come from.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut root_names: BTreeMap<String, String> = BTreeMap::new();
    for p in paths_of(&code_of(&lib)) {
        let module = resolve(&[], &p);
        if let Some(name) = module.last() {
            root_names.insert(name.clone(), component(&module));
        }
    }
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let from = component(&module);
        g.entry(from.clone()).or_default();
        let text = std::fs::read_to_string(&file).unwrap();
        for p in paths_of(&code_of(&text)) {
            let target = resolve(&module, &p);
            let mut to = component(&target);
            if !RULES.iter().any(|(c, _)| *c == to)
                && let Some(c) = target.first().and_then(|n| root_names.get(n))
            {
                to = c.clone();
            }
            if to == from || (to == "lib" && target.len() <= 1) {
                continue;
            }
            let rel = file.strip_prefix(&src).unwrap().display().to_string();
            g.entry(from.clone())
                .or_default()
                .entry(to)
                .or_insert(format!("src/{rel}: {p}"));
        }
    }
    g
}

#[test]
fn imports_follow_the_layers() {
    let rules: BTreeMap<&str, &[&str]> = RULES.iter().copied().collect();
    let mut violations = Vec::new();
    for (from, tos) in graph() {
        let allowed = rules.get(from.as_str()).unwrap_or_else(|| {
            panic!("component {from} has no rule: add one to RULES and to ARCHITECTURE.md")
        });
        for (to, example) in tos {
            let ok = allowed
                .iter()
                .any(|a| *a == "*" || *a == to || (a.starts_with('*') && to.starts_with(&a[1..])));
            if !ok {
                violations.push(format!("{from} imports {to} ({example})"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layer violations (ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_component_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search with colours: a grey node reached again closes a cycle.
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeMap<String, String>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let at = stack.iter().position(|s| *s == n).unwrap();
                let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        if let Some(tos) = g.get(n) {
            for to in tos.keys() {
                // The top (lib, fuzzing, the encode façade) may name anything; cycles
                // through them are re-exports, not dependencies of the lower layer.
                if matches!(to.as_str(), "lib" | "fuzzing") {
                    continue;
                }
                if let Some(c) = visit(to, g, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    let keys: BTreeSet<&str> = g.keys().map(String::as_str).collect();
    for n in keys {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, &g, &mut state, &mut stack) {
            panic!("import cycle: {}", c.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_violations() {
    // The parser itself: a use tree, a path in an expression, comments and tests ignored.
    let code = code_of(
        "use crate::{core::splat::Gaussian, render::{self, Viewport}};\n\
         // use crate::cuda::X;\n\
         fn f() { crate::encode::optim::fit::fit_colors(); }\n\
         #[cfg(test)]\nmod tests {\n    use crate::cli::X;\n}\n",
    );
    let mut got: Vec<String> = paths_of(&code)
        .iter()
        .map(|p| component(&resolve(&["format".into()], p)))
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got, ["core", "encode::optim", "render"]);
    let sup = resolve(&["encode".into(), "network".into()], "super::optim::fit");
    assert_eq!(component(&sup), "encode::optim");
}

/// The modules public only with the `unstable` feature: those lib.rs declares `pub mod` behind
/// `#[cfg(feature = "unstable")]` (`core`, `format`, …), and likewise the parts of the `encode`
/// façade in encode/mod.rs, as `encode::part`.
fn unstable_modules() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = Vec::new();
    for (file, prefix) in [("src/lib.rs", ""), ("src/encode/mod.rs", "encode::")] {
        let code = code_of(&std::fs::read_to_string(root.join(file)).unwrap());
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(name) = line.trim().strip_prefix("pub mod ") {
                // The item's own attributes: the lines right above it that start with `#[`.
                let mut own = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|a| a.trim().starts_with("#["));
                if own.any(|a| a.trim() == "#[cfg(feature = \"unstable\")]") {
                    let name = name.trim_end_matches(';').trim();
                    names.push(format!("{prefix}{name}"));
                }
            }
        }
    }
    names
}

/// The first path segments after each `gsimg::` in `code` (a use tree's `{a, b::c}` gives `a`
/// and `b`).
fn gsimg_names(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("gsimg::") {
        if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = code[i + "gsimg::".len()..].trim_start();
        if let Some(tree) = rest.strip_prefix('{') {
            // The names at the tree's first level.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in tree.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        out.push(ident(&tree[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

#[test]
fn the_command_line_uses_only_the_public_interface() {
    let hidden = unstable_modules();
    assert!(hidden.iter().any(|m| m == "format"), "{hidden:?}");
    assert!(hidden.iter().any(|m| m == "fuzzing"), "{hidden:?}");
    assert!(hidden.iter().any(|m| m == "encode::optim"), "{hidden:?}");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cli/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty(), "no sources in {}", src.display());
    let mut bad = Vec::new();
    for file in files {
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for name in gsimg_names(&code) {
            if hidden.contains(&name) {
                bad.push(format!("{}: gsimg::{name}", file.display()));
            }
        }
        for name in hidden.iter().filter(|m| m.contains("::")) {
            let path = format!("gsimg::{name}");
            let mut rest = code.as_str();
            while let Some(at) = rest.find(&path) {
                rest = &rest[at + path.len()..];
                if !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
                    bad.push(format!("{}: {path}", file.display()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the command line names unstable modules:\n{}",
        bad.join("\n")
    );
    // The parser: a tree and a plain path.
    assert_eq!(
        gsimg_names("use gsimg::{view::{self, X}, format, Limits};\nlet x = gsimg::encode::f();"),
        ["view", "format", "Limits", "encode"]
    );
}
