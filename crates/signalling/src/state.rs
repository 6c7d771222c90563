//! The call state machine: what the bot knows about one call, built from notifications that
//! may arrive out of order or twice.
//!
//! The service does not order notifications (the seed warns that "establishing" and
//! "established" may arrive in either order), so states are ranked
//! `incoming < establishing < ringing < established/hold/transferring/… < terminating < terminated`
//! and a notification is applied only when it moves the call forward. Moves between the
//! mid-call states (established ↔ hold, transferring, redirecting) are applied as they come:
//! they carry no ordering information. `terminated` is final and keeps the last `resultInfo`.

use appmedia_model::{Call, CallState, Nullable, ResultInfo};
use serde_json::Value;

/// Where a state sits in a call's life; a higher rank never gives way to a lower one.
///
/// `None` for a value this version does not know (`unknownFutureValue`, or a newer one):
/// such a state cannot be placed, so it never replaces a known one.
pub fn rank(state: &CallState) -> Option<u8> {
    Some(match state {
        CallState::Incoming => 0,
        CallState::Establishing => 1,
        CallState::Ringing => 2,
        CallState::Established
        | CallState::Hold
        | CallState::Transferring
        | CallState::TransferAccepted
        | CallState::Redirecting => 3,
        CallState::Terminating => 4,
        CallState::Terminated => 5,
        CallState::Unknown(_) => return None,
    })
}

/// Rank of the mid-call states, among which moves go both ways.
const MID_CALL: u8 = 3;

/// What one call-resource update did.
#[derive(Clone, Debug, PartialEq)]
pub enum StateOutcome {
    /// The call moved to a new state.
    Changed {
        /// The state before (`None` for the first one).
        from: Option<CallState>,
        /// The new state.
        to: CallState,
    },
    /// Same state (or no state in the update); other properties merged. `changed` tells
    /// whether the merged resource differs from before.
    Unchanged {
        /// Whether the merged resource differs from before.
        changed: bool,
    },
    /// An older state arrived after a newer one: dropped, nothing merged (except a
    /// `resultInfo` when none is known yet).
    Stale {
        /// The state the call is in.
        current: CallState,
        /// The older state that arrived late.
        received: CallState,
    },
    /// A state this version cannot rank: kept in the resource's history only as a log line.
    Unrankable {
        /// The state received.
        received: CallState,
    },
}

/// One call's state and last known resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallStateMachine {
    state: Option<CallState>,
    result_info: Option<ResultInfo>,
    call: Call,
}

impl CallStateMachine {
    /// A call nothing is known about yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current state (`None` before the first notification with a state).
    pub fn state(&self) -> Option<&CallState> {
        self.state.as_ref()
    }

    /// True once the call reached `terminated`.
    pub fn is_terminated(&self) -> bool {
        self.state == Some(CallState::Terminated)
    }

    /// The last `resultInfo` seen (kept through `terminated`).
    pub fn result_info(&self) -> Option<&ResultInfo> {
        self.result_info.as_ref()
    }

    /// The call resource, merged from every applied update (properties the updates did not
    /// carry keep their earlier value).
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// Applies a call resource from a notification (or a GET).
    pub fn apply(&mut self, update: &Call) -> StateOutcome {
        let received = update.state.value();
        let outcome = match (received, self.state.as_ref()) {
            (None, _) => StateOutcome::Unchanged { changed: false },
            (Some(new), None) => match rank(new) {
                Some(_) => StateOutcome::Changed {
                    from: None,
                    to: new.clone(),
                },
                None => StateOutcome::Unrankable {
                    received: new.clone(),
                },
            },
            (Some(new), Some(current)) => {
                // Only rankable states are ever stored, so `current` always has a rank.
                let current_rank = rank(current).unwrap_or(0);
                match rank(new) {
                    None => StateOutcome::Unrankable {
                        received: new.clone(),
                    },
                    Some(_) if new == current => StateOutcome::Unchanged { changed: false },
                    Some(n) if n > current_rank || (n == current_rank && n == MID_CALL) => {
                        StateOutcome::Changed {
                            from: Some(current.clone()),
                            to: new.clone(),
                        }
                    }
                    Some(_) => StateOutcome::Stale {
                        current: current.clone(),
                        received: new.clone(),
                    },
                }
            }
        };
        match &outcome {
            StateOutcome::Stale { current, received } => {
                tracing::debug!(%current, %received, "dropping a stale call state");
                // A late "terminating" may be the only one that says why the call ended:
                // its resultInfo is kept when none is known.
                if self.result_info.is_none()
                    && let Some(info) = update.result_info.value()
                {
                    self.result_info = Some(info.clone());
                }
                outcome
            }
            StateOutcome::Unrankable { received } => {
                // Still merge the other properties: they are current, only the state is unknown.
                tracing::info!(%received, "call state this version does not know; state kept");
                self.merge(update, false);
                outcome
            }
            StateOutcome::Changed { to, .. } => {
                self.state = Some(to.clone());
                self.merge(update, true);
                outcome
            }
            StateOutcome::Unchanged { .. } => {
                let changed = self.merge(update, false);
                StateOutcome::Unchanged { changed }
            }
        }
    }

    /// Drops the last `toneInfo` from the known resource: a tone is a moment, not a
    /// property, so the next update must not carry it again.
    pub fn forget_tone(&mut self) {
        self.call.tone_info = Nullable::Absent;
    }

