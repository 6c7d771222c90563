//! `call: transfer`, as the call's driver performs it.
//!
//! Blind: the call goes `transferring`; the target (a directory user or phone) rings with its
//! directory behaviour; when it answers the bot gets `transferAccepted`, the target joins the
//! call's conference with the transferee, every other party and the bot leave it, and the
//! bot's call ends `terminated` with `resultInfo` 0/7015 "GracefulTransferCompleted". A target
//! that declines, or does not answer within the call's ringing timeout, fails the transfer: an
//! `updated` notification with state `established` and `resultInfo` 500/7000, and the call goes
//! on. Consultative (`replacesCallId`): the target is already connected to the bot in that other
//! call, which hands it over and ends; no ringing, and the bot's call ends with
//! `terminationReason: AppTransferred` (the documentation's example 2). The transferee and the
//! target then talk on without the bot ([`crate::conference::transferred`]).

use std::time::Duration;

use appmedia_model::{CallState, CommsNotifications, ResourceData};
use appmedia_signalling::validate::CreateCallKind;
use axum::http::StatusCode;

use super::actions::{ReleasedParty, Reply, Timer, not_established};
use super::{JoinMedia, Run};
use crate::admission::Party;
use crate::directory::Answer;
use crate::error::ApiError;
use crate::shapes;
use appmedia_emulator_media::PartyKind;

/// The `resultInfo` of a call transferred away (the documentation's "transfer completed").
pub(crate) const TRANSFERRED: (i64, i64, &str) = (0, 7015, "GracefulTransferCompleted");
/// … of a transfer whose target declined (`updated`, the call stays `established`).
pub(crate) const TARGET_DECLINED: (i64, i64, &str) = (
    500,
    7000,
    "The transfer failed: the transfer target declined.",
);
/// … of a transfer whose target did not answer in time.
pub(crate) const TARGET_NOT_ANSWERED: (i64, i64, &str) = (
    500,
    7000,
    "The transfer failed: the transfer target did not answer.",
);
/// The `terminationReason` of a call transferred with `replacesCallId`.
pub(crate) const APP_TRANSFERRED: &str = "AppTransferred";

/// `POST …/transfer`, resolved by the handler.
pub(crate) struct TransferAction {
    /// The target, with its directory behaviour.
    pub target: ReleasedParty,
    /// `transferee.participantId`, when given.
    pub transferee: Option<String>,
    /// The target was handed over by the call `replacesCallId` named: it is connected already.
    pub consultative: bool,
    pub reply: Reply<()>,
}

/// A transfer waiting for its target.
#[derive(Debug)]
pub(crate) struct Pending {
    target: ReleasedParty,
    /// The roster key of the party that goes to the target.
    transferee: String,
    consultative: bool,
}

/// What the target does when its ring delay is over.
#[derive(Debug)]
pub(crate) enum Step {
    Answers,
    Declines,
    RingTimeout,
}

impl Run {
    /// Accepts or refuses a transfer; `Some(result)` ends the call (a consultative transfer
    /// completes at once).
    pub(super) fn transfer(&mut self, action: TransferAction) -> Option<(i64, i64, &'static str)> {
        let TransferAction {
            target,
            transferee,
            consultative,
            reply,
        } = action;
        let transferee = match self.check_transfer(&target, transferee.as_deref()) {
            Ok(key) => key,
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        };
        let _ = reply.send(Ok(()));
        tracing::info!(call = %self.plan.call_id, %transferee, target = %super::party_key(&target.party), consultative, "transferring");
        self.set_state(CallState::Transferring, None);
        let pending = Pending {
            target,
            transferee,
            consultative,
        };
        if consultative {
            return Some(self.complete_transfer(pending));
        }
        let behaviour = &pending.target.behaviour;
        let (after, step) = match behaviour.answer {
            Answer::Answer => (behaviour.ring_delay(), Step::Answers),
            Answer::Decline => (behaviour.ring_delay(), Step::Declines),
            Answer::NoAnswer => (self.plan.ringing_timeout, Step::RingTimeout),
        };
        self.actions.schedule(after, Timer::Transfer(step));
        self.actions.transfer = Some(pending);
        None
    }

