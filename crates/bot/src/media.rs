//! A call's app-hosted media on the bot's shared scheduler: the pipeline, its prompt player,
//! recorder, taps and sources, ticked by a media worker; and the [`AudioSocket`], the bot's
//! end of the audio (Graph's `IAudioSocket`: 20 ms PCM 16 kHz frames in both directions).
//!
//! Everything that crosses between the worker and the rest goes through bounded lock-free
//! queues made at call set-up, so the tick neither allocates nor locks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use appmedia_audio_io::playback::{PlayerCounters, PromptPlayer};
use appmedia_audio_io::record::{RecordingSink, Track};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SILENT_FRAME_48};
use appmedia_media::pipeline::{
    BotAudio16k, BotSender, CallPipeline, HandOffError, PipelineEvent, PipelineStats, PlayerFrame,
    PlayerSender, RtpReceiveTotals, SendOutcome, StreamStats,
};
use appmedia_media::queue::{Consumer, Producer};
use appmedia_media::scheduler::Tickable;

/// How a call's app-hosted media is set up.
pub struct MediaOptions {
    /// Receive one stream per speaker as well as the mix (Graph's
    /// `ReceiveUnmixedMeetingAudio`).
    pub unmixed: bool,
    /// How many unmixed streams to offer to receive (Graph gives four).
    pub unmixed_streams: usize,
    /// Record what the bot hears into the bot's recordings directory: the mix and one file
    /// per speaker, named `{prefix}-{call id}-…wav`.
    pub record: Option<RecordOptions>,
    /// Frames the audio socket's receive queue holds before the oldest is dropped.
    pub socket_frames: usize,
    /// Code run on the media worker after each tick (meters, speakers).
    pub taps: Vec<Box<dyn MediaTap>>,
    /// Audio mixed into what the bot sends, besides the audio socket and prompts (a microphone).
    pub sources: Vec<Box<dyn MediaSource>>,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            unmixed: false,
            unmixed_streams: 4,
            record: None,
            socket_frames: 50,
            taps: Vec::new(),
            sources: Vec::new(),
        }
    }
}

impl std::fmt::Debug for MediaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaOptions")
            .field("unmixed", &self.unmixed)
            .field("unmixed_streams", &self.unmixed_streams)
            .field("record", &self.record)
            .field("socket_frames", &self.socket_frames)
            .field("taps", &self.taps.len())
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl MediaOptions {
    /// Asks for unmixed per-speaker audio (meetings).
    pub fn unmixed(mut self) -> Self {
        self.unmixed = true;
        self
    }

    /// Records the call into the bot's recordings directory.
    pub fn recorded(mut self, record: RecordOptions) -> Self {
        self.record = Some(record);
        self
    }

    /// Adds a tap run on the media worker after each tick.
    pub fn tap(mut self, tap: impl MediaTap) -> Self {
        self.taps.push(Box::new(tap));
        self
    }

    /// Adds a source mixed into what the bot sends.
    pub fn source(mut self, source: impl MediaSource) -> Self {
        self.sources.push(Box::new(source));
        self
    }
}

/// Where and how a call is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordOptions {
    /// File name prefix.
    pub prefix: String,
    /// Sample rate of the files (16 000 or 48 000).
    pub sample_rate: u32,
    /// Another directory than the bot's.
    pub directory: Option<PathBuf>,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            prefix: "call".into(),
            sample_rate: 16_000,
            directory: None,
        }
    }
}

/// Code run on the media worker after each tick, with what the bot heard: a level meter,
/// speakers, an analyser. Real-time rules apply: no allocation, no lock, no blocking call.
pub trait MediaTap: Send + 'static {
    /// `tick` is the call's frame number (20 ms each from its first tick; after a stall the
    /// worker skips ahead and so does `tick`); `pipeline`'s accessors give the mix
    /// (`bot_frame_48k`), the unmixed frames, the active and dominant speakers.
    fn on_tick(&mut self, tick: u64, pipeline: &CallPipeline);
}

/// Audio mixed into what the bot sends, pulled on the media worker each tick: a microphone, a
/// synthesiser. Real-time rules apply.
pub trait MediaSource: Send + 'static {
    /// Writes the next 20 ms at 48 kHz; false when it has nothing this tick.
    fn next_frame(&mut self, out: &mut Frame48) -> bool;
}

/// The prompt player is a source: files queued through the call's prompt queue.
impl MediaSource for PromptPlayer {
    fn next_frame(&mut self, out: &mut Frame48) -> bool {
        PromptPlayer::next_frame(self, out)
    }
}

