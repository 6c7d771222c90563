//! The sans-IO per-call audio pipeline, driven by a 20 ms tick.
//!
//! ```text
//! push_rtp(bytes, now) ──► per-SSRC JitterBuffer ──► OpusDecoder (decode / FEC / PLC)
//!                                                        │
//!        bot_frame_48k / bot_frame_16k  ◄── mixer ◄──────┤  + unmixed frame per active speaker,
//!                                                        │    levels, active/dominant speaker
//! BotSender (send queue) ──► + players ──► mix ──► OpusEncoder ──► RTP ──► outgoing_packet()
//! ```
//!
//! Opus passthrough: a player frame that carries the Opus packet it decodes from
//! ([`PlayerFrame`], from an Ogg/Opus prompt) and is the only audio of its tick goes out as
//! that packet, re-timestamped, without encoding ([`PipelineConfig::opus_passthrough`]).
//!
//! Raw PCM (Azure Communication Services audio streaming, [`crate::pcm`]) enters and leaves the
//! same path: [`PcmInbox`] frames go to per-key remote streams that play out of a small ring
//! ([`PcmPlayout`]) and are upsampled to 48 kHz where RTP streams are
//! decoded, so mixing, levels, unmixed frames and speakers do not care where audio came from;
//! with [`SendOutput::Pcm`] the send mix leaves as PCM frames ([`CallPipeline::pcm_outbox`])
//! instead of Opus in RTP.
//!
//! The caller owns time and I/O: it feeds packets ([`CallPipeline::push_rtp`]) and calls
//! [`CallPipeline::tick`] every 20 ms with `now`; after a tick it reads the frames for the bot,
//! the outgoing packet ([`CallPipeline::outgoing_packet`]), events
//! ([`CallPipeline::poll_event`]) and stats. The bot and players feed audio through bounded
//! lock-free queues ([`BotSender`], [`PlayerSender`]) from any thread.
//!
//! ```
//! use std::time::Duration;
//! use appmedia_media::pipeline::{CallPipeline, PipelineConfig};
//!
//! let mut alice = CallPipeline::new(PipelineConfig { local_ssrc: 1, ..Default::default() })?;
//! let mut bob = CallPipeline::new(PipelineConfig { local_ssrc: 2, ..Default::default() })?;
//! let bot = alice.bot_sender();
//! for tick in 0..10u32 {
//!     let now = Duration::from_millis(20) * tick; // a fake clock: no sleeping
//!     bot.send_pcm16k(&[0x10; 640])?; // Graph's Pcm16K: 640 bytes per 20 ms
//!     alice.tick(now);
//!     if let Some(packet) = alice.outgoing_packet() {
//!         bob.push_rtp(bytes::Bytes::copy_from_slice(packet), now); // the "network"
//!     }
//!     bob.tick(now);
//!     let _for_the_bot: Option<&[u8; 640]> = bob.bot_frame_16k();
//! }
//! assert!(bob.stats().ticks == 10 && alice.stats().packets_sent > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Real-time contract: once every remote stream has been seen, `push_rtp`, `push_pcm`, the
//! inboxes and `tick` allocate nothing (buffers, decoders and queues are preallocated; a stream
//! slot freed by a departed participant is reused). Adding a stream the first time (for a
//! slot: the first RTP stream it carries, which builds its decoder, and the first PCM stream
//! at each rate, which builds its ring and resampler), adding a player, taking the first
//! [`PcmInbox`] and construction allocate.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::codec::{
    CodecError, EncodedFrame, EncoderConfig, FecOutcome, OpusDecoder, OpusEncoder, OpusPacket,
};
use crate::dtmf::{DtmfDetector, DtmfSender, DtmfStats, SendStep, Tone, ToneReceived, ToneRequest};
use crate::feedback::{AdaptiveFec, LossReports};
use crate::frame::{
    BYTES_PER_FRAME_16K_S16, Frame16, Frame16S16, Frame48, SAMPLES_PER_FRAME_16K,
    SAMPLES_PER_FRAME_48K, SILENT_FRAME_48, level_dbov,
};
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::mixer::{Mixer, MixerError, SourceId};
use crate::pcm::{
    MAX_PCM_FRAME, PcmDownsampler, PcmFrame, PcmFrameOut, PcmLengthError, PcmPlayout, PcmPush,
    PcmRate, PcmUpsampler, PlayoutStep,
};
use crate::queue::{self, Consumer, Producer, Push, QueueStats};
use crate::resample::{Downsampler, ResampleError, Upsampler, f32_to_s16le_bytes, s16_to_f32};
use crate::rtp::{
    AudioLevel, HeaderExtension, RtpErrorCounters, RtpHeader, RtpPacket, RtpPacketSpec,
};

/// The codec this pipeline speaks, as SDP names it (RFC 7587).
pub const CODEC_NAME: &str = "opus/48000/2";
/// Graph's "no dominant speaker" value for `DominantSpeakerChanged`.
pub const NO_DOMINANT_SPEAKER: u32 = 0xFFFF_FFFF;
/// Room for one outgoing packet: header, CSRCs, an extension and the largest Opus frame.
const MAX_RTP_PACKET: usize = 1500;
/// Pending events kept between polls; older ones are dropped (and counted) beyond this.
const EVENT_CAPACITY: usize = 64;

/// PCM format the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotAudioFormat {
    /// Mono s16 little-endian 16 kHz, 640 bytes per 20 ms: what Graph media bots use.
    Pcm16k,
    /// Mono f32 48 kHz, 960 samples per 20 ms: no resampling.
    Pcm48k,
}

/// What the send side produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SendOutput {
    /// Opus in RTP ([`CallPipeline::outgoing_packet`], [`CallPipeline::packet_outbox`]).
    #[default]
    Rtp,
    /// Mono s16 PCM frames at this rate ([`CallPipeline::outgoing_pcm`],
    /// [`CallPipeline::pcm_outbox`]), only while there is audio to send: no Opus encoder is
    /// built, no RTP or DTMF is sent.
    Pcm(PcmRate),
}

/// Settings of one call's pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineConfig {
    /// SSRC of the stream this side sends.
    pub local_ssrc: u32,
    /// Dynamic payload type negotiated for Opus.
    pub payload_type: u8,
    /// First sequence number and timestamp sent (RFC 3550 wants them random; the caller
    /// picks them so the pipeline stays deterministic).
    pub initial_sequence_number: u16,
    /// First RTP timestamp sent.
    pub initial_timestamp: u32,
    /// RFC 6464 audio level extension id, when negotiated (sent and read).
    pub audio_level_ext_id: Option<u8>,
    /// Dynamic payload type negotiated for RFC 4733 `telephone-event/48000` (DTMF), or
    /// `None` when it was not: its packets are then counted as an unknown payload type and
    /// tones cannot be sent.
    pub telephone_event_payload_type: Option<u8>,
    /// The encoder of what the pipeline sends.
    pub encoder: EncoderConfig,
    /// Opus passthrough: on a tick where the only audio to send is one player's frame that
    /// carries its Opus packet ([`PlayerFrame::packet`], e.g. an Ogg/Opus prompt), that packet
    /// goes out as it is, re-timestamped, instead of being decoded, mixed and encoded. The
    /// packet's bitrate, FEC and bandwidth are the file's, not [`Self::encoder`]'s: turn it off
    /// when the far end negotiated less than the files carry.
    pub opus_passthrough: bool,
    /// The jitter buffer of each remote stream.
    pub jitter: JitterConfig,
    /// Decode lost frames from the next packet's in-band FEC (SDP `useinbandfec`).
    pub use_inband_fec: bool,
    /// The PCM format the bot reads and writes.
    pub bot_format: BotAudioFormat,
    /// Remote streams decoded at once. With 1, a new SSRC replaces the stream (a reset).
    pub max_remote_streams: usize,
    /// Unmixed frames handed to the bot per tick (Graph gives the top four speakers).
    pub max_unmixed: usize,
    /// Player sources (prompts, tones) mixed into what the bot sends.
    pub max_players: usize,
    /// Packets the network side may queue between ticks ([`RtpInbox`]); a fuller queue
    /// drops its oldest packet.
    pub inbound_queue_packets: usize,
    /// PCM frames the network side may queue between ticks ([`PcmInbox`]); a fuller queue
    /// drops its oldest frame. The queue (about 1 KiB per frame) is made when the first
    /// [`PcmInbox`] is taken, so RTP calls do not pay for it.
    pub pcm_inbound_queue_frames: usize,
    /// Ticks a PCM stream's first frame waits before the stream plays (and again after it ran
    /// dry): the cushion that absorbs TCP's bunching of frames, at the cost of this much
    /// delay. At most [`PCM_PLAYOUT_FRAMES`](crate::pcm::PCM_PLAYOUT_FRAMES) − 1.
    pub pcm_prebuffer_frames: usize,
    /// What the send side produces: RTP (default) or PCM.
    pub send_output: SendOutput,
    /// Frames the bot's send queue holds; a fuller queue drops its oldest frame.
    pub send_queue_frames: usize,
    /// Ticks the bot's first frame waits before sending starts (and restarts after the bot
    /// ran dry): a fixed cushion that keeps a bot with uneven timing or bursts from sounding
    /// choppy, at the cost of this much delay.
    pub send_prebuffer_frames: usize,
    /// A stream that sends nothing for this long is removed.
    pub stream_timeout: Duration,
    /// A frame louder than this (dBov) is speech for active-speaker detection.
    pub speech_threshold_dbov: f32,
    /// Ticks a speaker stays active after its last loud frame.
    pub active_hangover_ticks: u32,
    /// Ticks another speaker must be loudest before the dominant speaker changes.
    pub dominant_hold_ticks: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            local_ssrc: 0x0A0B_0C0D,
            payload_type: 111,
            initial_sequence_number: 0,
            initial_timestamp: 0,
            audio_level_ext_id: Some(1),
            telephone_event_payload_type: Some(101),
            encoder: EncoderConfig::default(),
            opus_passthrough: true,
            jitter: JitterConfig::default(),
            use_inband_fec: true,
            bot_format: BotAudioFormat::Pcm16k,
            max_remote_streams: 4,
            max_unmixed: 4,
            max_players: 2,
            inbound_queue_packets: 64,
            pcm_inbound_queue_frames: 16,
            pcm_prebuffer_frames: 2,
            send_output: SendOutput::Rtp,
            send_queue_frames: 6,
            send_prebuffer_frames: 2,
            stream_timeout: Duration::from_secs(5),
            speech_threshold_dbov: -50.0,
            active_hangover_ticks: 15,
            dominant_hold_ticks: 10,
        }
    }
}

