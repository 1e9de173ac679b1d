//! The layers of `src/` as `ARCHITECTURE.md` states them, checked on every `cargo test`: a
//! module may use only the layers below it, only the store speaks SQL (sqlx), only the HTTP
//! layer speaks HTTP (reqwest), the engine and the streams keep no process-global state, and
//! only the command line reaches the simulator and the throwaway PostgreSQL, which the
//! workspace keeps in crates of their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of the product and its layer; a module uses only lower layers.
const LAYERS: [(&str, u8); 8] = [
    ("failure", 0),
    ("settings", 0),
    ("jira", 1),
    ("store", 1),
    ("streams", 2),
    ("engine", 3),
    ("daemon", 4),
    ("commands", 5),
];

/// External crates only some modules may use, outside their tests: (crate, modules).
const CONFINED: [(&str, &[&str]); 4] = [
    ("sqlx", &["store"]),
    ("reqwest", &["jira"]),
    ("jira_sim", &["commands"]),
    ("throwaway_pg", &["commands"]),
];

/// Modules that must keep no process-global state (no `static` that can change).
const STATELESS: [&str; 2] = ["engine", "streams"];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a file belongs to: `src/jira/auth/oauth.rs` is `jira`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// The code of `text` before its `#[cfg(test)]` module, if it has one at the end.
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// `text` with `//` comments blanked out (same length, so offsets keep their lines).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => format!("{}{}", &line[..at], " ".repeat(line.len() - at)),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules `text` refers to through `crate::` paths, with a line each; groups
/// (`use crate::{a, b::{c, d}}`) may span lines.
fn crate_references(text: &str) -> Vec<(String, usize)> {
    let code = without_comments(text);
    let line_of = |offset: usize| code[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let start = at + "crate::".len();
        let after = &code[start..];
        if !after.starts_with('{') {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((name, line_of(at)));
            continue;
        }
        // The items at the group's top level, each named by its first segment.
        let mut depth = 0;
        let mut item_start = start + 1;
        for (i, c) in after.char_indices() {
            let offset = start + i;
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 1 => {
                    let raw = &code[item_start..offset];
                    let item = raw.trim_start();
                    let name = item.split("::").next().unwrap_or_default().trim();
                    if !name.is_empty() {
                        let begins = item_start + (raw.len() - item.len());
                        found.push((name.to_owned(), line_of(begins)));
                    }
                    item_start = offset + 1;
                    if c == '}' {
                        break;
                    }
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
    }
    found
}

/// Whether `text` mentions the external crate `name` (`name::` or `use name`).
fn mentions_crate(text: &str, name: &str) -> Option<usize> {
    text.lines().enumerate().find_map(|(number, line)| {
        let code = line.split("//").next().unwrap_or_default();
        let hit = code.match_indices(&format!("{name}::")).any(|(at, _)| {
            // `foo_sqlx::` or `crate::sqlx` are other names.
            !code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }) || code.trim_start().starts_with(&format!("use {name}"));
        hit.then_some(number + 1)
    })
}

/// Lines declaring a `static` that can change: a lock, a cell, an atomic, a thread-local.
fn mutable_statics(text: &str) -> Vec<usize> {
    let kinds = [
        "Mutex", "RwLock", "LazyLock", "OnceLock", "OnceCell", "Atomic", "Cell<",
    ];
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            (line.starts_with("static ") || line.starts_with("pub static "))
                && kinds.iter().any(|k| line.contains(k))
                || line.starts_with("thread_local!")
        })
        .map(|(n, _)| n + 1)
        .collect()
}

