//! The call-control actions on ACS: each [`CallControl`](crate::CallControl) action mapped
//! onto its Call Automation request. An action returns as Graph's do (an operation running,
//! whose end comes as [`Event::Operation`](crate::Event) with the same client context).

use appmedia_acs::identifier::Identifier;
use appmedia_acs::models::{
    AddParticipantRequest, ContinuousDtmfRecognitionRequest, MuteParticipantsRequest, PhoneNumber,
    PlayRequest, PlaySource, RemoveParticipantRequest, SendDtmfTonesRequest, TransferRequest,
    tone_name,
};
use appmedia_model::{
    Call as CallResource, CommsOperation, InvitationParticipantInfo, OperationStatus, Tone,
};

use crate::acs::backend::AcsBackend;
use crate::acs::calls::{identifier_of, target_identifier};
use crate::call::Target;
use crate::error::BotError;

/// A fresh operation context: what ties an action to the events of its end.
fn context() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The operation an accepted action reports (its end comes as an event).
fn running(odata_type: &str, context: String) -> CommsOperation {
    CommsOperation {
        odata_type: odata_type.to_owned().into(),
        id: context.clone().into(),
        status: OperationStatus::Running.into(),
        client_context: context.into(),
        ..CommsOperation::default()
    }
}

/// Who the bot talks with: the first target of a call it placed, the caller of one it
/// answered. DTMF and recognition need a participant on ACS.
pub(crate) fn peer_of(resource: &CallResource) -> Result<Identifier, BotError> {
    let target = resource
        .targets
        .value()
        .and_then(|t| t.first())
        .and_then(|t| t.identity.value());
    let source = resource.source.value().and_then(|s| s.identity.value());
    let outgoing = resource.direction.value() == Some(&appmedia_model::CallDirection::Outgoing);
    let identity = if outgoing { target } else { source.or(target) };
    identity
        .map(identifier_of)
        .transpose()?
        .ok_or(BotError::Protocol(
            "the call has no other party to address".into(),
        ))
}

