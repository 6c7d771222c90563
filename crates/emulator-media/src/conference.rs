//! [`ConferenceMedia`]: the emulator's side of one call with a bot.
//!
//! ```text
//!            parties (speak a clip / echo the bot / silence; phone = 8 kHz band)
//!                │ one 48 kHz frame each per tick, muted → left out
//!                ▼
//!   Mixer (bot + parties) ──mix-minus(bot)──► bot leg CallPipeline ──► mixed RTP stream ──► bot
//!       ▲                 ──mix-minus(party)─► what each party hears
//!       │                  StreamLayout::PerSpeaker: one send-only CallPipeline per party,
//!       │                  SSRC = its source id ──────────────────────► RTP stream each ──► bot
//!   bot leg CallPipeline ◄── RTP from the bot (jitter buffer, Opus decode, PLC/FEC)
//!       └─► the bot's audio: echo parties, the mixer (next tick), the recording
//! ```
//!
//! Sans-IO, with the same contract as [`CallPipeline`]: packets ([`ConferenceMedia::push_rtp`]),
//! time ([`ConferenceMedia::tick`]) and commands go in; packets
//! ([`ConferenceMedia::outgoing_packets`] or a packet outbox), events and stats come out. The
//! caller owns sockets and clock. All RTP and Opus work is done by the media core's
//! `CallPipeline`s; all mixing by its `Mixer`.

use std::collections::VecDeque;
use std::time::Duration;

use appmedia_audio_io::playback::{PlayError, PromptPlayer, PromptQueue};
use appmedia_audio_io::record::{RecordingSink, Track};
use appmedia_media::codec::EncoderConfig;
use appmedia_media::dtmf::ToneRequest;
use appmedia_media::frame::{
    FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K, SILENT_FRAME_48, level_dbov,
};
use appmedia_media::jitter::JitterConfig;
use appmedia_media::mixer::{Mixer, SourceId};
use appmedia_media::pipeline::{
    BotAudioFormat, BotSender, CallPipeline, OutgoingRtp, PipelineConfig, PipelineError,
    PipelineEvent, PipelineStats, RtpInbox, StreamStats,
};
use appmedia_media::queue::{self, Consumer, Producer};
use bytes::Bytes;

use crate::bot_voice::{BotVoice, OVERLAY_CAPACITY, Taps};
use crate::party::{AudioSource, AudioSourceError, PartyAudio, PartyKind, PartySpec};
use crate::phone::{PhoneLine, PhoneLineError};

/// Source id the bot's audio is recorded under (`Track::Speaker`) unless configured.
pub const DEFAULT_BOT_SOURCE_ID: u32 = 1;
/// Commands waiting between ticks.
const COMMAND_CAPACITY: usize = 64;
/// Events kept between polls; the oldest is dropped (and counted) beyond this.
const EVENT_CAPACITY: usize = 64;

/// What the bot receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLayout {
    /// One RTP stream (SSRC `mixed_ssrc`) carrying every party but the bot.
    Mixed,
    /// One RTP stream per party, its SSRC the party's source id, carrying that party alone
    /// (packets flow while it speaks; Opus DTX keeps a quiet party's stream nearly empty).
    /// Every party gets one, phones included, with no top-four limit. The mixed stream is not
    /// sent then: the bot's media core mixes these streams itself and gets the mix and the
    /// unmixed frames from them, whereas a mixed stream on top would be heard twice.
    /// This is what the blob's `receiveUnmixedMeetingAudio` asks for.
    PerSpeaker,
}

impl StreamLayout {
    /// The layout the bot's blob asks for with `receiveUnmixedMeetingAudio`.
    pub fn for_receive_unmixed(receive_unmixed_meeting_audio: bool) -> Self {
        if receive_unmixed_meeting_audio {
            StreamLayout::PerSpeaker
        } else {
            StreamLayout::Mixed
        }
    }
}

/// Settings of one emulated call's media.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConferenceConfig {
    /// What the bot receives: the mix, or one stream per speaker.
    pub layout: StreamLayout,
    /// SSRC of the mixed stream sent to the bot.
    pub mixed_ssrc: u32,
    /// The bot's media source id: its recording track is `Track::Speaker(bot_source_id)`.
    pub bot_source_id: u32,
    /// Opus payload type negotiated with the bot.
    pub payload_type: u8,
    /// RFC 6464 audio level extension id, when negotiated.
    pub audio_level_ext_id: Option<u8>,
    /// The jitter buffer in front of the bot's stream.
    pub jitter: JitterConfig,
    /// The encoder of the streams sent to the bot.
    pub encoder: EncoderConfig,
    /// Parties at once.
    pub max_parties: usize,
    /// A frame louder than this (dBov) counts as speech.
    pub speech_threshold_dbov: f32,
    /// Seeds the first sequence numbers and timestamps of the streams (RFC 3550 wants them
    /// random; the caller picks, so runs are reproducible).
    pub rtp_seed: u32,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        ConferenceConfig {
            layout: StreamLayout::Mixed,
            mixed_ssrc: 0x00C0_FFEE,
            bot_source_id: DEFAULT_BOT_SOURCE_ID,
            payload_type: 111,
            audio_level_ext_id: Some(1),
            jitter: JitterConfig::default(),
            encoder: EncoderConfig::default(),
            max_parties: 16,
            speech_threshold_dbov: -50.0,
            rtp_seed: 0x1234_5678,
        }
    }
}

