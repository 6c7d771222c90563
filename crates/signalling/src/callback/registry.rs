//! The pure half of the callback receiver: routing notifications by call id to per-call
//! [`CallAgent`]s (state machine, roster, content sharing) and turning what changed into
//! [`CallEvent`]s. No I/O and no clock: time comes in as `now`.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use appmedia_model::{
    Call, CallState, ChangeType, CommsNotification, CommsNotifications, CommsOperation, Nullable,
    Participant, ResourceData, ResultInfo, ToneInfo,
};

use crate::roster::{DeltaOutcome, Roster, RosterChange, RosterPolicy};
use crate::sharing::{ContentSharing, SharingChange};
use crate::state::{CallStateMachine, StateOutcome};

/// What changed, for the bot.
#[derive(Clone, Debug, PartialEq)]
pub enum CallEvent {
    /// A call offered to the bot (`state: incoming`); answer it within 15 seconds.
    Incoming { call_id: String, call: Box<Call> },
    /// The call moved to another state. `call` is the resource as now known.
    StateChanged {
        call_id: String,
        from: Option<CallState>,
        to: CallState,
        result_info: Option<ResultInfo>,
        call: Box<Call>,
    },
    /// Properties of the call changed without a state change (media state, a DTMF tone
    /// after `subscribeToTone`, ...). See [`CallEvent::tone`].
    Updated { call_id: String, call: Box<Call> },
    /// An operation started by an action (playPrompt, recordResponse, participants/invite,
    /// mute, sendDtmfTones, ...) progressed or ended: `status`, `resultInfo`,
    /// `completionReason`, and for a recording its `recordingLocation`. The operation's own
    /// id is `operation.id` (also the last segment of the notification's `resourceUrl`).
    Operation {
        call_id: String,
        operation: Box<CommsOperation>,
    },
    /// Participants joined, changed or left.
    Roster {
        call_id: String,
        change: RosterChange,
    },
    /// Delta rosters are missing: `GET …/participants` and hand the result to
    /// [`CallRegistry::apply_full_roster`].
    RosterGap {
        call_id: String,
        expected: i64,
        held: Vec<i64>,
    },
    /// A content-sharing session started, changed or ended.
    ContentSharing {
        call_id: String,
        change: SharingChange,
    },
    /// A notification this version does not interpret, kept verbatim (`call_id` when it
    /// names one).
    Unhandled {
        call_id: Option<String>,
        notification: Box<CommsNotification>,
    },
}

impl CallEvent {
    /// The call the event is about.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            CallEvent::Incoming { call_id, .. }
            | CallEvent::StateChanged { call_id, .. }
            | CallEvent::Updated { call_id, .. }
            | CallEvent::Roster { call_id, .. }
            | CallEvent::RosterGap { call_id, .. }
            | CallEvent::ContentSharing { call_id, .. }
            | CallEvent::Operation { call_id, .. } => Some(call_id),
            CallEvent::Unhandled { call_id, .. } => call_id.as_deref(),
        }
    }

    /// The DTMF tone this event brings (a `subscribeToTone` notification), if any.
    ///
    /// Only the event of the notification that carried the tone has it: the agent forgets
    /// a tone once delivered, and drops a repeated `sequenceId`, so a tone is seen once.
    pub fn tone(&self) -> Option<&ToneInfo> {
        match self {
            CallEvent::Incoming { call, .. }
            | CallEvent::StateChanged { call, .. }
            | CallEvent::Updated { call, .. } => call.tone_info.value(),
            _ => None,
        }
    }
}

/// How many recent tone sequence ids and finished operations an agent remembers to drop
/// repeats (Graph may deliver a notification more than once).
const RECENT: usize = 64;

/// The call id a notification is about: from `resourceUrl` (`/communications/calls/{id}/…`),
/// else `resource` (`/app/calls/{id}/…`), else the call resource's own `id`.
pub fn notification_call_id(notification: &CommsNotification) -> Option<String> {
    fn from_path(path: &str) -> Option<String> {
        let mut segments = path.split(['/', '?']);
        while let Some(segment) = segments.next() {
            if segment.eq_ignore_ascii_case("calls") {
                return segments
                    .next()
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned);
            }
        }
        None
    }
    notification
        .resource_url
        .value()
        .and_then(|p| from_path(p))
        .or_else(|| notification.resource.value().and_then(|p| from_path(p)))
        .or_else(|| match notification.resource_data.value() {
            Some(ResourceData::Call(call)) => call.id.value().cloned(),
            _ => None,
        })
}