/// Every violation in one file: `relative` is its path under `src/`.
fn violations(relative: &Path, text: &str) -> Vec<String> {
    let module = module_of(relative);
    let name = relative.display();
    let Some(own) = layer(&module) else {
        // lib.rs and main.rs sit above every layer.
        return Vec::new();
    };
    let mut found = Vec::new();
    for (used, line) in crate_references(text) {
        if used == module {
            continue;
        }
        match layer(&used) {
            Some(theirs) if theirs < own => {}
            Some(_) => found.push(format!(
                "src/{name}:{line}: {module} (layer {own}) uses crate::{used}, which is not below it"
            )),
            None => found.push(format!(
                "src/{name}:{line}: crate::{used} is not a module of ARCHITECTURE.md's layers"
            )),
        }
    }
    let code = without_tests(text);
    for (external, allowed) in CONFINED {
        if !allowed.contains(&module.as_str())
            && let Some(line) = mentions_crate(code, external)
        {
            found.push(format!(
                "src/{name}:{line}: {module} uses {external}, which only {} may use",
                allowed.join(", ")
            ));
        }
    }
    if STATELESS.contains(&module.as_str()) {
        for line in mutable_statics(code) {
            found.push(format!(
                "src/{name}:{line}: {module} must keep no process-global state"
            ));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let text = std::fs::read_to_string(file).expect("read a source file");
        *modules.entry(module_of(relative)).or_default() += 1;
        found.extend(violations(relative, &text));
    }
    assert!(
        found.is_empty(),
        "layering violations:\n{}",
        found.join("\n")
    );
    for (module, _) in LAYERS {
        assert!(modules.contains_key(module), "no module {module} in src/");
    }
    let unknown: Vec<&String> = modules
        .keys()
        .filter(|m| layer(m).is_none() && !["lib", "main"].contains(&m.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "modules outside the layers: {unknown:?}"
    );
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let jira = Path::new("jira/auth.rs");
    assert!(violations(jira, "use crate::settings::Settings;\n").is_empty());
    let up = violations(jira, "use crate::store::Store;\n");
    assert!(up[0].contains("jira (layer 1) uses crate::store"), "{up:?}");
    let grouped = violations(
        Path::new("streams/x.rs"),
        "use crate::{jira, engine::Engine};\n",
    );
    assert_eq!(grouped.len(), 1, "{grouped:?}");
    assert!(grouped[0].contains("crate::engine"), "{grouped:?}");
    let spread = "use crate::{\n    jira::{Flavor, JiraClient},\n    daemon::Lease,\n};\n";
    let spread = violations(Path::new("streams/x.rs"), spread);
    assert_eq!(spread.len(), 1, "{spread:?}");
    assert!(spread[0].starts_with("src/streams/x.rs:3:"), "{spread:?}");
    let commented = "// crate::daemon is above us\nuse crate::jira::Flavor;\n";
    assert!(violations(Path::new("streams/x.rs"), commented).is_empty());
    let sql = violations(Path::new("engine/x.rs"), "fn f() { sqlx::query(\"x\"); }\n");
    assert!(sql[0].contains("only store may use"), "{sql:?}");
    let in_tests =
        "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn g() { sqlx::Error::PoolTimedOut; }\n}\n";
    assert!(violations(Path::new("commands/exit.rs"), in_tests).is_empty());
    let global = violations(
        Path::new("engine/x.rs"),
        "static SEEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());\n",
    );
    assert!(global[0].contains("no process-global state"), "{global:?}");
    let described = "pub static TABLE: Table = Table { name: \"jira.x\" };\n";
    assert!(violations(Path::new("streams/x.rs"), described).is_empty());
    let sim = violations(Path::new("daemon/x.rs"), "use jira_sim::Simulator;\n");
    assert!(sim[0].contains("only commands may use"), "{sim:?}");
}

#[test]
fn the_simulator_is_a_crate_of_its_own_that_the_product_uses_only_behind_a_feature() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let package = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("the workspace has no package {name}"))
    };
    let product = package("jira-sync");
    for helper in ["jira-sim", "throwaway-pg"] {
        let helper_package = package(helper);
        assert!(
            helper_package["manifest_path"]
                .as_str()
                .is_some_and(|p| p.contains(&format!("crates/{helper}/"))),
            "{helper} lives under crates/"
        );
        let deps: Vec<&serde_json::Value> = product["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["name"] == helper)
            .collect();
        let normal: Vec<_> = deps.iter().filter(|d| d["kind"].is_null()).collect();
        assert_eq!(normal.len(), 1, "{helper}: {deps:?}");
        assert_eq!(
            normal[0]["optional"], true,
            "{helper} is optional for jira-sync"
        );
        // The simulator knows nothing of the product.
        let back: Vec<_> = helper_package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["name"] == "jira-sync")
            .collect();
        assert!(back.is_empty(), "{helper} depends on jira-sync");
    }
    let feature = product["features"]["simulator"]
        .as_array()
        .expect("a simulator feature");
    assert!(
        feature.contains(&serde_json::json!("dep:jira-sim")),
        "{feature:?}"
    );
    assert!(
        product["features"]["default"]
            .as_array()
            .is_some_and(|d| d.contains(&serde_json::json!("simulator"))),
        "demo and simulate are in the default build"
    );
}
