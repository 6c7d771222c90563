//! The emulator as the bot's media peer, for `appHostedMediaConfig` calls whose blob is an
//! appmedia blob (`docs/blob.md`): the transport crate answers the bot's offer, and an
//! `appmedia-emulator-media` [`ConferenceMedia`] running on the emulator's conference
//! scheduler is the call's media: the parties that joined (called users, phones that sound
//! like phones, meeting participants), mixed minus each listener, what the bot sends
//! recorded to WAV.
//!
//! What the bot receives follows its blob's `receiveUnmixedMeetingAudio`
//! ([`StreamLayout::for_receive_unmixed`]): without it, the mix as one stream on the first
//! m-line ([`StreamLayout::Mixed`]); with it, one stream per speaking party, phones
//! included and no top-four limit ([`StreamLayout::PerSpeaker`]), each on one of the
//! receive-only unmixed m-lines the bot's SDP offers (the transport assigns speakers to them
//! and carries the party's source id, the roster's `mediaStreams[].sourceId`, as the CSRC;
//! the bot's transport restores it as the SSRC, so its media core sees one stream per source
//! id). No mixed stream is sent then: the bot's media core mixes the speakers itself, and a
//! mixed stream on top would be heard twice. A blob that asks for unmixed audio but offers
//! no unmixed m-line (an older bot) gets the mix. More simultaneous speakers than unmixed
//! m-lines: the extra ones are not sent (counted in the session's
//! `outbound_no_unmixed_slot`) until a line has been idle for `SLOT_IDLE`.
//!
//! A blob that is not an appmedia blob (the documentation's `"<Media Session
//! Configuration>"`, say) is Graph's business only: the call goes on without media.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_audio_io::record::{RecordingConfig, Track};
use appmedia_emulator_media::conference::DEFAULT_BOT_SOURCE_ID;
use appmedia_emulator_media::realtime::{ConferenceScheduler, QueueSizes, RunningConference};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceControl, ConferenceError, ConferenceEvent, ConferenceMedia,
    PartySpec, StreamLayout,
};
use appmedia_transport::{Blob, EndReason, MediaSession, TransportConfig};

use crate::conference::service_media::MediaTimeline;

/// The bot's media source id in every emulated call: its roster `mediaStreams[].sourceId`
/// and the recording track of what it sends. Parties get ids above it.
pub const BOT_SOURCE_ID: u32 = DEFAULT_BOT_SOURCE_ID;

/// How often packets move between the transport and the conference: well under a frame,
/// so a packet waits a few milliseconds at most.
const PUMP_INTERVAL: Duration = Duration::from_millis(5);

