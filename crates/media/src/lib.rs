//! appmedia-media: the real-time audio core of a Graph calling bot that hosts its own media.
//!
//! Frames are 20 ms of mono `f32` at 48 kHz ([`frame::Frame48`]). Time is always passed in
//! (`now: Duration` from a caller-chosen epoch), so everything but the [`scheduler`] is
//! sans-IO: RTP ([`rtp`]), jitter buffer ([`jitter`]), Opus ([`codec`]), raw PCM streams
//! ([`pcm`], for Azure Communication Services audio streaming), [`mixer`],
//! [`resample`] and lock-free hand-offs ([`queue`]) meet in the per-call [`pipeline`].
//!
//! ```
//! use appmedia_media::frame::FRAME_DURATION;
//! use appmedia_media::pipeline::{CallPipeline, PipelineConfig};
//!
//! let mut call = CallPipeline::new(PipelineConfig::default())?;
//! let bot = call.bot_sender();
//! for k in 1..=3u32 {
//!     let now = FRAME_DURATION * k; // the caller owns the clock
//!     // call.push_rtp(packet, now) for each packet the transport received
//!     call.tick(now);
//!     bot.send_48k(call.bot_frame_48k())?; // the bot hears the call and answers
//!     let _to_send = call.outgoing_packet(); // RTP for the transport, if any
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod alloc_count;
pub mod codec;
pub mod cpu;
pub mod dtmf;
pub mod feedback;
pub mod frame;
pub mod jitter;
pub mod latency;
pub mod mixer;
pub mod pcm;
pub mod pipeline;
pub mod queue;
pub mod resample;
pub mod rtp;
pub mod scheduler;
pub mod synth;
