//! Setting up a call's app-hosted media: the WebRTC offer whose blob goes to Graph, then, once
//! the call id is known, the pipeline, its queues, prompts and recorder on the scheduler.

use std::sync::Arc;

use appmedia_audio_io::playback::{PromptPlayer, PromptQueue};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, RecordingSink};
use appmedia_media::pcm::PcmRate;
use appmedia_media::pipeline::{
    BotAudioFormat, CallPipeline, PipelineConfig, SendOutput, ToneSender,
};
use appmedia_media::queue::Producer;
use appmedia_media::scheduler::CallHandle;
use appmedia_transport::{EndReason, SessionStats, TransportConfig, WebRtcSession};
use tokio::sync::mpsc;

use crate::acs::stream::{StreamLink, StreamSlot};

use crate::bot::BotInner;
use crate::error::BotError;
use crate::media::{AudioSocket, CallMedia, MediaFeed, MediaOptions, RecordOptions, SendGate};

/// Prompts a call's player holds (queued and playing).
const PROMPT_QUEUE: usize = 16;

/// The bot's WebRTC offer for a call, before the service has answered it: on the bot's
/// shared media port when it has one (`media.media_port`). Takes what it
/// needs of the media options by value: the options (taps, sources) are `Send` but not `Sync`,
/// and a reference held across the await would make the caller's future not `Send`.
pub(crate) async fn offer(
    inner: &BotInner,
    unmixed: bool,
    unmixed_streams: usize,
) -> Result<WebRtcSession, BotError> {
    let config = TransportConfig {
        receive_unmixed_meeting_audio: unmixed,
        unmixed_audio_streams: unmixed_streams.max(1),
        ..inner.transport.clone()
    };
    Ok(WebRtcSession::offer(inner.media_port.as_ref(), config).await?)
}

/// How a call's audio reaches the service: the bot's WebRTC session (Graph, the emulator,
/// any WebRTC peer), or ACS's audio WebSocket.
#[derive(Clone)]
pub(crate) enum MediaLink {
    WebRtc(Arc<WebRtcSession>),
    Stream(Arc<StreamLink>),
}

impl MediaLink {
    /// Resolves once audio can flow, or with why it never will.
    pub(crate) async fn connected(&self) -> Result<(), EndReason> {
        match self {
            MediaLink::WebRtc(session) => session.connected().await,
            MediaLink::Stream(link) => link.connected().await,
        }
    }

    /// Resolves when the link ends.
    pub(crate) async fn ended(&self) -> EndReason {
        match self {
            MediaLink::WebRtc(session) => session.ended().await,
            MediaLink::Stream(link) => link.ended().await,
        }
    }

    /// The transport's last counters (WebRTC only: a WebSocket has no RTCP).
    pub(crate) async fn stats(&self) -> Option<SessionStats> {
        match self {
            MediaLink::WebRtc(session) => Some(session.stats().await),
            MediaLink::Stream(_) => None,
        }
    }

    /// Closes the link.
    pub(crate) async fn close(&self) {
        match self {
            MediaLink::WebRtc(session) => session.close().await,
            MediaLink::Stream(link) => link.close(),
        }
    }

    /// The WebRTC session, for the answer blob.
    pub(crate) fn session(&self) -> Option<&WebRtcSession> {
        match self {
            MediaLink::WebRtc(session) => Some(session),
            MediaLink::Stream(_) => None,
        }
    }
}

/// A call's media once running on a worker.
pub(crate) struct LiveMedia {
    pub link: MediaLink,
    pub handle: CallHandle,
    pub feed: MediaFeed,
    /// Taken by the bot's `Call`.
    pub socket: Option<AudioSocket>,
    pub prompts: PromptQueue,
    pub tones: Option<ToneSender>,
    /// The recording asked for at set-up.
    pub recorder: Option<CallRecorder>,
    /// Opened by the driver once the far end hears the bot.
    pub send_gate: SendGate,
    /// Keys pressed, as the ACS audio stream reports them (key, stream key).
    pub dtmf: Option<mpsc::Receiver<(char, u32)>>,
}

