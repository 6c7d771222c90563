//! Shared pieces of the emulator-media tests: sample files, a bot-side pipeline, objective
//! audio measures.
#![allow(dead_code)]

use std::path::PathBuf;

use appmedia_audio_io::clip::AudioClip;
use appmedia_media::frame::{Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{BotAudioFormat, PipelineConfig};

pub const BOT_SSRC: u32 = 0xB07_B07;

/// The repository's media-samples/ directory.
pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../media-samples")
}

/// A media-samples file as mono 48 kHz.
pub fn clip(name: &str) -> AudioClip {
    AudioClip::open(samples_dir().join(name)).expect("media-samples file")
}

/// A media-samples file or a recording as it is on disk (16-bit mono), as f32.
#[allow(unused_imports)] // each test binary uses its own subset
pub use appmedia_testkit::audio::read_wav as wav_samples;

/// The bot: a media-core pipeline at 48 kHz with room for many speakers.
pub fn bot_config() -> PipelineConfig {
    PipelineConfig {
        local_ssrc: BOT_SSRC,
        bot_format: BotAudioFormat::Pcm48k,
        max_remote_streams: 8,
        max_unmixed: 8,
        ..PipelineConfig::default()
    }
}

/// Frame `k` of a sine at 48 kHz.
pub fn tone(freq: f32, amp: f32, k: usize) -> Frame48 {
    let mut out = [0.0f32; SAMPLES_PER_FRAME_48K];
    for (i, s) in out.iter_mut().enumerate() {
        let t = (k * SAMPLES_PER_FRAME_48K + i) as f64 / 48_000.0;
        *s = amp * (std::f64::consts::TAU * f64::from(freq) * t).sin() as f32;
    }
    out
}

/// A clip of a sine, `seconds` long.
pub fn tone_clip(freq: f32, amp: f32, seconds: f32) -> AudioClip {
    let n = (48_000.0 * seconds) as usize;
    let s = (0..n)
        .map(|i| amp * (std::f64::consts::TAU * f64::from(freq) * i as f64 / 48_000.0).sin() as f32)
        .collect();
    AudioClip::from_samples(s).expect("not empty")
}

/// Power of `samples` at `freq` (Goertzel), normalized so a sine of amplitude A gives A²/4.
pub fn power_at(samples: &[f32], rate: f32, freq: f32) -> f64 {
    // testkit's Goertzel power is per sample; one more 1/n makes it A²/4 for a sine.
    appmedia_testkit::audio::goertzel(samples, freq, rate) / samples.len() as f64
}

/// Like [`power_at`] over a Hann-windowed copy: far less leakage from strong neighbours
/// (a rectangular window's sidelobes are only ~40 dB down 30 bins away).
pub fn power_at_windowed(samples: &[f32], rate: f32, freq: f32) -> f64 {
    let n = samples.len() as f64;
    let windowed: Vec<f32> = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| x * (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos()) as f32)
        .collect();
    power_at(&windowed, rate, freq)
}

/// Mean power (mean square) of a signal.
pub fn mean_power(samples: &[f32]) -> f64 {
    samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len().max(1) as f64
}

/// The frequency whose Goertzel power is largest among `candidates`.
pub fn strongest(samples: &[f32], rate: f32, candidates: &[f32]) -> f32 {
    let mut best = (candidates[0], -1.0);
    for &f in candidates {
        let p = power_at(samples, rate, f);
        if p > best.1 {
            best = (f, p);
        }
    }
    best.0
}

fn ncc_at(reference: &[f32], received: &[f32], lag: usize) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in reference.iter().enumerate() {
        let Some(&y) = received.get(i + lag) else {
            break;
        };
        let (x, y) = (f64::from(x), f64::from(y));
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// Normalized cross-correlation of `reference` with `received` at the best lag in
/// `0..max_lag` (`received[i + lag] ≈ reference[i]`). A coarse search on 1 ms energy
/// envelopes finds the neighbourhood, a sample-exact search around it the peak.
/// Returns (lag in samples, NCC).
pub fn best_lag_ncc(
    reference: &[f32],
    received: &[f32],
    rate: u32,
    max_lag: usize,
) -> (usize, f64) {
    let block = (rate / 1000) as usize;
    let env = |s: &[f32]| -> Vec<f64> {
        s.chunks(block)
            .map(|c| {
                c.iter()
                    .map(|&v| f64::from(v) * f64::from(v))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    };
    let (er, ex) = (env(reference), env(received));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (mr, mx) = (mean(&er), mean(&ex));
    let mut coarse = (0usize, f64::MIN);
    for lag in 0..(max_lag / block) {
        let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
        for (i, &r) in er.iter().enumerate() {
            let Some(&x) = ex.get(i + lag) else { break };
            let (r, x) = (r - mr, x - mx);
            xy += r * x;
            xx += r * r;
            yy += x * x;
        }
        let c = if xx > 0.0 && yy > 0.0 {
            xy / (xx * yy).sqrt()
        } else {
            0.0
        };
        if c > coarse.1 {
            coarse = (lag, c);
        }
    }
    let centre = coarse.0 * block;
    let mut best = (centre, f64::MIN);
    for lag in centre.saturating_sub(3 * block)..centre + 3 * block {
        let c = ncc_at(reference, received, lag);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// A unique scratch directory for one test's recordings.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emu-media-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// NCC at the best lag per segment of `seg` samples (segments of the reference quieter than
/// -40 dBFS are skipped): the jitter buffer may shift the delay in speech pauses, which one
/// lag over a long window would count as distortion. Returns the median and every segment's.
pub fn segmental_ncc(
    reference: &[f32],
    received: &[f32],
    rate: u32,
    max_lag: usize,
    seg: usize,
) -> (f64, Vec<f64>) {
    let mut scores = Vec::new();
    let mut start = 0;
    while start + seg <= reference.len() {
        let r = &reference[start..start + seg];
        if mean_power(r) > 1e-4 && start < received.len() {
            let (_, c) = best_lag_ncc(r, &received[start..], rate, max_lag);
            scores.push(c);
        }
        start += seg;
    }
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    (median, scores)
}
