//! Raw PCM streams: remote audio that arrives as s16 frames instead of RTP, and the send
//! mix leaving as s16 frames instead of Opus.
//!
//! Azure Communication Services audio streaming carries a call's audio over a WebSocket as
//! mono s16 PCM at 16 or 24 kHz ([`PcmRate`]), 20 ms per message, and takes the bot's audio
//! back in the same shape. TCP loses nothing but bunches frames, so a PCM stream needs no
//! jitter buffer, loss concealment or decoder: a short [`PcmPlayout`] ring that waits a fixed
//! cushion before it plays (and again after it ran dry) smooths the bunching.
//!
//! ```
//! use appmedia_media::pcm::{PcmFrame, PcmPlayout, PcmRate, PlayoutStep};
//!
//! let mut ring = PcmPlayout::new(2); // 40 ms cushion
//! let frame = PcmFrame::new(PcmRate::Hz16000, &[0i16; 320])?;
//! for _ in 0..5 {
//!     ring.push(&frame); // a TCP burst
//! }
//! assert!(matches!(ring.pop(), PlayoutStep::Buffering));
//! assert!(matches!(ring.pop(), PlayoutStep::Buffering));
//! assert!(matches!(ring.pop(), PlayoutStep::Frame(_))); // the cushion is there: it plays
//! assert!(PcmFrame::new(PcmRate::Hz24000, &[0i16; 320]).is_err()); // 24 kHz frames are 480
//! # Ok::<(), appmedia_media::pcm::PcmLengthError>(())
//! ```
//!
//! Real-time contract: [`PcmPlayout::new`] allocates its ring; `push`, `pop` and every
//! [`PcmFrame`] (a fixed-size value) allocate nothing.

use std::time::Duration;

use thiserror::Error;

use crate::frame::{
    FRAME_DURATION, Frame48, SAMPLE_RATE_16K, SAMPLE_RATE_24K, SAMPLES_PER_FRAME_16K,
    SAMPLES_PER_FRAME_24K,
};
use crate::jitter::JitterStats;
use crate::resample::{Downsampler, Downsampler24k, ResampleError, Upsampler, Upsampler24k};

/// Samples in the largest PCM frame (20 ms at 24 kHz): the size of every [`PcmFrame`].
pub const MAX_PCM_FRAME: usize = SAMPLES_PER_FRAME_24K;

/// Frames a [`PcmPlayout`] holds (240 ms); a fuller ring drops its oldest frame.
pub const PCM_PLAYOUT_FRAMES: usize = 12;

/// The sample rate of a PCM stream (always mono s16, 20 ms per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcmRate {
    /// 16 kHz: 320 samples per frame.
    Hz16000,
    /// 24 kHz: 480 samples per frame.
    Hz24000,
}

impl PcmRate {
    /// Samples in one 20 ms frame.
    pub const fn samples_per_frame(self) -> usize {
        match self {
            PcmRate::Hz16000 => SAMPLES_PER_FRAME_16K,
            PcmRate::Hz24000 => SAMPLES_PER_FRAME_24K,
        }
    }

    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            PcmRate::Hz16000 => SAMPLE_RATE_16K,
            PcmRate::Hz24000 => SAMPLE_RATE_24K,
        }
    }

    /// The codec's name as stream stats report it (RFC 3551's `L16`, at this rate).
    pub const fn codec_name(self) -> &'static str {
        match self {
            PcmRate::Hz16000 => "L16/16000",
            PcmRate::Hz24000 => "L16/24000",
        }
    }
}

/// A PCM frame whose length is not 20 ms at its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("PCM frame of {len} samples; 20 ms at {hz} Hz has {expected}")]
pub struct PcmLengthError {
    /// The samples given.
    pub len: usize,
    /// The samples a frame has at that rate.
    pub expected: usize,
    /// The rate.
    pub hz: u32,
}

/// One 20 ms frame of mono s16 PCM at 16 or 24 kHz, by value (fixed size, so queues and rings
/// of frames never allocate).
#[derive(Clone, Copy)]
pub struct PcmFrame {
    rate: PcmRate,
    samples: [i16; MAX_PCM_FRAME],
}

impl PcmFrame {
    /// A silent frame at `rate`.
    pub const fn silent(rate: PcmRate) -> Self {
        PcmFrame {
            rate,
            samples: [0; MAX_PCM_FRAME],
        }
    }

