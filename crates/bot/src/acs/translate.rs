//! ACS's events in the SDK's vocabulary, one call at a time: state changes, the roster,
//! operation outcomes, tones. The service may send an event twice (same id), late, or out of
//! order; the translator keeps what it needs to say each thing once and in a sane order.

use std::collections::VecDeque;

use appmedia_acs::events::{Event as AcsEvent, EventType, ResultInformation};
use appmedia_acs::identifier::Identifier;
use appmedia_model::{
    CallState, CommsOperation, Identity, IdentitySet, OperationStatus, Participant,
    ParticipantInfo, ResultInfo, Tone,
};

/// Event ids remembered per call, to drop duplicates.
const SEEN_IDS: usize = 256;

/// What one ACS event means to the call's driver.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Translated {
    /// The call moved to another state.
    State {
        from: Option<CallState>,
        to: CallState,
        result_info: Option<ResultInfo>,
    },
    /// The whole roster, newer than the last one applied.
    Roster(Vec<Participant>),
    /// An operation (play, invite, remove, mute, DTMF, recognize...) finished.
    Operation(Box<CommsOperation>),
    /// A key pressed, with continuous recognition on.
    Tone {
        tone: Tone,
        sequence_id: Option<i64>,
    },
    /// An event with no Graph counterpart (media streaming, recording state...), for the bot.
    Other,
}

/// One call's translation state.
#[derive(Debug, Default)]
pub(crate) struct Translator {
    state: Option<CallState>,
    roster_sequence: Option<u64>,
    seen: VecDeque<String>,
    /// Events dropped as duplicates or arriving after the end.
    pub(crate) dropped: u64,
}

impl Translator {
    /// A call in `state` (a placed call starts `establishing`; an answered one too).
    pub(crate) fn new(state: Option<CallState>) -> Self {
        Translator {
            state,
            ..Translator::default()
        }
    }

    /// What `event` means, given what came before.
    pub(crate) fn apply(&mut self, event: &AcsEvent) -> Vec<Translated> {
        if self.seen.iter().any(|id| *id == event.id) || self.state == Some(CallState::Terminated) {
            self.dropped += 1;
            return Vec::new();
        }
        if self.seen.len() == SEEN_IDS {
            self.seen.pop_front();
        }
        self.seen.push_back(event.id.clone());
        let result = event.result.as_ref().map(result_info);
        match &event.event_type {
            EventType::CallConnected => self.move_to(CallState::Established, None),
            EventType::CallDisconnected | EventType::CreateCallFailed | EventType::AnswerFailed => {
                self.move_to(CallState::Terminated, result)
            }
            EventType::CallTransferAccepted => self.move_to(CallState::TransferAccepted, result),
            EventType::ParticipantsUpdated => match event.participants() {
                Some((participants, sequence))
                    if self.roster_sequence.is_none_or(|last| sequence > last) =>
                {
                    self.roster_sequence = Some(sequence);
                    vec![Translated::Roster(
                        participants
                            .iter()
                            .map(|p| participant(&p.identifier, p.is_muted))
                            .collect(),
                    )]
                }
                // An older roster than the one applied, or one that does not read.
                _ => {
                    self.dropped += 1;
                    Vec::new()
                }
            },
            EventType::ContinuousDtmfRecognitionToneReceived => match event.tone() {
                Some(key) => vec![Translated::Tone {
                    tone: tone_of(key),
                    sequence_id: event.data.get("sequenceId").and_then(|v| v.as_i64()),
                }],
                None => vec![Translated::Other],
            },
            other => match operation_kind(other) {
                Some((odata_type, succeeded)) => {
                    vec![Translated::Operation(Box::new(operation(
                        odata_type, succeeded, event, result,
                    )))]
                }
                None => vec![Translated::Other],
            },
        }
    }

    fn move_to(&mut self, to: CallState, result_info: Option<ResultInfo>) -> Vec<Translated> {
        if self.state.as_ref() == Some(&to) {
            self.dropped += 1;
            return Vec::new();
        }
        let from = self.state.replace(to.clone());
        vec![Translated::State {
            from,
            to,
            result_info,
        }]
    }
}

