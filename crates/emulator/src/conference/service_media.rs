//! Service-hosted media (`serviceHostedMediaConfig`): the emulator itself is the bot's voice.
//! (The requests below are checked in `crate::http::prompts`; the work is done here.)
//!
//! Graph plays prompts for such a bot; here the call's conference (`appmedia-emulator-media`
//! [`ConferenceMedia`], on the emulator's conference scheduler) runs with no RTP peer, and the
//! "bot" source of its mix is an `appmedia-audio-io` [`PromptPlayer`]: every party hears what
//! the service plays (mix-minus, as in app-hosted calls), and when recording is on, the
//! `{call}-mixed.wav` track is everyone (the prompts and the parties) and `{call}-speaker-1.wav`
//! the prompts alone.
//!
//! * `preFetchMedia` entries are resolved to local files when the call is created (see
//!   [`crate::directory::Directory::media_file`]), decoded and validated then: an unmappable
//!   URI or an unreadable file is a 400 naming the field
//!   (`mediaConfig.preFetchMedia[1].uri`).
//! * `POST /communications/calls/{id}/playPrompt` queues the prompts (pre-fetched ones by URI
//!   or `resourceId`, others resolved the same way) and answers `200` with a
//!   `playPromptOperation` (`status: running`, `Location: …/operations/{id}`); when the last
//!   prompt has played, a `deleted` notification on `/communications/calls/{id}/operations/{op}`
//!   carries the operation `completed` with `resultInfo` 200/0, as Graph documents.
//! * `POST /communications/calls/{id}/cancelMediaProcessing` cancels the playing and queued
//!   prompts: their operations end `failed` with `resultInfo` 400/8508 ("the operation was
//!   cancelled", Graph's code for a cancelled media operation); it answers `200` with a
//!   `cancelMediaProcessingOperation` (`status: completed`).
//!
//! [`MediaTimeline`] also lives here: per party, the instant its first audible sample entered
//! the conference, for mouth-to-ear latency ([`crate::Emulator::call_media`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{
    PlayMode, PromptEvent, PromptId, PromptOutcome, PromptPlayer, PromptQueue,
};
use appmedia_audio_io::record::{RecordingConfig, Track};
use appmedia_emulator_media::realtime::{QueueSizes, RunningConference};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceControl, ConferenceEvent, ConferenceMedia,
};
use appmedia_model::{Call, MediaConfig};
use axum::http::StatusCode;
use serde_json::json;

use crate::conference::heard::Recorders;
use crate::conference::media::BOT_SOURCE_ID;
use crate::conference::service_actions::{ResponseStore, ServiceActions};
use crate::directory::Directory;
use crate::error::ApiError;
use crate::notify::NotificationQueue;
use appmedia_emulator_media::realtime::ConferenceScheduler;

/// Graph's limit on prompts in one `playPrompt` request.
pub const MAX_PROMPTS_PER_REQUEST: usize = 20;
/// Prompts queued or playing in one call at once (a request beyond it is refused).
pub const MAX_QUEUED_PROMPTS: usize = 64;
/// Graph's limit on `clientContext`.
pub const MAX_CLIENT_CONTEXT_CHARS: usize = 256;
/// How often prompt completions and conference events are collected: a frame.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Where the emulator records everyone in call `call_id` (the prompts and every party: what
/// the parties hear, each minus itself) when recording to `dir`.
pub fn mixed_recording_path(dir: &Path, call_id: &str) -> PathBuf {
    RecordingConfig::new(dir, call_id).path_of(Track::Mixed)
}

/// A call's media timeline, as [`crate::Emulator::call_media`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallMedia {
    /// The parties in the roster now (not the bot), in roster order.
    pub parties: Vec<PartyMedia>,
}

