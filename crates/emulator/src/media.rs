//! The emulator as the bot's media peer, for `appHostedMediaConfig` calls whose blob is an
//! appmedia blob (`docs/blob.md`): the transport crate answers the bot's offer, a media-core
//! `CallPipeline` mixes the called parties (one player each: a media-samples file, an echo of
//! the bot, or silence) into the stream the bot receives, and what the bot sends is recorded
//! to WAV with audio-io's `CallRecorder`.
//!
//! A blob that is not an appmedia blob (the documentation's `"<Media Session
//! Configuration>"`, say) is Graph's business only: the call goes on without media.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use appmedia_audio_io::playback::AudioClip;
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, RecordingSink, Track};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K, SILENT_FRAME_48};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig, PlayerSender};
use appmedia_transport::{MediaSession, TransportConfig};

/// Why the emulator could not be the bot's media peer.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The blob is an appmedia blob the transport refused (tampered, an answer, ...).
    #[error("mediaConfig.blob: {0}")]
    Offer(#[from] appmedia_transport::TransportError),
    /// The media core refused the pipeline's settings.
    #[error("media pipeline: {0}")]
    Pipeline(#[from] appmedia_media::pipeline::PipelineError),
    /// The recording could not start.
    #[error("recording: {0}")]
    Recording(#[from] appmedia_audio_io::record::RecordError),
    /// The media thread could not start.
    #[error("media thread: {0}")]
    Thread(std::io::Error),
}

/// True when `blob` claims to be an appmedia blob (a JSON object with a `version`): such a
/// blob must be answered, and refusing it is the bot's error to hear about.
pub fn is_appmedia_blob(blob: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(blob)
        .ok()
        .is_some_and(|v| v.get("version").is_some())
}

/// What one called party sends into the call.
#[derive(Clone, Debug)]
pub enum PartySound {
    /// Nothing.
    Silent,
    /// What the bot says, one tick later.
    Echo,
    /// A clip, once, from the moment the party answers.
    Speak(AudioClip),
}

/// One call's media peer. Dropping it stops the media thread and finishes the recording.
pub struct MediaPeer {
    session: MediaSession,
    answered: Vec<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
    recording: Option<PathBuf>,
    worker: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MediaPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPeer")
            .field("session", &self.session.id())
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl MediaPeer {
    /// Answers the bot's offer; returns the peer and the answer blob for the 201 body.
    /// `parties` are the called parties in target order; `recording` records what the bot sends.
    pub async fn answer(
        transport: TransportConfig,
        offer_blob: &str,
        parties: Vec<PartySound>,
        recording: Option<RecordingConfig>,
    ) -> Result<(MediaPeer, String), MediaError> {
        let (session, answer) = MediaSession::answer_blob(transport, offer_blob).await?;
        let mut pipeline = CallPipeline::new(PipelineConfig {
            bot_format: BotAudioFormat::Pcm48k,
            max_players: parties.len().max(1),
            ..PipelineConfig::default()
        })?;
        let epoch = Instant::now();
        session.attach_pipeline(&mut pipeline, epoch);
        let mut players = Vec::with_capacity(parties.len());
        for _ in &parties {
            players.push(pipeline.add_player(4)?);
        }
        let recording_path = recording.as_ref().map(|c| c.path_of(Track::Mixed));
        let recorder = recording.map(CallRecorder::start).transpose()?;
        let answered: Vec<Arc<AtomicBool>> = parties
            .iter()
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = MediaWorker {
            pipeline,
            players,
            parties,
            answered: answered.clone(),
            stop: stop.clone(),
            epoch,
        };
        let worker = thread::Builder::new()
            .name("emulator-media".into())
            .spawn(move || worker.run(recorder))
            .map_err(MediaError::Thread)?;
        Ok((
            MediaPeer {
                session,
                answered,
                stop,
                recording: recording_path,
                worker: Some(worker),
            },
            answer,
        ))
    }

    /// Party `index` answered: from now on it speaks (or echoes).
    pub fn party_answered(&self, index: usize) {
        if let Some(flag) = self.answered.get(index) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// The mixed recording of what the bot sent, when recording.
    pub fn recording(&self) -> Option<&PathBuf> {
        self.recording.as_ref()
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The worker ends within one tick and finishes the recording itself; nobody waits
        // for it here, as a drop may run on an async worker.
        drop(self.worker.take());
    }
}

struct MediaWorker {
    pipeline: CallPipeline,
    players: Vec<PlayerSender>,
    parties: Vec<PartySound>,
    answered: Vec<Arc<AtomicBool>>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
}

impl MediaWorker {
    /// Ticks every 20 ms against absolute deadlines (no drift) until stopped.
    fn run(mut self, recorder: Option<(CallRecorder, RecordingSink)>) {
        let mut positions = vec![0usize; self.parties.len()];
        let mut heard: Frame48 = SILENT_FRAME_48;
        let mut tick: u64 = 0;
        let mut dropped_frames: u64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let now = FRAME_DURATION * u32::try_from(tick).unwrap_or(u32::MAX);
            if let Some(wait) = (self.epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            for (i, party) in self.parties.iter().enumerate() {
                if !self.answered[i].load(Ordering::Relaxed) {
                    continue;
                }
                let frame = match party {
                    PartySound::Silent => continue,
                    PartySound::Echo => heard,
                    PartySound::Speak(clip) => {
                        let samples = clip.samples();
                        let at = positions[i];
                        if at >= samples.len() {
                            continue;
                        }
                        let mut frame = SILENT_FRAME_48;
                        let end = (at + SAMPLES_PER_FRAME_48K).min(samples.len());
                        frame[..end - at].copy_from_slice(&samples[at..end]);
                        positions[i] = end;
                        frame
                    }
                };
                if self.players[i].send(&frame).is_err() {
                    dropped_frames += 1;
                }
            }
            self.pipeline.tick(now);
            heard = *self.pipeline.bot_frame_48k();
            if let Some((_, sink)) = &recorder
                && sink.push(tick, Track::Mixed, &heard).is_err()
            {
                dropped_frames += 1;
            }
            tick += 1;
        }
        if let Some((recorder, _)) = recorder {
            let status = recorder.finish();
            tracing::info!(?status, "emulator recording finished");
        }
        tracing::debug!(
            ticks = tick,
            dropped_frames,
            "emulator media worker stopped"
        );
    }
}
