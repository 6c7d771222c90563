//! 16 kHz and 24 kHz ↔ 48 kHz conversion for the bot-facing and PCM sides, and s16 ↔ f32.
//!
//! Graph media bots speak mono s16 PCM at 16 kHz (640 bytes per 20 ms), Azure
//! Communication Services audio streaming 16 or 24 kHz; the media core runs at
//! 48 kHz. [`Upsampler`] and [`Downsampler`] (and their 24 kHz siblings
//! [`Upsampler24k`], [`Downsampler24k`]) convert one
//! 20 ms frame per call with rubato's synchronous FFT resampler (fixed ratio,
//! best quality, fastest of rubato's resamplers), sized so that every call
//! takes exactly one frame and returns exactly one.
//!
//! Real-time contract: all buffers are allocated in `new()`; `process` never
//! allocates, locks or blocks (rubato's `process_into_buffer` guarantee, with
//! its `log` feature off). Each direction delays the signal by 5 ms (half the
//! 10 ms FFT block), reported by `delay_samples()`.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::frame::{
    SAMPLE_RATE_16K, SAMPLE_RATE_24K, SAMPLE_RATE_48K, SAMPLES_PER_FRAME_16K,
    SAMPLES_PER_FRAME_24K, SAMPLES_PER_FRAME_48K,
};

/// What went wrong while resampling or converting.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// rubato refused the configuration.
    #[error("cannot build a {from} Hz -> {to} Hz resampler: {source}")]
    Construction {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
        /// rubato's reason.
        source: rubato::ResamplerConstructionError,
    },
    /// rubato chose chunk sizes other than one frame on each side.
    #[error("resampler chunk is {input} in / {output} out, wanted one 20 ms frame each")]
    ChunkMismatch {
        /// Input frames per call.
        input: usize,
        /// Output frames per call.
        output: usize,
    },
    /// rubato failed while processing.
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
    /// A buffer had the wrong length for the conversion asked.
    #[error("buffer length mismatch: {what} has {actual}, expected {expected}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        actual: usize,
        /// The length required.
        expected: usize,
    },
}

/// A fixed-ratio mono resampler taking exactly one 20 ms frame of `IN` samples and giving
/// one of `OUT` (the rates are 50 × the frame lengths). [`Upsampler`] and [`Downsampler`]
/// are its two uses.
pub struct FrameResampler<const IN: usize, const OUT: usize> {
    fft: Fft<f32>,
}

/// 16 kHz → 48 kHz, one 20 ms frame per call (the bot's frames into the core).
pub type Upsampler = FrameResampler<SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K>;

/// 48 kHz → 16 kHz, one 20 ms frame per call (the core's frames to the bot).
pub type Downsampler = FrameResampler<SAMPLES_PER_FRAME_48K, SAMPLES_PER_FRAME_16K>;

/// 24 kHz → 48 kHz, one 20 ms frame per call (PCM streams at 24 kHz into the core).
pub type Upsampler24k = FrameResampler<SAMPLES_PER_FRAME_24K, SAMPLES_PER_FRAME_48K>;

/// 48 kHz → 24 kHz, one 20 ms frame per call (the core's send mix as 24 kHz PCM).
pub type Downsampler24k = FrameResampler<SAMPLES_PER_FRAME_48K, SAMPLES_PER_FRAME_24K>;

/// 20 ms frames per second.
const FRAMES_PER_SECOND: usize = 50;
// The rates `FrameResampler::new` derives from frame lengths are the core's rates.
const _: () = assert!(SAMPLES_PER_FRAME_16K * FRAMES_PER_SECOND == SAMPLE_RATE_16K as usize);
const _: () = assert!(SAMPLES_PER_FRAME_24K * FRAMES_PER_SECOND == SAMPLE_RATE_24K as usize);
const _: () = assert!(SAMPLES_PER_FRAME_48K * FRAMES_PER_SECOND == SAMPLE_RATE_48K as usize);

/// FFT blocks per 20 ms frame. Two blocks of 10 ms instead of one of 20 ms
/// halve both the delay (5 ms each way) and the FFT plans and buffers (about
/// 40 KiB less per resampler, which matters at hundreds of calls), while the
/// anti-aliasing cutoff stays above 7 kHz at 16 kHz, past the speech band.
const SUB_CHUNKS: usize = 2;

