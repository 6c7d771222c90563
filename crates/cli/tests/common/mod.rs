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

/// A mono 16-bit WAV as f32 samples.
pub fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(spec.channels, 1, "{}", path.display());
    let samples = reader
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    (spec.sample_rate, samples)
}

/// RMS of samples in dBFS.
pub fn rms_dbfs(x: &[f32]) -> f64 {
    let sum: f64 = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (sum / x.len().max(1) as f64).max(1e-12).log10()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// Envelope: mean |x| over blocks of 16 samples (16 kHz → 1 kHz).
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks(16)
        .map(|c| c.iter().map(|s| s.abs()).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Pearson correlation (means removed): envelopes are all positive, so the plain
/// normalized correlation would be high at every lag.
fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let mean = |x: &[f32]| x[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// The best normalized correlation of `excerpt` (from the source) inside `recording`:
/// a coarse search on envelopes, then a fine one on samples around the best lag.
fn best_match(excerpt: &[f32], recording: &[f32]) -> (usize, f64) {
    let (ee, er) = (envelope(excerpt), envelope(recording));
    let coarse = (0..er.len().saturating_sub(ee.len()))
        .map(|lag| (lag, pearson(&ee, &er[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(lag, _)| lag * 16);
    let from = coarse.saturating_sub(320);
    let to = (coarse + 320).min(recording.len().saturating_sub(excerpt.len()));
    (from..=to)
        .map(|lag| (lag, correlation(excerpt, &recording[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// The median, over four half-second excerpts of `source` (16 kHz, from 0.5 s in), of each
/// excerpt's best match in `recording`. An adaptive jitter buffer re-times playout between
/// talk spurts (it stretches or shortens silences), so one long excerpt at one lag under-reads
/// a faithful recording; each excerpt finds its own lag, and the median ignores one excerpt
/// that straddles such a re-timing.
pub fn median_match(source: &[f32], recording: &[f32]) -> (f64, Vec<(usize, f64)>) {
    let mut matches: Vec<(usize, f64)> = (1..=4)
        .map(|k| best_match(&source[k * 8_000..(k + 1) * 8_000], recording))
        .collect();
    let mut rs: Vec<f64> = matches.iter().map(|m| m.1).collect();
    rs.sort_by(f64::total_cmp);
    matches.sort_by_key(|m| m.0);
    ((rs[1] + rs[2]) / 2.0, matches)
}