/// Why the conference or a party could not be set up, or a command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConferenceError {
    #[error(transparent)]
    /// The bot-facing pipeline could not be built.
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    /// A phone party's line could not be built.
    PhoneLine(#[from] PhoneLineError),
    #[error(transparent)]
    /// A party's audio behaviour could not be built.
    Audio(#[from] AudioSourceError),
    #[error("max_parties = {0} is out of range (1..=256)")]
    /// `max_parties` outside 1..=256.
    BadMaxParties(usize),
    #[error("source id {0} is reserved (0, the mixed stream's SSRC or the bot's source id)")]
    /// The source id is 0, the mixed stream's SSRC or the bot's.
    ReservedSourceId(u32),
    #[error("source id {0} is already used by another party")]
    /// Another party already has this source id.
    DuplicateSourceId(u32),
    #[error("participant id {0:?} is already in the call")]
    /// Another party already has this participant id.
    DuplicateParticipant(String),
    #[error("no party with source id {0}")]
    /// No party has this source id.
    UnknownParty(u32),
    #[error("all {0} party slots are in use")]
    /// Every party slot is taken (the maximum given).
    Full(usize),
    #[error("the command queue is full (the conference is not being ticked)")]
    /// The command queue is full: the conference is not being ticked.
    Busy,
    #[error("the conference is gone")]
    /// The conference has been dropped.
    Gone,
    #[error("party {0}: add_network_party needs a spec with PartyAudio::Network")]
    /// `add_network_party` was given a spec whose audio is not `PartyAudio::Network`.
    NotNetworkAudio(u32),
    #[error("the bot's overlay refused the clip: {0}")]
    /// The bot's overlay (prompts, tones) refused a clip.
    Overlay(#[from] PlayError),
}

/// Something the call's owner (the emulator service) may react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConferenceEvent {
    /// A party joined the conference.
    PartyAdded {
        /// The party's media source id.
        source_id: u32,
    },
    /// A party left the conference.
    PartyRemoved {
        /// The party's media source id.
        source_id: u32,
    },
    /// A party was muted or unmuted.
    PartyMuted {
        /// The party's media source id.
        source_id: u32,
        /// Muted (`true`) or unmuted.
        muted: bool,
    },
    /// A clip played once reached its end.
    PartyFinishedSpeaking {
        /// The party's media source id.
        source_id: u32,
    },
    /// A command sent through [`ConferenceControl`] could not be applied on the tick.
    CommandRejected {
        /// The source id the command named.
        source_id: u32,
        /// Why it was refused.
        reason: Rejection,
    },
    /// The bot's media started arriving (first packet of a stream).
    BotStreamStarted {
        /// The stream's SSRC.
        ssrc: u32,
    },
    /// The bot's stream restarted (new SSRC or a far sequence jump).
    BotStreamReset {
        /// The new SSRC.
        ssrc: u32,
    },
    /// The bot's stream went quiet for the stream timeout.
    BotStreamStopped {
        /// The stream's SSRC.
        ssrc: u32,
    },
    /// The bot pressed a DTMF key (RFC 4733 telephone-event), as its parties would hear it.
    BotTone {
        /// The key.
        tone: appmedia_media::dtmf::Tone,
        /// How long it was held.
        duration: Duration,
    },
    /// A party's first audible sample entered the mix (its "mouth" time, for mouth-to-ear
    /// latency): `at` is on the tick clock (the `now` of [`ConferenceMedia::tick`]) and is the
    /// time that sample would have been spoken had the party talked in real time into a
    /// microphone whose 20 ms frame was complete at the tick, i.e.
    /// `now - 20 ms + index_in_frame / 48 kHz`. Packetization delay is thus part of
    /// mouth-to-ear, as on a real phone. Audible: louder than [`FIRST_AUDIO_THRESHOLD`],
    /// after muting and the phone line. Once per party.
    PartyAudioStarted {
        /// The party's media source id.
        source_id: u32,
        /// When, on the tick clock.
        at: Duration,
    },
    /// A party pressed a key ([`ConferenceControl::press`]): the key went to the bot on the
    /// tick this event comes from. The service tells a subscribed bot (Graph's `toneInfo`).
    PartyPressedKey {
        /// The party's media source id.
        source_id: u32,
        /// The key.
        tone: appmedia_media::dtmf::Tone,
    },
}

/// A sample at least this loud (|x|, full scale 1.0: -80 dBFS) counts as a party's first
/// audio in [`ConferenceEvent::PartyAudioStarted`].
pub const FIRST_AUDIO_THRESHOLD: f32 = 1e-4;

/// Why a queued command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No party has the source id.
    UnknownParty,
    /// Another party already has the source id.
    DuplicateSourceId,
    /// Another party already has the participant id.
    DuplicateParticipant,
    /// Every party slot is taken.
    Full,
    /// A key press could not be queued (no telephone-event payload type, or the key queue
    /// is full).
    KeysRefused,
}

/// Who a party is, as the roster shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyInfo {
    /// The Graph participant id.
    pub participant_id: String,
    /// The name the roster shows.
    pub display_name: String,
    /// A Teams user, a phone or a meeting participant.
    pub kind: PartyKind,
    /// Media source id = SSRC of its unmixed stream; Graph's `sourceId` is its decimal string.
    pub source_id: u32,
    /// Whether it is muted.
    pub muted: bool,
}

/// Per-party counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PartyStats {
    /// The party's media source id.
    pub source_id: u32,
    /// Ticks on which the party produced audio above the speech threshold (unmuted).
    pub frames_spoken: u64,
    /// Level of its last frame, dBov.
    pub level_dbov: f32,
    /// Its unmixed stream (only with [`StreamLayout::PerSpeaker`]).
    pub packets_sent: u64,
    /// Bytes of its unmixed stream sent.
    pub bytes_sent: u64,
    /// Frames its phone line failed to process (the frame is silence then).
    pub phone_line_errors: u64,
    /// A network party's stream ([`PartyAudio::Network`]): packets the far end sent to the
    /// conference, and packets the conference sent to it.
    pub network_packets_received: u64,
    /// Packets sent to it (what it hears).
    pub network_packets_sent: u64,
    /// DTMF keys the party pressed (queued to go to the bot).
    pub keys_pressed: u64,
}