/// The last path segment after the call id (`participants`, `contentsharingsessions`), lowercased.
fn collection_of(notification: &CommsNotification) -> Option<String> {
    let path = notification
        .resource_url
        .value()
        .or(notification.resource.value())?;
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    segments.find(|s| s.eq_ignore_ascii_case("calls"))?;
    segments.next()?;
    segments.next().map(str::to_ascii_lowercase)
}

/// Everything the bot knows about one call.
#[derive(Clone, Debug)]
pub struct CallAgent {
    call_id: String,
    state: CallStateMachine,
    roster: Roster,
    sharing: ContentSharing,
    terminated_at: Option<Instant>,
    /// `sequenceId`s of the tones already delivered (the last [`RECENT`]).
    recent_tones: VecDeque<i64>,
    /// `(id, status)` of the operation notifications already delivered (the last [`RECENT`]).
    recent_operations: VecDeque<(String, String)>,
}

impl CallAgent {
    pub fn new(call_id: impl Into<String>, roster_policy: RosterPolicy) -> Self {
        Self {
            call_id: call_id.into(),
            state: CallStateMachine::new(),
            roster: Roster::new(roster_policy),
            sharing: ContentSharing::new(),
            terminated_at: None,
            recent_tones: VecDeque::new(),
            recent_operations: VecDeque::new(),
        }
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn state(&self) -> &CallStateMachine {
        &self.state
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    pub fn sharing(&self) -> &ContentSharing {
        &self.sharing
    }

    /// Applies one notification about this call.
    pub fn apply(&mut self, notification: &CommsNotification, now: Instant) -> Vec<CallEvent> {
        let change_type = notification.change_type.value();
        let unhandled = || CallEvent::Unhandled {
            call_id: Some(self.call_id.clone()),
            notification: Box::new(notification.clone()),
        };
        let mut events = Vec::new();
        match notification.resource_data.value() {
            Some(ResourceData::Call(call)) => {
                let call = self.without_repeated_tone(call);
                let outcome = if change_type == Some(&ChangeType::Deleted) {
                    self.state.terminate(Some(&call))
                } else {
                    self.state.apply(&call)
                };
                events.extend(self.state_events(outcome, now));
                self.state.forget_tone();
            }
            // An empty list parses as an empty roster; under contentsharingsessions it is
            // an empty session list, and must not wipe the roster.
            Some(ResourceData::Participants(list))
                if list.is_empty()
                    && collection_of(notification).as_deref() != Some("participants") =>
            {
                tracing::debug!(call_id = %self.call_id, "empty resource list; nothing to apply");
            }
            Some(ResourceData::Participants(list)) => {
                let change = self.roster.apply_full(list.clone());
                if !change.is_empty() {
                    events.push(CallEvent::Roster {
                        call_id: self.call_id.clone(),
                        change,
                    });
                }
            }
            Some(ResourceData::DeltaParticipants(deltas)) => {
                for delta in deltas {
                    let outcomes = self.roster.apply_delta(delta, now);
                    events.extend(self.roster_events(outcomes));
                }
            }
            Some(ResourceData::ContentSharingSessions(sessions)) => {
                for change in self.sharing.apply(change_type, sessions) {
                    events.push(CallEvent::ContentSharing {
                        call_id: self.call_id.clone(),
                        change,
                    });
                }
            }
            Some(ResourceData::Operation(operation)) => {
                if self.is_repeated_operation(operation) {
                    tracing::debug!(call_id = %self.call_id, operation_id = ?operation.id, "dropped a repeated operation notification");
                } else {
                    events.push(CallEvent::Operation {
                        call_id: self.call_id.clone(),
                        operation: operation.clone(),
                    });
                }
            }
            Some(ResourceData::Other(value)) => {
                tracing::info!(call_id = %self.call_id, resource_data = %value, "notification resource this version does not model; delivered as Unhandled");
                events.push(unhandled());
            }
            None => {
                tracing::info!(call_id = %self.call_id, "notification without resourceData; delivered as Unhandled");
                events.push(unhandled());
            }
        }
        events
    }

    /// The call update as applied: a tone whose `sequenceId` was already delivered is taken
    /// out, so a repeated notification neither re-announces it nor counts as a change.
    fn without_repeated_tone<'a>(&mut self, call: &'a Call) -> Cow<'a, Call> {
        let Some(sequence) = call.tone_info.value().and_then(|t| t.sequence_id.value()) else {
            return Cow::Borrowed(call);
        };
        if self.recent_tones.contains(sequence) {
            tracing::debug!(call_id = %self.call_id, sequence, "dropped a repeated tone");
            let mut call = call.clone();
            call.tone_info = Nullable::Absent;
            return Cow::Owned(call);
        }
        remember(&mut self.recent_tones, *sequence);
        Cow::Borrowed(call)
    }