/// Remote streams a [`MediaSnapshot`] reports (the mix and eight unmixed speakers).
pub const MAX_SNAPSHOT_STREAMS: usize = 9;

/// A call's media counters, taken on the worker once a second and at the end.
#[derive(Clone, Copy, Debug, Default)]
pub struct MediaSnapshot {
    /// Call-wide counters (packets, DTX, queues, DTMF...).
    pub pipeline: PipelineStats,
    /// Ticks whose mix was not silence (the bot heard someone).
    pub heard_ticks: u64,
    /// When the call's media ticked first, after the bot scheduler's epoch: sample 0 of a
    /// recording started with the call was heard then.
    pub first_tick: Option<Duration>,
    /// The call's prompt player (`play_file`, `play_clip`, `play_streamed`): frames played,
    /// streamed prompts whose decoder fell behind, completion events lost.
    pub prompts: PlayerCounters,
    /// RTP received over every stream the call has had (live or gone): only grows.
    pub rtp_received: RtpReceiveTotals,
    streams: [Option<StreamStats>; MAX_SNAPSHOT_STREAMS],
}

impl MediaSnapshot {
    /// The live remote streams (jitter buffer, loss, concealment per SSRC).
    pub fn streams(&self) -> impl Iterator<Item = &StreamStats> {
        self.streams.iter().flatten()
    }
}

/// Queue sizes between the worker and the call's driver task.
const EVENT_QUEUE: usize = 64;
/// Ticks between two stats snapshots (one second).
const STATS_EVERY_TICKS: u64 = 50;
/// Frames each source may queue ahead.
const SOURCE_QUEUE_FRAMES: usize = 4;

/// One call's media, owned by a scheduler worker.
pub(crate) struct CallMedia {
    pipeline: CallPipeline,
    /// The prompt player, apart from the other sources so that its counters reach the
    /// snapshots.
    prompts: (PromptPlayer, PlayerSender),
    sources: Vec<(Box<dyn MediaSource>, PlayerSender)>,
    taps: Vec<Box<dyn MediaTap>>,
    recorder: Option<RecordingSink>,
    /// A recording started during the call arrives here (one slot, taken at the next tick).
    new_recorder: Consumer<RecordingSink>,
    events: Producer<PipelineEvent>,
    stats: Producer<MediaSnapshot>,
    snapshot: MediaSnapshot,
    frame: Frame48,
    /// The prompt player's frame, with its Opus packet when an Ogg/Opus prompt can pass
    /// through.
    prompt_frame: PlayerFrame,
    tick: u64,
    /// Set by the call's driver once the far end hears the bot (see [`SendGate`]).
    send_gate: SendGate,
}

/// Whether the far end hears what the bot sends: Graph's `AudioSendStatus`. The call's
/// driver opens it once the media is connected and the call established (before that the
/// service discards the media: a greeting would lose its first words) and closes it when the
/// media ends. While closed, the worker leaves the prompts and sources where they are and the
/// pipeline's send side rests ([`CallPipeline::set_send_active`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct SendGate(Arc<AtomicBool>);

