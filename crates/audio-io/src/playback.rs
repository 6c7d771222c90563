//! Playing WAV prompts into a call, like Graph's `playPrompt`.
//!
//! [`AudioClip::open`] reads a WAV file of any common rate, channel count and PCM/float sample
//! format (or an Ogg/Opus file, told apart by its content), down-mixes it to mono and resamples it (rubato) to the media core's 48 kHz — up front,
//! so that playing is only copying. Every kind of bad file is a typed [`OpenError`] at open time,
//! before the call starts.
//!
//! [`PromptPlayer`] runs on the audio thread and produces one 20 ms frame per tick from a queue
//! of prompts; [`PromptQueue`] is its handle on any other thread: queue a prompt (once or
//! looped), cancel one or all (Graph's `cancelMediaProcessing`), and read one completion event
//! per prompt. Commands and events travel on bounded lock-free channels, the queue is
//! preallocated, and a prompt's samples are shared (`Arc`), so the tick neither blocks nor
//! allocates.

use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::frame::{CORE_FRAME_SAMPLES, CORE_SAMPLE_RATE};
use crate::resample::{ResampleError, resample_clip};
use crate::stream::{FrameRead, StreamRead, StreamReader, StreamedClip};
use appmedia_media::codec::OpusPacket;
use appmedia_media::pipeline::PlayerFrame;

/// Why a WAV file cannot be used as a prompt.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a RIFF/WAVE file at all.
    #[error("{path} is not a WAV file ({reason})")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What was missing.
        reason: &'static str,
    },
    /// The file ends inside the WAV header.
    #[error("{path} is truncated: it ends inside the WAV header")]
    TruncatedHeader {
        /// The file.
        path: PathBuf,
    },
    /// The header promises more samples than the file holds.
    #[error("{path} is truncated: the header promises {expected} samples, the file holds {found}")]
    TruncatedData {
        /// The file.
        path: PathBuf,
        /// Samples (all channels) the header announces.
        expected: u64,
        /// Samples actually present.
        found: u64,
    },
    /// A WAV whose header is inconsistent.
    #[error("{path} is a malformed WAV file: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// hound's description.
        reason: &'static str,
    },
    /// A WAV in an encoding this crate does not decode (only integer PCM of 8–32 bits and 32-bit
    /// float are supported).
    #[error("{path} uses an unsupported WAV encoding: {encoding}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// The encoding, e.g. "format tag 0x0006 (A-law)".
        encoding: String,
    },
    /// The sample rate is zero or beyond what any audio file uses.
    #[error("{path} has an unsupported sample rate of {rate} Hz")]
    UnsupportedRate {
        /// The file.
        path: PathBuf,
        /// The rate in the header.
        rate: u32,
    },
    /// The file holds no audio.
    #[error("{path} holds no audio samples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Longer than [`MAX_CLIP_DURATION`], which is decoded into memory up front.
    #[error("{path} lasts {seconds:.0} s or more; prompts are limited to {} s", MAX_CLIP_DURATION.as_secs())]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its duration, or how much of it was decoded before decoding stopped.
        seconds: f64,
    },
    /// Bigger than [`MAX_CLIP_FILE_BYTES`]: refused before it is read.
    #[error(
        "{path} is {bytes} bytes; files of more than {} bytes are not loaded (stream them)",
        MAX_CLIP_FILE_BYTES
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Resampling to 48 kHz failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// Longest prompt decoded into memory: an hour is 691 MB of 48 kHz `f32`, so stop at 30 minutes
/// (345 MB) — far beyond any IVR prompt.
pub const MAX_CLIP_DURATION: Duration = Duration::from_secs(30 * 60);

/// The largest file [`AudioClip::open`] reads: 30 minutes of 96 kHz stereo 24-bit WAV, with
/// room to spare. Longer prompts are streamed (`PromptQueue::play_streamed`), not loaded.
pub const MAX_CLIP_FILE_BYTES: u64 = 1 << 30;

/// What the file was before conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFormat {
    /// Sample rate of the file.
    pub sample_rate: u32,
    /// Channels in the file (down-mixed to mono).
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// How the samples are coded.
    pub encoding: Encoding,
}

/// How a prompt file's samples are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Integer PCM WAV.
    PcmInt,
    /// IEEE float WAV (or samples given in memory).
    PcmFloat,
    /// Ogg/Opus.
    Opus,
}

