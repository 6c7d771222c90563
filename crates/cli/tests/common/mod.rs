//! Helpers shared by the CLI's end-to-end tests: running the binary, reading WAV files, and an
//! objective audio check — normalized cross-correlation of a source file with a recording at
//! the best lag, the median over several excerpts.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The media samples.
pub fn samples() -> PathBuf {
    root().join("media-samples")
}

/// The audio-io crate's bad-file fixtures.
pub fn audio_fixture(name: &str) -> PathBuf {
    root().join("crates/audio-io/tests/fixtures").join(name)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("appmedia-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `appmedia` binary, run from the repository root (where media-samples/ is).
pub fn appmedia() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_appmedia"));
    cmd.current_dir(root());
    cmd
}

/// Parses the `--json` summary on stdout, with both streams in the panic message.
pub fn summary(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The call states a summary went through, in order.
pub fn states(summary: &Value) -> Vec<String> {
    summary["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|t| t["state"].as_str().map(str::to_owned))
        .collect()
}

#[allow(unused_imports)] // each test binary uses its own subset
pub use appmedia_testkit::audio::{level_dbfs as rms_dbfs, read_wav};

/// The median, over four half-second excerpts of `source` (16 kHz, from 0.5 s in), of each
/// excerpt's best match in `recording`, with every (lag, r) (see
/// `appmedia_testkit::audio::median_match_at`).
pub fn median_match(source: &[f32], recording: &[f32]) -> (f64, Vec<(usize, f64)>) {
    appmedia_testkit::audio::median_match_at(
        source,
        recording,
        &[8_000, 16_000, 24_000, 32_000],
        8_000,
    )
}
