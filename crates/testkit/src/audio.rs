//! Audio measures for the end-to-end tests: reading and writing WAVs, tone power
//! (Goertzel), band energy, levels, onsets, and normalized cross-correlation of a source with
//! a recording at the best lag.

use std::path::Path;

/// A mono 16-bit WAV as (rate, samples in [-1, 1)).
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

/// Writes a mono 16-bit WAV of a sine at `freq` Hz: `seconds` long at `rate`, peak `amplitude`.
pub fn write_tone_wav(path: &Path, freq: f32, rate: u32, seconds: f32, amplitude: f32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(rate as f32 * seconds) as usize {
        let t = i as f32 / rate as f32;
        let s = amplitude * (std::f32::consts::TAU * freq * t).sin();
        writer.write_sample((s * 32767.0) as i16).unwrap();
    }
    writer.finalize().unwrap();
}

/// Power of `samples` at `freq` (Goertzel), per sample.
pub fn goertzel(samples: &[f32], freq: f32, rate: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// The strongest of `candidates` and how much stronger it is than the next.
pub fn dominant(samples: &[f32], candidates: &[f32], rate: f32) -> (f32, f64) {
    let mut powers: Vec<(f32, f64)> = candidates
        .iter()
        .map(|&f| (f, goertzel(samples, f, rate)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    (powers[0].0, powers[0].1 / powers[1].1.max(1e-12))
}

/// Summed Goertzel power on a 50 Hz grid from `from` to `to` Hz: the energy of a band.
pub fn band_energy(samples: &[f32], rate: f32, from: f32, to: f32) -> f64 {
    let mut f = from;
    let mut sum = 0.0;
    while f <= to {
        sum += goertzel(samples, f, rate);
        f += 50.0;
    }
    sum
}

/// RMS level in dBFS.
pub fn level_dbfs(samples: &[f32]) -> f64 {
    let p = samples
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    10.0 * p.max(1e-15).log10()
}

/// Per 20 ms frame (960 samples at 48 kHz): whether it is louder than `dbfs`.
pub fn loud_frames(samples: &[f32], dbfs: f64) -> Vec<bool> {
    samples.chunks(960).map(|c| level_dbfs(c) > dbfs).collect()
}

/// Index of the first sample louder than `threshold` (absolute).
pub fn onset(samples: &[f32], threshold: f32) -> Option<usize> {
    samples.iter().position(|x| x.abs() > threshold)
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

/// Envelope: mean |x| over blocks of 16 samples.
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks(16)
        .map(|c| c.iter().map(|s| s.abs()).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Pearson correlation (means removed): envelopes are all positive.
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

/// The best normalized correlation of `excerpt` inside `recording` (same rate) and its lag:
/// a coarse search on envelopes, then a fine one on samples around the best lag.
pub fn best_match(excerpt: &[f32], recording: &[f32]) -> (usize, f64) {
    let (ee, er) = (envelope(excerpt), envelope(recording));
    let coarse = (0..er.len().saturating_sub(ee.len()))
        .map(|lag| (lag, pearson(&ee, &er[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(lag, _)| lag * 16);
    best_match_within(excerpt, recording, coarse.saturating_sub(320)..coarse + 321)
}

/// The best normalized correlation of `excerpt` inside `recording` at a lag in `lags`, sample
/// by sample (for a short excerpt whose envelope could match elsewhere), and that lag. Lags
/// past the end of the recording are not tried; (0, 0.0) when none is left.
pub fn best_match_within(
    excerpt: &[f32],
    recording: &[f32],
    lags: std::ops::Range<usize>,
) -> (usize, f64) {
    let last = recording.len().saturating_sub(excerpt.len());
    (lags.start..lags.end.min(last + 1))
        .map(|lag| (lag, correlation(excerpt, &recording[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// The median, over excerpts of `len` samples of `source` starting at `starts`, of each
/// excerpt's best match in `recording`, with every (lag, r). An adaptive jitter buffer
/// re-times playout between talk spurts (it stretches or shortens silences), so one long
/// excerpt at one lag under-reads a faithful recording; each excerpt finds its own lag, and
/// the median ignores one excerpt that straddles such a re-timing.
pub fn median_match_at(
    source: &[f32],
    recording: &[f32],
    starts: &[usize],
    len: usize,
) -> (f64, Vec<(usize, f64)>) {
    let mut matches: Vec<(usize, f64)> = starts
        .iter()
        .map(|&s| best_match(&source[s..s + len], recording))
        .collect();
    let mut rs: Vec<f64> = matches.iter().map(|m| m.1).collect();
    rs.sort_by(f64::total_cmp);
    matches.sort_by_key(|m| m.0);
    let n = rs.len();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => rs[n / 2],
        _ => (rs[n / 2 - 1] + rs[n / 2]) / 2.0,
    };
    (median, matches)
}

/// [`median_match_at`] over four excerpts of `len` samples evenly spread over `source`.
pub fn median_match_spread(source: &[f32], recording: &[f32], len: usize) -> f64 {
    let step = source.len().saturating_sub(len) / 4;
    let starts: Vec<usize> = (0..4).map(|k| k * step).collect();
    median_match_at(source, recording, &starts, len).0
}

/// Power of `samples` at `freq` through a Hann window, normalized so a sine of amplitude A
/// gives about A²/4 × 0.375 (the window's power).
pub fn tone_power(samples: &[f32], rate: f32, freq: f32) -> f64 {
    let n = samples.len() as f64;
    let windowed: Vec<f32> = samples
        .iter()
        .enumerate()
        .map(|(i, &x)| x * (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos()) as f32)
        .collect();
    goertzel(&windowed, freq, rate) / n.max(1.0)
}

/// `samples` cut into consecutive windows of `ms` milliseconds.
pub fn windows(samples: &[f32], rate: u32, ms: u32) -> Vec<&[f32]> {
    let len = (rate * ms / 1000) as usize;
    samples.chunks_exact(len.max(1)).collect()
}

/// Whether a tone at `freq` is present (about -40 dBFS or louder) in `samples`.
pub fn hears(samples: &[f32], rate: u32, freq: f32) -> bool {
    tone_power(samples, rate as f32, freq) > 1e-5
}

/// Whether nothing at `freq` is there (30 dB below [`hears`]'s threshold).
pub fn silent_at(samples: &[f32], rate: u32, freq: f32) -> bool {
    tone_power(samples, rate as f32, freq) < 1e-8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn a_delayed_copy_is_found_at_its_lag_and_noise_is_not() {
        let source = noise(40_000, 7);
        let mut recording = vec![0.0; 1234];
        recording.extend(source.iter().map(|s| s * 0.5));
        let (r, matches) = median_match_at(&source, &recording, &[8_000, 16_000, 24_000], 4_000);
        assert!(r > 0.99, "{r}");
        assert_eq!(matches[0], (8_000 + 1234, matches[0].1));
        let other = noise(48_000, 99);
        assert!(median_match_spread(&source, &other, 4_000) < 0.2);
    }

    #[test]
    fn goertzel_picks_the_tone() {
        let tone: Vec<f32> = (0..4800)
            .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / 48_000.0).sin())
            .collect();
        let (f, ratio) = dominant(&tone, &[440.0, 1000.0, 2000.0], 48_000.0);
        assert_eq!(f, 1000.0);
        assert!(ratio > 100.0);
    }
}
