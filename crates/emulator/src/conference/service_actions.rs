//! The actions Graph supports only for service-hosted calls, beside `playPrompt`:
//! `subscribeToTone` and `recordResponse`, and the download of what `recordResponse` recorded.
//!
//! * **`subscribeToTone`**: from then on, each key a party presses (the conference's
//!   `PartyPressedKey`, whether from a directory `press` script or `ConferenceControl::press`)
//!   reaches the bot as a call `updated` notification with `toneInfo {sequenceId, tone}`,
//!   `sequenceId` counting from 1 per call.
//! * **`recordResponse`**: plays its prompt (at most one) and a beep (`playBeep`, default on),
//!   then records what the bot hears — every party, mixed — until `maxRecordDurationInSeconds`,
//!   `maxSilenceTimeoutInSeconds` of silence after speech, `initialSilenceTimeoutInSeconds`
//!   without speech (speech: a party above the conference's speech threshold, -50 dBov), or a
//!   key of `stopTones`. The WAV (16 kHz) is served at `recordingLocation`
//!   (`{base}/recordings/{operation id}`) to a request bearing `recordingAccessToken`.
//!   Operations run one after the other in the order asked; `bargeInAllowed` cancels the
//!   prompts and recordings before it instead.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayMode, PromptEvent, PromptId, PromptQueue};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
use appmedia_emulator_media::{ConferenceControl, ConferenceEvent};
use appmedia_media::dtmf::Tone;
use appmedia_model::{
    Call, CallState, ChangeType, CommsNotification, CommsNotifications, Nullable, OperationStatus,
    ResourceData, ToneInfo,
};
use serde_json::Value;

use crate::notify::NotificationQueue;
use crate::operations::{self, Operation, OperationKind};

/// Graph's bounds on the three timeouts of `recordResponse`, in seconds.
pub const RECORD_TIMEOUT_RANGE: std::ops::RangeInclusive<i32> = 1..=120;
/// Graph's default for each of them.
pub const RECORD_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// How one `recordResponse` records.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RecordSettings {
    pub initial_silence: Duration,
    pub max_silence: Duration,
    pub max_duration: Duration,
    pub play_beep: bool,
    pub stop_tones: Vec<Tone>,
    pub barge_in: bool,
}

/// Why a recording ended: `completionReason`, `status` and `resultInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    MaxDuration,
    MaxSilence,
    InitialSilence,
    StopTone,
    Cancelled,
}

impl Ending {
    fn completion_reason(self) -> &'static str {
        match self {
            Ending::MaxDuration => "maxRecordDurationReached",
            Ending::MaxSilence => "maxSilenceTimeout",
            Ending::InitialSilence => "initialSilenceTimeout",
            Ending::StopTone => "stopToneDetected",
            Ending::Cancelled => "operationCanceled",
        }
    }

    fn outcome(self) -> (OperationStatus, (i64, i64, &'static str)) {
        let done = OperationStatus::Completed;
        match self {
            // The documentation's example.
            Ending::MaxDuration => (
                done,
                (200, 8515, "Action completed, max record duration reached."),
            ),
            Ending::MaxSilence => (done, (200, 0, "Action completed, max silence timeout.")),
            Ending::InitialSilence => {
                (done, (200, 0, "Action completed, initial silence timeout."))
            }
            Ending::StopTone => (done, (200, 0, "Action completed, stop tone detected.")),
            Ending::Cancelled => (OperationStatus::Failed, operations::CANCELLED),
        }
    }
}

/// Recordings made by `recordResponse`, kept for the emulator's life (Graph keeps them
/// "shortly after the call ends"; a local service can afford longer).
#[derive(Debug)]
pub struct ResponseStore {
    /// `EmulatorConfig::recordings_dir`, when set.
    configured: Option<PathBuf>,
    /// A directory of the store's own otherwise, made on first use, removed on drop.
    own: Mutex<Option<PathBuf>>,
    entries: Mutex<HashMap<String, (PathBuf, String)>>,
}

