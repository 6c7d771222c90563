//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "appmedia-audio-io-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
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

/// The repository's media-samples directory.
pub fn media_sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../media-samples")
        .join(name)
}

/// The crate's test fixtures directory.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Power of `freq` in `samples` (the test kit's Goertzel), normalised so a full-scale sine
/// gives about 0.25.
pub fn tone_power(samples: &[f32], rate: u32, freq: f32) -> f32 {
    (appmedia_testkit::audio::goertzel(samples, freq, rate as f32) / samples.len().max(1) as f64)
        as f32
}

/// A sine frame sequence: sample `i` of a continuous `freq` sine at `rate`.
pub fn sine_at(i: usize, freq: f32, rate: u32, amplitude: f32) -> f32 {
    (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * amplitude
}
