//! A live call: its events, its audio, and every action Graph offers on it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayMode, PromptEvent, PromptId, PromptQueue};
use appmedia_audio_io::record::{
    CallRecorder, RecordingSink, RecordingStatus as FileRecordingStatus, TrackStatus,
};
use appmedia_audio_io::stream::StreamedClip;
use appmedia_media::pipeline::ToneSender;
use appmedia_media::queue::Producer;

use crate::media::MediaSnapshot;
use appmedia_model::{
    Call as CallResource, CallState, ChangeScreenSharingRoleRequest, CommsNotification,
    CommsOperation, Identity, IdentitySet, InvitationParticipantInfo, InviteParticipantsRequest,
    Participant, PlayPromptRequest, RecordResponseRequest, RecordingStatus, ResultInfo,
    ScreenSharingRole, SendDtmfTonesRequest, Tone, TransferRequest, UpdateRecordingStatusRequest,
};
use appmedia_signalling::roster::RosterChange;
use appmedia_signalling::sharing::SharingChange;
use appmedia_transport::{EndReason, SessionStats};
use tokio::sync::{mpsc, watch};

use crate::bot::{BotInner, lock};
use crate::error::BotError;
use crate::media::AudioSocket;

/// How long a call abandoned after a silent hang-up may take to finish locally.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// Where a key press came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToneSource {
    /// RFC 4733 telephone-event on the call's media (app-hosted), with the speaker's source id.
    Media {
        /// The roster source id of the stream the key was pressed on.
        source_id: u32,
    },
    /// Graph's `toneInfo` on a call notification (after `subscribe_to_tone`).
    Signalling {
        /// The notification's `sequenceId`, when Graph numbers it.
        sequence_id: Option<i64>,
    },
}

/// What happened on a call, in the order the bot learnt it.
#[derive(Clone, Debug)]
pub enum Event {
    /// The call moved to another state (`establishing`, `established`, `transferring`,
    /// `transferAccepted`, `terminated`...). `result_info` says why, when Graph says.
    State {
        /// The state before (`None` for the first state the bot learns).
        from: Option<CallState>,
        /// The new state.
        to: CallState,
        /// Graph's `resultInfo` (code, subcode, message) when it gives one, e.g. on `terminated`.
        result_info: Option<ResultInfo>,
    },
    /// Participants joined, changed (mute, media) or left — full or delta rosters alike.
    Roster(RosterChange),
    /// A key was pressed.
    Tone {
        /// The key.
        tone: Tone,
        /// Where the press was seen: the media or Graph's notification.
        source: ToneSource,
    },
    /// The loudest speaker changed (`None`: nobody speaks). App-hosted media only.
    DominantSpeaker(Option<u32>),
    /// Content sharing started, changed or stopped.
    ContentSharing(SharingChange),
    /// An operation (playPrompt, recordResponse, invite, mute...) finished or changed.
    Operation(Box<CommsOperation>),
    /// A prompt played by the bot's own media ended.
    PromptFinished(PromptEvent),
    /// A file of the call's recording stopped on an error (a full disk, say): it stays a valid
    /// WAV holding what was written before; the call, its media and the other files go on.
    /// Once per file.
    RecordingFailed(Box<TrackStatus>),
    /// The app-hosted media connected (ICE and DTLS done): audio flows.
    MediaConnected,
    /// The app-hosted media ended (the call may go on without audio until Graph ends it).
    MediaEnded(EndReason),
    /// Whether the far end hears what the bot sends (Graph's `AudioSendStatus`): active once
    /// the call is established and its media connected, inactive when the media ends. Before
    /// it is active the SDK holds prompts and sources (they play from their start when it
    /// turns active) and discards frames streamed through the `AudioSocket`.
    SendStatus {
        /// True: heard.
        active: bool,
    },
    /// Call properties changed without a state change.
    Updated(Box<CallResource>),
    /// A notification this version does not interpret, verbatim.
    Unhandled(Box<CommsNotification>),
    /// An ACS event with no Graph counterpart (media streaming started or stopped, a
    /// recording's state...), verbatim. ACS backend only.
    Acs(Box<appmedia_acs::events::Event>),
    /// The call is over: the last event. Recordings are complete when it arrives.
    Ended(Box<CallEnd>),
}

