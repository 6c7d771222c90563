//! The two PCM formats a call's audio comes in, and conversions between their sample types.
//!
//! The media core works in 20 ms frames of mono `f32` at 48 kHz (960 samples); the bot-facing
//! side offers mono `i16` at 16 kHz (320 samples, 640 bytes), the format Graph media bots use.
//! This crate accepts plain slices in either format so it does not depend on the media core.

/// Length of one frame (one tick of the call) in milliseconds.
pub const FRAME_MS: u32 = 20;
/// Ticks (frames) per second.
pub const TICKS_PER_SECOND: u32 = 1000 / FRAME_MS;
/// Sample rate of the media core's frames.
pub const CORE_SAMPLE_RATE: u32 = 48_000;
/// Samples in one media core frame (mono, 48 kHz, 20 ms).
pub const CORE_FRAME_SAMPLES: usize = (CORE_SAMPLE_RATE / TICKS_PER_SECOND) as usize;
/// Sample rate of the bot-facing frames (Graph's `Pcm16K`).
pub const BOT_SAMPLE_RATE: u32 = 16_000;
/// Samples in one bot-facing frame (mono, 16 kHz, 20 ms).
pub const BOT_FRAME_SAMPLES: usize = (BOT_SAMPLE_RATE / TICKS_PER_SECOND) as usize;

/// Samples in one 20 ms frame at `sample_rate`, or `None` when 20 ms is not a whole number of
/// samples at that rate (such rates cannot be cut into ticks without drift).
pub fn frame_samples(sample_rate: u32) -> Option<usize> {
    if sample_rate == 0 || !sample_rate.is_multiple_of(TICKS_PER_SECOND) {
        None
    } else {
        Some((sample_rate / TICKS_PER_SECOND) as usize)
    }
}

/// Converts a 16-bit sample to `f32` in [-1, 1).
#[inline]
pub fn s16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

/// Converts an `f32` sample to 16 bits, rounding and saturating (no wrap-around on overs).
#[inline]
pub fn f32_to_s16(sample: f32) -> i16 {
    // `as` saturates on out-of-range floats and maps NaN to 0, which is what a recording wants.
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_match_the_documented_formats() {
        assert_eq!(CORE_FRAME_SAMPLES, 960);
        assert_eq!(BOT_FRAME_SAMPLES, 320);
        assert_eq!(frame_samples(44_100), Some(882));
        assert_eq!(frame_samples(22_050), Some(441));
        assert_eq!(frame_samples(11_025), None);
        assert_eq!(frame_samples(0), None);
    }

    #[test]
    fn conversions_saturate_and_round_trip() {
        assert_eq!(f32_to_s16(2.0), i16::MAX);
        assert_eq!(f32_to_s16(-2.0), i16::MIN);
        assert_eq!(f32_to_s16(f32::NAN), 0);
        for s in [i16::MIN, -1234, -1, 0, 1, 999, i16::MAX] {
            assert_eq!(f32_to_s16(s16_to_f32(s)), s);
        }
    }
}
