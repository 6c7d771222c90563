//! Whether a create-call request is accepted: the body's shape, the signalling crate's
//! validation and permission check, and existence checks against the directory. Pure: no
//! I/O, so each refusal is unit-testable.

use appmedia_model::{Call, Identity, IdentitySet, MeetingInfo, Nullable, ODATA_TYPE};
use appmedia_signalling::permissions::{check_token_claims, required_permissions};
use appmedia_signalling::validate::{CreateCallKind, validate_create_call};
use axum::http::StatusCode;
use serde_json::Value;

use crate::directory::{Application, Directory, Meeting};
use crate::error::ApiError;
use crate::tokens::AccessClaims;

/// The `@odata.type` values a create-call body may carry.
pub const KNOWN_ODATA_TYPES: &[&str] = &[
    "#microsoft.graph.call",
    "#microsoft.graph.participantInfo",
    "#microsoft.graph.invitationParticipantInfo",
    "#microsoft.graph.identitySet",
    "#microsoft.graph.identity",
    "#microsoft.graph.communicationsIdentitySet",
    "#microsoft.graph.communicationsApplicationIdentity",
    "#microsoft.graph.communicationsApplicationInstanceIdentity",
    "#microsoft.graph.communicationsUserIdentity",
    "#microsoft.graph.communicationsPhoneIdentity",
    "#microsoft.graph.outgoingCallOptions",
    "#microsoft.graph.serviceHostedMediaConfig",
    "#microsoft.graph.appHostedMediaConfig",
    "#microsoft.graph.mediaInfo",
    "#microsoft.graph.chatInfo",
    "#microsoft.graph.organizerMeetingInfo",
    "#microsoft.graph.joinMeetingIdMeetingInfo",
    "#microsoft.graph.tokenMeetingInfo",
];

/// Who a called party is, resolved against the directory.
#[derive(Clone, Debug, PartialEq)]
pub enum Party {
    /// A directory user.
    User {
        /// User id.
        id: String,
        /// Display name.
        display_name: String,
    },
    /// A phone number.
    Phone {
        /// E.164 number.
        number: String,
    },
}

impl Party {
    /// True for the directory user `id`.
    pub fn is_user(&self, id: &str) -> bool {
        matches!(self, Party::User { id: user, .. } if user.eq_ignore_ascii_case(id))
    }

    /// The identity set Graph writes for this party.
    pub fn identity(&self) -> IdentitySet {
        match self {
            Party::User { id, display_name } => {
                IdentitySet::user(Identity::new(id).with_display_name(display_name))
            }
            Party::Phone { number } => IdentitySet::phone(Identity::new(number)),
        }
    }
}

/// An accepted create-call request.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The request, parsed.
    pub request: Call,
    /// Its kind.
    pub kind: CreateCallKind,
    /// The calling application.
    pub application: Application,
    /// The call's tenant (the request's `tenantId`, else the token's).
    pub tenant_id: String,
    /// The targets, resolved (empty for meetings).
    pub parties: Vec<Party>,
    /// The meeting joined.
    pub meeting: Option<Meeting>,
}

