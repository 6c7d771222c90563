//! One test per refusal: each starts from a valid request, breaks one thing, and
//! expects exactly the error that names the broken field.

use appmedia_model::{
    Call, Identity, IdentitySet, InvitationParticipantInfo, JoinMeetingIdMeetingInfo, MediaConfig,
    MeetingInfo, Modality, Nullable, ParticipantInfo,
};
use appmedia_signalling::builders::{
    GroupCallBuilder, JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder, PstnCallBuilder,
};
use appmedia_signalling::validate::{ValidationError, validate_create_call};

mod common;

const CALLBACK: &str = "https://bot.contoso.com/callback";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";

fn user(n: usize) -> Identity {
    Identity::new(format!("00000000-0000-0000-0000-{n:012}")).with_display_name(format!("user{n}"))
}

fn bot() -> ParticipantInfo {
    ParticipantInfo::new(IdentitySet::application(Identity::new(
        "dd3885da-f9ab-486b-bfae-85de3d445555",
    )))
}

fn instance() -> ParticipantInfo {
    ParticipantInfo::new(IdentitySet::application_instance(Identity::new(
        "3d913abb-aec0-4964-8fa6-3c6850c4f278",
    )))
}

fn p2p() -> Call {
    PeerToPeerCallBuilder::new(CALLBACK, user(1), Media::app_hosted("{}"))
        .build()
        .unwrap()
}

/// Validates `call` and expects exactly one error, naming `field`.
fn refused(call: &Call, field: &str) -> ValidationError {
    let errors = validate_create_call(call).expect_err("should be refused");
    assert_eq!(errors.errors().len(), 1, "exactly one error: {errors}");
    let error = errors.errors()[0].clone();
    assert_eq!(error.field(), field, "{error}");
    assert!(
        error.to_string().starts_with(field),
        "message names the field: {error}"
    );
    error
}

#[test]
fn no_targets_and_no_meeting() {
    let mut call = p2p();
    call.targets = Nullable::Value(Vec::new());
    assert_eq!(
        refused(&call, "targets"),
        ValidationError::NoTargetsOrMeeting
    );
    call.targets = Nullable::Absent;
    assert_eq!(
        refused(&call, "targets"),
        ValidationError::NoTargetsOrMeeting
    );
}

#[test]
fn group_call_with_more_than_five_targets() {
    let five = GroupCallBuilder::new(CALLBACK, bot(), (1..=5).map(user), Media::service_hosted());
    assert!(five.build().is_ok(), "five is the limit, and allowed");
    let six = GroupCallBuilder::new(CALLBACK, bot(), (1..=6).map(user), Media::service_hosted());
    let errors = six.build().expect_err("six targets");
    assert_eq!(
        errors.errors(),
        &[ValidationError::TooManyGroupTargets { count: 6 }]
    );
    assert!(errors.to_string().contains("at most 5"), "{errors}");
}

#[test]
fn phone_target_not_e164() {
    for bad in [
        "12345678901",
        "+1 234 567 8901",
        "+0123456789",
        "+1234567890123456",
        "",
    ] {
        let built =
            PstnCallBuilder::new(CALLBACK, instance(), bad, TENANT, Media::service_hosted())
                .build();
        let errors = built.expect_err(bad);
        assert_eq!(
            errors.errors(),
            &[ValidationError::PhoneNotE164 {
                field: "targets[0].identity.phone.id".into(),
                value: bad.into()
            }],
            "{bad}"
        );
    }
    // The index points at the offending target of a group.
    let mut call = GroupCallBuilder::new(CALLBACK, instance(), [user(1)], Media::service_hosted())
        .build()
        .unwrap();
    if let Nullable::Value(targets) = &mut call.targets {
        targets.push(InvitationParticipantInfo::new(IdentitySet::phone(
            Identity::new("555-0100"),
        )));
    }
    refused(&call, "targets[1].identity.phone.id");
}

#[test]
fn target_without_identity() {
    let mut call = p2p();
    for identity in [
        Nullable::Absent,
        Nullable::Null,
        Nullable::Value(IdentitySet::default()),
    ] {
        if let Nullable::Value(targets) = &mut call.targets {
            targets[0].identity = identity.clone();
        }
        assert_eq!(
            refused(&call, "targets[0].identity"),
            ValidationError::TargetWithoutIdentity {
                field: "targets[0].identity".into()
            },
            "{identity:?}"
        );
    }
    // An identity kind the model does not name still says who the target is.
    let mut encrypted = IdentitySet::default();
    encrypted
        .extra
        .insert("encrypted".into(), serde_json::json!({"id": "e"}));
    if let Nullable::Value(targets) = &mut call.targets {
        targets[0].identity = Nullable::Value(encrypted);
    }
    assert!(validate_create_call(&call).is_ok());
}