/// Call-wide counters (`Copy`, so a threaded driver can publish it every tick).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ConferenceStats {
    /// 20 ms ticks run.
    pub ticks: u64,
    /// Parties in the call now.
    pub parties: usize,
    /// The bot-facing pipeline: `packets_sent` is the mixed stream, the receive counters are
    /// the bot's stream (RTP errors, foreign payload types...).
    pub bot_leg: PipelineStats,
    /// The bot's stream as received: loss, concealment, FEC, jitter. `None` before the bot
    /// sent anything (a silent bot is not an error: its recording is silence).
    pub bot_stream: Option<StreamStats>,
    /// Packets and bytes of the per-speaker streams.
    pub unmixed_packets_sent: u64,
    /// Bytes of the per-speaker streams.
    pub unmixed_bytes_sent: u64,
    /// Commands refused on the tick (see [`Rejection`]).
    pub commands_rejected: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Frames the recording refused (queue full, stopped); the file gets silence there.
    pub recording_frames_dropped: u64,
    /// Who was heard on the last tick: source ids of the parties above the speech threshold
    /// (unmuted; the first [`MAX_REPORTED_SPEAKERS`]), see [`speakers`](Self::speakers).
    pub speaker_ids: [u32; MAX_REPORTED_SPEAKERS],
    /// How many of [`speaker_ids`](Self::speaker_ids) are set.
    pub speaker_count: usize,
    /// Whether the bot's frame of the last tick was above the speech threshold.
    pub bot_speaking: bool,
}

/// Speakers a [`ConferenceStats`] names per tick (it is `Copy`, so the list is fixed-size).
pub const MAX_REPORTED_SPEAKERS: usize = 8;

impl ConferenceStats {
    /// Source ids of the parties heard on the last tick (the bot not included).
    pub fn speakers(&self) -> &[u32] {
        &self.speaker_ids[..self.speaker_count.min(MAX_REPORTED_SPEAKERS)]
    }
}

/// A party's state in the call; built (allocated) off the tick.
pub(crate) struct PartyLeg {
    info: PartyInfo,
    source: AudioSource,
    phone: Option<Box<PhoneLine>>,
    frame: Box<Frame48>,
    hears: Box<Frame48>,
    mixer_source: Option<SourceId>,
    /// Its unmixed stream ([`StreamLayout::PerSpeaker`]).
    stream: Option<(Box<CallPipeline>, BotSender)>,
    stats: PartyStats,
    /// [`ConferenceEvent::PartyAudioStarted`] was sent.
    audio_started: bool,
}

/// The two ends of a network party's stream ([`PartyAudio::Network`]) that a transport holds:
/// the far end's RTP goes into `inbox` (stamped with the conference's clock, the `now` its
/// ticks see); what the party hears comes out of `outbox` as RTP (its own SSRC, the
/// conference's payload type; a WebRTC transport rewrites both to what it negotiated).
/// Both are lock-free and never block the tick. Dropping the link leaves the party in the
/// call, silent and unheard; remove it with `remove_party`.
pub struct NetworkLink {
    /// Where the far end's RTP goes in.
    pub inbox: RtpInbox,
    /// What the party hears, as RTP to send to the far end.
    pub outbox: Consumer<OutgoingRtp>,
}

impl std::fmt::Debug for NetworkLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkLink").finish_non_exhaustive()
    }
}

/// Packets a network party's outbox holds: a transport that polls every 5 ms takes one or
/// two; the rest is slack for a stalled task (the oldest is dropped beyond it).
const NETWORK_OUTBOX_PACKETS: usize = 32;

impl PartyLeg {
    fn build(spec: PartySpec, config: &ConferenceConfig) -> Result<Box<PartyLeg>, ConferenceError> {
        let source = AudioSource::build(&spec.audio)?;
        Self::build_with(spec, config, source)
    }

    /// A party whose microphone is a far end's RTP stream, and the link that carries it.
    fn build_network(
        spec: PartySpec,
        config: &ConferenceConfig,
    ) -> Result<(Box<PartyLeg>, NetworkLink), ConferenceError> {
        if !matches!(spec.audio, PartyAudio::Network) {
            return Err(ConferenceError::NotNetworkAudio(spec.source_id));
        }
        // It receives one remote stream (decoded, jitter-buffered, concealed) and sends what
        // it hears; a seed of its own, so its sequence numbers differ from its unmixed stream.
        let mut pipeline_config = send_config(config, spec.source_id ^ 0x5EED_0000);
        pipeline_config.local_ssrc = spec.source_id;
        let mut pipeline = Box::new(CallPipeline::new(pipeline_config)?);
        let link = NetworkLink {
            inbox: pipeline.rtp_inbox(),
            outbox: pipeline.packet_outbox(NETWORK_OUTBOX_PACKETS),
        };
        let sender = pipeline.bot_sender();
        let source = AudioSource::Network { pipeline, sender };
        Ok((Self::build_with(spec, config, source)?, link))
    }

    fn build_with(
        spec: PartySpec,
        config: &ConferenceConfig,
        source: AudioSource,
    ) -> Result<Box<PartyLeg>, ConferenceError> {
        if spec.source_id == 0
            || spec.source_id == config.mixed_ssrc
            || spec.source_id == config.bot_source_id
        {
            return Err(ConferenceError::ReservedSourceId(spec.source_id));
        }
        let phone = match spec.kind {
            PartyKind::Phone => Some(Box::new(PhoneLine::new()?)),
            PartyKind::User | PartyKind::MeetingParticipant => None,
        };
        let stream = match config.layout {
            StreamLayout::Mixed => None,
            StreamLayout::PerSpeaker => {
                let pipeline = CallPipeline::new(send_config(config, spec.source_id))?;
                let sender = pipeline.bot_sender();
                Some((Box::new(pipeline), sender))
            }
        };
        Ok(Box::new(PartyLeg {
            info: PartyInfo {
                participant_id: spec.participant_id,
                display_name: spec.display_name,
                kind: spec.kind,
                source_id: spec.source_id,
                muted: spec.muted,
            },
            source,
            phone,
            frame: Box::new(SILENT_FRAME_48),
            hears: Box::new(SILENT_FRAME_48),
            mixer_source: None,
            stream,
            stats: PartyStats {
                source_id: spec.source_id,
                level_dbov: -127.0,
                ..PartyStats::default()
            },
            audio_started: false,
        }))
    }
}