/// Checks every `@odata.type` in the body against [`KNOWN_ODATA_TYPES`].
pub fn check_odata_types(value: &Value, path: &str) -> Result<(), ApiError> {
    match value {
        Value::Object(map) => {
            if let Some(tag) = map.get(ODATA_TYPE) {
                let known = tag.as_str().is_some_and(|t| KNOWN_ODATA_TYPES.contains(&t));
                if !known {
                    let at = if path.is_empty() { "the body" } else { path };
                    return Err(ApiError::bad_request(format!(
                        "{at}: unknown @odata.type {tag}"
                    )));
                }
            }
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                check_odata_types(child, &child_path)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_odata_types(item, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

/// Decides on a create-call body (already within the size cap and of JSON content type).
pub fn admit(
    directory: &Directory,
    claims: &AccessClaims,
    body: &[u8],
) -> Result<Admitted, ApiError> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !document.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a #microsoft.graph.call object",
        ));
    }
    check_odata_types(&document, "")?;
    let request: Call = serde_json::from_value(document)
        .map_err(|e| ApiError::bad_request(format!("the body is not a call: {e}")))?;
    validate_create_call(&request).map_err(|e| ApiError::bad_request(e.to_string()))?;

    let kind = CreateCallKind::of(&request);
    // A meeting's chat may have granted the application resource-specific consent
    // (`Calls.JoinGroupCalls.Chat`): Graph counts it for that chat only, beside the roles.
    let chat = (kind == CreateCallKind::MeetingJoin)
        .then(|| resolve_meeting(directory, &request).ok())
        .flatten()
        .map(|meeting| meeting.thread_id.as_str());
    let rsc: Vec<&str> = chat
        .map(|chat| directory.rsc_permissions(&claims.app_id, chat).collect())
        .unwrap_or_default();
    let with_rsc;
    let token_claims = if rsc.is_empty() {
        &claims.all
    } else {
        with_rsc = with_roles(&claims.all, &rsc);
        &with_rsc
    };
    check_token_claims(token_claims, &required_permissions(&request))
        .map_err(crate::error::permission_error)?;

    let application = directory
        .application(&claims.app_id)
        .cloned()
        .ok_or_else(|| {
            ApiError::forbidden(format!(
                "application {} is not registered in this service's directory",
                claims.app_id
            ))
        })?;
    check_source(directory, &request, &application)?;

    // The call lives in the token's tenant; a body naming another is refused as Graph does
    // (a bot joins another tenant's meeting with a token for that tenant, which its
    // administrator's consent makes possible).
    let tenant_id = match request.tenant_id.value() {
        Some(tenant) => {
            let tenant = directory.tenant(tenant).ok_or_else(|| {
                ApiError::not_found(format!("tenantId: tenant {tenant:?} does not exist"))
            })?;
            if !tenant.id.eq_ignore_ascii_case(&claims.tenant_id) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "7505",
                    format!(
                        "Request authorization tenant mismatch: tenantId {} is not the token's tenant {}; get a token for tenant {} (its administrator must have consented to the application)",
                        tenant.id, claims.tenant_id, tenant.id
                    ),
                ));
            }
            tenant.id.clone()
        }
        None => claims.tenant_id.clone(),
    };

    let mut parties = Vec::new();
    let mut meeting = None;
    if kind == CreateCallKind::MeetingJoin {
        meeting = Some(resolve_meeting(directory, &request)?.clone());
    } else {
        for (i, target) in request.targets().iter().enumerate() {
            parties.push(resolve_target(directory, i, target.identity.value())?);
        }
    }
    Ok(Admitted {
        request,
        kind,
        application,
        tenant_id,
        parties,
        meeting,
    })
}

/// The token's claims with `extra` added to its `roles` (a delegated token, with `scp`, stays
/// refused as it was).
fn with_roles(claims: &Value, extra: &[&str]) -> Value {
    let mut claims = claims.clone();
    if let Some(map) = claims.as_object_mut() {
        let roles = map
            .entry("roles")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(roles) = roles {
            roles.extend(extra.iter().map(|r| Value::String((*r).to_owned())));
        }
    }
    claims
}

fn check_source(directory: &Directory, call: &Call, app: &Application) -> Result<(), ApiError> {
    let Some(identity) = call.source.value().and_then(|s| s.identity.value()) else {
        return Ok(());
    };
    if let Some(id) = identity.application.value().and_then(|i| i.id.value())
        && !id.eq_ignore_ascii_case(&app.id)
    {
        return Err(ApiError::forbidden(format!(
            "source.identity.application.id: {id} is not the calling application {}",
            app.id
        )));
    }
    if let Some(id) = identity
        .application_instance
        .value()
        .and_then(|i| i.id.value())
    {
        let instance = directory.application_instance(id).ok_or_else(|| {
            ApiError::not_found(format!(
                "source.identity.applicationInstance.id: application instance {id} does not exist"
            ))
        })?;
        if !instance.application.eq_ignore_ascii_case(&app.id) {
            return Err(ApiError::forbidden(format!(
                "source.identity.applicationInstance.id: instance {id} belongs to application {}, not to {}",
                instance.application, app.id
            )));
        }
    }
    Ok(())
}