/// Why the pipeline could not be built or an operation was refused.
#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    /// Building or running the codec failed.
    Codec(#[from] CodecError),
    #[error(transparent)]
    /// Building a resampler failed.
    Resample(#[from] ResampleError),
    #[error(transparent)]
    /// The mixer refused its settings.
    Mixer(#[from] MixerError),
    #[error("{name} = {value} is out of range")]
    /// A setting out of range.
    BadConfig {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: usize,
    },
    #[error("all {capacity} player slots are in use")]
    /// Every player slot is in use.
    PlayersFull {
        /// The slots there are.
        capacity: usize,
    },
    #[error("no telephone-event payload type was negotiated: DTMF tones cannot be sent")]
    /// A tone to send, but no telephone-event payload type was negotiated.
    NoTelephoneEvent,
    #[error("the send side produces {output:?}, not what this needs")]
    /// An output of the other [`SendOutput`] was asked for (a PCM outbox of an RTP pipeline,
    /// DTMF tones of a PCM one).
    WrongSendOutput {
        /// The pipeline's send output.
        output: SendOutput,
    },
}

/// Why a frame or packet was refused by a hand-off queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HandOffError {
    #[error("bot frame of {len} bytes; 16 kHz s16 frames have 640")]
    /// A 16 kHz frame that is not 640 bytes.
    BadLength {
        /// The bytes given.
        len: usize,
    },
    #[error(transparent)]
    /// A PCM frame that is not 20 ms at its rate.
    BadPcmLength(#[from] PcmLengthError),
    #[error("the call's pipeline is gone")]
    /// The pipeline was dropped.
    Disconnected,
}

/// One 20 ms frame from the bot, in either format.
// Inline on purpose: the send queue's slots are preallocated, while boxing the large variant
// would allocate for every frame the bot sends.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum BotFrame {
    /// 20 ms of 16 kHz s16 mono.
    Pcm16k(Frame16S16),
    /// 20 ms of 48 kHz f32 mono.
    Pcm48k(Frame48),
}

/// Result of queuing a bot frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued for the next ticks.
    Queued,
    /// The queue was full: its oldest frame was dropped (the bot is ahead of real time).
    DroppedOldest,
}

/// The bot's handle for sending audio into the call; usable from any thread, never blocks.
#[derive(Debug, Clone)]
pub struct BotSender {
    tx: Producer<BotFrame>,
}

impl BotSender {
    fn push(&self, frame: BotFrame) -> Result<SendOutcome, HandOffError> {
        match self.tx.push(frame) {
            Push::Queued => Ok(SendOutcome::Queued),
            Push::QueuedEvicting(_) | Push::Rejected(_) => Ok(SendOutcome::DroppedOldest),
            Push::Disconnected(_) => Err(HandOffError::Disconnected),
        }
    }

    /// Queues 640 bytes of s16 little-endian 16 kHz mono PCM (Graph's `Pcm16K` buffer).
    pub fn send_pcm16k(&self, bytes: &[u8]) -> Result<SendOutcome, HandOffError> {
        if bytes.len() != BYTES_PER_FRAME_16K_S16 {
            return Err(HandOffError::BadLength { len: bytes.len() });
        }
        let mut samples = [0i16; SAMPLES_PER_FRAME_16K];
        for (s, b) in samples.iter_mut().zip(bytes.chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        self.push(BotFrame::Pcm16k(samples))
    }

    /// Queues 320 s16 samples at 16 kHz.
    pub fn send_pcm16k_samples(&self, samples: &Frame16S16) -> Result<SendOutcome, HandOffError> {
        self.push(BotFrame::Pcm16k(*samples))
    }

    /// Queues 960 f32 samples at 48 kHz.
    pub fn send_48k(&self, frame: &Frame48) -> Result<SendOutcome, HandOffError> {
        self.push(BotFrame::Pcm48k(*frame))
    }

    /// Frames waiting to be sent.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// A call's network transport run by the call's own tick (see
/// [`CallPipeline::drive_transport`]): a sans-IO session on the media workers, with no task,
/// thread or timer of its own. Both calls must return promptly; they run on a real-time thread.
pub trait TickTransport: Send + 'static {
    /// Start of the tick, before the pipeline reads its inbox.
    fn before_tick(&mut self, now: Duration);
    /// End of the tick, after the pipeline has queued its outgoing packets.
    fn after_tick(&mut self, now: Duration);
}

/// The network side's handle (e.g. the transport's socket task): queues received RTP packets
/// with their arrival time; the next tick takes them. Usable from any thread, never blocks.
#[derive(Debug, Clone)]
pub struct RtpInbox {
    tx: Producer<(Bytes, Duration)>,
}

impl RtpInbox {
    /// Queues one packet (after SRTP) that arrived at `arrival` (same epoch as `tick`'s `now`).
    pub fn push(&self, packet: Bytes, arrival: Duration) -> Result<SendOutcome, HandOffError> {
        match self.tx.push((packet, arrival)) {
            Push::Queued => Ok(SendOutcome::Queued),
            Push::QueuedEvicting(_) | Push::Rejected(_) => Ok(SendOutcome::DroppedOldest),
            Push::Disconnected(_) => Err(HandOffError::Disconnected),
        }
    }
    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// One PCM frame on its way from the network side to the tick.
#[derive(Debug, Clone, Copy)]
struct PcmFrameIn {
    key: u32,
    arrival: Duration,
    frame: PcmFrame,
}

/// The network side's handle for raw PCM (e.g. the task reading an Azure Communication
/// Services audio WebSocket): queues 20 ms frames per stream key with their arrival time; the
/// next tick takes them. Usable from any thread, never blocks, never allocates.
#[derive(Debug, Clone)]
pub struct PcmInbox {
    tx: Producer<PcmFrameIn>,
}

impl PcmInbox {
    /// Queues one frame of the stream `key` (the mixed stream's key, or the key the SDK gave a
    /// participant of unmixed audio; [`CallPipeline::assign_source_id`] maps it to a source
    /// id) that arrived at `arrival` (same epoch as `tick`'s `now`). Refused unless `samples`
    /// is 20 ms at `rate` (320 or 480 samples); a full queue drops its oldest frame.
    pub fn push(
        &self,
        key: u32,
        rate: PcmRate,
        samples: &[i16],
        arrival: Duration,
    ) -> Result<SendOutcome, HandOffError> {
        let frame = PcmFrame::new(rate, samples)?;
        match self.tx.push(PcmFrameIn {
            key,
            arrival,
            frame,
        }) {
            Push::Queued => Ok(SendOutcome::Queued),
            Push::QueuedEvicting(_) | Push::Rejected(_) => Ok(SendOutcome::DroppedOldest),
            Push::Disconnected(_) => Err(HandOffError::Disconnected),
        }
    }

    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// One 20 ms frame of a player: the audio, and, when the frame is exactly the decoding of one
/// Opus packet (an Ogg/Opus prompt), that packet, so that the pipeline can send it as it is
/// when nothing else is heard ([`PipelineConfig::opus_passthrough`]). By value (about 5 KiB):
/// queuing one allocates nothing.
#[derive(Debug, Clone, Copy)]
pub struct PlayerFrame {
    /// The frame as a far-end decoder of `packet` hears it: 48 kHz mono f32.
    pub pcm: Frame48,
    /// The packet `pcm` is the decoding of, if any.
    pub packet: Option<OpusPacket>,
}

impl PlayerFrame {
    /// A silent frame without a packet.
    pub const SILENT: PlayerFrame = PlayerFrame {
        pcm: SILENT_FRAME_48,
        packet: None,
    };
}

/// A player's handle (WAV prompt, tone generator): frames of 48 kHz f32, with their Opus packet
/// when they have one. A player that runs ahead of real time should keep
/// `queued() < capacity()`; a full queue drops the oldest. Dropping the handle ends the player
/// once its queue drains.
#[derive(Debug)]
pub struct PlayerSender {
    tx: Producer<PlayerFrame>,
}

impl PlayerSender {
    /// Queues one frame of audio; a full queue drops its oldest.
    pub fn send(&self, frame: &Frame48) -> Result<SendOutcome, HandOffError> {
        self.send_frame(&PlayerFrame {
            pcm: *frame,
            packet: None,
        })
    }

    /// Queues one frame with its packet, if it has one; a full queue drops its oldest.
    pub fn send_frame(&self, frame: &PlayerFrame) -> Result<SendOutcome, HandOffError> {
        match self.tx.push(*frame) {
            Push::Queued => Ok(SendOutcome::Queued),
            Push::QueuedEvicting(_) | Push::Rejected(_) => Ok(SendOutcome::DroppedOldest),
            Push::Disconnected(_) => Err(HandOffError::Disconnected),
        }
    }
    /// Frames waiting.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
    /// Frames the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }
}

/// The handle for sending DTMF tones into the call (Graph's `sendDtmfTones`); usable from
/// any thread, never blocks. Tones go out one after another as RFC 4733 telephone-events,
/// replacing the audio while each is held; [`PipelineEvent::ToneSent`] reports each.
#[derive(Debug, Clone)]
pub struct ToneSender {
    tx: Producer<ToneRequest>,
}

impl ToneSender {
    /// Queues one tone; a full queue drops its oldest tone.
    pub fn send(&self, request: ToneRequest) -> Result<SendOutcome, HandOffError> {
        match self.tx.push(request) {
            Push::Queued => Ok(SendOutcome::Queued),
            Push::QueuedEvicting(_) | Push::Rejected(_) => Ok(SendOutcome::DroppedOldest),
            Push::Disconnected(_) => Err(HandOffError::Disconnected),
        }
    }

    /// Tones waiting to be sent.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// Tones the [`ToneSender`] queue holds.
const TONE_QUEUE: usize = 32;

/// Something the call's owner may want to react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineEvent {
    /// A new remote stream (SSRC, or key of a PCM stream) started.
    StreamAdded {
        /// The stream's SSRC (a PCM stream's key).
        ssrc: u32,
        /// Its Graph media source id.
        source_id: u32,
    },
    /// A remote stream stopped (timed out or replaced).
    StreamRemoved {
        /// The stream's SSRC.
        ssrc: u32,
        /// Its Graph media source id.
        source_id: u32,
    },
    /// A remote stream restarted (large sequence jump, a new SSRC replacing it, or a PCM
    /// stream changing rate).
    StreamReset {
        /// The stream's SSRC.
        ssrc: u32,
        /// Its Graph media source id.
        source_id: u32,
    },
    /// The dominant speaker changed; `None` when nobody speaks (Graph's 0xFFFFFFFF).
    DominantSpeakerChanged {
        /// The new dominant speaker's source id.
        source_id: Option<u32>,
    },
    /// A DTMF key press arrived (RFC 4733), reported once per press.
    ToneReceived {
        /// The stream it came on.
        ssrc: u32,
        /// That stream's Graph media source id.
        source_id: u32,
        /// The key.
        tone: Tone,
        /// How long it was held.
        duration: Duration,
        /// False when its end packets were all lost (closed by timeout or the next key).
        end_seen: bool,
    },
    /// A tone queued with [`ToneSender`] has been sent completely.
    ToneSent {
        /// The key.
        tone: Tone,
    },
}

/// Per-stream stats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamStats {
    /// The stream's SSRC (a PCM stream's key).
    pub ssrc: u32,
    /// Its Graph media source id.
    pub source_id: u32,
    /// The codec decoding it: [`CODEC_NAME`], or `L16/16000` / `L16/24000` for a PCM stream.
    pub codec: &'static str,
    /// Its jitter buffer's counters; for a PCM stream its playout ring's, mapped as
    /// [`PcmPlayout::jitter_stats`] describes.
    pub jitter: JitterStats,
    /// Packets the decoder refused (concealed instead); for a PCM stream, frames its
    /// resampler failed on (played as silence).
    pub decode_errors: u64,
    /// Level of the last frame played, dBov.
    pub level_dbov: f32,
}

/// What a call's remote RTP streams brought, summed over every stream the call has had: live,
/// timed out or replaced. Each only grows during the call, so a sum of them over calls is a
/// Prometheus counter; a stream that leaves does not take its packets with it, as it does from
/// [`CallPipeline::stream_stats`]. PCM streams (ACS audio over a WebSocket) are not RTP and
/// are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpReceiveTotals {
    /// Packets handed to the jitter buffers ([`JitterStats::received`]).
    pub packets: u64,
    /// Sequence numbers playout passed without their packet ([`JitterStats::lost`]).
    pub lost: u64,
    /// Frames made up by packet-loss concealment ([`JitterStats::concealed`]).
    pub concealed: u64,
    /// Frames rebuilt from the next packet's in-band FEC ([`JitterStats::fec_recovered`]).
    pub fec_recovered: u64,
}

impl RtpReceiveTotals {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &RtpReceiveTotals) {
        self.packets += other.packets;
        self.lost += other.lost;
        self.concealed += other.concealed;
        self.fec_recovered += other.fec_recovered;
    }
}