/// A pipeline that only sends: the conference feeds it one 48 kHz frame per tick, so no
/// prebuffering, and it expects no remote stream.
fn send_config(config: &ConferenceConfig, ssrc: u32) -> PipelineConfig {
    let seed = config.rtp_seed ^ ssrc.wrapping_mul(0x9E37_79B9);
    PipelineConfig {
        local_ssrc: ssrc,
        payload_type: config.payload_type,
        initial_sequence_number: seed as u16,
        initial_timestamp: seed.rotate_left(16),
        audio_level_ext_id: config.audio_level_ext_id,
        encoder: config.encoder,
        jitter: config.jitter,
        bot_format: BotAudioFormat::Pcm48k,
        max_remote_streams: 1,
        max_unmixed: 1,
        max_players: 0,
        send_queue_frames: 2,
        send_prebuffer_frames: 0,
        speech_threshold_dbov: config.speech_threshold_dbov,
        ..PipelineConfig::default()
    }
}

pub(crate) enum Command {
    Add(Box<PartyLeg>),
    Remove(u32),
    Mute(u32, bool),
    SetAudio(u32, Box<AudioSource>),
    Press(u32, appmedia_media::dtmf::Tone),
    BotMuted(bool),
    DetachBot,
    BotEar(Option<Box<RecordingSink>>),
}

/// A handle to change a running conference from any thread: parties join and leave, mute,
/// change behaviour. The costly part (building a party) happens on the caller's thread; the
/// tick only links it in. Results of queued commands come back as events
/// ([`ConferenceEvent::PartyAdded`], [`ConferenceEvent::CommandRejected`]...).
#[derive(Clone)]
pub struct ConferenceControl {
    tx: crossbeam_channel::Sender<Command>,
    config: ConferenceConfig,
    /// The control end of the bot's overlay (`play_over_bot`, in `bot_voice.rs`).
    pub(crate) overlay: PromptQueue,
}

impl std::fmt::Debug for ConferenceControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceControl").finish_non_exhaustive()
    }
}

impl ConferenceControl {
    pub(crate) fn send(&self, c: Command) -> Result<(), ConferenceError> {
        self.tx.try_send(c).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => ConferenceError::Busy,
            crossbeam_channel::TrySendError::Disconnected(_) => ConferenceError::Gone,
        })
    }
    /// Adds a party at the next tick.
    pub fn add_party(&self, spec: PartySpec) -> Result<(), ConferenceError> {
        self.send(Command::Add(PartyLeg::build(spec, &self.config)?))
    }
    /// Adds a party whose microphone is a far end's RTP stream ([`PartyAudio::Network`]) at
    /// the next tick; its packets travel on the returned link (a refusal on the tick comes
    /// back as [`ConferenceEvent::CommandRejected`], and the link then stays silent).
    pub fn add_network_party(&self, spec: PartySpec) -> Result<NetworkLink, ConferenceError> {
        let (leg, link) = PartyLeg::build_network(spec, &self.config)?;
        self.send(Command::Add(leg))?;
        Ok(link)
    }
    /// Removes the party with `source_id` on the next tick.
    pub fn remove_party(&self, source_id: u32) -> Result<(), ConferenceError> {
        self.send(Command::Remove(source_id))
    }
    /// Mutes or unmutes the party with `source_id` on the next tick.
    pub fn set_muted(&self, source_id: u32, muted: bool) -> Result<(), ConferenceError> {
        self.send(Command::Mute(source_id, muted))
    }
    /// Party `source_id` presses `tone` on its keypad at the next tick: an RFC 4733 key press
    /// (100 ms held, 100 ms pause) to the bot, on the party's own stream
    /// ([`StreamLayout::PerSpeaker`]) or on the mixed one. Keys queue behind each other.
    pub fn press(
        &self,
        source_id: u32,
        tone: appmedia_media::dtmf::Tone,
    ) -> Result<(), ConferenceError> {
        self.send(Command::Press(source_id, tone))
    }
    /// Replaces what a party does (e.g. a script: start speaking now).
    pub fn set_audio(&self, source_id: u32, audio: &PartyAudio) -> Result<(), ConferenceError> {
        self.send(Command::SetAudio(
            source_id,
            Box::new(AudioSource::build(audio)?),
        ))
    }
}

/// A bounded ring of events; never allocates after construction.
struct Events {
    items: VecDeque<ConferenceEvent>,
    dropped: u64,
    outbox: Option<Producer<ConferenceEvent>>,
}

impl Events {
    fn push(&mut self, e: ConferenceEvent) {
        if let Some(tx) = &self.outbox {
            let _ = tx.push(e);
            return;
        }
        if self.items.len() == EVENT_CAPACITY {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(e);
    }
}

/// The emulator's media for one call. See the module docs.
pub struct ConferenceMedia {
    config: ConferenceConfig,
    bot_leg: Box<CallPipeline>,
    to_bot_sender: BotSender,
    // Boxed on purpose: a party is built off the tick and arrives boxed through the command
    // queue; a removed one leaves as the same box for the disposer, so the tick never frees.
    #[allow(clippy::vec_box)]
    parties: Vec<Box<PartyLeg>>,
    mixer: Mixer,
    bot_in_mixer: SourceId,
    /// The bot's audio of the last tick (decoded from its stream; silence without one).
    bot_audio: Box<Frame48>,
    /// What went to the bot on the last tick (the mix of the parties).
    to_bot: Box<Frame48>,
    /// Everyone, the bot included: the recording's mixed track.
    everyone: Box<Frame48>,
    commands_rx: crossbeam_channel::Receiver<Command>,
    commands_tx: crossbeam_channel::Sender<Command>,
    events: Events,
    recording: Option<RecordingSink>,
    /// Where removed parties and replaced behaviours are dropped (off the tick when set).
    disposer: Option<appmedia_media::scheduler::DisposerHandle>,
    stats_outbox: Option<Producer<ConferenceStats>>,
    /// The packet outbox every sending pipeline feeds, once connected.
    packet_tx: Option<Producer<OutgoingRtp>>,
    /// With service-hosted media the "bot" is the service's prompt player, not an RTP peer.
    bot_prompts: Option<Box<PromptPlayer>>,
    ticks: u64,
    commands_rejected: u64,
    recording_dropped: u64,
    /// The last tick's speakers (for the stats).
    speaker_ids: [u32; MAX_REPORTED_SPEAKERS],
    speaker_count: usize,
    bot_speaking: bool,
    /// Server mute, transfer, in-band DTMF: see [`crate::bot_voice`].
    pub(crate) voice: BotVoice,
    /// The control end of the voice's overlay, handed to every [`ConferenceControl`].
    overlay_queue: PromptQueue,
    /// What the parties hear of the bot on this tick (its audio, the overlay, or silence).
    bot_out: Box<Frame48>,
    /// What the parties and the bot hear, recorded for the service.
    pub(crate) taps: Taps,
}

impl std::fmt::Debug for ConferenceMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceMedia")
            .field("layout", &self.config.layout)
            .field("parties", &self.parties.len())
            .field("ticks", &self.ticks)
            .finish()
    }
}

