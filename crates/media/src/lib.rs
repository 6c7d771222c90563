//! appmedia-media: the real-time audio core of a Graph calling bot that hosts its own media.
//!
//! Frames are 20 ms of mono `f32` at 48 kHz ([`frame::Frame48`]). Time is always passed in
//! (`now: Duration` from a caller-chosen epoch), so everything but the scheduler is sans-IO.

pub mod codec;
pub mod frame;
pub mod jitter;
pub mod latency;
pub mod mixer;
pub mod pipeline;
pub mod queue;
pub mod resample;
pub mod rtp;
pub mod scheduler;
pub mod synth;
