//! Service-hosted media (`serviceHostedMediaConfig`): the emulator itself is the bot's voice.
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

use appmedia_audio_io::playback::{
    AudioClip, PlayMode, PromptEvent, PromptId, PromptOutcome, PromptPlayer, PromptQueue,
};
use appmedia_audio_io::record::{RecordingConfig, Track};
use appmedia_emulator_media::driver::{QueueSizes, RunningConference};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceControl, ConferenceEvent, ConferenceMedia,
};
use appmedia_model::{Call, MediaConfig};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::heard::Recorders;
use crate::media::BOT_SOURCE_ID;
use crate::notify::NotificationQueue;
use crate::server::{Shared, authenticate, request_id, with_call};
use crate::service_actions::ServiceActions;

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
    /// The clip for `uri`, or a 400 naming `field`. Blocking (file I/O and resampling).
    pub fn load(&self, shared: &Shared, uri: &str, field: &str) -> Result<AudioClip, ApiError> {
        let Some(file) = shared.directory().media_file(uri) else {
            return Err(ApiError::bad_request(format!(
                "{field}: {uri:?} is not a media URI this service can fetch (map it to a local \
                 file in the directory's [media] table)"
            )));
        };
        let path = shared.config.media_samples_dir.join(file);
        if let Some(clip) = self.lock().get(&path) {
            return Ok(clip.clone());
        }
        let clip = AudioClip::open(&path).map_err(|e| {
            ApiError::bad_request(format!("{field}: {uri:?} cannot be played: {e}"))
        })?;
        self.lock().insert(path, clip.clone());
        Ok(clip)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, AudioClip>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        shared: &Arc<Shared>,
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
        let loader = shared.clone();
        let prefetched = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .enumerate()
                .map(|(i, (uri, resource_id))| {
                    let field = format!("mediaConfig.preFetchMedia[{i}].uri");
                    let clip = loader.prompt_library.load(&loader, &uri, &field)?;
                    Ok(Prefetched {
                        uri,
                        resource_id,
                        clip,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()
        })
        .await
        .map_err(|e| internal(format!("loading preFetchMedia: {e}")))??;

        let mut conference = ConferenceMedia::new(ConferenceConfig {
            bot_source_id: BOT_SOURCE_ID,
            max_parties: max_parties.clamp(1, 256),
            ..ConferenceConfig::default()
        })
        .map_err(|e| internal(format!("conference media: {e}")))?;
        let (player, prompts) = PromptPlayer::new(MAX_QUEUED_PROMPTS);
        conference.play_as_bot(player);
        let recording = shared
            .config
            .recordings_dir
            .as_ref()
            .map(|dir| RecordingConfig::new(dir, call_id));
        let recording_path = recording.as_ref().map(|c| c.path_of(Track::Mixed));
        let recorders = Recorders::start(recording, &mut conference)
            .map_err(|e| internal(format!("recording: {e}")))?;
        let control = conference.control();
        let running =
            RunningConference::start(&shared.conferences, conference, QueueSizes::default())
                .map_err(|e| internal(format!("conference scheduler: {e}")))?;
        let operations = Arc::new(Operations {
            call_id: call_id.to_owned(),
            running: Mutex::new(Vec::new()),
            notify: OnceLock::new(),
            etag: AtomicU64::new(1),
            quiet: AtomicBool::new(false),
        });
        let timeline = MediaTimeline::new(shared.conferences.epoch());
        let stop = Arc::new(AtomicBool::new(false));
        let actions = Arc::new(ServiceActions::new(
            call_id,
            &shared.base_url,
            control.clone(),
            prompts.clone(),
            shared.responses.clone(),
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

    /// Queues `clips` as one operation; returns its id.
    fn play(
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

fn internal(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        message,
    )
}

/// A JSON object body (`Content-Type: application/json`, at most the service's size cap).
pub(crate) async fn json_object(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type {content_type:?}: the body must be application/json"),
        ));
    }
    let cap = shared.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, cap).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the body is larger than {cap} bytes"),
        )
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

fn client_context(body: &serde_json::Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("clientContext") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_CLIENT_CONTEXT_CHARS => {
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "clientContext: longer than {MAX_CLIENT_CONTEXT_CHARS} characters"
        ))),
        Some(_) => Err(ApiError::bad_request("clientContext: must be a string")),
    }
}

/// A prompt of a `playPrompt` body: (uri, resourceId), checked.
pub(crate) fn prompt_uris(
    body: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let Some(Value::Array(prompts)) = body.get("prompts") else {
        return Err(ApiError::bad_request(
            "prompts: a collection of mediaPrompt is required",
        ));
    };
    if prompts.is_empty() || prompts.len() > MAX_PROMPTS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "prompts: {} prompts; 1 to {MAX_PROMPTS_PER_REQUEST} are allowed",
            prompts.len()
        )));
    }
    prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let bad = |what: &str| ApiError::bad_request(format!("prompts[{i}]{what}"));
            let Value::Object(prompt) = prompt else {
                return Err(bad(": must be a mediaPrompt object"));
            };
            match prompt.get("@odata.type") {
                None => {}
                Some(Value::String(t)) if t == "#microsoft.graph.mediaPrompt" => {}
                Some(other) => {
                    return Err(bad(&format!(
                        ".@odata.type: {other} is not #microsoft.graph.mediaPrompt"
                    )));
                }
            }
            let Some(Value::Object(info)) = prompt.get("mediaInfo") else {
                return Err(bad(".mediaInfo: a mediaInfo object is required"));
            };
            let uri = match info.get("uri") {
                Some(Value::String(u)) if !u.is_empty() => u.clone(),
                _ => return Err(bad(".mediaInfo.uri: a non-empty string is required")),
            };
            let resource_id = match info.get("resourceId") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => return Err(bad(".mediaInfo.resourceId: must be a string")),
            };
            Ok((uri, resource_id))
        })
        .collect()
}

