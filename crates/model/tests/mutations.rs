//! Every property of every seed document, removed or set to `null`, still survives the
//! round trip: absent stays absent and `null` stays `null` at any depth, whatever the
//! type, because every optional property is a `Nullable` and every object keeps what
//! it does not name.

use std::path::PathBuf;

use appmedia_model::{Call, CommsNotifications};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn seed_documents() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed");
    let mut docs: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}

/// Paths (as JSON pointers) of every object property in `value`.
fn property_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(path.clone());
                property_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                property_paths(child, &format!("{prefix}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn split_parent(path: &str) -> (&str, String) {
    let cut = path.rfind('/').unwrap();
    let key = path[cut + 1..].replace("~1", "/").replace("~0", "~");
    (&path[..cut], key)
}

fn assert_survives<T: DeserializeOwned + Serialize>(name: &str, what: &str, doc: &Value) {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{name} with {what}: does not parse: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(&back, doc, "{name} with {what}: changed in the round trip");
}

fn mutate_all<T: DeserializeOwned + Serialize>(name: &str, original: &Value) -> usize {
    let mut paths = Vec::new();
    property_paths(original, "", &mut paths);
    for path in &paths {
        let (parent, key) = split_parent(path);

        let mut removed = original.clone();
        removed
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap()
            .remove(&key);
        assert_survives::<T>(name, &format!("{path} removed"), &removed);

        let mut nulled = original.clone();
        *nulled.pointer_mut(path).unwrap() = Value::Null;
        assert_survives::<T>(name, &format!("{path} = null"), &nulled);
    }
    paths.len()
}

#[test]
fn every_property_removed_or_nulled_survives() {
    let mut mutated = 0;
    for (name, doc) in seed_documents() {
        mutated += if name.starts_with("example") {
            mutate_all::<Call>(&name, &doc)
        } else {
            mutate_all::<CommsNotifications>(&name, &doc)
        };
    }
    // 29 documents with dozens of properties each: make sure the walk really walked.
    assert!(mutated > 900, "only {mutated} properties visited");
}
