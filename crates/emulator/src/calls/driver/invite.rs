//! `participant: invite`, as the call's driver performs it.
//!
//! Each invited user or phone rings with its directory behaviour (answer, decline, or let it
//! ring until the call's ringing timeout). One that answers joins the roster (a roster
//! notification) and the call's conference — the bot hears it in its mix — and from then on
//! follows its script (`hang_up_after_ms`, `press`) counted from its answer. When every
//! invitee of a request has answered or failed, the `inviteParticipantsOperation` ends:
//! `completed` (200/0) when all joined, else `failed` with the first failure's `resultInfo`
//! (603 declined, 408 not answered). A peer-to-peer call that gains a participant is a group
//! call from then on: it ends when its last party leaves.
//!
//! With `replacesCallId` the invitee comes from another call of the bot, where it was already
//! talking to the bot: that call hands it over and ends; it joins at once, without ringing.

use appmedia_emulator_media::PartyKind;
use appmedia_media::dtmf::Tone;
use appmedia_signalling::validate::CreateCallKind;
use axum::http::StatusCode;

use super::actions::{ReleasedParty, Reply, Timer, not_established};
use super::{JoinMedia, PartyState, Run, party_key};
use crate::admission::Party;
use crate::directory::Answer;
use crate::error::ApiError;
use crate::operations::{self, Operation};
use crate::shapes::{self, result};
use appmedia_model::OperationStatus;

/// The `resultInfo` of an invitation the invitee declined.
pub(crate) const INVITE_DECLINED: (i64, i64, &str) = (603, 0, "The invitation was declined.");
/// … of one nobody answered before the ringing timeout.
pub(crate) const INVITE_NOT_ANSWERED: (i64, i64, &str) =
    (408, 0, "The invitation was not answered.");

/// `POST …/participants/invite`, resolved by the handler.
pub(crate) struct InviteAction {
    /// The operation, `running`, as the answer shows it.
    pub operation: Operation,
    /// Who is invited, with their directory behaviour.
    pub targets: Vec<ReleasedParty>,
    /// The (single) target was handed over by the call `replacesCallId` named.
    pub replaced: bool,
    pub reply: Reply<()>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InviteeState {
    Ringing,
    Joined,
    Failed((i64, i64, &'static str)),
    Gone,
}

#[derive(Debug)]
struct Invitee {
    key: String,
    target: ReleasedParty,
    state: InviteeState,
    /// The invitation (operation id) it belongs to.
    operation: String,
}

/// The invitations of a call: who was invited, and the operations still running.
#[derive(Debug, Default)]
pub(crate) struct Invitations {
    invitees: Vec<Invitee>,
    running: Vec<Operation>,
}

impl Invitations {
    /// Whether an invitee rings or is in the call (the call is not over while one is).
    pub(crate) fn anyone_in(&self) -> bool {
        self.invitees
            .iter()
            .any(|i| matches!(i.state, InviteeState::Ringing | InviteeState::Joined))
    }

    /// Invitee `key` left the call.
    pub(crate) fn gone(&mut self, key: &str) {
        for invitee in self.invitees.iter_mut().filter(|i| i.key == key) {
            if invitee.state == InviteeState::Joined {
                invitee.state = InviteeState::Gone;
            }
        }
    }

    fn ringing(&self, key: &str) -> bool {
        self.invitees
            .iter()
            .any(|i| i.key == key && i.state == InviteeState::Ringing)
    }
}

/// What an invitee does when its time comes.
#[derive(Debug)]
pub(crate) enum Step {
    Answers(String),
    Declines(String),
    Timeout(String),
    HangsUp(String),
    Presses(String),
}

impl Step {
    /// Whether this step is about party `key`.
    pub(crate) fn is_about(&self, key: &str) -> bool {
        match self {
            Step::Answers(k)
            | Step::Declines(k)
            | Step::Timeout(k)
            | Step::HangsUp(k)
            | Step::Presses(k) => k == key,
        }
    }
}

impl Run {
    /// Accepts or refuses an invitation; invitees start ringing.
    pub(super) fn invite(&mut self, action: InviteAction) {
        let InviteAction {
            operation,
            targets,
            replaced,
            reply,
        } = action;
        if let Err(e) = self.check_invite(&targets) {
            let _ = reply.send(Err(e));
            return;
        }
        let _ = reply.send(Ok(()));
        let op_id = operation.id.clone();
        self.actions.invitations.running.push(operation);
        for target in targets {
            let key = party_key(&target.party);
            tracing::info!(call = %self.plan.call_id, invitee = %key, replaced, "inviting");
            let behaviour = target.behaviour.clone();
            self.actions.invitations.invitees.push(Invitee {
                key: key.clone(),
                target,
                state: InviteeState::Ringing,
                operation: op_id.clone(),
            });
            if replaced {
                self.invitee_joins(&key);
                continue;
            }
            let (after, step) = match behaviour.answer {
                Answer::Answer => (behaviour.ring_delay(), Step::Answers(key)),
                Answer::Decline => (behaviour.ring_delay(), Step::Declines(key)),
                Answer::NoAnswer => (self.plan.ringing_timeout, Step::Timeout(key)),
            };
            self.actions.schedule(after, Timer::Invite(step));
        }
        self.invitation_done(&op_id);
    }

    fn check_invite(&self, targets: &[ReleasedParty]) -> Result<(), ApiError> {
        if !self.established {
            return Err(not_established("invite"));
        }
        let peers = self.roster.iter().filter(|(k, _)| !k.is_empty()).count();
        if self.plan.kind == CreateCallKind::PeerToPeer && peers <= 1 && targets.len() > 1 {
            return Err(ApiError::bad_request(
                "participants: a peer-to-peer call invites one participant at a time \
                 (several at once is for group calls)",
            ));
        }
        for (i, target) in targets.iter().enumerate() {
            let key = party_key(&target.party);
            if self.roster.iter().any(|(k, _)| *k == key) {
                return Err(ApiError::bad_request(format!(
                    "participants[{i}]: {key} is already in this call"
                )));
            }
            if self.actions.invitations.ringing(&key) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("participants[{i}]: {key} is being invited already"),
                ));
            }
        }
        Ok(())
    }