/// Call-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PipelineStats {
    /// 20 ms ticks run.
    pub ticks: u64,
    /// RTP packets that did not parse, by reason.
    pub rtp_errors: RtpErrorCounters,
    /// Packets with a payload type other than Opus' (and telephone-event's, when negotiated).
    pub unknown_payload_type: u64,
    /// DTMF received: tones, lost ends, malformed/unknown events.
    pub dtmf: DtmfStats,
    /// Telephone-event packets sent.
    pub dtmf_packets_sent: u64,
    /// Packets of a new SSRC dropped because every stream slot was busy.
    pub streams_full: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP bytes sent.
    pub bytes_sent: u64,
    /// Frames the Opus encoder was run on (the primings after passthrough not counted).
    pub frames_encoded: u64,
    /// Ticks where the encoder judged the frame silent and nothing was sent.
    pub dtx_ticks: u64,
    /// Frames the encoder failed on (nothing sent for them).
    pub encode_errors: u64,
    /// Frames a resampler failed on.
    pub resample_errors: u64,
    /// The network side's inbound queue (evicted = packets dropped because ticks fell behind).
    pub inbound_queue: QueueStats,
    /// The network side's PCM queue ([`PcmInbox`]), once taken (evicted = frames dropped
    /// because ticks fell behind).
    pub pcm_inbound_queue: QueueStats,
    /// PCM frames the send side produced ([`SendOutput::Pcm`]).
    pub pcm_frames_sent: u64,
    /// The outgoing PCM queue ([`CallPipeline::pcm_outbox`]), when connected (evicted = frames
    /// dropped because the consumer fell behind).
    pub pcm_outbox: QueueStats,
    /// The bot's send queue (evicted = frames dropped because the bot ran ahead).
    pub bot_queue: QueueStats,
    /// Ticks on which a sending bot had no frame ready (it ran late).
    pub bot_underruns: u64,
    /// Receiver reports about our stream taken by the adaptive FEC
    /// ([`CallPipeline::use_loss_reports`]).
    pub loss_reports: u64,
    /// The far end's latest reported fraction lost (RFC 3550, /256).
    pub remote_fraction_lost: u8,
    /// The encoder's expected loss in force, percent (0: no in-band FEC).
    pub expected_loss_pct: u8,
    /// Silent ticks on which the encoder was not run at all: it had entered DTX on digital
    /// silence (a listen-only call) and rests until audio comes back. Part of `dtx_ticks`.
    pub encoder_rested_ticks: u64,
    /// Comfort-noise updates sent while the encoder rested (one every 400 ms, as libopus
    /// sends them in DTX).
    pub comfort_noise_updates: u64,
    /// Level of the last frame the send side encoded, dBov (-127: nothing, or silence).
    pub sent_level_dbov: f32,
    /// Player frames whose Opus packet was sent as it is, re-timestamped, with no encoding
    /// ([`PipelineConfig::opus_passthrough`]).
    pub passthrough_frames: u64,
    /// Player frames that carried a packet but were mixed and encoded, because other audio
    /// (the bot, another player) was live on that tick or passthrough is off.
    pub passthrough_mixed: u64,
    /// Times the encoder was reset before it encoded again after passthrough.
    pub encoder_resets: u64,
    /// Ticks the send side was held ([`CallPipeline::set_send_active`]): nothing encoded or
    /// sent, players and tones left queued.
    pub send_held_ticks: u64,
    /// Frames of the bot's live audio ([`BotSender`]) discarded while the send side was held.
    pub bot_frames_discarded_while_held: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
    /// The outgoing packet queue, when connected (evicted = the transport fell behind).
    pub packet_outbox: QueueStats,
    /// The bot's receive queue, when connected (evicted = the bot fell behind).
    pub bot_audio_outbox: QueueStats,
}

/// What one tick produced, in brief (details through the accessors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Whether the mixed frame for the bot is silence.
    pub is_silence: bool,
    /// Remote streams that produced audio this tick.
    pub streams_playing: usize,
    /// Unmixed frames available.
    pub unmixed: usize,
    /// Whether an RTP packet is ready in [`CallPipeline::outgoing_packet`].
    pub packet_ready: bool,
    /// Whether a PCM frame is ready in [`CallPipeline::outgoing_pcm`].
    pub pcm_ready: bool,
}

/// Unmixed frames carried per tick by [`BotAudio16k`] (Graph delivers the top four).
pub const MAX_UNMIXED_HANDOFF: usize = 4;
/// Active speakers carried per tick by [`BotAudio16k`].
pub const MAX_ACTIVE_HANDOFF: usize = 16;

/// One outgoing RTP packet, by value so the hand-off allocates nothing.
#[derive(Clone, Copy)]
pub struct OutgoingRtp {
    len: usize,
    data: [u8; MAX_RTP_PACKET],
}

impl OutgoingRtp {
    /// The packet's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl std::fmt::Debug for OutgoingRtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingRtp")
            .field("len", &self.len)
            .finish()
    }
}

/// One unmixed 16 kHz frame in a [`BotAudio16k`].
#[derive(Debug, Clone, Copy)]
pub struct UnmixedPcm16k {
    /// The speaker's Graph media source id.
    pub source_id: u32,
    /// The frame's level, dBov.
    pub level_dbov: f32,
    /// Whether the frame is below the speech threshold.
    pub is_silence: bool,
    /// 640 bytes of s16 little-endian mono 16 kHz.
    pub pcm: [u8; BYTES_PER_FRAME_16K_S16],
}

impl UnmixedPcm16k {
    const SILENT: UnmixedPcm16k = UnmixedPcm16k {
        source_id: NO_DOMINANT_SPEAKER,
        level_dbov: -127.0,
        is_silence: true,
        pcm: [0; BYTES_PER_FRAME_16K_S16],
    };
}

/// What the bot receives each tick, in Graph's audio-socket shape (16 kHz s16).
#[derive(Debug, Clone, Copy)]
pub struct BotAudio16k {
    /// The tick's `now`.
    pub timestamp: Duration,
    /// Whether the mix is silence (Graph's `IsSilence`).
    pub is_silence: bool,
    /// The mix of all remote streams: 640 bytes of s16 little-endian mono 16 kHz.
    pub mixed: [u8; BYTES_PER_FRAME_16K_S16],
    unmixed_len: usize,
    unmixed: [UnmixedPcm16k; MAX_UNMIXED_HANDOFF],
    active_len: usize,
    active_speakers: [u32; MAX_ACTIVE_HANDOFF],
    /// Graph's dominant speaker (`None` = 0xFFFFFFFF).
    pub dominant_speaker: Option<u32>,
}

impl BotAudio16k {
    /// Unmixed frames of the loudest active speakers, loudest first.
    pub fn unmixed(&self) -> &[UnmixedPcm16k] {
        &self.unmixed[..self.unmixed_len]
    }
    /// Source ids of the active speakers, loudest first.
    pub fn active_speakers(&self) -> &[u32] {
        &self.active_speakers[..self.active_len]
    }
}

/// An unmixed frame of one active speaker.
#[derive(Debug, Clone, Copy)]
pub struct UnmixedAudio<'a> {
    /// Graph media source id (the SSRC unless assigned with `assign_source_id`).
    pub source_id: u32,
    /// The stream's SSRC.
    pub ssrc: u32,
    /// The frame's level, dBov.
    pub level_dbov: f32,
    /// Whether the frame is below the speech threshold.
    pub is_silence: bool,
    /// The frame, 48 kHz f32.
    pub pcm48: &'a Frame48,
    /// The same frame as 640 bytes of 16 kHz s16 (only with [`BotAudioFormat::Pcm16k`]).
    pub pcm16k: Option<&'a [u8; BYTES_PER_FRAME_16K_S16]>,
}

/// Where a remote stream's audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    /// Opus in RTP, through the jitter buffer and the decoder.
    Rtp,
    /// Raw PCM frames, through the playout ring and an upsampler.
    Pcm,
}

/// An RTP stream's input side, made the first time a slot carries an RTP stream.
#[derive(Debug)]
struct RtpInput {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
}

/// A PCM stream's input side, made the first time a slot carries a PCM stream.
#[derive(Debug)]
struct PcmInput {
    playout: PcmPlayout,
    up: PcmUpsampler,
    /// The rate of the frames played (for the stats' codec name).
    rate: PcmRate,
}

struct RemoteStream {
    live: bool,
    /// The SSRC, or a PCM stream's key.
    ssrc: u32,
    source_id: u32,
    kind: StreamKind,
    /// Built the first time the slot carries an RTP stream: PCM-only calls need no jitter
    /// buffer and no decoder.
    rtp_in: Option<RtpInput>,
    /// Built the first time the slot carries a PCM stream.
    pcm_in: Option<Box<PcmInput>>,
    mixer_source: Option<SourceId>,
    pcm: Box<Frame48>,
    down: Option<Box<Downsampler>>,
    pcm16k: Box<[u8; BYTES_PER_FRAME_16K_S16]>,
    scratch16: Box<Frame16>,
    last_packet: Duration,
    decode_errors: u64,
    playing: bool,
    level_dbov: f32,
    /// Slow-moving level for the dominant speaker choice.
    smoothed_dbov: f32,
    /// Whether the last frame was above the speech threshold.
    loud: bool,
    /// Ticks left in the active-speaker hangover.
    active_ticks: u32,
}

impl RemoteStream {
    fn new() -> Self {
        RemoteStream {
            live: false,
            ssrc: 0,
            source_id: 0,
            kind: StreamKind::Rtp,
            rtp_in: None,
            pcm_in: None,
            mixer_source: None,
            pcm: Box::new(SILENT_FRAME_48),
            // Made only once a second stream is live: a lone stream's unmixed frame is the mix.
            down: None,
            pcm16k: Box::new([0; BYTES_PER_FRAME_16K_S16]),
            scratch16: Box::new([0.0; SAMPLES_PER_FRAME_16K]),
            last_packet: Duration::ZERO,
            decode_errors: 0,
            playing: false,
            level_dbov: -127.0,
            smoothed_dbov: -127.0,
            loud: false,
            active_ticks: 0,
        }
    }

