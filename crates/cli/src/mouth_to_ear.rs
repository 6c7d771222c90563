//! Mouth-to-ear latency, measured on one clock: the emulator says when a party's first
//! audible sample entered the call (its "mouth", `Emulator::call_media`), the bot's recording
//! of what it heard says when that sound came out of its media core (its "ear": sample `n`
//! of the recording was played at the bot's media epoch + `n / rate`). A stretch of the
//! party's source file is found in the recording by normalized cross-correlation; the
//! latency is where it was found minus where it would be with no delay at all.
//!
//! Everything in between is counted: the party's 20 ms framing, Opus encode, the conference
//! tick, SRTP and the network (loopback here), the bot's jitter buffer, decode and mix.

use std::time::{Duration, Instant};

use crate::meter::rms;

/// The rate both signals are compared at: speech up to 4 kHz, 0.125 ms resolution.
const COMPARE_RATE: u32 = 8_000;
/// Length of the stretch of speech looked for.
const EXCERPT: Duration = Duration::from_millis(500);
/// The longest latency looked for.
const MAX_LATENCY: Duration = Duration::from_secs(1);
/// Below this correlation the stretch was not found.
const MIN_CORRELATION: f64 = 0.5;
/// |x| of the first audible sample, as the emulator's conference decides it (-80 dBFS).
const AUDIBLE: f32 = 1e-4;
/// The excerpt must be speech, not a pause: RMS at least this (-40 dBFS).
const SPEECH_RMS: f32 = 0.01;

/// A measured mouth-to-ear latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthToEar {
    pub latency: Duration,
    /// Normalized correlation of the excerpt at the latency found (1.0 = identical).
    pub correlation: f64,
}

/// Box-filters and decimates `samples` at `rate` to [`COMPARE_RATE`].
fn to_compare_rate(samples: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == 0 || !rate.is_multiple_of(COMPARE_RATE) {
        return Err(format!("{rate} Hz is not a multiple of {COMPARE_RATE} Hz"));
    }
    let factor = (rate / COMPARE_RATE) as usize;
    Ok(samples
        .chunks_exact(factor)
        .map(|c| c.iter().sum::<f32>() / factor as f32)
        .collect())
}