impl<const IN: usize, const OUT: usize> FrameResampler<IN, OUT> {
    /// Builds the resampler and all its buffers.
    pub fn new() -> Result<Self, ResampleError> {
        let rate = |samples: usize| u32::try_from(samples * FRAMES_PER_SECOND).unwrap_or(u32::MAX);
        let (from, to) = (rate(IN), rate(OUT));
        // The narrow side is fixed at one frame; with whole blocks per frame
        // the wide side then also moves exactly one frame per call.
        let (chunk, fixed) = if IN < OUT {
            (IN, FixedSync::Input)
        } else {
            (OUT, FixedSync::Output)
        };
        let fft = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            chunk,
            SUB_CHUNKS,
            1,
            WindowFunction::BlackmanHarris2,
            fixed,
        )
        .map_err(|source| ResampleError::Construction { from, to, source })?;
        let (input, output) = (fft.input_frames_next(), fft.output_frames_next());
        if input != IN || output != OUT {
            return Err(ResampleError::ChunkMismatch { input, output });
        }
        Ok(Self { fft })
    }

    /// Converts one frame. Never allocates.
    pub fn process(
        &mut self,
        input: &[f32; IN],
        output: &mut [f32; OUT],
    ) -> Result<(), ResampleError> {
        // Size errors are impossible here: the arrays have exactly the lengths
        // the adapters are given.
        let in_adapter =
            InterleavedSlice::new(&input[..], 1, IN).map_err(|_| ResampleError::Length {
                what: "resampler input",
                actual: IN,
                expected: IN,
            })?;
        let mut out_adapter = InterleavedSlice::new_mut(&mut output[..], 1, OUT).map_err(|_| {
            ResampleError::Length {
                what: "resampler output",
                actual: OUT,
                expected: OUT,
            }
        })?;
        let (read, written) = self
            .fft
            .process_into_buffer(&in_adapter, &mut out_adapter, None)?;
        if read != IN || written != OUT {
            return Err(ResampleError::ChunkMismatch {
                input: read,
                output: written,
            });
        }
        Ok(())
    }
}

impl<const IN: usize, const OUT: usize> FrameResampler<IN, OUT> {
    /// Delay added, in output samples.
    pub fn delay_samples(&self) -> usize {
        self.fft.output_delay()
    }

    /// Forgets all history (e.g. when a new talk spurt follows a long gap).
    pub fn reset(&mut self) {
        self.fft.reset();
    }
}

impl<const IN: usize, const OUT: usize> std::fmt::Debug for FrameResampler<IN, OUT> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResampler")
            .field("in", &IN)
            .field("out", &OUT)
            .field("delay_samples", &self.delay_samples())
            .finish()
    }
}

/// One s16 sample as `f32` in `[-1.0, 1.0)`.
#[inline]
pub fn s16_to_f32_sample(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// One `f32` sample as s16: rounded, saturating at full scale (never wrapping);
/// NaN becomes 0.
#[inline]
pub fn f32_to_s16_sample(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32768.0).round() as i16
}

/// Converts s16 samples to `f32`; the slices must have equal length.
pub fn s16_to_f32(input: &[i16], output: &mut [f32]) -> Result<(), ResampleError> {
    check_len("f32 output", output.len(), input.len())?;
    for (o, &s) in output.iter_mut().zip(input) {
        *o = s16_to_f32_sample(s);
    }
    Ok(())
}

/// Converts `f32` samples to s16; the slices must have equal length.
pub fn f32_to_s16(input: &[f32], output: &mut [i16]) -> Result<(), ResampleError> {
    check_len("s16 output", output.len(), input.len())?;
    for (o, &x) in output.iter_mut().zip(input) {
        *o = f32_to_s16_sample(x);
    }
    Ok(())
}

/// Converts little-endian s16 PCM bytes (e.g. a 640-byte Graph frame) to `f32`;
/// `input` must hold exactly `2 × output.len()` bytes.
pub fn s16le_bytes_to_f32(input: &[u8], output: &mut [f32]) -> Result<(), ResampleError> {
    check_len("s16le input bytes", input.len(), output.len() * 2)?;
    for (o, pair) in output.iter_mut().zip(input.chunks_exact(2)) {
        *o = s16_to_f32_sample(i16::from_le_bytes([pair[0], pair[1]]));
    }
    Ok(())
}