#[test]
fn pstn_call_without_application_instance_source() {
    let built = PstnCallBuilder::new(
        CALLBACK,
        bot(),
        "+12345678901",
        TENANT,
        Media::service_hosted(),
    )
    .build();
    let errors = built.expect_err("application source");
    assert_eq!(
        errors.errors(),
        &[ValidationError::PstnWithoutApplicationInstance]
    );

    let mut call = PstnCallBuilder::new(
        CALLBACK,
        instance(),
        "+12345678901",
        TENANT,
        Media::service_hosted(),
    )
    .build()
    .unwrap();
    call.source = Nullable::Absent;
    refused(&call, "source.identity.applicationInstance");
}

#[test]
fn app_hosted_media_without_blob() {
    for blob in [
        Nullable::Absent,
        Nullable::Null,
        Nullable::Value(String::new()),
    ] {
        let mut call = p2p();
        if let Nullable::Value(MediaConfig::AppHosted(config)) = &mut call.media_config {
            config.blob = blob.clone();
        }
        assert_eq!(
            refused(&call, "mediaConfig.blob"),
            ValidationError::AppHostedMediaWithoutBlob,
            "{blob:?}"
        );
    }
}

#[test]
fn missing_media_config() {
    let mut call = p2p();
    call.media_config = Nullable::Absent;
    refused(&call, "mediaConfig");
}

#[test]
fn join_meeting_id_not_digits() {
    for bad in ["12a4567", "", " 1234567", "１２３"] {
        let built =
            JoinMeetingIdBuilder::new(CALLBACK, bad, None, TENANT, Media::service_hosted()).build();
        let errors = built.expect_err(bad);
        assert_eq!(
            errors.errors(),
            &[ValidationError::JoinMeetingIdNotDigits { value: bad.into() }]
        );
    }
    let mut call =
        JoinMeetingIdBuilder::new(CALLBACK, "1234567", None, TENANT, Media::service_hosted())
            .build()
            .unwrap();
    call.meeting_info = Nullable::Value(MeetingInfo::JoinMeetingId(
        JoinMeetingIdMeetingInfo::default(),
    ));
    refused(&call, "meetingInfo.joinMeetingId");
}

#[test]
fn meeting_join_without_tenant_id() {
    let mut call = JoinMeetingIdBuilder::new(
        CALLBACK,
        "1234567",
        Some("psw".into()),
        TENANT,
        Media::service_hosted(),
    )
    .build()
    .unwrap();
    for tenant in [
        Nullable::Absent,
        Nullable::Null,
        Nullable::Value(String::new()),
    ] {
        call.tenant_id = tenant;
        assert_eq!(
            refused(&call, "tenantId"),
            ValidationError::MeetingJoinWithoutTenantId
        );
    }
}

#[test]
fn callback_uri_not_https() {
    for bad in [
        "http://bot.contoso.com/callback",
        "http://10.0.0.5/callback",
        "http://localhost.contoso.com/cb",
        "ftp://bot.contoso.com/callback",
        "wss://bot.contoso.com/callback",
    ] {
        let built = PeerToPeerCallBuilder::new(bad, user(1), Media::service_hosted()).build();
        assert_eq!(
            built.expect_err(bad).errors(),
            &[ValidationError::CallbackUriNotHttps { value: bad.into() }]
        );
    }
}

#[test]
fn callback_uri_http_allowed_on_loopback_only() {
    for ok in [
        "http://127.0.0.1:8080/callback",
        "http://127.45.6.7/callback",
        "http://[::1]:3978/api/calls",
        "http://localhost:3978/api/calls",
        "http://LOCALHOST/cb",
        "https://bot.contoso.com/callback",
    ] {
        let built = PeerToPeerCallBuilder::new(ok, user(1), Media::service_hosted()).build();
        assert!(built.is_ok(), "{ok}: {built:?}");
    }
}

#[test]
fn callback_uri_missing_or_not_a_url() {
    let mut call = p2p();
    call.callback_uri = Nullable::Absent;
    assert_eq!(
        refused(&call, "callbackUri"),
        ValidationError::MissingCallbackUri
    );
    call.callback_uri = Nullable::Value("bot.contoso.com/callback".into());
    assert!(matches!(
        refused(&call, "callbackUri"),
        ValidationError::InvalidCallbackUri { .. }
    ));
}