/// The Graph operation an ACS outcome event reports, and whether it succeeded.
fn operation_kind(event_type: &EventType) -> Option<(&'static str, bool)> {
    Some(match event_type {
        EventType::PlayCompleted => (CommsOperation::PLAY_PROMPT, true),
        EventType::PlayFailed | EventType::PlayCanceled => (CommsOperation::PLAY_PROMPT, false),
        EventType::AddParticipantSucceeded => (CommsOperation::INVITE_PARTICIPANTS, true),
        EventType::AddParticipantFailed => (CommsOperation::INVITE_PARTICIPANTS, false),
        EventType::RemoveParticipantSucceeded => (CommsOperation::ODATA_TYPE, true),
        EventType::RemoveParticipantFailed => (CommsOperation::ODATA_TYPE, false),
        EventType::SendDtmfTonesCompleted => (CommsOperation::SEND_DTMF_TONES, true),
        EventType::SendDtmfTonesFailed => (CommsOperation::SEND_DTMF_TONES, false),
        EventType::RecognizeCompleted => (CommsOperation::ODATA_TYPE, true),
        EventType::RecognizeFailed | EventType::RecognizeCanceled => {
            (CommsOperation::ODATA_TYPE, false)
        }
        EventType::CallTransferFailed => (CommsOperation::ODATA_TYPE, false),
        EventType::CancelAddParticipantSucceeded => (CommsOperation::ODATA_TYPE, true),
        EventType::CancelAddParticipantFailed => (CommsOperation::ODATA_TYPE, false),
        EventType::ContinuousDtmfRecognitionToneFailed => {
            (CommsOperation::SUBSCRIBE_TO_TONE, false)
        }
        _ => return None,
    })
}

fn operation(
    odata_type: &str,
    succeeded: bool,
    event: &AcsEvent,
    result: Option<ResultInfo>,
) -> CommsOperation {
    let mut op = CommsOperation {
        odata_type: odata_type.to_owned().into(),
        id: event.id.clone().into(),
        status: if succeeded {
            OperationStatus::Completed
        } else {
            OperationStatus::Failed
        }
        .into(),
        ..CommsOperation::default()
    };
    if let Some(context) = &event.operation_context {
        op.client_context = context.clone().into();
    }
    if let Some(result) = result {
        op.result_info = result.into();
    }
    // What the service said beyond the common fields (the participant added, the tones
    // recognised...), under its own name.
    op.extra
        .insert("acsEventType".into(), event.event_type.name().into());
    op.extra.insert("acsData".into(), event.data.clone());
    op
}

fn result_info(r: &ResultInformation) -> ResultInfo {
    ResultInfo {
        code: i64::from(r.code).into(),
        subcode: i64::from(r.sub_code).into(),
        message: r.message.clone().into(),
        ..ResultInfo::default()
    }
}

/// An ACS participant as a Graph participant: its raw id as the participant id, its
/// identity as a phone, a user (Teams or ACS) or an application instance.
pub(crate) fn participant(identifier: &Identifier, is_muted: bool) -> Participant {
    Participant {
        id: identifier.raw_id().into(),
        info: ParticipantInfo::new(identity_set(identifier)).into(),
        is_muted: is_muted.into(),
        ..Participant::default()
    }
}

/// The Graph identity of an ACS identifier.
pub(crate) fn identity_set(identifier: &Identifier) -> IdentitySet {
    match identifier {
        Identifier::PhoneNumber(number) => IdentitySet::phone(Identity::new(number.clone())),
        Identifier::MicrosoftTeamsUser { user_id, .. } => {
            IdentitySet::user(Identity::new(user_id.clone()))
        }
        Identifier::MicrosoftTeamsApp { app_id, .. } => IdentitySet {
            application_instance: Identity::new(app_id.clone()).into(),
            ..IdentitySet::default()
        },
        Identifier::CommunicationUser(id) | Identifier::Unknown(id) => {
            IdentitySet::user(Identity::new(id.clone()))
        }
    }
}