    /// Copies one frame; refused unless `samples` is exactly 20 ms at `rate`.
    pub fn new(rate: PcmRate, samples: &[i16]) -> Result<Self, PcmLengthError> {
        let expected = rate.samples_per_frame();
        if samples.len() != expected {
            return Err(PcmLengthError {
                len: samples.len(),
                expected,
                hz: rate.hz(),
            });
        }
        let mut frame = PcmFrame::silent(rate);
        frame.samples[..expected].copy_from_slice(samples);
        Ok(frame)
    }

    /// The frame's rate.
    pub fn rate(&self) -> PcmRate {
        self.rate
    }

    /// The frame's samples (320 or 480).
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.rate.samples_per_frame()]
    }

    fn samples_mut(&mut self) -> &mut [i16] {
        let n = self.rate.samples_per_frame();
        &mut self.samples[..n]
    }
}

impl std::fmt::Debug for PcmFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmFrame")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// One frame of the bot's send mix as PCM ([`crate::pipeline::SendOutput::Pcm`]).
#[derive(Debug, Clone, Copy)]
pub struct PcmFrameOut {
    /// The audio, at the configured rate.
    pub frame: PcmFrame,
    /// The `now` of the tick that produced it.
    pub timestamp: Duration,
    /// Whether it starts a talk spurt: the send side sent nothing on the tick before (the
    /// counterpart of RTP's marker bit).
    pub first_of_spurt: bool,
}

/// What [`PcmPlayout::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcmPush {
    /// Stored.
    Buffered,
    /// The ring was full (frames came faster than real time): its oldest frame was dropped.
    DroppedOldest,
    /// The frame's rate differs from the stream's: everything buffered was dropped and the
    /// stream starts over at the new rate (prebuffering again).
    RateChanged,
}

/// What to play on this tick.
#[derive(Debug)]
pub enum PlayoutStep<'a> {
    /// Nothing yet: no frame, or waiting out the cushion.
    Buffering,
    /// The next frame.
    Frame(&'a PcmFrame),
    /// The ring ran dry while playing: play silence; playout waits for a new cushion.
    Underrun,
}

/// Counters of one [`PcmPlayout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcmStats {
    /// Frames pushed.
    pub received: u64,
    /// Frames played.
    pub played: u64,
    /// Times the ring ran dry while playing (one silent frame each, then a new cushion).
    pub underruns: u64,
    /// Oldest frames dropped because the ring was full.
    pub overflow: u64,
    /// Restarts on a change of rate.
    pub resets: u64,
    /// Frames waiting after the last pop.
    pub buffered: usize,
}

/// A small playout ring for one PCM stream: frames are played in arrival order, one per tick,
/// after a fixed cushion of `prebuffer` ticks (counted from the first frame, as the send queue
/// counts its cushion, so the cushion is the same whatever size the bursts are). When the
/// ring runs dry it waits for a new cushion; when it overflows it drops its oldest frame.
pub struct PcmPlayout {
    ring: Box<[PcmFrame; PCM_PLAYOUT_FRAMES]>,
    head: usize,
    len: usize,
    rate: Option<PcmRate>,
    prebuffer: usize,
    waited: usize,
    playing: bool,
    stats: PcmStats,
}

impl PcmPlayout {
    /// A ring that waits `prebuffer` ticks (at most [`PCM_PLAYOUT_FRAMES`] − 1) before it
    /// plays. Allocates the ring (the only allocation this type makes).
    pub fn new(prebuffer: usize) -> Self {
        PcmPlayout {
            ring: Box::new([PcmFrame::silent(PcmRate::Hz16000); PCM_PLAYOUT_FRAMES]),
            head: 0,
            len: 0,
            rate: None,
            prebuffer: prebuffer.min(PCM_PLAYOUT_FRAMES - 1),
            waited: 0,
            playing: false,
            stats: PcmStats::default(),
        }
    }

    /// The rate of the frames being played, once one arrived.
    pub fn rate(&self) -> Option<PcmRate> {
        self.rate
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the ring has counted.
    pub fn stats(&self) -> &PcmStats {
        &self.stats
    }

    /// Forgets the frames and the playout state (the stream restarts); counters are kept.
    pub fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
        self.rate = None;
        self.waited = 0;
        self.playing = false;
        self.stats.buffered = 0;
    }

