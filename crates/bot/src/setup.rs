//! Setting up a call's app-hosted media: the WebRTC offer whose blob goes to Graph, then, once
//! the call id is known, the pipeline, its queues, prompts and recorder on the scheduler.

use std::sync::Arc;

use appmedia_audio_io::playback::{PromptPlayer, PromptQueue};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, RecordingSink};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig, ToneSender};
use appmedia_media::queue::Producer;
use appmedia_media::scheduler::CallHandle;
use appmedia_transport::{MediaSession, TransportConfig};

use crate::bot::BotInner;
use crate::error::BotError;
use crate::media::{AudioSocket, CallMedia, MediaFeed, MediaOptions, RecordOptions, SendGate};

/// Prompts a call's player holds (queued and playing).
const PROMPT_QUEUE: usize = 16;

/// The bot's WebRTC offer for a call, before the service has answered it. Takes what it
/// needs of the media options by value: the options (taps, sources) are `Send` but not `Sync`,
/// and a reference held across the await would make the caller's future not `Send`.
pub(crate) async fn offer(
    inner: &BotInner,
    unmixed: bool,
    unmixed_streams: usize,
) -> Result<MediaSession, BotError> {
    let config = TransportConfig {
        receive_unmixed_meeting_audio: unmixed,
        unmixed_audio_streams: unmixed_streams.max(1),
        ..inner.transport.clone()
    };
    Ok(MediaSession::offer(config).await?)
}

/// A call's media once running on a worker.
pub(crate) struct LiveMedia {
    pub session: Arc<MediaSession>,
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
}

/// Builds the pipeline for `session`, connects it, and puts it on a worker. Packets flow as
/// soon as the session has the service's answer and connects.
pub(crate) fn start(
    inner: &Arc<BotInner>,
    call_id: &str,
    session: MediaSession,
    mut options: MediaOptions,
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
    let socket_rx = pipeline.bot_audio_outbox(options.socket_frames)?;
    let socket = AudioSocket::new(call_id.to_owned(), socket_rx, pipeline.bot_sender());
    let tones = pipeline.tone_sender().ok();
    let (player, prompts) = PromptPlayer::new(PROMPT_QUEUE);
    session.attach_pipeline(&mut pipeline, inner.epoch);
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
        session: Arc::new(session),
        handle,
        feed,
        socket: Some(socket),
        prompts,
        tones,
        recorder,
        send_gate,
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
