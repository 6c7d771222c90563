//! The two PCM formats a call's audio comes in, and conversions between their sample types.
//!
//! The media core works in 20 ms frames of mono `f32` at 48 kHz (960 samples); the bot-facing
//! side offers mono `i16` at 16 kHz (320 samples, 640 bytes), the format Graph media bots use.
//! The geometry is the media core's (`appmedia_media::frame`), re-exported under the names this
//! crate's API uses.

// The frame geometry and sample conversions are the media core's: one definition serves both.
pub use appmedia_media::frame::{
    FRAME_MS, SAMPLE_RATE_16K as BOT_SAMPLE_RATE, SAMPLE_RATE_48K as CORE_SAMPLE_RATE,
    SAMPLES_PER_FRAME_16K as BOT_FRAME_SAMPLES, SAMPLES_PER_FRAME_48K as CORE_FRAME_SAMPLES,
};
pub use appmedia_media::resample::{
    f32_to_s16_sample as f32_to_s16, s16_to_f32_sample as s16_to_f32,
};

/// Ticks (frames) per second.
pub const TICKS_PER_SECOND: u32 = 1000 / FRAME_MS;

/// Samples in one 20 ms frame at `sample_rate`, or `None` when 20 ms is not a whole number of
/// samples at that rate (such rates cannot be cut into ticks without drift).
pub fn frame_samples(sample_rate: u32) -> Option<usize> {
    if sample_rate == 0 || !sample_rate.is_multiple_of(TICKS_PER_SECOND) {
        None
    } else {
        Some((sample_rate / TICKS_PER_SECOND) as usize)
    }
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
