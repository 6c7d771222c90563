//! One task per ACS call connection: rings its targets with their directory behaviour,
//! keeps the roster, runs the in-call operations and turns each change into the CloudEvent
//! ACS would post. Handlers talk to it with `AcsCommand`s (each with its reply channel);
//! the call's media talks to it with `MediaEvent`s.

use std::sync::Arc;
use std::time::Duration;

use appmedia_acs::Identifier;
use appmedia_acs::events::EventType;
use appmedia_acs::models::{
    AddParticipantRequest, AddParticipantResponse, CallConnectionState, CallParticipant,
    ContinuousDtmfRecognitionRequest, MediaStreamingOptions, MuteParticipantsRequest,
    OperationResponse, RemoveParticipantRequest, SendDtmfTonesRequest, TransferRequest, tone_name,
};
use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PromptId, PromptOutcome};
use appmedia_emulator_media::{PartyKind, PartySpec};
use appmedia_media::dtmf::Tone;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::acs::{AcsApiError, AcsParty, find_party};
use crate::calls::Shared;
use crate::calls::acs::events::{CallIdentity, EventQueue};
use crate::conference::acs_media::{AcsMedia, MediaEvent, StreamRequest};
use crate::conference::media::BOT_SOURCE_ID;
use crate::directory::Answer;

type Reply<T> = oneshot::Sender<Result<T, AcsApiError>>;

/// What a handler asks a call connection.
pub(crate) enum AcsCommand {
    /// `DELETE …/{id}` (`terminate: false`) or `POST …:terminate`.
    HangUp { terminate: bool, reply: Reply<()> },
    /// `POST …/participants:add`.
    Add {
        request: AddParticipantRequest,
        reply: Reply<AddParticipantResponse>,
    },
    /// `POST …/participants:remove`.
    Remove {
        request: RemoveParticipantRequest,
        reply: Reply<OperationResponse>,
    },
    /// `POST …/participants:mute`.
    Mute {
        request: MuteParticipantsRequest,
        reply: Reply<OperationResponse>,
    },
    /// `POST …:transferToParticipant`.
    Transfer {
        request: TransferRequest,
        reply: Reply<OperationResponse>,
    },
    /// `POST …:play`, the files already fetched (or why they could not be).
    Play {
        clips: Result<Vec<AudioClip>, String>,
        looped: bool,
        context: Option<String>,
        reply: Reply<()>,
    },
    /// `POST …:cancelAllMediaOperations`.
    CancelMedia { reply: Reply<()> },
    /// `POST …:sendDtmfTones`.
    SendDtmf {
        request: SendDtmfTonesRequest,
        reply: Reply<OperationResponse>,
    },
    /// `POST …:startContinuousDtmfRecognition` / `…:stop…`.
    DtmfRecognition {
        start: bool,
        request: ContinuousDtmfRecognitionRequest,
        reply: Reply<()>,
    },
    /// `POST …:startMediaStreaming` / `…:stopMediaStreaming`.
    Streaming {
        start: bool,
        context: Option<String>,
        reply: Reply<()>,
    },
    /// `POST /calling/recordings`, `DELETE /calling/recordings/{id}`.
    Recording {
        recording_id: String,
        start: bool,
        callback_uri: Option<String>,
        reply: Reply<()>,
    },
    /// The control API: a party of the call presses keys.
    Press {
        party: String,
        keys: Vec<Tone>,
        reply: Reply<()>,
    },
}

/// Everything the driver needs about one call.
pub(crate) struct AcsPlan {
    pub ids: CallIdentity,
    pub operation_context: Option<String>,
    pub source: Identifier,
    /// Rung by the call (outbound).
    pub targets: Vec<AcsParty>,
    /// In the call from the start (the caller of an answered call).
    pub connected: Vec<AcsParty>,
    pub streaming: Option<MediaStreamingOptions>,
    pub subscription_id: String,
}