/// Builds the pipeline for `session`, connects it, and puts it on a worker. Packets flow as
/// soon as the session has the service's answer and connects.
pub(crate) fn start(
    inner: &Arc<BotInner>,
    call_id: &str,
    session: WebRtcSession,
    options: MediaOptions,
) -> Result<LiveMedia, BotError> {
    session.set_call_id(call_id);
    let mut config = PipelineConfig {
        bot_format: BotAudioFormat::Pcm16k,
        audio_level_ext_id: session.audio_level_extension_id(),
        telephone_event_payload_type: inner.transport.telephone_event_payload_type,
        ..PipelineConfig::default()
    };
    config.encoder.bitrate_bps = inner.config.media.audio_bitrate_bps;
    if options.unmixed {
        config.max_remote_streams = options.unmixed_streams + 1;
        config.max_unmixed = options.unmixed_streams;
    }
    let mut pipeline = CallPipeline::new(config)?;
    session.attach_pipeline(&mut pipeline, inner.epoch);
    run(
        inner,
        call_id,
        pipeline,
        options,
        MediaLink::WebRtc(Arc::new(session)),
        None,
    )
}

/// Frames of the bot's send side waiting for the socket task (it drains them every 5 ms).
const STREAM_OUTBOX_FRAMES: usize = 25;

/// Builds the pipeline of a call whose audio is ACS's WebSocket: PCM in (mixed, or one
/// stream per participant), PCM out at the stream's rate, no codec. The returned slot waits
/// for the service's socket.
pub(crate) fn start_stream(
    inner: &Arc<BotInner>,
    call_id: &str,
    rate: PcmRate,
    options: MediaOptions,
) -> Result<(LiveMedia, Arc<StreamSlot>), BotError> {
    let mut config = PipelineConfig {
        bot_format: BotAudioFormat::Pcm16k,
        send_output: SendOutput::Pcm(rate),
        telephone_event_payload_type: None,
        ..PipelineConfig::default()
    };
    if options.unmixed {
        config.max_remote_streams = options.unmixed_streams + 1;
        config.max_unmixed = options.unmixed_streams;
    }
    let mut pipeline = CallPipeline::new(config)?;
    let outbox = pipeline.pcm_outbox(STREAM_OUTBOX_FRAMES)?;
    let (slot, dtmf) = StreamSlot::new(pipeline.pcm_inbox(), outbox, rate, inner.epoch);
    let media = run(
        inner,
        call_id,
        pipeline,
        options,
        MediaLink::Stream(slot.link.clone()),
        Some(dtmf),
    )?;
    Ok((media, slot))
}

/// Wraps a built pipeline with the call's socket, prompts, sources, taps and recorder, and
/// puts it on a worker.
fn run(
    inner: &Arc<BotInner>,
    call_id: &str,
    mut pipeline: CallPipeline,
    mut options: MediaOptions,
    link: MediaLink,
    dtmf: Option<mpsc::Receiver<(char, u32)>>,
) -> Result<LiveMedia, BotError> {
    let socket_rx = pipeline.bot_audio_outbox(options.socket_frames)?;
    let socket = AudioSocket::new(call_id.to_owned(), socket_rx, pipeline.bot_sender());
    let tones = pipeline.tone_sender().ok();
    let (player, prompts) = PromptPlayer::new(PROMPT_QUEUE);
    let send_gate = SendGate::default();
    let (media, feed) = CallMedia::new(
        pipeline,
        player,
        std::mem::take(&mut options.sources),
        std::mem::take(&mut options.taps),
        send_gate.clone(),
    )?;
    let recorder = match options.record.take() {
        Some(record) => Some(start_recording(inner, call_id, &record, &feed.recorder)?),
        None => None,
    };
    let handle = inner.schedule(media)?;
    Ok(LiveMedia {
        link,
        handle,
        feed,
        socket: Some(socket),
        prompts,
        tones,
        recorder,
        send_gate,
        dtmf,
    })
}

/// Starts recording what the bot hears: `{prefix}-{call id}-mixed.wav` and one file per
/// speaker in the record options' directory (else the bot's, else `recordings`). The sink goes
/// to the worker through `to_worker`; the returned recorder finishes the files.
pub(crate) fn start_recording(
    inner: &BotInner,
    call_id: &str,
    record: &RecordOptions,
    to_worker: &Producer<RecordingSink>,
) -> Result<CallRecorder, BotError> {
    let dir = record
        .directory
        .clone()
        .or_else(|| inner.config.recordings_dir.clone())
        .unwrap_or_else(|| "recordings".into());
    std::fs::create_dir_all(&dir).map_err(|source| {
        BotError::Recording(appmedia_audio_io::record::RecordError::Unwritable {
            path: dir.clone(),
            source,
        })
    })?;
    let mut config = RecordingConfig::new(&dir, format!("{}-{call_id}", record.prefix));
    config.output_sample_rate = record.sample_rate;
    let (recorder, sink) = CallRecorder::start(config)?;
    if let appmedia_media::queue::Push::Disconnected(_) = to_worker.push(sink) {
        return Err(BotError::CallEnded {
            call_id: call_id.to_owned(),
        });
    }
    Ok(recorder)
}