    /// Readies the slot for a new stream of `kind`: builds what that kind needs the first
    /// time (the only allocation after the slot itself), clears its history otherwise.
    fn prepare(&mut self, kind: StreamKind, config: &PipelineConfig) -> Result<(), PipelineError> {
        match kind {
            StreamKind::Rtp => match self.rtp_in.as_mut() {
                // Its stats are kept, as they always were for a slot's jitter buffer.
                Some(r) => {
                    r.jitter.reset();
                    let _ = r.decoder.reset();
                }
                None => {
                    self.rtp_in = Some(RtpInput {
                        jitter: JitterBuffer::new(config.jitter),
                        decoder: OpusDecoder::new()?,
                    });
                }
            },
            StreamKind::Pcm => match self.pcm_in.as_mut() {
                // The upsampler is cleared by the first frame, which brings the rate.
                Some(p) => p.playout.clear(),
                None => {
                    self.pcm_in = Some(Box::new(PcmInput {
                        playout: PcmPlayout::new(config.pcm_prebuffer_frames),
                        up: PcmUpsampler::new(),
                        rate: PcmRate::Hz16000,
                    }));
                }
            },
        }
        self.kind = kind;
        Ok(())
    }

    /// Whether a new stream of `kind` (at `rate`, for PCM) would find everything it needs
    /// already built in this slot.
    fn is_equipped_for(&self, kind: StreamKind, rate: Option<PcmRate>) -> bool {
        match kind {
            StreamKind::Rtp => self.rtp_in.is_some(),
            StreamKind::Pcm => self
                .pcm_in
                .as_deref()
                .is_some_and(|p| rate.is_none_or(|r| p.up.has(r))),
        }
    }

    fn stats(&self) -> StreamStats {
        let (codec, jitter) = match (self.kind, self.pcm_in.as_deref(), &self.rtp_in) {
            (StreamKind::Pcm, Some(p), _) => (p.rate.codec_name(), p.playout.jitter_stats()),
            (StreamKind::Rtp, _, Some(r)) => (CODEC_NAME, *r.jitter.stats()),
            _ => (CODEC_NAME, JitterStats::default()),
        };
        StreamStats {
            ssrc: self.ssrc,
            source_id: self.source_id,
            codec,
            jitter,
            decode_errors: self.decode_errors,
            level_dbov: self.level_dbov,
        }
    }

    /// Takes one PCM frame into the playout ring; a first frame or a new rate readies the
    /// upsampler (which allocates only the first time the slot sees that rate).
    fn push_pcm(&mut self, frame: &PcmFrame) -> Result<PcmPush, ResampleError> {
        let Some(input) = self.pcm_in.as_deref_mut() else {
            return Ok(PcmPush::Buffered);
        };
        let new_rate = input.playout.rate() != Some(frame.rate());
        let outcome = input.playout.push(frame);
        if new_rate {
            input.rate = frame.rate();
            input.up.prepare(frame.rate())?;
        }
        Ok(outcome)
    }

    /// Produces this tick's frame into `pcm`; returns whether it carries audio.
    fn play(&mut self, now: Duration, use_fec: bool, threshold: f32) -> bool {
        let (produced, played) = match self.kind {
            StreamKind::Rtp => self.decode_rtp(now, use_fec),
            StreamKind::Pcm => self.play_pcm(),
        };
        if let Produced::Silence = produced {
            self.pcm.fill(0.0);
        }
        self.level_dbov = level_dbov(&self.pcm[..]);
        if self.kind == StreamKind::Rtp
            && let Some(r) = self.rtp_in.as_mut()
        {
            r.jitter.set_silent(self.level_dbov < threshold);
        }
        // ~0.3 s time constant: steady enough for dominance, quick enough to follow turns.
        self.smoothed_dbov += (self.level_dbov - self.smoothed_dbov) * 0.06;
        self.loud = self.level_dbov >= threshold;
        self.playing = played && !matches!(produced, Produced::Silence);
        self.playing
    }
}

impl RemoteStream {
    /// This tick's frame of an RTP stream: decoded, rebuilt from FEC, or concealed.
    fn decode_rtp(&mut self, now: Duration, use_fec: bool) -> (Produced, bool) {
        let Some(RtpInput { jitter, decoder }) = self.rtp_in.as_mut() else {
            return (Produced::Silence, false);
        };
        let pcm = &mut self.pcm[..];
        let (result, played) = match jitter.pop(now) {
            Playout::Buffering => (Ok(Produced::Silence), false),
            Playout::Silence => (Ok(Produced::Silence), true),
            Playout::Frame(p) => match decoder.decode(p.payload(), pcm) {
                Ok(()) => (Ok(Produced::Decoded), true),
                Err(e) => (Err(e), true),
            },
            Playout::Lost { fec: Some(next) } if use_fec => {
                match decoder.decode_fec(next.payload(), pcm) {
                    Ok(FecOutcome::Recovered) => (Ok(Produced::Fec), true),
                    Ok(FecOutcome::Concealed) => (Ok(Produced::Concealed), true),
                    Err(e) => (Err(e), true),
                }
            }
            Playout::Lost { .. } | Playout::Underrun => match decoder.conceal(pcm) {
                Ok(()) => (Ok(Produced::Concealed), true),
                Err(e) => (Err(e), true),
            },
        };
        let produced = match result {
            Ok(p) => p,
            Err(_) => {
                // Garbage payload: count it and conceal instead, so the tick goes on.
                self.decode_errors += 1;
                if decoder.conceal(pcm).is_ok() {
                    Produced::Concealed
                } else {
                    Produced::Silence
                }
            }
        };
        match produced {
            Produced::Fec => jitter.record_fec_recovered(),
            Produced::Concealed => jitter.record_concealed(),
            Produced::Decoded | Produced::Silence => {}
        }
        (produced, played)
    }

    /// This tick's frame of a PCM stream: the ring's next frame upsampled to 48 kHz. On an
    /// underrun (counted by the ring) a silent frame goes through the upsampler instead, so
    /// the last 5 ms it held of the frame before come out in order and the stream restarts
    /// from a clean history.
    fn play_pcm(&mut self) -> (Produced, bool) {
        let Some(input) = self.pcm_in.as_deref_mut() else {
            return (Produced::Silence, false);
        };
        let rate = input.rate;
        let result = match input.playout.pop() {
            PlayoutStep::Buffering => return (Produced::Silence, false),
            PlayoutStep::Frame(f) => input.up.process(f.rate(), Some(f), &mut self.pcm),
            PlayoutStep::Underrun => input.up.process(rate, None, &mut self.pcm),
        };
        match result {
            Ok(()) => (Produced::Decoded, true),
            Err(_) => {
                self.decode_errors += 1;
                (Produced::Silence, true)
            }
        }
    }
}

enum Produced {
    Decoded,
    Fec,
    Concealed,
    Silence,
}

/// A bounded ring of events; never allocates after construction.
struct EventRing {
    items: [Option<PipelineEvent>; EVENT_CAPACITY],
    head: usize,
    len: usize,
    dropped: u64,
}

impl EventRing {
    fn push(&mut self, e: PipelineEvent) {
        if self.len == EVENT_CAPACITY {
            self.head = (self.head + 1) % EVENT_CAPACITY;
            self.len -= 1;
            self.dropped += 1;
        }
        self.items[(self.head + self.len) % EVENT_CAPACITY] = Some(e);
        self.len += 1;
    }
    fn pop(&mut self) -> Option<PipelineEvent> {
        if self.len == 0 {
            return None;
        }
        let e = self.items[self.head].take();
        self.head = (self.head + 1) % EVENT_CAPACITY;
        self.len -= 1;
        e
    }
}

struct Player {
    rx: Consumer<PlayerFrame>,
    source: SourceId,
}

/// The send side's Opus passthrough state.
struct Passthrough {
    /// The packet of this tick's candidate frame.
    packet: OpusPacket,
    /// A frame was passed through since the encoder last ran: its history is stale.
    encoder_stale: bool,
}

/// The Graph source id assigned to `ssrc`, else the SSRC itself.
fn source_id_in(source_ids: &[(u32, u32)], ssrc: u32) -> u32 {
    source_ids
        .iter()
        .find(|(s, _)| *s == ssrc)
        .map_or(ssrc, |&(_, id)| id)
}

fn tone_event(t: ToneReceived, source_ids: &[(u32, u32)]) -> PipelineEvent {
    PipelineEvent::ToneReceived {
        ssrc: t.ssrc,
        source_id: source_id_in(source_ids, t.ssrc),
        tone: t.tone,
        duration: t.duration,
        end_seen: t.end_seen,
    }
}

/// The per-call pipeline. See the module docs.
pub struct CallPipeline {
    config: PipelineConfig,
    streams: Vec<RemoteStream>,
    /// SSRC → Graph source id assignments.
    source_ids: Vec<(u32, u32)>,
    receive_mixer: Mixer,
    bot_mixed_16k: Box<[u8; BYTES_PER_FRAME_16K_S16]>,
    bot_down: Option<Box<Downsampler>>,
    scratch16: Box<Frame16>,
    mixed_silent: bool,
    /// Indices into `streams` of the unmixed frames of this tick, loudest first.
    unmixed: Vec<usize>,
    active: Vec<u32>,
    dominant: Option<u32>,
    dominant_candidate: Option<u32>,
    dominant_candidate_ticks: u32,
    quiet_ticks: u32,
    rtp_rx: Consumer<(Bytes, Duration)>,
    rtp_tx: Producer<(Bytes, Duration)>,
    /// The PCM inbound queue, made when the first [`PcmInbox`] is taken.
    pcm_queue: OnceLock<(Producer<PcmFrameIn>, Consumer<PcmFrameIn>)>,
    // Send side.
    bot_rx: Consumer<BotFrame>,
    bot_tx: Producer<BotFrame>,
    bot_sending: bool,
    /// Ticks the first queued frame has waited while prebuffering.
    bot_waited: usize,
    upsampler: Box<Upsampler>,
    players: Vec<Player>,
    send_mixer: Mixer,
    bot_source: SourceId,
    /// `None` with [`SendOutput::Pcm`]: nothing is encoded.
    encoder: Option<OpusEncoder>,
    pass: Box<Passthrough>,
    /// The PCM send side, with [`SendOutput::Pcm`].
    pcm_send: Option<Box<PcmSend>>,
    next_seq: u16,
    next_ts: u32,
    sent_last_tick: bool,
    /// Whether the send side runs ([`CallPipeline::set_send_active`]).
    send_active: bool,
    /// The encoder at rest on digital silence, and the update it repeats meanwhile.
    rest: EncoderRest,
    /// Receiver reports from the transport, when it gives them, and the FEC that follows them.
    feedback: Option<(Arc<LossReports>, AdaptiveFec)>,
    out_packet: Box<[u8; MAX_RTP_PACKET]>,
    out_len: usize,
    dtmf_in: DtmfDetector,
    dtmf_out: DtmfSender,
    tone_rx: Consumer<ToneRequest>,
    tone_tx: Producer<ToneRequest>,
    events: EventRing,
    packet_tx: Option<Producer<OutgoingRtp>>,
    /// A transport driven from this call's tick ([`CallPipeline::drive_transport`]).
    transport: Option<Box<dyn TickTransport>>,
    pcm_tx: Option<Producer<PcmFrameOut>>,
    bot_audio_tx: Option<Producer<BotAudio16k>>,
    stats: PipelineStats,
}

/// The send side's PCM output: the mix resampled to the output rate.
#[derive(Debug)]
struct PcmSend {
    down: PcmDownsampler,
    scratch: [f32; MAX_PCM_FRAME],
    out: PcmFrameOut,
    /// Whether `out` was produced by the last tick.
    ready: bool,
}

impl std::fmt::Debug for CallPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallPipeline")
            .field("local_ssrc", &self.config.local_ssrc)
            .field("streams", &self.streams.iter().filter(|s| s.live).count())
            .field("stats", &self.stats)
            .finish()
    }
}