    /// Marks the call terminated (a `deleted` notification for the call resource).
    pub fn terminate(&mut self, update: Option<&Call>) -> StateOutcome {
        let mut call = update.cloned().unwrap_or_default();
        call.state = Nullable::Value(CallState::Terminated);
        self.apply(&call)
    }

    /// Overlays the properties `update` carries; returns whether anything changed.
    fn merge(&mut self, update: &Call, take_state: bool) -> bool {
        if let Some(info) = update.result_info.value() {
            self.result_info = Some(info.clone());
        }
        let (Ok(Value::Object(mut base)), Ok(Value::Object(overlay))) = (
            serde_json::to_value(&self.call),
            serde_json::to_value(update),
        ) else {
            return false;
        };
        let before = base.clone();
        for (key, value) in overlay {
            if key == "state" && !take_state {
                continue;
            }
            base.insert(key, value);
        }
        if take_state && let Some(state) = &self.state {
            base.insert("state".to_owned(), Value::String(state.as_str().to_owned()));
        }
        if base == before {
            return false;
        }
        match serde_json::from_value::<Call>(Value::Object(base)) {
            Ok(merged) => {
                self.call = merged;
                true
            }
            Err(e) => {
                // Cannot happen for values that came out of `Call` itself; keep the old
                // resource rather than lose it.
                tracing::warn!(error = %e, "could not merge a call update");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(state: &str) -> Call {
        serde_json::from_value(serde_json::json!({
            "@odata.type": "#microsoft.graph.call",
            "state": state,
            "id": "c1",
        }))
        .unwrap()
    }

    #[test]
    fn forward_moves_apply_and_backward_ones_are_stale() {
        let mut machine = CallStateMachine::new();
        assert_eq!(
            machine.apply(&call("established")),
            StateOutcome::Changed {
                from: None,
                to: CallState::Established
            }
        );
        assert_eq!(
            machine.apply(&call("establishing")),
            StateOutcome::Stale {
                current: CallState::Established,
                received: CallState::Establishing
            }
        );
        assert_eq!(
            machine.apply(&call("established")),
            StateOutcome::Unchanged { changed: false }
        );
        assert_eq!(machine.state(), Some(&CallState::Established));
    }

    #[test]
    fn hold_and_back_are_lateral_moves() {
        let mut machine = CallStateMachine::new();
        machine.apply(&call("established"));
        assert!(matches!(
            machine.apply(&call("hold")),
            StateOutcome::Changed { .. }
        ));
        assert!(matches!(
            machine.apply(&call("established")),
            StateOutcome::Changed { .. }
        ));
        assert_eq!(machine.state(), Some(&CallState::Established));
    }

    #[test]
    fn terminated_is_final_and_keeps_result_info() {
        let mut machine = CallStateMachine::new();
        machine.apply(&call("established"));
        let mut terminating = call("terminating");
        terminating.result_info = Nullable::Value(ResultInfo {
            code: Nullable::Value(410),
            subcode: Nullable::Value(301005),
            message: Nullable::Value("client media error".into()),
            ..ResultInfo::default()
        });
        machine.apply(&terminating);
        machine.apply(&call("terminated"));
        assert!(machine.is_terminated());
        assert!(matches!(
            machine.apply(&call("established")),
            StateOutcome::Stale { .. }
        ));
        assert!(matches!(
            machine.apply(&call("hold")),
            StateOutcome::Stale { .. }
        ));
        let info = machine.result_info().unwrap();
        assert_eq!(info.code, Nullable::Value(410));
        assert_eq!(info.subcode, Nullable::Value(301005));
        assert_eq!(
            machine
                .call()
                .result_info
                .value()
                .and_then(|r| r.code.value()),
            Some(&410)
        );
    }

    #[test]
    fn unknown_states_never_replace_known_ones() {
        let mut machine = CallStateMachine::new();
        assert!(matches!(
            machine.apply(&call("unknownFutureValue")),
            StateOutcome::Unrankable { .. }
        ));
        assert_eq!(machine.state(), None);
        machine.apply(&call("established"));
        assert!(matches!(
            machine.apply(&call("somethingNew")),
            StateOutcome::Unrankable { .. }
        ));
        assert_eq!(machine.state(), Some(&CallState::Established));
    }

    #[test]
    fn updates_without_a_state_merge_properties() {
        let mut machine = CallStateMachine::new();
        machine.apply(&call("established"));
        let update: Call = serde_json::from_value(serde_json::json!({
            "@odata.type": "#microsoft.graph.call",
            "mediaState": {"audio": "active"},
            "futureProperty": {"kept": true},
        }))
        .unwrap();
        assert_eq!(
            machine.apply(&update),
            StateOutcome::Unchanged { changed: true }
        );
        assert_eq!(
            machine.apply(&update),
            StateOutcome::Unchanged { changed: false }
        );
        assert_eq!(machine.state(), Some(&CallState::Established));
        assert!(machine.call().media_state.is_value());
        assert_eq!(
            machine.call().extra["futureProperty"],
            serde_json::json!({"kept": true})
        );
        assert_eq!(machine.call().id.value().map(String::as_str), Some("c1"));
    }

    #[test]
    fn a_deleted_call_is_terminated() {
        let mut machine = CallStateMachine::new();
        machine.apply(&call("established"));
        assert!(matches!(
            machine.terminate(None),
            StateOutcome::Changed {
                to: CallState::Terminated,
                ..
            }
        ));
        assert!(machine.is_terminated());
    }
}