impl ConferenceMedia {
    /// Builds the bot-facing pipeline, the mixer and room for `max_parties` parties.
    pub fn new(config: ConferenceConfig) -> Result<Self, ConferenceError> {
        if config.max_parties == 0 || config.max_parties > 256 {
            return Err(ConferenceError::BadMaxParties(config.max_parties));
        }
        // One remote stream (send_config's): the bot sends one, and a new SSRC from it is a
        // restart that replaces the old stream at once instead of mixing a dead one in.
        let bot_leg = CallPipeline::new(send_config(&config, config.mixed_ssrc))?;
        let to_bot_sender = bot_leg.bot_sender();
        let mut mixer = Mixer::with_capacity(config.max_parties + 1);
        // Parties join and leave while the tick runs: their mixer slots must not allocate then.
        mixer.preallocate();
        let bot_in_mixer = mixer
            .add_source()
            .map_err(|e| ConferenceError::Pipeline(e.into()))?;
        let (commands_tx, commands_rx) = crossbeam_channel::bounded(COMMAND_CAPACITY);
        let (overlay, overlay_queue) = PromptPlayer::new(OVERLAY_CAPACITY);
        Ok(ConferenceMedia {
            bot_leg: Box::new(bot_leg),
            to_bot_sender,
            parties: Vec::with_capacity(config.max_parties),
            mixer,
            bot_in_mixer,
            bot_audio: Box::new(SILENT_FRAME_48),
            to_bot: Box::new(SILENT_FRAME_48),
            everyone: Box::new(SILENT_FRAME_48),
            commands_rx,
            commands_tx,
            events: Events {
                items: VecDeque::with_capacity(EVENT_CAPACITY),
                dropped: 0,
                outbox: None,
            },
            recording: None,
            disposer: None,
            stats_outbox: None,
            packet_tx: None,
            bot_prompts: None,
            ticks: 0,
            commands_rejected: 0,
            recording_dropped: 0,
            speaker_ids: [0; MAX_REPORTED_SPEAKERS],
            speaker_count: 0,
            bot_speaking: false,
            voice: BotVoice::new(overlay),
            overlay_queue,
            bot_out: Box::new(SILENT_FRAME_48),
            taps: Taps::default(),
            config,
        })
    }

    /// The conference's settings.
    pub fn config(&self) -> &ConferenceConfig {
        &self.config
    }

    /// A handle to change the conference from other threads (applied at the next tick).
    pub fn control(&self) -> ConferenceControl {
        ConferenceControl {
            tx: self.commands_tx.clone(),
            config: self.config,
            overlay: self.overlay_queue.clone(),
        }
    }

    /// Adds a party now.
    pub fn add_party(&mut self, spec: PartySpec) -> Result<(), ConferenceError> {
        let leg = PartyLeg::build(spec, &self.config)?;
        self.insert_now(leg)
    }

    fn insert_now(&mut self, leg: Box<PartyLeg>) -> Result<(), ConferenceError> {
        self.insert(leg).map_err(|(r, leg)| {
            let id = leg.info.source_id;
            let participant = leg.info.participant_id.clone();
            match r {
                Rejection::Full => ConferenceError::Full(self.config.max_parties),
                Rejection::DuplicateSourceId => ConferenceError::DuplicateSourceId(id),
                Rejection::DuplicateParticipant => {
                    ConferenceError::DuplicateParticipant(participant)
                }
                // Inserting presses no key; an unknown party is the nearest description.
                Rejection::UnknownParty | Rejection::KeysRefused => {
                    ConferenceError::UnknownParty(id)
                }
            }
        })
    }

    /// Adds a party whose microphone is a far end's RTP stream ([`PartyAudio::Network`]) now,
    /// and returns the link its packets travel on.
    pub fn add_network_party(&mut self, spec: PartySpec) -> Result<NetworkLink, ConferenceError> {
        let (leg, link) = PartyLeg::build_network(spec, &self.config)?;
        self.insert_now(leg)?;
        Ok(link)
    }

    /// Removes a party now.
    pub fn remove_party(&mut self, source_id: u32) -> Result<(), ConferenceError> {
        self.remove(source_id)
            .map_err(|_| ConferenceError::UnknownParty(source_id))
    }

    /// Mutes or unmutes a party: a muted party is in nobody's audio and its stream carries
    /// nothing. Like a muted microphone, a clip it speaks goes on playing, unheard.
    pub fn set_muted(&mut self, source_id: u32, muted: bool) -> Result<(), ConferenceError> {
        self.mute(source_id, muted)
            .map_err(|_| ConferenceError::UnknownParty(source_id))
    }

    /// Replaces what a party does.
    pub fn set_audio(&mut self, source_id: u32, audio: &PartyAudio) -> Result<(), ConferenceError> {
        let source = Box::new(AudioSource::build(audio)?);
        self.replace_audio(source_id, source)
            .map_err(|_| ConferenceError::UnknownParty(source_id))
    }

