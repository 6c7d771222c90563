//! A telephone line: what a PSTN party sounds like.
//!
//! A phone call is sampled at 8 kHz (G.711), so nothing above 4 kHz survives, and handsets and
//! line cards cut below about 300 Hz. [`PhoneLine`] does the same to a 48 kHz frame: it really
//! resamples 48 kHz → 8 kHz → 48 kHz (rubato's FFT resampler, whose anti-aliasing filter is the
//! band edge) and high-passes at 300 Hz in between. The two resamplers delay the audio by about
//! 20 ms, as a real gateway would.
//!
//! Real-time contract: buffers are allocated in [`PhoneLine::new`]; [`PhoneLine::process`]
//! never allocates, locks or blocks.

use appmedia_media::frame::{Frame48, SAMPLE_RATE_48K, SAMPLES_PER_FRAME_48K};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The telephone sample rate (G.711).
pub const PHONE_SAMPLE_RATE: u32 = 8_000;
/// Samples in 20 ms at 8 kHz.
const SAMPLES_PER_FRAME_8K: usize = 160;
/// Lower band edge of a telephone channel.
const LOW_CUT_HZ: f32 = 300.0;

/// Why a phone line could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum PhoneLineError {
    #[error("cannot build the {from} Hz -> {to} Hz resampler: {reason}")]
    /// The resampler could not be built.
    Construction {
        /// Input rate (Hz).
        from: u32,
        /// Output rate (Hz).
        to: u32,
        /// The resampler's message.
        reason: String,
    },
    #[error("resampler chunk is {input} in / {output} out, wanted one 20 ms frame each")]
    /// The resampler's chunk sizes are not one 20 ms frame each.
    ChunkMismatch {
        /// Input samples per chunk.
        input: usize,
        /// Output samples per chunk.
        output: usize,
    },
    #[error("resampling failed: {0}")]
    /// Resampling a frame failed; the resampler's message.
    Process(String),
}

/// A second-order IIR section (RBJ audio-EQ cookbook), direct form I.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    x: [f32; 2],
    y: [f32; 2],
}

impl Biquad {
    fn high_pass(cutoff_hz: f32, sample_rate: f32) -> Self {
        let w0 = std::f32::consts::TAU * cutoff_hz / sample_rate;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
        let a0 = 1.0 + alpha;
        Biquad {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            x: [0.0; 2],
            y: [0.0; 2],
        }
    }

    fn run(&mut self, samples: &mut [f32]) {
        for s in samples {
            let x0 = *s;
            let y0 = self.b[0] * x0 + self.b[1] * self.x[0] + self.b[2] * self.x[1]
                - self.a[0] * self.y[0]
                - self.a[1] * self.y[1];
            self.x = [x0, self.x[0]];
            // Flush denormals: a filter ringing down to 1e-40 costs far more than it should.
            let y0 = if y0.abs() < 1e-20 { 0.0 } else { y0 };
            self.y = [y0, self.y[0]];
            *s = y0;
        }
    }
}

/// Band-limits 48 kHz frames to a telephone channel (300 Hz – 4 kHz, sampled at 8 kHz).
pub struct PhoneLine {
    down: Fft<f32>,
    up: Fft<f32>,
    narrow: [f32; SAMPLES_PER_FRAME_8K],
    out: Box<Frame48>,
    low_cut: Biquad,
}

impl std::fmt::Debug for PhoneLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneLine").finish_non_exhaustive()
    }
}

fn resampler(from: u32, to: u32, chunk: usize, out: usize) -> Result<Fft<f32>, PhoneLineError> {
    let fft =
        Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Both).map_err(|e| {
            PhoneLineError::Construction {
                from,
                to,
                reason: e.to_string(),
            }
        })?;
    let (input, output) = (fft.input_frames_next(), fft.output_frames_next());
    if input != chunk || output != out {
        return Err(PhoneLineError::ChunkMismatch { input, output });
    }
    Ok(fft)
}

