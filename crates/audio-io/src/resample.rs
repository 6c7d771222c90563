//! Sample-rate conversion on top of rubato: whole clips (prompt files) and frame-by-frame streams
//! (recordings at a rate other than the call's).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// A resampler could not be built or failed while running.
#[derive(Debug, thiserror::Error)]
#[error("resampling {from} Hz -> {to} Hz failed: {reason}")]
pub struct ResampleError {
    /// Input sample rate.
    pub from: u32,
    /// Output sample rate.
    pub to: u32,
    /// What rubato reported.
    pub reason: String,
}

impl ResampleError {
    fn new(from: u32, to: u32, reason: impl ToString) -> Self {
        Self {
            from,
            to,
            reason: reason.to_string(),
        }
    }
}

/// Resamples a whole mono clip. The FFT resampler is rubato's choice for a fixed ratio: as good
/// as its best sinc mode and much faster; `process_all` trims the startup delay so the output
/// lines up with the input.
pub fn resample_clip(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| ResampleError::new(from, to, e))?;
    let input = InterleavedSlice::new(samples, 1, samples.len())
        .map_err(|e| ResampleError::new(from, to, e))?;
    let output = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| ResampleError::new(from, to, e))?;
    // rubato rounds the length up from a float ratio; the exact length is len * to / from.
    let exact = (samples.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let mut out = output.take_data();
    out.truncate(exact);
    Ok(out)
}

/// Resamples a stream that arrives one fixed-size frame at a time. Buffers are allocated once,
/// here; `process` does not allocate.
pub struct FrameResampler {
    inner: Fft<f32>,
    from: u32,
    to: u32,
    frame_len: usize,
    out: Vec<f32>,
    /// Output samples still to discard: the resampler's startup delay, so that the stream stays
    /// aligned with the input (and with other tracks recorded at the same time).
    to_trim: usize,
    /// Input samples taken so far.
    in_total: u64,
    /// Output samples handed out so far (after trimming).
    out_total: u64,
}

impl FrameResampler {
    /// A resampler taking `frame_len` samples at `from` Hz per call.
    pub fn new(from: u32, to: u32, frame_len: usize) -> Result<Self, ResampleError> {
        let inner = Fft::<f32>::new(from as usize, to as usize, frame_len, 1, FixedSync::Input)
            .map_err(|e| ResampleError::new(from, to, e))?;
        let delay = inner.output_delay();
        let out = vec![0.0; inner.output_frames_max()];
        Ok(Self {
            inner,
            from,
            to,
            frame_len,
            out,
            to_trim: delay,
            in_total: 0,
            out_total: 0,
        })
    }

    /// Resamples one frame (`frame_len` samples) and returns the output samples ready so far.
    pub fn process(&mut self, frame: &[f32]) -> Result<&[f32], ResampleError> {
        let (from, to) = (self.from, self.to);
        let input = InterleavedSlice::new(frame, 1, self.frame_len)
            .map_err(|e| ResampleError::new(from, to, e))?;
        let capacity = self.out.len();
        let mut output = InterleavedSlice::new_mut(&mut self.out[..], 1, capacity)
            .map_err(|e| ResampleError::new(from, to, e))?;
        let (_, written) = self
            .inner
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| ResampleError::new(from, to, e))?;
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        self.in_total += self.frame_len as u64;
        self.out_total += (written - skip) as u64;
        Ok(&self.out[skip..written])
    }

    /// Pushes silence through to release the last input samples still inside the resampler,
    /// so that the whole stream comes out exactly `input * to / from` samples long.
    pub fn drain(&mut self) -> Result<Vec<f32>, ResampleError> {
        let (from, to) = (self.from, self.to);
        let owed = (self.in_total * u64::from(to) / u64::from(from)).saturating_sub(self.out_total)
            as usize;
        let mut tail = Vec::with_capacity(owed + self.out.len());
        let silence = vec![0.0f32; self.frame_len];
        let indexing = Indexing::new().partial_len(0);
        // Bounded: each call yields about frame_len * to / from samples, so a handful of calls
        // covers any delay; the bound guards against a resampler that yields nothing.
        for _ in 0..64 {
            if tail.len() >= owed {
                break;
            }
            let input = InterleavedSlice::new(&silence[..], 1, self.frame_len)
                .map_err(|e| ResampleError::new(from, to, e))?;
            let capacity = self.out.len();
            let mut output = InterleavedSlice::new_mut(&mut self.out[..], 1, capacity)
                .map_err(|e| ResampleError::new(from, to, e))?;
            let (_, written) = self
                .inner
                .process_into_buffer(&input, &mut output, Some(&indexing))
                .map_err(|e| ResampleError::new(from, to, e))?;
            let skip = self.to_trim.min(written);
            self.to_trim -= skip;
            tail.extend_from_slice(&self.out[skip..written]);
        }
        tail.truncate(owed);
        self.out_total += tail.len() as u64;
        Ok(tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, rate: u32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn clip_length_follows_the_ratio() {
        let input = sine(440.0, 44_100, 44_100);
        let out = resample_clip(&input, 44_100, 48_000).unwrap();
        assert_eq!(out.len(), 48_000);
        // A sine stays a sine at the same amplitude (well inside the passband).
        let peak = out[1000..47_000].iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "peak {peak}");
    }

    #[test]
    fn frame_stream_keeps_the_total_length_and_alignment() {
        let input = sine(1000.0, 48_000, 48_000);
        let mut r = FrameResampler::new(48_000, 16_000, 960).unwrap();
        let mut out = Vec::new();
        for frame in input.chunks(960) {
            out.extend_from_slice(r.process(frame).unwrap());
        }
        out.extend(r.drain().unwrap());
        assert_eq!(out.len(), 16_000);
        // Aligned: the output at 16 kHz sample k is the input at 48 kHz sample 3k, within one
        // input sample (a 1 kHz sine of amplitude 0.5 moves at most 0.065 per 48 kHz sample;
        // a misalignment of one output sample would show up as about 0.2).
        for k in [2000usize, 8000, 15_000] {
            assert!(
                (out[k] - input[3 * k]).abs() < 0.1,
                "k={k}: {} vs {}",
                out[k],
                input[3 * k]
            );
        }
    }
}