    /// The roster key of the transferee, or why the transfer is refused.
    fn check_transfer(
        &self,
        target: &ReleasedParty,
        transferee: Option<&str>,
    ) -> Result<String, ApiError> {
        if !self.established {
            return Err(not_established("transfer"));
        }
        if self.plan.kind == CreateCallKind::MeetingJoin {
            return Err(ApiError::bad_request(
                "transfer: Graph transfers peer-to-peer and group calls, not meetings",
            ));
        }
        if self.actions.transfer.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "transfer: a transfer of this call is already in progress",
            ));
        }
        // The bot's identity in the call (its source when it called, the target it was called
        // at when it answered) must be an application instance to reach the PSTN.
        if matches!(target.party, Party::Phone { .. })
            && !self.plan.bot_identity.application_instance.is_value()
        {
            return Err(ApiError::bad_request(
                "transferTarget.identity.phone: Graph transfers to a PSTN number only calls of \
                 an application instance",
            ));
        }
        let target_key = super::party_key(&target.party);
        if self.roster.iter().any(|(k, _)| *k == target_key) {
            return Err(ApiError::bad_request(format!(
                "transferTarget: {target_key} is already in this call"
            )));
        }
        let peers: Vec<&String> = self
            .roster
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty())
            .collect();
        match transferee {
            Some(id) => match self.participant(id) {
                Some((key, _)) if key.is_empty() => Err(ApiError::bad_request(format!(
                    "transferee.participantId: {id} is the application itself"
                ))),
                Some((key, _)) => Ok(key),
                None => Err(ApiError::bad_request(format!(
                    "transferee.participantId: no participant {id} in this call"
                ))),
            },
            None => match peers.as_slice() {
                [only] => Ok((*only).clone()),
                [] => Err(ApiError::bad_request(
                    "transfer: nobody but the application is in the call",
                )),
                _ => Err(ApiError::bad_request(
                    "transferee: required to transfer from a group call (the participant that \
                     goes to the target)",
                )),
            },
        }
    }

    /// The target answered, declined or let it ring.
    pub(super) fn transfer_step(&mut self, step: Step) -> Option<(i64, i64, &'static str)> {
        let pending = self.actions.transfer.take()?;
        match step {
            Step::Answers => Some(self.complete_transfer(pending)),
            Step::Declines => {
                self.fail_transfer(TARGET_DECLINED);
                None
            }
            Step::RingTimeout => {
                self.fail_transfer(TARGET_NOT_ANSWERED);
                None
            }
        }
    }

    fn fail_transfer(&mut self, result: (i64, i64, &'static str)) {
        tracing::info!(call = %self.plan.call_id, reason = result.2, "transfer failed");
        self.set_state(CallState::Established, Some(result));
    }

    /// The state in the call's resource, and a notification saying so.
    fn set_state(&mut self, state: CallState, result: Option<(i64, i64, &str)>) {
        self.shared.update_call(&self.plan.call_id, |record| {
            record.resource.state = state.clone().into();
        });
        self.state_notification(state, result);
    }

    /// The target takes the bot's place beside the transferee; the call's media goes on for
    /// them, the bot's call ends with the returned result.
    fn complete_transfer(&mut self, pending: Pending) -> (i64, i64, &'static str) {
        self.set_state(CallState::TransferAccepted, None);
        // Everyone else leaves the conversation with the bot.
        let others: Vec<u32> = self
            .roster
            .iter()
            .filter(|(k, _)| !k.is_empty() && *k != pending.transferee)
            .filter_map(|(_, p)| shapes::source_id_of(p))
            .collect();
        for source_id in others {
            self.with_media(|media| media.remove_party(source_id));
        }
        let (name, kind) = match &pending.target.party {
            Party::User { display_name, .. } => (display_name.clone(), PartyKind::User),
            Party::Phone { number } => (number.clone(), PartyKind::Phone),
        };
        let participant = self.party_participant(&pending.target.party, false);
        let sound = pending.target.behaviour.media.clone();
        self.media_join(&participant, name, kind, JoinMedia::Script(&sound));
        let (mut media, mut service) = (None, None);
        self.shared.update_call(&self.plan.call_id, |record| {
            media = record.media.take();
            service = record.service.take();
        });
        if let Some(media) = media.as_mut() {
            media.release_bot();
        }
        if let Some(service) = service.as_ref() {
            service.release_bot();
        }
        let lasts = self.transferred_lasts(&pending);
        self.shared
            .transferred
            .keep(&self.plan.call_id, media, service, lasts);
        if pending.consultative {
            self.actions.termination_reason = Some(APP_TRANSFERRED);
        }
        TRANSFERRED
    }

    /// How long the transferee and the target talk: until the first of them hangs up by
    /// script (counted from now), at most `transferred_call_limit`.
    fn transferred_lasts(&self, pending: &Pending) -> Duration {
        let directory = self.shared.directory();
        let transferee = directory
            .user(&pending.transferee)
            .map(|u| &u.behaviour)
            .or_else(|| directory.phone(&pending.transferee).map(|p| &p.behaviour));
        [Some(&pending.target.behaviour), transferee]
            .into_iter()
            .flatten()
            .filter_map(|b| b.hang_up_after_ms.map(Duration::from_millis))
            .fold(self.shared.config.transferred_call_limit, Duration::min)
    }
}

/// The `terminated` notification of a call transferred with `replacesCallId`: the state
/// notification with `terminationReason` and no `resultInfo`.
pub(super) fn with_termination_reason(
    mut body: CommsNotifications,
    reason: &str,
) -> CommsNotifications {
    if let Some(list) = body.value.value_mut() {
        for n in list.iter_mut() {
            if let Some(ResourceData::Call(call)) = n.resource_data.value_mut() {
                call.termination_reason = reason.to_owned().into();
            }
        }
    }
    body
}
