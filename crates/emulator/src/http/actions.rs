//! The HTTP side of Graph's in-call actions: `transfer`, `participants/invite`, `mute`,
//! `unmute`, `participants/{id}/mute`, `DELETE participants/{id}`, `keepAlive`,
//! `subscribeToTone`, `sendDtmfTones`, `recordResponse`, `updateRecordingStatus`,
//! `changeScreenSharingRole`, and the download of a response recording.
//!
//! Each handler checks what it can on its own (the token, the call belongs to the caller's
//! application — else 404 —, the body and its fields, the directory), then hands the action to
//! the call's driver (`driver::actions`), which owns the roster and the timers and answers
//! with the outcome: a refusal (400 not established, 409 transfer in progress, 404 unknown
//! participant…) or the go-ahead, after which its notifications follow.

use std::sync::Arc;
use std::time::Duration;

use appmedia_media::dtmf::Tone;
use appmedia_model::{
    Identity, IdentitySet, InvitationParticipantInfo, MediaConfig, OperationStatus,
    RecordingStatus, ScreenSharingRole,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::oneshot;

use crate::admission::Party;
use crate::calls::Shared;
use crate::calls::driver::actions::{CallAction, ReleasedParty, Reply};
use crate::calls::driver::invite::InviteAction;
use crate::calls::driver::transfer::TransferAction;
use crate::calls::driver::{Action, Control};
use crate::directory::Directory;
use crate::error::ApiError;
use crate::http::requests::{
    ChangeScreenSharingRoleRequest, ClientContextRequest, InviteParticipantsRequest,
    SendDtmfTonesRequest, TransferRequest, UpdateRecordingStatusRequest, client_context, read_body,
};
use crate::http::{authenticate, request_id, with_call};
use crate::operations::{Operation, OperationKind};
use crate::tokens::AccessClaims;

/// Graph's limit on participants invited in one request.
pub const MAX_INVITED: usize = 5;
/// Keys one `sendDtmfTones` may carry (Graph states none; a bound keeps a request finite).
pub const MAX_TONES: usize = 64;
/// The longest `delayBetweenTonesMs` accepted.
pub const MAX_TONE_DELAY_MS: i32 = 10_000;
/// `delayBetweenTonesMs` when the request has none: enough for a receiver to tell two equal
/// keys apart.
pub const DEFAULT_TONE_DELAY: Duration = Duration::from_millis(100);
/// How long a handler waits for the call's driver (it answers at once unless the call is
/// going away).
const DRIVER_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The action routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    let call = "/v1.0/communications/calls/{id}";
    Router::new()
        .route(&format!("{call}/transfer"), post(transfer))
        .route(&format!("{call}/participants/invite"), post(invite))
        .route(&format!("{call}/mute"), post(mute))
        .route(&format!("{call}/unmute"), post(unmute))
        .route(
            &format!("{call}/participants/{{participant}}"),
            get(get_participant).delete(remove_participant),
        )
        .route(
            &format!("{call}/participants/{{participant}}/mute"),
            post(mute_participant),
        )
        .route(&format!("{call}/keepAlive"), post(keep_alive))
        .route(
            &format!("{call}/subscribeToTone"),
            post(crate::http::service_actions::subscribe_to_tone),
        )
        .route(&format!("{call}/sendDtmfTones"), post(send_dtmf_tones))
        .route(
            &format!("{call}/recordResponse"),
            post(crate::http::service_actions::record_response),
        )
        .route(
            &format!("{call}/updateRecordingStatus"),
            post(update_recording_status),
        )
        .route(
            &format!("{call}/changeScreenSharingRole"),
            post(change_screen_sharing_role),
        )
        .route(
            "/recordings/{operation}",
            get(crate::http::service_actions::download),
        )
}

/// The response, or the error in Graph's shape with the request's id.
pub(crate) fn respond(headers: &HeaderMap, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        tracing::info!(status = %e.status, message = %e.message, "call action refused");
        e.into_response_with(&request_id(headers))
    })
}

