//! One async task per call: turns notifications and media events into [`Event`]s, accepts the
//! service's answer blob, fetches missing rosters, sends keepAlive (and reads the roster with
//! it), reports recording files that failed, and tears the call down (media off the worker,
//! recording finished, routes removed) when it ends.
//!
//! The audio itself never runs here: it runs on the bot's scheduler workers; this task only
//! drains their small queues every [`MEDIA_POLL`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use appmedia_audio_io::record::TrackState;
use appmedia_media::pipeline::PipelineEvent;
use appmedia_model::{CallState, MediaConfig, ResultInfo};
use appmedia_signalling::callback::CallEvent;
use appmedia_transport::EndReason;
use tokio::sync::{mpsc, watch};

use crate::acs::translate::{Translated, Translator};
use crate::bot::{Signal, lock};
use crate::call::{CallEnd, CallShared, Event, ToneSource};
use crate::setup::LiveMedia;

/// How often the media worker's event and stats queues are drained.
const MEDIA_POLL: Duration = Duration::from_millis(50);
/// How long an app-hosted call waits for the service's answer blob after `established`
/// before it asks for the call resource itself.
const ANSWER_BLOB_GRACE: Duration = Duration::from_secs(2);
/// How long the end of a call waits for its media's final counters.
const FINAL_STATS_WAIT: Duration = Duration::from_secs(1);
/// A failed keepAlive is retried this soon (Graph's window is 45 minutes).
const KEEP_ALIVE_RETRY: Duration = Duration::from_secs(60);
/// How often a recorded call's files are looked at for write errors.
const RECORDING_CHECK: Duration = Duration::from_secs(1);

/// Reads the call's roster from the service and applies it whole; only what differs from the
/// roster the notifications built becomes a [`Event::Roster`] (counted as a correction). Graph
/// retries a notification only a few times: one lost while the bot's endpoint was unreachable
/// (a proxy down for a minute) would otherwise leave the roster wrong until the next change.
async fn read_roster(
    bot: &crate::bot::BotInner,
    client: &appmedia_signalling::client::GraphClient,
    call_id: &str,
) {
    let participants = match client.list_participants(call_id).await {
        Ok(participants) => participants,
        Err(e) => {
            tracing::warn!(call = %call_id, error = %e, "reading the roster with keepAlive failed");
            return;
        }
    };
    let registry = bot.receiver.registry();
    // A call that ended meanwhile is not brought back into the registry.
    if registry.with_call(call_id, |_| ()).is_none() {
        return;
    }
    let events = registry.apply_full_roster(call_id, participants);
    if !events.is_empty() {
        bot.counters
            .roster_corrections
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %call_id, "the service's roster differed from the notified one: corrected (notifications were lost)");
    }
    bot.receiver.deliver(events);
}

/// What the driver needs besides the events.
pub(crate) struct Driver {
    pub shared: Arc<CallShared>,
    pub signalling: mpsc::UnboundedReceiver<Signal>,
    pub events: mpsc::UnboundedSender<Event>,
    pub done: watch::Sender<bool>,
    pub media: Option<LiveMedia>,
    /// The bot's own offer, to tell the service's answer blob from an echo of it.
    pub offer_blob: Option<String>,
    /// Whether the answer blob is still to be applied (answered incoming calls).
    pub awaiting_answer_blob: bool,
    /// An ACS call: its events' translation and the token of its URLs.
    pub acs: Option<AcsCall>,
    /// A two-party Graph call (peer-to-peer or PSTN): Graph sends it no roster, so the
    /// driver lists the participants once it is established.
    pub two_party: bool,
}

/// What the driver of an ACS call keeps.
pub(crate) struct AcsCall {
    pub translator: Translator,
    pub token: String,
}

/// Why the keepAlive loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeepAliveStop {
    /// The service no longer knows the call (404).
    CallGone,
}