pub(crate) fn resolve_target(
    directory: &Directory,
    index: usize,
    identity: Option<&IdentitySet>,
) -> Result<Party, ApiError> {
    let field = |kind: &str| format!("targets[{index}].identity.{kind}.id");
    let id_of = |i: &Nullable<Identity>| i.value().and_then(|i| i.id.value()).cloned();
    let Some(identity) = identity else {
        return Err(ApiError::bad_request(format!(
            "targets[{index}].identity: missing"
        )));
    };
    if let Some(id) = id_of(&identity.user) {
        let user = directory.user(&id).ok_or_else(|| {
            ApiError::not_found(format!("{}: user {id} does not exist", field("user")))
        })?;
        return Ok(Party::User {
            id: user.id.clone(),
            display_name: user.display_name.clone(),
        });
    }
    if let Some(number) = id_of(&identity.phone) {
        directory.phone(&number).ok_or_else(|| {
            ApiError::not_found(format!(
                "{}: phone number {number} is not reachable",
                field("phone")
            ))
        })?;
        return Ok(Party::Phone { number });
    }
    Err(ApiError::bad_request(format!(
        "targets[{index}].identity: the emulator calls users and phone numbers only"
    )))
}

fn resolve_meeting<'d>(directory: &'d Directory, call: &Call) -> Result<&'d Meeting, ApiError> {
    match call.meeting_info.value() {
        Some(MeetingInfo::Organizer(info)) => {
            let organizer = info
                .organizer
                .value()
                .and_then(|o| o.user.value())
                .and_then(|u| u.id.value())
                .ok_or_else(|| ApiError::bad_request("meetingInfo.organizer.user.id: missing"))?;
            let thread = call
                .chat_info
                .value()
                .and_then(|c| c.thread_id.value())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "chatInfo.threadId: joining by organizer needs the meeting's chat thread",
                    )
                })?;
            let meeting = directory.meeting_by_thread(thread).ok_or_else(|| {
                ApiError::not_found(format!(
                    "chatInfo.threadId: meeting {thread} does not exist"
                ))
            })?;
            if !meeting.organizer.eq_ignore_ascii_case(organizer) {
                return Err(ApiError::not_found(format!(
                    "meetingInfo.organizer.user.id: {organizer} does not organize meeting {thread}"
                )));
            }
            Ok(meeting)
        }
        Some(MeetingInfo::JoinMeetingId(info)) => {
            let id = info
                .join_meeting_id
                .value()
                .map(String::as_str)
                .unwrap_or_default();
            let meeting = directory.meeting_by_join_id(id).ok_or_else(|| {
                ApiError::not_found(format!(
                    "meetingInfo.joinMeetingId: meeting {id} does not exist"
                ))
            })?;
            match (info.passcode.value(), meeting.passcode.as_deref()) {
                (Some(given), expected) if Some(given.as_str()) != expected => {
                    Err(ApiError::forbidden(format!(
                        "meetingInfo.passcode: {given:?} is not the passcode of meeting {id}"
                    )))
                }
                (None, _) if meeting.passcode_required => Err(ApiError::forbidden(format!(
                    "meetingInfo.passcode: meeting {id} needs its passcode"
                ))),
                _ => Ok(meeting),
            }
        }
        // Graph keeps join links by token to certified Cloud Video Interop solutions; no
        // application of the emulator's directory is one.
        Some(MeetingInfo::Token(_)) => Err(ApiError::forbidden(
            "meetingInfo: tokenMeetingInfo joins are for certified Cloud Video Interop \
             solutions for Microsoft Teams, and this application is not one; join with \
             organizerMeetingInfo + chatInfo or joinMeetingIdMeetingInfo",
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "meetingInfo: {} is not supported by the emulator (use organizerMeetingInfo or joinMeetingIdMeetingInfo)",
            other.odata_type().unwrap_or("an untyped meetingInfo")
        ))),
        None => Err(ApiError::bad_request("meetingInfo: missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_odata_types_are_named_with_their_path() {
        let body = json!({"@odata.type": "#microsoft.graph.call",
            "mediaConfig": {"@odata.type": "#microsoft.graph.fancyMediaConfig"}});
        let err = check_odata_types(&body, "").unwrap_err();
        assert!(err.message.contains("mediaConfig"), "{}", err.message);
        assert!(err.message.contains("fancyMediaConfig"), "{}", err.message);
        let body = json!({"targets": [{"identity": {"@odata.type": 3}}]});
        let err = check_odata_types(&body, "").unwrap_err();
        assert!(
            err.message.contains("targets[0].identity"),
            "{}",
            err.message
        );
        assert!(check_odata_types(&json!({"@odata.type": "#microsoft.graph.call"}), "").is_ok());
    }
}