impl SendGate {
    pub(crate) fn set(&self, open: bool) {
        self.0.store(open, Ordering::Release);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The driver task's end of a call's media queues.
pub(crate) struct MediaFeed {
    pub events: Consumer<PipelineEvent>,
    pub stats: Consumer<MediaSnapshot>,
    /// Starts recording on the worker: the sink of a new `CallRecorder`.
    pub recorder: Producer<RecordingSink>,
}

impl CallMedia {
    /// Wraps `pipeline` with its prompt player and sources (each gets a player slot) and taps.
    pub(crate) fn new(
        mut pipeline: CallPipeline,
        prompts: PromptPlayer,
        sources: Vec<Box<dyn MediaSource>>,
        taps: Vec<Box<dyn MediaTap>>,
        send_gate: SendGate,
    ) -> Result<(CallMedia, MediaFeed), appmedia_media::pipeline::PipelineError> {
        let prompts = (prompts, pipeline.add_player(SOURCE_QUEUE_FRAMES)?);
        let sources = sources
            .into_iter()
            .map(|s| Ok((s, pipeline.add_player(SOURCE_QUEUE_FRAMES)?)))
            .collect::<Result<Vec<_>, appmedia_media::pipeline::PipelineError>>()?;
        let (events, events_rx) = appmedia_media::queue::bounded(EVENT_QUEUE);
        // One slot: a newer snapshot replaces an unread one.
        let (stats, stats_rx) = appmedia_media::queue::bounded(1);
        let (recorder_tx, new_recorder) = appmedia_media::queue::bounded(1);
        Ok((
            CallMedia {
                pipeline,
                prompts,
                sources,
                taps,
                recorder: None,
                new_recorder,
                events,
                stats,
                snapshot: MediaSnapshot::default(),
                frame: SILENT_FRAME_48,
                prompt_frame: PlayerFrame::SILENT,
                tick: 0,
                send_gate,
            },
            MediaFeed {
                events: events_rx,
                stats: stats_rx,
                recorder: recorder_tx,
            },
        ))
    }
}

impl Tickable for CallMedia {
    fn tick(&mut self, now: Duration) {
        let open = self.send_gate.is_open();
        self.pipeline.set_send_active(open);
        // Held, the prompts and sources keep their place: played from there once heard.
        if open {
            let (player, out) = &mut self.prompts;
            if player.next_player_frame(&mut self.prompt_frame) {
                let _ = out.send_frame(&self.prompt_frame);
            }
            for (source, out) in &mut self.sources {
                if source.next_frame(&mut self.frame) {
                    // A full player queue drops its oldest frame: the source ran ahead.
                    let _ = out.send(&self.frame);
                }
            }
        }
        let report = self.pipeline.tick(now);
        if !report.is_silence {
            self.snapshot.heard_ticks += 1;
        }
        let first = *self.snapshot.first_tick.get_or_insert(now);
        // The frame number from the media time, not from a count of ticks: after a stall the
        // worker skips periods, and a recording then gets silence for them (a gap), never a
        // shift — its sample n stays at first tick + n / rate.
        let frame = (now.saturating_sub(first).as_nanos() / FRAME_DURATION.as_nanos()) as u64;
        if let Some(sink) = self.new_recorder.pop() {
            // The previous sink (if any) is replaced; dropping a sink only closes a channel end.
            self.recorder = Some(sink);
        }
        if let Some(sink) = &self.recorder {
            // A full recorder queue drops the frame and counts it (RecordingStatus).
            let _ = sink.push(frame, Track::Mixed, self.pipeline.bot_frame_48k());
            for unmixed in self.pipeline.unmixed() {
                let _ = sink.push(frame, Track::Speaker(unmixed.source_id), unmixed.pcm48);
            }
        }
        for tap in &mut self.taps {
            tap.on_tick(frame, &self.pipeline);
        }
        while let Some(event) = self.pipeline.poll_event() {
            // Drop-oldest: a driver that stopped reading loses old events, never the tick.
            let _ = self.events.push(event);
        }
        if self.tick.is_multiple_of(STATS_EVERY_TICKS) {
            self.publish();
        }
        self.tick += 1;
    }
}

impl CallMedia {
    /// Copies the counters into the one-slot stats queue (no allocation: all `Copy`).
    fn publish(&mut self) {
        self.snapshot.pipeline = *self.pipeline.stats();
        self.snapshot.prompts = self.prompts.0.counters();
        self.snapshot.rtp_received = self.pipeline.rtp_receive_totals();
        self.snapshot.streams = [None; MAX_SNAPSHOT_STREAMS];
        for (slot, stream) in self
            .snapshot
            .streams
            .iter_mut()
            .zip(self.pipeline.stream_stats())
        {
            *slot = Some(stream);
        }
        let _ = self.stats.push(self.snapshot);
    }
}

impl Drop for CallMedia {
    /// The last counters, taken when the call leaves its worker.
    fn drop(&mut self) {
        self.publish();
    }
}

/// The bot's end of a call's audio, like Graph's `IAudioSocket`: every 20 ms a
/// [`BotAudio16k`] (the mix as 640 bytes of PCM 16 kHz s16le, up to four unmixed speakers,
/// active and dominant speakers, the silence flag); and frames the bot sends.
///
/// Receiving never blocks the media worker: when the bot falls behind, the oldest frames are
/// dropped (counted in the call's media stats, `bot_audio_outbox.evicted`). Sending queues
/// into the pipeline's send buffer, which smooths a bot whose timing is uneven.
pub struct AudioSocket {
    call_id: String,
    rx: Consumer<BotAudio16k>,
    tx: BotSender,
}

impl std::fmt::Debug for AudioSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioSocket")
            .field("call_id", &self.call_id)
            .field("queued", &self.rx.len())
            .finish()
    }
}

/// How often [`AudioSocket::recv`] looks for a frame while none is queued.
const RECV_POLL: Duration = Duration::from_millis(5);

impl AudioSocket {
    pub(crate) fn new(call_id: String, rx: Consumer<BotAudio16k>, tx: BotSender) -> Self {
        AudioSocket { call_id, rx, tx }
    }