impl CallPipeline {
    /// Builds the pipeline and preallocates everything a steady-state tick needs.
    pub fn new(config: PipelineConfig) -> Result<Self, PipelineError> {
        if config.max_remote_streams == 0 {
            return Err(PipelineError::BadConfig {
                name: "max_remote_streams",
                value: 0,
            });
        }
        if config.send_prebuffer_frames > config.send_queue_frames {
            return Err(PipelineError::BadConfig {
                name: "send_prebuffer_frames",
                value: config.send_prebuffer_frames,
            });
        }
        if config.pcm_prebuffer_frames >= crate::pcm::PCM_PLAYOUT_FRAMES {
            return Err(PipelineError::BadConfig {
                name: "pcm_prebuffer_frames",
                value: config.pcm_prebuffer_frames,
            });
        }
        let (encoder, pcm_send) = match config.send_output {
            SendOutput::Rtp => (Some(OpusEncoder::new(config.encoder)?), None),
            SendOutput::Pcm(rate) => {
                let send = PcmSend {
                    down: PcmDownsampler::new(rate)?,
                    scratch: [0.0; MAX_PCM_FRAME],
                    out: PcmFrameOut {
                        frame: PcmFrame::silent(rate),
                        timestamp: Duration::ZERO,
                        first_of_spurt: false,
                    },
                    ready: false,
                };
                (None, Some(Box::new(send)))
            }
        };
        let (bot_tx, bot_rx) = queue::bounded(config.send_queue_frames.max(1));
        let (rtp_tx, rtp_rx) = queue::bounded(config.inbound_queue_packets.max(1));
        let (tone_tx, tone_rx) = queue::bounded(TONE_QUEUE);
        let mut send_mixer = Mixer::with_capacity(1 + config.max_players);
        let bot_source = send_mixer.add_source()?;
        let resampled = config.bot_format == BotAudioFormat::Pcm16k;
        Ok(CallPipeline {
            streams: Vec::with_capacity(config.max_remote_streams),
            source_ids: Vec::with_capacity(config.max_remote_streams * 2),
            receive_mixer: Mixer::with_capacity(config.max_remote_streams),
            bot_mixed_16k: Box::new([0; BYTES_PER_FRAME_16K_S16]),
            bot_down: if resampled {
                Some(Box::new(Downsampler::new()?))
            } else {
                None
            },
            scratch16: Box::new([0.0; SAMPLES_PER_FRAME_16K]),
            mixed_silent: true,
            unmixed: Vec::with_capacity(config.max_remote_streams),
            active: Vec::with_capacity(config.max_remote_streams),
            dominant: None,
            dominant_candidate: None,
            dominant_candidate_ticks: 0,
            quiet_ticks: 0,
            rtp_rx,
            rtp_tx,
            pcm_queue: OnceLock::new(),
            bot_rx,
            bot_tx,
            bot_sending: false,
            bot_waited: 0,
            // Built whatever the receive format: a bot may send either format.
            upsampler: Box::new(Upsampler::new()?),
            players: Vec::with_capacity(config.max_players),
            send_mixer,
            bot_source,
            encoder,
            pass: Box::new(Passthrough {
                packet: OpusPacket::EMPTY,
                encoder_stale: false,
            }),
            pcm_send,
            next_seq: config.initial_sequence_number,
            next_ts: config.initial_timestamp,
            sent_last_tick: false,
            send_active: true,
            rest: EncoderRest::default(),
            feedback: None,
            out_packet: Box::new([0; MAX_RTP_PACKET]),
            out_len: 0,
            dtmf_in: DtmfDetector::new(),
            dtmf_out: DtmfSender::new(),
            tone_rx,
            tone_tx,
            events: EventRing {
                items: [None; EVENT_CAPACITY],
                head: 0,
                len: 0,
                dropped: 0,
            },
            packet_tx: None,
            transport: None,
            pcm_tx: None,
            bot_audio_tx: None,
            stats: PipelineStats {
                expected_loss_pct: config.encoder.expected_loss_pct.min(100),
                sent_level_dbov: SILENCE_DBOV,
                ..PipelineStats::default()
            },
            config,
        })
    }

    /// The pipeline's settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// A handle for the bot to send frames from any thread.
    pub fn bot_sender(&self) -> BotSender {
        BotSender {
            tx: self.bot_tx.clone(),
        }
    }

    /// A handle for the network side to queue received packets from any thread; the next
    /// [`tick`](Self::tick) feeds them to [`push_rtp`](Self::push_rtp) with their arrival times.
    pub fn rtp_inbox(&self) -> RtpInbox {
        RtpInbox {
            tx: self.rtp_tx.clone(),
        }
    }

    /// A handle for the network side to queue received PCM frames from any thread; the next
    /// [`tick`](Self::tick) feeds them to [`push_pcm`](Self::push_pcm) with their arrival
    /// times. The first call makes the queue (`pcm_inbound_queue_frames` frames); later calls
    /// and clones share it.
    pub fn pcm_inbox(&self) -> PcmInbox {
        let (tx, _) = self
            .pcm_queue
            .get_or_init(|| queue::bounded(self.config.pcm_inbound_queue_frames.max(1)));
        PcmInbox { tx: tx.clone() }
    }

    /// A handle for sending DTMF tones from any thread; refused when no telephone-event
    /// payload type was negotiated, and with [`SendOutput::Pcm`] (no RTP to carry them).
    pub fn tone_sender(&self) -> Result<ToneSender, PipelineError> {
        if self.config.telephone_event_payload_type.is_none() {
            return Err(PipelineError::NoTelephoneEvent);
        }
        if self.config.send_output != SendOutput::Rtp {
            return Err(PipelineError::WrongSendOutput {
                output: self.config.send_output,
            });
        }
        Ok(ToneSender {
            tx: self.tone_tx.clone(),
        })
    }

    /// Adds a player source mixed into what the bot sends (allocates its queue).
    pub fn add_player(&mut self, queue_frames: usize) -> Result<PlayerSender, PipelineError> {
        if self.players.len() >= self.config.max_players {
            return Err(PipelineError::PlayersFull {
                capacity: self.config.max_players,
            });
        }
        let source = self.send_mixer.add_source()?;
        let (tx, rx) = queue::bounded(queue_frames.max(1));
        self.players.push(Player { rx, source });
        Ok(PlayerSender { tx })
    }

    /// Maps an SSRC to the Graph media source id reported for it (from the roster).
    pub fn assign_source_id(&mut self, ssrc: u32, source_id: u32) {
        if let Some(entry) = self.source_ids.iter_mut().find(|(s, _)| *s == ssrc) {
            entry.1 = source_id;
        } else if self.source_ids.len() < self.source_ids.capacity() {
            self.source_ids.push((ssrc, source_id));
        } else {
            self.source_ids[0] = (ssrc, source_id);
            self.source_ids.rotate_left(1);
        }
        // An RTP stream and a PCM stream may share the number; both are that source.
        for s in self.streams.iter_mut().filter(|s| s.live && s.ssrc == ssrc) {
            s.source_id = source_id;
        }
    }

    fn source_id_of(&self, ssrc: u32) -> u32 {
        source_id_in(&self.source_ids, ssrc)
    }

    /// Feeds one received RTP packet (after SRTP). Malformed or foreign packets are counted
    /// in [`PipelineStats`] and dropped.
    pub fn push_rtp(&mut self, packet: Bytes, now: Duration) {
        let packet = match RtpPacket::parse(packet) {
            Ok(p) => p,
            Err(e) => {
                self.stats.rtp_errors.record(&e);
                return;
            }
        };
        if Some(packet.payload_type()) == self.config.telephone_event_payload_type {
            self.push_telephone_event(&packet, now);
            return;
        }
        if packet.payload_type() != self.config.payload_type {
            self.stats.unknown_payload_type += 1;
            return;
        }
        let ssrc = packet.ssrc();
        let Some(idx) = self.stream_for(ssrc, StreamKind::Rtp, None, now) else {
            return;
        };
        let stream = &mut self.streams[idx];
        stream.last_packet = now;
        let Some(rtp) = stream.rtp_in.as_mut() else {
            return;
        };
        if rtp.jitter.push(packet, now) == PushOutcome::Reset {
            // A far jump in sequence numbers: the decoder's history belongs to the old run.
            let _ = rtp.decoder.reset();
            self.events.push(PipelineEvent::StreamReset {
                ssrc,
                source_id: stream.source_id,
            });
        }
    }

    /// Feeds one received PCM frame of the stream `key` (the sans-IO twin of [`PcmInbox`]):
    /// refused unless `samples` is 20 ms at `rate`. A frame of a new key opens a stream (or is
    /// dropped and counted in `streams_full` when every slot is busy); a frame at another rate
    /// than its stream's restarts the stream ([`PipelineEvent::StreamReset`]).
    pub fn push_pcm(
        &mut self,
        key: u32,
        rate: PcmRate,
        samples: &[i16],
        now: Duration,
    ) -> Result<(), PcmLengthError> {
        let frame = PcmFrame::new(rate, samples)?;
        self.push_pcm_frame(key, &frame, now);
        Ok(())
    }

    fn push_pcm_frame(&mut self, key: u32, frame: &PcmFrame, now: Duration) {
        let Some(idx) = self.stream_for(key, StreamKind::Pcm, Some(frame.rate()), now) else {
            return;
        };
        let stream = &mut self.streams[idx];
        stream.last_packet = now;
        match stream.push_pcm(frame) {
            Ok(PcmPush::RateChanged) => self.events.push(PipelineEvent::StreamReset {
                ssrc: key,
                source_id: stream.source_id,
            }),
            Ok(PcmPush::Buffered | PcmPush::DroppedOldest) => {}
            Err(_) => self.stats.resample_errors += 1,
        }
    }

    /// The live stream `ssrc` of `kind`, or a new one; `None` (counted) when no slot is free.
    fn stream_for(
        &mut self,
        ssrc: u32,
        kind: StreamKind,
        rate: Option<PcmRate>,
        now: Duration,
    ) -> Option<usize> {
        let found = self
            .streams
            .iter()
            .position(|s| s.live && s.ssrc == ssrc && s.kind == kind);
        let idx = found.or_else(|| self.open_stream(ssrc, kind, rate, now));
        if idx.is_none() {
            self.stats.streams_full += 1;
        }
        idx
    }

    fn push_telephone_event(&mut self, packet: &RtpPacket, now: Duration) {
        let (ssrc, timestamp) = (packet.ssrc(), packet.timestamp());
        let (detector, events, source_ids) =
            (&mut self.dtmf_in, &mut self.events, &self.source_ids);
        detector.push(ssrc, timestamp, packet.payload(), now, |t| {
            events.push(tone_event(t, source_ids));
        });
        self.stats.dtmf = self.dtmf_in.stats();
    }