/// What one keepAlive attempt gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeepAliveResult {
    Sent,
    Failed,
    CallGone,
}

/// Sends keepAlive every `interval` (first one `interval` after start); a failed attempt is
/// retried after [`KEEP_ALIVE_RETRY`] (or `interval` if shorter), so one lost request never
/// lets Graph's 45-minute window pass. Runs until the service says the call is gone.
pub(crate) async fn keep_alive_loop<F, Fut>(interval: Duration, mut send: F) -> KeepAliveStop
where
    F: FnMut() -> Fut,
    Fut: Future<Output = KeepAliveResult>,
{
    let retry = KEEP_ALIVE_RETRY.min(interval);
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::time::sleep_until(next).await;
        next = match send().await {
            KeepAliveResult::Sent => next + interval,
            KeepAliveResult::Failed => tokio::time::Instant::now() + retry,
            KeepAliveResult::CallGone => return KeepAliveStop::CallGone,
        };
    }
}

impl Driver {
    /// Lists the call's participants (`GET …/participants`) and applies them as a full
    /// roster: its changes come back to this driver as a roster event.
    async fn list_roster(&self, why: &str) {
        let bot = &self.shared.bot;
        let id = &self.shared.id;
        let listed = match bot.graph("participants") {
            Ok(client) => client
                .list_participants(id)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match listed {
            Ok(participants) => bot.receiver.apply_full_roster(id, participants),
            Err(e) => {
                tracing::warn!(call = %id, error = %e, why, "listing the participants failed")
            }
        }
    }

    pub(crate) async fn run(mut self) {
        let bot = self.shared.bot.clone();
        let call_id = self.shared.id.clone();
        let mut media_poll = tokio::time::interval(MEDIA_POLL);
        media_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let keep_alive_client = bot.clone();
        let keep_alive_id = call_id.clone();
        let interval = bot.config.keep_alive_interval;
        let keep_alive = keep_alive_loop(interval, move || {
            let bot = keep_alive_client.clone();
            let id = keep_alive_id.clone();
            async move {
                let client = match bot.graph("keepAlive") {
                    Ok(client) => client,
                    // Never reached: the loop runs for Graph calls only.
                    Err(_) => return KeepAliveResult::CallGone,
                };
                match client.keep_alive(&id).await {
                    Ok(()) => {
                        bot.counters
                            .keep_alives_sent
                            .fetch_add(1, Ordering::Relaxed);
                        read_roster(&bot, client, &id).await;
                        KeepAliveResult::Sent
                    }
                    Err(e) if e.status() == Some(404) => KeepAliveResult::CallGone,
                    Err(e) => {
                        bot.counters
                            .keep_alive_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(call = %id, error = %e, "keepAlive failed; retrying");
                        KeepAliveResult::Failed
                    }
                }
            }
        });
        tokio::pin!(keep_alive);
        // Once the call is established: keepAlive runs, and the far end hears the bot when
        // its media is connected too.
        let mut established = false;
        let mut media_connected = false;
        let mut media_ended = false;
        let mut blob_deadline: Option<tokio::time::Instant> = None;
        // ACS has no keepAlive: a call lives until someone hangs up.
        let keeps_alive = self.acs.is_none();
        // Keys the ACS audio stream reports.
        let mut stream_dtmf = self.media.as_mut().and_then(|m| m.dtmf.take());
        // Until the call is established, its state is read from the service now and then: an
        // `established` whose notification was lost would otherwise leave it waiting for good.
        let check_every = bot.config.state_check_interval;
        let mut state_check =
            tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
        state_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recording_check = tokio::time::interval(RECORDING_CHECK);
        recording_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Recording files already reported as failed (each is reported once).
        let mut failed_files = Vec::new();
        let end: Option<ResultInfo> = loop {
            let session = self.media.as_ref().map(|m| m.link.clone());
            let shared = self.shared.clone();
            tokio::select! {
                () = shared.abandon.notified() => {
                    tracing::warn!(call = %call_id, "no terminated notification after the hang-up: ending the call here");
                    break None;
                }
                event = self.signalling.recv() => {
                    let Some(event) = event else { break None };
                    if let Some(ended) = self.on_signalling(event, &mut established, &mut blob_deadline).await {
                        break ended;
                    }
                }
                _ = media_poll.tick(), if self.media.is_some() => self.drain_media(),
                _ = recording_check.tick(), if self.shared.recorder_tx.is_some() => {
                    self.check_recording(&mut failed_files);
                }
                pressed = async { stream_dtmf.as_mut().expect("guarded").recv().await }, if stream_dtmf.is_some() => {
                    match pressed {
                        Some((key, stream)) => self.emit(Event::Tone {
                            tone: crate::acs::translate::tone_of(key),
                            source: ToneSource::Media { source_id: stream },
                        }),
                        None => stream_dtmf = None,
                    }
                }
                _ = state_check.tick(), if !established && keeps_alive => {
                    if self.check_state().await == KeepAliveResult::CallGone {
                        tracing::info!(call = %call_id, "the service no longer knows the call");
                        break None;
                    }
                }
                stop = &mut keep_alive, if established && keeps_alive => {
                    let KeepAliveStop::CallGone = stop;
                    tracing::info!(call = %call_id, "the service no longer knows the call");
                    break None;
                }
                connected = async { session.as_ref().expect("guarded").connected().await }, if session.is_some() && !media_connected && !media_ended => {
                    media_connected = true;
                    match connected {
                        Ok(()) => self.emit(Event::MediaConnected),
                        Err(reason) => { media_ended = true; self.emit(Event::MediaEnded(reason)); }
                    }
                }
                reason = async { session.as_ref().expect("guarded").ended().await }, if session.is_some() && media_connected && !media_ended => {
                    media_ended = true;
                    self.emit(Event::MediaEnded(reason));
                }
                _ = async { tokio::time::sleep_until(blob_deadline.expect("guarded")).await }, if blob_deadline.is_some() => {
                    blob_deadline = None;
                    self.fetch_answer_blob().await;
                }
            }
            if let Some(media) = &self.media {
                let open = established && media_connected && !media_ended;
                if open != media.send_gate.is_open() {
                    media.send_gate.set(open);
                    self.emit(Event::SendStatus { active: open });
                }
            }
        };
        self.finish(end).await;
    }

    fn emit(&self, event: Event) {
        // A bot that dropped its `Call` no longer listens; the call still runs to its end.
        let _ = self.events.send(event);
    }

    /// Applies what the service said; `Some(result)` when the call ended.
    async fn on_signalling(
        &mut self,
        signal: Signal,
        established: &mut bool,
        blob_deadline: &mut Option<tokio::time::Instant>,
    ) -> Option<Option<ResultInfo>> {
        match signal {
            Signal::Graph(event) => self.on_graph(event, established, blob_deadline).await,
            Signal::Acs(event) => self.on_acs(&event, established),
        }
    }

    /// Applies one ACS event through the call's translator.
    fn on_acs(
        &mut self,
        event: &appmedia_acs::events::Event,
        established: &mut bool,
    ) -> Option<Option<ResultInfo>> {
        let acs = self.acs.as_mut()?;
        let mut ended = None;
        for translated in acs.translator.apply(event) {
            match translated {
                Translated::State {
                    from,
                    to,
                    result_info,
                } => {
                    lock(&self.shared.snapshot).state = Some(to.clone());
                    if to == CallState::Established {
                        *established = true;
                    }
                    if to == CallState::Terminated {
                        ended = Some(result_info.clone());
                    }
                    self.emit(Event::State {
                        from,
                        to,
                        result_info,
                    });
                }
                Translated::Roster(mut participants) => {
                    // Each participant's audio stream, as its unmixed frames name it.
                    if let Some(crate::setup::MediaLink::Stream(link)) =
                        self.media.as_ref().map(|m| &m.link)
                    {
                        for p in &mut participants {
                            if let Some(key) = p.id.value().and_then(|id| link.key_of(Some(id))) {
                                p.media_streams = vec![appmedia_model::MediaStream {
                                    media_type: appmedia_model::Modality::Audio.into(),
                                    source_id: key.to_string().into(),
                                    direction: appmedia_model::MediaDirection::SendReceive.into(),
                                    ..Default::default()
                                }]
                                .into();
                            }
                        }
                    }
                    // The registry turns the whole roster into joined/changed/left; its change
                    // comes back to this driver as a Graph roster event.
                    self.shared
                        .bot
                        .receiver
                        .apply_full_roster(&self.shared.id, participants);
                }
                Translated::Operation(operation) => self.emit(Event::Operation(operation)),
                Translated::Tone { tone, sequence_id } => self.emit(Event::Tone {
                    tone,
                    source: ToneSource::Signalling { sequence_id },
                }),
                Translated::Other => self.emit(Event::Acs(Box::new(event.clone()))),
            }
        }
        ended
    }

    /// Applies one Graph notification-derived event; `Some(result)` when the call ended.
    async fn on_graph(
        &mut self,
        event: CallEvent,
        established: &mut bool,
        blob_deadline: &mut Option<tokio::time::Instant>,
    ) -> Option<Option<ResultInfo>> {
        // Graph's `toneInfo` (after subscribeToTone) rides on a call update or state change.
        if let Some(info) = event.tone()
            && let Some(tone) = info.tone.value()
        {
            self.emit(Event::Tone {
                tone: tone.clone(),
                source: ToneSource::Signalling {
                    sequence_id: info.sequence_id.value().copied(),
                },
            });
        }
        match event {
            CallEvent::StateChanged {
                from,
                to,
                result_info,
                call,
                ..
            } => {
                self.apply_answer_blob(&call).await;
                {
                    let mut snapshot = lock(&self.shared.snapshot);
                    snapshot.state = Some(to.clone());
                    snapshot.resource = Some((*call).clone());
                }
                if to == CallState::Established {
                    *established = true;
                    if self.awaiting_answer_blob {
                        *blob_deadline = Some(tokio::time::Instant::now() + ANSWER_BLOB_GRACE);
                    }
                    if self.two_party {
                        // No roster comes for a two-party call: the list is its roster.
                        self.list_roster("two-party call established").await;
                    }
                }
                let terminated = to == CallState::Terminated;
                self.emit(Event::State {
                    from,
                    to,
                    result_info: result_info.clone(),
                });
                terminated.then_some(result_info)
            }
            CallEvent::Updated { call, .. } => {
                self.apply_answer_blob(&call).await;
                lock(&self.shared.snapshot).resource = Some((*call).clone());
                self.emit(Event::Updated(call));
                None
            }
            CallEvent::Roster { change, .. } => {
                self.emit(Event::Roster(change));
                None
            }
            CallEvent::RosterGap { .. } => {
                // Delta rosters went missing: the full list puts the roster right.
                self.list_roster("delta rosters missing").await;
                None
            }
            CallEvent::ContentSharing { change, .. } => {
                self.emit(Event::ContentSharing(change));
                None
            }
            CallEvent::Operation { operation, .. } => {
                self.emit(Event::Operation(operation));
                None
            }
            CallEvent::Unhandled { notification, .. } => {
                self.emit(Event::Unhandled(notification));
                None
            }
            // Routed to the incoming queue, never to a call's driver.
            CallEvent::Incoming { .. } => None,
        }
    }

    /// An answered incoming call learns the service's answer blob from the call resource of
    /// a notification (the answer's 202 has no body).
    async fn apply_answer_blob(&mut self, call: &appmedia_model::Call) {
        if !self.awaiting_answer_blob {
            return;
        }
        let Some(MediaConfig::AppHosted(config)) = call.media_config.value() else {
            return;
        };
        let Some(blob) = config.blob.value() else {
            return;
        };
        if Some(blob) == self.offer_blob.as_ref() {
            return;
        }
        let Some(session) = self.media.as_ref().and_then(|m| m.link.session()) else {
            return;
        };
        self.awaiting_answer_blob = false;
        if let Err(e) = session.accept(blob).await {
            tracing::warn!(call = %self.shared.id, error = %e, "the service's answer blob was refused");
            self.emit(Event::MediaEnded(EndReason::Closed));
        }
    }

    /// Reads the call's state from the service and applies it as its notification would have
    /// been: a state change whose notification was lost reaches this driver as the event it
    /// missed (counted as a correction). `CallGone` when the service answers 404.
    async fn check_state(&self) -> KeepAliveResult {
        let bot = &self.shared.bot;
        let id = &self.shared.id;
        let Ok(client) = bot.graph("get call") else {
            return KeepAliveResult::Failed;
        };
        let call = match client.get_call(id).await {
            Ok(call) => call,
            Err(e) if e.status() == Some(404) => return KeepAliveResult::CallGone,
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "reading the call's state failed");
                return KeepAliveResult::Failed;
            }
        };
        let events = bot
            .receiver
            .registry()
            .apply_call(id, &call, std::time::Instant::now());
        if events
            .iter()
            .any(|e| matches!(e, CallEvent::StateChanged { .. }))
        {
            bot.counters
                .state_corrections
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(call = %id, state = ?call.state.value(), "the service's call state was ahead of the notified one: caught up (a notification was lost)");
        }
        bot.receiver.deliver(events);
        KeepAliveResult::Sent
    }

    /// The answer blob did not come with a notification: read the call resource.
    async fn fetch_answer_blob(&mut self) {
        if !self.awaiting_answer_blob {
            return;
        }
        let bot = self.shared.bot.clone();
        let Ok(client) = bot.graph("get call") else {
            return;
        };
        match client.get_call(&self.shared.id).await {
            Ok(call) => self.apply_answer_blob(&call).await,
            Err(e) => {
                tracing::warn!(call = %self.shared.id, error = %e, "cannot read the answer blob")
            }
        }
    }

    /// Reports each recording file that stopped on an error since the last look (a full disk):
    /// an event for the bot and a counter, once per file. The call goes on.
    fn check_recording(&self, reported: &mut Vec<std::path::PathBuf>) {
        let failed: Vec<_> = {
            let recorder = lock(&self.shared.recorder);
            let Some(recorder) = recorder.as_ref() else {
                return;
            };
            recorder
                .status()
                .tracks
                .into_iter()
                .filter(|t| t.state == TrackState::Failed && !reported.contains(&t.path))
                .collect()
        };
        for track in failed {
            tracing::warn!(call = %self.shared.id, path = %track.path.display(), error = ?track.error, "a recording file stopped; the call goes on");
            self.shared
                .bot
                .counters
                .recording_failures
                .fetch_add(1, Ordering::Relaxed);
            reported.push(track.path.clone());
            self.emit(Event::RecordingFailed(Box::new(track)));
        }
    }

    fn drain_media(&mut self) {
        let Some(media) = &self.media else { return };
        let mut out = Vec::new();
        while let Some(event) = media.feed.events.pop() {
            match event {
                PipelineEvent::ToneReceived {
                    source_id, tone, ..
                } => out.push(Event::Tone {
                    tone: appmedia_model::Tone::from_graph(tone.graph_name()),
                    source: ToneSource::Media { source_id },
                }),
                PipelineEvent::DominantSpeakerChanged { source_id } => {
                    out.push(Event::DominantSpeaker(source_id))
                }
                _ => {}
            }
        }
        while let Some(event) = media.prompts.try_event() {
            out.push(Event::PromptFinished(event));
        }
        while let Some(stats) = media.feed.stats.pop() {
            lock(&self.shared.snapshot).media_stats = Some(stats);
        }
        for event in out {
            self.emit(event);
        }
    }

    /// Stops the media, finishes the recording, forgets the call, and says so last.
    async fn finish(mut self, result_info: Option<ResultInfo>) {
        let bot = self.shared.bot.clone();
        let call_id = self.shared.id.clone();
        let mut end = CallEnd {
            result_info,
            media: None,
            recording: None,
            transport: None,
        };
        if let Some(media) = &self.media {
            media.handle.remove();
            // The worker drops the call's media (on its disposer thread), which publishes the
            // final counters and closes the queues: wait for that, briefly.
            let deadline = tokio::time::Instant::now() + FINAL_STATS_WAIT;
            loop {
                while let Some(stats) = media.feed.stats.pop() {
                    lock(&self.shared.snapshot).media_stats = Some(stats);
                }
                if media.feed.stats.is_finished() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.drain_media();
        if let Some(media) = self.media.take() {
            end.media = lock(&self.shared.snapshot).media_stats;
            crate::call::CallControl {
                shared: self.shared.clone(),
            }
            .retire_media();
            end.transport = media.link.stats().await;
            media.link.close().await;
        }
        end.recording = crate::call::CallControl {
            shared: self.shared.clone(),
        }
        .stop_recording()
        .await;
        {
            let mut snapshot = lock(&self.shared.snapshot);
            snapshot.ended = true;
            if snapshot.state != Some(CallState::Terminated) {
                snapshot.state = Some(CallState::Terminated);
            }
        }
        if let (Some(acs), Some(backend)) = (&self.acs, bot.acs()) {
            backend.forget(&acs.token);
        }
        bot.unregister(&call_id);
        tracing::info!(call = %call_id, result = ?end.result_info, "call ended");
        self.emit(Event::Ended(Box::new(end)));
        let _ = self.done.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The keepAlive schedule on tokio's paused clock: two hours of call in no time.
    #[tokio::test(start_paused = true)]
    async fn keep_alive_every_interval_retries_failures_and_stops_when_the_call_is_gone() {
        let start = tokio::time::Instant::now();
        let sent: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let log = sent.clone();
        let interval = Duration::from_secs(15 * 60);
        let stop = keep_alive_loop(interval, move || {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                log.push(start.elapsed());
                match log.len() {
                    // The third attempt fails once; the fifth finds the call gone.
                    3 => KeepAliveResult::Failed,
                    5 => KeepAliveResult::CallGone,
                    _ => KeepAliveResult::Sent,
                }
            }
        })
        .await;
        assert_eq!(stop, KeepAliveStop::CallGone);
        let minutes: Vec<u64> = sent
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs() / 60)
            .collect();
        // 15, 30, 45 (fails) -> retried at 46, then every 15 minutes from there.
        assert_eq!(minutes, [15, 30, 45, 46, 61]);
        // Never more than 45 minutes between two successful keepAlives.
        assert!(minutes.windows(2).all(|w| w[1] - w[0] <= 45));
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_retry_is_never_longer_than_the_interval() {
        let count = Arc::new(Mutex::new(0u32));
        let c = count.clone();
        let start = tokio::time::Instant::now();
        let stop = keep_alive_loop(Duration::from_secs(10), move || {
            let c = c.clone();
            async move {
                let mut n = c.lock().unwrap();
                *n += 1;
                if *n < 4 {
                    KeepAliveResult::Failed
                } else {
                    KeepAliveResult::CallGone
                }
            }
        })
        .await;
        assert_eq!(stop, KeepAliveStop::CallGone);
        // First at 10 s, then three retries 10 s apart (the 60 s retry capped by the interval).
        assert_eq!(start.elapsed(), Duration::from_secs(40));
    }
}
