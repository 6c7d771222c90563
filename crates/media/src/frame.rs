//! Frame geometry and the small frame types every media module shares.
//!
//! Internal audio is mono `f32` at 48 kHz in 20 ms frames (960 samples): the
//! Opus wire clock (RFC 7587) and the mixer's native rate, so the hot path never
//! resamples unless the bot asks for 16 kHz. The bot-facing 16 kHz format is
//! what Graph media bots use: mono s16, 320 samples, 640 bytes per frame.

use std::time::Duration;

/// Internal and wire sample rate (Opus over RTP always uses a 48 kHz clock).
pub const SAMPLE_RATE_48K: u32 = 48_000;
/// The bot-facing narrow rate (Graph media bots' PCM 16 kHz).
pub const SAMPLE_RATE_16K: u32 = 16_000;
/// The wider PCM rate Azure Communication Services audio streaming may use.
pub const SAMPLE_RATE_24K: u32 = 24_000;
/// Frame length in milliseconds.
pub const FRAME_MS: u32 = 20;
/// Frame duration: the tick period of every call.
pub const FRAME_DURATION: Duration = Duration::from_millis(FRAME_MS as u64);
/// Samples in one 20 ms frame at 48 kHz (also the RTP timestamp step per frame).
pub const SAMPLES_PER_FRAME_48K: usize = (SAMPLE_RATE_48K / 1000 * FRAME_MS) as usize;
/// Samples in one 20 ms frame at 16 kHz.
pub const SAMPLES_PER_FRAME_16K: usize = (SAMPLE_RATE_16K / 1000 * FRAME_MS) as usize;
/// Samples in one 20 ms frame at 24 kHz.
pub const SAMPLES_PER_FRAME_24K: usize = (SAMPLE_RATE_24K / 1000 * FRAME_MS) as usize;
/// Bytes in one 20 ms frame of s16 little-endian mono 16 kHz PCM.
pub const BYTES_PER_FRAME_16K_S16: usize = SAMPLES_PER_FRAME_16K * 2;
/// Bytes in one 20 ms frame of s16 little-endian mono 48 kHz PCM.
pub const BYTES_PER_FRAME_48K_S16: usize = SAMPLES_PER_FRAME_48K * 2;

/// One 20 ms frame of mono 48 kHz audio, samples nominally in `[-1.0, 1.0]`.
///
/// A plain array: `Copy`, fixed size, lives inline in preallocated per-call
/// state, so handing a frame around never allocates.
pub type Frame48 = [f32; SAMPLES_PER_FRAME_48K];

/// One 20 ms frame of mono 16 kHz audio as `f32` (resampler input/output).
pub type Frame16 = [f32; SAMPLES_PER_FRAME_16K];

/// One 20 ms frame of mono 24 kHz audio as `f32` (resampler input/output).
pub type Frame24 = [f32; SAMPLES_PER_FRAME_24K];

/// One 20 ms frame of mono 16 kHz s16 audio (the Graph bot format, as samples).
pub type Frame16S16 = [i16; SAMPLES_PER_FRAME_16K];

/// A silent 48 kHz frame.
pub const SILENT_FRAME_48: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];

/// RMS level of a frame in dBov (0 = a full-scale square wave, -127 = silence),
/// the unit RFC 6464 audio-level extensions carry (as a positive attenuation).
pub fn level_dbov(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -127.0;
    }
    let energy: f32 = frame.iter().map(|s| s * s).sum::<f32>() / frame.len() as f32;
    if energy <= 1e-13 {
        return -127.0;
    }
    (10.0 * energy.log10()).max(-127.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_graph_and_rfc7587() {
        assert_eq!(SAMPLES_PER_FRAME_48K, 960);
        assert_eq!(SAMPLES_PER_FRAME_16K, 320);
        assert_eq!(SAMPLES_PER_FRAME_24K, 480);
        assert_eq!(BYTES_PER_FRAME_16K_S16, 640);
        assert_eq!(FRAME_DURATION, Duration::from_millis(20));
    }

    #[test]
    fn level_of_silence_and_full_scale() {
        assert_eq!(level_dbov(&SILENT_FRAME_48), -127.0);
        assert_eq!(level_dbov(&[]), -127.0);
        let full = [1.0f32; 960];
        assert!(level_dbov(&full).abs() < 1e-3);
        let half = [0.5f32; 960];
        assert!((level_dbov(&half) + 6.02).abs() < 0.01);
    }
}