/// A prompt decoded to mono 48 kHz `f32`, ready to play. Cloning shares the samples.
///
/// An Ogg/Opus clip whose packets are 20 ms mono frames also keeps those packets: it plays in
/// whole frames from the file's first decoded sample, each frame with its packet, so that a
/// call sending nothing else sends the packets as they are (Opus passthrough, see
/// `PipelineConfig::opus_passthrough` in appmedia-media). It then plays the encoder's
/// pre-skip (6.5 ms from opusenc, quiet) and the end of the last packet too: what every
/// decoder of the packets hears.
#[derive(Debug, Clone)]
pub struct AudioClip {
    /// For an Ogg/Opus clip, every decoded sample in whole 20 ms frames; `samples()` is the
    /// `trimmed` part.
    samples: Arc<[f32]>,
    trimmed: std::ops::Range<usize>,
    source: SourceFormat,
    packets: Option<Arc<crate::ogg_opus::FramePackets>>,
}

impl AudioClip {
    /// Opens and converts a WAV file.
    pub fn open(path: impl AsRef<Path>) -> Result<AudioClip, OpenError> {
        let path = path.as_ref();
        let io = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        // The size before the read: a huge file is refused without being loaded.
        let size = file.metadata().map_err(io)?.len();
        if size > MAX_CLIP_FILE_BYTES {
            return Err(OpenError::TooLarge {
                path: path.to_path_buf(),
                bytes: size,
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        if crate::ogg_opus::is_ogg(&bytes) {
            return Self::from_ogg_opus_bytes(&bytes, path);
        }
        Self::from_wav_bytes(&bytes, path)
    }

    /// Decodes an Ogg/Opus file already in memory; `name` is used in errors.
    pub fn from_ogg_opus_bytes(
        bytes: &[u8],
        name: impl AsRef<Path>,
    ) -> Result<AudioClip, OpenError> {
        let path = name.as_ref().to_path_buf();
        if bytes.len() as f64 > MAX_CLIP_DURATION.as_secs_f64() * 64_000.0 {
            // Far more bytes than 30 minutes of Opus at a generous 512 kb/s could need.
            return Err(OpenError::TooLong {
                path,
                seconds: f64::INFINITY,
            });
        }
        let budget = (MAX_CLIP_DURATION.as_secs() * u64::from(CORE_SAMPLE_RATE)) as usize;
        let decoded = crate::ogg_opus::decode(bytes, path.clone(), budget)?;
        let seconds = decoded.trimmed.len() as f64 / f64::from(CORE_SAMPLE_RATE);
        if seconds > MAX_CLIP_DURATION.as_secs_f64() {
            return Err(OpenError::TooLong { path, seconds });
        }
        Ok(AudioClip {
            samples: decoded.pcm.into(),
            trimmed: decoded.trimmed,
            source: SourceFormat {
                sample_rate: CORE_SAMPLE_RATE,
                channels: u16::from(decoded.channels),
                bits_per_sample: 0,
                encoding: Encoding::Opus,
            },
            packets: decoded.packets.map(Arc::new),
        })
    }

    /// Converts a WAV file already in memory; `name` is used in errors.
    pub fn from_wav_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<AudioClip, OpenError> {
        let path = name.as_ref().to_path_buf();
        let reader = match hound::WavReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return Err(header_error(e, bytes, path)),
        };
        let spec = reader.spec();
        if spec.sample_rate == 0 || spec.sample_rate > 768_000 {
            return Err(OpenError::UnsupportedRate {
                path,
                rate: spec.sample_rate,
            });
        }
        let expected = u64::from(reader.len());
        let channels = usize::from(spec.channels);
        let bytes_per_sample = usize::from(spec.bits_per_sample).div_ceil(8).max(1);
        let seconds = f64::from(reader.duration()) / f64::from(spec.sample_rate);
        // Only a file that really holds that much audio is "too long"; a header promising more
        // than the file holds is reported as truncated by the decoding below.
        if seconds > MAX_CLIP_DURATION.as_secs_f64()
            && expected.saturating_mul(bytes_per_sample as u64) <= bytes.len() as u64
        {
            return Err(OpenError::TooLong { path, seconds });
        }
        // Never trust the header for the allocation: a lying header on a small file must not
        // reserve gigabytes.
        let capacity = (expected as usize).min(bytes.len() / bytes_per_sample) / channels;
        let mut mono = Vec::with_capacity(capacity);
        let found = decode_mono(reader, spec, &mut mono).map_err(|e| match e {
            DecodeError::Eof(found) => OpenError::TruncatedData {
                path: path.clone(),
                expected,
                found,
            },
            DecodeError::Format(reason) => OpenError::Malformed {
                path: path.clone(),
                reason,
            },
        })?;
        debug_assert_eq!(found, expected);
        if mono.is_empty() {
            return Err(OpenError::Empty { path });
        }
        let samples = resample_clip(&mono, spec.sample_rate, CORE_SAMPLE_RATE)?;
        Ok(AudioClip {
            trimmed: 0..samples.len(),
            samples: samples.into(),
            packets: None,
            source: SourceFormat {
                sample_rate: spec.sample_rate,
                channels: spec.channels,
                bits_per_sample: spec.bits_per_sample,
                encoding: wav_encoding(spec),
            },
        })
    }

    /// A clip from mono samples at 48 kHz (a tone, synthesized speech); `None` when empty.
    pub fn from_samples(samples: Vec<f32>) -> Option<AudioClip> {
        if samples.is_empty() {
            return None;
        }
        Some(AudioClip {
            trimmed: 0..samples.len(),
            samples: samples.into(),
            packets: None,
            source: SourceFormat {
                sample_rate: CORE_SAMPLE_RATE,
                channels: 1,
                bits_per_sample: 32,
                encoding: Encoding::PcmFloat,
            },
        })
    }

    /// The mono 48 kHz samples (for Ogg/Opus: without the pre-skip and the end padding).
    pub fn samples(&self) -> &[f32] {
        &self.samples[self.trimmed.clone()]
    }

    /// Length of the clip.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.trimmed.len() as f64 / f64::from(CORE_SAMPLE_RATE))
    }

    /// Frames of an Ogg/Opus clip that carry their packet and can be sent as they are (0 for
    /// other clips, and for Ogg/Opus files that are stereo, have an output gain, or whose
    /// packets are not 20 ms).
    pub fn passthrough_frames(&self) -> usize {
        self.packets.as_ref().map_or(0, |p| p.count())
    }

    /// The file's original format.
    pub fn source_format(&self) -> &SourceFormat {
        &self.source
    }
}

pub(crate) fn wav_encoding(spec: hound::WavSpec) -> Encoding {
    match spec.sample_format {
        hound::SampleFormat::Float => Encoding::PcmFloat,
        hound::SampleFormat::Int => Encoding::PcmInt,
    }
}

enum DecodeError {
    /// The data ended early; the count of samples read.
    Eof(u64),
    Format(&'static str),
}

/// Decodes every sample, averaging the channels of each frame. Returns the samples read.
fn decode_mono(
    mut reader: hound::WavReader<&[u8]>,
    spec: hound::WavSpec,
    out: &mut Vec<f32>,
) -> Result<u64, DecodeError> {
    let channels = usize::from(spec.channels);
    let gain = 1.0 / channels as f32;
    let mut acc = 0.0f32;
    let mut in_frame = 0usize;
    let mut count = 0u64;
    let mut push = |s: f32| {
        acc += s;
        in_frame += 1;
        if in_frame == channels {
            out.push(acc * gain);
            acc = 0.0;
            in_frame = 0;
        }
    };
    let map_err = |e: hound::Error, count: u64| match e {
        hound::Error::IoError(_) => DecodeError::Eof(count),
        hound::Error::FormatError(r) => DecodeError::Format(r),
        _ => DecodeError::Format("sample does not match the header's format"),
    };
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.samples::<f32>() {
                let s = s.map_err(|e| map_err(e, count))?;
                // NaN or infinity in a float WAV would poison the mix; treat as silence.
                push(if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                });
                count += 1;
            }
        }
        hound::SampleFormat::Int => {
            // hound takes the valid-bits field of WAVE_FORMAT_EXTENSIBLE as is: 0 or 200
            // would underflow or overflow the shift.
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(DecodeError::Format(
                    "integer samples must have 1 to 32 bits",
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for s in reader.samples::<i32>() {
                let s = s.map_err(|e| map_err(e, count))?;
                push(s as f32 * scale);
                count += 1;
            }
        }
    }
    Ok(count)
}

pub(crate) fn header_error(e: hound::Error, bytes: &[u8], path: PathBuf) -> OpenError {
    match e {
        hound::Error::IoError(_) => {
            // The header ran out. A file that starts like a WAV (as far as it goes) was cut
            // short; anything else is not a WAV.
            let riff_wave =
                bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE";
            let riff_prefix = !bytes.is_empty()
                && bytes.len() < 12
                && b"RIFF".starts_with(&bytes[..bytes.len().min(4)]);
            if riff_wave || riff_prefix {
                OpenError::TruncatedHeader { path }
            } else {
                OpenError::NotWav {
                    path,
                    reason: "no RIFF/WAVE header",
                }
            }
        }
        hound::Error::FormatError(reason @ ("no RIFF tag found" | "no WAVE tag found")) => {
            OpenError::NotWav { path, reason }
        }
        hound::Error::FormatError(reason) => OpenError::Malformed { path, reason },
        hound::Error::Unsupported => OpenError::UnsupportedFormat {
            path,
            encoding: describe_format_tag(bytes),
        },
        other => OpenError::UnsupportedFormat {
            path,
            encoding: other.to_string(),
        },
    }
}

/// Names the encoding of a WAV hound refused, from its `fmt ` chunk.
fn describe_format_tag(bytes: &[u8]) -> String {
    let mut pos = 12usize;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        if id == b"fmt " && pos + 10 <= bytes.len() {
            let tag = u16::from_le_bytes([bytes[pos + 8], bytes[pos + 9]]);
            let name = match tag {
                0x0002 => "Microsoft ADPCM",
                0x0006 => "A-law",
                0x0007 => "µ-law",
                0x0011 => "IMA ADPCM",
                0x0031 => "GSM 6.10",
                0x0050 => "MPEG",
                0x0055 => "MP3",
                0xFFFE => "extensible, unsupported sub-format",
                _ => "unknown",
            };
            return format!("format tag 0x{tag:04X} ({name})");
        }
        pos = pos.saturating_add(8).saturating_add(len + (len & 1));
    }
    "unknown encoding".to_string()
}

