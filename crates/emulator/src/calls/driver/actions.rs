//! The call actions as the call's driver performs them: what the HTTP side asks
//! ([`CallAction`], through `Control::Action`), the timers they start (a transfer target or
//! an invitee ringing, keypad tones playing, the keep-alive deadline), and the roster, media
//! and notifications they change. Transfer and invite, the two that involve other parties,
//! are in [`super::transfer`] and [`super::invite`].
//!
//! Every action answers on its `reply` channel before its notifications go out, so the HTTP
//! answer (200/202) precedes them, as on Graph. A refusal is an [`ApiError`] the handler
//! returns as is.

use std::time::Duration;

use appmedia_media::dtmf::Tone;
use appmedia_model::{MediaDirection, MediaStream, Modality, Participant};
use axum::http::StatusCode;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{PartyState, Run, invite, party_key, transfer};
use crate::admission::Party;
use crate::directory::Behaviour;
use crate::error::ApiError;
use crate::operations::{self, Operation};
use crate::shapes;
use appmedia_model::OperationStatus;
use appmedia_signalling::validate::CreateCallKind;

/// Where an action's outcome goes: the handler waiting to answer the request.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// The `resultInfo` of a call whose keep-alive deadline passed.
pub(crate) const KEEP_ALIVE_EXPIRED: (i64, i64, &str) = (
    408,
    0,
    "The call was ended because the application sent no keepAlive in time.",
);
/// … of a call whose party moved to another call of the bot (`replacesCallId`).
pub(crate) const REPLACED: (i64, i64, &str) = (200, 0, "The call was replaced by another call.");
/// … of a call the bot ended by removing its last other participant.
pub(crate) const LAST_PARTICIPANT_REMOVED: (i64, i64, &str) =
    (200, 0, "The call was ended by the application.");

/// What an action did: its answer to the handler, and the call's end when it ended it.
type Done = (Result<(), ApiError>, Option<(i64, i64, &'static str)>);

/// The label Graph gives the bot's screen-sharing stream.
const SCREEN_SHARING_LABEL: &str = "applicationsharing-video";

/// What the HTTP side asks a running call to do.
pub(crate) enum CallAction {
    /// `keepAlive`: the call lives another `keep_alive_timeout`.
    KeepAlive,
    /// `mute` / `unmute`: the bot's own server mute.
    MuteBot {
        muted: bool,
        reply: Reply<()>,
    },
    /// `participants/{id}/mute`.
    MuteParticipant {
        participant_id: String,
        reply: Reply<()>,
    },
    /// `DELETE participants/{id}`.
    RemoveParticipant {
        participant_id: String,
        reply: Reply<()>,
    },
    /// `sendDtmfTones`: `operation` is running; its notification comes when the tones end.
    SendTones {
        operation: Operation,
        tones: Vec<Tone>,
        gap: Duration,
        reply: Reply<()>,
    },
    /// `updateRecordingStatus`.
    RecordingStatus {
        status: String,
        reply: Reply<()>,
    },
    /// `changeScreenSharingRole`: sharer or viewer.
    ScreenSharingRole {
        sharer: bool,
        reply: Reply<()>,
    },
    Transfer(transfer::TransferAction),
    Invite(invite::InviteAction),
    /// Another call of the bot takes this call's party `key` (`replacesCallId`): it leaves
    /// this call, which ends.
    Release {
        key: String,
        reply: Reply<ReleasedParty>,
    },
}

/// A party another call of the bot handed over, with what it does.
#[derive(Clone, Debug)]
pub(crate) struct ReleasedParty {
    pub party: Party,
    pub behaviour: Behaviour,
}

/// What a timer started by an action does when it fires.
#[derive(Debug)]
pub(crate) enum Timer {
    /// `sendDtmfTones`: the tones have played.
    TonesSent(Box<Operation>),
    Transfer(transfer::Step),
    Invite(invite::Step),
}

/// The driver's state for the actions.
pub(crate) struct ActionState {
    keep_alive_timeout: Duration,
    keep_alive_deadline: Instant,
    timers: Vec<(Instant, Timer)>,
    /// When keypad tones already queued in the bot's name end.
    tones_free_at: Instant,
    /// Keys sent with `sendDtmfTones`, in order.
    pub(crate) tones_sent: Vec<Tone>,
    /// The bot's screen-sharing stream, when it is a sharer.
    screen_sharing: Option<u32>,
    pub(crate) transfer: Option<transfer::Pending>,
    pub(crate) invitations: invite::Invitations,
    /// A termination notification that says `terminationReason` instead of `resultInfo`.
    pub(crate) termination_reason: Option<&'static str>,
}

impl ActionState {
    pub(crate) fn new(keep_alive_timeout: Duration) -> Self {
        let now = Instant::now();
        ActionState {
            keep_alive_timeout,
            keep_alive_deadline: now + keep_alive_timeout,
            timers: Vec::new(),
            tones_free_at: now,
            tones_sent: Vec::new(),
            screen_sharing: None,
            transfer: None,
            invitations: invite::Invitations::default(),
            termination_reason: None,
        }
    }

    /// When the driver must next call [`Run::action_timer`].
    pub(crate) fn next_deadline(&self) -> Instant {
        self.timers
            .iter()
            .map(|(at, _)| *at)
            .fold(self.keep_alive_deadline, Instant::min)
    }

    pub(crate) fn schedule(&mut self, after: Duration, timer: Timer) {
        self.timers.push((Instant::now() + after, timer));
    }

    /// Drops the timers `matches` selects (a transfer that ended, an invitee removed).
    pub(crate) fn cancel_timers(&mut self, matches: impl Fn(&Timer) -> bool) {
        self.timers.retain(|(_, t)| !matches(t));
    }

    /// The earliest timer due at `now`, if any.
    fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .timers
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= now)
            .min_by_key(|(_, (at, _))| *at)?;
        Some(self.timers.remove(i).1)
    }
}

