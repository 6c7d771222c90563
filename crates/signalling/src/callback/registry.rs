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
    Incoming {
        /// The call's id.
        call_id: String,
        /// The offered call as Graph sent it.
        call: Box<Call>,
    },
    /// The call moved to another state. `call` is the resource as now known.
    StateChanged {
        /// The call's id.
        call_id: String,
        /// The state before (`None` when the call was unknown).
        from: Option<CallState>,
        /// The new state.
        to: CallState,
        /// Graph's `resultInfo`, when it gave one.
        result_info: Option<ResultInfo>,
        /// The call resource as now known.
        call: Box<Call>,
    },
    /// Properties of the call changed without a state change (media state, a DTMF tone
    /// after `subscribeToTone`, ...). See [`CallEvent::tone`].
    Updated {
        /// The call's id.
        call_id: String,
        /// The call resource as now known.
        call: Box<Call>,
    },
    /// An operation started by an action (playPrompt, recordResponse, participants/invite,
    /// mute, sendDtmfTones, ...) progressed or ended: `status`, `resultInfo`,
    /// `completionReason`, and for a recording its `recordingLocation`. The operation's own
    /// id is `operation.id` (also the last segment of the notification's `resourceUrl`).
    Operation {
        /// The call's id.
        call_id: String,
        /// The operation as the notification carries it.
        operation: Box<CommsOperation>,
    },
    /// Participants joined, changed or left.
    Roster {
        /// The call's id.
        call_id: String,
        /// Who joined, changed or left.
        change: RosterChange,
    },
    /// Delta rosters are missing: `GET …/participants` and hand the result to
    /// [`CallRegistry::apply_full_roster`].
    RosterGap {
        /// The call's id.
        call_id: String,
        /// The sequence number the roster waits for.
        expected: i64,
        /// The sequence numbers held, waiting for it.
        held: Vec<i64>,
    },
    /// A content-sharing session started, changed or ended.
    ContentSharing {
        /// The call's id.
        call_id: String,
        /// What the notification did to the sessions.
        change: SharingChange,
    },
    /// A notification this version does not interpret, kept verbatim (`call_id` when it
    /// names one).
    Unhandled {
        /// The call's id, when the resource URL names one.
        call_id: Option<String>,
        /// The notification as received.
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
    /// The tenant whose token first spoke of the call; notifications for it from another
    /// tenant's token are refused.
    tenant: Option<String>,
    /// The last notification about the call.
    last_seen: Option<Instant>,
    /// `sequenceId`s of the tones already delivered (the last [`RECENT`]).
    recent_tones: VecDeque<i64>,
    /// `(id, status)` of the operation notifications already delivered (the last [`RECENT`]).
    recent_operations: VecDeque<(String, String)>,
}

impl CallAgent {
    /// A fresh agent for `call_id`, its roster applying deltas by `roster_policy`.
    pub fn new(call_id: impl Into<String>, roster_policy: RosterPolicy) -> Self {
        Self {
            call_id: call_id.into(),
            state: CallStateMachine::new(),
            roster: Roster::new(roster_policy),
            sharing: ContentSharing::new(),
            terminated_at: None,
            tenant: None,
            last_seen: None,
            recent_tones: VecDeque::new(),
            recent_operations: VecDeque::new(),
        }
    }

    /// The call's id.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The call's state and last known resource.
    pub fn state(&self) -> &CallStateMachine {
        &self.state
    }

    /// The call's participants.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The call's content-sharing sessions.
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
                events = self.apply_call(call, change_type == Some(&ChangeType::Deleted), now);
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

