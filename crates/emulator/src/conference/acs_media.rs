//! The media of an ACS Call Automation call: the call's conference (the same
//! `appmedia-emulator-media` [`ConferenceMedia`] Graph calls use, with the same parties,
//! phones and recordings) and, in the bot's seat, a media gateway that turns the conference's
//! RTP into the PCM of ACS's audio-streaming WebSocket and back.
//!
//! ```text
//!  conference (scheduler A) ──RTP, in-process queues──► Gateway: CallPipeline (scheduler B)
//!        ▲                                                 │ what the bot hears, 20 ms PCM
//!        └──────────────RTP (what the bot says)────────────┤ (16 kHz, or 24 kHz resampled)
//!                                                          ▼
//!                 socket task (async): AudioMetadata, AudioData every 20 ms ──► bot's transportUrl
//!                 bot's AudioData ──► bounded 1 s queue ──► one frame per tick ──► the pipeline
//! ```
//!
//! The gateway is a [`Tickable`] on its own media scheduler: its tick takes the conference's
//! packets, plays one queued frame of the bot's (and of a `play` prompt), encodes, and hands
//! the bot's ear to the socket task through a lock-free queue. The socket task only moves
//! JSON; every message from the bot goes through `StreamReader::service`, and what it refuses
//! is counted ([`StreamStats`]) while the call goes on. A bot that sends faster than real
//! time fills the 1 s queue: further frames are dropped and counted until it drains.
//! `StopAudio` empties the queue at the next tick.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_acs::streaming::{
    AudioDataWire, AudioMetadata, DtmfDataWire, MAX_FRAME_SAMPLES, Message as StreamMessage,
    Received, StreamError, StreamReader, encode_samples,
};
use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayError, PlayMode, PromptEvent, PromptId};
use appmedia_audio_io::playback::{PromptPlayer, PromptQueue};
use appmedia_audio_io::record::RecordingConfig;
use appmedia_emulator_media::realtime::ConferenceScheduler;
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceControl, ConferenceError, ConferenceEvent, ConferenceMedia,
    StreamLayout,
};
use appmedia_media::frame::{Frame48, SAMPLES_PER_FRAME_16K, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{
    BotAudioFormat, BotSender, CallPipeline, OutgoingRtp, PipelineConfig, PipelineError,
    PipelineEvent, PlayerSender, RtpInbox,
};
use appmedia_media::queue::{self, Consumer, Producer};
use appmedia_media::resample::{
    FrameResampler, ResampleError, f32_to_s16_sample, s16_to_f32_sample,
};
use appmedia_media::scheduler::{CallHandle, Scheduler, SchedulerError, Tickable};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::conference::heard::Recorders;
use crate::conference::media::BOT_SOURCE_ID;
use crate::conference::service_media::MediaTimeline;

/// The scheduler that ticks the gateways of ACS calls.
pub type GatewayScheduler = Scheduler<Gateway>;

/// The bot's frames waiting to be played: one second.
pub const BOT_QUEUE_FRAMES: usize = 50;
/// What the bot hears, waiting for the socket task: one second (older frames go first).
const SOCKET_QUEUE_FRAMES: usize = 50;
/// Gateway events waiting for the call's media task.
const EVENT_QUEUE: usize = 64;
/// A WebSocket message larger than this closes the socket (tungstenite's limit); anything
/// up to it is read and refused by `StreamReader` (whose own limit is 64 KiB) and counted,
/// so a bot's 10 MiB mistake costs it one counted refusal, not its stream.
pub const MAX_SOCKET_MESSAGE: usize = 16 << 20;
/// The bot's socket must accept the connection within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the socket task looks for frames to send (well under a frame).
const SOCKET_POLL: Duration = Duration::from_millis(5);
/// The gateway's SSRC towards the conference.
const GATEWAY_SSRC: u32 = 0x0AC5_0001;

/// Why the call's media could not start, or a media operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AcsMediaError {
    /// The conference could not be built.
    #[error("conference media: {0}")]
    Conference(#[from] ConferenceError),
    /// The gateway's pipeline could not be built.
    #[error("media gateway: {0}")]
    Pipeline(#[from] PipelineError),
    /// A resampler could not be built.
    #[error("media gateway resampler: {0}")]
    Resample(#[from] ResampleError),
    /// A scheduler refused the call.
    #[error("media scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    /// The recording could not start.
    #[error("recording: {0}")]
    Recording(#[from] appmedia_audio_io::record::RecordError),
    /// The call's prompt player refused.
    #[error("play: {0}")]
    Play(#[from] PlayError),
    /// Streaming is already running.
    #[error("media streaming is already started")]
    AlreadyStreaming,
    /// Streaming is not running.
    #[error("media streaming is not started")]
    NotStreaming,
}

/// The PCM rate of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRate {
    /// 16 kHz, 640 bytes per frame.
    K16,
    /// 24 kHz, 960 bytes per frame.
    K24,
}

impl StreamRate {
    /// From a sample rate (anything but 24 000 is 16 kHz).
    pub fn from_hz(hz: u32) -> Self {
        if hz == 24_000 {
            StreamRate::K24
        } else {
            StreamRate::K16
        }
    }

    /// The sample rate.
    pub fn hz(self) -> u32 {
        match self {
            StreamRate::K16 => 16_000,
            StreamRate::K24 => 24_000,
        }
    }

    fn samples(self) -> usize {
        match self {
            StreamRate::K16 => SAMPLES_PER_FRAME_16K,
            StreamRate::K24 => MAX_FRAME_SAMPLES,
        }
    }
}

/// How the call's media is set up.
#[derive(Clone, Debug)]
pub struct AcsMediaOptions {
    /// The stream's rate (fixed for the call: `audioFormat` of its streaming options).
    pub rate: StreamRate,
    /// One stream per speaking participant instead of the mix.
    pub unmixed: bool,
    /// Parties at once.
    pub max_parties: usize,
    /// Records the call: `{name}-speaker-1.wav` (the bot), `{name}-mixed.wav` (everyone).
    pub recording: Option<RecordingConfig>,
}

/// Where and how to stream.
#[derive(Clone, Debug)]
pub struct StreamRequest {
    /// The bot's WebSocket (`ws://` on loopback, checked by the caller).
    pub transport_url: String,
    /// The media streaming subscription (`AudioMetadata.subscriptionId`).
    pub subscription_id: String,
    /// The bot may send audio back.
    pub bidirectional: bool,
    /// Key presses go on the socket as `DtmfData` (`enableDtmfTones`).
    pub dtmf: bool,
    /// `Authorization` of the upgrade request (`Bearer <the events' JWT>`), as ACS sends it.
    pub authorization: Option<String>,
}

/// What the call's media tells the call.
#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    /// The bot's socket accepted the stream and got its `AudioMetadata`.
    StreamingStarted,
    /// Streaming ended as asked.
    StreamingStopped,
    /// Streaming ended otherwise: the socket could not be reached, or dropped.
    StreamingFailed(String),
    /// A party pressed a key (RFC 4733 on the conference's stream to the bot).
    Tone {
        /// The raw id of who pressed it, when known.
        participant: Option<String>,
        /// The key (`0`-`9`, `*`, `#`, `A`-`D`).
        key: char,
    },
    /// A prompt played with [`AcsMedia::play`] ended.
    Prompt(PromptEvent),
}

/// The counters of a call's audio stream.
#[derive(Debug, Default)]
struct Counters {
    frames_sent: AtomicU64,
    silent_frames_sent: AtomicU64,
    dtmf_sent: AtomicU64,
    bot_frames_received: AtomicU64,
    bot_frames_played: AtomicU64,
    bot_frames_dropped_full: AtomicU64,
    bot_frames_not_bidirectional: AtomicU64,
    stop_audio: AtomicU64,
    refused_not_json: AtomicU64,
    refused_wrong_length: AtomicU64,
    refused_too_large: AtomicU64,
    refused_other: AtomicU64,
    sockets_failed: AtomicU64,
}

/// A snapshot of a call's stream counters (the control API shows it; tests read it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// `AudioData` messages sent to the bot.
    pub frames_sent: u64,
    /// … of which marked `silent`.
    pub silent_frames_sent: u64,
    /// `DtmfData` messages sent.
    pub dtmf_sent: u64,
    /// `AudioData` frames from the bot that read well.
    pub bot_frames_received: u64,
    /// … played into the call.
    pub bot_frames_played: u64,
    /// … dropped because the 1 s queue was full (the bot runs ahead of real time).
    pub bot_frames_dropped_full: u64,
    /// … dropped because the stream is not bidirectional.
    pub bot_frames_not_bidirectional: u64,
    /// `StopAudio` messages.
    pub stop_audio: u64,
    /// Messages refused: not JSON (or binary, or not a message of the protocol).
    pub refused_not_json: u64,
    /// Messages refused: a frame of the wrong length.
    pub refused_wrong_length: u64,
    /// Messages refused: larger than the protocol's limit.
    pub refused_too_large: u64,
    /// Messages refused otherwise (bad base64, a kind that does not travel this way...).
    pub refused_other: u64,
    /// Sockets that could not be reached or dropped.
    pub sockets_failed: u64,
}

impl Counters {
    fn snapshot(&self) -> StreamStats {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamStats {
            frames_sent: n(&self.frames_sent),
            silent_frames_sent: n(&self.silent_frames_sent),
            dtmf_sent: n(&self.dtmf_sent),
            bot_frames_received: n(&self.bot_frames_received),
            bot_frames_played: n(&self.bot_frames_played),
            bot_frames_dropped_full: n(&self.bot_frames_dropped_full),
            bot_frames_not_bidirectional: n(&self.bot_frames_not_bidirectional),
            stop_audio: n(&self.stop_audio),
            refused_not_json: n(&self.refused_not_json),
            refused_wrong_length: n(&self.refused_wrong_length),
            refused_too_large: n(&self.refused_too_large),
            refused_other: n(&self.refused_other),
            sockets_failed: n(&self.sockets_failed),
        }
    }

    fn refused(&self, error: &StreamError) {
        let counter = match error {
            StreamError::NotJson(_) | StreamError::UnknownKind(_) => &self.refused_not_json,
            StreamError::WrongLength { .. } => &self.refused_wrong_length,
            StreamError::TooLarge(_) => &self.refused_too_large,
            _ => &self.refused_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads when a call's parties first spoke (`Emulator::acs_call_media`).
#[derive(Clone, Debug)]
pub struct AcsTimeline {
    timeline: MediaTimeline,
    participants: Arc<Mutex<HashMap<u32, String>>>,
}

impl AcsTimeline {
    /// Every party (raw id, source id) with the instant its first audible sample was spoken.
    pub fn parties(&self) -> Vec<(String, u32, Option<Instant>)> {
        let mut parties: Vec<_> = lock(&self.participants)
            .iter()
            .map(|(&source, raw)| (raw.clone(), source, self.timeline.first_audio(source)))
            .collect();
        parties.sort_by_key(|p| p.1);
        parties
    }
}

/// Reads a call's stream counters.
#[derive(Clone, Debug)]
pub struct StreamStatsHandle(Arc<Counters>);

impl StreamStatsHandle {
    /// The counters now.
    pub fn snapshot(&self) -> StreamStats {
        self.0.snapshot()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One frame of the bot's, queued for the gateway.
#[derive(Clone, Copy)]
struct BotPcm {
    len: usize,
    samples: [i16; MAX_FRAME_SAMPLES],
}

/// One frame of what the bot hears, for the socket task.
#[derive(Clone, Copy)]
struct HeardFrame {
    /// The speaker's source id (unmixed), `None` for the mix.
    source_id: Option<u32>,
    silent: bool,
    len: usize,
    samples: [i16; MAX_FRAME_SAMPLES],
}

enum GatewayEvent {
    Tone { source_id: u32, key: char },
}

/// Rate conversion between the media core's 48 kHz and a 24 kHz stream.
struct Rate24 {
    down: FrameResampler<SAMPLES_PER_FRAME_48K, MAX_FRAME_SAMPLES>,
    up: FrameResampler<MAX_FRAME_SAMPLES, SAMPLES_PER_FRAME_48K>,
    /// Per unmixed speaker slot: (source id, its resampler).
    unmixed: Vec<(
        u32,
        FrameResampler<SAMPLES_PER_FRAME_48K, MAX_FRAME_SAMPLES>,
    )>,
}

/// The bot's seat in an ACS call's conference: a [`CallPipeline`] whose RTP goes to and from
/// the conference in process and whose bot side is the stream's PCM. Ticked by a
/// [`GatewayScheduler`]; everything crosses to it through lock-free queues.
pub struct Gateway {
    pipeline: CallPipeline,
    from_conference: Consumer<OutgoingRtp>,
    to_conference: RtpInbox,
    bot: BotSender,
    player: PlayerSender,
    prompts: PromptPlayer,
    prompt_frame: Box<Frame48>,
    bot_in: Consumer<BotPcm>,
    flush: Arc<AtomicU64>,
    seen_flush: u64,
    to_socket: Producer<HeardFrame>,
    streaming: Arc<AtomicBool>,
    events: Producer<GatewayEvent>,
    rate: StreamRate,
    unmixed: bool,
    rate24: Option<Box<Rate24>>,
    counters: Arc<Counters>,
    scratch48: Box<Frame48>,
    scratch24: Box<[f32; MAX_FRAME_SAMPLES]>,
}

impl Tickable for Gateway {
    fn tick(&mut self, now: Duration) {
        while let Some(packet) = self.from_conference.pop() {
            self.pipeline
                .push_rtp(Bytes::copy_from_slice(packet.as_bytes()), now);
        }
        let flush = self.flush.load(Ordering::Relaxed);
        if flush != self.seen_flush {
            self.seen_flush = flush;
            while self.bot_in.pop().is_some() {}
        }
        if let Some(frame) = self.bot_in.pop() {
            self.play_bot(&frame);
        }
        if self.prompts.next_frame(&mut self.prompt_frame) {
            let _ = self.player.send(&self.prompt_frame);
        }
        self.pipeline.tick(now);
        if let Some(packet) = self.pipeline.outgoing_packet() {
            let _ = self.to_conference.push(Bytes::copy_from_slice(packet), now);
        }
        while let Some(event) = self.pipeline.poll_event() {
            if let PipelineEvent::ToneReceived {
                source_id, tone, ..
            } = event
            {
                let _ = self.events.push(GatewayEvent::Tone {
                    source_id,
                    key: tone.as_char(),
                });
            }
        }
        if self.streaming.load(Ordering::Relaxed) {
            self.hand_to_socket();
        }
    }
}

impl Gateway {
    fn play_bot(&mut self, frame: &BotPcm) {
        let sent = match (self.rate, self.rate24.as_mut()) {
            (StreamRate::K24, Some(rate24)) => {
                for (o, s) in self.scratch24.iter_mut().zip(&frame.samples[..frame.len]) {
                    *o = s16_to_f32_sample(*s);
                }
                rate24
                    .up
                    .process(&self.scratch24, &mut self.scratch48)
                    .is_ok()
                    && self.bot.send_48k(&self.scratch48).is_ok()
            }
            _ => {
                let mut samples = [0i16; SAMPLES_PER_FRAME_16K];
                samples.copy_from_slice(&frame.samples[..SAMPLES_PER_FRAME_16K]);
                self.bot.send_pcm16k_samples(&samples).is_ok()
            }
        };
        if sent {
            bump(&self.counters.bot_frames_played);
        }
    }

    fn hand_to_socket(&mut self) {
        let silent = self.pipeline.is_silence();
        if !self.unmixed {
            let mut frame = HeardFrame {
                source_id: None,
                silent,
                len: self.rate.samples(),
                samples: [0; MAX_FRAME_SAMPLES],
            };
            match (self.rate, self.rate24.as_mut()) {
                (StreamRate::K24, Some(rate24)) => {
                    if rate24
                        .down
                        .process(self.pipeline.bot_frame_48k(), &mut self.scratch24)
                        .is_ok()
                    {
                        for (o, s) in frame.samples.iter_mut().zip(self.scratch24.iter()) {
                            *o = f32_to_s16_sample(*s);
                        }
                    }
                }
                _ => {
                    if let Some(bytes) = self.pipeline.bot_frame_16k() {
                        for (o, b) in frame.samples.iter_mut().zip(bytes.chunks_exact(2)) {
                            *o = i16::from_le_bytes([b[0], b[1]]);
                        }
                    }
                }
            }
            let _ = self.to_socket.push(frame);
            return;
        }
        // Unmixed: one frame per speaking participant; a silent frame when nobody speaks,
        // so the bot still gets one message per 20 ms.
        let mut any = false;
        let rate = self.rate;
        let mut frames: [Option<HeardFrame>; 4] = [None; 4];
        for (slot, u) in self
            .pipeline
            .unmixed()
            .filter(|u| !u.is_silence)
            .take(4)
            .enumerate()
        {
            let mut frame = HeardFrame {
                source_id: Some(u.source_id),
                silent: false,
                len: rate.samples(),
                samples: [0; MAX_FRAME_SAMPLES],
            };
            match (rate, self.rate24.as_mut()) {
                (StreamRate::K24, Some(rate24)) => {
                    let resampler =
                        match rate24.unmixed.iter().position(|(id, _)| *id == u.source_id) {
                            Some(i) => i,
                            None => {
                                // The slot's previous speaker is not among this tick's: reuse it.
                                rate24.unmixed[slot].0 = u.source_id;
                                rate24.unmixed[slot].1.reset();
                                slot
                            }
                        };
                    if rate24.unmixed[resampler]
                        .1
                        .process(u.pcm48, &mut self.scratch24)
                        .is_ok()
                    {
                        for (o, s) in frame.samples.iter_mut().zip(self.scratch24.iter()) {
                            *o = f32_to_s16_sample(*s);
                        }
                    }
                }
                _ => {
                    if let Some(bytes) = u.pcm16k {
                        for (o, b) in frame.samples.iter_mut().zip(bytes.chunks_exact(2)) {
                            *o = i16::from_le_bytes([b[0], b[1]]);
                        }
                    }
                }
            }
            frames[slot] = Some(frame);
            any = true;
        }
        for frame in frames.into_iter().flatten() {
            let _ = self.to_socket.push(frame);
        }
        if !any {
            let _ = self.to_socket.push(HeardFrame {
                source_id: None,
                silent: true,
                len: rate.samples(),
                samples: [0; MAX_FRAME_SAMPLES],
            });
        }
    }
}

/// The socket side of a running stream.
struct Socket {
    stop: oneshot::Sender<()>,
    /// `None` unless the stream carries key presses.
    dtmf: Option<mpsc::UnboundedSender<DtmfDataWire>>,
}

/// One ACS call's media: its conference, its gateway and, while streaming, the socket task.
/// Dropping it stops them and finishes the recording.
pub struct AcsMedia {
    control: ConferenceControl,
    prompts: PromptQueue,
    counters: Arc<Counters>,
    streaming: Arc<AtomicBool>,
    flush: Arc<AtomicU64>,
    to_socket: Arc<Consumer<HeardFrame>>,
    bot_in: Producer<BotPcm>,
    rate: StreamRate,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<Socket>>>,
    /// Source id → raw id of the participants, for `participantRawID`.
    participants: Arc<Mutex<HashMap<u32, String>>>,
    /// Who was asked to press keys, in order: a key on the mixed stream is theirs.
    pressers: Arc<Mutex<VecDeque<String>>>,
    events: mpsc::UnboundedSender<MediaEvent>,
    /// When each party's first audible sample entered the call (mouth-to-ear latency).
    timeline: MediaTimeline,
}

impl std::fmt::Debug for AcsMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcsMedia")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl AcsMedia {
    /// Starts the call's conference and gateway; events come on the returned receiver.
    pub fn start(
        conferences: &ConferenceScheduler,
        gateways: &GatewayScheduler,
        options: AcsMediaOptions,
    ) -> Result<(AcsMedia, mpsc::UnboundedReceiver<MediaEvent>), AcsMediaError> {
        let seed = uuid::Uuid::new_v4().as_u128() as u32;
        let config = ConferenceConfig {
            bot_source_id: BOT_SOURCE_ID,
            max_parties: options.max_parties.clamp(1, 256),
            rtp_seed: seed,
            layout: StreamLayout::for_receive_unmixed(options.unmixed),
            ..ConferenceConfig::default()
        };
        let mut conference = ConferenceMedia::new(config)?;
        let recorders = Recorders::start(options.recording, &mut conference)?;
        let control = conference.control();
        let from_conference = conference.packet_outbox(256);
        let conference_events = conference.event_outbox(256);
        let to_conference = conference.rtp_inbox();
        conference.set_disposer(conferences.disposer());

        let rate = options.rate;
        let mut pipeline = CallPipeline::new(PipelineConfig {
            local_ssrc: GATEWAY_SSRC,
            payload_type: config.payload_type,
            initial_sequence_number: (seed >> 16) as u16,
            initial_timestamp: seed.rotate_left(7),
            audio_level_ext_id: config.audio_level_ext_id,
            bot_format: match rate {
                StreamRate::K16 => BotAudioFormat::Pcm16k,
                StreamRate::K24 => BotAudioFormat::Pcm48k,
            },
            max_remote_streams: if options.unmixed { 16 } else { 4 },
            max_unmixed: 4,
            max_players: 1,
            ..PipelineConfig::default()
        })?;
        let bot = pipeline.bot_sender();
        let player = pipeline.add_player(4)?;
        let (prompt_player, prompts) = PromptPlayer::new(16);
        let (bot_tx, bot_rx) = queue::bounded(BOT_QUEUE_FRAMES);
        let (socket_tx, socket_rx) = queue::bounded(SOCKET_QUEUE_FRAMES);
        let (gateway_events_tx, gateway_events) = queue::bounded(EVENT_QUEUE);
        let rate24 = match rate {
            StreamRate::K24 => Some(Box::new(Rate24 {
                down: FrameResampler::new()?,
                up: FrameResampler::new()?,
                unmixed: (0..4)
                    .map(|_| FrameResampler::new().map(|r| (0, r)))
                    .collect::<Result<_, _>>()?,
            })),
            StreamRate::K16 => None,
        };
        let counters = Arc::new(Counters::default());
        let streaming = Arc::new(AtomicBool::new(false));
        let flush = Arc::new(AtomicU64::new(0));
        let gateway = Gateway {
            pipeline,
            from_conference,
            to_conference,
            bot,
            player,
            prompts: prompt_player,
            prompt_frame: Box::new([0.0; SAMPLES_PER_FRAME_48K]),
            bot_in: bot_rx,
            flush: flush.clone(),
            seen_flush: 0,
            to_socket: socket_tx,
            streaming: streaming.clone(),
            events: gateway_events_tx,
            rate,
            unmixed: options.unmixed,
            rate24,
            counters: counters.clone(),
            scratch48: Box::new([0.0; SAMPLES_PER_FRAME_48K]),
            scratch24: Box::new([0.0; MAX_FRAME_SAMPLES]),
        };
        let conference_call = conferences.add(conference)?;
        let gateway_call = match gateways.add(gateway) {
            Ok(call) => call,
            Err(e) => {
                conference_call.remove();
                return Err(e.into());
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let media = AcsMedia {
            control,
            prompts: prompts.clone(),
            counters,
            streaming,
            flush,
            to_socket: Arc::new(socket_rx),
            bot_in: bot_tx,
            rate,
            stop: Arc::new(AtomicBool::new(false)),
            socket: Arc::default(),
            participants: Arc::default(),
            pressers: Arc::default(),
            events: events_tx,
            timeline: MediaTimeline::new(conferences.epoch()),
        };
        let task = MediaTask {
            stop: media.stop.clone(),
            conference_call,
            gateway_call,
            conference_events,
            gateway_events,
            prompts,
            timeline: media.timeline.clone(),
            participants: media.participants.clone(),
            pressers: media.pressers.clone(),
            socket: media.socket.clone(),
            events: media.events.clone(),
        };
        tokio::spawn(task.run(recorders));
        Ok((media, events_rx))
    }

    /// The conference: parties join, leave, mute, press keys.
    pub fn control(&self) -> &ConferenceControl {
        &self.control
    }

    /// Names a party's source id by its raw id (for `participantRawID` and key presses).
    pub fn name_participant(&self, source_id: u32, raw_id: &str) {
        lock(&self.participants).insert(source_id, raw_id.to_owned());
    }

    /// Party `source_id` (raw id `raw_id`) presses `keys`, one after the other.
    pub fn press(
        &self,
        source_id: u32,
        raw_id: &str,
        keys: &[appmedia_media::dtmf::Tone],
    ) -> Result<(), ConferenceError> {
        for &key in keys {
            self.control.press(source_id, key)?;
            lock(&self.pressers).push_back(raw_id.to_owned());
        }
        Ok(())
    }

    /// Plays `clip` into the call as the bot; its end comes as [`MediaEvent::Prompt`].
    pub fn play(&self, clip: &AudioClip, looped: bool) -> Result<PromptId, AcsMediaError> {
        let mode = if looped {
            PlayMode::Loop
        } else {
            PlayMode::Once
        };
        Ok(self.prompts.play(clip, mode)?)
    }

    /// Cancels every prompt (each ends `Cancelled`).
    pub fn cancel_prompts(&self) -> Result<(), AcsMediaError> {
        Ok(self.prompts.cancel_all()?)
    }

    /// Plays `clip` into the call over the bot's voice (keypad tones).
    pub fn play_over_bot(&self, clip: &AudioClip) -> Result<(), ConferenceError> {
        self.control.play_over_bot(clip).map(|_| ())
    }

    /// The stream's rate.
    pub fn rate(&self) -> StreamRate {
        self.rate
    }

    /// Whether a socket task runs (connecting or streaming).
    pub fn is_streaming(&self) -> bool {
        lock(&self.socket).is_some()
    }

    /// The stream's counters.
    pub fn stats(&self) -> StreamStats {
        self.counters.snapshot()
    }

    /// A handle that reads the stream's counters after the media is gone too.
    pub fn stats_handle(&self) -> StreamStatsHandle {
        StreamStatsHandle(self.counters.clone())
    }

    /// When each party's first audible sample entered the call, with its raw id.
    pub fn timeline_handle(&self) -> AcsTimeline {
        AcsTimeline {
            timeline: self.timeline.clone(),
            participants: self.participants.clone(),
        }
    }

    /// Connects to the bot's socket and streams; [`MediaEvent::StreamingStarted`] (or
    /// `StreamingFailed`) follows.
    pub fn start_streaming(&self, request: StreamRequest) -> Result<(), AcsMediaError> {
        let mut socket = lock(&self.socket);
        if socket.is_some() {
            return Err(AcsMediaError::AlreadyStreaming);
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let (dtmf_tx, dtmf_rx) = mpsc::unbounded_channel();
        *socket = Some(Socket {
            stop: stop_tx,
            dtmf: request.dtmf.then_some(dtmf_tx),
        });
        let task = SocketTask {
            metadata: AudioMetadata::pcm(request.subscription_id, self.rate.hz()),
            url: request.transport_url,
            authorization: request.authorization,
            bidirectional: request.bidirectional,
            frames: self.to_socket.clone(),
            bot_in: self.bot_in.clone(),
            flush: self.flush.clone(),
            counters: self.counters.clone(),
            streaming: self.streaming.clone(),
            participants: self.participants.clone(),
            events: self.events.clone(),
            slot: self.socket.clone(),
        };
        tokio::spawn(task.run(stop_rx, dtmf_rx));
        Ok(())
    }

    /// Stops streaming; [`MediaEvent::StreamingStopped`] follows.
    pub fn stop_streaming(&self) -> Result<(), AcsMediaError> {
        let socket = lock(&self.socket)
            .take()
            .ok_or(AcsMediaError::NotStreaming)?;
        let _ = socket.stop.send(());
        Ok(())
    }
}

impl Drop for AcsMedia {
    fn drop(&mut self) {
        if let Some(socket) = lock(&self.socket).take() {
            let _ = socket.stop.send(());
        }
        // The media task removes both from their schedulers and finishes the recording.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls what the media produced for the call, and stops it at the end.
struct MediaTask {
    stop: Arc<AtomicBool>,
    conference_call: CallHandle,
    gateway_call: CallHandle,
    conference_events: Consumer<ConferenceEvent>,
    gateway_events: Consumer<GatewayEvent>,
    prompts: PromptQueue,
    timeline: MediaTimeline,
    participants: Arc<Mutex<HashMap<u32, String>>>,
    pressers: Arc<Mutex<VecDeque<String>>>,
    socket: Arc<Mutex<Option<Socket>>>,
    events: mpsc::UnboundedSender<MediaEvent>,
}

impl MediaTask {
    async fn run(self, recorders: Recorders) {
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.stop.load(Ordering::Relaxed) {
            interval.tick().await;
            while let Some(event) = self.conference_events.pop() {
                self.timeline.observe(&event);
                if let ConferenceEvent::CommandRejected { source_id, reason } = event {
                    tracing::warn!(
                        source_id,
                        ?reason,
                        "ACS call: the conference refused a command"
                    );
                }
            }
            while let Some(GatewayEvent::Tone { source_id, key }) = self.gateway_events.pop() {
                // A party's own stream names it; on the mix, the oldest pending presser.
                let named = lock(&self.participants).get(&source_id).cloned();
                let presser = lock(&self.pressers).pop_front();
                let participant = named.or(presser);
                if let Some(dtmf) = lock(&self.socket).as_ref().and_then(|s| s.dtmf.as_ref()) {
                    let _ = dtmf.send(DtmfDataWire {
                        data: key.to_string(),
                        timestamp: Some(
                            appmedia_acs::events::rfc3339(std::time::SystemTime::now()),
                        ),
                        participant_raw_id: participant.clone(),
                    });
                }
                let _ = self.events.send(MediaEvent::Tone { participant, key });
            }
            while let Some(event) = self.prompts.try_event() {
                let _ = self.events.send(MediaEvent::Prompt(event));
            }
        }
        self.gateway_call.remove();
        self.conference_call.remove();
        recorders.finish().await;
    }
}

/// The async side of one stream: the WebSocket client.
struct SocketTask {
    url: String,
    authorization: Option<String>,
    metadata: AudioMetadata,
    bidirectional: bool,
    frames: Arc<Consumer<HeardFrame>>,
    bot_in: Producer<BotPcm>,
    flush: Arc<AtomicU64>,
    counters: Arc<Counters>,
    streaming: Arc<AtomicBool>,
    participants: Arc<Mutex<HashMap<u32, String>>>,
    events: mpsc::UnboundedSender<MediaEvent>,
    /// The call's socket slot, emptied when this task ends on its own.
    slot: Arc<Mutex<Option<Socket>>>,
}

impl SocketTask {
    async fn run(
        self,
        mut stop: oneshot::Receiver<()>,
        mut dtmf: mpsc::UnboundedReceiver<DtmfDataWire>,
    ) {
        let outcome = self.stream(&mut dtmf, &mut stop).await;
        self.streaming.store(false, Ordering::Relaxed);
        let event = match outcome {
            Ok(()) => MediaEvent::StreamingStopped,
            Err(reason) => {
                bump(&self.counters.sockets_failed);
                // Ended on its own: the call may start streaming again.
                lock(&self.slot).take();
                tracing::warn!(url = %self.url, %reason, "ACS audio stream failed");
                MediaEvent::StreamingFailed(reason)
            }
        };
        let _ = self.events.send(event);
    }

    async fn stream(
        &self,
        dtmf: &mut mpsc::UnboundedReceiver<DtmfDataWire>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Result<(), String> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_SOCKET_MESSAGE))
            .max_frame_size(Some(MAX_SOCKET_MESSAGE));
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{}: {e}", self.url))?;
        if let Some(authorization) = &self.authorization
            && let Ok(value) = authorization.parse()
        {
            request.headers_mut().insert("authorization", value);
        }
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _) = tokio::select! {
            connected = tokio::time::timeout(CONNECT_TIMEOUT, connect) => connected
                .map_err(|_| format!("{} did not accept within {CONNECT_TIMEOUT:?}", self.url))?
                .map_err(|e| format!("{}: {e}", self.url))?,
            _ = &mut *stop => return Ok(()),
        };
        let (mut tx, mut rx) = socket.split();
        let metadata = StreamMessage::AudioMetadata {
            audio_metadata: self.metadata.clone(),
        };
        tx.send(WsMessage::text(metadata.to_json()))
            .await
            .map_err(|e| e.to_string())?;
        // What the bot would have heard before it was connected is not news.
        while self.frames.pop().is_some() {}
        self.streaming.store(true, Ordering::Relaxed);
        let _ = self.events.send(MediaEvent::StreamingStarted);
        let mut reader = StreamReader::service(self.metadata.clone());
        let mut poll = tokio::time::interval(SOCKET_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                // Stopped (or the call ended): a clean close, as the service does.
                _ = &mut *stop => {
                    let _ = tx.send(WsMessage::Close(None)).await;
                    return Ok(());
                }
                _ = poll.tick() => {
                    while let Some(frame) = self.frames.pop() {
                        let text = self.audio_message(&frame);
                        tx.send(WsMessage::text(text)).await.map_err(|e| e.to_string())?;
                        bump(&self.counters.frames_sent);
                        if frame.silent {
                            bump(&self.counters.silent_frames_sent);
                        }
                    }
                }
                Some(key) = dtmf.recv() => {
                    let text = StreamMessage::DtmfData { dtmf_data: key }.to_json();
                    tx.send(WsMessage::text(text)).await.map_err(|e| e.to_string())?;
                    bump(&self.counters.dtmf_sent);
                }
                message = rx.next() => match message {
                    None => return Err("the bot's socket closed".into()),
                    Some(Err(e)) => return Err(format!("the bot's socket failed: {e}")),
                    Some(Ok(WsMessage::Text(text))) => self.take(&mut reader, text.as_str()),
                    Some(Ok(WsMessage::Binary(_))) => bump(&self.counters.refused_not_json),
                    Some(Ok(WsMessage::Close(_))) => return Err("the bot closed the socket".into()),
                    Some(Ok(_)) => {}
                }
            }
        }
    }

    fn audio_message(&self, frame: &HeardFrame) -> String {
        let participant_raw_id = frame
            .source_id
            .and_then(|id| lock(&self.participants).get(&id).cloned());
        StreamMessage::AudioData {
            audio_data: AudioDataWire {
                data: encode_samples(&frame.samples[..frame.len]),
                timestamp: Some(appmedia_acs::events::rfc3339(std::time::SystemTime::now())),
                participant_raw_id,
                silent: Some(frame.silent),
            },
        }
        .to_json()
    }

    /// One message from the bot.
    fn take(&self, reader: &mut StreamReader, text: &str) {
        match reader.read(text) {
            Ok(Received::Audio(frame)) => {
                bump(&self.counters.bot_frames_received);
                if !self.bidirectional {
                    bump(&self.counters.bot_frames_not_bidirectional);
                } else if self.bot_in.len() >= self.bot_in.capacity() {
                    bump(&self.counters.bot_frames_dropped_full);
                } else {
                    let mut pcm = BotPcm {
                        len: frame.len,
                        samples: [0; MAX_FRAME_SAMPLES],
                    };
                    pcm.samples[..frame.len].copy_from_slice(frame.samples());
                    let _ = self.bot_in.push(pcm);
                }
            }
            Ok(Received::StopAudio) => {
                bump(&self.counters.stop_audio);
                self.flush.fetch_add(1, Ordering::Relaxed);
            }
            // The service's reader takes only AudioData and StopAudio.
            Ok(Received::Metadata(_) | Received::Dtmf(_)) => bump(&self.counters.refused_other),
            Err(e) => {
                tracing::debug!(error = %e, "ACS audio stream: a message from the bot refused");
                self.counters.refused(&e);
            }
        }
    }
}
