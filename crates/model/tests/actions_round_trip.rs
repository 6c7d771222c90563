//! Every request, response and notification example of the v1.0 call-control action pages
//! (tests/fixtures/actions/, see its README) parses into its typed struct and serializes
//! back to the same JSON value.
//!
//! File names say what a fixture is: `{action}[-{variant}].{request|response|notification}.json`.
//! The action picks the request type; every response is a `CommsOperation` and every
//! notification a `CommsNotifications`.

use std::fs;
use std::path::PathBuf;

use appmedia_model::{
    AnswerRequest, ChangeScreenSharingRoleRequest, ClientContextRequest, CommsNotifications,
    CommsOperation, InviteParticipantsRequest, OperationStatus, PlayPromptRequest,
    RecordResponseRequest, RedirectRequest, RejectRequest, ResourceData, SendDtmfTonesRequest,
    TransferRequest, UpdateRecordingStatusRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/actions")
}

fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = fixture(name);
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, original, "{name} changed in the round trip");
    typed
}

fn all_fixtures() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// The action a fixture belongs to: the name up to the first `.`, without a variant
/// suffix the action itself does not have.
fn action_of(name: &str) -> &str {
    let stem = name.split('.').next().unwrap_or(name);
    ACTIONS
        .iter()
        .copied()
        .filter(|action| stem == *action || stem.starts_with(&format!("{action}-")))
        .max_by_key(|action| action.len())
        .unwrap_or_else(|| panic!("{name}: no action of that name"))
}

const ACTIONS: &[&str] = &[
    "answer",
    "reject",
    "redirect",
    "transfer",
    "invite-participants",
    "mute",
    "unmute",
    "mute-participant",
    "play-prompt",
    "record-response",
    "subscribe-to-tone",
    "send-dtmf-tones",
    "cancel-media-processing",
    "update-recording-status",
    "change-screen-sharing-role",
    "keep-alive",
    "delete-participant",
];

fn round_trip_request(name: &str) {
    match action_of(name) {
        "answer" => drop(round_trip::<AnswerRequest>(name)),
        "reject" => drop(round_trip::<RejectRequest>(name)),
        "redirect" => drop(round_trip::<RedirectRequest>(name)),
        "transfer" => drop(round_trip::<TransferRequest>(name)),
        "invite-participants" => drop(round_trip::<InviteParticipantsRequest>(name)),
        "mute"
        | "unmute"
        | "mute-participant"
        | "subscribe-to-tone"
        | "cancel-media-processing" => drop(round_trip::<ClientContextRequest>(name)),
        "play-prompt" => drop(round_trip::<PlayPromptRequest>(name)),
        "record-response" => drop(round_trip::<RecordResponseRequest>(name)),
        "send-dtmf-tones" => drop(round_trip::<SendDtmfTonesRequest>(name)),
        "update-recording-status" => drop(round_trip::<UpdateRecordingStatusRequest>(name)),
        "change-screen-sharing-role" => drop(round_trip::<ChangeScreenSharingRoleRequest>(name)),
        other => panic!("{name}: {other} has no request body"),
    }
}

#[test]
fn every_fixture_round_trips_as_its_type() {
    let names = all_fixtures();
    assert!(!names.is_empty());
    for name in &names {
        if name.ends_with(".request.json") {
            round_trip_request(name);
        } else if name.ends_with(".response.json") {
            let operation: CommsOperation = round_trip(name);
            assert!(
                operation.kind().is_some_and(|k| k.ends_with("Operation")),
                "{name}: {:?}",
                operation.odata_type
            );
        } else if name.ends_with(".notification.json") {
            let batch: CommsNotifications = round_trip(name);
            assert!(!batch.notifications().is_empty(), "{name}");
        } else {
            panic!("{name}: neither request, response nor notification");
        }
    }
}

/// Every action has at least one documented request in the fixtures (or says why not).
#[test]
fn every_action_with_a_body_has_a_request_fixture() {
    let names = all_fixtures();
    for action in ACTIONS {
        if matches!(*action, "keep-alive" | "delete-participant") {
            continue; // no request body
        }
        assert!(
            names
                .iter()
                .any(|n| n.ends_with(".request.json") && action_of(n) == *action),
            "no request fixture for {action}"
        );
    }
}