/// Identifies one queued prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptId(pub u64);

/// Play a prompt once, or loop it until it is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayMode {
    /// Play once, then the next prompt.
    Once,
    /// Repeat until cancelled (hold music).
    Loop,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptOutcome {
    /// Played to the end.
    Completed,
    /// Cancelled before the end (by id or by cancel-all).
    Cancelled,
    /// Not queued: the player's queue was full.
    Rejected,
    /// A streamed prompt whose file could not be read to the end.
    Failed,
}

/// One prompt's completion, like Graph's `playPromptOperation` finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptEvent {
    /// The prompt.
    pub id: PromptId,
    /// How it ended.
    pub outcome: PromptOutcome,
}

/// Why [`PromptQueue::play`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    /// The decoder thread of a streamed prompt could not start.
    #[error("cannot start streaming the prompt: {0}")]
    StreamStart(String),
    /// Too many commands waiting for the next tick.
    #[error("prompt command queue full")]
    CommandQueueFull,
    /// The player (the call) is gone.
    #[error("the call's prompt player has ended")]
    PlayerGone,
}

enum Command {
    Play {
        id: PromptId,
        source: Source,
        mode: PlayMode,
    },
    Cancel(PromptId),
    CancelAll,
}

/// An event, plus the prompt that finished so that its memory (and a stream's ring) is released
/// on the thread reading events rather than on the audio thread.
struct EventMsg {
    event: PromptEvent,
    _source: Option<Source>,
}

