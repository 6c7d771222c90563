//! Every JSON of the seed document parses into the typed model and serializes back
//! to the same JSON value (see tests/fixtures/seed/README.md at the repository root).

use std::fs;
use std::path::PathBuf;

use appmedia_model::{
    Call, CallDirection, CallState, ChangeType, CommsNotifications, GraphErrorBody, MediaConfig,
    MeetingInfo, Modality, Nullable, ResourceData,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed")
}

fn fixture(name: &str) -> Value {
    let path = seed_dir().join(name);
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

fn fixture_names(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(seed_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix) && name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[test]
fn all_ten_examples_round_trip_as_calls() {
    let names = fixture_names("example");
    assert_eq!(names.len(), 20, "ten requests and ten responses: {names:?}");
    for name in names {
        let call: Call = round_trip(&name);
        assert_eq!(
            call.odata_type.value().map(String::as_str),
            Some(Call::ODATA_TYPE)
        );
        assert!(call.media_config.is_value(), "{name} has a mediaConfig");
        assert_everything_named(&name, &call);
    }
}

/// A misspelt rename would still round-trip (through `extra`); this catches it:
/// every property the seed uses is one the model names.
fn assert_everything_named(name: &str, call: &Call) {
    assert!(
        call.extra.is_empty(),
        "{name}: call has unnamed {:?}",
        call.extra
    );
    let mut sets = Vec::new();
    if let Some(source) = call.source.value() {
        assert!(source.extra.is_empty(), "{name}: source {:?}", source.extra);
        sets.extend(source.identity.value());
    }
    for target in call.targets() {
        assert!(target.extra.is_empty(), "{name}: target {:?}", target.extra);
        sets.extend(target.identity.value());
    }
    if let Some(MeetingInfo::Organizer(info)) = call.meeting_info.value() {
        assert!(
            info.extra.is_empty(),
            "{name}: meetingInfo {:?}",
            info.extra
        );
        sets.extend(info.organizer.value());
    }
    if let Some(MeetingInfo::JoinMeetingId(info)) = call.meeting_info.value() {
        assert!(
            info.extra.is_empty(),
            "{name}: meetingInfo {:?}",
            info.extra
        );
    }
    match call.media_config.value() {
        Some(MediaConfig::ServiceHosted(config)) => {
            assert!(
                config.extra.is_empty(),
                "{name}: mediaConfig {:?}",
                config.extra
            );
            for media in config.pre_fetch_media.value().into_iter().flatten() {
                assert!(
                    media.extra.is_empty(),
                    "{name}: preFetchMedia {:?}",
                    media.extra
                );
            }
        }
        Some(MediaConfig::AppHosted(config)) => {
            assert!(
                config.extra.is_empty(),
                "{name}: mediaConfig {:?}",
                config.extra
            )
        }
        other => panic!("{name}: unexpected mediaConfig {other:?}"),
    }
    if let Some(chat) = call.chat_info.value() {
        assert!(chat.extra.is_empty(), "{name}: chatInfo {:?}", chat.extra);
    }
    if let Some(options) = call.call_options.value() {
        assert!(
            options.extra.is_empty(),
            "{name}: callOptions {:?}",
            options.extra
        );
    }
    for set in sets {
        assert!(set.extra.is_empty(), "{name}: identitySet {:?}", set.extra);
        for identity in [
            &set.user,
            &set.application,
            &set.application_instance,
            &set.phone,
        ] {
            if let Some(identity) = identity.value() {
                assert!(
                    identity.extra.is_empty(),
                    "{name}: identity {:?}",
                    identity.extra
                );
            }
        }
    }
}

#[test]
fn all_notifications_round_trip() {
    let names = fixture_names("notification");
    assert_eq!(names.len(), 9, "{names:?}");
    for name in names {
        let batch: CommsNotifications = round_trip(&name);
        assert_eq!(batch.notifications().len(), 1, "{name}");
        assert!(
            !matches!(
                batch.notifications()[0].resource_data,
                Nullable::Value(ResourceData::Other(_))
            ),
            "{name}: resourceData is of a modelled kind"
        );
    }
}

#[test]
fn response_nulls_stay_null_and_absent_stays_absent() {
    let call: Call = round_trip("example01-response.json");
    assert!(call.subject.is_null());
    assert!(call.chat_info.is_null());
    assert!(call.meeting_info.is_null());
    assert!(call.tenant_id.is_absent());
    assert_eq!(call.state, Nullable::Value(CallState::Establishing));
    assert_eq!(call.direction, Nullable::Value(CallDirection::Outgoing));
    let source = call.source.value().unwrap();
    assert!(source.country_code.is_null() && source.participant_id.is_absent());
    assert!(call.targets()[0].replaces_call_id.is_null());
    assert_eq!(
        call.odata_context.value().map(String::as_str),
        Some("https://graph.microsoft.com/v1.0/$metadata#app/calls/$entity")
    );
}

#[test]
fn odata_type_selects_the_variant() {
    let ex2: Call = round_trip("example02-request.json");
    match ex2.media_config.value() {
        Some(MediaConfig::AppHosted(config)) => {
            assert_eq!(
                config.blob.value().map(String::as_str),
                Some("<Media Session Configuration>")
            )
        }
        other => panic!("app-hosted expected, got {other:?}"),
    }
    let ex5: Call = round_trip("example05-request.json");
    match ex5.media_config.value() {
        Some(MediaConfig::ServiceHosted(config)) => {
            assert_eq!(config.pre_fetch_media.value().map(Vec::len), Some(2))
        }
        other => panic!("service-hosted expected, got {other:?}"),
    }
    match ex5.meeting_info.value() {
        Some(MeetingInfo::Organizer(info)) => {
            let organizer = info.organizer.value().unwrap().user.value().unwrap();
            assert_eq!(
                organizer.display_name.value().map(String::as_str),
                Some("Bob")
            );
            assert!(organizer.tenant_id.is_value());
        }
        other => panic!("organizer meeting info expected, got {other:?}"),
    }
    let ex8: Call = round_trip("example08-request.json");
    match ex8.meeting_info.value() {
        Some(MeetingInfo::JoinMeetingId(info)) => {
            assert_eq!(
                info.join_meeting_id.value().map(String::as_str),
                Some("1234567")
            );
            assert!(info.passcode.is_null());
        }
        other => panic!("joinMeetingId meeting info expected, got {other:?}"),
    }
    let ex9: Call = round_trip("example09-request.json");
    let phone = ex9.targets()[0]
        .identity
        .value()
        .unwrap()
        .phone
        .value()
        .unwrap();
    assert_eq!(phone.id.value().map(String::as_str), Some("+12345678901"));
    assert!(
        ex9.source
            .value()
            .unwrap()
            .identity
            .value()
            .unwrap()
            .application_instance
            .is_value()
    );
}

#[test]
fn notification_kinds() {
    let established: CommsNotifications = round_trip("notification-established.json");
    let note = &established.notifications()[0];
    assert_eq!(note.change_type, Nullable::Value(ChangeType::Updated));
    assert_eq!(note.call_id(), Some("2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116"));
    match note.resource_data.value() {
        Some(ResourceData::Call(call)) => {
            assert_eq!(call.state, Nullable::Value(CallState::Established))
        }
        other => panic!("call expected, got {other:?}"),
    }

    let roster: CommsNotifications = round_trip("notification-roster.json");
    match roster.notifications()[0].resource_data.value() {
        Some(ResourceData::Participants(list)) => {
            assert_eq!(list.len(), 2);
            let streams = list[0].media_streams.value().unwrap();
            assert_eq!(
                streams[2].media_type,
                Nullable::Value(Modality::VideoBasedScreenSharing)
            );
        }
        other => panic!("participants expected, got {other:?}"),
    }

    let delta: CommsNotifications = round_trip("notification-roster-delta.json");
    let note = &delta.notifications()[0];
    assert!(note.resource.is_value());
    match note.resource_data.value() {
        Some(ResourceData::DeltaParticipants(deltas)) => {
            assert_eq!(deltas[0].sequence_number, Nullable::Value(1));
            let participants = deltas[0].participants.value().unwrap();
            assert!(participants[0].removed_state.is_absent());
            let removed = participants[1].removed_state.value().unwrap();
            assert_eq!(
                removed.reason.value().map(String::as_str),
                Some("Removed from roster")
            );
        }
        other => panic!("delta participants expected, got {other:?}"),
    }

    let deleted: CommsNotifications = round_trip("notification-content-sharing-deleted.json");
    let note = &deleted.notifications()[0];
    assert_eq!(note.change_type, Nullable::Value(ChangeType::Deleted));
    assert!(matches!(
        note.resource_data.value(),
        Some(ResourceData::ContentSharingSessions(list)) if list.len() == 1
    ));
}

#[test]
fn unknown_types_properties_and_values_survive() {
    let doc = json!({
        "@odata.type": "#microsoft.graph.call",
        "state": "parked",
        "futureProperty": {"nested": [1, 2, 3]},
        "requestedModalities": ["audio", "hologram"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.quantumMediaConfig", "qubits": 3},
        "meetingInfo": {"@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": "t", "x": null},
        "source": {"identity": {"encrypted": {"id": "e"}, "user": {"id": "u", "userPrincipalName": "a@b"}}}
    });
    let call: Call = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(
        call.state,
        Nullable::Value(CallState::Unknown("parked".into()))
    );
    assert!(matches!(
        call.media_config.value(),
        Some(MediaConfig::Other(_))
    ));
    assert!(matches!(
        call.meeting_info.value(),
        Some(MeetingInfo::Token(_))
    ));
    assert_eq!(call.extra["futureProperty"], json!({"nested": [1, 2, 3]}));
    assert_eq!(serde_json::to_value(&call).unwrap(), doc);

    let odd_data = json!({
        "value": [{"changeType": "updated", "resourceData": [{"@odata.type": "#microsoft.graph.participant"}, {"@odata.type": "#microsoft.graph.recording"}]},
                  {"changeType": "updated", "resourceData": {"@odata.type": "#microsoft.graph.recording", "id": "r"}}]
    });
    let batch: CommsNotifications = serde_json::from_value(odd_data.clone()).unwrap();
    for note in batch.notifications() {
        assert!(matches!(
            note.resource_data.value(),
            Some(ResourceData::Other(_))
        ));
    }
    assert_eq!(serde_json::to_value(&batch).unwrap(), odd_data);
}

#[test]
fn identity_kind_follows_odata_type() {
    let doc = json!({
        "@odata.type": "#microsoft.graph.identitySet",
        "application": {"@odata.type": "#microsoft.graph.communicationsApplicationIdentity",
                        "id": "a", "applicationType": "bot", "hidden": false},
        "user": {"@odata.type": "#microsoft.graph.identity", "id": "u"},
        "guest": {"id": "g"},
        "phone": {"@odata.type": "#microsoft.graph.someFutureIdentity", "id": "+1"}
    });
    let set: appmedia_model::IdentitySet = serde_json::from_value(doc.clone()).unwrap();
    let app = set.application.value().unwrap();
    assert_eq!(
        app.kind(),
        Some(appmedia_model::IdentityKind::CommunicationsApplicationIdentity)
    );
    assert_eq!(app.extra["applicationType"], json!("bot"));
    assert_eq!(
        set.user.value().unwrap().kind(),
        Some(appmedia_model::IdentityKind::Identity)
    );
    assert_eq!(set.guest.value().unwrap().kind(), None);
    assert_eq!(
        set.phone.value().unwrap().kind(),
        Some(appmedia_model::IdentityKind::Unknown(
            "#microsoft.graph.someFutureIdentity".into()
        ))
    );
    assert_eq!(serde_json::to_value(&set).unwrap(), doc);
}

#[test]
fn wrongly_typed_properties_are_errors() {
    for doc in [
        json!({"state": 3}),
        json!({"ringingTimeoutInSeconds": "soon"}),
        json!({"mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": 5}}),
        json!({"targets": {"not": "a list"}}),
    ] {
        assert!(
            serde_json::from_value::<Call>(doc.clone()).is_err(),
            "{doc}"
        );
    }
    let bad_call_data = json!({"value": [{"resourceData": {"@odata.type": "#microsoft.graph.call", "state": false}}]});
    assert!(serde_json::from_value::<CommsNotifications>(bad_call_data).is_err());
}

#[test]
fn graph_error_body_round_trips() {
    let doc = json!({"error": {"code": "Forbidden", "message": "Missing role", "innerError": {
        "request-id": "7f6c0bb8-5b26-4a8a-9d6a-0c7a1e1d8e88", "date": "2026-11-26T17:00:00", "client-request-id": "c"}}});
    let body: GraphErrorBody = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(body.error.code, "Forbidden");
    let inner = body.error.inner_error.value().unwrap();
    assert_eq!(
        inner.request_id.value().map(String::as_str),
        Some("7f6c0bb8-5b26-4a8a-9d6a-0c7a1e1d8e88")
    );
    assert_eq!(serde_json::to_value(&body).unwrap(), doc);
    assert!(
        serde_json::from_value::<GraphErrorBody>(json!({"error": {"message": "no code"}})).is_err()
    );
}

#[test]
fn constructors_build_what_the_service_sends() {
    let call = Call {
        odata_type: Call::ODATA_TYPE.to_owned().into(),
        state: CallState::Establishing.into(),
        id: "2e1a0b00-2db4-4022-9570-243709c565ab".to_owned().into(),
        ..Default::default()
    };
    let mut note = appmedia_model::CommsNotification::new(
        ChangeType::Updated,
        "/communications/calls/2e1a0b00-2db4-4022-9570-243709c565ab",
        ResourceData::Call(Box::new(call)),
    );
    note.callback_uri = "https://bot.contoso.com/callback".to_owned().into();
    let batch = CommsNotifications::new(vec![note]);
    assert_eq!(
        serde_json::to_value(&batch).unwrap(),
        fixture("notification-establishing.json")
    );
}