/// 404 for a call that ended while the action was on its way.
fn gone(id: &str) -> ApiError {
    ApiError::not_found(format!("call {id} does not exist"))
}

/// Hands `make`'s action to call `id`'s driver and waits for its answer.
pub(crate) async fn act<T>(
    shared: &Shared,
    claims: &AccessClaims,
    id: &str,
    make: impl FnOnce(Reply<T>) -> CallAction,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    let action = make(tx);
    with_call(shared, claims, id, |record| {
        record
            .control
            .send(Control::Action(Action(Box::new(action))))
            .is_ok()
    })?
    .then_some(())
    .ok_or_else(|| gone(id))?;
    match tokio::time::timeout(DRIVER_REPLY_TIMEOUT, rx).await {
        Ok(Ok(result)) => result,
        // The driver ended (the call terminated) before it got to the action.
        Ok(Err(_)) => Err(gone(id)),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("call {id} did not take the action in time"),
        )),
    }
}

/// A directory user or phone named by `identity`, with its behaviour; 400 naming `field`.
pub(crate) fn resolve_party(
    directory: &Directory,
    field: &str,
    identity: Option<&IdentitySet>,
) -> Result<ReleasedParty, ApiError> {
    let Some(identity) = identity else {
        return Err(ApiError::bad_request(format!("{field}: required")));
    };
    let id_of = |i: &appmedia_model::Nullable<appmedia_model::Identity>| {
        i.value().and_then(|i| i.id.value()).cloned()
    };
    if let Some(id) = id_of(&identity.user) {
        let user = directory.user(&id).ok_or_else(|| {
            ApiError::bad_request(format!("{field}.user.id: user {id} does not exist"))
        })?;
        return Ok(ReleasedParty {
            party: Party::User {
                id: user.id.clone(),
                display_name: user.display_name.clone(),
            },
            behaviour: user.behaviour.clone(),
        });
    }
    if let Some(number) = id_of(&identity.phone) {
        let phone = directory.phone(&number).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{field}.phone.id: phone number {number} is not reachable"
            ))
        })?;
        return Ok(ReleasedParty {
            party: Party::Phone {
                number: phone.number.clone(),
            },
            behaviour: phone.behaviour.clone(),
        });
    }
    Err(ApiError::bad_request(format!(
        "{field}: the emulator reaches directory users (user.id) and phone numbers (phone.id) only"
    )))
}

/// An invited participant as the service shows it in the operation: the request's, its
/// identity resolved (a user's display name, tenant and identity provider; a phone's number).
fn resolved_invitation(
    directory: &Directory,
    asked: &InvitationParticipantInfo,
    party: &Party,
) -> InvitationParticipantInfo {
    let identity = match party {
        Party::User { id, display_name } => {
            let mut user = Identity::new(id).with_display_name(display_name);
            if let Some(tenant) = directory.user(id).map(|u| u.tenant.clone()) {
                user = user.with_tenant_id(tenant);
            }
            user.extra.insert("identityProvider".into(), "AAD".into());
            IdentitySet::user(user)
        }
        Party::Phone { number } => IdentitySet::phone(Identity::new(number)),
    };
    InvitationParticipantInfo {
        odata_type: InvitationParticipantInfo::ODATA_TYPE.to_owned().into(),
        identity: identity.into(),
        ..asked.clone()
    }
}

/// The roster key of a resolved party (user id or phone number).
fn key_of(party: &Party) -> String {
    match party {
        Party::User { id, .. } => id.clone(),
        Party::Phone { number } => number.clone(),
    }
}

