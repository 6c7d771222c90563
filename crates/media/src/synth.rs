//! A deterministic speech-like test signal, for load tests, benches and demos.
//!
//! Real speech makes Opus work the way it does in calls (SILK/hybrid modes,
//! in-band FEC, DTX in pauses); a pure tone or white noise does not. This
//! generator gives the same rough shape without shipping recordings: voiced
//! syllables (a gliding 100–220 Hz harmonic series shaped by two formants) at
//! about four per second, in talk spurts of 1.8 s separated by 0.6 s pauses of
//! true silence. Each `voice` has its own pitch and rhythm, so several
//! speakers in a conference are distinguishable.

use std::f64::consts::TAU;

use crate::frame::{Frame48, SAMPLE_RATE_48K};

const HARMONICS: usize = 12;
const SPURT_S: f64 = 1.8;
const PAUSE_S: f64 = 0.6;
const SYLLABLE_HZ: f64 = 4.2;

/// Generator of one speaker's speech-like audio, 20 ms at a time.
#[derive(Debug, Clone)]
pub struct SpeechLike {
    sample: u64,
    phase: f64,
    base_f0: f64,
    offset_s: f64,
    gains: [f64; HARMONICS],
    noise: u32,
}

impl SpeechLike {
    /// Speaker number `voice` (any value; different values sound different).
    pub fn new(voice: u32) -> Self {
        let v = f64::from(voice % 7);
        let base_f0 = 110.0 + 15.0 * v;
        // Two formants (~600 Hz and ~1.4 kHz, shifted per voice) over a 1/k roll-off.
        let (f1, f2) = (550.0 + 25.0 * v, 1350.0 + 40.0 * v);
        let mut gains = [0.0; HARMONICS];
        for (k, g) in gains.iter_mut().enumerate() {
            let f = base_f0 * (k + 1) as f64;
            let formant = |c: f64, w: f64| 1.0 / (1.0 + ((f - c) / w).powi(2));
            *g = (1.0 / (k + 1) as f64) * (0.3 + formant(f1, 200.0) + 0.6 * formant(f2, 300.0));
        }
        let norm: f64 = gains.iter().sum();
        for g in &mut gains {
            *g /= norm;
        }
        Self {
            sample: 0,
            phase: 0.0,
            base_f0,
            offset_s: 0.37 * f64::from(voice % 11),
            gains,
            noise: 0x9E37_79B9 ^ voice.wrapping_mul(0x85EB_CA6B),
        }
    }

    /// Whether the speaker is inside a talk spurt at time `t` seconds.
    fn talking(&self, t: f64) -> bool {
        (t + self.offset_s) % (SPURT_S + PAUSE_S) < SPURT_S
    }

    /// Writes the next 20 ms. Peaks stay below about 0.35 of full scale.
    pub fn next_frame(&mut self, out: &mut Frame48) {
        let rate = f64::from(SAMPLE_RATE_48K);
        for s in out.iter_mut() {
            let t = self.sample as f64 / rate;
            self.sample += 1;
            if !self.talking(t) {
                *s = 0.0;
                continue;
            }
            // Pitch glides slowly, like intonation.
            let f0 = self.base_f0 * (1.0 + 0.15 * (TAU * 0.6 * (t + self.offset_s)).sin());
            self.phase = (self.phase + TAU * f0 / rate) % TAU;
            let mut voiced = 0.0;
            for (k, g) in self.gains.iter().enumerate() {
                voiced += g * ((k + 1) as f64 * self.phase).sin();
            }
            // Syllable envelope: rises and falls ~4 times a second, with short gaps.
            let syl = (TAU * SYLLABLE_HZ * (t + self.offset_s) / 2.0).sin().abs();
            let env = (syl * 1.4 - 0.2).clamp(0.0, 1.0);
            // A little breath noise (xorshift) so it is not a pure harmonic series.
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 17;
            self.noise ^= self.noise << 5;
            let noise = (f64::from(self.noise) / f64::from(u32::MAX) - 0.5) * 0.02;
            *s = (0.32 * env * voiced + env * noise) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{SILENT_FRAME_48, level_dbov};

    #[test]
    fn talks_and_pauses_like_speech() {
        let mut v = SpeechLike::new(0);
        let mut frame = SILENT_FRAME_48;
        let (mut loud, mut silent) = (0, 0);
        let mut peak = 0.0f32;
        for _ in 0..600 {
            v.next_frame(&mut frame);
            peak = frame.iter().fold(peak, |m, s| m.max(s.abs()));
            let level = level_dbov(&frame);
            if level == -127.0 {
                silent += 1;
            } else if level > -35.0 {
                loud += 1;
            }
        }
        // 12 s: a quarter of it pauses (3 s = 150 frames), most of the rest voiced.
        assert!((120..=180).contains(&silent), "silent frames {silent}");
        assert!(loud > 250, "loud frames {loud}");
        assert!(peak < 0.4 && peak > 0.1, "peak {peak}");
    }

    #[test]
    fn deterministic_and_voices_differ() {
        let (mut a, mut b, mut c) = (SpeechLike::new(3), SpeechLike::new(3), SpeechLike::new(4));
        let (mut fa, mut fb, mut fc) = (SILENT_FRAME_48, SILENT_FRAME_48, SILENT_FRAME_48);
        let mut differs = false;
        for _ in 0..100 {
            a.next_frame(&mut fa);
            b.next_frame(&mut fb);
            c.next_frame(&mut fc);
            assert_eq!(fa, fb);
            differs |= fa != fc;
        }
        assert!(differs);
    }
}
