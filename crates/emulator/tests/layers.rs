//! The emulator's layering, enforced: HTTP routes → calls → conference media, over a shared
//! vocabulary, with the running server on top (`docs/architecture.md`). Every `crate::…` path
//! in every source file (comments aside) must name a module of the file's own layer or of a
//! layer below it; a module that is not in the table below fails the test too, so a new one
//! gets a layer when it is added.

use std::path::{Path, PathBuf};

/// The layer of a top-level module (`crate::<module>`), lowest first.
fn layer(module: &str) -> Option<u8> {
    Some(match module {
        "acs" | "admission" | "config" | "directory" | "error" | "notify" | "operations"
        | "shapes" | "tls" | "tokens" => 0,
        "conference" => 1,
        "calls" => 2,
        "http" => 3,
        "server" | "lib" => 4,
        _ => return None,
    })
}

const NAMES: [&str; 5] = ["vocabulary", "conference", "calls", "http", "server"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module of `crate::` paths in `line` (code only: comments are cut).
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let module: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `crate::{a, b}` names several.
        if module.is_empty() && after.starts_with('{') {
            let inner = &after[1..after.find('}').unwrap_or(after.len())];
            found.extend(
                inner
                    .split(',')
                    .map(|m| m.trim().split("::").next().unwrap_or("").to_owned())
                    .filter(|m| !m.is_empty()),
            );
        } else if !module.is_empty() {
            found.push(module);
        }
        rest = after;
    }
    found
}

#[test]
fn no_module_reaches_up_a_layer() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let Some(own) = layer(&top) else {
            wrong.push(format!(
                "{}: module `{top}` has no layer (add it to tests/layers.rs)",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for module in crate_paths(line) {
                match layer(&module) {
                    Some(used) if used <= own => {}
                    Some(used) => wrong.push(format!(
                        "{}:{}: a {} module uses crate::{module} ({}): {}",
                        relative.display(),
                        n + 1,
                        NAMES[own as usize],
                        NAMES[used as usize],
                        line.trim()
                    )),
                    // The crate's root re-exports (`crate::Emulator`) are the top layer's.
                    None if module.starts_with(char::is_uppercase) && own == 4 => {}
                    None => wrong.push(format!(
                        "{}:{}: crate::{module} has no layer: {}",
                        relative.display(),
                        n + 1,
                        line.trim()
                    )),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_path_reader_finds_what_a_file_uses() {
    assert_eq!(crate_paths("use crate::calls::Shared;"), ["calls"]);
    assert_eq!(
        crate_paths("use crate::{config::Faults, http::request_id};"),
        ["config", "http"]
    );
    assert_eq!(
        crate_paths("    let x = crate::shapes::a(crate::conference::media::B); // crate::http"),
        ["shapes", "conference"]
    );
    assert!(crate_paths("//! see [`crate::http::control`]").is_empty());
    assert_eq!(layer("http"), Some(3));
    assert_eq!(layer("nothing"), None);
}