/// A misspelt rename would still round-trip (through `extra`); this catches it for the
/// request bodies: every property the docs' examples use is named, except the few the
/// examples carry beyond the parameter table (listed here).
#[test]
fn request_properties_are_named() {
    let allowed_extra = [
        ("redirect-simulring.request.json", "routingPolicies"),
        ("transfer-pstn.request.json", "clientContext"),
        ("transfer-consultative-pstn.request.json", "clientContext"),
    ];
    for name in all_fixtures()
        .iter()
        .filter(|n| n.ends_with(".request.json"))
    {
        let typed = fixture(name);
        let extra = match action_of(name) {
            "answer" => {
                serde_json::from_value::<AnswerRequest>(typed)
                    .unwrap()
                    .extra
            }
            "reject" => {
                serde_json::from_value::<RejectRequest>(typed)
                    .unwrap()
                    .extra
            }
            "redirect" => {
                serde_json::from_value::<RedirectRequest>(typed)
                    .unwrap()
                    .extra
            }
            "transfer" => {
                serde_json::from_value::<TransferRequest>(typed)
                    .unwrap()
                    .extra
            }
            "invite-participants" => {
                serde_json::from_value::<InviteParticipantsRequest>(typed)
                    .unwrap()
                    .extra
            }
            "play-prompt" => {
                serde_json::from_value::<PlayPromptRequest>(typed)
                    .unwrap()
                    .extra
            }
            "record-response" => {
                serde_json::from_value::<RecordResponseRequest>(typed)
                    .unwrap()
                    .extra
            }
            "send-dtmf-tones" => {
                serde_json::from_value::<SendDtmfTonesRequest>(typed)
                    .unwrap()
                    .extra
            }
            "update-recording-status" => {
                serde_json::from_value::<UpdateRecordingStatusRequest>(typed)
                    .unwrap()
                    .extra
            }
            "change-screen-sharing-role" => {
                serde_json::from_value::<ChangeScreenSharingRoleRequest>(typed)
                    .unwrap()
                    .extra
            }
            _ => {
                serde_json::from_value::<ClientContextRequest>(typed)
                    .unwrap()
                    .extra
            }
        };
        for key in extra.keys() {
            assert!(
                allowed_extra.contains(&(name.as_str(), key.as_str())),
                "{name}: {key} is not named by the model"
            );
        }
    }
}

#[test]
fn operation_notifications_parse_as_operations() {
    for name in all_fixtures()
        .iter()
        .filter(|n| n.ends_with(".notification.json"))
    {
        let batch: CommsNotifications = serde_json::from_value(fixture(name)).unwrap();
        for note in batch.notifications() {
            let is_operation_url = note
                .resource_url
                .value()
                .is_some_and(|url| url.contains("/operations/"));
            if is_operation_url {
                assert!(
                    matches!(note.resource_data.value(), Some(ResourceData::Operation(_))),
                    "{name}: an operation notification did not parse as an operation"
                );
            }
        }
    }
}

#[test]
fn record_notification_carries_the_recording() {
    let batch: CommsNotifications =
        serde_json::from_value(fixture("record-response.notification.json")).unwrap();
    let Some(ResourceData::Operation(op)) = batch.notifications()[0].resource_data.value() else {
        panic!("not an operation");
    };
    assert_eq!(op.kind(), Some("recordOperation"));
    assert_eq!(op.status.value(), Some(&OperationStatus::Completed));
    assert_eq!(
        op.recording_location.value().map(String::as_str),
        Some("https://file.location/17e3b46c-f61d-4f4d-9635-c626ef18e6ad")
    );
    assert_eq!(
        op.recording_access_token.value().map(String::as_str),
        Some("<access-token>")
    );
    assert_eq!(
        op.result_info.value().and_then(|r| r.subcode.value()),
        Some(&8515)
    );
    assert!(op.extra.contains_key("@odata.etag"));
}

#[test]
fn invite_response_reads_its_capitalised_status() {
    let op: CommsOperation =
        serde_json::from_value(fixture("invite-participants.response.json")).unwrap();
    assert_eq!(op.kind(), Some("inviteParticipantsOperation"));
    assert_eq!(op.effective_status(), Some(OperationStatus::Running));
    let participants = op.participants.value().unwrap();
    assert_eq!(participants.len(), 1);
    assert_eq!(
        participants[0].replaces_call_id.value().map(String::as_str),
        Some("a7ebfb2d-871e-419c-87af-27290b22e8db")
    );
    assert!(op.result_info.is_null());
}