    /// Finds a slot for a new SSRC: a free one, else (single-stream calls) the current one
    /// is replaced, else the longest-silent stream past the timeout. Among free slots, one
    /// that already carried this kind of stream (at this rate) is taken first, so that reuse
    /// allocates nothing even in a call that mixes kinds or rates.
    fn open_stream(
        &mut self,
        ssrc: u32,
        kind: StreamKind,
        rate: Option<PcmRate>,
        now: Duration,
    ) -> Option<usize> {
        let source_id = self.source_id_of(ssrc);
        if self.config.max_remote_streams == 1 && self.streams.first().is_some_and(|s| s.live) {
            // Two-party call: the peer restarted its stream under a new SSRC.
            let s = &mut self.streams[0];
            let old = (s.ssrc, s.source_id);
            s.prepare(kind, &self.config).ok()?;
            s.ssrc = ssrc;
            s.source_id = source_id;
            s.last_packet = now;
            self.events
                .push(PipelineEvent::StreamReset { ssrc, source_id });
            if old.1 != source_id {
                self.forget_speaker(old.1);
            }
            return Some(0);
        }
        let equipped = self
            .streams
            .iter()
            .position(|s| !s.live && s.is_equipped_for(kind, rate));
        let idx = if let Some(i) = equipped.or_else(|| self.streams.iter().position(|s| !s.live)) {
            i
        } else if self.streams.len() < self.config.max_remote_streams {
            // First use of this slot: with `prepare` below, the only allocation a stream makes.
            self.streams.push(RemoteStream::new());
            self.streams.len() - 1
        } else {
            return None;
        };
        self.streams[idx].prepare(kind, &self.config).ok()?;
        let mixer_source = self.receive_mixer.add_source().ok()?;
        let s = &mut self.streams[idx];
        s.live = true;
        s.ssrc = ssrc;
        s.source_id = source_id;
        if let Some(d) = s.down.as_mut() {
            d.reset();
        }
        s.mixer_source = Some(mixer_source);
        s.last_packet = now;
        if self.bot_down.is_some() && self.streams.iter().filter(|s| s.live).count() >= 2 {
            // From now on unmixed frames differ from the mix and need their own resampler
            // (~50 KiB each, so two-party calls never build one).
            for s in self
                .streams
                .iter_mut()
                .filter(|s| s.live && s.down.is_none())
            {
                match Downsampler::new() {
                    Ok(d) => s.down = Some(Box::new(d)),
                    Err(_) => self.stats.resample_errors += 1,
                }
            }
        }
        let s = &mut self.streams[idx];
        s.decode_errors = 0;
        s.level_dbov = -127.0;
        s.smoothed_dbov = -127.0;
        s.active_ticks = 0;
        s.loud = false;
        s.playing = false;
        self.events
            .push(PipelineEvent::StreamAdded { ssrc, source_id });
        Some(idx)
    }

    fn close_stream(&mut self, idx: usize) {
        let s = &mut self.streams[idx];
        s.live = false;
        s.playing = false;
        if let Some(r) = s.rtp_in.as_mut() {
            r.jitter.reset();
        }
        if let Some(src) = s.mixer_source.take() {
            let _ = self.receive_mixer.remove_source(src);
        }
        let (ssrc, source_id) = (s.ssrc, s.source_id);
        self.events
            .push(PipelineEvent::StreamRemoved { ssrc, source_id });
        self.forget_speaker(source_id);
    }

    fn forget_speaker(&mut self, source_id: u32) {
        if self.dominant == Some(source_id) {
            self.dominant = None;
            self.events
                .push(PipelineEvent::DominantSpeakerChanged { source_id: None });
        }
        if self.dominant_candidate == Some(source_id) {
            self.dominant_candidate = None;
        }
    }

    /// Runs one 20 ms step at `now`. Never blocks; allocates nothing in steady state (a
    /// transport driven from the tick, [`drive_transport`](Self::drive_transport), may).
    pub fn tick(&mut self, now: Duration) -> TickReport {
        let mut transport = self.transport.take();
        if let Some(t) = transport.as_mut() {
            t.before_tick(now);
        }
        let report = self.tick_media(now);
        if let Some(t) = transport.as_mut() {
            t.after_tick(now);
        }
        self.transport = transport;
        report
    }

    /// Has `transport` run on this call's own tick, on whichever media worker ticks it: its
    /// [`before_tick`](TickTransport::before_tick) first (datagrams in, timers; what it
    /// receives goes into this pipeline's [`RtpInbox`] and is played in the same tick), its
    /// [`after_tick`](TickTransport::after_tick) last (the tick's packets out). Replaces
    /// any transport set before.
    pub fn drive_transport(&mut self, transport: Box<dyn TickTransport>) {
        self.transport = Some(transport);
    }

    fn tick_media(&mut self, now: Duration) -> TickReport {
        self.stats.ticks += 1;
        // Bounded by the queue's size so a flooding sender cannot hold the tick.
        for _ in 0..self.rtp_rx.capacity() {
            match self.rtp_rx.pop() {
                Some((packet, arrival)) => self.push_rtp(packet, arrival),
                None => break,
            }
        }
        self.stats.inbound_queue = self.rtp_rx.stats();
        let pcm_capacity = self.pcm_queue.get().map_or(0, |(_, rx)| rx.capacity());
        for _ in 0..pcm_capacity {
            let Some(item) = self.pcm_queue.get().and_then(|(_, rx)| rx.pop()) else {
                break;
            };
            self.push_pcm_frame(item.key, &item.frame, item.arrival);
        }
        if let Some((_, rx)) = self.pcm_queue.get() {
            self.stats.pcm_inbound_queue = rx.stats();
        }
        let (events, source_ids) = (&mut self.events, &self.source_ids);
        self.dtmf_in
            .poll(now, |t| events.push(tone_event(t, source_ids)));
        self.stats.dtmf = self.dtmf_in.stats();
        self.receive(now);
        self.update_speakers();
        self.send(now);
        self.hand_off(now);
        self.stats.bot_queue = self.bot_rx.stats();
        self.stats.events_dropped = self.events.dropped;
        TickReport {
            is_silence: self.mixed_silent,
            streams_playing: self.streams.iter().filter(|s| s.live && s.playing).count(),
            unmixed: self.unmixed.len(),
            packet_ready: self.out_len > 0,
            pcm_ready: self.pcm_send.as_ref().is_some_and(|p| p.ready),
        }
    }

    fn receive(&mut self, now: Duration) {
        for i in 0..self.streams.len() {
            if self.streams[i].live
                && now.saturating_sub(self.streams[i].last_packet) >= self.config.stream_timeout
            {
                self.close_stream(i);
            }
        }
        let threshold = self.config.speech_threshold_dbov;
        let hangover = self.config.active_hangover_ticks;
        for s in self.streams.iter_mut().filter(|s| s.live) {
            let playing = s.play(now, self.config.use_inband_fec, threshold);
            if s.loud {
                s.active_ticks = hangover.max(1);
            } else {
                s.active_ticks = s.active_ticks.saturating_sub(1);
            }
            if playing && let Some(src) = s.mixer_source {
                let _ = self.receive_mixer.push(src, &s.pcm);
            }
        }
        let mixed = self.receive_mixer.mix();
        self.mixed_silent = level_dbov(&mixed[..]) < threshold;
        if let Some(down) = self.bot_down.as_mut() {
            if down.process(mixed, &mut self.scratch16).is_err() {
                self.stats.resample_errors += 1;
            }
            if f32_to_s16le_bytes(&self.scratch16[..], &mut self.bot_mixed_16k[..]).is_err() {
                self.stats.resample_errors += 1;
            }
        }
        // Unmixed frames are resampled for every live stream, so each downsampler's history
        // stays continuous whether or not the stream makes the top N this tick. With a single
        // stream (a two-party call) its unmixed frame is the mix itself (soft clipping aside,
        // which only touches peaks above 0.8), so the second resampling is skipped.
        let single = self.streams.iter().filter(|s| s.live).count() == 1;
        if self.bot_down.is_none() {
            return;
        }
        for s in self.streams.iter_mut().filter(|s| s.live) {
            match (single, s.down.as_mut()) {
                (true, _) => s.pcm16k.copy_from_slice(&self.bot_mixed_16k[..]),
                (false, Some(down)) => {
                    if down.process(&s.pcm, &mut s.scratch16).is_err() {
                        self.stats.resample_errors += 1;
                    }
                    if f32_to_s16le_bytes(&s.scratch16[..], &mut s.pcm16k[..]).is_err() {
                        self.stats.resample_errors += 1;
                    }
                }
                // Its resampler could not be built (counted then): better silence than stale.
                (false, None) => s.pcm16k.fill(0),
            }
        }
    }

    fn update_speakers(&mut self) {
        self.active.clear();
        self.unmixed.clear();
        for (i, s) in self.streams.iter().enumerate() {
            if s.live && s.active_ticks > 0 {
                self.unmixed.push(i);
            }
        }
        let streams = &self.streams;
        self.unmixed.sort_unstable_by(|&a, &b| {
            streams[b]
                .smoothed_dbov
                .total_cmp(&streams[a].smoothed_dbov)
        });
        for &i in &self.unmixed {
            self.active.push(self.streams[i].source_id);
        }
        self.unmixed.truncate(self.config.max_unmixed);

        // Dominant speaker: the loudest active speaker must lead for a while before it takes
        // over (hysteresis); with nobody active for a second the dominant speaker is cleared.
        let loudest = self.active.first().copied();
        match loudest {
            None => {
                self.quiet_ticks += 1;
                self.dominant_candidate = None;
                if self.dominant.is_some() && self.quiet_ticks >= 50 {
                    self.dominant = None;
                    self.events
                        .push(PipelineEvent::DominantSpeakerChanged { source_id: None });
                }
            }
            Some(id) => {
                self.quiet_ticks = 0;
                let dominant_active = self.dominant.is_some_and(|d| self.active.contains(&d));
                if self.dominant == Some(id) {
                    self.dominant_candidate = None;
                } else {
                    if self.dominant_candidate == Some(id) {
                        self.dominant_candidate_ticks += 1;
                    } else {
                        self.dominant_candidate = Some(id);
                        self.dominant_candidate_ticks = 1;
                    }
                    let hold = if dominant_active {
                        self.config.dominant_hold_ticks
                    } else {
                        1
                    };
                    if self.dominant_candidate_ticks >= hold {
                        self.dominant = Some(id);
                        self.dominant_candidate = None;
                        self.events.push(PipelineEvent::DominantSpeakerChanged {
                            source_id: Some(id),
                        });
                    }
                }
            }
        }
    }

    /// A held send side: players and tones stay queued for when it runs, the bot's live
    /// frames are discarded (a stream played late would only be late), the encoder rests.
    fn hold_send(&mut self) {
        self.stats.sent_level_dbov = SILENCE_DBOV;
        self.stats.send_held_ticks += 1;
        self.sent_last_tick = false;
        self.bot_sending = false;
        self.bot_waited = 0;
        while self.bot_rx.pop().is_some() {
            self.stats.bot_frames_discarded_while_held += 1;
        }
    }

    /// Holds (`false`) or runs (`true`, the default) the send side. Graph's media platform
    /// tells a bot when its audio is heard (`AudioSendStatus` active): media sent before is
    /// discarded. A bot's SDK holds the send side until then so that the first words of a
    /// greeting reach the far end: while held nothing is encoded or sent, the players and
    /// queued tones wait (their audio is played from its start once active), and frames the
    /// bot streams live are discarded and counted. The RTP clock runs on, so the first packet
    /// after a hold is a new talk spurt (marker set, timestamp jump).
    pub fn set_send_active(&mut self, active: bool) {
        self.send_active = active;
    }

    /// Whether the send side runs (see [`set_send_active`](Self::set_send_active)).
    pub fn send_active(&self) -> bool {
        self.send_active
    }