    /// The call this socket belongs to.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The oldest received frame, if one is queued.
    pub fn try_recv(&self) -> Option<BotAudio16k> {
        self.rx.pop()
    }

    /// The next received frame; `None` once the call's media has ended and every frame was
    /// read.
    pub async fn recv(&self) -> Option<BotAudio16k> {
        loop {
            if let Some(frame) = self.rx.pop() {
                return Some(frame);
            }
            if self.rx.is_finished() {
                return None;
            }
            tokio::time::sleep(RECV_POLL).await;
        }
    }

    /// Sends 20 ms of PCM 16 kHz s16le (640 bytes), Graph's `Pcm16K`.
    pub fn send(&self, pcm: &[u8]) -> Result<SendOutcome, HandOffError> {
        self.tx.send_pcm16k(pcm)
    }

    /// A sender usable from another thread.
    pub fn sender(&self) -> BotSender {
        self.tx.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_audio_io::record::{CallRecorder, RecordingConfig};
    use appmedia_media::pipeline::PipelineConfig;
    use std::sync::{Arc, Mutex};

    fn open_gate() -> SendGate {
        let gate = SendGate::default();
        gate.set(true);
        gate
    }

    #[test]
    fn a_prompt_started_before_the_far_end_hears_plays_from_its_start_once_it_does() {
        let pipeline = CallPipeline::new(PipelineConfig::default()).unwrap();
        let (player, prompts) = PromptPlayer::new(4);
        let gate = SendGate::default();
        let (mut media, feed) =
            CallMedia::new(pipeline, player, Vec::new(), Vec::new(), gate.clone()).unwrap();
        // A 1 s prompt, queued before the call is heard.
        let clip = appmedia_audio_io::clip::AudioClip::from_samples(vec![0.25; 48_000]).unwrap();
        prompts
            .play(&clip, appmedia_audio_io::playback::PlayMode::Once)
            .unwrap();
        let tick = Duration::from_millis(20);
        for n in 0..25 {
            media.tick(tick * n);
            assert!(
                media.pipeline.outgoing_packet().is_none(),
                "held at tick {n}"
            );
        }
        assert_eq!(media.prompts.0.counters().frames_played, 0, "not started");
        gate.set(true);
        let mut sent = 0;
        for n in 25..100 {
            media.tick(tick * n);
            sent += usize::from(media.pipeline.outgoing_packet().is_some());
        }
        // All 50 frames of the prompt were played (and sent, with the tail of the queue).
        assert_eq!(media.prompts.0.counters().frames_played, 50);
        assert!(sent >= 50, "{sent} packets");
        drop(media);
        let snapshot = feed.stats.pop().expect("a last snapshot");
        assert_eq!(snapshot.pipeline.send_held_ticks, 25);
    }

    /// Notes the frame numbers it is ticked with.
    struct Frames(Arc<Mutex<Vec<u64>>>);

    impl MediaTap for Frames {
        fn on_tick(&mut self, tick: u64, _pipeline: &CallPipeline) {
            self.0.lock().unwrap().push(tick);
        }
    }

    #[test]
    fn skipped_periods_are_a_gap_in_the_recording_not_a_shift() {
        let dir = std::env::temp_dir().join(format!("appmedia-bot-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let pipeline = CallPipeline::new(PipelineConfig::default()).unwrap();
        let (player, _prompts) = PromptPlayer::new(1);
        let (mut media, feed) = CallMedia::new(
            pipeline,
            player,
            Vec::new(),
            vec![Box::new(Frames(frames.clone()))],
            open_gate(),
        )
        .unwrap();
        let (recorder, sink) = CallRecorder::start(RecordingConfig::new(&dir, "skip")).unwrap();
        assert!(matches!(
            feed.recorder.push(sink),
            appmedia_media::queue::Push::Queued
        ));
        // The call joins the worker at 1 s; the worker then stalls and skips 7 periods.
        let ms = Duration::from_millis;
        for now in [ms(1000), ms(1020), ms(1040), ms(1200), ms(1220)] {
            media.tick(now);
        }
        drop(media);
        let status = recorder.finish();
        assert_eq!(*frames.lock().unwrap(), [0, 1, 2, 10, 11]);
        let mixed = status
            .tracks
            .iter()
            .find(|t| t.track == Track::Mixed)
            .expect("a mixed track");
        // 12 frames of 20 ms at 16 kHz: sample n was heard at the first tick + n / rate.
        assert_eq!(mixed.samples_written, 12 * 320);
        let snapshot = feed.stats.pop().expect("a last snapshot");
        assert_eq!(snapshot.first_tick, Some(ms(1000)));
        assert_eq!(snapshot.pipeline.ticks, 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