/// A `400` saying the call is not in a state that allows `action`.
pub(crate) fn not_established(action: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{action}: the call is not established (Graph allows it on established calls only)"
    ))
}

impl Run {
    /// Applies one action; `Some(result)` ends the call.
    pub(super) fn action(
        &mut self,
        action: CallAction,
        states: &mut [PartyState],
    ) -> Option<(i64, i64, &'static str)> {
        match action {
            CallAction::KeepAlive => {
                self.actions.keep_alive_deadline = Instant::now() + self.actions.keep_alive_timeout;
                None
            }
            CallAction::MuteBot { muted, reply } => {
                let _ = reply.send(self.mute_bot(muted));
                None
            }
            CallAction::MuteParticipant {
                participant_id,
                reply,
            } => {
                let _ = reply.send(self.mute_participant(&participant_id));
                None
            }
            CallAction::RemoveParticipant {
                participant_id,
                reply,
            } => {
                let (result, outcome) = self.remove_participant(&participant_id, states);
                let _ = reply.send(result);
                outcome
            }
            CallAction::SendTones {
                operation,
                tones,
                gap,
                reply,
            } => {
                let _ = reply.send(self.send_tones(operation, &tones, gap));
                None
            }
            CallAction::RecordingStatus { status, reply } => {
                let _ = reply.send(self.recording_status(&status));
                None
            }
            CallAction::ScreenSharingRole { sharer, reply } => {
                let _ = reply.send(self.screen_sharing_role(sharer));
                None
            }
            CallAction::Transfer(transfer) => self.transfer(transfer),
            CallAction::Invite(invite) => {
                self.invite(invite);
                None
            }
            CallAction::Release { key, reply } => match self.release(&key, states) {
                Ok(party) => {
                    let _ = reply.send(Ok(party));
                    Some(REPLACED)
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                    None
                }
            },
        }
    }

    /// The timers due now; `Some(result)` ends the call.
    pub(super) fn action_timer(
        &mut self,
        states: &mut [PartyState],
    ) -> Option<(i64, i64, &'static str)> {
        let now = Instant::now();
        if now >= self.actions.keep_alive_deadline {
            tracing::info!(call = %self.plan.call_id, "no keepAlive in time: the call ends");
            return Some(KEEP_ALIVE_EXPIRED);
        }
        while let Some(timer) = self.actions.take_due(now) {
            let outcome = match timer {
                Timer::TonesSent(operation) => {
                    let done = (*operation)
                        .with(|o| o.completion_reason = "completedSuccessfully".to_owned().into())
                        .finished(
                            OperationStatus::Completed,
                            operations::result(operations::COMPLETED),
                        );
                    let _ = self.notify.send(done.notification(&self.plan.call_id));
                    None
                }
                Timer::Transfer(step) => self.transfer_step(step),
                Timer::Invite(step) => self.invite_step(step, states),
            };
            if outcome.is_some() {
                return outcome;
            }
        }
        None
    }