/// One party's media timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyMedia {
    /// The roster's `participant.id`.
    pub participant_id: String,
    /// The media source id (the roster's `mediaStreams[].sourceId`, the unmixed SSRC).
    pub source_id: u32,
    /// The "mouth" instant of its first audible sample (louder than -80 dBFS): on the process
    /// clock ([`Instant`]), the time that sample would have been spoken into a microphone whose
    /// 20 ms frame was complete when the conference mixed it. `None` while it said nothing.
    /// Mouth-to-ear = the instant the bot played that sample out minus this.
    pub first_audio_at: Option<Instant>,
}

/// Per party, when its first audible sample entered the conference (from the conference's
/// `PartyAudioStarted` events, whose tick clock starts at the scheduler's epoch).
#[derive(Clone, Debug)]
pub struct MediaTimeline {
    epoch: Instant,
    first_audio: Arc<Mutex<HashMap<u32, Instant>>>,
}

impl MediaTimeline {
    /// A timeline for a conference ticked by a scheduler whose `now = 0` is `epoch`.
    pub fn new(epoch: Instant) -> Self {
        MediaTimeline {
            epoch,
            first_audio: Arc::default(),
        }
    }

    /// Takes note of what a conference event says about the timeline.
    pub fn observe(&self, event: &ConferenceEvent) {
        if let ConferenceEvent::PartyAudioStarted { source_id, at } = *event {
            self.lock().entry(source_id).or_insert(self.epoch + at);
        }
    }