/// Why the emulator could not be the bot's media peer.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The blob is an appmedia blob the transport refused (tampered, an answer, ...).
    #[error("mediaConfig.blob: {0}")]
    Offer(#[from] appmedia_transport::TransportError),
    /// The conference could not be built.
    #[error("conference media: {0}")]
    Conference(#[from] ConferenceError),
    /// The conference scheduler refused the call.
    #[error("conference scheduler: {0}")]
    Scheduler(#[from] appmedia_media::scheduler::SchedulerError),
    /// The recording could not start.
    #[error("recording: {0}")]
    Recording(#[from] appmedia_audio_io::record::RecordError),
    /// The session has no packet queues to give (already taken).
    #[error("the media session's RTP endpoint is already taken")]
    EndpointTaken,
}

/// True when `blob` claims to be an appmedia blob (a JSON object with a `version`): such a
/// blob must be answered, and refusing it is the bot's error to hear about.
pub fn is_appmedia_blob(blob: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(blob)
        .ok()
        .is_some_and(|v| v.get("version").is_some())
}

/// Where the emulator records what the bot sends in call `call_id`, when recording to `dir`.
/// (`{call_id}-mixed.wav` beside it is everyone: the bot and all parties.)
pub fn bot_recording_path(dir: &Path, call_id: &str) -> PathBuf {
    RecordingConfig::new(dir, call_id).path_of(Track::Speaker(BOT_SOURCE_ID))
}

/// When each media source (the bot and every party) was last heard, from the conference's
/// per-tick stats; the softphone page shows who speaks from it.
#[derive(Debug, Default)]
pub struct RecentSpeakers(Mutex<HashMap<u32, Instant>>);

impl RecentSpeakers {
    fn note(&self, stats: &appmedia_emulator_media::ConferenceStats, now: Instant) {
        let mut heard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for &id in stats.speakers() {
            heard.insert(id, now);
        }
        if stats.bot_speaking {
            heard.insert(BOT_SOURCE_ID, now);
        }
    }

    /// The sources heard within `window`, in ascending order.
    pub fn within(&self, window: Duration) -> Vec<u32> {
        let heard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<u32> = heard
            .iter()
            .filter(|(_, at)| at.elapsed() <= window)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

/// One call's media peer. Dropping it stops the conference and finishes the recording.
pub struct MediaPeer {
    /// `None` once the bot left the call's media ([`MediaPeer::release_bot`]).
    session: Option<MediaSession>,
    control: ConferenceControl,
    stop: Arc<AtomicBool>,
    recording: Option<PathBuf>,
    timeline: MediaTimeline,
    speakers: Arc<RecentSpeakers>,
    layout: StreamLayout,
    /// Resolves when the bot's media is lost (see [`MediaPeer::take_bot_lost`]).
    bot_lost: Option<tokio::sync::oneshot::Receiver<EndReason>>,
}

impl std::fmt::Debug for MediaPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPeer")
            .field("session", &self.session.as_ref().map(MediaSession::id))
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}

impl MediaPeer {
    /// Answers the bot's offer and starts the call's conference (no parties yet: they are
    /// added as they join); returns the peer and the answer blob for the 201 body.
    /// `recording` records the bot (`bot_recording_path`) and everyone (the mixed track).
    pub async fn answer(
        transport: TransportConfig,
        offer_blob: &str,
        scheduler: &ConferenceScheduler,
        max_parties: usize,
        recording: Option<RecordingConfig>,
    ) -> Result<(MediaPeer, String), MediaError> {
        let conference_config = ConferenceConfig {
            bot_source_id: BOT_SOURCE_ID,
            max_parties: max_parties.clamp(1, 256),
            rtp_seed: rand_seed(),
            ..ConferenceConfig::default()
        };
        let key = transport.blob_integrity.key().map(<[u8]>::to_vec);
        let transport = TransportConfig {
            // Every other SSRC the conference sends is a speaker: see the module doc.
            mixed_ssrc: Some(conference_config.mixed_ssrc),
            ..transport
        };
        let (session, answer) = MediaSession::answer_blob(transport, offer_blob).await?;
        // The bot's media lost without a goodbye (its process died, its network went): what
        // the call's driver ends the call for. A session this side closes is not a loss.
        let (lost_tx, bot_lost) = tokio::sync::oneshot::channel();
        let end = session.end_watch();
        tokio::spawn(async move {
            let reason = end.await;
            if matches!(
                reason,
                EndReason::PeerGone { .. }
                    | EndReason::ConnectTimeout { .. }
                    | EndReason::ConnectFailed
            ) {
                let _ = lost_tx.send(reason);
            }
        });
        // `answer_blob` has verified the blob already; this reads one flag from it.
        let wants_unmixed = Blob::parse(offer_blob, key.as_deref())
            .map(|b| b.receive_unmixed_meeting_audio)
            .unwrap_or(false);
        if wants_unmixed && session.unmixed_send_streams() == 0 {
            tracing::warn!(
                "the blob asks for unmixed meeting audio but offers no unmixed m-line: sending the mix"
            );
        }
        let layout =
            StreamLayout::for_receive_unmixed(wants_unmixed && session.unmixed_send_streams() > 0);
        let endpoint = session.take_endpoint().ok_or(MediaError::EndpointTaken)?;
        let mut conference = ConferenceMedia::new(ConferenceConfig {
            layout,
            ..conference_config
        })?;
        let recording_path = recording
            .as_ref()
            .map(|c| c.path_of(Track::Speaker(BOT_SOURCE_ID)));
        let recorders = crate::conference::heard::Recorders::start(recording, &mut conference)?;
        let control = conference.control();
        let mut running = RunningConference::start(scheduler, conference, QueueSizes::default())?;
        let stop = Arc::new(AtomicBool::new(false));
        let task_stop = stop.clone();
        let timeline = MediaTimeline::new(scheduler.epoch());
        let task_timeline = timeline.clone();
        let speakers = Arc::new(RecentSpeakers::default());
        let task_speakers = speakers.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(PUMP_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last_stats = None;
            while !task_stop.load(Ordering::Relaxed) {
                interval.tick().await;
                running.pump(&endpoint.incoming, &endpoint.outgoing);
                while let Some(event) = running.next_event() {
                    task_timeline.observe(&event);
                    log_event(event);
                }
                if let Some(stats) = running.latest_stats() {
                    task_speakers.note(&stats, Instant::now());
                    last_stats = Some(stats);
                }
            }
            if let Some(stats) = last_stats {
                tracing::info!(ticks = stats.ticks, bot_stream = ?stats.bot_stream, bot_leg = ?stats.bot_leg, "the call's media ended");
            }
            running.stop();
            drop(running);
            recorders.finish().await;
        });
        Ok((
            MediaPeer {
                session: Some(session),
                control,
                stop,
                recording: recording_path,
                timeline,
                speakers,
                layout,
                bot_lost: Some(bot_lost),
            },
            answer,
        ))
    }

    /// A party joins the call's media (at the next tick).
    pub fn add_party(&self, spec: PartySpec) -> Result<(), ConferenceError> {
        self.control.add_party(spec)
    }

    /// A person on the softphone page joins the call's media (at the next tick): a party
    /// whose microphone is their browser's RTP, carried on the returned link.
    pub fn add_network_party(
        &self,
        spec: PartySpec,
    ) -> Result<appmedia_emulator_media::NetworkLink, ConferenceError> {
        self.control.add_network_party(spec)
    }

    /// The party with this source id leaves the call's media.
    pub fn remove_party(&self, source_id: u32) -> Result<(), ConferenceError> {
        self.control.remove_party(source_id)
    }

    /// Mutes or unmutes a party: a muted party's microphone is not mixed for anyone.
    pub fn set_muted(&self, source_id: u32, muted: bool) -> Result<(), ConferenceError> {
        self.control.set_muted(source_id, muted)
    }

    /// The conference's control (parties join, leave, mute).
    pub fn control(&self) -> &ConferenceControl {
        &self.control
    }

    /// When each party first spoke.
    pub fn timeline(&self) -> &MediaTimeline {
        &self.timeline
    }

    /// The media sources (the bot's is [`BOT_SOURCE_ID`]) heard within `window`.
    pub fn recent_speakers(&self, window: Duration) -> Vec<u32> {
        self.speakers.within(window)
    }

    /// What the bot receives: the mix, or one stream per speaking party.
    pub fn layout(&self) -> StreamLayout {
        self.layout
    }

    /// The recording of what the bot sent, when recording.
    pub fn recording(&self) -> Option<&PathBuf> {
        self.recording.as_ref()
    }

    /// Resolves with why, if the bot's media is lost: ICE and DTLS never completed, or the
    /// bot stopped answering consent checks for the transport's `peer_timeout`. Graph ends
    /// such a call (`410`, client media error). Taken once, by the call's driver.
    pub fn take_bot_lost(&mut self) -> Option<tokio::sync::oneshot::Receiver<EndReason>> {
        self.bot_lost.take()
    }

    /// The bot leaves the call's media (a transfer completed): the conference goes on for the
    /// parties, the bot is silence to them and its media session closes.
    pub(crate) fn release_bot(&mut self) {
        if let Err(e) = self.control.detach_bot() {
            tracing::warn!(error = %e, "the conference did not take the bot's leaving");
        }
        // Dropping the session ends it (RTCP BYE, ICE closed) without waiting here.
        self.session = None;
    }
}

impl Drop for MediaPeer {
    fn drop(&mut self) {
        // The pump task stops within one interval, removes the conference and finishes the
        // recording itself; nobody waits for it here, as a drop may run on an async worker.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn log_event(event: ConferenceEvent) {
    match event {
        ConferenceEvent::CommandRejected { source_id, reason } => {
            tracing::warn!(source_id, ?reason, "conference refused a party command")
        }
        other => tracing::debug!(event = ?other, "conference event"),
    }
}

/// RFC 3550 wants the first sequence numbers and timestamps random.
fn rand_seed() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}