    /// The roster entry of participant `id`: (roster key, entry); the bot's key is empty.
    pub(super) fn participant(&self, id: &str) -> Option<(String, Participant)> {
        self.roster
            .iter()
            .find(|(_, p)| p.id.value().is_some_and(|pid| pid == id))
            .cloned()
    }

    /// Changes the bot's roster entry with `change` (`false`: nothing changed) and announces it.
    fn update_bot(
        &mut self,
        change: impl FnOnce(&mut Participant) -> bool,
    ) -> Result<(), ApiError> {
        let changed = self
            .roster
            .iter_mut()
            .find(|(k, _)| k.is_empty())
            .and_then(|(_, bot)| change(bot).then(|| bot.clone()));
        if let Some(bot) = changed {
            self.roster_changed(&[bot], &[]);
        }
        Ok(())
    }

    fn mute_bot(&mut self, muted: bool) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established(if muted { "mute" } else { "unmute" }));
        }
        self.with_media(|media| media.set_bot_muted(muted));
        self.update_bot(|bot| {
            let changed = bot.is_muted.value() != Some(&muted);
            bot.is_muted = muted.into();
            changed
        })
    }

    fn mute_participant(&mut self, id: &str) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established("participant mute"));
        }
        match self.participant(id) {
            Some((key, _)) if key.is_empty() => self.mute_bot(true),
            Some((key, _)) => {
                self.set_muted(&key, true);
                Ok(())
            }
            None => Err(unknown_participant(id)),
        }
    }

    fn remove_participant(&mut self, id: &str, states: &mut [PartyState]) -> Done {
        let key = match self.participant(id) {
            Some((key, _)) if key.is_empty() => {
                return (
                    Err(ApiError::bad_request(format!(
                        "participant {id} is the application itself: to leave the call, \
                         DELETE /communications/calls/{}",
                        self.plan.call_id
                    ))),
                    None,
                );
            }
            Some((key, _)) => key,
            None => return (Err(unknown_participant(id)), None),
        };
        tracing::info!(call = %self.plan.call_id, participant = %id, "the application removes a participant");
        self.party_gone(&key, states);
        self.leave(&key);
        let outcome = self.nobody_left(states).then_some(LAST_PARTICIPANT_REMOVED);
        (Ok(()), outcome)
    }

    /// Party `key` is no longer in the call: a called party, an invitee or a softphone person.
    pub(super) fn party_gone(&mut self, key: &str, states: &mut [PartyState]) {
        if let Some(i) = self
            .plan
            .parties
            .iter()
            .position(|(p, _)| party_key(p) == key)
            && states[i] == PartyState::Joined
        {
            states[i] = PartyState::Gone;
        }
        self.actions.invitations.gone(key);
        self.actions
            .cancel_timers(|t| matches!(t, Timer::Invite(step) if step.is_about(key)));
        self.softphone_keys.remove(key);
    }

    fn send_tones(
        &mut self,
        operation: Operation,
        tones: &[Tone],
        gap: Duration,
    ) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established("sendDtmfTones"));
        }
        let clip = appmedia_emulator_media::in_band_dtmf(tones, gap)
            .ok_or_else(|| ApiError::bad_request("tones: at least one tone is required"))?;
        let mut played = true;
        self.with_media(|media| {
            let queued = media.play_over_bot(&clip).map(|_| ());
            played = queued.is_ok();
            queued
        });
        if !played {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "tones: too many tones are queued in this call already",
            ));
        }
        self.actions.tones_sent.extend_from_slice(tones);
        tracing::info!(call = %self.plan.call_id, keys = %tones.iter().map(|t| t.as_char()).collect::<String>(), "the application sends keypad tones");
        let now = Instant::now();
        let ends = self.actions.tones_free_at.max(now) + clip.duration();
        self.actions.tones_free_at = ends;
        // One frame more: the conference picks the clip up at its next tick.
        let after = ends.duration_since(now) + Duration::from_millis(20);
        self.actions
            .schedule(after, Timer::TonesSent(Box::new(operation)));
        Ok(())
    }

    fn recording_status(&mut self, status: &str) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established("updateRecordingStatus"));
        }
        // The seed: "the group call created does not support chat or recording".
        if self.plan.kind == CreateCallKind::GroupCall {
            return Err(ApiError::bad_request(
                "updateRecordingStatus: a group call created by the application does not support recording (only peer-to-peer calls, PSTN calls and meetings do)",
            ));
        }
        let initiator = self.plan.bot_identity.clone();
        let status = status.to_owned();
        self.update_bot(|bot| {
            let info = json!({
                "@odata.type": "#microsoft.graph.recordingInfo",
                "initiator": initiator,
                "recordingStatus": status,
            });
            let changed = bot.extra.get("recordingInfo") != Some(&info);
            bot.extra.insert("recordingInfo".into(), info);
            changed
        })
    }

    fn screen_sharing_role(&mut self, sharer: bool) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established("changeScreenSharingRole"));
        }
        let stream = match (sharer, self.actions.screen_sharing) {
            (true, None) => {
                let id = self.take_source_id();
                self.actions.screen_sharing = Some(id);
                Some(id)
            }
            (false, Some(_)) => {
                self.actions.screen_sharing = None;
                None
            }
            // Already in that role: nothing changes, nobody is told.
            _ => return Ok(()),
        };
        self.update_bot(|bot| {
            let mut streams = bot.media_streams.value().cloned().unwrap_or_default();
            streams.retain(|s| s.label.value().map(String::as_str) != Some(SCREEN_SHARING_LABEL));
            if let Some(id) = stream {
                streams.push(MediaStream {
                    odata_type: "#microsoft.graph.mediaStream".to_owned().into(),
                    media_type: Modality::VideoBasedScreenSharing.into(),
                    label: SCREEN_SHARING_LABEL.to_owned().into(),
                    source_id: appmedia_emulator_media::graph_source_id(id).into(),
                    direction: MediaDirection::SendOnly.into(),
                    server_muted: false.into(),
                    ..Default::default()
                });
            }
            bot.media_streams = streams.into();
            true
        })
    }

    /// Party `key` leaves for another call of the bot (which takes it with `replacesCallId`).
    fn release(&mut self, key: &str, states: &mut [PartyState]) -> Result<ReleasedParty, ApiError> {
        if !self.established {
            return Err(not_established("replacesCallId"));
        }
        if key.is_empty() || !self.roster.iter().any(|(k, _)| k == key) {
            return Err(ApiError::bad_request(format!(
                "replacesCallId: {key} is not in call {}",
                self.plan.call_id
            )));
        }
        let directory = self.shared.directory();
        let (party, behaviour) = if let Some(user) = directory.user(key) {
            (
                Party::User {
                    id: user.id.clone(),
                    display_name: user.display_name.clone(),
                },
                user.behaviour.clone(),
            )
        } else if let Some(phone) = directory.phone(key) {
            (
                Party::Phone {
                    number: phone.number.clone(),
                },
                phone.behaviour.clone(),
            )
        } else {
            return Err(ApiError::bad_request(format!(
                "replacesCallId: {key} cannot leave call {}",
                self.plan.call_id
            )));
        };
        tracing::info!(call = %self.plan.call_id, party = %key, "a party moves to another call of the bot");
        self.party_gone(key, states);
        if let Some(pos) = self.roster.iter().position(|(k, _)| k == key) {
            let (_, gone) = self.roster.remove(pos);
            if let Some(source_id) = shapes::source_id_of(&gone) {
                self.with_media(|media| media.remove_party(source_id));
            }
        }
        Ok(ReleasedParty { party, behaviour })
    }

    /// The `terminated` notification: with the call's `resultInfo`, or with the
    /// `terminationReason` a consultative transfer gives (Graph's example 2).
    pub(super) fn termination_notification(&self, outcome: (i64, i64, &str)) {
        match self.actions.termination_reason {
            Some(reason) => self.send(transfer::with_termination_reason(
                shapes::call_state_notification(
                    &self.plan.call_id,
                    &self.plan.callback_uri,
                    self.plan.kind,
                    appmedia_model::CallState::Terminated,
                    self.plan.meeting.as_ref().map(|(context, _)| context),
                    None,
                ),
                reason,
            )),
            None => self.state_notification(appmedia_model::CallState::Terminated, Some(outcome)),
        }
    }
}

fn unknown_participant(id: &str) -> ApiError {
    ApiError::not_found(format!("participant {id} is not in this call"))
}