#[test]
fn empty_requested_modalities() {
    let built = PeerToPeerCallBuilder::new(CALLBACK, user(1), Media::service_hosted())
        .requested_modalities(Vec::new())
        .build();
    assert_eq!(
        built.expect_err("empty").errors(),
        &[ValidationError::EmptyRequestedModalities]
    );
    let mut call = p2p();
    call.requested_modalities = Nullable::Absent;
    refused(&call, "requestedModalities");
    call.requested_modalities = Nullable::Value(vec![Modality::Audio, Modality::Video]);
    assert!(validate_create_call(&call).is_ok());
}

#[test]
fn ringing_timeout_above_115_seconds() {
    let at_limit = PeerToPeerCallBuilder::new(CALLBACK, user(1), Media::service_hosted())
        .ringing_timeout_in_seconds(115)
        .build();
    assert!(at_limit.is_ok());
    let built = PeerToPeerCallBuilder::new(CALLBACK, user(1), Media::service_hosted())
        .ringing_timeout_in_seconds(116)
        .build();
    assert_eq!(
        built.expect_err("116 s").errors(),
        &[ValidationError::RingingTimeoutTooLong { value: 116 }]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let call = Call {
        callback_uri: Nullable::Value("http://bot.contoso.com/cb".into()),
        meeting_info: Nullable::Value(MeetingInfo::JoinMeetingId(JoinMeetingIdMeetingInfo {
            join_meeting_id: Nullable::Value("abc".into()),
            ..Default::default()
        })),
        media_config: Nullable::Value(MediaConfig::AppHosted(Default::default())),
        ..Default::default()
    };
    let errors = validate_create_call(&call).expect_err("many problems");
    let fields: Vec<&str> = errors.errors().iter().map(ValidationError::field).collect();
    assert_eq!(
        fields,
        [
            "callbackUri",
            "mediaConfig.blob",
            "meetingInfo.joinMeetingId",
            "tenantId",
            "requestedModalities"
        ]
    );
}

fn chat(call: &mut Call) -> &mut appmedia_model::ChatInfo {
    match &mut call.chat_info {
        Nullable::Value(chat) => chat,
        _ => panic!("chatInfo"),
    }
}

/// The seed's example 5: a join by organizer + chatInfo, tenant and organizer both Fabrikam.
fn join_by_organizer() -> Call {
    let call: Call = serde_json::from_str(&common::seed("example05-request.json")).unwrap();
    validate_create_call(&call).expect("example 5 is valid");
    call
}

#[test]
fn meeting_join_by_organizer_without_thread_or_message_id() {
    for (field, clear) in [
        (
            "chatInfo.threadId",
            (|c: &mut Call| chat(c).thread_id = Nullable::Absent) as fn(&mut Call),
        ),
        ("chatInfo.messageId", |c: &mut Call| {
            chat(c).message_id = Nullable::Value(String::new())
        }),
    ] {
        let mut call = join_by_organizer();
        clear(&mut call);
        assert_eq!(
            refused(&call, field),
            ValidationError::MeetingJoinWithoutChatInfo { field }
        );
    }
    let mut call = join_by_organizer();
    call.chat_info = Nullable::Absent;
    let errors = validate_create_call(&call).unwrap_err();
    assert!(errors.names_field("chatInfo.threadId") && errors.names_field("chatInfo.messageId"));
}

#[test]
fn meeting_join_in_another_tenant_than_the_organizers() {
    let mut call = join_by_organizer();
    call.tenant_id = Nullable::Value(TENANT.into());
    assert_eq!(
        refused(&call, "tenantId"),
        ValidationError::MeetingTenantMismatch {
            tenant: TENANT.into(),
            organizer_tenant: "86dc81db-c112-4228-9222-63f3esaa1edb".into(),
        }
    );
    // Example 6 names the same meeting in the bot's home tenant, and agrees with itself.
    let example6: Call = serde_json::from_str(&common::seed("example06-request.json")).unwrap();
    let tenants = |call: &Call| {
        let MeetingInfo::Organizer(info) = call.meeting_info.value().unwrap() else {
            panic!("organizerMeetingInfo")
        };
        let organizer = info.organizer.value().unwrap().user.value().unwrap();
        (call.tenant_id.clone(), organizer.tenant_id.clone())
    };
    let (tenant, organizer) = tenants(&example6);
    assert_eq!(tenant, organizer);
    assert_eq!(tenant, Nullable::Value(TENANT.into()));
}