    /// Forgets the frames, the playout state and the counters (a new stream in this ring).
    pub fn clear(&mut self) {
        self.reset();
        self.stats = PcmStats::default();
    }

    /// Takes one frame. Never allocates.
    pub fn push(&mut self, frame: &PcmFrame) -> PcmPush {
        self.stats.received += 1;
        let mut outcome = PcmPush::Buffered;
        if self.rate.is_some_and(|r| r != frame.rate) {
            self.reset();
            self.stats.resets += 1;
            outcome = PcmPush::RateChanged;
        }
        self.rate = Some(frame.rate);
        if self.len == PCM_PLAYOUT_FRAMES {
            self.head = (self.head + 1) % PCM_PLAYOUT_FRAMES;
            self.len -= 1;
            self.stats.overflow += 1;
            if outcome == PcmPush::Buffered {
                outcome = PcmPush::DroppedOldest;
            }
        }
        self.ring[(self.head + self.len) % PCM_PLAYOUT_FRAMES] = *frame;
        self.len += 1;
        self.stats.buffered = self.len;
        outcome
    }

    /// What to play on this tick (call once per tick). Never allocates.
    pub fn pop(&mut self) -> PlayoutStep<'_> {
        if !self.playing {
            if self.len == 0 {
                self.waited = 0;
                return PlayoutStep::Buffering;
            }
            self.waited += 1;
            if self.waited <= self.prebuffer {
                return PlayoutStep::Buffering;
            }
            self.waited = 0;
            self.playing = true;
        }
        if self.len == 0 {
            self.playing = false;
            self.stats.underruns += 1;
            return PlayoutStep::Underrun;
        }
        let at = self.head;
        self.head = (self.head + 1) % PCM_PLAYOUT_FRAMES;
        self.len -= 1;
        self.stats.played += 1;
        self.stats.buffered = self.len;
        PlayoutStep::Frame(&self.ring[at])
    }

    /// The counters in the shape of an RTP stream's jitter-buffer stats, so that a PCM stream
    /// reports through the same [`crate::pipeline::StreamStats`]: `received` and `played` are
    /// frames; `underruns` and `concealed` both count the ticks the ring ran dry while playing
    /// (each played as silence); `overflow` counts the frames dropped because the ring was
    /// full; `resets` the rate changes; `current_delay` is what is buffered, `target_delay`
    /// the cushion. TCP loses, reorders and duplicates nothing, so those stay zero, as do the
    /// RTP-only DTX, FEC and delay-adaptation counters.
    pub fn jitter_stats(&self) -> JitterStats {
        JitterStats {
            received: self.stats.received,
            played: self.stats.played,
            underruns: self.stats.underruns,
            concealed: self.stats.underruns,
            overflow: self.stats.overflow,
            resets: self.stats.resets,
            current_delay: FRAME_DURATION * self.len as u32,
            target_delay: FRAME_DURATION * self.prebuffer as u32,
            ..JitterStats::default()
        }
    }
}

impl std::fmt::Debug for PcmPlayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcmPlayout")
            .field("rate", &self.rate)
            .field("prebuffer", &self.prebuffer)
            .field("playing", &self.playing)
            .field("stats", &self.stats)
            .finish()
    }
}

/// PCM at either rate → 48 kHz, with the resampler of each rate built on first use.
#[derive(Debug)]
pub(crate) struct PcmUpsampler {
    hz16: Option<Box<Upsampler>>,
    hz24: Option<Box<Upsampler24k>>,
    scratch: Box<[f32; MAX_PCM_FRAME]>,
}

impl PcmUpsampler {
    /// No resampler yet: each is built by the first [`prepare`](Self::prepare) for its rate.
    pub(crate) fn new() -> Self {
        PcmUpsampler {
            hz16: None,
            hz24: None,
            scratch: Box::new([0.0; MAX_PCM_FRAME]),
        }
    }

    /// Builds the resampler for `rate` unless it exists (the only allocation), and clears its
    /// history either way (a new stream).
    pub(crate) fn prepare(&mut self, rate: PcmRate) -> Result<(), ResampleError> {
        match rate {
            PcmRate::Hz16000 => match self.hz16.as_mut() {
                Some(r) => r.reset(),
                None => self.hz16 = Some(Box::new(Upsampler::new()?)),
            },
            PcmRate::Hz24000 => match self.hz24.as_mut() {
                Some(r) => r.reset(),
                None => self.hz24 = Some(Box::new(Upsampler24k::new()?)),
            },
        }
        Ok(())
    }