/// `resultInformation`: (code, subCode, message).
type Outcome = (u16, u32, &'static str);

mod outcome {
    use super::Outcome;
    pub const OK: Outcome = (200, 0, "Action completed successfully.");
    pub const HUNG_UP_BY_BOT: Outcome = (200, 7000, "The conversation has ended.");
    pub const TERMINATED: Outcome = (200, 7000, "The call was terminated for everyone.");
    pub const REMOTE_HUNG_UP: Outcome = (200, 5000, "The remote party hung up.");
    pub const DECLINED: Outcome = (603, 560603, "The target declined the call.");
    pub const NOT_ANSWERED: Outcome = (408, 560408, "The target did not answer.");
    pub const TRANSFERRED: Outcome = (200, 7015, "The call was transferred.");
    pub const TRANSFER_FAILED: Outcome = (603, 7504, "The transfer target declined the call.");
    pub const PLAY_CANCELED: Outcome = (400, 8508, "Action falied, the operation was canceled.");
    pub const PLAY_FAILED: Outcome = (
        400,
        8535,
        "Action failed, file could not be downloaded or played.",
    );
    pub const SHUTDOWN: Outcome = (500, 0, "The service is shutting down.");
}

fn result_information((code, sub_code, message): Outcome) -> Value {
    json!({"code": code, "subCode": sub_code, "message": message})
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ring {
    Ringing,
    Joined,
    Declined,
    Gone,
}

/// A party in the call (the bot aside).
struct Member {
    party: AcsParty,
    source_id: u32,
    muted: bool,
}

enum Timer {
    /// Target `i` answers, declines.
    Answer(usize),
    Decline(usize),
    /// Nobody answered in time.
    RingTimeout,
    /// A member hangs up (by raw id).
    HangUp(String),
    /// A member presses its script's keys.
    Press(String, Vec<Tone>),
    /// An invited participant answers or declines (`invitation` index).
    InviteAnswer(usize),
    InviteFail(usize, Outcome),
    /// `sendDtmfTones` has been played.
    TonesSent(Option<String>),
    /// The transfer target answers (or declines).
    TransferAnswer(Option<String>, Identifier),
    TransferFail(Option<String>, Identifier),
}

struct Invitation {
    party: AcsParty,
    context: Option<String>,
    invitation_id: String,
    done: bool,
}

struct PlayOp {
    ids: Vec<PromptId>,
    context: Option<String>,
    cancelled: bool,
}

struct Run {
    shared: Arc<Shared>,
    plan: AcsPlan,
    events: EventQueue,
    media: AcsMedia,
    rings: Vec<Ring>,
    members: Vec<Member>,
    invitations: Vec<Invitation>,
    plays: Vec<PlayOp>,
    recognizing: Vec<String>,
    dtmf_sequence: u64,
    next_source_id: u32,
    connected: bool,
    sequence: u64,
    timers: Vec<(Instant, Timer)>,
    streaming_context: Option<String>,
    /// Set once the bot's leg ends: the outcome of its `CallDisconnected`.
    ended: Option<Outcome>,
    /// `CreateCallFailed` precedes the disconnection.
    create_failed: bool,
}

/// Runs the call until the bot's leg ends.
pub(crate) async fn run(
    shared: Arc<Shared>,
    plan: AcsPlan,
    media: AcsMedia,
    mut media_events: mpsc::UnboundedReceiver<MediaEvent>,
    mut control: mpsc::UnboundedReceiver<AcsCommand>,
    events: EventQueue,
) {
    let start = Instant::now();
    let mut run = Run {
        rings: vec![Ring::Ringing; plan.targets.len()],
        shared,
        events,
        media,
        members: Vec::new(),
        invitations: Vec::new(),
        plays: Vec::new(),
        recognizing: Vec::new(),
        dtmf_sequence: 0,
        next_source_id: BOT_SOURCE_ID + 1,
        connected: false,
        sequence: 0,
        timers: Vec::new(),
        streaming_context: None,
        ended: None,
        create_failed: false,
        plan,
    };
    for (i, target) in run.plan.targets.iter().enumerate() {
        let at = start + target.behaviour.ring_delay();
        match target.behaviour.answer {
            Answer::Answer => run.timers.push((at, Timer::Answer(i))),
            Answer::Decline => run.timers.push((at, Timer::Decline(i))),
            Answer::NoAnswer => {}
        }
    }
    if !run.plan.targets.is_empty() {
        let timeout = run.shared.config.default_ringing_timeout;
        run.timers.push((start + timeout, Timer::RingTimeout));
    }
    // An answered call: the caller is there already.
    let connected = std::mem::take(&mut run.plan.connected);
    if !connected.is_empty() {
        for party in connected {
            run.join(party);
        }
        run.connect();
    }
    while run.ended.is_none() {
        let next = run.timers.iter().map(|(at, _)| *at).min();
        tokio::select! {
            _ = tokio::time::sleep_until(next.unwrap_or(start)), if next.is_some() => {
                if let Some(pos) = run.timers.iter().position(|(at, _)| Some(*at) == next) {
                    let (_, timer) = run.timers.swap_remove(pos);
                    run.timer(timer);
                }
            }
            command = control.recv() => match command {
                Some(command) => run.command(command),
                // The emulator is shutting down.
                None => run.end(outcome::SHUTDOWN),
            },
            Some(event) = media_events.recv() => run.media_event(event),
        }
    }
    run.finish();
}

impl Run {
    fn id(&self) -> &str {
        &self.plan.ids.call_connection_id
    }

    fn emit(&self, event_type: EventType, mut data: Value) {
        if let Value::Object(map) = &mut data
            && !map.contains_key("operationContext")
            && let Some(context) = &self.plan.operation_context
        {
            map.insert("operationContext".into(), context.clone().into());
        }
        self.events.send(self.plan.ids.event(event_type, data));
    }

    fn emit_op(
        &self,
        event_type: EventType,
        context: &Option<String>,
        result: Outcome,
        mut extra: Value,
    ) {
        if let Value::Object(map) = &mut extra {
            map.insert("operationContext".into(), json!(context));
            map.insert("resultInformation".into(), result_information(result));
        }
        self.events.send(self.plan.ids.event(event_type, extra));
    }

    fn roster(&self) -> Vec<CallParticipant> {
        let mut list = vec![CallParticipant {
            identifier: self.plan.source.clone(),
            is_muted: false,
            is_on_hold: false,
        }];
        list.extend(self.members.iter().map(|m| CallParticipant {
            identifier: m.party.identifier.clone(),
            is_muted: m.muted,
            is_on_hold: false,
        }));
        list
    }

    fn roster_changed(&mut self) {
        let roster = self.roster();
        let id = self.id().to_owned();
        self.shared
            .acs
            .update(&id, |entry| entry.participants = roster.clone());
        if self.connected {
            self.sequence += 1;
            self.emit(
                EventType::ParticipantsUpdated,
                json!({"participants": roster, "sequenceNumber": self.sequence}),
            );
        }
    }

    fn set_state(&self, state: CallConnectionState) {
        self.shared.acs.update(self.id(), |entry| {
            entry.properties.call_connection_state = Some(state);
        });
    }

    /// A party joins the call and its media.
    fn join(&mut self, party: AcsParty) {
        let source_id = self.next_source_id;
        self.next_source_id += 1;
        let raw = party.identifier.raw_id();
        let kind = if party.is_phone {
            PartyKind::Phone
        } else {
            PartyKind::User
        };
        let audio = self.shared.party_audio(&party.behaviour.media);
        let spec = PartySpec::new(
            raw.clone(),
            party.display_name.clone(),
            kind,
            source_id,
            audio,
        );
        if let Err(e) = self.media.control().add_party(spec) {
            tracing::warn!(call = %self.id(), party = %raw, error = %e, "the conference refused a party");
        }
        self.media.name_participant(source_id, &raw);
        let now = Instant::now();
        if let Some(after) = party.behaviour.hang_up_after_ms {
            self.timers.push((
                now + Duration::from_millis(after),
                Timer::HangUp(raw.clone()),
            ));
        }
        if let Some(press) = &party.behaviour.press
            && let Some(tones) = press.tones()
        {
            self.timers.push((
                now + Duration::from_millis(press.after_ms),
                Timer::Press(raw.clone(), tones),
            ));
        }
        self.members.push(Member {
            party,
            source_id,
            muted: false,
        });
        self.roster_changed();
    }

    /// The call is up: `CallConnected`, the roster, and streaming if asked from the start.
    fn connect(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        self.set_state(CallConnectionState::Connected);
        self.emit(EventType::CallConnected, json!({}));
        self.sequence += 1;
        self.emit(
            EventType::ParticipantsUpdated,
            json!({"participants": self.roster(), "sequenceNumber": self.sequence}),
        );
        if self
            .plan
            .streaming
            .as_ref()
            .is_some_and(|s| s.start_media_streaming == Some(true))
            && let Err(e) = self.start_streaming(None)
        {
            tracing::warn!(call = %self.id(), error = %e, "streaming did not start");
        }
    }

    fn start_streaming(&mut self, context: Option<String>) -> Result<(), AcsApiError> {
        let options = self.plan.streaming.as_ref().ok_or_else(|| {
            AcsApiError::bad_request(
                "startMediaStreaming: the call was created without mediaStreamingOptions",
            )
        })?;
        self.media
            .start_streaming(StreamRequest {
                transport_url: options.transport_url.clone(),
                subscription_id: self.plan.subscription_id.clone(),
                bidirectional: options.enable_bidirectional == Some(true),
                dtmf: options.enable_dtmf_tones == Some(true),
                authorization: self
                    .shared
                    .acs
                    .events
                    .token()
                    .ok()
                    .map(|token| format!("Bearer {token}")),
            })
            .map_err(|e| AcsApiError::bad_request(e.to_string()))?;
        self.streaming_context = context;
        Ok(())
    }

    fn member_index(&self, who: &Identifier) -> Option<usize> {
        let raw = who.raw_id();
        self.members.iter().position(|m| {
            m.party.identifier.raw_id().eq_ignore_ascii_case(&raw)
                || matches!((&m.party.identifier, who),
                    (Identifier::PhoneNumber(a), Identifier::PhoneNumber(b)) if a == b)
        })
    }

    /// A member leaves; the call ends when nobody but the bot is left (or ringing).
    fn leave(&mut self, index: usize) {
        let member = self.members.remove(index);
        if let Err(e) = self.media.control().remove_party(member.source_id) {
            tracing::warn!(call = %self.id(), error = %e, "the conference did not take a leaving party");
        }
        self.roster_changed();
        let ringing =
            self.rings.contains(&Ring::Ringing) || self.invitations.iter().any(|i| !i.done);
        if self.members.is_empty() && !ringing {
            self.end(outcome::REMOTE_HUNG_UP);
        }
    }

    /// The bot's leg ends with `outcome`.
    fn end(&mut self, outcome: Outcome) {
        if self.ended.is_none() {
            self.ended = Some(outcome);
        }
    }

    fn finish(mut self) {
        let outcome = self.ended.unwrap_or(outcome::HUNG_UP_BY_BOT);
        if self.create_failed {
            self.emit_op(
                EventType::CreateCallFailed,
                &self.plan.operation_context.clone(),
                outcome,
                json!({}),
            );
        }
        let _ = self.media.stop_streaming();
        self.set_state(CallConnectionState::Disconnected);
        self.emit_op(
            EventType::CallDisconnected,
            &self.plan.operation_context.clone(),
            outcome,
            json!({}),
        );
        self.shared.acs.remove(self.id());
        self.timers.clear();
        tracing::info!(call = %self.id(), code = outcome.0, "ACS call connection ended");
    }

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::Answer(i) if self.rings[i] == Ring::Ringing => {
                self.rings[i] = Ring::Joined;
                let party = self.plan.targets[i].clone();
                // The party hears the call before the bot is told: a greeting started on
                // CallConnected reaches them from its first word.
                self.join(party);
                self.connect();
            }
            Timer::Decline(i) if self.rings[i] == Ring::Ringing => {
                self.rings[i] = Ring::Declined;
                self.ring_over(outcome::DECLINED);
            }
            Timer::RingTimeout => {
                for ring in &mut self.rings {
                    if *ring == Ring::Ringing {
                        *ring = Ring::Declined;
                    }
                }
                self.ring_over(outcome::NOT_ANSWERED);
            }
            Timer::HangUp(raw) => {
                if let Some(i) = self.member_index(&Identifier::from_raw_id(&raw)) {
                    if let Some(t) = self
                        .plan
                        .targets
                        .iter()
                        .position(|t| t.identifier.raw_id() == raw)
                    {
                        self.rings[t] = Ring::Gone;
                    }
                    self.leave(i);
                }
            }
            Timer::Press(raw, tones) => {
                if let Some(i) = self.member_index(&Identifier::from_raw_id(&raw)) {
                    let source_id = self.members[i].source_id;
                    if let Err(e) = self.media.press(source_id, &raw, &tones) {
                        tracing::warn!(call = %self.id(), error = %e, "key presses refused");
                    }
                }
            }
            Timer::InviteAnswer(i) => {
                if self.invitations[i].done {
                    return;
                }
                self.invitations[i].done = true;
                let party = self.invitations[i].party.clone();
                let context = self.invitations[i].context.clone();
                let identifier = party.identifier.clone();
                // The outcome first, then the roster that shows it.
                self.emit_op(
                    EventType::AddParticipantSucceeded,
                    &context,
                    outcome::OK,
                    json!({"participant": identifier, "invitationId": self.invitations[i].invitation_id}),
                );
                self.join(party);
            }
            Timer::InviteFail(i, result) => {
                if self.invitations[i].done {
                    return;
                }
                self.invitations[i].done = true;
                let context = self.invitations[i].context.clone();
                self.emit_op(
                    EventType::AddParticipantFailed,
                    &context,
                    result,
                    json!({"participant": self.invitations[i].party.identifier,
                           "invitationId": self.invitations[i].invitation_id}),
                );
                if self.members.is_empty() && !self.rings.contains(&Ring::Ringing) {
                    self.end(outcome::REMOTE_HUNG_UP);
                }
            }
            Timer::TonesSent(context) => {
                self.emit_op(
                    EventType::SendDtmfTonesCompleted,
                    &context,
                    outcome::OK,
                    json!({}),
                );
            }
            Timer::TransferAnswer(context, target) => {
                self.set_state(CallConnectionState::TransferAccepted);
                let transferee = self.members.first().map(|m| m.party.identifier.clone());
                self.emit_op(
                    EventType::CallTransferAccepted,
                    &context,
                    outcome::OK,
                    json!({"transferTarget": target, "transferee": transferee}),
                );
                self.end(outcome::TRANSFERRED);
            }
            Timer::TransferFail(context, target) => {
                self.set_state(CallConnectionState::Connected);
                self.emit_op(
                    EventType::CallTransferFailed,
                    &context,
                    outcome::TRANSFER_FAILED,
                    json!({"transferTarget": target}),
                );
            }
            _ => {}
        }
    }

    /// A target declined or did not answer: the call fails when none is left ringing.
    fn ring_over(&mut self, why: Outcome) {
        if !self.connected && !self.rings.contains(&Ring::Ringing) {
            self.create_failed = true;
            self.end(why);
        }
    }

    fn media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::StreamingStarted => {
                self.shared.acs.update(self.id(), |entry| {
                    if let Some(s) = &mut entry.properties.media_streaming_subscription {
                        s.state = Some("active".into());
                    }
                });
                let context = self.streaming_context.clone();
                self.emit_op(
                    EventType::MediaStreamingStarted,
                    &context,
                    outcome::OK,
                    json!({"mediaStreamingUpdate": {"contentType": "Audio",
                        "mediaStreamingStatus": "mediaStreamingStarted",
                        "mediaStreamingStatusDetails": "subscriptionStarted"}}),
                );
            }
            MediaEvent::StreamingStopped => {
                self.streaming_inactive();
                let context = self.streaming_context.take();
                self.emit_op(
                    EventType::MediaStreamingStopped,
                    &context,
                    outcome::OK,
                    json!({"mediaStreamingUpdate": {"contentType": "Audio",
                        "mediaStreamingStatus": "mediaStreamingStopped",
                        "mediaStreamingStatusDetails": "subscriptionStopped"}}),
                );
            }
            MediaEvent::StreamingFailed(reason) => {
                self.streaming_inactive();
                let context = self.streaming_context.take();
                tracing::warn!(call = %self.id(), %reason, "ACS media streaming failed; the call goes on");
                self.emit_op(
                    EventType::MediaStreamingFailed,
                    &context,
                    (
                        500,
                        8581,
                        "Action failed, the media streaming transport failed.",
                    ),
                    json!({"mediaStreamingUpdate": {"contentType": "Audio",
                        "mediaStreamingStatus": "mediaStreamingFailed",
                        "mediaStreamingStatusDetails": reason}}),
                );
            }
            MediaEvent::Tone { participant, key } => {
                let recognized = match &participant {
                    Some(raw) => self.recognizing.iter().any(|r| r.eq_ignore_ascii_case(raw)),
                    None => !self.recognizing.is_empty(),
                };
                if recognized && let Some(name) = tone_name(key) {
                    self.dtmf_sequence += 1;
                    self.emit_op(
                        EventType::ContinuousDtmfRecognitionToneReceived,
                        &None,
                        outcome::OK,
                        json!({"tone": name, "sequenceId": self.dtmf_sequence,
                               "toneInfo": {"tone": name, "sequenceId": self.dtmf_sequence},
                               "participant": participant.map(|p| Identifier::from_raw_id(&p))}),
                    );
                }
            }
            MediaEvent::Prompt(event) => self.prompt_ended(event.id, event.outcome),
        }
    }

    fn streaming_inactive(&self) {
        self.shared.acs.update(self.id(), |entry| {
            if let Some(s) = &mut entry.properties.media_streaming_subscription {
                s.state = Some("inactive".into());
            }
        });
    }

    fn prompt_ended(&mut self, id: PromptId, result: PromptOutcome) {
        let Some(pos) = self.plays.iter().position(|p| p.ids.contains(&id)) else {
            return;
        };
        let op = &mut self.plays[pos];
        op.ids.retain(|i| *i != id);
        if result == PromptOutcome::Cancelled {
            op.cancelled = true;
        }
        let failed = matches!(result, PromptOutcome::Failed | PromptOutcome::Rejected);
        if !op.ids.is_empty() && !failed {
            return;
        }
        let op = self.plays.remove(pos);
        let (event_type, result) = if failed {
            (EventType::PlayFailed, outcome::PLAY_FAILED)
        } else if op.cancelled {
            (EventType::PlayCanceled, outcome::PLAY_CANCELED)
        } else {
            (EventType::PlayCompleted, outcome::OK)
        };
        self.emit_op(event_type, &op.context, result, json!({}));
    }

    fn command(&mut self, command: AcsCommand) {
        match command {
            AcsCommand::HangUp { terminate, reply } => {
                let _ = reply.send(Ok(()));
                self.end(if terminate {
                    outcome::TERMINATED
                } else {
                    outcome::HUNG_UP_BY_BOT
                });
            }
            AcsCommand::Add { request, reply } => {
                let _ = reply.send(self.add(request));
            }
            AcsCommand::Remove { request, reply } => {
                let _ = reply.send(self.remove(request));
            }
            AcsCommand::Mute { request, reply } => {
                let _ = reply.send(self.mute(request));
            }
            AcsCommand::Transfer { request, reply } => {
                let _ = reply.send(self.transfer(request));
            }
            AcsCommand::Play {
                clips,
                looped,
                context,
                reply,
            } => {
                let _ = reply.send(self.play(clips, looped, context));
            }
            AcsCommand::CancelMedia { reply } => {
                let result = self
                    .media
                    .cancel_prompts()
                    .map_err(|e| AcsApiError::internal(e.to_string()));
                let _ = reply.send(result);
            }
            AcsCommand::SendDtmf { request, reply } => {
                let _ = reply.send(self.send_dtmf(request));
            }
            AcsCommand::DtmfRecognition {
                start,
                request,
                reply,
            } => {
                let _ = reply.send(self.recognition(start, request));
            }
            AcsCommand::Streaming {
                start,
                context,
                reply,
            } => {
                let result = if !self.connected {
                    Err(crate::calls::acs::wrong_state("media streaming"))
                } else if start {
                    self.start_streaming(context)
                } else {
                    self.streaming_context = context.or(self.streaming_context.take());
                    self.media
                        .stop_streaming()
                        .map_err(|e| AcsApiError::bad_request(e.to_string()))
                };
                let _ = reply.send(result);
            }
            AcsCommand::Recording {
                recording_id,
                start,
                callback_uri,
                reply,
            } => {
                let _ = reply.send(Ok(()));
                let state = if start { "active" } else { "inactive" };
                let data = json!({"recordingId": recording_id, "state": state,
                    "startDateTime": appmedia_acs::events::rfc3339(std::time::SystemTime::now()),
                    "recordingKind": "AzureCommunicationServices"});
                let event = self.plan.ids.event(EventType::RecordingStateChanged, data);
                match callback_uri {
                    // A recording callback of its own: posted there, once.
                    Some(uri) => self.shared.acs.events.start_call(uri).send(event),
                    None => self.events.send(event),
                }
            }
            AcsCommand::Press { party, keys, reply } => {
                let result = self
                    .find_member(&party)
                    .ok_or_else(|| AcsApiError::not_found(format!("{party} is not in the call")))
                    .and_then(|i| {
                        let raw = self.members[i].party.identifier.raw_id();
                        self.media
                            .press(self.members[i].source_id, &raw, &keys)
                            .map_err(|e| AcsApiError::internal(e.to_string()))
                    });
                let _ = reply.send(result);
            }
        }
    }

    /// A member by raw id, phone number or directory user id.
    fn find_member(&self, name: &str) -> Option<usize> {
        let by_raw = self.member_index(&Identifier::from_raw_id(name));
        by_raw
            .or_else(|| self.member_index(&Identifier::phone(name)))
            .or_else(|| {
                self.members.iter().position(|m| match &m.party.identifier {
                    Identifier::MicrosoftTeamsUser { user_id, .. } => user_id == name,
                    Identifier::CommunicationUser(id) => id.ends_with(&format!("_{name}")),
                    _ => false,
                })
            })
    }

    fn add(
        &mut self,
        request: AddParticipantRequest,
    ) -> Result<AddParticipantResponse, AcsApiError> {
        if !self.connected {
            return Err(crate::calls::acs::wrong_state("participants:add"));
        }
        if let Identifier::PhoneNumber(_) = &request.participant_to_add {
            let number = &self.shared.acs.resource.phone_number;
            if request.source_caller_id_number.as_ref().map(|n| &n.value) != Some(number) {
                return Err(AcsApiError::bad_request(format!(
                    "sourceCallerIdNumber: adding a phone number needs the resource's number {number}"
                )));
            }
        }
        let party = find_party(self.shared.directory(), &request.participant_to_add)
            .map_err(|e| AcsApiError::bad_request(format!("participantToAdd: {e}")))?;
        if self.member_index(&party.identifier).is_some() {
            return Err(AcsApiError::bad_request(format!(
                "participantToAdd: {} is already in the call",
                party.identifier
            )));
        }
        let invitation_id = uuid::Uuid::new_v4().to_string();
        let index = self.invitations.len();
        let now = Instant::now();
        let timeout = Duration::from_secs(u64::from(
            request
                .invitation_timeout_in_seconds
                .unwrap_or(60)
                .clamp(1, 180),
        ));
        let ring = party.behaviour.ring_delay();
        match party.behaviour.answer {
            Answer::Answer if ring < timeout => {
                self.timers.push((now + ring, Timer::InviteAnswer(index)))
            }
            Answer::Decline if ring < timeout => self
                .timers
                .push((now + ring, Timer::InviteFail(index, outcome::DECLINED))),
            _ => self.timers.push((
                now + timeout,
                Timer::InviteFail(index, outcome::NOT_ANSWERED),
            )),
        }
        let participant = CallParticipant {
            identifier: party.identifier.clone(),
            is_muted: false,
            is_on_hold: false,
        };
        self.invitations.push(Invitation {
            party,
            context: request.operation_context.clone(),
            invitation_id: invitation_id.clone(),
            done: false,
        });
        Ok(AddParticipantResponse {
            participant: Some(participant),
            invitation_id: Some(invitation_id),
            operation_context: request.operation_context,
        })
    }

    fn remove(
        &mut self,
        request: RemoveParticipantRequest,
    ) -> Result<OperationResponse, AcsApiError> {
        let index = self
            .member_index(&request.participant_to_remove)
            .ok_or_else(|| {
                AcsApiError::not_found(format!(
                    "participantToRemove: {} is not in the call",
                    request.participant_to_remove
                ))
            })?;
        let identifier = self.members[index].party.identifier.clone();
        if let Some(t) = self
            .plan
            .targets
            .iter()
            .position(|t| t.identifier == identifier)
        {
            self.rings[t] = Ring::Gone;
        }
        self.emit_op(
            EventType::RemoveParticipantSucceeded,
            &request.operation_context,
            outcome::OK,
            json!({"participant": identifier}),
        );
        self.leave(index);
        Ok(OperationResponse {
            operation_context: request.operation_context,
        })
    }

    fn mute(&mut self, request: MuteParticipantsRequest) -> Result<OperationResponse, AcsApiError> {
        if request.target_participants.len() != 1 {
            return Err(AcsApiError::bad_request(
                "targetParticipants: exactly one participant is muted per request",
            ));
        }
        let who = &request.target_participants[0];
        let index = self.member_index(who).ok_or_else(|| {
            AcsApiError::not_found(format!("targetParticipants[0]: {who} is not in the call"))
        })?;
        if !self.members[index].muted {
            self.members[index].muted = true;
            let source_id = self.members[index].source_id;
            if let Err(e) = self.media.control().set_muted(source_id, true) {
                tracing::warn!(call = %self.id(), error = %e, "mute refused by the conference");
            }
            self.roster_changed();
        }
        Ok(OperationResponse {
            operation_context: request.operation_context,
        })
    }

    fn transfer(&mut self, request: TransferRequest) -> Result<OperationResponse, AcsApiError> {
        if !self.connected {
            return Err(crate::calls::acs::wrong_state("transferToParticipant"));
        }
        let party = find_party(self.shared.directory(), &request.target_participant)
            .map_err(|e| AcsApiError::bad_request(format!("targetParticipant: {e}")))?;
        self.set_state(CallConnectionState::Transferring);
        let at = Instant::now() + party.behaviour.ring_delay();
        let context = request.operation_context.clone();
        let timer = match party.behaviour.answer {
            Answer::Answer => Timer::TransferAnswer(context, party.identifier),
            Answer::Decline | Answer::NoAnswer => Timer::TransferFail(context, party.identifier),
        };
        self.timers.push((at, timer));
        Ok(OperationResponse {
            operation_context: request.operation_context,
        })
    }

    fn play(
        &mut self,
        clips: Result<Vec<AudioClip>, String>,
        looped: bool,
        context: Option<String>,
    ) -> Result<(), AcsApiError> {
        if !self.connected {
            return Err(crate::calls::acs::wrong_state("play"));
        }
        let clips = match clips {
            Ok(clips) => clips,
            Err(reason) => {
                // ACS accepts the request and reports the file's failure as an event.
                tracing::warn!(call = %self.id(), %reason, "play: the file could not be used");
                self.emit_op(
                    EventType::PlayFailed,
                    &context,
                    outcome::PLAY_FAILED,
                    json!({}),
                );
                return Ok(());
            }
        };
        let mut ids = Vec::with_capacity(clips.len());
        for clip in &clips {
            match self.media.play(clip, looped) {
                Ok(id) => ids.push(id),
                Err(e) => {
                    return Err(AcsApiError::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequests",
                        format!("play: {e}"),
                    ));
                }
            }
        }
        self.emit_op(EventType::PlayStarted, &context, outcome::OK, json!({}));
        self.plays.push(PlayOp {
            ids,
            context,
            cancelled: false,
        });
        Ok(())
    }

    fn send_dtmf(
        &mut self,
        request: SendDtmfTonesRequest,
    ) -> Result<OperationResponse, AcsApiError> {
        if !self.connected {
            return Err(crate::calls::acs::wrong_state("sendDtmfTones"));
        }
        self.member_index(&request.target_participant)
            .ok_or_else(|| {
                AcsApiError::bad_request(format!(
                    "targetParticipant: {} is not in the call",
                    request.target_participant
                ))
            })?;
        let mut tones = Vec::with_capacity(request.tones.len());
        for (i, name) in request.tones.iter().enumerate() {
            let tone = appmedia_acs::models::tone_key(name)
                .and_then(Tone::from_char)
                .ok_or_else(|| {
                    AcsApiError::bad_request(format!("tones[{i}]: {name:?} is not a tone name"))
                })?;
            tones.push(tone);
        }
        let clip = appmedia_emulator_media::in_band_dtmf(&tones, Duration::from_millis(100))
            .ok_or_else(|| AcsApiError::bad_request("tones: at least one tone is required"))?;
        self.media.play_over_bot(&clip).map_err(|e| {
            AcsApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                format!("sendDtmfTones: {e}"),
            )
        })?;
        let after = clip.duration() + Duration::from_millis(40);
        self.timers.push((
            Instant::now() + after,
            Timer::TonesSent(request.operation_context.clone()),
        ));
        Ok(OperationResponse {
            operation_context: request.operation_context,
        })
    }

    fn recognition(
        &mut self,
        start: bool,
        request: ContinuousDtmfRecognitionRequest,
    ) -> Result<(), AcsApiError> {
        if !self.connected {
            return Err(crate::calls::acs::wrong_state(
                "continuous DTMF recognition",
            ));
        }
        let index = self
            .member_index(&request.target_participant)
            .ok_or_else(|| {
                AcsApiError::bad_request(format!(
                    "targetParticipant: {} is not in the call",
                    request.target_participant
                ))
            })?;
        let raw = self.members[index].party.identifier.raw_id();
        if start {
            if !self.recognizing.contains(&raw) {
                self.recognizing.push(raw);
            }
        } else {
            self.recognizing.retain(|r| *r != raw);
            self.emit_op(
                EventType::ContinuousDtmfRecognitionStopped,
                &request.operation_context,
                outcome::OK,
                json!({}),
            );
        }
        Ok(())
    }
}
