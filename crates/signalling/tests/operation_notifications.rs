//! Notifications about the call-control actions through the registry and the receiver:
//! operations (playPrompt, recordResponse, invite, sendDtmfTones, cancelMediaProcessing)
//! become `CallEvent::Operation`, once each; subscribed DTMF tones arrive on the call's
//! `Updated` event, once each.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appmedia_model::{
    CommsNotifications, CommsOperation, OperationStatus, RecordCompletionReason, ResourceData,
    SendDtmfCompletionReason, Tone,
};
use appmedia_signalling::auth::CallbackAuth;
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use serde_json::json;

fn fixture(name: &str) -> CommsNotifications {
    serde_json::from_str(&common::action_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The operation the (single) notification of `name` carries.
fn carried_operation(name: &str) -> CommsOperation {
    match fixture(name).notifications()[0].resource_data.value() {
        Some(ResourceData::Operation(operation)) => (**operation).clone(),
        other => panic!("{name}: not an operation: {other:?}"),
    }
}

fn operations(events: &[CallEvent]) -> Vec<(&str, &CommsOperation)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::Operation { call_id, operation } => Some((call_id.as_str(), &**operation)),
            _ => None,
        })
        .collect()
}

#[test]
fn each_documented_operation_notification_is_one_operation_event() {
    let cases = [
        (
            "play-prompt.notification.json",
            "57DAB8B1894C409AB240BD8BEAE78896",
        ),
        (
            "record-response.notification.json",
            "57DAB8B1894C409AB240BD8BEAE78896",
        ),
        (
            "cancel-media-processing.notification.json",
            "57DAB8B1894C409AB240BD8BEAE78896",
        ),
        (
            "invite-participants.notification.json",
            "ab6233a5-20b7-4c5e-bea2-ce56c9776429",
        ),
        (
            "invite-participants-multiple.notification.json",
            "7531d31f-d10d-44de-802f-c569dbca451c",
        ),
        (
            "send-dtmf-tones-completed.notification.json",
            "481f3600-983e-4276-9b59-c1b30ec8d125",
        ),
    ];
    for (name, call) in cases {
        let registry = CallRegistry::default();
        let events = registry.apply(&fixture(name), Instant::now());
        assert_eq!(events.len(), 1, "{name}: {events:#?}");
        let found = operations(&events);
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(found[0].0, call, "{name}");
        assert_eq!(found[0].1, &carried_operation(name), "{name}");
        assert_eq!(events[0].call_id(), Some(call));
    }
}

#[test]
fn a_finished_recording_says_where_the_recording_is() {
    let registry = CallRegistry::default();
    let events = registry.apply(
        &fixture("record-response.notification.json"),
        Instant::now(),
    );
    let [(_, operation)] = operations(&events)[..] else {
        panic!("{events:#?}");
    };
    assert_eq!(operation.kind(), Some("recordOperation"));
    assert_eq!(operation.status.value(), Some(&OperationStatus::Completed));
    assert_eq!(
        operation.recording_location.value().map(String::as_str),
        Some("https://file.location/17e3b46c-f61d-4f4d-9635-c626ef18e6ad")
    );
    assert_eq!(
        operation.recording_access_token.value().map(String::as_str),
        Some("<access-token>")
    );

    let events = registry.apply(
        &fixture("cancel-media-processing.notification.json"),
        Instant::now(),
    );
    let [(_, cancelled)] = operations(&events)[..] else {
        panic!("{events:#?}");
    };
    assert_eq!(cancelled.status.value(), Some(&OperationStatus::Failed));
    assert_eq!(
        cancelled.record_completion_reason(),
        Some(RecordCompletionReason::OperationCanceled)
    );
}

#[test]
fn send_dtmf_completion_reasons_are_typed() {
    for (name, reason) in [
        (
            "send-dtmf-tones-completed.notification.json",
            SendDtmfCompletionReason::CompletedSuccessfully,
        ),
        (
            "send-dtmf-tones-canceled.notification.json",
            SendDtmfCompletionReason::MediaOperationCanceled,
        ),
        (
            "send-dtmf-tones-unknown.notification.json",
            SendDtmfCompletionReason::Unspecified,
        ),
    ] {
        let events = CallRegistry::default().apply(&fixture(name), Instant::now());
        let [(_, operation)] = operations(&events)[..] else {
            panic!("{name}: {events:#?}");
        };
        assert_eq!(
            operation.send_dtmf_completion_reason(),
            Some(reason),
            "{name}"
        );
    }
}

fn operation_notification(id: Option<&str>, status: &str) -> CommsNotifications {
    serde_json::from_value(json!({
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [{
            "@odata.type": "#microsoft.graph.commsNotification",
            "changeType": if status == "completed" { "deleted" } else { "updated" },
            "resourceUrl": format!("/communications/calls/c1/operations/{}", id.unwrap_or("x")),
            "resourceData": {
                "@odata.type": "#microsoft.graph.playPromptOperation",
                "id": id,
                "status": status,
                "clientContext": "ctx"
            }
        }]
    }))
    .unwrap()
}

#[test]
fn a_repeated_operation_notification_is_delivered_once_and_progress_each_time() {
    let registry = CallRegistry::default();
    let now = Instant::now();
    let running = operation_notification(Some("op1"), "running");
    let completed = operation_notification(Some("op1"), "completed");
    let mut statuses = Vec::new();
    for batch in [&running, &running, &completed, &completed, &running] {
        for (_, operation) in operations(&registry.apply(batch, now)) {
            statuses.push(operation.status.value().cloned());
        }
    }
    assert_eq!(
        statuses,
        vec![
            Some(OperationStatus::Running),
            Some(OperationStatus::Completed)
        ]
    );
    // Another operation with the same status is its own event.
    let other = operation_notification(Some("op2"), "completed");
    assert_eq!(operations(&registry.apply(&other, now)).len(), 1);
}