/// `POST /v1.0/communications/calls/{id}/playPrompt`.
pub(crate) async fn play_prompt(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    match play_prompt_inner(&shared, &id, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn play_prompt_inner(
    shared: &Arc<Shared>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    with_call(shared, &claims, id, |_| ())?;
    let body = json_object(shared, headers, body).await?;
    let client_context = client_context(&body)?;
    let uris = prompt_uris(&body)?;
    // Pre-fetched prompts first (no I/O), under the calls lock; the rest are loaded off it.
    let found: Vec<Option<AudioClip>> = with_call(shared, &claims, id, |record| {
        record.service.as_ref().map(|service| {
            uris.iter()
                .map(|(uri, resource)| service.prefetched(uri, resource.as_deref()))
                .collect()
        })
    })?
    .ok_or_else(|| {
        ApiError::bad_request(
            "playPrompt is supported only for calls created with serviceHostedMediaConfig",
        )
    })?;
    let loader = shared.clone();
    let clips = tokio::task::spawn_blocking(move || {
        uris.iter()
            .zip(found)
            .enumerate()
            .map(|(i, ((uri, _), clip))| match clip {
                Some(clip) => Ok(clip),
                None => {
                    loader
                        .prompt_library
                        .load(&loader, uri, &format!("prompts[{i}].mediaInfo.uri"))
                }
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| internal(format!("loading prompts: {e}")))??;
    let operation = with_call(shared, &claims, id, |record| {
        record
            .service
            .as_ref()
            .map(|service| service.play(&clips, client_context.clone()))
    })?
    .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")))??;
    let body = json!({
        "@odata.type": "#microsoft.graph.playPromptOperation",
        "id": operation,
        "status": "running",
        "clientContext": client_context,
    });
    Ok(operation_response(shared, id, &operation, body))
}

/// `POST /v1.0/communications/calls/{id}/cancelMediaProcessing`.
pub(crate) async fn cancel_media_processing(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let body = json_object(&shared, &headers, body).await?;
        let client_context = client_context(&body)?;
        with_call(&shared, &claims, &id, |record| {
            record.service.as_ref().map(|s| {
                s.actions.cancel_all();
                s.prompts.cancel_all()
            })
        })?
        .ok_or_else(|| {
            ApiError::bad_request(
                "cancelMediaProcessing is supported only for calls created with \
                 serviceHostedMediaConfig",
            )
        })?
        .map_err(|e| internal(format!("cancelMediaProcessing: {e}")))?;
        let operation = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "@odata.type": "#microsoft.graph.cancelMediaProcessingOperation",
            "id": operation,
            "status": "completed",
            "clientContext": client_context,
        });
        Ok::<_, ApiError>(operation_response(&shared, &id, &operation, body))
    }
    .await;
    result.unwrap_or_else(|e| e.into_response_with(&request_id))
}

fn operation_response(shared: &Shared, call_id: &str, operation: &str, body: Value) -> Response {
    let location = format!(
        "{}/v1.0/communications/calls/{call_id}/operations/{operation}",
        shared.base_url
    );
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test bodies are objects"),
        }
    }

    #[test]
    fn play_prompt_bodies_are_checked_naming_the_field() {
        let ok = body(
            json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
            "mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "r"}}]}),
        );
        assert_eq!(
            prompt_uris(&ok).unwrap(),
            vec![("https://cdn.contoso.com/beep.wav".into(), Some("r".into()))]
        );
        let cases = [
            (json!({}), "prompts:"),
            (json!({"prompts": []}), "prompts: 0 prompts"),
            (json!({"prompts": [1]}), "prompts[0]: must be"),
            (
                json!({"prompts": [{"@odata.type": "#microsoft.graph.call"}]}),
                "prompts[0].@odata.type",
            ),
            (
                json!({"prompts": [{"mediaInfo": {"uri": ""}}]}),
                "prompts[0].mediaInfo.uri",
            ),
            (
                json!({"prompts": [{"mediaInfo": {"uri": "u", "resourceId": 3}}]}),
                "prompts[0].mediaInfo.resourceId",
            ),
        ];
        for (b, expected) in cases {
            let e = prompt_uris(&body(b.clone())).unwrap_err();
            assert!(e.message.starts_with(expected), "{b}: {}", e.message);
        }
        let many = json!({"prompts": vec![json!({"mediaInfo": {"uri": "u"}}); 21]});
        assert!(
            prompt_uris(&body(many))
                .unwrap_err()
                .message
                .contains("21 prompts")
        );
        assert!(client_context(&body(json!({"clientContext": "x".repeat(257)}))).is_err());
        assert!(client_context(&body(json!({"clientContext": 5}))).is_err());
        assert_eq!(
            client_context(&body(json!({"clientContext": "c"})))
                .unwrap()
                .as_deref(),
            Some("c")
        );
    }

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