    /// True when the same operation was already delivered with the same status.
    fn is_repeated_operation(&mut self, operation: &CommsOperation) -> bool {
        let Some(id) = operation.id.value() else {
            // Without an id (Graph's own invite example sends `"id": null`) repeats
            // cannot be told from distinct operations: deliver them all.
            return false;
        };
        let status = operation
            .effective_status()
            .map_or_else(String::new, |s| s.as_str().to_owned());
        let key = (id.clone(), status);
        if self.recent_operations.contains(&key) {
            return true;
        }
        remember(&mut self.recent_operations, key);
        false
    }

    /// Replaces the roster with a full one (after a [`CallEvent::RosterGap`]).
    pub fn apply_full_roster(&mut self, participants: Vec<Participant>) -> Vec<CallEvent> {
        let change = self.roster.apply_full(participants);
        if change.is_empty() {
            Vec::new()
        } else {
            vec![CallEvent::Roster {
                call_id: self.call_id.clone(),
                change,
            }]
        }
    }

    /// Reports a roster gap whose held deltas waited too long.
    pub fn poll(&mut self, now: Instant) -> Vec<CallEvent> {
        let outcomes = self.roster.poll(now).into_iter().collect();
        self.roster_events(outcomes)
    }

    fn state_events(&mut self, outcome: StateOutcome, now: Instant) -> Vec<CallEvent> {
        match outcome {
            StateOutcome::Changed { from, to } => {
                if to == CallState::Terminated {
                    self.terminated_at = Some(now);
                }
                let call = Box::new(self.state.call().clone());
                if to == CallState::Incoming {
                    vec![CallEvent::Incoming {
                        call_id: self.call_id.clone(),
                        call,
                    }]
                } else {
                    vec![CallEvent::StateChanged {
                        call_id: self.call_id.clone(),
                        from,
                        to,
                        result_info: self.state.result_info().cloned(),
                        call,
                    }]
                }
            }
            StateOutcome::Unchanged { changed: true } | StateOutcome::Unrankable { .. } => {
                vec![CallEvent::Updated {
                    call_id: self.call_id.clone(),
                    call: Box::new(self.state.call().clone()),
                }]
            }
            StateOutcome::Unchanged { changed: false } | StateOutcome::Stale { .. } => Vec::new(),
        }
    }

    fn roster_events(&self, outcomes: Vec<DeltaOutcome>) -> Vec<CallEvent> {
        let mut events = Vec::new();
        for outcome in outcomes {
            match outcome {
                DeltaOutcome::Applied { change, .. } if !change.is_empty() => {
                    events.push(CallEvent::Roster {
                        call_id: self.call_id.clone(),
                        change,
                    })
                }
                DeltaOutcome::GapNeedsFullRoster { expected, held } => {
                    events.push(CallEvent::RosterGap {
                        call_id: self.call_id.clone(),
                        expected,
                        held,
                    })
                }
                DeltaOutcome::Stale { sequence, .. } | DeltaOutcome::Duplicate { sequence } => {
                    tracing::debug!(call_id = %self.call_id, sequence, "dropped a stale or duplicate delta roster");
                }
                DeltaOutcome::Evicted { sequence } => {
                    tracing::warn!(call_id = %self.call_id, sequence, "held delta roster evicted (hard cap)");
                }
                DeltaOutcome::Applied { .. } | DeltaOutcome::Held { .. } => {}
            }
        }
        events
    }
}