/// Converts `f32` samples to little-endian s16 PCM bytes;
/// `output` must hold exactly `2 × input.len()` bytes.
pub fn f32_to_s16le_bytes(input: &[f32], output: &mut [u8]) -> Result<(), ResampleError> {
    check_len("s16le output bytes", output.len(), input.len() * 2)?;
    for (&x, pair) in input.iter().zip(output.chunks_exact_mut(2)) {
        pair.copy_from_slice(&f32_to_s16_sample(x).to_le_bytes());
    }
    Ok(())
}

fn check_len(what: &'static str, actual: usize, expected: usize) -> Result<(), ResampleError> {
    if actual == expected {
        Ok(())
    } else {
        Err(ResampleError::Length {
            what,
            actual,
            expected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{BYTES_PER_FRAME_16K_S16, SILENT_FRAME_48};
    use std::f64::consts::PI;

    const TONE_HZ: f64 = 1000.0;
    const AMP: f64 = 0.5;

    fn tone(rate: f64, n: usize, delay: f64) -> f32 {
        (AMP * (2.0 * PI * TONE_HZ * (n as f64 - delay) / rate).sin()) as f32
    }

    #[test]
    fn tone_survives_16k_to_48k_to_16k() {
        let mut up = Upsampler::new().unwrap();
        let mut down = Downsampler::new().unwrap();
        assert_eq!(up.delay_samples() % 3, 0, "delay is whole 16 kHz samples");
        let delay = (up.delay_samples() / 3 + down.delay_samples()) as f64;
        let frames = 30;
        let mut input = [0.0f32; SAMPLES_PER_FRAME_16K];
        let mut mid = SILENT_FRAME_48;
        let mut out = [0.0f32; SAMPLES_PER_FRAME_16K];
        let mut max_err = 0.0f64;
        let mut max_err_48 = 0.0f64;
        for f in 0..frames {
            for (i, s) in input.iter_mut().enumerate() {
                *s = tone(16_000.0, f * SAMPLES_PER_FRAME_16K + i, 0.0);
            }
            up.process(&input, &mut mid).unwrap();
            down.process(&mid, &mut out).unwrap();
            // Skip the first frames: the filters are still filling.
            if f < 4 {
                continue;
            }
            for (i, &s) in mid.iter().enumerate() {
                let n = f * SAMPLES_PER_FRAME_48K + i;
                let want = tone(48_000.0, n, up.delay_samples() as f64);
                max_err_48 = max_err_48.max((f64::from(s) - f64::from(want)).abs());
            }
            for (i, &s) in out.iter().enumerate() {
                let want = tone(16_000.0, f * SAMPLES_PER_FRAME_16K + i, delay);
                max_err = max_err.max((f64::from(s) - f64::from(want)).abs());
            }
        }
        // 5 ms each way (see SUB_CHUNKS).
        assert_eq!(up.delay_samples(), 240);
        assert_eq!(down.delay_samples(), 80);
        assert!(max_err_48 < 0.01, "16k->48k error {max_err_48}");
        assert!(max_err < 0.01, "round-trip error {max_err}");
        up.reset();
        down.reset();
    }

    #[test]
    fn tone_survives_24k_to_48k_to_24k() {
        let mut up = Upsampler24k::new().unwrap();
        let mut down = Downsampler24k::new().unwrap();
        assert_eq!(up.delay_samples() % 2, 0, "delay is whole 24 kHz samples");
        let delay = (up.delay_samples() / 2 + down.delay_samples()) as f64;
        let mut input = [0.0f32; SAMPLES_PER_FRAME_24K];
        let mut mid = SILENT_FRAME_48;
        let mut out = [0.0f32; SAMPLES_PER_FRAME_24K];
        let mut max_err = 0.0f64;
        for f in 0..30 {
            for (i, s) in input.iter_mut().enumerate() {
                *s = tone(24_000.0, f * SAMPLES_PER_FRAME_24K + i, 0.0);
            }
            up.process(&input, &mut mid).unwrap();
            down.process(&mid, &mut out).unwrap();
            if f < 4 {
                continue;
            }
            for (i, &s) in out.iter().enumerate() {
                let want = tone(24_000.0, f * SAMPLES_PER_FRAME_24K + i, delay);
                max_err = max_err.max((f64::from(s) - f64::from(want)).abs());
            }
        }
        // 5 ms each way, as for 16 kHz.
        assert_eq!(up.delay_samples(), 240);
        assert_eq!(down.delay_samples(), 120);
        assert!(max_err < 0.01, "round-trip error {max_err}");
    }

    /// Peak of a 0.5-amplitude sine at `hz` after a fresh downsampler, over 10 frames
    /// (the first two, the filter's start-up, not counted).
    fn downsampled_peak(hz: f64) -> f32 {
        let mut down = Downsampler::new().unwrap();
        let mut input = SILENT_FRAME_48;
        let mut out = [0.0f32; SAMPLES_PER_FRAME_16K];
        let mut peak = 0.0f32;
        for f in 0..10 {
            for (i, s) in input.iter_mut().enumerate() {
                let n = (f * SAMPLES_PER_FRAME_48K + i) as f64;
                *s = (0.5 * (2.0 * PI * hz * n / 48_000.0).sin()) as f32;
            }
            down.process(&input, &mut out).unwrap();
            if f >= 2 {
                peak = out.iter().fold(peak, |m, s| m.max(s.abs()));
            }
        }
        peak
    }

    #[test]
    fn downsampler_removes_content_above_8k() {
        // 12 kHz cannot exist at 16 kHz; it must be filtered, not aliased to 4 kHz.
        let peak = downsampled_peak(12_000.0);
        assert!(peak < 0.01, "aliased energy {peak}");
    }

    #[test]
    fn speech_band_passes_the_downsampler() {
        // Up to 6 kHz must come through at (nearly) full level.
        for hz in [300.0, 3400.0, 6000.0] {
            let peak = downsampled_peak(hz);
            assert!((0.45..0.55).contains(&peak), "{hz} Hz came out at {peak}");
        }
        // rubato states the cutoff relative to the input (48 kHz) Nyquist.
        let cutoff_hz = Downsampler::new().unwrap().fft.cutoff() * 24_000.0;
        assert!(cutoff_hz > 7_000.0, "cutoff {cutoff_hz} Hz");
    }

    #[test]
    fn s16_conversion_round_trips_and_saturates() {
        let samples = [i16::MIN, -12345, -1, 0, 1, 12345, i16::MAX];
        let mut f = [0.0f32; 7];
        s16_to_f32(&samples, &mut f).unwrap();
        let mut back = [0i16; 7];
        f32_to_s16(&f, &mut back).unwrap();
        assert_eq!(back, samples);
        assert_eq!(f32_to_s16_sample(1.5), i16::MAX);
        assert_eq!(f32_to_s16_sample(-1.5), i16::MIN);
        assert_eq!(f32_to_s16_sample(f32::NAN), 0);
        assert!(f.iter().all(|x| (-1.0..1.0).contains(x)));
    }

    #[test]
    fn graph_frame_bytes_convert_both_ways() {
        let mut bytes = [0u8; BYTES_PER_FRAME_16K_S16];
        for (i, pair) in bytes.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&((i as i16) * 100 - 16000).to_le_bytes());
        }
        let mut f = [0.0f32; SAMPLES_PER_FRAME_16K];
        s16le_bytes_to_f32(&bytes, &mut f).unwrap();
        assert_eq!(f[0], -16000.0 / 32768.0);
        let mut back = [0u8; BYTES_PER_FRAME_16K_S16];
        f32_to_s16le_bytes(&f, &mut back).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        let mut f = [0.0f32; 320];
        let err = s16le_bytes_to_f32(&[0u8; 639], &mut f).unwrap_err();
        assert!(matches!(
            err,
            ResampleError::Length {
                actual: 639,
                expected: 640,
                ..
            }
        ));
        assert!(f32_to_s16le_bytes(&f, &mut [0u8; 10]).is_err());
        assert!(s16_to_f32(&[0i16; 3], &mut f).is_err());
        assert!(f32_to_s16(&f, &mut [0i16; 3]).is_err());
    }
}