/// Takes `key` out of the bot's other call `other` (`replacesCallId` at `field`).
async fn take_from(
    shared: &Shared,
    claims: &AccessClaims,
    this: &str,
    other: &str,
    field: &str,
    key: String,
) -> Result<ReleasedParty, ApiError> {
    if other == this {
        return Err(ApiError::bad_request(format!(
            "{field}: {other} is this call; it must name another call of the application"
        )));
    }
    with_call(shared, claims, other, |_| ()).map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: {other} is not a call of this application"
        ))
    })?;
    act(shared, claims, other, |reply| CallAction::Release {
        key,
        reply,
    })
    .await
    .map_err(|e| ApiError {
        message: format!(
            "{field}: {}",
            e.message.trim_start_matches("replacesCallId: ")
        ),
        ..e
    })
}

async fn transfer(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = transfer_inner(&shared, &id, &headers, body).await;
    respond(&headers, result)
}

async fn transfer_inner(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    with_call(shared, &claims, id, |_| ())?;
    let request: TransferRequest = read_body(shared, headers, body).await?;
    let target = request
        .transfer_target
        .value()
        .ok_or_else(|| ApiError::bad_request("transferTarget: required"))?;
    let identity = target.identity.value();
    let mut resolved = resolve_party(shared.directory(), "transferTarget.identity", identity)?;
    let transferee = match request.transferee.value() {
        None => None,
        Some(t) => Some(t.participant_id.value().cloned().ok_or_else(|| {
            ApiError::bad_request("transferee.participantId: required with transferee")
        })?),
    };
    let consultative = match target.replaces_call_id.value() {
        Some(other) => {
            let key = key_of(&resolved.party);
            resolved = take_from(
                shared,
                &claims,
                id,
                other,
                "transferTarget.replacesCallId",
                key,
            )
            .await?;
            true
        }
        None => false,
    };
    act(shared, &claims, id, |reply| {
        CallAction::Transfer(TransferAction {
            target: resolved,
            transferee,
            consultative,
            reply,
        })
    })
    .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn invite(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = invite_inner(&shared, &id, &headers, body).await;
    respond(&headers, result)
}

async fn invite_inner(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    with_call(shared, &claims, id, |_| ())?;
    let request: InviteParticipantsRequest = read_body(shared, headers, body).await?;
    let context = client_context(&request.client_context)?;
    let participants = request.participants.value().cloned().unwrap_or_default();
    if participants.is_empty() || participants.len() > MAX_INVITED {
        return Err(ApiError::bad_request(format!(
            "participants: {} participants; 1 to {MAX_INVITED} may be invited at once",
            participants.len()
        )));
    }
    // Graph reads only the first participant when it replaces a call.
    let replaces = participants[0].replaces_call_id.value().cloned();
    let invited = match &replaces {
        Some(_) => &participants[..1],
        None => &participants[..],
    };
    let mut targets = Vec::with_capacity(invited.len());
    for (i, p) in invited.iter().enumerate() {
        let field = format!("participants[{i}].identity");
        targets.push(resolve_party(
            shared.directory(),
            &field,
            p.identity.value(),
        )?);
    }
    if let Some(other) = replaces {
        let key = key_of(&targets[0].party);
        targets[0] = take_from(
            shared,
            &claims,
            id,
            &other,
            "participants[0].replacesCallId",
            key,
        )
        .await?;
    }
    let resolved: Vec<InvitationParticipantInfo> = invited
        .iter()
        .zip(&targets)
        .map(|(asked, target)| resolved_invitation(shared.directory(), asked, &target.party))
        .collect();
    let operation = Operation::new(
        OperationKind::InviteParticipants,
        OperationStatus::Running,
        context,
    )
    .with(|o| o.participants = resolved.into());
    let replaced = invited[0].replaces_call_id.is_value();
    act(shared, &claims, id, |reply| {
        CallAction::Invite(InviteAction {
            operation: operation.clone(),
            targets,
            replaced,
            reply,
        })
    })
    .await?;
    Ok(operation.answer(&shared.base_url, id))
}

async fn mute(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = mute_bot(&shared, &id, &headers, body, true).await;
    respond(&headers, result)
}

async fn unmute(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = mute_bot(&shared, &id, &headers, body, false).await;
    respond(&headers, result)
}

async fn mute_bot(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    muted: bool,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    with_call(shared, &claims, id, |_| ())?;
    let request: ClientContextRequest = read_body(shared, headers, body).await?;
    let context = client_context(&request.client_context)?;
    act(shared, &claims, id, |reply| CallAction::MuteBot {
        muted,
        reply,
    })
    .await?;
    let kind = if muted {
        OperationKind::MuteParticipant
    } else {
        OperationKind::UnmuteParticipant
    };
    Ok(Operation::new(kind, OperationStatus::Completed, context).answer(&shared.base_url, id))
}

async fn mute_participant(
    State(shared): State<Arc<Shared>>,
    Path((id, participant_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let request: ClientContextRequest = read_body(&shared, &headers, body).await?;
        let context = client_context(&request.client_context)?;
        act(&shared, &claims, &id, |reply| CallAction::MuteParticipant {
            participant_id,
            reply,
        })
        .await?;
        Ok(Operation::new(
            OperationKind::MuteParticipant,
            OperationStatus::Completed,
            context,
        )
        .answer(&shared.base_url, &id))
    }
    .await;
    respond(&headers, result)
}

async fn get_participant(
    State(shared): State<Arc<Shared>>,
    Path((id, participant_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = authenticate(&shared, &headers).and_then(|claims| {
        with_call(&shared, &claims, &id, |record| {
            record
                .participants
                .iter()
                .find(|p| p.id.value().is_some_and(|p| *p == participant_id))
                .cloned()
        })?
        .map(|p| axum::Json(p).into_response())
        .ok_or_else(|| {
            ApiError::not_found(format!("participant {participant_id} is not in this call"))
        })
    });
    respond(&headers, result)
}

async fn remove_participant(
    State(shared): State<Arc<Shared>>,
    Path((id, participant_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        act(&shared, &claims, &id, |reply| {
            CallAction::RemoveParticipant {
                participant_id,
                reply,
            }
        })
        .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(&headers, result)
}

async fn keep_alive(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = authenticate(&shared, &headers).and_then(|claims| {
        with_call(&shared, &claims, &id, |record| {
            record
                .control
                .send(Control::Action(Action(Box::new(CallAction::KeepAlive))))
                .is_ok()
        })?
        .then_some(())
        .ok_or_else(|| gone(&id))?;
        Ok(StatusCode::OK.into_response())
    });
    respond(&headers, result)
}

async fn send_dtmf_tones(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let request: SendDtmfTonesRequest = read_body(&shared, &headers, body).await?;
        let context = client_context(&request.client_context)?;
        let tones = parse_tones(request.tones.value().map(Vec::as_slice))?;
        let gap = match request.delay_between_tones_ms.value() {
            None => DEFAULT_TONE_DELAY,
            Some(ms) if (0..=MAX_TONE_DELAY_MS).contains(ms) => {
                Duration::from_millis(u64::from(ms.unsigned_abs()))
            }
            Some(ms) => {
                return Err(ApiError::bad_request(format!(
                    "delayBetweenTonesMs: {ms} is outside 0 to {MAX_TONE_DELAY_MS}"
                )));
            }
        };
        let operation = Operation::new(
            OperationKind::SendDtmfTones,
            OperationStatus::Running,
            context,
        );
        act(&shared, &claims, &id, |reply| CallAction::SendTones {
            operation: operation.clone(),
            tones,
            gap,
            reply,
        })
        .await?;
        Ok(operation.answer(&shared.base_url, &id))
    }
    .await;
    respond(&headers, result)
}

/// `tones` of `sendDtmfTones`: Graph's tone names (`tone0`…`tone9`, `star`, `pound`,
/// `a`…`d`, `flash`).
fn parse_tones(tones: Option<&[appmedia_model::Tone]>) -> Result<Vec<Tone>, ApiError> {
    let tones = tones.unwrap_or_default();
    if tones.is_empty() || tones.len() > MAX_TONES {
        return Err(ApiError::bad_request(format!(
            "tones: {} tones; 1 to {MAX_TONES} may be sent at once",
            tones.len()
        )));
    }
    tones
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let name = name.as_str();
            Tone::from_graph_name(name).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "tones[{i}]: {name:?} is not a tone (tone0-tone9, star, pound, a-d, flash)"
                ))
            })
        })
        .collect()
}