/// Where a prompt's samples come from.
enum Source {
    /// Decoded up front; `pos` is the next sample.
    Clip { clip: AudioClip, pos: usize },
    /// An Ogg/Opus clip with packets, played in whole frames; `frame` is the next one.
    Frames { clip: AudioClip, frame: usize },
    /// Streamed by a decoder thread (which does the looping).
    Stream(StreamReader),
}

struct Active {
    id: PromptId,
    source: Source,
    mode: PlayMode,
}

/// Player counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayerCounters {
    /// Frames that carried prompt audio.
    pub frames_played: u64,
    /// Events lost because nobody read them and the event queue was full.
    pub events_dropped: u64,
    /// Frames that came up short because a streamed prompt's decoder was behind.
    pub stream_underruns: u64,
    /// Frames handed out with their Opus packet (an Ogg/Opus prompt that can pass through).
    pub packet_frames: u64,
}

/// The audio-thread end: one frame per tick.
pub struct PromptPlayer {
    commands: Receiver<Command>,
    events: Sender<EventMsg>,
    queue: VecDeque<Active>,
    counters: PlayerCounters,
}

/// The control end (cloneable, any thread).
#[derive(Clone)]
pub struct PromptQueue {
    commands: Sender<Command>,
    events: Receiver<EventMsg>,
    next_id: Arc<AtomicU64>,
}

