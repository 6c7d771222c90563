//! The declared MSRV (`rust-version` in the workspace, inherited by every crate) is true: no
//! crate in the normal (non-dev) dependency tree of the `appmedia` facade declares a higher
//! one. Read from `cargo metadata` for the host platform; no second toolchain needed.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

/// `1.89` and `1.89.0` alike, as (major, minor, patch).
fn version(text: &str) -> [u64; 3] {
    let mut parts = text.split('.').map(|p| p.parse().unwrap_or(0));
    [0; 3].map(|_| parts.next().unwrap_or(0))
}

#[test]
fn no_dependency_needs_a_newer_rust_than_we_declare() {
    // The host's dependency tree: what a build here compiles, and what is in the local
    // registry (`--offline`: a machine that built the workspace has every package it needs,
    // but not the other platforms' ones, e.g. Windows console crates).
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc -vV names the host");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages: HashMap<&str, &Value> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p))
        .collect();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(!ours.is_empty(), "the facade declares no rust-version");
    // Every workspace crate declares the same one.
    for member in metadata["workspace_members"].as_array().unwrap() {
        let package = packages[member.as_str().unwrap()];
        assert_eq!(
            package["rust_version"].as_str(),
            Some(ours),
            "{} does not inherit the workspace's rust-version",
            package["name"]
        );
    }
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = packages
        .values()
        .find(|p| p["name"] == "appmedia")
        .and_then(|p| p["id"].as_str())
        .unwrap();
    let (mut seen, mut stack) = (HashSet::new(), vec![root]);
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    let too_new: Vec<String> = seen
        .iter()
        .filter_map(|id| {
            let package = packages[id];
            let needs = package["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| format!("{} {needs}", package["name"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "these need a newer Rust than our rust-version {ours}: {too_new:?}"
    );
    assert!(
        seen.len() > 100,
        "the tree was walked ({} crates)",
        seen.len()
    );
}