async fn update_recording_status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let request: UpdateRecordingStatusRequest = read_body(&shared, &headers, body).await?;
        let context = client_context(&request.client_context)?;
        let status = match request.status.value() {
            Some(
                s @ (RecordingStatus::NotRecording
                | RecordingStatus::Recording
                | RecordingStatus::Failed),
            ) => s.as_str().to_owned(),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "status: {other:?} is not notRecording, recording or failed"
                )));
            }
            None => return Err(ApiError::bad_request("status: required")),
        };
        act(&shared, &claims, &id, |reply| CallAction::RecordingStatus {
            status,
            reply,
        })
        .await?;
        Ok(Operation::new(
            OperationKind::UpdateRecordingStatus,
            OperationStatus::Completed,
            context,
        )
        .answer(&shared.base_url, &id))
    }
    .await;
    respond(&headers, result)
}

async fn change_screen_sharing_role(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        let app_hosted = with_call(&shared, &claims, &id, |r| {
            matches!(
                r.resource.media_config.value(),
                Some(MediaConfig::AppHosted(_))
            )
        })?;
        let request: ChangeScreenSharingRoleRequest = read_body(&shared, &headers, body).await?;
        let sharer = match request.role.value() {
            Some(ScreenSharingRole::Sharer) => true,
            Some(ScreenSharingRole::Viewer) => false,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "role: {other:?} is not viewer or sharer"
                )));
            }
            None => return Err(ApiError::bad_request("role: required")),
        };
        if !app_hosted {
            return Err(ApiError::bad_request(
                "changeScreenSharingRole is supported only for calls created with \
                 appHostedMediaConfig",
            ));
        }
        act(&shared, &claims, &id, |reply| {
            CallAction::ScreenSharingRole { sharer, reply }
        })
        .await?;
        Ok(StatusCode::ACCEPTED.into_response())
    }
    .await;
    respond(&headers, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_are_graph_names_and_bounded() {
        let names: Vec<appmedia_model::Tone> = ["tone1", "pound", "a"]
            .map(appmedia_model::Tone::from)
            .to_vec();
        assert_eq!(
            parse_tones(Some(&names)).unwrap(),
            vec![Tone::Tone1, Tone::Pound, Tone::A]
        );
        assert!(
            parse_tones(Some(&["#".into()]))
                .unwrap_err()
                .message
                .starts_with("tones[0]")
        );
        assert!(parse_tones(None).unwrap_err().message.starts_with("tones:"));
        let many = vec![appmedia_model::Tone::Tone1; MAX_TONES + 1];
        assert!(parse_tones(Some(&many)).is_err());
    }

    #[test]
    fn parties_resolve_against_the_directory_naming_the_field() {
        let d = Directory::seed();
        let phone = IdentitySet::phone(appmedia_model::Identity::new("+12345678901"));
        let p = resolve_party(&d, "transferTarget.identity", Some(&phone)).unwrap();
        assert_eq!(key_of(&p.party), "+12345678901");
        let nobody = IdentitySet::phone(appmedia_model::Identity::new("+10000000000"));
        let e = resolve_party(&d, "participants[1].identity", Some(&nobody)).unwrap_err();
        assert!(
            e.message.starts_with("participants[1].identity.phone.id"),
            "{e}"
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = resolve_party(&d, "transferTarget.identity", None).unwrap_err();
        assert_eq!(e.message, "transferTarget.identity: required");
    }
}
