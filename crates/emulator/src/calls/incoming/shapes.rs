//! The documents of an incoming call, in the shapes of the Graph `call: answer` and
//! `call: redirect` examples (`tests/fixtures/incoming/`): the call resource the bot is
//! offered, its `created` notification, and the `deleted` notification that ends the bot's leg.

use appmedia_model::{
    Call, CallDirection, CallState, ChangeType, CommsNotification, CommsNotifications,
    EndpointType, IncomingContext, InvitationParticipantInfo, MediaConfig, Modality, Nullable,
    ParticipantInfo, ResourceData,
};
use serde_json::Value;

use super::route::IncomingRoute;
use crate::directory::Directory;
use crate::shapes::{self, CallIds, result_info};

/// The region Graph writes for the emulated parties.
const REGION: &str = "amer";

/// The call the bot is offered (`state: incoming`): the `resourceData` of the `created`
/// notification and what `GET /communications/calls/{id}` returns until it is answered.
/// `source_participant_id` is the caller's participant id (also `incomingContext`'s).
pub fn incoming_call(
    directory: &Directory,
    route: &IncomingRoute,
    ids: &CallIds,
    source_participant_id: &str,
    callback_uri: &str,
) -> Call {
    let mut source = ParticipantInfo::new(route.caller_identity());
    source.endpoint_type = EndpointType::Default.into();
    source.region = REGION.to_owned().into();
    source.language_id = "en-US".to_owned().into();
    source
        .extra
        .insert("id".into(), Value::String(source_participant_id.to_owned()));
    let mut target = InvitationParticipantInfo::new(route.bot_identity());
    target.endpoint_type = EndpointType::Default.into();
    target.region = Nullable::Null;
    target.language_id = Nullable::Null;
    target
        .extra
        .insert("id".into(), Value::String(ids.my_participant_id.clone()));
    let mut call = Call {
        odata_type: Call::ODATA_TYPE.to_owned().into(),
        id: ids.id.clone().into(),
        state: CallState::Incoming.into(),
        direction: CallDirection::Incoming.into(),
        callback_uri: callback_uri.to_owned().into(),
        source: source.into(),
        targets: vec![target].into(),
        requested_modalities: vec![Modality::Audio].into(),
        tenant_id: route.application.tenant.clone().into(),
        my_participant_id: ids.my_participant_id.clone().into(),
        call_chain_id: ids.call_chain_id.clone().into(),
        incoming_context: IncomingContext {
            odata_type: "#microsoft.graph.incomingContext".to_owned().into(),
            source_participant_id: source_participant_id.to_owned().into(),
            observed_participant_id: source_participant_id.to_owned().into(),
            ..Default::default()
        }
        .into(),
        ..Default::default()
    };
    if let Some(meeting) = &route.meeting {
        call.chat_info = shapes::meeting_chat_info(&meeting.thread_id).into();
        call.meeting_info = shapes::organizer_meeting_info(directory, &meeting.organizer).into();
    }
    call.extra.insert(
        "@odata.id".into(),
        Value::String(format!("/communications/calls/{}", ids.id)),
    );
    // The call's version; the emulator's incoming calls are offered once, at version 1.
    call.extra
        .insert("@odata.etag".into(), Value::String("W/\"1\"".into()));
    call
}

fn batch(change: ChangeType, call: Call) -> CommsNotifications {
    let id = call.id.value().cloned().unwrap_or_default();
    let mut n = CommsNotification {
        odata_type: CommsNotification::ODATA_TYPE.to_owned().into(),
        change_type: change.into(),
        resource_url: format!("/communications/calls/{id}").into(),
        ..Default::default()
    };
    n.resource = format!("/app/calls/{id}").into();
    n.resource_data = ResourceData::Call(Box::new(call)).into();
    CommsNotifications::new(vec![n])
}

/// The `created` notification that offers `call` to the bot.
pub fn created_notification(call: &Call) -> CommsNotifications {
    batch(ChangeType::Created, call.clone())
}

/// The `deleted` notification ending the bot's leg of an incoming call that was never
/// answered (rejected, redirected, not answered in time, the caller hung up): the call as
/// offered, `state: terminated`, with `resultInfo`, as in the `call: redirect` example.
pub fn terminated_notification(
    call: &Call,
    callback_uri: &str,
    result: (i64, i64, &str),
) -> CommsNotifications {
    let mut call = call.clone();
    call.state = CallState::Terminated.into();
    call.callback_uri = callback_uri.to_owned().into();
    call.result_info = result_info(result).into();
    batch(ChangeType::Deleted, call)
}

/// Puts the bot's media configuration (the emulator's answer blob, for app-hosted media)
/// into a call-state notification: answering returns `202` with no body, so the first
/// notification after it is where the answer travels (`docs/blob.md`).
pub fn with_media_config(mut body: CommsNotifications, config: &MediaConfig) -> CommsNotifications {
    if let Some(list) = body.value.value_mut() {
        for n in list {
            if let Some(ResourceData::Call(call)) = n.resource_data.value_mut() {
                call.media_config = config.clone().into();
            }
        }
    }
    body
}

/// A call-state notification of an answered incoming call: `direction: incoming` where the
/// driver writes a direction, and the answer's media configuration (the emulator's answer
/// blob) on `establishing` and `established`, whichever the bot gets first.
pub fn answered_call_state(
    mut body: CommsNotifications,
    state: CallState,
    media: Option<&MediaConfig>,
) -> CommsNotifications {
    if let Some(list) = body.value.value_mut() {
        for n in list {
            if let Some(ResourceData::Call(call)) = n.resource_data.value_mut()
                && call.direction.is_value()
            {
                call.direction = CallDirection::Incoming.into();
            }
        }
    }
    match media {
        Some(config) if matches!(state, CallState::Establishing | CallState::Established) => {
            with_media_config(body, config)
        }
        _ => body,
    }
}