    fn insert(&mut self, mut leg: Box<PartyLeg>) -> Result<(), (Rejection, Box<PartyLeg>)> {
        if self.parties.len() >= self.config.max_parties {
            return Err((Rejection::Full, leg));
        }
        if self
            .parties
            .iter()
            .any(|p| p.info.source_id == leg.info.source_id)
        {
            return Err((Rejection::DuplicateSourceId, leg));
        }
        if self
            .parties
            .iter()
            .any(|p| p.info.participant_id == leg.info.participant_id)
        {
            return Err((Rejection::DuplicateParticipant, leg));
        }
        let Ok(src) = self.mixer.add_source() else {
            return Err((Rejection::Full, leg));
        };
        let _ = self.mixer.set_muted(src, leg.info.muted);
        leg.mixer_source = Some(src);
        if let Some((pipeline, _)) = leg.stream.as_mut()
            && let Some(tx) = self.packet_tx.clone()
        {
            pipeline.connect_packet_outbox(tx);
        }
        let source_id = leg.info.source_id;
        // Never reallocates: capacity is max_parties, checked above.
        self.parties.push(leg);
        self.events.push(ConferenceEvent::PartyAdded { source_id });
        Ok(())
    }

    fn remove(&mut self, source_id: u32) -> Result<(), Rejection> {
        let i = self.index_of(source_id).ok_or(Rejection::UnknownParty)?;
        let leg = self.parties.swap_remove(i);
        if let Some(src) = leg.mixer_source {
            let _ = self.mixer.remove_source(src);
        }
        self.dispose(leg);
        self.events
            .push(ConferenceEvent::PartyRemoved { source_id });
        Ok(())
    }

    fn mute(&mut self, source_id: u32, muted: bool) -> Result<(), Rejection> {
        let i = self.index_of(source_id).ok_or(Rejection::UnknownParty)?;
        let p = &mut self.parties[i];
        p.info.muted = muted;
        if let Some(src) = p.mixer_source {
            let _ = self.mixer.set_muted(src, muted);
        }
        self.events
            .push(ConferenceEvent::PartyMuted { source_id, muted });
        Ok(())
    }

    fn replace_audio(&mut self, source_id: u32, source: Box<AudioSource>) -> Result<(), Rejection> {
        let Some(i) = self.index_of(source_id) else {
            self.dispose(source);
            return Err(Rejection::UnknownParty);
        };
        let old = std::mem::replace(&mut self.parties[i].source, *source);
        // The old behaviour (a clip's samples, an echo line) is freed off the tick.
        self.dispose(Box::new(old));
        Ok(())
    }

    fn press(&mut self, source_id: u32, tone: appmedia_media::dtmf::Tone) -> Result<(), Rejection> {
        let i = self.index_of(source_id).ok_or(Rejection::UnknownParty)?;
        let keys = match self.parties[i].stream.as_mut() {
            Some((pipeline, _)) => pipeline.tone_sender(),
            None => self.bot_leg.tone_sender(),
        };
        // A conference without telephone-events, or a full key queue: the key is not sent.
        let sent = keys.ok().map(|k| k.send(ToneRequest::key(tone)));
        match sent {
            Some(Ok(_)) => {
                self.parties[i].stats.keys_pressed += 1;
                self.events
                    .push(ConferenceEvent::PartyPressedKey { source_id, tone });
                Ok(())
            }
            _ => Err(Rejection::KeysRefused),
        }
    }