/// Measures how late `spoken` (the party's source, at `spoken_rate`, whose first audible
/// sample entered the call at `first_audible_at`) is heard in `heard` (the bot's recording,
/// at `heard_rate`, whose sample 0 was played at `heard_start`).
pub fn measure(
    heard: &[f32],
    heard_rate: u32,
    heard_start: Instant,
    spoken: &[f32],
    spoken_rate: u32,
    first_audible_at: Instant,
) -> Result<MouthToEar, String> {
    let heard = to_compare_rate(heard, heard_rate)?;
    let spoken = to_compare_rate(spoken, spoken_rate)?;
    let rate = f64::from(COMPARE_RATE);
    let onset = spoken
        .iter()
        .position(|s| s.abs() >= AUDIBLE)
        .ok_or("the source file is silent")?;
    // Mouth time of compare-rate sample i of the source (seconds after heard_start; may be
    // negative when the party spoke before the bot's media started).
    let first = first_audible_at
        .checked_duration_since(heard_start)
        .map(|d| d.as_secs_f64())
        .unwrap_or_else(|| -heard_start.duration_since(first_audible_at).as_secs_f64());
    let mouth = |i: usize| first + (i as f64 - onset as f64) / rate;
    let len = (EXCERPT.as_secs_f64() * rate) as usize;
    let step = len / 5;
    // The first stretch of speech spoken at least 100 ms after the bot's media started.
    let mut start = onset;
    while mouth(start) < 0.1 {
        start += step;
    }
    while start + len <= spoken.len() && rms(&spoken[start..start + len]) < SPEECH_RMS {
        start += step;
    }
    let excerpt = spoken
        .get(start..start + len)
        .ok_or("the source file has no speech after the bot's media started")?;
    let excerpt_energy: f64 = excerpt.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    // Where the excerpt would start in the recording with no delay at all.
    let at_zero = mouth(start) * rate;
    let first_lag = at_zero.floor().max(0.0) as usize;
    let last_lag = (at_zero + MAX_LATENCY.as_secs_f64() * rate) as usize;
    let mut best = (f64::MIN, first_lag);
    for p in first_lag..=last_lag {
        let Some(window) = heard.get(p..p + len) else {
            break;
        };
        let (mut dot, mut energy) = (0.0f64, 0.0f64);
        for (&x, &y) in excerpt.iter().zip(window) {
            dot += f64::from(x) * f64::from(y);
            energy += f64::from(y) * f64::from(y);
        }
        let r = if energy > 0.0 {
            dot / (excerpt_energy * energy).sqrt()
        } else {
            0.0
        };
        if r > best.0 {
            best = (r, p);
        }
    }
    let (correlation, p) = best;
    if correlation < MIN_CORRELATION {
        return Err(format!(
            "the party's speech was not found in the bot's recording (best correlation {:.2})",
            correlation.max(0.0)
        ));
    }
    let latency = ((p as f64 - at_zero) / rate).max(0.0);
    Ok(MouthToEar {
        latency: Duration::from_secs_f64(latency),
        correlation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like: harmonics of a wandering pitch under a syllable envelope, after 300 ms
    /// of silence.
    fn speech(seconds: f64, rate: u32) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        let mut phase = 0.0f64;
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                if t < 0.3 {
                    return 0.0;
                }
                let pitch = 120.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
                phase += 2.0 * std::f64::consts::PI * pitch / f64::from(rate);
                let envelope = (2.0 * std::f64::consts::PI * 3.3 * t).sin().abs();
                let voice: f64 = (1..=10).map(|h| (phase * h as f64).sin() / h as f64).sum();
                (0.2 * envelope * voice) as f32
            })
            .collect()
    }

    /// What the bot would record: `spoken` heard `latency` after it was spoken, where its
    /// first audible sample was spoken `spoken_at` after the recording began; at 16 kHz.
    fn heard(spoken: &[f32], spoken_at: f64, latency: f64) -> Vec<f32> {
        let narrow: Vec<f32> = spoken
            .chunks_exact(3)
            .map(|c| c.iter().sum::<f32>() / 3.0)
            .collect();
        let onset = narrow.iter().position(|s| s.abs() >= AUDIBLE).unwrap();
        let shift = ((spoken_at + latency) * 16_000.0) as i64 - onset as i64;
        let mut out = vec![0.0f32; narrow.len() + 40_000];
        for (i, &s) in narrow.iter().enumerate() {
            let j = i as i64 + shift;
            if j >= 0 && (j as usize) < out.len() {
                out[j as usize] = 0.8 * s;
            }
        }
        out
    }

    #[test]
    fn a_known_delay_is_found_to_the_millisecond() {
        let spoken = speech(4.0, 48_000);
        let start = Instant::now();
        for (spoken_at, latency) in [(0.5, 0.137), (0.05, 0.062), (1.2, 0.480)] {
            let recording = heard(&spoken, spoken_at, latency);
            let m = measure(
                &recording,
                16_000,
                start,
                &spoken,
                48_000,
                start + Duration::from_secs_f64(spoken_at),
            )
            .unwrap();
            let error = (m.latency.as_secs_f64() - latency).abs();
            assert!(error < 0.001, "{latency}: measured {m:?}");
            assert!(m.correlation > 0.95, "{m:?}");
        }
    }

    #[test]
    fn a_party_that_spoke_before_the_recording_is_still_measured() {
        let spoken = speech(4.0, 48_000);
        let start = Instant::now() + Duration::from_secs(1);
        // The first audible sample was spoken 0.4 s before the bot's media started.
        let recording = heard(&spoken, -0.4, 0.2);
        let m = measure(
            &recording,
            16_000,
            start,
            &spoken,
            48_000,
            start - Duration::from_millis(400),
        )
        .unwrap();
        assert!((m.latency.as_secs_f64() - 0.2).abs() < 0.001, "{m:?}");
    }

    #[test]
    fn silence_or_other_audio_is_an_error_not_a_number() {
        let spoken = speech(3.0, 48_000);
        let start = Instant::now();
        let silent = vec![0.0f32; 16_000 * 3];
        assert!(measure(&silent, 16_000, start, &spoken, 48_000, start).is_err());
        let other = heard(&speech(3.0, 44_000)[..], 0.2, 0.1);
        let err = measure(&other, 16_000, start, &spoken, 48_000, start).unwrap_err();
        assert!(err.contains("not found"), "{err}");
        assert!(measure(&silent, 44_100, start, &spoken, 48_000, start).is_err());
        assert!(measure(&silent, 16_000, start, &[0.0; 4800], 48_000, start).is_err());
    }
}