    /// An invitee's time came; `Some(result)` ends the call.
    pub(super) fn invite_step(
        &mut self,
        step: Step,
        states: &mut [PartyState],
    ) -> Option<(i64, i64, &'static str)> {
        match step {
            Step::Answers(key) if self.actions.invitations.ringing(&key) => {
                self.invitee_joins(&key);
                if let Some(op) = self.invitation_of(&key) {
                    self.invitation_done(&op);
                }
                None
            }
            Step::Declines(key) | Step::Timeout(key) if self.actions.invitations.ringing(&key) => {
                let declined = self
                    .actions
                    .invitations
                    .invitees
                    .iter()
                    .any(|i| i.key == key && i.target.behaviour.answer == Answer::Decline);
                let failure = if declined {
                    INVITE_DECLINED
                } else {
                    INVITE_NOT_ANSWERED
                };
                for invitee in self.actions.invitations.invitees.iter_mut() {
                    if invitee.key == key && invitee.state == InviteeState::Ringing {
                        invitee.state = InviteeState::Failed(failure);
                    }
                }
                if let Some(op) = self.invitation_of(&key) {
                    self.invitation_done(&op);
                }
                None
            }
            Step::HangsUp(key) if self.roster.iter().any(|(k, _)| *k == key) => {
                if self.softphone_keys.contains(&key) {
                    return None;
                }
                self.party_gone(&key, states);
                self.leave(&key);
                self.nobody_left(states).then_some(result::ENDED_BY_REMOTE)
            }
            Step::Presses(key) => {
                self.invitee_presses(&key);
                None
            }
            _ => None,
        }
    }

    /// The operation id of invitee `key`'s latest invitation.
    fn invitation_of(&self, key: &str) -> Option<String> {
        self.actions
            .invitations
            .invitees
            .iter()
            .rev()
            .find(|i| i.key == key)
            .map(|i| i.operation.clone())
    }

    /// Invitee `key` answers: it joins the roster and the media, and its script starts.
    fn invitee_joins(&mut self, key: &str) {
        let Some(invitee) = self
            .actions
            .invitations
            .invitees
            .iter_mut()
            .rev()
            .find(|i| i.key == key && i.state == InviteeState::Ringing)
        else {
            return;
        };
        invitee.state = InviteeState::Joined;
        let target = invitee.target.clone();
        let participant = self.party_participant(&target.party, false);
        let (name, kind) = match &target.party {
            Party::User { display_name, .. } => (
                display_name.clone(),
                if self.plan.meeting.is_some() {
                    PartyKind::MeetingParticipant
                } else {
                    PartyKind::User
                },
            ),
            Party::Phone { number } => (number.clone(), PartyKind::Phone),
        };
        self.media_join(
            &participant,
            name,
            kind,
            JoinMedia::Script(&target.behaviour.media),
        );
        // A third party makes a two-party call a group call: its roster is announced from now.
        self.group = true;
        self.join(key.to_owned(), participant, None);
        let behaviour = &target.behaviour;
        if let Some(after) = behaviour.hang_up_after_ms {
            self.actions.schedule(
                std::time::Duration::from_millis(after),
                Timer::Invite(Step::HangsUp(key.to_owned())),
            );
        }
        if let Some(press) = &behaviour.press {
            self.actions.schedule(
                std::time::Duration::from_millis(press.after_ms),
                Timer::Invite(Step::Presses(key.to_owned())),
            );
        }
    }

    /// Invitee `key` presses its script's keys: DTMF to the bot on its media.
    fn invitee_presses(&self, key: &str) {
        let Some(invitee) = self
            .actions
            .invitations
            .invitees
            .iter()
            .find(|i| i.key == key)
        else {
            return;
        };
        let tones: Vec<Tone> = invitee
            .target
            .behaviour
            .press
            .as_ref()
            .and_then(|p| p.tones())
            .unwrap_or_default();
        let source_id = self
            .roster
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, p)| shapes::source_id_of(p));
        if let Some(source_id) = source_id {
            for tone in tones {
                self.with_media(|media| media.press(source_id, tone));
            }
        }
    }

    /// When no invitee of operation `op_id` rings any more, the operation's notification.
    fn invitation_done(&mut self, op_id: &str) {
        let invitees: Vec<InviteeState> = self
            .actions
            .invitations
            .invitees
            .iter()
            .filter(|i| i.operation == op_id)
            .map(|i| i.state)
            .collect();
        if invitees.contains(&InviteeState::Ringing) {
            return;
        }
        let Some(pos) = self
            .actions
            .invitations
            .running
            .iter()
            .position(|o| o.id == op_id)
        else {
            return;
        };
        let operation = self.actions.invitations.running.remove(pos);
        let failure = invitees.iter().find_map(|s| match s {
            InviteeState::Failed(result) => Some(*result),
            _ => None,
        });
        let done = match failure {
            Some(result) => operation.finished(OperationStatus::Failed, operations::result(result)),
            None => operation.finished(
                OperationStatus::Completed,
                operations::result(operations::COMPLETED),
            ),
        };
        tracing::info!(call = %self.plan.call_id, operation = %op_id, failed = failure.is_some(), "invitation ended");
        let _ = self.notify.send(done.notification(&self.plan.call_id));
    }
}