    /// Takes the bot's next frame through the prebuffering send queue.
    fn next_bot_frame(&mut self) -> Option<BotFrame> {
        if !self.bot_sending {
            if self.bot_rx.is_empty() {
                self.bot_waited = 0;
                return None;
            }
            // Hold the first frames back by a fixed delay: the queue then keeps that cushion
            // whatever size the bot's bursts are.
            self.bot_waited += 1;
            if self.bot_waited <= self.config.send_prebuffer_frames {
                return None;
            }
            self.bot_waited = 0;
            self.bot_sending = true;
        }
        match self.bot_rx.pop() {
            Some(f) => Some(f),
            None => {
                // The bot ran dry: collect a new cushion before sending again.
                self.stats.bot_underruns += 1;
                self.bot_sending = false;
                None
            }
        }
    }

    fn send(&mut self, now: Duration) {
        self.out_len = 0;
        if let Some(pcm) = self.pcm_send.as_deref_mut() {
            pcm.ready = false;
        }
        let ts = self.next_ts;
        // RTP time advances every tick, sent or not: after a pause the receiver sees the
        // timestamp jump by the pause's length with contiguous sequence numbers (DTX).
        self.next_ts = self.next_ts.wrapping_add(SAMPLES_PER_FRAME_48K as u32);
        if !self.send_active {
            self.hold_send();
            return;
        }
        self.follow_loss_reports();

        let mut any_input = false;
        // Inputs carrying audio (a packet counts as audio): passthrough needs exactly one.
        let mut audible = 0usize;
        let mut has_packet = false;
        if let Some(frame) = self.next_bot_frame()
            && let Ok(input) = self.send_mixer.input_mut(self.bot_source)
        {
            any_input = true;
            match frame {
                BotFrame::Pcm48k(f) => input.copy_from_slice(&f),
                BotFrame::Pcm16k(samples) => {
                    let ok = s16_to_f32(&samples, &mut self.scratch16[..]).is_ok()
                        && self.upsampler.process(&self.scratch16, input).is_ok();
                    if !ok {
                        self.stats.resample_errors += 1;
                        input.fill(0.0);
                    }
                }
            }
            // A bot streaming silence between its turns does not stop a prompt's passthrough.
            if !is_digital_silence(input) {
                audible += 1;
            }
        }
        let mut i = 0;
        while i < self.players.len() {
            let p = &self.players[i];
            if let Some(frame) = p.rx.pop() {
                any_input = true;
                let _ = self.send_mixer.push(p.source, &frame.pcm);
                match frame.packet {
                    Some(packet) => {
                        audible += 1;
                        if !has_packet {
                            has_packet = true;
                            self.pass.packet = packet;
                        }
                    }
                    None if !is_digital_silence(&frame.pcm) => audible += 1,
                    None => {}
                }
            } else if p.rx.is_finished() {
                let p = self.players.swap_remove(i);
                let _ = self.send_mixer.remove_source(p.source);
                continue;
            }
            i += 1;
        }
        if self.pcm_send.is_some() {
            self.send_pcm(any_input, now);
            return;
        }
        if let Some(pt) = self.config.telephone_event_payload_type
            && self.send_tone(pt, ts)
        {
            // The tone replaces this tick's audio; the mix is still taken so the sources'
            // frames of this tick do not linger into the next.
            if any_input {
                let _ = self.send_mixer.mix();
            }
            return;
        }
        let frame: &Frame48 = if any_input {
            self.send_mixer.mix()
        } else {
            &SILENT_FRAME_48
        };
        let passthrough = has_packet && audible == 1 && self.config.opus_passthrough;
        if has_packet && !passthrough {
            self.stats.passthrough_mixed += 1;
        }
        // Digital silence (nothing to send, or frames of zeros): the encoder runs until it
        // has told the far end to play comfort noise (libopus DTX), then rests until audio
        // comes back — a listen-only call costs no encoding — while its last update goes out
        // again every 400 ms, as libopus would send it. Without DTX silence is encoded and
        // sent, keeping the stream flowing as configured.
        let silent = !any_input || is_digital_silence(frame);
        let update;
        let (payload, level): (&[u8], AudioLevel) = if passthrough {
            // The player's packet is this tick's payload: no encoding. The encoder's history
            // stops here; it is reset before it next runs.
            self.rest.wake();
            self.pass.encoder_stale = true;
            self.stats.passthrough_frames += 1;
            let sent_dbov = level_dbov(&frame[..]);
            self.stats.sent_level_dbov = sent_dbov;
            let level = AudioLevel {
                voice: sent_dbov >= self.config.speech_threshold_dbov,
                level_dbov: crate::rtp::dbov_of(&frame[..]),
            };
            (self.pass.packet.as_bytes(), level)
        } else if silent && self.rest.is_resting() {
            self.stats.sent_level_dbov = SILENCE_DBOV;
            self.stats.dtx_ticks += 1;
            self.stats.encoder_rested_ticks += 1;
            let Some(due) = self.rest.tick() else {
                self.sent_last_tick = false;
                return;
            };
            self.stats.comfort_noise_updates += 1;
            update = due;
            let silence = AudioLevel {
                voice: false,
                level_dbov: 127,
            };
            (update.as_slice(), silence)
        } else {
            self.rest.wake();
            let sent_dbov = level_dbov(&frame[..]);
            self.stats.sent_level_dbov = sent_dbov;
            let level = AudioLevel {
                voice: sent_dbov >= self.config.speech_threshold_dbov,
                level_dbov: crate::rtp::dbov_of(&frame[..]),
            };
            let Some(encoder) = self.encoder.as_mut() else {
                self.sent_last_tick = false;
                return;
            };
            if self.pass.encoder_stale {
                // Back from passthrough: the far end's decoder state now comes from the
                // prompt's packets, which this encoder never made, and its own history is
                // audio from before them. After a reset its first packet is coded on its own
                // (no prediction from earlier frames) and its look-ahead holds no stale audio.
                // Priming it with the last passed-through frame was measured worse: the next
                // packet then predicts from a frame the far end never received
                // (docs/media-pipeline.md, "Opus passthrough").
                self.pass.encoder_stale = false;
                self.stats.encoder_resets += 1;
                if encoder.reset().is_err() {
                    self.stats.encode_errors += 1;
                }
            }
            self.stats.frames_encoded += 1;
            match encoder.encode(frame) {
                Ok(EncodedFrame::Voice(p)) => {
                    if silent {
                        self.rest.keep_update(p);
                    }
                    (p, level)
                }
                Ok(EncodedFrame::Dtx) => {
                    self.stats.dtx_ticks += 1;
                    self.sent_last_tick = false;
                    if silent {
                        self.rest.start();
                    }
                    return;
                }
                Err(_) => {
                    self.stats.encode_errors += 1;
                    self.sent_last_tick = false;
                    return;
                }
            }
        };
        let mut header = RtpHeader::new(
            self.config.payload_type,
            self.next_seq,
            ts,
            self.config.local_ssrc,
        );
        // RFC 3551 §4.1: the marker flags the first packet of a talk spurt.
        header.marker = !self.sent_last_tick;
        let level_byte = [level.to_byte()];
        let ext_storage;
        let extensions: &[HeaderExtension<'_>] = match self.config.audio_level_ext_id {
            Some(id) => {
                ext_storage = [HeaderExtension {
                    id,
                    data: &level_byte,
                }];
                &ext_storage
            }
            None => &[],
        };
        let spec = RtpPacketSpec {
            header,
            extensions,
            payload,
            padding: 0,
        };
        match spec.write(&mut self.out_packet[..]) {
            Ok(n) => {
                self.out_len = n;
                self.next_seq = self.next_seq.wrapping_add(1);
                self.sent_last_tick = true;
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += n as u64;
            }
            Err(_) => {
                self.stats.encode_errors += 1;
                self.sent_last_tick = false;
            }
        }
    }

    /// The send mix as PCM ([`SendOutput::Pcm`]), on the same notion of silence as the RTP
    /// side's DTX: nothing while the bot, its players and sources are silent; the first
    /// frame after silence (or a hold) starts a spurt (`first_of_spurt`, a fresh resampler).
    /// The tick after a spurt's last frame sends one more, which carries the last 5 ms of the
    /// spurt that were still inside the resampler, then zeros.
    fn send_pcm(&mut self, any_input: bool, now: Duration) {
        let Some(pcm) = self.pcm_send.as_deref_mut() else {
            return;
        };
        let frame: &Frame48 = if any_input {
            self.send_mixer.mix()
        } else {
            &SILENT_FRAME_48
        };
        let silent = !any_input || is_digital_silence(frame);
        self.stats.sent_level_dbov = if silent {
            SILENCE_DBOV
        } else {
            level_dbov(&frame[..])
        };
        if silent && !self.sent_last_tick {
            return;
        }
        let first = !self.sent_last_tick;
        if first {
            // Whatever the resampler held belongs to audio that was never sent (a hold).
            pcm.down.reset();
        }
        match pcm
            .down
            .process(frame, &mut pcm.scratch, &mut pcm.out.frame)
        {
            Ok(()) => {
                pcm.out.timestamp = now;
                pcm.out.first_of_spurt = first;
                pcm.ready = true;
                self.stats.pcm_frames_sent += 1;
                // The tail frame ends the spurt.
                self.sent_last_tick = !silent;
            }
            Err(_) => {
                self.stats.resample_errors += 1;
                self.sent_last_tick = false;
            }
        }
    }

    /// Sends this tick's telephone-event packet instead of audio while a tone is held;
    /// false when audio goes out as usual.
    fn send_tone(&mut self, payload_type: u8, ts: u32) -> bool {
        if self.dtmf_out.is_idle()
            && let Some(request) = self.tone_rx.pop()
        {
            let _ = self.dtmf_out.start(request, ts);
        }
        let SendStep::Packet { packet, finished } =
            self.dtmf_out.step(SAMPLES_PER_FRAME_48K as u32)
        else {
            return false;
        };
        let mut header = RtpHeader::new(
            payload_type,
            self.next_seq,
            packet.timestamp,
            self.config.local_ssrc,
        );
        header.marker = packet.marker;
        let payload = packet.event.to_bytes();
        let spec = RtpPacketSpec {
            header,
            extensions: &[],
            payload: &payload,
            padding: 0,
        };
        if let Ok(n) = spec.write(&mut self.out_packet[..]) {
            self.out_len = n;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.stats.dtmf_packets_sent += 1;
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += n as u64;
        }
        // Audio after the tone starts a new talk spurt (marker set).
        self.sent_last_tick = false;
        if finished && let Some(tone) = Tone::from_event(packet.event.event) {
            self.events.push(PipelineEvent::ToneSent { tone });
        }
        true
    }