impl PromptPlayer {
    /// A player holding up to `capacity` prompts (queued and playing).
    pub fn new(capacity: usize) -> (PromptPlayer, PromptQueue) {
        let capacity = capacity.max(1);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(capacity);
        // Room for an event per queued prompt plus a full queue's worth of rejections.
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(capacity * 2 + 1);
        (
            PromptPlayer {
                commands: cmd_rx,
                events: ev_tx,
                queue: VecDeque::with_capacity(capacity),
                counters: PlayerCounters::default(),
            },
            PromptQueue {
                commands: cmd_tx,
                events: ev_rx,
                next_id: Arc::new(AtomicU64::new(1)),
            },
        )
    }

    /// Writes the next 20 ms (960 samples at 48 kHz) into `out`: prompt audio, then silence when
    /// the queue runs dry. Returns whether any prompt audio was written. Prompts follow each
    /// other without a gap, even inside one frame, except that an Ogg/Opus prompt whose
    /// packets can pass through starts on a frame's first sample (after a prompt that ended
    /// inside a frame, the rest of that frame is silence). The packets are left out: see
    /// [`next_player_frame`](Self::next_player_frame).
    pub fn next_frame(&mut self, out: &mut [f32; CORE_FRAME_SAMPLES]) -> bool {
        let mut packet = None;
        self.next_into(out, &mut packet)
    }

    /// Like [`next_frame`](Self::next_frame), and when the frame is exactly the decoding of one
    /// Opus packet of the prompt, `out.packet` is that packet (else `None`): what a call's
    /// player queue takes ([`PlayerSender::send_frame`](appmedia_media::pipeline::PlayerSender::send_frame)).
    pub fn next_player_frame(&mut self, out: &mut PlayerFrame) -> bool {
        self.next_into(&mut out.pcm, &mut out.packet)
    }

    fn next_into(
        &mut self,
        out: &mut [f32; CORE_FRAME_SAMPLES],
        packet: &mut Option<OpusPacket>,
    ) -> bool {
        self.apply_commands();
        *packet = None;
        let mut filled = 0;
        while filled < out.len() {
            let Some(active) = self.queue.front_mut() else {
                break;
            };
            let framed = match &active.source {
                Source::Frames { .. } => true,
                Source::Stream(reader) => reader.is_framed(),
                Source::Clip { .. } => false,
            };
            if framed && filled > 0 {
                // Frames start on a frame's first sample.
                break;
            }
            let ended = match &mut active.source {
                Source::Frames { clip, frame } => {
                    let all = &clip.samples;
                    let at = *frame * CORE_FRAME_SAMPLES;
                    out.copy_from_slice(&all[at..at + CORE_FRAME_SAMPLES]);
                    *packet = clip
                        .packets
                        .as_ref()
                        .and_then(|p| p.get(*frame))
                        .and_then(|b| OpusPacket::new(b).ok());
                    filled = CORE_FRAME_SAMPLES;
                    *frame += 1;
                    match (*frame * CORE_FRAME_SAMPLES >= all.len(), active.mode) {
                        (true, PlayMode::Loop) => {
                            *frame = 0;
                            None
                        }
                        (true, PlayMode::Once) => Some(PromptOutcome::Completed),
                        (false, _) => None,
                    }
                }
                Source::Stream(reader) if reader.is_framed() => {
                    let mut frame = PlayerFrame::SILENT;
                    match reader.read_frame(&mut frame) {
                        FrameRead::Frame => {
                            out.copy_from_slice(&frame.pcm);
                            *packet = frame.packet;
                            filled = CORE_FRAME_SAMPLES;
                            None
                        }
                        FrameRead::Behind => {
                            self.counters.stream_underruns += 1;
                            break;
                        }
                        FrameRead::Ended { failed } => Some(if failed {
                            PromptOutcome::Failed
                        } else {
                            PromptOutcome::Completed
                        }),
                    }
                }
                Source::Clip { clip, pos } => {
                    let samples = clip.samples();
                    let n = (samples.len() - *pos).min(out.len() - filled);
                    out[filled..filled + n].copy_from_slice(&samples[*pos..*pos + n]);
                    filled += n;
                    *pos += n;
                    match (*pos == samples.len(), active.mode) {
                        (true, PlayMode::Loop) => {
                            *pos = 0;
                            None
                        }
                        (true, PlayMode::Once) => Some(PromptOutcome::Completed),
                        (false, _) => None,
                    }
                }
                Source::Stream(reader) => match reader.read(&mut out[filled..]) {
                    StreamRead::More(n) => {
                        filled += n;
                        if filled < out.len() {
                            // The decoder is behind: the rest of this frame is silence and the
                            // prompt resumes next tick (the queue does not skip ahead).
                            self.counters.stream_underruns += 1;
                            break;
                        }
                        None
                    }
                    StreamRead::Ended { n, failed } => {
                        filled += n;
                        Some(if failed {
                            PromptOutcome::Failed
                        } else {
                            PromptOutcome::Completed
                        })
                    }
                },
            };
            if let Some(outcome) = ended
                && let Some(done) = self.queue.pop_front()
            {
                self.emit(done, outcome);
            }
        }
        out[filled..].fill(0.0);
        if filled > 0 {
            self.counters.frames_played += 1;
        }
        if packet.is_some() {
            self.counters.packet_frames += 1;
        }
        filled > 0
    }