fn remember<T>(recent: &mut VecDeque<T>, item: T) {
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(item);
}

/// Routes notifications to per-call [`CallAgent`]s. Terminated calls are forgotten
/// `terminated_retention` after they ended.
#[derive(Debug)]
pub struct CallRegistry {
    calls: Mutex<HashMap<String, CallAgent>>,
    roster_policy: RosterPolicy,
    terminated_retention: Duration,
}

impl Default for CallRegistry {
    fn default() -> Self {
        Self::new(RosterPolicy::default(), Duration::from_secs(300))
    }
}

impl CallRegistry {
    pub fn new(roster_policy: RosterPolicy, terminated_retention: Duration) -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            roster_policy,
            terminated_retention,
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallAgent>> {
        // A panic while holding the lock cannot leave a call half-updated in a way later
        // notifications cannot repair, so a poisoned lock is taken over.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a whole notification batch, in order.
    pub fn apply(&self, notifications: &CommsNotifications, now: Instant) -> Vec<CallEvent> {
        let mut calls = self.calls();
        let retention = self.terminated_retention;
        calls.retain(|_, agent| {
            agent
                .terminated_at
                .is_none_or(|t| now.saturating_duration_since(t) < retention)
        });
        let mut events = Vec::new();
        for notification in notifications.notifications() {
            let Some(call_id) = notification_call_id(notification) else {
                tracing::info!(resource_url = ?notification.resource_url, "notification names no call; delivered as Unhandled");
                events.push(CallEvent::Unhandled {
                    call_id: None,
                    notification: Box::new(notification.clone()),
                });
                continue;
            };
            let agent = calls
                .entry(call_id.clone())
                .or_insert_with(|| CallAgent::new(call_id, self.roster_policy.clone()));
            events.extend(agent.apply(notification, now));
        }
        events
    }

    /// Replaces a call's roster with a full one (the answer to `GET …/participants`).
    pub fn apply_full_roster(
        &self,
        call_id: &str,
        participants: Vec<Participant>,
    ) -> Vec<CallEvent> {
        let mut calls = self.calls();
        let agent = calls
            .entry(call_id.to_owned())
            .or_insert_with(|| CallAgent::new(call_id, self.roster_policy.clone()));
        agent.apply_full_roster(participants)
    }

    /// Reports roster gaps that became due; call it every second or so.
    pub fn poll(&self, now: Instant) -> Vec<CallEvent> {
        self.calls()
            .values_mut()
            .flat_map(|agent| agent.poll(now))
            .collect()
    }

    /// Looks at one call.
    pub fn with_call<R>(&self, call_id: &str, f: impl FnOnce(&CallAgent) -> R) -> Option<R> {
        self.calls().get(call_id).map(f)
    }

    /// The state of one call.
    pub fn state_of(&self, call_id: &str) -> Option<CallState> {
        self.with_call(call_id, |agent| agent.state().state().cloned())
            .flatten()
    }

    /// The known call ids.
    pub fn call_ids(&self) -> Vec<String> {
        self.calls().keys().cloned().collect()
    }

    /// Forgets a call.
    pub fn remove(&self, call_id: &str) -> Option<CallAgent> {
        self.calls().remove(call_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(json: serde_json::Value) -> CommsNotification {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn call_ids_come_from_the_resource_paths_or_the_call() {
        let n = notification(serde_json::json!({
            "resourceUrl": "/communications/calls/abc/participants"}));
        assert_eq!(notification_call_id(&n).as_deref(), Some("abc"));
        assert_eq!(collection_of(&n).as_deref(), Some("participants"));
        let n =
            notification(serde_json::json!({"resource": "/app/calls/def/contentsharingsessions"}));
        assert_eq!(notification_call_id(&n).as_deref(), Some("def"));
        assert_eq!(collection_of(&n).as_deref(), Some("contentsharingsessions"));
        let n = notification(serde_json::json!({"resourceData":
            {"@odata.type": "#microsoft.graph.call", "id": "ghi"}}));
        assert_eq!(notification_call_id(&n).as_deref(), Some("ghi"));
        assert_eq!(collection_of(&n), None);
        let n = notification(serde_json::json!({"resourceUrl": "/communications/calls/"}));
        assert_eq!(notification_call_id(&n), None);
    }
}