/// How a call ended.
#[derive(Clone, Debug)]
pub struct CallEnd {
    /// Why, as Graph said (`None` when the SDK ended it without a `terminated` notification,
    /// e.g. the service no longer knew the call).
    pub result_info: Option<ResultInfo>,
    /// Media counters at the end (app-hosted calls).
    pub media: Option<MediaSnapshot>,
    /// The recording's final state, when the call was recorded.
    pub recording: Option<FileRecordingStatus>,
    /// The media transport's last counters (app-hosted calls), taken before its session
    /// closed: what only the network side knows — RTCP round trip, interarrival jitter,
    /// packets lost as RTP sequence numbers tell.
    pub transport: Option<SessionStats>,
}

/// Who a transfer, redirect or invitation goes to.
// Made once per action and consumed at once, never stored in bulk: boxing the large variant
// would only make it clumsier to build.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A Teams/Entra user by id.
    User(String),
    /// A phone number (E.164, `+` and digits).
    Phone(String),
    /// Any invitation participant as Graph takes it.
    Participant(InvitationParticipantInfo),
}

impl Target {
    /// The invitation participant Graph wants.
    pub fn into_participant(self) -> InvitationParticipantInfo {
        match self {
            Target::User(id) => {
                InvitationParticipantInfo::new(IdentitySet::user(Identity::new(id)))
            }
            Target::Phone(number) => {
                InvitationParticipantInfo::new(IdentitySet::phone(Identity::new(number)))
            }
            Target::Participant(p) => p,
        }
    }
}

/// Whether the bot or the service hosts the call's audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hosting {
    /// Application-hosted: the bot's own media session carries the audio.
    App,
    /// Service-hosted: Graph plays prompts and records; the bot has no audio.
    Service,
}

/// What the call's driver knows, readable from any handle.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub state: Option<CallState>,
    pub resource: Option<CallResource>,
    pub media_stats: Option<MediaSnapshot>,
    /// The media's final counts were moved into the bot's ended totals: a scrape no longer
    /// adds them from here.
    pub media_retired: bool,
    pub ended: bool,
}

pub(crate) struct CallShared {
    pub id: String,
    pub bot: Arc<BotInner>,
    pub hosting: Hosting,
    pub snapshot: Mutex<Snapshot>,
    pub prompts: Option<PromptQueue>,
    pub tones: Option<ToneSender>,
    /// Hands a new recording's sink to the media worker (app-hosted calls).
    pub recorder_tx: Option<Producer<RecordingSink>>,
    /// The recording in progress; the driver finishes it when the call ends.
    pub recorder: Mutex<Option<CallRecorder>>,
    /// Becomes true when the driver has finished (recording flushed, routes removed).
    pub done: watch::Receiver<bool>,
    /// Tells the driver to end the call locally (the service went silent after a hang-up).
    pub abandon: tokio::sync::Notify,
    /// The ACS audio stream (ACS calls with app-hosted media): `StopAudio` on a cancel.
    pub stream: Option<Arc<crate::acs::stream::StreamLink>>,
}

/// Which service an action goes to.
enum Via<'a> {
    Graph(&'a appmedia_signalling::client::GraphClient),
    Acs(&'a crate::acs::backend::AcsBackend),
}

/// The error of an action the ACS backend does not have.
fn unsupported<T>(capability: &'static str) -> Result<T, BotError> {
    Err(BotError::Unsupported {
        backend: "acs",
        capability,
    })
}

/// The actions on a call; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct CallControl {
    pub(crate) shared: Arc<CallShared>,
}

impl std::fmt::Debug for CallControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallControl")
            .field("id", &self.shared.id)
            .field("state", &self.state())
            .finish()
    }
}