#[test]
fn operations_without_an_id_are_all_delivered() {
    // Graph's multiple-invite example completes with `"id": null`: repeats cannot be told
    // from distinct operations, so none is dropped.
    let registry = CallRegistry::default();
    let now = Instant::now();
    let batch = operation_notification(None, "completed");
    assert_eq!(operations(&registry.apply(&batch, now)).len(), 1);
    assert_eq!(operations(&registry.apply(&batch, now)).len(), 1);
}

fn tone_notification(sequence: i64, tone: &str) -> CommsNotifications {
    let mut batch = fixture("subscribe-to-tone.notification.json");
    let mut value = serde_json::to_value(&batch).unwrap();
    value["value"][0]["resourceData"]["toneInfo"] = json!({
        "@odata.type": "#microsoft.graph.toneInfo",
        "sequenceId": sequence,
        "tone": tone
    });
    batch = serde_json::from_value(value).unwrap();
    batch
}

const TONE_CALL: &str = "57dab8b1-894c-409a-b240-bd8beae78896";

fn established() -> CommsNotifications {
    serde_json::from_value(json!({"value": [{
        "changeType": "updated",
        "resourceUrl": format!("/communications/calls/{TONE_CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established"}
    }]}))
    .unwrap()
}

fn tones(events: &[CallEvent]) -> Vec<(i64, Tone)> {
    events
        .iter()
        .filter_map(CallEvent::tone)
        .map(|t| {
            (
                *t.sequence_id.value().unwrap(),
                t.tone.value().unwrap().clone(),
            )
        })
        .collect()
}

#[test]
fn a_subscribed_tone_reaches_the_bot_on_the_updated_event() {
    let registry = CallRegistry::default();
    let now = Instant::now();
    registry.apply(&established(), now);
    let events = registry.apply(&fixture("subscribe-to-tone.notification.json"), now);
    assert_eq!(events.len(), 1, "{events:#?}");
    match &events[0] {
        CallEvent::Updated { call_id, call } => {
            assert_eq!(call_id, TONE_CALL);
            let tone = call.tone_info.value().expect("the tone is on the call");
            assert_eq!(tone.tone.value(), Some(&Tone::Tone1));
            assert_eq!(tone.sequence_id.value(), Some(&1));
        }
        other => panic!("expected Updated, got {other:?}"),
    }
    assert_eq!(tones(&events), vec![(1, Tone::Tone1)]);
}

#[test]
fn each_tone_is_seen_once_even_when_repeated_or_pressed_twice() {
    let registry = CallRegistry::default();
    let now = Instant::now();
    registry.apply(&established(), now);
    let mut seen = Vec::new();
    for batch in [
        tone_notification(1, "tone1"),
        tone_notification(1, "tone1"), // the same notification again
        tone_notification(2, "tone1"), // the same key pressed again
        tone_notification(3, "pound"),
    ] {
        seen.extend(tones(&registry.apply(&batch, now)));
    }
    assert_eq!(
        seen,
        vec![(1, Tone::Tone1), (2, Tone::Tone1), (3, Tone::Pound)]
    );
    // A later update of something else does not bring the last tone back.
    let media: CommsNotifications = serde_json::from_value(json!({"value": [{
        "changeType": "updated",
        "resourceUrl": format!("/communications/calls/{TONE_CALL}"),
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established",
                         "mediaState": {"audio": "inactive"}}
    }]}))
    .unwrap();
    let events = registry.apply(&media, now);
    assert!(
        matches!(&events[..], [CallEvent::Updated { .. }]),
        "{events:#?}"
    );
    assert!(tones(&events).is_empty());
}

#[test]
fn a_tone_on_a_call_not_yet_known_comes_with_its_state() {
    let registry = CallRegistry::default();
    let events = registry.apply(&tone_notification(7, "star"), Instant::now());
    assert!(
        matches!(&events[..], [CallEvent::StateChanged { .. }]),
        "{events:#?}"
    );
    assert_eq!(tones(&events), vec![(7, Tone::Star)]);
}

#[tokio::test]
async fn operation_and_tone_notifications_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::disabled_for_loopback(addr).unwrap(),
        Arc::new(CallRegistry::default()),
        16,
    );
    let router = receiver.router("api/calls");
    common::serve_with_peers(listener, router);
    let http =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5)).unwrap();
    for name in [
        "play-prompt.notification.json",
        "subscribe-to-tone.notification.json",
    ] {
        let response = http
            .post(format!("http://{addr}/api/calls"))
            .header("content-type", "application/json")
            .body(common::action_fixture(name))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "{name}");
    }
    let first = events.recv().await.unwrap();
    match first {
        CallEvent::Operation { call_id, operation } => {
            assert_eq!(call_id, "57DAB8B1894C409AB240BD8BEAE78896");
            assert_eq!(operation.kind(), Some("playPromptOperation"));
            assert!(operation.is_finished());
        }
        other => panic!("expected an operation, got {other:?}"),
    }
    let second = events.recv().await.unwrap();
    assert_eq!(
        second.tone().and_then(|t| t.tone.value()),
        Some(&Tone::Tone1)
    );
}