    fn dispose<T: Send + 'static>(&self, item: Box<T>) {
        match &self.disposer {
            Some(d) => d.dispose(item),
            None => drop(item),
        }
    }

    fn index_of(&self, source_id: u32) -> Option<usize> {
        self.parties
            .iter()
            .position(|p| p.info.source_id == source_id)
    }

    /// Feeds one RTP packet from the bot (after SRTP).
    pub fn push_rtp(&mut self, packet: Bytes, now: Duration) {
        self.bot_leg.push_rtp(packet, now);
    }

    /// The network side's handle for the bot's packets (lock-free; taken at the next tick).
    pub fn rtp_inbox(&self) -> RtpInbox {
        self.bot_leg.rtp_inbox()
    }

    /// Records what the bot sends as `Track::Speaker(bot_source_id)` and everyone (the bot
    /// and all parties) as `Track::Mixed`, one frame per tick, from the next tick on. The
    /// recording must take 48 kHz frames (`RecordingConfig::input_sample_rate`, the default).
    pub fn attach_recording(&mut self, sink: RecordingSink) {
        self.recording = Some(sink);
    }

    /// Makes `player` the bot's voice (service-hosted media: the service plays prompts to the
    /// parties): from the next tick the bot's audio is the player's frame, mixed for every
    /// party and recorded as the bot's track; nothing is sent to or expected from an RTP bot
    /// (no mixed stream is encoded, the bot leg is not ticked).
    pub fn play_as_bot(&mut self, player: PromptPlayer) {
        self.bot_prompts = Some(Box::new(player));
    }

    /// Drops removed parties and replaced behaviours on this disposer (the scheduler's),
    /// keeping frees off the tick.
    pub fn set_disposer(&mut self, disposer: appmedia_media::scheduler::DisposerHandle) {
        self.disposer = Some(disposer);
    }

    /// Runs one 20 ms step at `now`.
    pub fn tick(&mut self, now: Duration) -> ConferenceTick {
        self.ticks += 1;
        self.apply_commands();
        let threshold = self.config.speech_threshold_dbov;

        // 1. Every party's microphone.
        let mut speaking = 0;
        self.speaker_count = 0;
        for p in self.parties.iter_mut() {
            let (_, finished) = p.source.next_frame(&mut p.frame);
            if let Some(line) = p.phone.as_mut()
                && line.process(&mut p.frame).is_err()
            {
                p.stats.phone_line_errors += 1;
            }
            if p.info.muted {
                p.frame.fill(0.0);
            }
            if !p.audio_started
                && let Some(k) = p
                    .frame
                    .iter()
                    .position(|x| x.abs() >= FIRST_AUDIO_THRESHOLD)
            {
                p.audio_started = true;
                let at = (now + FRAME_DURATION * k as u32 / SAMPLES_PER_FRAME_48K as u32)
                    .saturating_sub(FRAME_DURATION);
                self.events.push(ConferenceEvent::PartyAudioStarted {
                    source_id: p.info.source_id,
                    at,
                });
            }
            p.stats.level_dbov = level_dbov(&p.frame[..]);
            if p.stats.level_dbov >= threshold {
                p.stats.frames_spoken += 1;
                speaking += 1;
                if self.speaker_count < MAX_REPORTED_SPEAKERS {
                    self.speaker_ids[self.speaker_count] = p.info.source_id;
                    self.speaker_count += 1;
                }
            }
            if let Some(src) = p.mixer_source {
                let _ = self.mixer.push(src, &p.frame);
            }
            if finished {
                self.events.push(ConferenceEvent::PartyFinishedSpeaking {
                    source_id: p.info.source_id,
                });
            }
        }

        // 2. Mix-minus: the bot hears everyone but itself; each party everyone but itself.
        // The bot's audio in the mix is last tick's (this tick's is decoded below); a prompt
        // player has this tick's frame ready, so prompts are not delayed.
        if let Some(player) = self.bot_prompts.as_mut() {
            player.next_frame(&mut self.bot_audio);
        }
        self.voice.next_overlay_frame();
        self.voice
            .heard_from_bot(&self.bot_audio, &mut self.bot_out);
        let _ = self.mixer.push(self.bot_in_mixer, &self.bot_out);
        self.mixer.mix();
        let _ = self
            .mixer
            .mix_minus_into(self.bot_in_mixer, &mut self.to_bot);
        for p in self.parties.iter_mut() {
            if let Some(src) = p.mixer_source {
                let _ = self.mixer.mix_minus_into(src, &mut p.hears);
            }
        }

        // 3. Out to the bot, in from the bot (not when the bot is the service's prompts, nor
        // once it left the call).
        let rtp_bot = self.bot_prompts.is_none() && !self.voice.detached;
        if rtp_bot && self.config.layout == StreamLayout::Mixed {
            let _ = self.to_bot_sender.send_48k(&self.to_bot);
        }
        if rtp_bot {
            self.bot_leg.tick(now);
            self.bot_audio.copy_from_slice(self.bot_leg.bot_frame_48k());
        }
        if self.voice.silenced() {
            // A server-muted or departed bot is heard by nobody: not the echoes, not the
            // recordings.
            self.bot_audio.fill(0.0);
        }
        while let Some(e) = self.bot_leg.poll_event() {
            let e = match e {
                PipelineEvent::StreamAdded { ssrc, .. } => {
                    ConferenceEvent::BotStreamStarted { ssrc }
                }
                PipelineEvent::StreamReset { ssrc, .. } => ConferenceEvent::BotStreamReset { ssrc },
                PipelineEvent::StreamRemoved { ssrc, .. } => {
                    ConferenceEvent::BotStreamStopped { ssrc }
                }
                PipelineEvent::ToneReceived { tone, duration, .. } => {
                    ConferenceEvent::BotTone { tone, duration }
                }
                PipelineEvent::DominantSpeakerChanged { .. } | PipelineEvent::ToneSent { .. } => {
                    continue;
                }
            };
            self.events.push(e);
        }
        let tick = self.ticks - 1;
        for p in self.parties.iter_mut() {
            p.source.hear_bot(&self.bot_audio);
            p.source.hear(&p.hears, now);
            self.taps.push_heard(tick, p.info.source_id, &p.hears);
            if let Some((received, sent)) = p.source.network_counters() {
                p.stats.network_packets_received = received;
                p.stats.network_packets_sent = sent;
            }
            if let Some((pipeline, sender)) = p.stream.as_mut().filter(|_| rtp_bot) {
                if !p.info.muted && p.stats.level_dbov > -127.0 {
                    let _ = sender.send_48k(&p.frame);
                }
                pipeline.tick(now);
                let s = pipeline.stats();
                p.stats.packets_sent = s.packets_sent;
                p.stats.bytes_sent = s.bytes_sent;
            }
        }

        // 4. The recording: the bot alone, and everyone (with what is played in the bot's name).
        self.taps.push_bot_ear(tick, &self.to_bot);
        self.voice
            .heard_from_bot(&self.bot_audio, &mut self.everyone);
        for (e, &m) in self.everyone.iter_mut().zip(self.to_bot.iter()) {
            *e = (*e + m).clamp(-1.0, 1.0);
        }
        if let Some(sink) = &self.recording {
            let track = Track::Speaker(self.config.bot_source_id);
            for (track, frame) in [(track, &self.bot_audio), (Track::Mixed, &self.everyone)] {
                match sink.push(tick, track, &frame[..]) {
                    Ok(()) | Err(appmedia_audio_io::record::FrameDropped::TrackDisabled) => {}
                    Err(_) => self.recording_dropped += 1,
                }
            }
        }
        self.bot_speaking = level_dbov(&self.bot_audio[..]) >= threshold;
        if let Some(tx) = &self.stats_outbox {
            let _ = tx.push(self.stats());
        }
        ConferenceTick {
            speaking,
            bot_is_silent: !self.bot_speaking,
        }
    }

    fn apply_commands(&mut self) {
        // Bounded by the channel's capacity, so a flood cannot hold the tick.
        for _ in 0..COMMAND_CAPACITY {
            let Ok(c) = self.commands_rx.try_recv() else {
                break;
            };
            let (source_id, result) = match c {
                Command::Add(leg) => {
                    let id = leg.info.source_id;
                    match self.insert(leg) {
                        Ok(()) => (id, Ok(())),
                        Err((r, leg)) => {
                            self.dispose(leg);
                            (id, Err(r))
                        }
                    }
                }
                Command::Remove(id) => (id, self.remove(id)),
                Command::Mute(id, m) => (id, self.mute(id, m)),
                Command::SetAudio(id, source) => {
                    let r = self.replace_audio(id, source);
                    (id, r)
                }
                Command::Press(id, tone) => (id, self.press(id, tone)),
                Command::BotMuted(muted) => {
                    self.voice.muted = muted;
                    (self.config.bot_source_id, Ok(()))
                }
                Command::DetachBot => {
                    self.voice.detached = true;
                    (self.config.bot_source_id, Ok(()))
                }
                Command::BotEar(sink) => {
                    // Frames of this tick on: the tick counter is already this tick's.
                    if let Some(old) = self.taps.set_bot_ear(sink, self.ticks - 1) {
                        self.dispose(old);
                    }
                    (self.config.bot_source_id, Ok(()))
                }
            };
            if let Err(reason) = result {
                self.commands_rejected += 1;
                self.events
                    .push(ConferenceEvent::CommandRejected { source_id, reason });
            }
        }
    }
}