    /// Whether the resampler for `rate` is built.
    pub(crate) fn has(&self, rate: PcmRate) -> bool {
        match rate {
            PcmRate::Hz16000 => self.hz16.is_some(),
            PcmRate::Hz24000 => self.hz24.is_some(),
        }
    }

    /// Converts one frame (`None`: silence at `rate`, which flushes the resampler's last
    /// 5 ms) into `out`. Never allocates; fails if [`prepare`](Self::prepare) was not called
    /// for the rate.
    pub(crate) fn process(
        &mut self,
        rate: PcmRate,
        frame: Option<&PcmFrame>,
        out: &mut Frame48,
    ) -> Result<(), ResampleError> {
        let n = rate.samples_per_frame();
        let scratch = &mut self.scratch[..n];
        match frame {
            Some(f) => crate::resample::s16_to_f32(f.samples(), scratch)?,
            None => scratch.fill(0.0),
        }
        match rate {
            PcmRate::Hz16000 => {
                let r = self.hz16.as_mut().ok_or(NOT_PREPARED)?;
                r.process(narrow(&self.scratch)?, out)
            }
            PcmRate::Hz24000 => {
                let r = self.hz24.as_mut().ok_or(NOT_PREPARED)?;
                r.process(&self.scratch, out)
            }
        }
    }
}

/// 48 kHz → PCM at one rate (the send side's output).
#[derive(Debug)]
pub(crate) enum PcmDownsampler {
    Hz16(Box<Downsampler>),
    Hz24(Box<Downsampler24k>),
}

impl PcmDownsampler {
    pub(crate) fn new(rate: PcmRate) -> Result<Self, ResampleError> {
        Ok(match rate {
            PcmRate::Hz16000 => PcmDownsampler::Hz16(Box::new(Downsampler::new()?)),
            PcmRate::Hz24000 => PcmDownsampler::Hz24(Box::new(Downsampler24k::new()?)),
        })
    }

    pub(crate) fn rate(&self) -> PcmRate {
        match self {
            PcmDownsampler::Hz16(_) => PcmRate::Hz16000,
            PcmDownsampler::Hz24(_) => PcmRate::Hz24000,
        }
    }

    pub(crate) fn reset(&mut self) {
        match self {
            PcmDownsampler::Hz16(r) => r.reset(),
            PcmDownsampler::Hz24(r) => r.reset(),
        }
    }

    /// Converts one 48 kHz frame into `out` (whose rate must be this resampler's), using
    /// `scratch` for the `f32` samples. Never allocates.
    pub(crate) fn process(
        &mut self,
        frame: &Frame48,
        scratch: &mut [f32; MAX_PCM_FRAME],
        out: &mut PcmFrame,
    ) -> Result<(), ResampleError> {
        let n = match self {
            PcmDownsampler::Hz16(r) => {
                r.process(frame, narrow_mut(scratch)?)?;
                SAMPLES_PER_FRAME_16K
            }
            PcmDownsampler::Hz24(r) => {
                r.process(frame, scratch)?;
                SAMPLES_PER_FRAME_24K
            }
        };
        out.rate = self.rate();
        crate::resample::f32_to_s16(&scratch[..n], out.samples_mut())
    }
}

const NOT_PREPARED: ResampleError = ResampleError::Length {
    what: "PCM resampler (not prepared for this rate)",
    actual: 0,
    expected: 1,
};

/// The first 320 samples of a 480-sample buffer, as a 16 kHz frame.
fn narrow(buf: &[f32; MAX_PCM_FRAME]) -> Result<&[f32; SAMPLES_PER_FRAME_16K], ResampleError> {
    buf[..SAMPLES_PER_FRAME_16K]
        .try_into()
        .map_err(|_| ResampleError::Length {
            what: "16 kHz frame",
            actual: MAX_PCM_FRAME,
            expected: SAMPLES_PER_FRAME_16K,
        })
}

