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
//! ([`PcmPlayout`](crate::pcm::PcmPlayout)) and are upsampled to 48 kHz where RTP streams are
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

mod receive;
mod send;
mod speakers;

use receive::{ReceiveSide, RemoteStream};
use send::SendSide;
use speakers::Speakers;

use crate::codec::{CodecError, EncoderConfig, OpusPacket};
use crate::dtmf::{DtmfStats, Tone, ToneRequest};
use crate::feedback::LossReports;
use crate::frame::{
    BYTES_PER_FRAME_16K_S16, Frame16S16, Frame48, SAMPLES_PER_FRAME_16K, SILENT_FRAME_48,
};
use crate::jitter::{JitterConfig, JitterStats};
use crate::mixer::MixerError;
use crate::pcm::{PcmFrame, PcmFrameOut, PcmLengthError, PcmRate};
use crate::queue::{self, Consumer, Producer, Push, QueueStats};
use crate::resample::ResampleError;
use crate::rtp::RtpErrorCounters;

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
    /// [`PcmPlayout::jitter_stats`](crate::pcm::PcmPlayout::jitter_stats) describes.
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

/// What every part of the pipeline reads or writes beside its own state: the settings, the
/// pending events and the call's counters.
struct Context<'a> {
    config: &'a PipelineConfig,
    events: &'a mut EventRing,
    stats: &'a mut PipelineStats,
}

/// The queues between the pipeline and other threads: the inbound ones it drains on its
/// tick, the producer ends it hands out ([`BotSender`], [`ToneSender`]), the outboxes a
/// threaded caller connected, and a transport driven from the tick.
struct Handles {
    rtp_rx: Consumer<(Bytes, Duration)>,
    rtp_tx: Producer<(Bytes, Duration)>,
    /// The PCM inbound queue, made when the first [`PcmInbox`] is taken.
    pcm_queue: OnceLock<(Producer<PcmFrameIn>, Consumer<PcmFrameIn>)>,
    bot_tx: Producer<BotFrame>,
    tone_tx: Producer<ToneRequest>,
    packet_tx: Option<Producer<OutgoingRtp>>,
    pcm_tx: Option<Producer<PcmFrameOut>>,
    bot_audio_tx: Option<Producer<BotAudio16k>>,
    /// A transport driven from this call's tick ([`CallPipeline::drive_transport`]).
    transport: Option<Box<dyn TickTransport>>,
}

/// The per-call pipeline. See the module docs.
///
/// Its state is cut as str0m cuts a stream into `StreamRx` and `StreamTx`: the receive side
/// (remote streams, decoding, the bot's mix), the speakers (unmixed frames, active and
/// dominant speaker), the send side (the bot's queue, players, encoding, tones) and the
/// hand-off queues; each side's step takes the settings, events and counters it writes.
pub struct CallPipeline {
    config: PipelineConfig,
    receive: ReceiveSide,
    speakers: Speakers,
    send: SendSide,
    handles: Handles,
    events: EventRing,
    stats: PipelineStats,
}