/// What one tick produced, in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConferenceTick {
    /// Parties whose frame was above the speech threshold.
    pub speaking: usize,
    /// Whether the bot's decoded frame is silence.
    pub bot_is_silent: bool,
}

impl ConferenceMedia {
    /// The RTP packets of the last tick (valid until the next tick): the mixed stream, or one
    /// per speaking party with [`StreamLayout::PerSpeaker`].
    pub fn outgoing_packets(&self) -> impl Iterator<Item = &[u8]> + '_ {
        // A bot that left gets nothing (the pipelines' last packets are stale).
        let to_bot = !self.voice.detached;
        let mixed = match self.config.layout {
            StreamLayout::Mixed if to_bot => self.bot_leg.outgoing_packet(),
            _ => None,
        };
        mixed.into_iter().chain(
            self.parties
                .iter()
                .filter(move |_| to_bot)
                .filter_map(|p| p.stream.as_ref().and_then(|(s, _)| s.outgoing_packet())),
        )
    }

    /// Connects one queue that receives every packet for the bot, from every stream (for the
    /// transport's task); a full queue drops its oldest packet.
    pub fn packet_outbox(&mut self, capacity: usize) -> Consumer<OutgoingRtp> {
        let (tx, rx) = queue::bounded(capacity.max(1));
        if self.config.layout == StreamLayout::Mixed {
            self.bot_leg.connect_packet_outbox(tx.clone());
        }
        for p in self.parties.iter_mut() {
            if let Some((s, _)) = p.stream.as_mut() {
                s.connect_packet_outbox(tx.clone());
            }
        }
        self.packet_tx = Some(tx);
        rx
    }

    /// Sends events into a queue instead of keeping them for [`poll_event`](Self::poll_event).
    /// Events already pending move into the queue.
    pub fn event_outbox(&mut self, capacity: usize) -> Consumer<ConferenceEvent> {
        let (tx, rx) = queue::bounded(capacity.max(1));
        for e in self.events.items.drain(..) {
            let _ = tx.push(e);
        }
        self.events.outbox = Some(tx);
        rx
    }

    /// Publishes [`stats`](Self::stats) after every tick into a queue that keeps the latest.
    pub fn stats_outbox(&mut self) -> Consumer<ConferenceStats> {
        let (tx, rx) = queue::bounded(1);
        self.stats_outbox = Some(tx);
        rx
    }

    /// Next pending event.
    pub fn poll_event(&mut self) -> Option<ConferenceEvent> {
        self.events.items.pop_front()
    }

    /// The call-wide counters now.
    pub fn stats(&self) -> ConferenceStats {
        let (packets, bytes) = self.parties.iter().fold((0, 0), |(n, b), p| {
            (n + p.stats.packets_sent, b + p.stats.bytes_sent)
        });
        ConferenceStats {
            ticks: self.ticks,
            parties: self.parties.len(),
            bot_leg: *self.bot_leg.stats(),
            bot_stream: self.bot_leg.stream_stats().next(),
            unmixed_packets_sent: packets,
            unmixed_bytes_sent: bytes,
            commands_rejected: self.commands_rejected,
            events_dropped: self.events.dropped,
            recording_frames_dropped: self.recording_dropped + self.taps.dropped,
            speaker_ids: self.speaker_ids,
            speaker_count: self.speaker_count,
            bot_speaking: self.bot_speaking,
        }
    }

    /// The parties in the call, in no particular order.
    pub fn parties(&self) -> impl Iterator<Item = &PartyInfo> + '_ {
        self.parties.iter().map(|p| &p.info)
    }

    /// A party by media source id.
    pub fn party(&self, source_id: u32) -> Option<&PartyInfo> {
        self.index_of(source_id).map(|i| &self.parties[i].info)
    }

    /// A party by Graph participant id.
    pub fn party_by_participant_id(&self, participant_id: &str) -> Option<&PartyInfo> {
        self.parties
            .iter()
            .map(|p| &p.info)
            .find(|i| i.participant_id == participant_id)
    }

    /// SSRC (= media source id) → Graph participant id of every party: the same ids the
    /// roster's `mediaStreams[].sourceId` carries (as decimal strings).
    pub fn source_map(&self) -> impl Iterator<Item = (u32, &str)> + '_ {
        self.parties
            .iter()
            .map(|p| (p.info.source_id, p.info.participant_id.as_str()))
    }

    /// The counters of the party with `source_id`, if it is in the call.
    pub fn party_stats(&self, source_id: u32) -> Option<PartyStats> {
        self.index_of(source_id).map(|i| self.parties[i].stats)
    }

    /// A party's microphone frame of the last tick (after muting and the phone line).
    pub fn party_frame(&self, source_id: u32) -> Option<&Frame48> {
        self.index_of(source_id).map(|i| &*self.parties[i].frame)
    }

    /// What a party heard on the last tick: the bot and the other parties, never itself.
    pub fn party_hears(&self, source_id: u32) -> Option<&Frame48> {
        self.index_of(source_id).map(|i| &*self.parties[i].hears)
    }

    /// The bot's audio decoded on the last tick (silence while it sends nothing).
    pub fn bot_audio(&self) -> &Frame48 {
        &self.bot_audio
    }

    /// What was sent to the bot on the last tick ([`StreamLayout::Mixed`]): every unmuted
    /// party, never the bot itself.
    pub fn to_bot(&self) -> &Frame48 {
        &self.to_bot
    }
}

/// The scheduler ticks a conference whose outputs go through its outboxes.
impl appmedia_media::scheduler::Tickable for ConferenceMedia {
    fn tick(&mut self, now: Duration) {
        ConferenceMedia::tick(self, now);
    }
}

// The scheduler moves calls between worker threads; the control is used from the service.
const _: () = {
    const fn send<T: Send>() {}
    send::<ConferenceMedia>();
    send::<ConferenceControl>();
};