/// A call: its [`events`](Call::next_event), its [`AudioSocket`] and, through
/// [`Deref`](std::ops::Deref), its [`CallControl`] actions.
pub struct Call {
    control: CallControl,
    events: mpsc::UnboundedReceiver<Event>,
    audio: Option<AudioSocket>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.control.fmt(f)
    }
}

impl std::ops::Deref for Call {
    type Target = CallControl;
    fn deref(&self) -> &CallControl {
        &self.control
    }
}

impl Call {
    pub(crate) fn new(
        control: CallControl,
        events: mpsc::UnboundedReceiver<Event>,
        audio: Option<AudioSocket>,
    ) -> Self {
        Call {
            control,
            events,
            audio,
        }
    }

    /// The next event; `None` after [`Event::Ended`].
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event, or `None` when none comes within `timeout`.
    pub async fn next_event_within(&mut self, timeout: Duration) -> Option<Event> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for the call to reach `state` (returns true), or to end or `timeout` first (false).
    /// Other events are skipped.
    pub async fn wait_for_state(&mut self, state: CallState, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        if self.state().as_ref() == Some(&state) {
            return true;
        }
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::State { to, .. })) if to == state => return true,
                Ok(Some(Event::Ended(_))) | Ok(None) | Err(_) => return false,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Takes the call's audio socket (app-hosted calls; once).
    pub fn audio_socket(&mut self) -> Option<AudioSocket> {
        self.audio.take()
    }

    /// A handle for acting on the call from another task.
    pub fn control(&self) -> CallControl {
        self.control.clone()
    }
}

impl CallControl {
    /// The call id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Who hosts the call's audio.
    pub fn hosting(&self) -> Hosting {
        self.shared.hosting
    }

    /// The call's latest known state.
    pub fn state(&self) -> Option<CallState> {
        lock(&self.shared.snapshot).state.clone()
    }

    /// The call resource as last notified.
    pub fn resource(&self) -> Option<CallResource> {
        lock(&self.shared.snapshot).resource.clone()
    }

    /// True once the call is over.
    pub fn is_ended(&self) -> bool {
        lock(&self.shared.snapshot).ended
    }

    /// The participants as the bot knows them now.
    pub fn roster(&self) -> Vec<Participant> {
        self.shared
            .bot
            .receiver
            .registry()
            .with_call(&self.shared.id, |agent| {
                agent.roster().participants().cloned().collect()
            })
            .unwrap_or_default()
    }

    /// The ACS audio socket's counters (ACS calls with app-hosted media): frames in and
    /// out, messages refused.
    pub fn stream_stats(&self) -> Option<crate::acs::StreamStats> {
        self.shared.stream.as_ref().map(|s| s.stats())
    }

    /// The latest media counters (app-hosted calls; refreshed every second).
    pub fn media_stats(&self) -> Option<MediaSnapshot> {
        lock(&self.shared.snapshot).media_stats
    }