    /// Whether a prompt is playing or queued.
    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Counters.
    pub fn counters(&self) -> PlayerCounters {
        self.counters
    }

    fn apply_commands(&mut self) {
        // Bounded by the channel's capacity, so the tick's work is bounded too.
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Play { id, source, mode } => {
                    if self.queue.len() < self.queue.capacity() {
                        self.queue.push_back(Active { id, source, mode });
                    } else {
                        self.send_event(
                            PromptEvent {
                                id,
                                outcome: PromptOutcome::Rejected,
                            },
                            Some(source),
                        );
                    }
                }
                Command::Cancel(id) => {
                    if let Some(i) = self.queue.iter().position(|a| a.id == id)
                        && let Some(a) = self.queue.remove(i)
                    {
                        self.emit(a, PromptOutcome::Cancelled);
                    }
                }
                Command::CancelAll => {
                    while let Some(a) = self.queue.pop_front() {
                        self.emit(a, PromptOutcome::Cancelled);
                    }
                }
            }
        }
    }

    fn emit(&mut self, done: Active, outcome: PromptOutcome) {
        self.send_event(
            PromptEvent {
                id: done.id,
                outcome,
            },
            Some(done.source),
        );
    }

    fn send_event(&mut self, event: PromptEvent, source: Option<Source>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.events.try_send(EventMsg {
                event,
                _source: source,
            })
        {
            self.counters.events_dropped += 1;
        }
    }
}

impl PromptQueue {
    /// Queues a prompt behind the ones already queued; its event comes when it ends.
    pub fn play(&self, clip: &AudioClip, mode: PlayMode) -> Result<PromptId, PlayError> {
        let source = if clip.packets.is_some() {
            Source::Frames {
                clip: clip.clone(),
                frame: 0,
            }
        } else {
            Source::Clip {
                clip: clip.clone(),
                pos: 0,
            }
        };
        self.queue_source(source, mode)
    }

    /// Queues a prompt streamed from disk: starts its decoder thread (and waits for it to
    /// buffer a few frames) on the calling thread, never on the audio thread.
    pub fn play_streamed(
        &self,
        clip: &StreamedClip,
        mode: PlayMode,
    ) -> Result<PromptId, PlayError> {
        let reader = clip
            .start(mode == PlayMode::Loop)
            .map_err(|e| PlayError::StreamStart(e.to_string()))?;
        self.queue_source(Source::Stream(reader), mode)
    }