/// `DELETE /calling/callConnections/{id}`; a call the service no longer knows is not an error.
pub(crate) async fn hang_up(acs: &AcsBackend, id: &str) -> Result<(), BotError> {
    match acs.client.hang_up(id).await {
        Ok(()) => Ok(()),
        Err(e) if e.status() == Some(404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Blind transfer to `target` (and, in a group call, of `transferee`).
pub(crate) async fn transfer(
    acs: &AcsBackend,
    id: &str,
    target: Identifier,
    transferee: Option<Identifier>,
) -> Result<(), BotError> {
    acs.client
        .transfer(
            id,
            &TransferRequest {
                target_participant: target,
                transferee,
                operation_context: Some(context()),
            },
        )
        .await?;
    Ok(())
}

/// A Graph transfer request on ACS: its target and transferee; a consultative transfer
/// (`replacesCallId`) has no equivalent.
pub(crate) async fn transfer_request(
    acs: &AcsBackend,
    id: &str,
    request: &appmedia_model::TransferRequest,
) -> Result<(), BotError> {
    let target = request
        .transfer_target
        .value()
        .ok_or(BotError::Protocol("the transfer has no target".into()))?;
    if target.replaces_call_id.value().is_some() {
        return Err(BotError::Unsupported {
            backend: "acs",
            capability: "consultative transfer (replacesCallId)",
        });
    }
    let transferee = request
        .transferee
        .value()
        .and_then(|p| p.identity.value())
        .map(identifier_of)
        .transpose()?;
    transfer(
        acs,
        id,
        target_identifier(Target::Participant(target.clone()))?,
        transferee,
    )
    .await
}

/// Invites each participant (`participants:add`, one request each).
pub(crate) async fn invite(
    acs: &AcsBackend,
    id: &str,
    participants: &[InvitationParticipantInfo],
) -> Result<CommsOperation, BotError> {
    if participants
        .iter()
        .any(|p| p.replaces_call_id.value().is_some())
    {
        return Err(BotError::Unsupported {
            backend: "acs",
            capability: "an invitation replacing another call (replacesCallId)",
        });
    }
    let operation = context();
    for p in participants {
        let identifier = target_identifier(Target::Participant(p.clone()))?;
        let caller_id = identifier
            .phone_number()
            .and(acs.service.phone_number.clone())
            .map(|value| PhoneNumber { value });
        acs.client
            .add_participant(
                id,
                &AddParticipantRequest {
                    participant_to_add: identifier,
                    source_caller_id_number: caller_id,
                    invitation_timeout_in_seconds: None,
                    operation_context: Some(operation.clone()),
                },
            )
            .await?;
    }
    Ok(running(CommsOperation::INVITE_PARTICIPANTS, operation))
}

/// Mutes a participant (its roster id is its raw id).
pub(crate) async fn mute_participant(
    acs: &AcsBackend,
    id: &str,
    participant_id: &str,
) -> Result<CommsOperation, BotError> {
    let operation = context();
    acs.client
        .mute_participants(
            id,
            &MuteParticipantsRequest {
                target_participants: vec![Identifier::from_raw_id(participant_id)],
                operation_context: Some(operation.clone()),
            },
        )
        .await?;
    let mut op = running(CommsOperation::MUTE_PARTICIPANT, operation);
    // Muting answers at once on ACS: no event follows.
    op.status = OperationStatus::Completed.into();
    Ok(op)
}

/// Removes a participant.
pub(crate) async fn remove_participant(
    acs: &AcsBackend,
    id: &str,
    participant_id: &str,
) -> Result<(), BotError> {
    acs.client
        .remove_participant(
            id,
            &RemoveParticipantRequest {
                participant_to_remove: Identifier::from_raw_id(participant_id),
                operation_context: Some(context()),
            },
        )
        .await?;
    Ok(())
}

/// Graph's `playPrompt` as ACS's `play` of the prompts' files, to everyone.
pub(crate) async fn play_prompt(
    acs: &AcsBackend,
    id: &str,
    request: &appmedia_model::PlayPromptRequest,
) -> Result<CommsOperation, BotError> {
    let mut sources = Vec::new();
    for prompt in request
        .prompts
        .value()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let uri = prompt
            .media_info
            .value()
            .and_then(|m| m.uri.value())
            .ok_or(BotError::Unsupported {
                backend: "acs",
                capability: "a prompt that is not a media file URI",
            })?;
        sources.push(PlaySource::file(uri.clone()));
    }
    if sources.is_empty() {
        return Err(BotError::Protocol("playPrompt without prompts".into()));
    }
    let operation = request
        .client_context
        .value()
        .cloned()
        .unwrap_or_else(context);
    acs.client
        .play(
            id,
            &PlayRequest {
                play_sources: sources,
                play_to: Vec::new(),
                play_options: None,
                operation_context: Some(operation.clone()),
            },
        )
        .await?;
    Ok(running(CommsOperation::PLAY_PROMPT, operation))
}

/// Key presses as events: continuous DTMF recognition on the call's other party.
pub(crate) async fn subscribe_to_tone(
    acs: &AcsBackend,
    id: &str,
    resource: &CallResource,
) -> Result<CommsOperation, BotError> {
    let operation = context();
    acs.client
        .start_continuous_dtmf_recognition(
            id,
            &ContinuousDtmfRecognitionRequest {
                target_participant: peer_of(resource)?,
                operation_context: Some(operation.clone()),
            },
        )
        .await?;
    let mut op = running(CommsOperation::SUBSCRIBE_TO_TONE, operation);
    op.status = OperationStatus::Completed.into();
    Ok(op)
}

/// Tones sent by the service to the call's other party.
pub(crate) async fn send_dtmf_tones(
    acs: &AcsBackend,
    id: &str,
    resource: &CallResource,
    tones: &[Tone],
) -> Result<CommsOperation, BotError> {
    let names = tones
        .iter()
        .map(|tone| {
            let key = match tone {
                Tone::Star => '*',
                Tone::Pound => '#',
                other => other
                    .as_str()
                    .strip_prefix("tone")
                    .unwrap_or(other.as_str())
                    .chars()
                    .next()
                    .unwrap_or('?'),
            };
            tone_name(key)
                .map(str::to_owned)
                .ok_or(BotError::Unsupported {
                    backend: "acs",
                    capability: "a tone other than 0-9, *, #, A-D",
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let operation = context();
    acs.client
        .send_dtmf_tones(
            id,
            &SendDtmfTonesRequest {
                tones: names,
                target_participant: peer_of(resource)?,
                operation_context: Some(operation.clone()),
            },
        )
        .await?;
    Ok(running(CommsOperation::SEND_DTMF_TONES, operation))
}

/// Stops every play and recognition of the service.
pub(crate) async fn cancel_media(acs: &AcsBackend, id: &str) -> Result<CommsOperation, BotError> {
    acs.client.cancel_all_media_operations(id).await?;
    let mut op = running(CommsOperation::CANCEL_MEDIA_PROCESSING, context());
    op.status = OperationStatus::Completed.into();
    Ok(op)
}