/// The Graph tone of a key (`5`, `*`, `#`, `A`…).
pub(crate) fn tone_of(key: char) -> Tone {
    match key {
        '0'..='9' => Tone::from_graph(&format!("tone{key}")),
        '*' => Tone::Star,
        '#' => Tone::Pound,
        other => Tone::from_graph(&other.to_ascii_lowercase().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_acs::events::CloudEvent;
    use serde_json::json;

    fn event(kind: EventType, data: serde_json::Value) -> AcsEvent {
        AcsEvent::from_cloud_event(CloudEvent::new(&kind, "c", "s", "corr", data)).unwrap()
    }

    #[test]
    fn states_once_and_in_order_whatever_the_delivery() {
        let mut t = Translator::new(Some(CallState::Establishing));
        let connected = event(EventType::CallConnected, json!({}));
        assert_eq!(
            t.apply(&connected),
            vec![Translated::State {
                from: Some(CallState::Establishing),
                to: CallState::Established,
                result_info: None
            }]
        );
        // The same event again, and a second CallConnected with another id: nothing.
        assert!(t.apply(&connected).is_empty());
        assert!(
            t.apply(&event(EventType::CallConnected, json!({})))
                .is_empty()
        );
        let gone = event(
            EventType::CallDisconnected,
            json!({"resultInformation": {"code": 200, "subCode": 7000, "message": "bye"}}),
        );
        let out = t.apply(&gone);
        let Translated::State {
            to, result_info, ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!(*to, CallState::Terminated);
        assert_eq!(result_info.as_ref().unwrap().subcode.value(), Some(&7000));
        // A CallConnected delivered late, after the end: dropped.
        assert!(
            t.apply(&event(EventType::CallConnected, json!({})))
                .is_empty()
        );
        assert_eq!(t.dropped, 3);
    }

    #[test]
    fn an_older_roster_never_replaces_a_newer_one() {
        let mut t = Translator::new(None);
        let roster = |seq: u64, numbers: &[&str]| {
            let participants: Vec<_> = numbers
                .iter()
                .map(|n| json!({"identifier": Identifier::phone(*n), "isMuted": false}))
                .collect();
            event(
                EventType::ParticipantsUpdated,
                json!({"sequenceNumber": seq, "participants": participants}),
            )
        };
        let two = t.apply(&roster(2, &["+1", "+2"]));
        assert!(matches!(&two[..], [Translated::Roster(p)] if p.len() == 2));
        assert!(t.apply(&roster(1, &["+1"])).is_empty(), "stale");
        let three = t.apply(&roster(3, &["+2"]));
        let [Translated::Roster(p)] = &three[..] else {
            panic!("{three:?}")
        };
        assert_eq!(p[0].id.value().map(String::as_str), Some("4:+2"));
        let phone = p[0]
            .info
            .value()
            .and_then(|i| i.identity.value())
            .and_then(|i| i.phone.value())
            .and_then(|p| p.id.value());
        assert_eq!(phone.map(String::as_str), Some("+2"));
    }

    #[test]
    fn operations_and_tones() {
        let mut t = Translator::new(Some(CallState::Established));
        let played = t.apply(&event(
            EventType::PlayCompleted,
            json!({"operationContext": "greeting", "resultInformation": {"code": 200, "subCode": 0, "message": "ok"}}),
        ));
        let [Translated::Operation(op)] = &played[..] else {
            panic!("{played:?}")
        };
        assert_eq!(
            op.odata_type.value().map(String::as_str),
            Some(CommsOperation::PLAY_PROMPT)
        );
        assert_eq!(op.status.value(), Some(&OperationStatus::Completed));
        assert_eq!(
            op.client_context.value().map(String::as_str),
            Some("greeting")
        );
        let failed = t.apply(&event(EventType::AddParticipantFailed, json!({})));
        assert!(matches!(&failed[..], [Translated::Operation(op)]
            if op.status.value() == Some(&OperationStatus::Failed)));
        let key = t.apply(&event(
            EventType::ContinuousDtmfRecognitionToneReceived,
            json!({"tone": "pound", "sequenceId": 4}),
        ));
        assert_eq!(
            key,
            vec![Translated::Tone {
                tone: Tone::Pound,
                sequence_id: Some(4)
            }]
        );
        assert_eq!(
            t.apply(&event(EventType::MediaStreamingStarted, json!({}))),
            vec![Translated::Other]
        );
    }

    #[test]
    fn tones_of_every_key() {
        assert_eq!(tone_of('5'), Tone::Tone5);
        assert_eq!(tone_of('*'), Tone::Star);
        assert_eq!(tone_of('B'), Tone::B);
    }
}