    /// Applies a call resource — from a notification (`deleted`: its change type said the
    /// call is gone) or read from the service — to the call's state.
    pub fn apply_call(&mut self, call: &Call, deleted: bool, now: Instant) -> Vec<CallEvent> {
        let call = self.without_repeated_tone(call);
        let outcome = if deleted {
            self.state.terminate(Some(&call))
        } else {
            self.state.apply(&call)
        };
        let events = self.state_events(outcome, now);
        self.state.forget_tone();
        events
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
                DeltaOutcome::Stale { sequence, .. }
                | DeltaOutcome::Duplicate { sequence }
                | DeltaOutcome::Implausible { sequence, .. } => {
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
/// `terminated_retention` after they ended, calls nothing was heard of for `idle_ttl` too
/// (a lost `terminated` must not keep an agent forever), and at most `max_calls` are held:
/// a batch that would create more is refused whole ([`Refusal::Full`]).
#[derive(Debug)]
pub struct CallRegistry {
    calls: Mutex<HashMap<String, CallAgent>>,
    roster_policy: RosterPolicy,
    terminated_retention: Duration,
    idle_ttl: Duration,
    max_calls: usize,
}

/// Default [`CallRegistry`] cap: far above what one bot process carries.
pub const DEFAULT_MAX_CALLS: usize = 10_000;
/// Default idle time after which a call's agent is forgotten. Graph sends nothing for an
/// established call whose roster does not change, so this is long; a call heard of again
/// later gets a fresh agent.
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(4 * 3600);

/// Why [`CallRegistry::apply_atomically`] applied nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The batch would make the registry hold more than its cap.
    Full {
        /// The registry's cap.
        max_calls: usize,
    },
    /// A call of the batch was first heard of from another tenant's token.
    OtherTenant {
        /// The call first heard of from another tenant.
        call_id: String,
    },
    /// The commit (the event sink) did not take the batch's events; the calls are as before.
    NotTaken,
}

impl Default for CallRegistry {
    fn default() -> Self {
        Self::new(RosterPolicy::default(), Duration::from_secs(300))
    }
}

impl CallRegistry {
    /// An empty registry: rosters by `roster_policy`, terminated calls kept `terminated_retention` (late notifications still find them).
    pub fn new(roster_policy: RosterPolicy, terminated_retention: Duration) -> Self {
        Self {
            calls: Mutex::new(HashMap::new()),
            roster_policy,
            terminated_retention,
            idle_ttl: DEFAULT_IDLE_TTL,
            max_calls: DEFAULT_MAX_CALLS,
        }
    }

    /// The cap on calls held and the idle time after which a call is forgotten.
    pub fn with_limits(mut self, max_calls: usize, idle_ttl: Duration) -> Self {
        self.max_calls = max_calls.max(1);
        self.idle_ttl = idle_ttl;
        self
    }

    /// Calls held now.
    pub fn len(&self) -> usize {
        self.calls().len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.calls().is_empty()
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallAgent>> {
        // A panic while holding the lock cannot leave a call half-updated in a way later
        // notifications cannot repair, so a poisoned lock is taken over.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a whole notification batch, in order, and returns the events. A batch over
    /// the cap is not applied (no events).
    pub fn apply(&self, notifications: &CommsNotifications, now: Instant) -> Vec<CallEvent> {
        let mut out = Vec::new();
        let _ = self.apply_atomically(notifications, None, now, |events| {
            out = events;
            true
        });
        out
    }

    /// Applies a batch as one step: refused whole when it would pass the cap or names a
    /// call first heard of from another tenant (`tenant` is the token's `tid`); otherwise
    /// applied, and its events handed to `commit` while the registry is locked. When
    /// `commit` does not take them (a full event sink), every call of the batch is put back
    /// as it was, so that the same batch sent again (Graph retries a 503) applies anew
    /// instead of being taken for a duplicate. Returns the number of events committed.
    pub fn apply_atomically(
        &self,
        notifications: &CommsNotifications,
        tenant: Option<&str>,
        now: Instant,
        commit: impl FnOnce(Vec<CallEvent>) -> bool,
    ) -> Result<usize, Refusal> {
        let mut calls = self.calls();
        let (retention, idle) = (self.terminated_retention, self.idle_ttl);
        calls.retain(|_, agent| {
            agent
                .terminated_at
                .is_none_or(|t| now.saturating_duration_since(t) < retention)
                && agent
                    .last_seen
                    .is_none_or(|t| now.saturating_duration_since(t) < idle)
        });
        let mut touched: Vec<String> = Vec::new();
        for id in notifications
            .notifications()
            .iter()
            .filter_map(notification_call_id)
        {
            if !touched.contains(&id) {
                touched.push(id);
            }
        }
        let mut fresh = 0;
        for id in &touched {
            match calls.get(id) {
                None => fresh += 1,
                Some(agent) => {
                    if let (Some(theirs), Some(ours)) = (tenant, agent.tenant.as_deref())
                        && !theirs.eq_ignore_ascii_case(ours)
                    {
                        return Err(Refusal::OtherTenant {
                            call_id: id.clone(),
                        });
                    }
                }
            }
        }
        if calls.len() + fresh > self.max_calls {
            return Err(Refusal::Full {
                max_calls: self.max_calls,
            });
        }
        let before: Vec<(String, Option<CallAgent>)> = touched
            .iter()
            .map(|id| (id.clone(), calls.get(id).cloned()))
            .collect();
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
            // A call first known from a read of the service (no token) belongs to the tenant
            // of the first notification that speaks of it.
            if agent.tenant.is_none() {
                agent.tenant = tenant.map(str::to_owned);
            }
            agent.last_seen = Some(now);
            events.extend(agent.apply(notification, now));
        }
        let count = events.len();
        if commit(events) {
            return Ok(count);
        }
        for (id, agent) in before {
            match agent {
                Some(agent) => {
                    calls.insert(id, agent);
                }
                None => {
                    calls.remove(&id);
                }
            }
        }
        Err(Refusal::NotTaken)
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

    /// Applies a call resource read from the service (`GET /communications/calls/{id}`) as
    /// its notification would have been: a state change whose notification was lost comes out
    /// as the [`CallEvent::StateChanged`] it missed. A call no notification spoke of yet
    /// (all of them lost) is taken in, as [`CallRegistry::apply_full_roster`] does; the caller
    /// reads only calls it holds.
    pub fn apply_call(&self, call_id: &str, call: &Call, now: Instant) -> Vec<CallEvent> {
        let mut calls = self.calls();
        let agent = calls
            .entry(call_id.to_owned())
            .or_insert_with(|| CallAgent::new(call_id, self.roster_policy.clone()));
        agent.apply_call(call, false, now)
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

    fn batch(call_id: &str) -> CommsNotifications {
        serde_json::from_value(serde_json::json!({"value": [{
            "changeType": "updated",
            "resourceUrl": format!("/communications/calls/{call_id}"),
            "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established"}
        }]}))
        .unwrap()
    }

    #[test]
    fn a_call_nothing_is_heard_of_for_the_idle_time_is_forgotten() {
        let registry = CallRegistry::default().with_limits(10, Duration::from_secs(60));
        let t0 = Instant::now();
        registry.apply(&batch("a"), t0);
        registry.apply(&batch("b"), t0 + Duration::from_secs(50));
        assert_eq!(registry.len(), 2);
        // `a` was last heard of 61 s ago, `b` 11 s ago: the next batch forgets `a` only.
        registry.apply(&batch("b"), t0 + Duration::from_secs(61));
        assert_eq!(registry.call_ids(), ["b"]);
    }

    #[test]
    fn a_refused_commit_puts_every_call_back_as_it_was() {
        let registry = CallRegistry::default();
        let t0 = Instant::now();
        let refused = registry.apply_atomically(&batch("a"), None, t0, |events| {
            assert_eq!(events.len(), 1);
            false
        });
        assert_eq!(refused, Err(Refusal::NotTaken));
        assert!(registry.is_empty(), "a new call is not kept");
        // The same batch again is news, not a duplicate.
        assert_eq!(registry.apply(&batch("a"), t0).len(), 1);
        let refused = registry.apply_atomically(&batch("a"), None, t0, |_| false);
        assert_eq!(refused, Err(Refusal::NotTaken));
        assert!(
            registry.state_of("a").is_some(),
            "a known call is kept as it was"
        );
    }
}
