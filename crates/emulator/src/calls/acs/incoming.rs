//! Calls to the ACS resource (its phone number, or one of the directory's ACS users): the
//! control API rings it, the emulator posts `Microsoft.Communication.IncomingCall` to the
//! validated Event Grid subscription with an unguessable `incomingCallContext`, and the bot
//! answers, rejects or redirects it with that context within
//! `EmulatorConfig::incoming_answer_timeout`. The first of answer, reject, redirect and the
//! deadline takes the call; every later request finds no such context (404).

use std::sync::Arc;

use appmedia_acs::Identifier;
use appmedia_acs::events::{EventGridEvent, INCOMING_CALL, IncomingCallData};
use appmedia_acs::models::{
    AnswerCallRequest, CallConnectionProperties, RedirectCallRequest, RejectCallRequest,
};
use base64::Engine as _;

use crate::acs::{AcsApiError, AcsParty, find_party};
use crate::calls::Shared;
use crate::calls::acs::events::CallIdentity;
use crate::calls::acs::{NewCall, check_streaming, check_url, lock, server_call_id, start_call};

/// A call ringing the resource.
pub(crate) struct Ringing {
    caller: AcsParty,
    to: Identifier,
    server_call_id: String,
    correlation_id: String,
}

/// Who a call to the resource may be for: its phone number or a directory ACS user.
pub fn is_acs_callee(shared: &Shared, to: &str) -> bool {
    to == shared.acs.resource.phone_number || to.starts_with("8:acs:")
}

/// Rings the resource: `from` (a directory user id or phone number) calls `to`; returns
/// the incoming call context's server call id.
pub(crate) async fn ring(
    shared: &Arc<Shared>,
    from: &str,
    to: &str,
) -> Result<String, AcsApiError> {
    let acs = &shared.acs;
    let endpoint = acs.subscription().ok_or_else(|| {
        AcsApiError::conflict(
            "no Event Grid subscription is registered (POST /control/acs/event-subscriptions)",
        )
    })?;
    let to = if to == acs.resource.phone_number {
        Identifier::phone(to)
    } else {
        let user = Identifier::user(to);
        find_party(shared.directory(), &user)
            .map_err(|e| AcsApiError::not_found(format!("to: {e}")))?
            .identifier
    };
    let caller_identifier = if from.starts_with('+') {
        Identifier::phone(from)
    } else {
        match shared.directory().user(from) {
            Some(user) => Identifier::user(crate::acs::acs_user_id(&user.tenant, &user.id)),
            None => Identifier::from_raw_id(from),
        }
    };
    let caller = find_party(shared.directory(), &caller_identifier)
        .map_err(|e| AcsApiError::not_found(format!("from: {e}")))?;
    // 32 random bytes: a context nobody can guess, opaque to the bot.
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let context = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let server_call = server_call_id(&uuid::Uuid::new_v4().to_string());
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let data = IncomingCallData {
        to: to.clone(),
        from: caller.identifier.clone(),
        server_call_id: server_call.clone(),
        caller_display_name: Some(caller.display_name.clone()),
        incoming_call_context: context.clone(),
        correlation_id: correlation_id.clone(),
    };
    let subject = match &to {
        Identifier::PhoneNumber(n) => format!("/phonenumber/{}", n.trim_start_matches('+')),
        other => format!("/communicationUser/{}", other.raw_id()),
    };
    let event = EventGridEvent {
        id: uuid::Uuid::new_v4().to_string(),
        topic: Some(format!(
            "/subscriptions/emulator/resourceGroups/emulator/providers/Microsoft.Communication/communicationServices/{}",
            acs.resource.resource_id
        )),
        subject,
        data: serde_json::to_value(&data).map_err(|e| AcsApiError::internal(e.to_string()))?,
        event_type: INCOMING_CALL.into(),
        event_time: appmedia_acs::events::rfc3339(std::time::SystemTime::now()),
        metadata_version: Some("1".into()),
        data_version: Some("1.0".into()),
    };
    lock(&acs.ringing).insert(
        context.clone(),
        Ringing {
            caller,
            to,
            server_call_id: server_call.clone(),
            correlation_id,
        },
    );
    // The deadline: unanswered, the call is gone and its context with it.
    let timeout = shared.config.incoming_answer_timeout;
    let deadline_shared = shared.clone();
    let deadline_context = context.clone();
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        if lock(&deadline_shared.acs.ringing)
            .remove(&deadline_context)
            .is_some()
        {
            tracing::info!("an incoming ACS call was not answered in time");
        }
    });
    if let Err(e) = acs.events.notify_event_grid(&endpoint, &event).await {
        lock(&acs.ringing).remove(&context);
        return Err(AcsApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "BadGateway",
            format!("the Event Grid subscription {endpoint} did not take IncomingCall: {e}"),
        ));
    }
    tracing::info!(%server_call, "an incoming ACS call rings the bot");
    Ok(server_call)
}