    /// The service the call's actions go to, unless the call has ended.
    fn via(&self) -> Result<Via<'_>, BotError> {
        if self.is_ended() {
            return Err(BotError::CallEnded {
                call_id: self.shared.id.clone(),
            });
        }
        Ok(match &self.shared.bot.backend {
            crate::bot::Backend::Graph(client) => Via::Graph(client),
            crate::bot::Backend::Acs(acs) => Via::Acs(acs),
        })
    }

    /// The Graph client, for actions only Graph has.
    fn client(
        &self,
        capability: &'static str,
    ) -> Result<&appmedia_signalling::client::GraphClient, BotError> {
        match self.via()? {
            Via::Graph(client) => Ok(client),
            Via::Acs(_) => unsupported(capability),
        }
    }

    /// The call resource as the driver knows it (for ACS actions that name the other party).
    fn known_resource(&self) -> Result<CallResource, BotError> {
        self.resource().ok_or(BotError::Protocol(
            "the call resource is not known yet".into(),
        ))
    }

    fn require_established(&self, action: &'static str) -> Result<(), BotError> {
        let state = self.state();
        if state != Some(CallState::Established) {
            return Err(BotError::InvalidState {
                call_id: self.shared.id.clone(),
                action,
                state,
                needs: "an established call",
            });
        }
        Ok(())
    }

    /// Hangs up (`DELETE`) and waits until the call's driver has finished: `terminated`
    /// seen (or 10 s passed), media stopped, recording complete. Hanging up an ended call
    /// is not an error.
    pub async fn hang_up(&self) -> Result<(), BotError> {
        if !self.is_ended() {
            match self.via()? {
                Via::Graph(client) => match client.delete_call(&self.shared.id).await {
                    Ok(()) => {}
                    // Gone on the service already: the driver ends it (it asks itself below).
                    Err(e) if e.status() == Some(404) => {}
                    Err(e) => return Err(e.into()),
                },
                Via::Acs(acs) => crate::acs::actions::hang_up(acs, &self.shared.id).await?,
            }
        }
        self.wait_done(Duration::from_secs(10)).await
    }

    /// Waits for the driver to finish, telling it to stop when the service stays silent.
    async fn wait_done(&self, timeout: Duration) -> Result<(), BotError> {
        let mut done = self.shared.done.clone();
        if tokio::time::timeout(timeout, done.wait_for(|d| *d))
            .await
            .is_ok()
        {
            return Ok(());
        }
        // No `terminated` came: end the call here (media off, recording finished, routes
        // freed) rather than keep its driver until the bot stops; then report the silence.
        self.shared.abandon.notify_one();
        let _ = tokio::time::timeout(ABANDON_WAIT, done.wait_for(|d| *d)).await;
        Err(BotError::Timeout {
            what: "the service's terminated notification",
            seconds: timeout.as_secs(),
        })
    }

    /// Blind transfer of the call's peer to `target` (a user or a phone number); the bot
    /// leaves once the target accepts (`transferring` → `transferAccepted` → `terminated`).
    pub async fn transfer(&self, target: Target) -> Result<(), BotError> {
        if let Via::Acs(acs) = self.via()? {
            self.require_established("transfer")?;
            let target = crate::acs::calls::target_identifier(target)?;
            return crate::acs::actions::transfer(acs, &self.shared.id, target, None).await;
        }
        self.transfer_with(TransferRequest::new(target.into_participant()))
            .await
    }

    /// Consultative transfer: the peer of this call is connected with the party of the
    /// bot's other call `replaces_call_id` (whose peer is `target`).
    pub async fn transfer_replacing(
        &self,
        target: Target,
        replaces_call_id: &str,
    ) -> Result<(), BotError> {
        let mut participant = target.into_participant();
        participant.replaces_call_id = replaces_call_id.to_owned().into();
        self.transfer_with(TransferRequest::new(participant)).await
    }

    /// Any transfer request as Graph takes it.
    pub async fn transfer_with(&self, request: TransferRequest) -> Result<(), BotError> {
        self.require_established("transfer")?;
        match self.via()? {
            Via::Graph(client) => Ok(client.transfer(&self.shared.id, &request).await?),
            Via::Acs(acs) => {
                crate::acs::actions::transfer_request(acs, &self.shared.id, &request).await
            }
        }
    }

    /// Invites participants; a peer-to-peer call becomes a group call. The operation's end
    /// arrives as [`Event::Operation`], the new participants as [`Event::Roster`].
    pub async fn invite(&self, targets: Vec<Target>) -> Result<CommsOperation, BotError> {
        let participants = targets.into_iter().map(Target::into_participant).collect();
        self.invite_with(InviteParticipantsRequest::new(participants))
            .await
    }

    /// Any invitation as Graph takes it (e.g. with `replacesCallId`).
    pub async fn invite_with(
        &self,
        request: InviteParticipantsRequest,
    ) -> Result<CommsOperation, BotError> {
        self.require_established("invite")?;
        match self.via()? {
            Via::Graph(client) => Ok(client
                .invite_participants(&self.shared.id, &request)
                .await?),
            Via::Acs(acs) => {
                let participants = request.participants.value().cloned().unwrap_or_default();
                crate::acs::actions::invite(acs, &self.shared.id, &participants).await
            }
        }
    }

    /// Mutes the bot itself.
    pub async fn mute(&self) -> Result<CommsOperation, BotError> {
        Ok(self
            .client("muting the bot (on ACS, send nothing)")?
            .mute(&self.shared.id, None)
            .await?)
    }

    /// Unmutes the bot itself.
    pub async fn unmute(&self) -> Result<CommsOperation, BotError> {
        Ok(self
            .client("unmuting the bot")?
            .unmute(&self.shared.id, None)
            .await?)
    }

    /// Mutes another participant.
    pub async fn mute_participant(&self, participant_id: &str) -> Result<CommsOperation, BotError> {
        match self.via()? {
            Via::Graph(client) => Ok(client
                .mute_participant(&self.shared.id, participant_id, None)
                .await?),
            Via::Acs(acs) => {
                crate::acs::actions::mute_participant(acs, &self.shared.id, participant_id).await
            }
        }
    }

    /// Removes a participant from the call.
    pub async fn remove_participant(&self, participant_id: &str) -> Result<(), BotError> {
        match self.via()? {
            Via::Graph(client) => Ok(client
                .delete_participant(&self.shared.id, participant_id)
                .await?),
            Via::Acs(acs) => {
                crate::acs::actions::remove_participant(acs, &self.shared.id, participant_id).await
            }
        }
    }

    /// Graph's `playPrompt` (service-hosted media: the service plays the prompts).
    pub async fn play_prompt(
        &self,
        request: PlayPromptRequest,
    ) -> Result<CommsOperation, BotError> {
        match self.via()? {
            Via::Graph(client) => Ok(client.play_prompt(&self.shared.id, &request).await?),
            Via::Acs(acs) => crate::acs::actions::play_prompt(acs, &self.shared.id, &request).await,
        }
    }

    /// Graph's `recordResponse` (service-hosted media): the recording's location comes with
    /// the completed operation ([`Event::Operation`]).
    pub async fn record_response(
        &self,
        request: RecordResponseRequest,
    ) -> Result<CommsOperation, BotError> {
        Ok(self
            .client("recordResponse")?
            .record_response(&self.shared.id, &request)
            .await?)
    }

    /// Asks Graph for key presses as `toneInfo` notifications ([`Event::Tone`]).
    pub async fn subscribe_to_tone(&self) -> Result<CommsOperation, BotError> {
        match self.via()? {
            Via::Graph(client) => Ok(client.subscribe_to_tone(&self.shared.id, None).await?),
            Via::Acs(acs) => {
                let resource = self.known_resource()?;
                crate::acs::actions::subscribe_to_tone(acs, &self.shared.id, &resource).await
            }
        }
    }

    /// Graph's `sendDtmfTones`: the service sends the tones into the call.
    pub async fn send_dtmf_tones(
        &self,
        tones: Vec<Tone>,
        delay_between_tones_ms: Option<i32>,
    ) -> Result<CommsOperation, BotError> {
        if let Via::Acs(acs) = self.via()? {
            if delay_between_tones_ms.is_some() {
                return unsupported("a delay between DTMF tones");
            }
            let resource = self.known_resource()?;
            return crate::acs::actions::send_dtmf_tones(acs, &self.shared.id, &resource, &tones)
                .await;
        }
        let mut request = SendDtmfTonesRequest::new(tones);
        if let Some(ms) = delay_between_tones_ms {
            request.delay_between_tones_ms = ms.into();
        }
        Ok(self
            .client("sendDtmfTones")?
            .send_dtmf_tones(&self.shared.id, &request)
            .await?)
    }

    /// Graph's `cancelMediaProcessing`: stops the service's prompts and recordings; the bot's
    /// own prompts stop too.
    pub async fn cancel_media_processing(&self) -> Result<CommsOperation, BotError> {
        if let Some(prompts) = &self.shared.prompts {
            let _ = prompts.cancel_all();
        }
        if let Some(stream) = &self.shared.stream {
            stream.stop_audio();
        }
        match self.via()? {
            Via::Graph(client) => Ok(client
                .cancel_media_processing(&self.shared.id, None)
                .await?),
            Via::Acs(acs) => crate::acs::actions::cancel_media(acs, &self.shared.id).await,
        }
    }

    /// Tells Graph whether the bot records (compliance bots must, before recording). Graph
    /// requires a client context; the SDK makes a fresh one.
    pub async fn update_recording_status(
        &self,
        status: RecordingStatus,
    ) -> Result<CommsOperation, BotError> {
        let request = UpdateRecordingStatusRequest::new(status, fresh_client_context());
        Ok(self
            .client("updateRecordingStatus")?
            .update_recording_status(&self.shared.id, &request)
            .await?)
    }

    /// Becomes a viewer or a sharer of the meeting's screen sharing.
    pub async fn change_screen_sharing_role(
        &self,
        role: ScreenSharingRole,
    ) -> Result<(), BotError> {
        Ok(self
            .client("changeScreenSharingRole")?
            .change_screen_sharing_role(&self.shared.id, &ChangeScreenSharingRoleRequest::new(role))
            .await?)
    }

    /// Sends a `keepAlive` now (the SDK sends them by itself; see the bot's config).
    pub async fn keep_alive(&self) -> Result<(), BotError> {
        Ok(self
            .client("keepAlive (an ACS call needs none)")?
            .keep_alive(&self.shared.id)
            .await?)
    }

    /// Plays a WAV or Ogg/Opus file into the call with the bot's own media (app-hosted);
    /// [`Event::PromptFinished`] tells when it ended.
    pub fn play_file(&self, path: impl AsRef<Path>) -> Result<PromptId, BotError> {
        let prompts = self.prompts()?;
        let clip = AudioClip::open(path.as_ref()).map_err(|e| BotError::Prompt(e.to_string()))?;
        prompts
            .play(&clip, PlayMode::Once)
            .map_err(|e| BotError::Prompt(e.to_string()))
    }

    /// Plays a decoded clip (once, or looped until cancelled).
    pub fn play_clip(&self, clip: &AudioClip, mode: PlayMode) -> Result<PromptId, BotError> {
        self.prompts()?
            .play(clip, mode)
            .map_err(|e| BotError::Prompt(e.to_string()))
    }

    /// Plays a clip streamed from disk (a long WAV or Ogg/Opus file is never held in
    /// memory): its decoder thread starts here, on the caller's thread, and buffers a few
    /// frames before this returns. [`Event::PromptFinished`] tells when it ended.
    pub fn play_streamed(&self, clip: &StreamedClip, mode: PlayMode) -> Result<PromptId, BotError> {
        self.prompts()?
            .play_streamed(clip, mode)
            .map_err(|e| BotError::Prompt(e.to_string()))
    }

    /// Stops one of the bot's own prompts.
    pub fn cancel_prompt(&self, id: PromptId) -> Result<(), BotError> {
        self.prompts()?
            .cancel(id)
            .map_err(|e| BotError::Prompt(e.to_string()))?;
        // ACS has queued a little of what was sent: it drops that too (barge-in).
        if let Some(stream) = &self.shared.stream {
            stream.stop_audio();
        }
        Ok(())
    }

    fn prompts(&self) -> Result<&PromptQueue, BotError> {
        self.shared
            .prompts
            .as_ref()
            .ok_or_else(|| BotError::NoMedia {
                call_id: self.shared.id.clone(),
            })
    }

    /// Starts recording what the bot hears (app-hosted calls): the mix and one file per
    /// speaker. Compliance bots call [`update_recording_status`](Self::update_recording_status)
    /// with `recording` first, as Graph requires. The files are complete when the call ends
    /// ([`Event::Ended`]) or [`stop_recording`](Self::stop_recording) returns.
    pub fn start_recording(&self, record: &crate::media::RecordOptions) -> Result<(), BotError> {
        let tx = self
            .shared
            .recorder_tx
            .as_ref()
            .ok_or_else(|| BotError::NoMedia {
                call_id: self.shared.id.clone(),
            })?;
        if self.is_ended() {
            return Err(BotError::CallEnded {
                call_id: self.shared.id.clone(),
            });
        }
        let mut slot = lock(&self.shared.recorder);
        if slot.is_some() {
            return Err(BotError::InvalidState {
                call_id: self.shared.id.clone(),
                action: "start_recording",
                state: self.state(),
                needs: "no recording in progress",
            });
        }
        *slot = Some(crate::setup::start_recording(
            &self.shared.bot,
            &self.shared.id,
            record,
            tx,
        )?);
        Ok(())
    }

    /// Stops the recording in progress and returns its final state (`None` when none runs).
    pub async fn stop_recording(&self) -> Option<FileRecordingStatus> {
        // Taken out of the slot and its bytes so far counted as ended in one step, under the
        // totals' lock: a scrape sees them either here or there (see `crate::exposition`).
        let (recorder, counted) = {
            let mut ended = lock(&self.shared.bot.ended_media);
            let recorder = lock(&self.shared.recorder).take()?;
            let counted = recorder.status().bytes_written();
            ended.recording_bytes += counted;
            (recorder, counted)
        };
        // Joining the writer thread blocks: not on an async worker.
        let status = tokio::task::spawn_blocking(move || recorder.finish())
            .await
            .ok()?;
        // What the writer wrote while it finished.
        lock(&self.shared.bot.ended_media).recording_bytes +=
            status.bytes_written().saturating_sub(counted);
        Some(status)
    }

    /// Adds this call's media counters so far to `totals` (unless they were moved into the
    /// bot's ended totals already) and raises `jitter` to its streams' largest; a scrape holds
    /// the ended totals' lock while it calls this.
    pub(crate) fn add_media_so_far(
        &self,
        totals: &mut crate::exposition::MediaTotals,
        jitter: &mut Duration,
    ) {
        {
            let snapshot = lock(&self.shared.snapshot);
            if let Some(media) = snapshot
                .media_stats
                .as_ref()
                .filter(|_| !snapshot.media_retired)
            {
                totals.add_call(media);
                for stream in media.streams() {
                    *jitter = (*jitter).max(stream.jitter.jitter);
                }
            }
        }
        if let Some(recorder) = lock(&self.shared.recorder).as_ref() {
            totals.recording_bytes += recorder.status().bytes_written();
        }
    }

    /// Moves the call's final media counters into the bot's ended totals (once; the media has
    /// left its worker and published its last snapshot).
    pub(crate) fn retire_media(&self) {
        let mut ended = lock(&self.shared.bot.ended_media);
        let mut snapshot = lock(&self.shared.snapshot);
        if !snapshot.media_retired {
            if let Some(media) = &snapshot.media_stats {
                ended.add_call(media);
            }
            snapshot.media_retired = true;
        }
    }

    /// Sends DTMF keys on the bot's own media (RFC 4733; app-hosted calls), e.g. `"123#"`.
    pub fn press_keys(&self, keys: &str) -> Result<(), BotError> {
        if self.shared.stream.is_some() {
            // ACS's audio stream carries no telephone events: the service sends tones.
            return unsupported("press_keys (use send_dtmf_tones)");
        }
        let tones = self
            .shared
            .tones
            .as_ref()
            .ok_or_else(|| BotError::NoMedia {
                call_id: self.shared.id.clone(),
            })?;
        for key in keys.chars() {
            let tone = appmedia_media::dtmf::Tone::from_char(key)
                .ok_or_else(|| BotError::Prompt(format!("{key:?} is not a DTMF key")))?;
            tones
                .send(appmedia_media::dtmf::ToneRequest::key(tone))
                .map_err(|e| BotError::Prompt(format!("tone queue: {e}")))?;
        }
        Ok(())
    }
}

/// A client context for requests Graph wants one on: unique per request.
fn fresh_client_context() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "appmedia-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
