//! The library side of `appmedia graph check` on every seed document and on bad input.

use std::path::PathBuf;

use appmedia_signalling::check::{CheckError, ResourceKind, check_json};
use serde_json::Value;

fn seed(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seed")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_seed_document_is_recognised_and_round_trips() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        seen += 1;
        let bytes = seed(&name);
        let report = check_json(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected_kind = if name.ends_with("-request.json") {
            ResourceKind::CreateCallRequest
        } else if name.ends_with("-response.json") {
            ResourceKind::Call
        } else {
            ResourceKind::CommsNotifications
        };
        assert_eq!(report.kind, expected_kind, "{name}");
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(report.round_tripped.as_ref(), Some(&original), "{name}");
        assert_eq!(
            report.permissions.is_some(),
            expected_kind == ResourceKind::CreateCallRequest
        );
        let blobless = name == "example04-request.json" || name == "example06-request.json";
        assert_eq!(
            report.is_valid(),
            !blobless,
            "{name}: {:?}",
            report.problems
        );
    }
    assert_eq!(seen, 29);
}

#[test]
fn blobless_request_names_the_field() {
    let report = check_json(&seed("example04-request.json")).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0].starts_with("mediaConfig.blob"),
        "{:?}",
        report.problems
    );
    assert_eq!(
        report.permissions.unwrap().to_string(),
        "Calls.InitiateGroupCall.All and Calls.AccessMedia.All"
    );
}

#[test]
fn notes_describe_notifications() {
    let report = check_json(&seed("notification-roster-delta.json")).unwrap();
    assert_eq!(
        report.notes,
        ["value[0] updated: delta roster, sequenceNumber 1"]
    );
    let report = check_json(&seed("notification-established.json")).unwrap();
    assert_eq!(
        report.notes,
        ["value[0] updated: call 2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116: state established"]
    );
}

#[test]
fn graph_error_bodies_are_known() {
    let body = br##"{"error":{"code":"Forbidden","message":"no","innerError":{"request-id":"r1","date":"2026-11-26T18:00:00"}}}"##;
    let report = check_json(body).unwrap();
    assert_eq!(report.kind, ResourceKind::GraphError);
    assert!(report.is_valid());
    assert_eq!(report.notes, ["error Forbidden: no (request-id r1)"]);
}

#[test]
fn not_json_and_unknown_resources_are_errors() {
    assert!(matches!(
        check_json(b"{\"@odata.type\": "),
        Err(CheckError::NotJson(_))
    ));
    assert!(matches!(check_json(b""), Err(CheckError::NotJson(_))));
    assert!(matches!(
        check_json(b"\xff\xfe"),
        Err(CheckError::NotJson(_))
    ));
    for unknown in [
        &br##"[1, 2]"##[..],
        br#""call""#,
        br##"{"@odata.type": "#microsoft.graph.user", "id": "u"}"##,
        br##"{"@odata.type": 7}"##,
        br##"{"id": "x"}"##,
    ] {
        let error = check_json(unknown).unwrap_err();
        assert!(matches!(error, CheckError::UnknownResource(_)), "{error}");
    }
}

#[test]
fn known_resource_with_a_wrongly_typed_property_is_invalid() {
    let report =
        check_json(br##"{"@odata.type": "#microsoft.graph.call", "id": "c", "state": 3}"##)
            .unwrap();
    assert_eq!(report.kind, ResourceKind::Call);
    assert!(!report.is_valid());
    assert!(report.round_tripped.is_none());
    assert!(
        report.problems[0].contains("call model"),
        "{:?}",
        report.problems
    );

    let report =
        check_json(br##"{"@odata.type": "#microsoft.graph.commsNotifications", "value": []}"##)
            .unwrap();
    assert!(!report.is_valid(), "an empty batch");
}

#[test]
fn unknown_properties_are_kept_not_failures() {
    let doc = br##"{"@odata.type": "#microsoft.graph.commsNotifications", "value": [{"@odata.type": "#microsoft.graph.commsNotification", "changeType": "updated", "resourceUrl": "/communications/calls/c/recordings", "resourceData": {"@odata.type": "#microsoft.graph.callRecording", "id": "r"}, "newThing": true}]}"##;
    let report = check_json(doc).unwrap();
    assert!(report.is_valid(), "{:?}", report.problems);
    assert_eq!(
        report.round_tripped.unwrap(),
        serde_json::from_slice::<Value>(doc).unwrap()
    );
    assert!(
        report.notes[0].contains("does not know"),
        "{:?}",
        report.notes
    );
}