fn narrow_mut(
    buf: &mut [f32; MAX_PCM_FRAME],
) -> Result<&mut [f32; SAMPLES_PER_FRAME_16K], ResampleError> {
    (&mut buf[..SAMPLES_PER_FRAME_16K])
        .try_into()
        .map_err(|_| ResampleError::Length {
            what: "16 kHz frame",
            actual: MAX_PCM_FRAME,
            expected: SAMPLES_PER_FRAME_16K,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(rate: PcmRate, value: i16) -> PcmFrame {
        let n = rate.samples_per_frame();
        PcmFrame::new(rate, &vec![value; n]).unwrap()
    }

    fn step(ring: &mut PcmPlayout) -> Option<i16> {
        match ring.pop() {
            PlayoutStep::Frame(f) => Some(f.samples()[0]),
            PlayoutStep::Buffering | PlayoutStep::Underrun => None,
        }
    }

    #[test]
    fn lengths_follow_the_rate() {
        assert_eq!(PcmRate::Hz16000.samples_per_frame(), 320);
        assert_eq!(PcmRate::Hz24000.samples_per_frame(), 480);
        let err = PcmFrame::new(PcmRate::Hz16000, &[0; 480]).unwrap_err();
        assert_eq!(
            err,
            PcmLengthError {
                len: 480,
                expected: 320,
                hz: 16_000
            }
        );
        assert!(PcmFrame::new(PcmRate::Hz24000, &[]).is_err());
        assert_eq!(frame(PcmRate::Hz24000, 7).samples().len(), 480);
    }

    #[test]
    fn cushion_then_order_then_underrun_then_cushion_again() {
        let mut ring = PcmPlayout::new(2);
        for v in 1..=3 {
            ring.push(&frame(PcmRate::Hz16000, v));
        }
        let played: Vec<_> = (0..6).map(|_| step(&mut ring)).collect();
        assert_eq!(played, [None, None, Some(1), Some(2), Some(3), None]);
        assert_eq!(ring.stats().underruns, 1);
        ring.push(&frame(PcmRate::Hz16000, 4));
        let played: Vec<_> = (0..3).map(|_| step(&mut ring)).collect();
        assert_eq!(
            played,
            [None, None, Some(4)],
            "a new cushion after the underrun"
        );
        assert_eq!(ring.stats().played, 4);
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let mut ring = PcmPlayout::new(0);
        for v in 0..20 {
            ring.push(&frame(PcmRate::Hz16000, v));
        }
        assert_eq!(ring.len(), PCM_PLAYOUT_FRAMES);
        assert_eq!(ring.stats().overflow, 8);
        assert_eq!(step(&mut ring), Some(8));
        let js = ring.jitter_stats();
        assert_eq!((js.received, js.overflow, js.played), (20, 8, 1));
        assert_eq!(js.current_delay, FRAME_DURATION * 11);
    }

    #[test]
    fn a_new_rate_starts_over() {
        let mut ring = PcmPlayout::new(1);
        ring.push(&frame(PcmRate::Hz16000, 1));
        ring.push(&frame(PcmRate::Hz16000, 2));
        assert_eq!(ring.push(&frame(PcmRate::Hz24000, 3)), PcmPush::RateChanged);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.rate(), Some(PcmRate::Hz24000));
        assert_eq!(step(&mut ring), None);
        assert_eq!(step(&mut ring), Some(3));
        assert_eq!(ring.stats().resets, 1);
    }

    #[test]
    fn resamplers_need_preparing_and_keep_the_level() {
        let mut up = PcmUpsampler::new();
        let mut wide = crate::frame::SILENT_FRAME_48;
        let f = frame(PcmRate::Hz24000, 8000);
        assert!(up.process(PcmRate::Hz24000, Some(&f), &mut wide).is_err());
        up.prepare(PcmRate::Hz24000).unwrap();
        let mut down = PcmDownsampler::new(PcmRate::Hz24000).unwrap();
        let mut scratch = [0.0; MAX_PCM_FRAME];
        let mut out = PcmFrame::silent(PcmRate::Hz16000);
        for _ in 0..5 {
            up.process(PcmRate::Hz24000, Some(&f), &mut wide).unwrap();
            down.process(&wide, &mut scratch, &mut out).unwrap();
        }
        assert_eq!(out.rate(), PcmRate::Hz24000);
        // A constant comes through both resamplers unchanged once they are filled.
        assert!(out.samples().iter().all(|&s| (s - 8000).abs() < 80));
    }
}