impl std::fmt::Debug for CallPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallPipeline")
            .field("local_ssrc", &self.config.local_ssrc)
            .field(
                "streams",
                &self.receive.streams.iter().filter(|s| s.live).count(),
            )
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
        let (bot_tx, bot_rx) = queue::bounded(config.send_queue_frames.max(1));
        let (rtp_tx, rtp_rx) = queue::bounded(config.inbound_queue_packets.max(1));
        let (tone_tx, tone_rx) = queue::bounded(TONE_QUEUE);
        Ok(CallPipeline {
            receive: ReceiveSide::new(&config)?,
            speakers: Speakers::new(&config),
            send: SendSide::new(&config, bot_rx, tone_rx)?,
            handles: Handles {
                rtp_rx,
                rtp_tx,
                pcm_queue: OnceLock::new(),
                bot_tx,
                tone_tx,
                packet_tx: None,
                pcm_tx: None,
                bot_audio_tx: None,
                transport: None,
            },
            events: EventRing {
                items: [None; EVENT_CAPACITY],
                head: 0,
                len: 0,
                dropped: 0,
            },
            stats: PipelineStats {
                expected_loss_pct: config.encoder.expected_loss_pct.min(100),
                sent_level_dbov: SILENCE_DBOV,
                ..PipelineStats::default()
            },
            config,
        })
    }

    /// The pipeline's parts, each borrowed on its own, and the [`Context`] they share.
    fn parts(
        &mut self,
    ) -> (
        Context<'_>,
        &mut ReceiveSide,
        &mut Speakers,
        &mut SendSide,
        &mut Handles,
    ) {
        let cx = Context {
            config: &self.config,
            events: &mut self.events,
            stats: &mut self.stats,
        };
        (
            cx,
            &mut self.receive,
            &mut self.speakers,
            &mut self.send,
            &mut self.handles,
        )
    }

    /// The pipeline's settings.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// A handle for the bot to send frames from any thread.
    pub fn bot_sender(&self) -> BotSender {
        BotSender {
            tx: self.handles.bot_tx.clone(),
        }
    }

    /// A handle for the network side to queue received packets from any thread; the next
    /// [`tick`](Self::tick) feeds them to [`push_rtp`](Self::push_rtp) with their arrival times.
    pub fn rtp_inbox(&self) -> RtpInbox {
        RtpInbox {
            tx: self.handles.rtp_tx.clone(),
        }
    }

    /// A handle for the network side to queue received PCM frames from any thread; the next
    /// [`tick`](Self::tick) feeds them to [`push_pcm`](Self::push_pcm) with their arrival
    /// times. The first call makes the queue (`pcm_inbound_queue_frames` frames); later calls
    /// and clones share it.
    pub fn pcm_inbox(&self) -> PcmInbox {
        let (tx, _) = self
            .handles
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
            tx: self.handles.tone_tx.clone(),
        })
    }

    /// Adds a player source mixed into what the bot sends (allocates its queue).
    pub fn add_player(&mut self, queue_frames: usize) -> Result<PlayerSender, PipelineError> {
        self.send.add_player(queue_frames, &self.config)
    }

    /// Maps an SSRC to the Graph media source id reported for it (from the roster).
    pub fn assign_source_id(&mut self, ssrc: u32, source_id: u32) {
        self.receive.assign_source_id(ssrc, source_id);
    }

    /// Feeds one received RTP packet (after SRTP). Malformed or foreign packets are counted
    /// in [`PipelineStats`] and dropped.
    pub fn push_rtp(&mut self, packet: Bytes, now: Duration) {
        let (mut cx, receive, speakers, ..) = self.parts();
        receive.push_rtp(packet, now, &mut cx, speakers);
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
        let (mut cx, receive, speakers, ..) = self.parts();
        receive.push_pcm(key, &frame, now, &mut cx, speakers);
        Ok(())
    }

    /// Runs one 20 ms step at `now`. Never blocks; allocates nothing in steady state (a
    /// transport driven from the tick, [`drive_transport`](Self::drive_transport), may).
    pub fn tick(&mut self, now: Duration) -> TickReport {
        let mut transport = self.handles.transport.take();
        if let Some(t) = transport.as_mut() {
            t.before_tick(now);
        }
        let report = self.tick_media(now);
        if let Some(t) = transport.as_mut() {
            t.after_tick(now);
        }
        self.handles.transport = transport;
        report
    }

    /// Has `transport` run on this call's own tick, on whichever media worker ticks it: its
    /// [`before_tick`](TickTransport::before_tick) first (datagrams in, timers; what it
    /// receives goes into this pipeline's [`RtpInbox`] and is played in the same tick), its
    /// [`after_tick`](TickTransport::after_tick) last (the tick's packets out). Replaces
    /// any transport set before.
    pub fn drive_transport(&mut self, transport: Box<dyn TickTransport>) {
        self.handles.transport = Some(transport);
    }

    fn tick_media(&mut self, now: Duration) -> TickReport {
        let (mut cx, receive, speakers, send, handles) = self.parts();
        cx.stats.ticks += 1;
        // Bounded by the queue's size so a flooding sender cannot hold the tick.
        for _ in 0..handles.rtp_rx.capacity() {
            match handles.rtp_rx.pop() {
                Some((packet, arrival)) => receive.push_rtp(packet, arrival, &mut cx, speakers),
                None => break,
            }
        }
        cx.stats.inbound_queue = handles.rtp_rx.stats();
        if let Some((_, rx)) = handles.pcm_queue.get() {
            for _ in 0..rx.capacity() {
                let Some(item) = rx.pop() else {
                    break;
                };
                receive.push_pcm(item.key, &item.frame, item.arrival, &mut cx, speakers);
            }
            cx.stats.pcm_inbound_queue = rx.stats();
        }
        receive.poll_dtmf(now, &mut cx);
        receive.tick(now, &mut cx, speakers);
        speakers.update(&receive.streams, cx.config, cx.events);
        send.tick(now, &mut cx);
        self.hand_off(now);
        self.stats.bot_queue = self.send.bot_queue_stats();
        self.stats.events_dropped = self.events.dropped;
        TickReport {
            is_silence: self.receive.mixed_silent,
            streams_playing: self.receive.streams_playing(),
            unmixed: self.speakers.unmixed.len(),
            packet_ready: self.send.outgoing_packet().is_some(),
            pcm_ready: self.send.outgoing_pcm().is_some(),
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
        self.send.active = active;
    }

    /// Whether the send side runs (see [`set_send_active`](Self::set_send_active)).
    pub fn send_active(&self) -> bool {
        self.send.active
    }

    /// Pushes this tick's outputs into the queues a threaded caller connected.
    fn hand_off(&mut self, now: Duration) {
        let handles = &self.handles;
        if let Some(tx) = &handles.packet_tx
            && let Some(packet) = self.send.outgoing_packet()
        {
            let mut item = OutgoingRtp {
                len: packet.len(),
                data: [0; MAX_RTP_PACKET],
            };
            item.data[..packet.len()].copy_from_slice(packet);
            let _ = tx.push(item);
            self.stats.packet_outbox = tx.stats();
        }
        if let (Some(tx), Some(out)) = (&handles.pcm_tx, self.send.outgoing_pcm()) {
            let _ = tx.push(*out);
            self.stats.pcm_outbox = tx.stats();
        }
        if let Some(tx) = &handles.bot_audio_tx {
            let mut item = BotAudio16k {
                timestamp: now,
                is_silence: self.receive.mixed_silent,
                mixed: *self.receive.mixed_16k,
                unmixed_len: 0,
                unmixed: [UnmixedPcm16k::SILENT; MAX_UNMIXED_HANDOFF],
                active_len: 0,
                active_speakers: [0; MAX_ACTIVE_HANDOFF],
                dominant_speaker: self.speakers.dominant,
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
            for (slot, &id) in item.active_speakers.iter_mut().zip(&self.speakers.active) {
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
        self.handles.packet_tx = Some(tx);
        rx
    }

    /// Sends every outgoing RTP packet into an existing queue, so that several pipelines
    /// (a conference sending one stream per speaker) feed one transport task through one
    /// queue. Replaces any outbox connected before. The queue's counters are shared by all its
    /// producers: `stats().packet_outbox` then counts every pipeline's packets (as read at
    /// this pipeline's last tick).
    pub fn connect_packet_outbox(&mut self, tx: Producer<OutgoingRtp>) {
        self.handles.packet_tx = Some(tx);
    }

    /// Connects a queue that receives, every tick, what the bot hears as Graph's 16 kHz
    /// buffers: the mix, up to four unmixed frames, active and dominant speakers. A full
    /// queue drops its oldest item (counted in `stats().bot_audio_outbox`). Refused for a
    /// [`BotAudioFormat::Pcm48k`] pipeline, whose frames are read through the accessors.
    pub fn bot_audio_outbox(
        &mut self,
        capacity: usize,
    ) -> Result<Consumer<BotAudio16k>, PipelineError> {
        if !self.receive.has_16k() {
            return Err(PipelineError::BadConfig {
                name: "bot_format (16 kHz hand-off needs Pcm16k)",
                value: 0,
            });
        }
        let (tx, rx) = queue::bounded(capacity.max(1));
        self.handles.bot_audio_tx = Some(tx);
        Ok(rx)
    }

    /// Connects a queue that receives every PCM frame the send side produces (for the task
    /// writing the WebSocket); a full queue drops its oldest frame (counted in
    /// `stats().pcm_outbox`). Refused unless the pipeline sends [`SendOutput::Pcm`].
    pub fn pcm_outbox(&mut self, capacity: usize) -> Result<Consumer<PcmFrameOut>, PipelineError> {
        if !self.send.sends_pcm() {
            return Err(PipelineError::WrongSendOutput {
                output: self.config.send_output,
            });
        }
        let (tx, rx) = queue::bounded(capacity.max(1));
        self.handles.pcm_tx = Some(tx);
        Ok(rx)
    }

    /// The PCM frame produced by the last tick, if any ([`SendOutput::Pcm`]; valid until the
    /// next tick).
    pub fn outgoing_pcm(&self) -> Option<&PcmFrameOut> {
        self.send.outgoing_pcm()
    }

    /// The RTP packet produced by the last tick, if any (valid until the next tick).
    pub fn outgoing_packet(&self) -> Option<&[u8]> {
        self.send.outgoing_packet()
    }

    /// The mix of all remote streams for the bot, 48 kHz.
    pub fn bot_frame_48k(&self) -> &Frame48 {
        self.receive.mixed()
    }

    /// The mix as 640 bytes of s16 16 kHz (only with [`BotAudioFormat::Pcm16k`]).
    pub fn bot_frame_16k(&self) -> Option<&[u8; BYTES_PER_FRAME_16K_S16]> {
        self.receive.has_16k().then_some(&*self.receive.mixed_16k)
    }

    /// Whether the last mixed frame is silence (Graph's `IsSilence`).
    pub fn is_silence(&self) -> bool {
        self.receive.mixed_silent
    }

    /// Unmixed frames of the active speakers, loudest first (at most `max_unmixed`).
    pub fn unmixed(&self) -> impl Iterator<Item = UnmixedAudio<'_>> + '_ {
        let threshold = self.config.speech_threshold_dbov;
        let has_16k = self.receive.has_16k();
        self.speakers.unmixed.iter().map(move |&i| {
            let s = &self.receive.streams[i];
            UnmixedAudio {
                source_id: s.source_id,
                ssrc: s.ssrc,
                level_dbov: s.level_dbov,
                is_silence: s.level_dbov < threshold,
                pcm48: &s.pcm,
                pcm16k: has_16k.then_some(&*s.pcm16k),
            }
        })
    }

    /// Source ids of everyone speaking (with a short hangover), loudest first; the bot's own
    /// stream is never among them (Graph's `ActiveSpeakers`).
    pub fn active_speakers(&self) -> &[u32] {
        &self.speakers.active
    }

    /// The dominant speaker's source id, if anyone has been speaking.
    pub fn dominant_speaker(&self) -> Option<u32> {
        self.speakers.dominant
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
        self.receive
            .streams
            .iter()
            .filter(|s| s.live)
            .map(RemoteStream::stats)
    }

    /// The call's RTP receive counters over all its streams so far (see [`RtpReceiveTotals`]).
    /// A slot's jitter buffer keeps its counts when the slot closes or takes a new stream, so
    /// summing every slot, live or not, loses nothing. Allocation-free: a loop over the slots.
    pub fn rtp_receive_totals(&self) -> RtpReceiveTotals {
        let mut totals = RtpReceiveTotals::default();
        for jitter in self.receive.jitter_buffers() {
            let j = jitter.stats();
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
        self.send.set_expected_loss_pct(pct, &mut self.stats)
    }

    /// Drives in-band FEC from the far end's receiver reports, which the transport writes
    /// into `reports` ([`crate::feedback`]): from now on no FEC on a clean path, FEC with the
    /// reported loss's step when there is loss. Without it the encoder keeps its configured
    /// FEC and expected loss.
    pub fn use_loss_reports(&mut self, reports: Arc<LossReports>) -> Result<(), PipelineError> {
        self.send.use_loss_reports(reports, &mut self.stats)
    }
}

/// The level [`level_dbov`] gives digital silence.
const SILENCE_DBOV: f32 = -127.0;

// The scheduler moves calls between worker threads, and bots send from their own threads.
const _: () = {
    const fn send<T: Send>() {}
    send::<CallPipeline>();
    send::<BotSender>();
    send::<RtpInbox>();
    send::<PcmInbox>();
    send::<PlayerSender>();
};