impl ResponseStore {
    pub(crate) fn new(recordings_dir: Option<PathBuf>) -> Self {
        ResponseStore {
            configured: recordings_dir,
            own: Mutex::new(None),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Where response files are written.
    fn directory(&self) -> std::io::Result<PathBuf> {
        if let Some(dir) = &self.configured {
            return Ok(dir.clone());
        }
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = own.as_ref() {
            return Ok(dir.clone());
        }
        let dir = std::env::temp_dir().join(format!(
            "appmedia-emulator-responses-{}",
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir)?;
        *own = Some(dir.clone());
        Ok(dir)
    }

    fn insert(&self, operation: &str, path: PathBuf, token: String) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(operation.to_owned(), (path, token));
    }

    /// The recording of `operation` and its access token.
    pub(crate) fn get(&self, operation: &str) -> Option<(PathBuf, String)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(operation).cloned()
    }
}

impl Drop for ResponseStore {
    fn drop(&mut self) {
        let own = self.own.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = own.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

enum Phase {
    /// Behind another recording.
    Queued,
    /// Its prompt and beep are playing.
    Prompting { pending: Vec<PromptId> },
    Recording {
        recorder: CallRecorder,
        path: PathBuf,
        started: Instant,
        last_speech: Option<Instant>,
        stop_tone: bool,
    },
}

struct RecordOp {
    op: Operation,
    settings: RecordSettings,
    prompt: Option<AudioClip>,
    phase: Phase,
}

#[derive(Default)]
struct Progress {
    tones_subscribed: bool,
    tone_sequence: i64,
    /// The front one is the one in progress.
    records: VecDeque<RecordOp>,
}

/// A service-hosted call's `subscribeToTone` and `recordResponse` state, driven by the call's
/// media loop (`poll`, `observe`, `prompt_ended`) and by the HTTP handlers.
pub(crate) struct ServiceActions {
    call_id: String,
    base_url: String,
    notify: OnceLock<NotificationQueue>,
    control: ConferenceControl,
    prompts: PromptQueue,
    store: Arc<ResponseStore>,
    state: Mutex<Progress>,
}

impl std::fmt::Debug for ServiceActions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceActions")
            .field("call", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl ServiceActions {
    pub(crate) fn new(
        call_id: &str,
        base_url: &str,
        control: ConferenceControl,
        prompts: PromptQueue,
        store: Arc<ResponseStore>,
    ) -> Self {
        ServiceActions {
            call_id: call_id.to_owned(),
            base_url: base_url.to_owned(),
            notify: OnceLock::new(),
            control,
            prompts,
            store,
            state: Mutex::new(Progress::default()),
        }
    }

    pub(crate) fn attach_notifications(&self, notify: NotificationQueue) {
        let _ = self.notify.set(notify);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, body: Value) {
        // Attached before the 201; after the call ended, nobody is left to tell.
        if let Some(tx) = self.notify.get() {
            let _ = tx.send(body);
        }
    }

    /// `subscribeToTone`: keys pressed from now on are notified.
    pub(crate) fn subscribe_to_tones(&self) {
        self.lock().tones_subscribed = true;
    }

    /// A conference event: a key a party pressed.
    pub(crate) fn observe(&self, event: &ConferenceEvent) {
        let ConferenceEvent::PartyPressedKey { tone, .. } = *event else {
            return;
        };
        let mut state = self.lock();
        if state.tones_subscribed {
            state.tone_sequence += 1;
            let sequence = state.tone_sequence;
            self.send(tone_notification(&self.call_id, sequence, tone));
        }
        if let Some(RecordOp {
            settings,
            phase: Phase::Recording { stop_tone, .. },
            ..
        }) = state.records.front_mut()
            && settings.stop_tones.contains(&tone)
        {
            *stop_tone = true;
        }
    }

    /// A prompt ended; `true` when it was one of a recording's (the caller's playPrompt
    /// operations are not told about it).
    pub(crate) fn prompt_ended(&self, event: &PromptEvent) -> bool {
        let mut state = self.lock();
        match state.records.front_mut() {
            Some(RecordOp {
                phase: Phase::Prompting { pending },
                ..
            }) if pending.contains(&event.id) => {
                pending.retain(|id| *id != event.id);
                true
            }
            _ => false,
        }
    }

    /// `recordResponse`: queues the operation (or, barging in, cancels the prompts and
    /// recordings before it) and returns it, running.
    pub(crate) fn record(
        &self,
        settings: RecordSettings,
        prompt: Option<AudioClip>,
        client_context: Option<String>,
    ) -> Operation {
        let op = Operation::new(
            OperationKind::Record,
            OperationStatus::Running,
            client_context,
        )
        .with(|o| o.recording_location = Nullable::Null);
        let mut state = self.lock();
        if settings.barge_in {
            if let Err(e) = self.prompts.cancel_all() {
                tracing::warn!(error = %e, "barge-in: the prompts could not be cancelled");
            }
            while let Some(old) = state.records.pop_front() {
                self.finish(old, Ending::Cancelled);
            }
        }
        state.records.push_back(RecordOp {
            op: op.clone(),
            settings,
            prompt,
            phase: Phase::Queued,
        });
        op
    }

    /// `cancelMediaProcessing`: every recording ends, cancelled.
    pub(crate) fn cancel_all(&self) {
        let mut state = self.lock();
        while let Some(old) = state.records.pop_front() {
            self.finish(old, Ending::Cancelled);
        }
    }

    /// One step of the recording in progress; `speaking` says whether a party was heard on
    /// the latest tick.
    pub(crate) fn poll(&self, speaking: bool, now: Instant) {
        let mut state = self.lock();
        let Some(front) = state.records.front_mut() else {
            return;
        };
        match &mut front.phase {
            Phase::Queued => {
                let mut pending = Vec::new();
                let beep = front.settings.play_beep.then(beep);
                for clip in front.prompt.iter().chain(beep.iter()) {
                    match self.prompts.play(clip, PlayMode::Once) {
                        Ok(id) => pending.push(id),
                        Err(e) => tracing::warn!(error = %e, "recordResponse prompt not played"),
                    }
                }
                front.phase = Phase::Prompting { pending };
            }
            Phase::Prompting { pending } if pending.is_empty() => {
                match self.start_recording(&front.op.id) {
                    Ok((recorder, path)) => {
                        front.phase = Phase::Recording {
                            recorder,
                            path,
                            started: now,
                            last_speech: None,
                            stop_tone: false,
                        }
                    }
                    Err(e) => {
                        tracing::error!(call = %self.call_id, error = %e, "recordResponse cannot record");
                        if let Some(op) = state.records.pop_front() {
                            self.finish(op, Ending::Cancelled);
                        }
                    }
                }
            }
            Phase::Prompting { .. } => {}
            Phase::Recording {
                started,
                last_speech,
                stop_tone,
                ..
            } => {
                if speaking {
                    *last_speech = Some(now);
                }
                let s = &front.settings;
                let ending = if *stop_tone {
                    Some(Ending::StopTone)
                } else if now.duration_since(*started) >= s.max_duration {
                    Some(Ending::MaxDuration)
                } else {
                    match last_speech {
                        None if now.duration_since(*started) >= s.initial_silence => {
                            Some(Ending::InitialSilence)
                        }
                        Some(at) if now.duration_since(*at) >= s.max_silence => {
                            Some(Ending::MaxSilence)
                        }
                        _ => None,
                    }
                };
                if let Some(ending) = ending
                    && let Some(op) = state.records.pop_front()
                {
                    self.finish(op, ending);
                }
            }
        }
    }

    /// The call ended: recordings in progress are closed, nobody is told (Graph's terminated
    /// notification ends every operation of a call).
    pub(crate) fn shutdown(&self) {
        let mut state = self.lock();
        state.tones_subscribed = false;
        for op in state.records.drain(..) {
            if let Phase::Recording { recorder, .. } = op.phase {
                let _ = self.control.record_bot_ear(None);
                tokio::task::spawn_blocking(move || recorder.finish());
            }
        }
    }

    fn start_recording(&self, operation: &str) -> Result<(CallRecorder, PathBuf), String> {
        let dir = self.store.directory().map_err(|e| e.to_string())?;
        let config = RecordingConfig {
            record_speakers: false,
            ..RecordingConfig::new(dir, format!("{}-response-{operation}", self.call_id))
        };
        let path = config.path_of(Track::Mixed);
        let (recorder, sink) = CallRecorder::start(config).map_err(|e| e.to_string())?;
        self.control
            .record_bot_ear(Some(sink))
            .map_err(|e| e.to_string())?;
        Ok((recorder, path))
    }

    /// Ends `op`: its notification once the file (if any) is complete and served.
    fn finish(&self, op: RecordOp, ending: Ending) {
        let (status, result) = ending.outcome();
        let mut done = op
            .op
            .with(|o| o.completion_reason = ending.completion_reason().to_owned().into())
            .finished(status, operations::result(result));
        let call_id = self.call_id.clone();
        let notify = self.notify.get().cloned();
        match op.phase {
            Phase::Recording { recorder, path, .. } => {
                let _ = self.control.record_bot_ear(None);
                let token = uuid::Uuid::new_v4().simple().to_string();
                let location = format!("{}/recordings/{}", self.base_url, done.id);
                let access = token.clone();
                done = done.with(|o| {
                    o.recording_location = location.into();
                    o.recording_access_token = access.into();
                });
                let store = self.store.clone();
                // Joins the writer thread: blocking. The notification waits for the file.
                tokio::task::spawn_blocking(move || {
                    let status = recorder.finish();
                    tracing::info!(call = %call_id, operation = %done.id, ?status, "recordResponse finished");
                    store.insert(&done.id, path, token);
                    if let Some(tx) = notify {
                        let _ = tx.send(done.notification(&call_id));
                    }
                });
            }
            Phase::Queued | Phase::Prompting { .. } => {
                if let Phase::Prompting { pending } = &op.phase {
                    for id in pending {
                        let _ = self.prompts.cancel(*id);
                    }
                }
                self.send(done.notification(&call_id));
            }
        }
    }
}

/// The beep before a recording: 1 kHz for 300 ms.
fn beep() -> AudioClip {
    let samples = (0..14_400)
        .map(|n| 0.3 * (std::f32::consts::TAU * 1000.0 * n as f32 / 48_000.0).sin())
        .collect();
    // 14 400 samples: never empty.
    AudioClip::from_samples(samples).unwrap_or_else(|| unreachable!("the beep has samples"))
}

/// A call `updated` notification with the key a party pressed (Graph's subscribeToTone example).
fn tone_notification(call_id: &str, sequence: i64, tone: Tone) -> Value {
    let call = Call {
        odata_type: Call::ODATA_TYPE.to_owned().into(),
        state: CallState::Established.into(),
        tone_info: ToneInfo {
            odata_type: "#microsoft.graph.toneInfo".to_owned().into(),
            sequence_id: sequence.into(),
            tone: appmedia_model::Tone::from_graph(tone.graph_name()).into(),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    };
    let body = CommsNotifications::new(vec![CommsNotification::new(
        ChangeType::Updated,
        format!("/communications/calls/{call_id}"),
        ResourceData::Call(Box::new(call)),
    )]);
    serde_json::to_value(body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_notification_is_the_documented_one() {
        let n = tone_notification("c1", 3, Tone::Pound);
        let v = &n["value"][0];
        assert_eq!(v["changeType"], "updated");
        assert_eq!(v["resourceUrl"], "/communications/calls/c1");
        assert_eq!(v["resourceData"]["state"], "established");
        assert_eq!(v["resourceData"]["toneInfo"]["sequenceId"], 3);
        assert_eq!(v["resourceData"]["toneInfo"]["tone"], "pound");
    }

    #[test]
    fn endings_are_told_apart() {
        assert_eq!(Ending::MaxDuration.outcome().1.1, 8515);
        assert_eq!(Ending::Cancelled.outcome().0, OperationStatus::Failed);
        assert_eq!(Ending::StopTone.completion_reason(), "stopToneDetected");
    }
}