fn process<const IN: usize, const OUT: usize>(
    fft: &mut Fft<f32>,
    input: &[f32; IN],
    output: &mut [f32; OUT],
) -> Result<(), PhoneLineError> {
    let fail = |e: &dyn std::fmt::Display| PhoneLineError::Process(e.to_string());
    let in_adapter = InterleavedSlice::new(&input[..], 1, IN).map_err(|e| fail(&e))?;
    let mut out_adapter =
        InterleavedSlice::new_mut(&mut output[..], 1, OUT).map_err(|e| fail(&e))?;
    let (read, written) = fft
        .process_into_buffer(&in_adapter, &mut out_adapter, None)
        .map_err(|e| fail(&e))?;
    if read != IN || written != OUT {
        return Err(PhoneLineError::ChunkMismatch {
            input: read,
            output: written,
        });
    }
    Ok(())
}

impl PhoneLine {
    /// Builds both resamplers and the filter.
    pub fn new() -> Result<Self, PhoneLineError> {
        Ok(PhoneLine {
            down: resampler(
                SAMPLE_RATE_48K,
                PHONE_SAMPLE_RATE,
                SAMPLES_PER_FRAME_48K,
                SAMPLES_PER_FRAME_8K,
            )?,
            up: resampler(
                PHONE_SAMPLE_RATE,
                SAMPLE_RATE_48K,
                SAMPLES_PER_FRAME_8K,
                SAMPLES_PER_FRAME_48K,
            )?,
            narrow: [0.0; SAMPLES_PER_FRAME_8K],
            out: Box::new([0.0; SAMPLES_PER_FRAME_48K]),
            low_cut: Biquad::high_pass(LOW_CUT_HZ, PHONE_SAMPLE_RATE as f32),
        })
    }

    /// Replaces `frame` with its telephone-band version (20 ms later, see the module docs).
    /// On a resampler error the frame is silenced and the error returned, so a failing line
    /// never passes wideband audio.
    pub fn process(&mut self, frame: &mut Frame48) -> Result<(), PhoneLineError> {
        let result = process(&mut self.down, frame, &mut self.narrow).and_then(|()| {
            self.low_cut.run(&mut self.narrow);
            process(&mut self.up, &self.narrow, &mut self.out)
        });
        match result {
            Ok(()) => {
                frame.copy_from_slice(&self.out[..]);
                Ok(())
            }
            Err(e) => {
                frame.fill(0.0);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Energy of a 48 kHz signal at one frequency (single-bin DFT), normalized per sample.
    fn energy_at(samples: &[f32], hz: f32) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &s) in samples.iter().enumerate() {
            let ph = std::f64::consts::TAU * f64::from(hz) * i as f64 / 48_000.0;
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        ((re * re + im * im) / (samples.len() as f64).powi(2)) as f32
    }

    fn through_line(hz: f32) -> Vec<f32> {
        let mut line = PhoneLine::new().unwrap();
        let mut out = Vec::new();
        for k in 0..25 {
            let mut frame = [0.0f32; SAMPLES_PER_FRAME_48K];
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (k * SAMPLES_PER_FRAME_48K + i) as f32 / 48_000.0;
                *s = 0.5 * (std::f32::consts::TAU * hz * t).sin();
            }
            line.process(&mut frame).unwrap();
            if k >= 5 {
                out.extend_from_slice(&frame);
            }
        }
        out
    }

    #[test]
    fn speech_band_passes_and_the_rest_is_cut() {
        // A 0.5 amplitude sine has energy 0.0625 at its bin.
        let pass = energy_at(&through_line(1000.0), 1000.0);
        assert!(pass > 0.05, "1 kHz passes: {pass}");
        let high = energy_at(&through_line(6000.0), 6000.0);
        assert!(high < 1e-6, "6 kHz is cut: {high}");
        let low = energy_at(&through_line(100.0), 100.0);
        assert!(low < pass / 10.0, "100 Hz is attenuated: {low}");
    }

    #[test]
    fn silence_stays_silent() {
        let mut line = PhoneLine::new().unwrap();
        let mut frame = [0.0f32; SAMPLES_PER_FRAME_48K];
        for _ in 0..10 {
            line.process(&mut frame).unwrap();
            assert!(frame.iter().all(|s| s.abs() < 1e-9));
        }
    }
}