    fn queue_source(&self, source: Source, mode: PlayMode) -> Result<PromptId, PlayError> {
        let id = PromptId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let cmd = Command::Play { id, source, mode };
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(id),
            Err(TrySendError::Full(_)) => Err(PlayError::CommandQueueFull),
            Err(TrySendError::Disconnected(_)) => Err(PlayError::PlayerGone),
        }
    }

    /// Cancels one prompt (playing or queued); it ends with [`PromptOutcome::Cancelled`].
    pub fn cancel(&self, id: PromptId) -> Result<(), PlayError> {
        self.send(Command::Cancel(id))
    }

    /// Cancels every prompt, like Graph's `cancelMediaProcessing`.
    pub fn cancel_all(&self) -> Result<(), PlayError> {
        self.send(Command::CancelAll)
    }

    /// The next completion event, if one is waiting.
    pub fn try_event(&self) -> Option<PromptEvent> {
        self.events.try_recv().ok().map(|m| m.event)
    }

    /// Waits up to `timeout` for the next completion event.
    pub fn recv_event_timeout(&self, timeout: Duration) -> Option<PromptEvent> {
        self.events.recv_timeout(timeout).ok().map(|m| m.event)
    }

    fn send(&self, cmd: Command) -> Result<(), PlayError> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PlayError::CommandQueueFull),
            Err(TrySendError::Disconnected(_)) => Err(PlayError::PlayerGone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize) -> AudioClip {
        AudioClip::from_samples((0..len).map(|i| i as f32 / len as f32).collect()).unwrap()
    }

    #[test]
    fn prompts_play_back_to_back_and_report_completion() {
        let (mut player, queue) = PromptPlayer::new(4);
        let a = queue.play(&ramp(1500), PlayMode::Once).unwrap();
        let b = queue.play(&ramp(600), PlayMode::Once).unwrap();
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        assert!(player.next_frame(&mut frame));
        assert_eq!(frame[959], 959.0 / 1500.0);
        assert_eq!(queue.try_event(), None);
        assert!(player.next_frame(&mut frame));
        // Clip a ends at sample 540 of this frame; clip b starts right after, no gap.
        assert_eq!(frame[539], 1499.0 / 1500.0);
        assert_eq!(frame[540], 0.0);
        assert_eq!(frame[541], 1.0 / 600.0);
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: a,
                outcome: PromptOutcome::Completed
            })
        );
        assert!(player.next_frame(&mut frame)); // b's last 180 samples
        assert_eq!(frame[179], 599.0 / 600.0);
        assert!(frame[180..].iter().all(|s| *s == 0.0));
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: b,
                outcome: PromptOutcome::Completed
            })
        );
        assert!(!player.next_frame(&mut frame));
        assert!(frame.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn a_looped_prompt_repeats_until_cancelled() {
        let (mut player, queue) = PromptPlayer::new(4);
        let id = queue.play(&ramp(100), PlayMode::Loop).unwrap();
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        for k in 0..10 {
            assert!(player.next_frame(&mut frame));
            for (i, s) in frame.iter().enumerate() {
                assert_eq!(*s, ((k * CORE_FRAME_SAMPLES + i) % 100) as f32 / 100.0);
            }
        }
        assert_eq!(queue.try_event(), None);
        queue.cancel(id).unwrap();
        assert!(!player.next_frame(&mut frame));
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id,
                outcome: PromptOutcome::Cancelled
            })
        );
    }

    #[test]
    fn cancel_all_ends_every_prompt_and_a_full_queue_rejects() {
        let (mut player, queue) = PromptPlayer::new(2);
        let ids: Vec<_> = (0..2)
            .map(|_| queue.play(&ramp(5000), PlayMode::Once).unwrap())
            .collect();
        // The command channel holds 2 too: the third waits for the next tick.
        assert_eq!(
            queue.play(&ramp(10), PlayMode::Once),
            Err(PlayError::CommandQueueFull)
        );
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        player.next_frame(&mut frame);
        let third = queue.play(&ramp(10), PlayMode::Once).unwrap();
        player.next_frame(&mut frame);
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: third,
                outcome: PromptOutcome::Rejected
            })
        );
        queue.cancel_all().unwrap();
        player.next_frame(&mut frame);
        for id in ids {
            assert_eq!(
                queue.try_event(),
                Some(PromptEvent {
                    id,
                    outcome: PromptOutcome::Cancelled
                })
            );
        }
        assert!(!player.is_playing());
        drop(player);
        assert_eq!(
            queue.play(&ramp(10), PlayMode::Once),
            Err(PlayError::PlayerGone)
        );
    }

    #[test]
    fn format_tags_are_named() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x12\0\0\0\x06\0\x01\0".to_vec();
        wav.extend_from_slice(&[0; 16]);
        assert_eq!(describe_format_tag(&wav), "format tag 0x0006 (A-law)");
        assert_eq!(describe_format_tag(b"RIFF"), "unknown encoding");
    }
}