/// The caller of ringing call `server_call_id` hangs up before the bot answered: its context
/// is gone, and a later answer is 404.
pub(crate) fn caller_hangs_up(shared: &Shared, server_call_id: &str) -> Result<(), AcsApiError> {
    let mut ringing = lock(&shared.acs.ringing);
    let context = ringing
        .iter()
        .find(|(_, r)| r.server_call_id == server_call_id)
        .map(|(c, _)| c.clone())
        .ok_or_else(|| {
            AcsApiError::not_found(format!("no incoming call {server_call_id} is ringing"))
        })?;
    ringing.remove(&context);
    tracing::info!(%server_call_id, "the caller hung up before the bot answered");
    Ok(())
}

fn take(shared: &Shared, context: &str) -> Result<Ringing, AcsApiError> {
    lock(&shared.acs.ringing).remove(context).ok_or_else(|| {
        AcsApiError::not_found(
            "incomingCallContext: no call is ringing with this context (answered, rejected, \
             redirected, unanswered in time or never issued)",
        )
    })
}

/// `POST /calling/callConnections:answer`.
pub(crate) fn answer(
    shared: &Arc<Shared>,
    request: AnswerCallRequest,
) -> Result<CallConnectionProperties, AcsApiError> {
    check_url(&request.callback_uri, "callbackUri", &["https", "http"])?;
    if let Some(options) = &request.media_streaming_options {
        check_streaming(options)?;
    }
    let ringing = take(shared, &request.incoming_call_context)?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut properties = start_call(
        shared,
        NewCall {
            callback_uri: request.callback_uri,
            operation_context: request.operation_context,
            streaming: request.media_streaming_options,
            source: ringing.caller.identifier.clone(),
            targets: Vec::new(),
            connected: vec![ringing.caller],
            source_caller_id_number: None,
            source_display_name: None,
            ids: CallIdentity {
                call_connection_id: id,
                server_call_id: ringing.server_call_id,
                correlation_id: ringing.correlation_id,
            },
        },
    )?;
    properties.targets = vec![ringing.to];
    Ok(properties)
}

/// `POST /calling/callConnections:reject`.
pub(crate) fn reject(shared: &Shared, request: RejectCallRequest) -> Result<(), AcsApiError> {
    let ringing = take(shared, &request.incoming_call_context)?;
    tracing::info!(caller = %ringing.caller.identifier, reason = ?request.call_reject_reason, "the bot rejected an incoming ACS call");
    Ok(())
}

/// `POST /calling/callConnections:redirect`: the caller now rings the target (which must
/// be someone the emulator knows).
pub(crate) fn redirect(shared: &Shared, request: RedirectCallRequest) -> Result<(), AcsApiError> {
    find_party(shared.directory(), &request.target)
        .map_err(|e| AcsApiError::bad_request(format!("target: {e}")))?;
    let ringing = take(shared, &request.incoming_call_context)?;
    tracing::info!(caller = %ringing.caller.identifier, target = %request.target, "the bot redirected an incoming ACS call");
    Ok(())
}