    /// The instant party `source_id`'s first audible sample was spoken.
    pub fn first_audio(&self, source_id: u32) -> Option<Instant> {
        self.lock().get(&source_id).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Instant>> {
        self.first_audio.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Looks a prompt URI up in the directory's `[media]` table (then the seed's defaults), and
/// decodes the file (any WAV or Ogg/Opus `AudioClip::open` reads). Decoded clips are cached by
/// path: the same prompt in many calls is read once.
#[derive(Debug, Default)]
pub struct PromptLibrary {
    cache: Mutex<HashMap<PathBuf, AudioClip>>,
}

impl PromptLibrary {
    /// The file `uri` names, or a 400 naming `field`: the directory's `[media]` table, then
    /// the seed's defaults, inside `samples_dir`.
    pub fn resolve(
        directory: &Directory,
        samples_dir: &Path,
        uri: &str,
        field: &str,
    ) -> Result<PathBuf, ApiError> {
        match directory.media_file(uri) {
            Some(file) => Ok(samples_dir.join(file)),
            None => Err(ApiError::bad_request(format!(
                "{field}: {uri:?} is not a media URI this service can fetch (map it to a local \
                 file in the directory's [media] table)"
            ))),
        }
    }

    /// The clip at `path` (what [`resolve`](Self::resolve) gave for `uri`), or a 400 naming
    /// `field`. Blocking (file I/O and resampling).
    pub fn load(&self, path: &Path, uri: &str, field: &str) -> Result<AudioClip, ApiError> {
        if let Some(clip) = self.lock().get(path) {
            return Ok(clip.clone());
        }
        let clip = AudioClip::open(path).map_err(|e| {
            ApiError::bad_request(format!("{field}: {uri:?} cannot be played: {e}"))
        })?;
        self.lock().insert(path.to_owned(), clip.clone());
        Ok(clip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, AudioClip>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What service-hosted media needs of the emulator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServiceMediaContext<'a> {
    /// The directory: its `[media]` table names the prompt files.
    pub directory: &'a Directory,
    /// Where those files are.
    pub samples_dir: &'a Path,
    /// Where calls are recorded (`None`: not recorded).
    pub recordings_dir: Option<&'a Path>,
    /// Decoded prompts, shared by every call.
    pub prompts: &'a Arc<PromptLibrary>,
    /// The emulator's conference scheduler.
    pub conferences: &'a ConferenceScheduler,
    /// The service's root URL (`recordResponse`'s `recordingLocation`).
    pub base_url: &'a str,
    /// What `recordResponse` recorded.
    pub responses: &'a Arc<ResponseStore>,
}

/// A pre-fetched prompt of the call.
#[derive(Debug)]
struct Prefetched {
    uri: String,
    resource_id: Option<String>,
    clip: AudioClip,
}

/// One `playPrompt` operation in progress.
#[derive(Debug)]
struct Operation {
    id: String,
    client_context: Option<String>,
    pending: Vec<PromptId>,
    cancelled: bool,
}

/// The operations of a call and what their notifications need.
#[derive(Debug)]
struct Operations {
    call_id: String,
    running: Mutex<Vec<Operation>>,
    notify: OnceLock<NotificationQueue>,
    etag: AtomicU64,
    /// Set once the bot left (transfer): its operations end untold, like the call.
    quiet: AtomicBool,
}

impl Operations {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One prompt ended: when it was its operation's last, the operation's notification.
    fn prompt_ended(&self, running: &mut Vec<Operation>, event: PromptEvent) {
        let Some(i) = running.iter().position(|o| o.pending.contains(&event.id)) else {
            // A prompt cancelled after a refused request: no operation to tell about.
            return;
        };
        let op = &mut running[i];
        op.pending.retain(|id| *id != event.id);
        op.cancelled |= event.outcome != PromptOutcome::Completed;
        if op.pending.is_empty() {
            let op = running.remove(i);
            self.finished(&op);
        }
    }

    fn finished(&self, op: &Operation) {
        let url = format!(
            "/communications/calls/{}/operations/{}",
            self.call_id, op.id
        );
        let (status, code, subcode, message) = if op.cancelled {
            (
                "failed",
                400,
                8508,
                "Action failed, the operation was cancelled.",
            )
        } else {
            ("completed", 200, 0, "Action completed successfully.")
        };
        let etag = self.etag.fetch_add(1, Ordering::Relaxed);
        let body = json!({
            "@odata.type": "#microsoft.graph.commsNotifications",
            "value": [{
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": "deleted",
                "resourceUrl": url,
                "resourceData": {
                    "@odata.type": "#microsoft.graph.playPromptOperation",
                    "@odata.id": url,
                    "@odata.etag": format!("W/\"{etag}\""),
                    "id": op.id,
                    "resultInfo": {
                        "@odata.type": "#microsoft.graph.resultInfo",
                        "code": code,
                        "subcode": subcode,
                        "message": message,
                    },
                    "clientContext": op.client_context,
                    "status": status,
                },
            }],
        });
        tracing::info!(call = %self.call_id, operation = %op.id, status, "playPrompt finished");
        if self.quiet.load(Ordering::Relaxed) {
            return;
        }
        // Before the notifier is attached (cannot happen: it is attached before the 201) or
        // after the call ended, there is nobody to tell.
        if let Some(tx) = self.notify.get() {
            let _ = tx.send(body);
        }
    }
}

/// One service-hosted call's media. Dropping it stops the conference and finishes the
/// recording.
pub struct ServiceMedia {
    control: ConferenceControl,
    prompts: PromptQueue,
    prefetched: Vec<Prefetched>,
    operations: Arc<Operations>,
    timeline: MediaTimeline,
    stop: Arc<AtomicBool>,
    recording: Option<PathBuf>,
    /// `subscribeToTone` and `recordResponse`.
    actions: Arc<ServiceActions>,
}

impl std::fmt::Debug for ServiceMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMedia")
            .field("call", &self.operations.call_id)
            .field("prefetched", &self.prefetched.len())
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl ServiceMedia {
    /// When `resource` has service-hosted media: loads its `preFetchMedia` (a 400 naming the
    /// entry when one cannot be had) and starts the call's conference with the prompt player
    /// as the bot. `None` for app-hosted calls.
    pub(crate) async fn start(
        context: ServiceMediaContext<'_>,
        call_id: &str,
        resource: &Call,
        max_parties: usize,
    ) -> Result<Option<ServiceMedia>, ApiError> {
        let Some(MediaConfig::ServiceHosted(config)) = resource.media_config.value() else {
            return Ok(None);
        };
        let wanted: Vec<(String, Option<String>)> = config
            .pre_fetch_media
            .value()
            .map(|list| {
                list.iter()
                    .map(|m| {
                        (
                            m.uri.value().cloned().unwrap_or_default(),
                            m.resource_id.value().cloned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Resolved here (no I/O), decoded off the async workers.
        let resolved = wanted
            .into_iter()
            .enumerate()
            .map(|(i, (uri, resource_id))| {
                let field = format!("mediaConfig.preFetchMedia[{i}].uri");
                let path =
                    PromptLibrary::resolve(context.directory, context.samples_dir, &uri, &field)?;
                Ok((uri, resource_id, path, field))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let library = context.prompts.clone();
        let prefetched = tokio::task::spawn_blocking(move || {
            resolved
                .into_iter()
                .map(|(uri, resource_id, path, field)| {
                    let clip = library.load(&path, &uri, &field)?;
                    Ok(Prefetched {
                        uri,
                        resource_id,
                        clip,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await
        .map_err(|e| ApiError::internal(format!("loading preFetchMedia: {e}")))??;

        let mut conference = ConferenceMedia::new(ConferenceConfig {
            bot_source_id: BOT_SOURCE_ID,
            max_parties: max_parties.clamp(1, 256),
            ..ConferenceConfig::default()
        })
        .map_err(|e| ApiError::internal(format!("conference media: {e}")))?;
        let (player, prompts) = PromptPlayer::new(MAX_QUEUED_PROMPTS);
        conference.play_as_bot(player);
        let recording = context
            .recordings_dir
            .map(|dir| RecordingConfig::new(dir, call_id));
        let recording_path = recording.as_ref().map(|c| c.path_of(Track::Mixed));
        let recorders = Recorders::start(recording, &mut conference)
            .map_err(|e| ApiError::internal(format!("recording: {e}")))?;
        let control = conference.control();
        let running =
            RunningConference::start(context.conferences, conference, QueueSizes::default())
                .map_err(|e| ApiError::internal(format!("conference scheduler: {e}")))?;
        let operations = Arc::new(Operations {
            call_id: call_id.to_owned(),
            running: Mutex::new(Vec::new()),
            notify: OnceLock::new(),
            etag: AtomicU64::new(1),
            quiet: AtomicBool::new(false),
        });
        let timeline = MediaTimeline::new(context.conferences.epoch());
        let stop = Arc::new(AtomicBool::new(false));
        let actions = Arc::new(ServiceActions::new(
            call_id,
            context.base_url,
            control.clone(),
            prompts.clone(),
            context.responses.clone(),
        ));
        tokio::spawn(collect(
            running,
            prompts.clone(),
            operations.clone(),
            actions.clone(),
            timeline.clone(),
            stop.clone(),
            recorders,
        ));
        tracing::info!(call = %call_id, prefetched = prefetched.len(), recording = ?recording_path, "service-hosted media started");
        Ok(Some(ServiceMedia {
            control,
            prompts,
            prefetched,
            operations,
            timeline,
            stop,
            recording: recording_path,
            actions,
        }))
    }

    /// Where operation notifications go (the call's notification channel).
    pub(crate) fn attach_notifications(&self, notify: NotificationQueue) {
        self.actions.attach_notifications(notify.clone());
        let _ = self.operations.notify.set(notify);
    }

    /// The bot leaves the call's media (a transfer completed): the service stops speaking for
    /// it, its prompts and recordings end without notifications (the call's `terminated`
    /// ends them), and the conference goes on for the parties.
    pub(crate) fn release_bot(&self) {
        self.operations.quiet.store(true, Ordering::Relaxed);
        self.actions.shutdown();
        let _ = self.prompts.cancel_all();
        if let Err(e) = self.control.detach_bot() {
            tracing::warn!(error = %e, "the conference did not take the bot's leaving");
        }
    }

    /// `subscribeToTone` and `recordResponse` of this call.
    pub(crate) fn actions(&self) -> &ServiceActions {
        &self.actions
    }

    /// The conference's control: the driver adds, removes and mutes parties through it.
    pub fn control(&self) -> &ConferenceControl {
        &self.control
    }

    /// When each party first spoke.
    pub fn timeline(&self) -> &MediaTimeline {
        &self.timeline
    }

    /// The mixed recording, when recording.
    pub fn recording(&self) -> Option<&PathBuf> {
        self.recording.as_ref()
    }

    /// A pre-fetched clip named by `uri` or `resource_id`.
    pub(crate) fn prefetched(&self, uri: &str, resource_id: Option<&str>) -> Option<AudioClip> {
        self.prefetched
            .iter()
            .find(|p| {
                p.uri == uri || (resource_id.is_some() && p.resource_id.as_deref() == resource_id)
            })
            .map(|p| p.clip.clone())
    }

    /// Cancels the playing and queued prompts and recordings (`cancelMediaProcessing`).
    pub(crate) fn cancel_all(&self) -> Result<(), appmedia_audio_io::playback::PlayError> {
        self.actions.cancel_all();
        self.prompts.cancel_all()
    }

    /// Queues `clips` as one operation; returns its id.
    pub(crate) fn play(
        &self,
        clips: &[AudioClip],
        client_context: Option<String>,
    ) -> Result<String, ApiError> {
        // Held while queueing: the collector cannot see these prompts end before the operation
        // that waits for them is registered.
        let mut running = self.operations.lock();
        let mut pending = Vec::with_capacity(clips.len());
        for clip in clips {
            match self.prompts.play(clip, PlayMode::Once) {
                Ok(id) => pending.push(id),
                Err(e) => {
                    for id in pending {
                        let _ = self.prompts.cancel(id);
                    }
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequests",
                        format!(
                            "prompts: cannot queue more than {MAX_QUEUED_PROMPTS} prompts in a call ({e})"
                        ),
                    ));
                }
            }
        }
        let id = uuid::Uuid::new_v4().to_string();
        running.push(Operation {
            id: id.clone(),
            client_context,
            pending,
            cancelled: false,
        });
        Ok(id)
    }
}

impl Drop for ServiceMedia {
    fn drop(&mut self) {
        // The collector stops within one interval, removes the conference and finishes the
        // recording itself (a drop may run on an async worker: no waiting here).
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Moves conference events into the timeline and prompt completions into operation
/// notifications, until the call ends.
async fn collect(
    mut running: RunningConference,
    prompts: PromptQueue,
    operations: Arc<Operations>,
    actions: Arc<ServiceActions>,
    timeline: MediaTimeline,
    stop: Arc<AtomicBool>,
    recorders: Recorders,
) {
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        while let Some(event) = running.next_event() {
            timeline.observe(&event);
            actions.observe(&event);
            tracing::debug!(?event, "conference event");
        }
        let mut ops = operations.lock();
        while let Some(event) = prompts.try_event() {
            if !actions.prompt_ended(&event) {
                operations.prompt_ended(&mut ops, event);
            }
        }
        drop(ops);
        let speaking = running.latest_stats().is_some_and(|s| s.speaker_count > 0);
        actions.poll(speaking, Instant::now());
    }
    actions.shutdown();
    running.stop();
    drop(running);
    recorders.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_keeps_the_first_audio_of_each_party() {
        let epoch = Instant::now();
        let t = MediaTimeline::new(epoch);
        assert_eq!(t.first_audio(10), None);
        t.observe(&ConferenceEvent::PartyAudioStarted {
            source_id: 10,
            at: Duration::from_millis(40),
        });
        t.observe(&ConferenceEvent::PartyAudioStarted {
            source_id: 10,
            at: Duration::from_millis(90),
        });
        t.observe(&ConferenceEvent::PartyAdded { source_id: 11 });
        assert_eq!(t.first_audio(10), Some(epoch + Duration::from_millis(40)));
        assert_eq!(t.first_audio(11), None);
    }
}
