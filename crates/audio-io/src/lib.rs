//! Local audio for appmedia calls: record a call to WAV files, play WAV prompts into a call, and
//! connect a microphone and speakers through cpal (feature `devices`).
//!
//! Everything here talks to the call in plain 20 ms frames — mono `f32` at 48 kHz (the media
//! core's format, 960 samples) or mono `i16` at 16 kHz (the bot's, 320 samples) — so it works with
//! any source of frames. What runs on the audio thread (pushing a frame to a recording, pulling a
//! prompt frame, the device callbacks) never blocks, locks or allocates; files and devices are
//! handled on their own threads.
//!
//! ```
//! use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
//! use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
//!
//! let dir = std::env::temp_dir();
//! let (recorder, sink) = CallRecorder::start(RecordingConfig::new(&dir, "doc-example-call"))?;
//! let frame = [0.1f32; CORE_FRAME_SAMPLES]; // one 20 ms tick of the call
//! for tick in 0..50 {
//!     sink.push(tick, Track::Mixed, &frame).ok(); // on the audio thread: never blocks
//!     sink.push(tick, Track::Speaker(7), &frame).ok();
//! }
//! let status = recorder.finish(); // closes both files: one second each at 16 kHz
//! assert!(status.tracks.iter().all(|t| t.samples_written == 16_000));
//! # for t in &status.tracks { std::fs::remove_file(&t.path).ok(); }
//! # Ok::<(), appmedia_audio_io::record::RecordError>(())
//! ```
//!
//! # What is real-time safe
//!
//! Called once per 20 ms tick on the audio thread; none allocates, locks, logs or makes a
//! syscall (tests/no_alloc.rs counts allocations to prove the first part):
//!
//! | call | does |
//! |---|---|
//! | [`record::RecordingSink::push`] / [`push_s16`](record::RecordingSink::push_s16) | copies a frame into a bounded channel; full → counted drop |
//! | [`playback::PromptPlayer::next_frame`] / [`next_player_frame`](playback::PromptPlayer::next_player_frame) | copies from a decoded clip or a streamed prompt's ring (with an Ogg/Opus frame's packet, for passthrough) |
//! | `device::SpeakerFeed::push_frame` (feature `devices`) | resamples (rubato, preallocated) into the speakers' ring |
//! | `device::MicSource::pull_frame` (feature `devices`) | resamples out of the microphone's ring |
//!
//! The cpal callbacks touch only an rtrb ring and atomic counters. Everything else — opening
//! files and devices, [`record::CallRecorder::finish`], [`playback::PromptQueue::play_streamed`]
//! — runs on a control thread and may block.

pub mod clip;
#[cfg(feature = "devices")]
pub mod device;
pub mod format;
pub mod frame;
mod ogg_opus;
pub mod playback;
pub mod record;
pub mod resample;
pub mod stream;