    /// Pushes this tick's outputs into the queues a threaded caller connected.
    fn hand_off(&mut self, now: Duration) {
        if let Some(tx) = &self.packet_tx
            && self.out_len > 0
        {
            let mut item = OutgoingRtp {
                len: self.out_len,
                data: [0; MAX_RTP_PACKET],
            };
            item.data[..self.out_len].copy_from_slice(&self.out_packet[..self.out_len]);
            let _ = tx.push(item);
            self.stats.packet_outbox = tx.stats();
        }
        if let (Some(tx), Some(pcm)) = (&self.pcm_tx, self.pcm_send.as_deref())
            && pcm.ready
        {
            let _ = tx.push(pcm.out);
            self.stats.pcm_outbox = tx.stats();
        }
        if let Some(tx) = &self.bot_audio_tx {
            let mut item = BotAudio16k {
                timestamp: now,
                is_silence: self.mixed_silent,
                mixed: *self.bot_mixed_16k,
                unmixed_len: 0,
                unmixed: [UnmixedPcm16k::SILENT; MAX_UNMIXED_HANDOFF],
                active_len: 0,
                active_speakers: [0; MAX_ACTIVE_HANDOFF],
                dominant_speaker: self.dominant,
            };
            for (slot, u) in item.unmixed.iter_mut().zip(self.unmixed()) {
                if let Some(pcm) = u.pcm16k {
                    *slot = UnmixedPcm16k {
                        source_id: u.source_id,
                        level_dbov: u.level_dbov,
                        is_silence: u.is_silence,
                        pcm: *pcm,
                    };
                    item.unmixed_len += 1;
                }
            }
            for (slot, &id) in item.active_speakers.iter_mut().zip(&self.active) {
                *slot = id;
                item.active_len += 1;
            }
            let _ = tx.push(item);
            self.stats.bot_audio_outbox = tx.stats();
        }
    }

    /// Connects a queue that receives every outgoing RTP packet (for the transport's task);
    /// a full queue drops its oldest packet (counted in `stats().packet_outbox`).
    pub fn packet_outbox(&mut self, capacity: usize) -> Consumer<OutgoingRtp> {
        let (tx, rx) = queue::bounded(capacity.max(1));
        self.packet_tx = Some(tx);
        rx
    }

    /// Sends every outgoing RTP packet into an existing queue, so that several pipelines
    /// (a conference sending one stream per speaker) feed one transport task through one
    /// queue. Replaces any outbox connected before. The queue's counters are shared by all its
    /// producers: `stats().packet_outbox` then counts every pipeline's packets (as read at
    /// this pipeline's last tick).
    pub fn connect_packet_outbox(&mut self, tx: Producer<OutgoingRtp>) {
        self.packet_tx = Some(tx);
    }

    /// Connects a queue that receives, every tick, what the bot hears as Graph's 16 kHz
    /// buffers: the mix, up to four unmixed frames, active and dominant speakers. A full
    /// queue drops its oldest item (counted in `stats().bot_audio_outbox`). Refused for a
    /// [`BotAudioFormat::Pcm48k`] pipeline, whose frames are read through the accessors.
    pub fn bot_audio_outbox(
        &mut self,
        capacity: usize,
    ) -> Result<Consumer<BotAudio16k>, PipelineError> {
        if self.bot_down.is_none() {
            return Err(PipelineError::BadConfig {
                name: "bot_format (16 kHz hand-off needs Pcm16k)",
                value: 0,
            });
        }
        let (tx, rx) = queue::bounded(capacity.max(1));
        self.bot_audio_tx = Some(tx);
        Ok(rx)
    }

    /// Connects a queue that receives every PCM frame the send side produces (for the task
    /// writing the WebSocket); a full queue drops its oldest frame (counted in
    /// `stats().pcm_outbox`). Refused unless the pipeline sends [`SendOutput::Pcm`].
    pub fn pcm_outbox(&mut self, capacity: usize) -> Result<Consumer<PcmFrameOut>, PipelineError> {
        if self.pcm_send.is_none() {
            return Err(PipelineError::WrongSendOutput {
                output: self.config.send_output,
            });
        }
        let (tx, rx) = queue::bounded(capacity.max(1));
        self.pcm_tx = Some(tx);
        Ok(rx)
    }

    /// The PCM frame produced by the last tick, if any ([`SendOutput::Pcm`]; valid until the
    /// next tick).
    pub fn outgoing_pcm(&self) -> Option<&PcmFrameOut> {
        self.pcm_send
            .as_deref()
            .and_then(|p| p.ready.then_some(&p.out))
    }

    /// The RTP packet produced by the last tick, if any (valid until the next tick).
    pub fn outgoing_packet(&self) -> Option<&[u8]> {
        (self.out_len > 0).then(|| &self.out_packet[..self.out_len])
    }

    /// The mix of all remote streams for the bot, 48 kHz.
    pub fn bot_frame_48k(&self) -> &Frame48 {
        self.receive_mixer.mixed()
    }

    /// The mix as 640 bytes of s16 16 kHz (only with [`BotAudioFormat::Pcm16k`]).
    pub fn bot_frame_16k(&self) -> Option<&[u8; BYTES_PER_FRAME_16K_S16]> {
        self.bot_down.as_ref().map(|_| &*self.bot_mixed_16k)
    }

    /// Whether the last mixed frame is silence (Graph's `IsSilence`).
    pub fn is_silence(&self) -> bool {
        self.mixed_silent
    }

    /// Unmixed frames of the active speakers, loudest first (at most `max_unmixed`).
    pub fn unmixed(&self) -> impl Iterator<Item = UnmixedAudio<'_>> + '_ {
        let threshold = self.config.speech_threshold_dbov;
        self.unmixed.iter().map(move |&i| {
            let s = &self.streams[i];
            UnmixedAudio {
                source_id: s.source_id,
                ssrc: s.ssrc,
                level_dbov: s.level_dbov,
                is_silence: s.level_dbov < threshold,
                pcm48: &s.pcm,
                pcm16k: self.bot_down.as_ref().map(|_| &*s.pcm16k),
            }
        })
    }

    /// Source ids of everyone speaking (with a short hangover), loudest first; the bot's own
    /// stream is never among them (Graph's `ActiveSpeakers`).
    pub fn active_speakers(&self) -> &[u32] {
        &self.active
    }

    /// The dominant speaker's source id, if anyone has been speaking.
    pub fn dominant_speaker(&self) -> Option<u32> {
        self.dominant
    }

    /// Next pending event.
    pub fn poll_event(&mut self) -> Option<PipelineEvent> {
        self.events.pop()
    }

    /// The call-wide counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Stats of every live remote stream.
    pub fn stream_stats(&self) -> impl Iterator<Item = StreamStats> + '_ {
        self.streams
            .iter()
            .filter(|s| s.live)
            .map(RemoteStream::stats)
    }

    /// The call's RTP receive counters over all its streams so far (see [`RtpReceiveTotals`]).
    /// A slot's jitter buffer keeps its counts when the slot closes or takes a new stream, so
    /// summing every slot, live or not, loses nothing. Allocation-free: a loop over the slots.
    pub fn rtp_receive_totals(&self) -> RtpReceiveTotals {
        let mut totals = RtpReceiveTotals::default();
        for input in self.streams.iter().filter_map(|s| s.rtp_in.as_ref()) {
            let j = input.jitter.stats();
            totals.add(&RtpReceiveTotals {
                packets: j.received,
                lost: j.lost,
                concealed: j.concealed,
                fec_recovered: j.fec_recovered,
            });
        }
        totals
    }

    /// Sets the expected loss the encoder protects against. A pipeline that takes receiver
    /// reports ([`use_loss_reports`](Self::use_loss_reports)) sets it itself.
    /// Without an encoder ([`SendOutput::Pcm`]) it is only recorded in the stats.
    pub fn set_expected_loss_pct(&mut self, pct: u8) -> Result<(), PipelineError> {
        self.stats.expected_loss_pct = match self.encoder.as_mut() {
            Some(encoder) => {
                encoder.set_expected_loss_pct(pct)?;
                encoder.config().expected_loss_pct
            }
            None => pct.min(100),
        };
        Ok(())
    }

    /// Drives in-band FEC from the far end's receiver reports, which the transport writes
    /// into `reports` ([`crate::feedback`]): from now on no FEC on a clean path, FEC with the
    /// reported loss's step when there is loss. Without it the encoder keeps its configured
    /// FEC and expected loss.
    pub fn use_loss_reports(&mut self, reports: Arc<LossReports>) -> Result<(), PipelineError> {
        let fec = AdaptiveFec::new();
        self.apply_expected_loss(fec.expected_loss_pct())?;
        self.feedback = Some((reports, fec));
        Ok(())
    }

    fn apply_expected_loss(&mut self, pct: u8) -> Result<(), PipelineError> {
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.set_inband_fec(pct > 0)?;
        }
        self.set_expected_loss_pct(pct)
    }

    /// Takes a new receiver report, if one came since the last tick.
    fn follow_loss_reports(&mut self) {
        let Some((reports, fec)) = &mut self.feedback else {
            return;
        };
        let (count, fraction) = reports.latest();
        if count == self.stats.loss_reports {
            return;
        }
        let pct = fec.on_report(fraction);
        self.stats.loss_reports = count;
        self.stats.remote_fraction_lost = fraction;
        if pct != self.stats.expected_loss_pct && self.apply_expected_loss(pct).is_err() {
            self.stats.encode_errors += 1;
        }
    }
}

/// libopus sends a comfort-noise update every 400 ms in DTX.
const DTX_UPDATE_TICKS: u32 = 20;

/// Largest comfort-noise update kept for repeating (libopus's are a few bytes).
const COMFORT_NOISE_MAX: usize = 64;

/// The send side's encoder at rest on digital silence: it is not called until audio returns,
/// and libopus's comfort-noise refresh is imitated by repeating its last packet of digital
/// silence every 400 ms (for digital silence every update is the same).
#[derive(Debug, Default)]
struct EncoderRest {
    /// Ticks spent at rest; `None` while the encoder runs.
    rested: Option<u32>,
    /// The encoder's last packet of digital silence (`len` bytes of `bytes`).
    update: ComfortNoise,
}

/// A small packet kept by value, so the tick copies it without allocating.
#[derive(Debug, Clone, Copy)]
struct ComfortNoise {
    bytes: [u8; COMFORT_NOISE_MAX],
    len: usize,
}

impl ComfortNoise {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for ComfortNoise {
    fn default() -> Self {
        ComfortNoise {
            bytes: [0; COMFORT_NOISE_MAX],
            len: 0,
        }
    }
}

impl EncoderRest {
    fn is_resting(&self) -> bool {
        self.rested.is_some()
    }

    /// The encoder said DTX on digital silence: rest from the next tick.
    fn start(&mut self) {
        self.rested = Some(0);
    }

    /// Audio again: the encoder runs.
    fn wake(&mut self) {
        self.rested = None;
    }

    /// Keeps a packet the encoder made of digital silence, for repeating at rest.
    fn keep_update(&mut self, packet: &[u8]) {
        if packet.len() <= COMFORT_NOISE_MAX {
            self.update.bytes[..packet.len()].copy_from_slice(packet);
            self.update.len = packet.len();
        }
    }

    /// One more tick at rest: the update to send now, every `DTX_UPDATE_TICKS`.
    fn tick(&mut self) -> Option<ComfortNoise> {
        let rested = self.rested.as_mut()?;
        *rested = rested.wrapping_add(1);
        (self.update.len > 0 && rested.is_multiple_of(DTX_UPDATE_TICKS)).then_some(self.update)
    }
}

/// The level [`level_dbov`] gives digital silence.
const SILENCE_DBOV: f32 = -127.0;

/// True when every sample is below half a 16-bit step: nothing a far end could hear.
fn is_digital_silence(frame: &Frame48) -> bool {
    frame.iter().all(|s| s.abs() < 0.5 / 32_768.0)
}

// The scheduler moves calls between worker threads, and bots send from their own threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<CallPipeline>();
    send::<BotSender>();
    send::<RtpInbox>();
    send::<PcmInbox>();
    send::<PlayerSender>();
};
