//! Graph's Get onlineMeeting for the directory's meetings — where the seed says a bot reads a
//! meeting's thread id, message id, organizer and tenant before it joins:
//!
//! * `GET /v1.0/users/{organizer}/onlineMeetings?$filter=JoinWebUrl eq '{link}'`
//! * `GET /v1.0/users/{organizer}/onlineMeetings?$filter=joinMeetingIdSettings/joinMeetingId eq '{id}'`
//! * `GET /v1.0/users/{organizer}/onlineMeetings/{meeting id}`
//!
//! With Graph's permission model for application tokens: the application permission
//! `OnlineMeetings.Read.All` (or `.ReadWrite.All`) **and** an application access policy that
//! covers the organizer (the directory's `online_meetings_policy`: user ids, or `"*"` for a
//! tenant-wide policy). The token's tenant must be the meeting's. A filter other than those
//! two is Graph's 400; an unknown meeting 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};

use crate::calls::Shared;
use crate::directory::Meeting;
use crate::error::ApiError;
use crate::http::{authenticate_for, request_id};
use crate::tokens::AccessClaims;
use appmedia_signalling::permissions::{AnyOf, Permission, RequiredPermissions};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1.0/users/{user}/onlineMeetings", get(list))
        .route("/v1.0/users/{user}/onlineMeetings/{id}", get(by_id))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let claims = allowed(&shared, &headers, &user)?;
        let filter = query.filter.as_deref().unwrap_or_default();
        let wanted = Filter::parse(filter)?;
        let found: Vec<Value> = organised_by(&shared, &claims, &user)
            .filter(|m| wanted.matches(m))
            .map(|m| resource(m, &shared))
            .collect();
        Ok(json!({
            "@odata.context": format!("{}/v1.0/$metadata#users('{user}')/onlineMeetings", shared.base_url),
            "value": found,
        }))
    })();
    respond(result, &headers)
}

async fn by_id(
    State(shared): State<Arc<Shared>>,
    Path((user, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let claims = allowed(&shared, &headers, &user)?;
        organised_by(&shared, &claims, &user)
            .find(|m| meeting_id(m) == id)
            .map(|m| resource(m, &shared))
            .ok_or_else(|| ApiError::not_found(format!("onlineMeeting {id} not found")))
    })();
    respond(result, &headers)
}

fn respond(result: Result<Value, ApiError>, headers: &HeaderMap) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response_with(&request_id(headers)),
    }
}

/// The caller's claims when it may read `user`'s meetings: a read permission and an access
/// policy covering the user.
fn allowed(shared: &Shared, headers: &HeaderMap, user: &str) -> Result<AccessClaims, ApiError> {
    let read = RequiredPermissions {
        all_of: vec![AnyOf(vec![
            Permission::OnlineMeetingsReadAll,
            Permission::OnlineMeetingsReadWriteAll,
        ])],
    };
    let claims = authenticate_for(shared, headers, &read)?;
    let policy = shared
        .directory()
        .application(&claims.app_id)
        .map(|a| a.online_meetings_policy.clone())
        .unwrap_or_default();
    if !policy.iter().any(|p| p == "*" || p == user) {
        return Err(ApiError::forbidden(
            "No application access policy found for this app.",
        ));
    }
    Ok(claims)
}

/// The directory's meetings organised by `user` in the token's tenant.
fn organised_by<'a>(
    shared: &'a Shared,
    claims: &'a AccessClaims,
    user: &'a str,
) -> impl Iterator<Item = &'a Meeting> + 'a {
    shared
        .directory()
        .meetings
        .iter()
        .filter(move |m| m.organizer == user && m.tenant == claims.tenant_id)
}

/// Graph's meeting id: base64 of `1*{organizer}*0**{thread id}`.
pub(crate) fn meeting_id(meeting: &Meeting) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("1*{}*0**{}", meeting.organizer, meeting.thread_id))
}

/// The `onlineMeeting` resource of a directory meeting.
fn resource(meeting: &Meeting, shared: &Shared) -> Value {
    let organizer_name = shared
        .directory()
        .users
        .iter()
        .find(|u| u.id == meeting.organizer)
        .map(|u| u.display_name.clone());
    json!({
        "id": meeting_id(meeting),
        "joinWebUrl": meeting.join_url(),
        "subject": null,
        "chatInfo": {
            "threadId": meeting.thread_id,
            "messageId": "0",
            "replyChainMessageId": null,
        },
        "joinMeetingIdSettings": {
            "isPasscodeRequired": meeting.passcode_required,
            "joinMeetingId": meeting.join_meeting_id,
            "passcode": meeting.passcode,
        },
        "participants": {
            "organizer": {
                "role": "presenter",
                "upn": null,
                "identity": {
                    "user": {
                        "id": meeting.organizer,
                        "displayName": organizer_name,
                        "tenantId": meeting.tenant,
                    },
                },
            },
            "attendees": [],
        },
    })
}

/// The two `$filter` forms the seed's flows use.
#[derive(Debug, PartialEq)]
enum Filter {
    JoinWebUrl(String),
    JoinMeetingId(String),
}

impl Filter {
    fn parse(filter: &str) -> Result<Filter, ApiError> {
        let unsupported = || {
            ApiError::bad_request(format!(
                "Invalid filter clause: {filter:?}; supported: JoinWebUrl eq '…' and \
                 joinMeetingIdSettings/joinMeetingId eq '…'"
            ))
        };
        let (property, rest) = filter.trim().split_once(' ').ok_or_else(unsupported)?;
        let value = rest
            .trim()
            .strip_prefix("eq ")
            .map(str::trim)
            .and_then(|v| v.strip_prefix('\''))
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(unsupported)?;
        // OData escapes a quote inside a string literal by doubling it.
        if value.replace("''", "").contains('\'') {
            return Err(unsupported());
        }
        let value = value.replace("''", "'");
        if property.eq_ignore_ascii_case("JoinWebUrl") {
            Ok(Filter::JoinWebUrl(value))
        } else if property.eq_ignore_ascii_case("joinMeetingIdSettings/joinMeetingId") {
            Ok(Filter::JoinMeetingId(value))
        } else {
            Err(unsupported())
        }
    }

    fn matches(&self, meeting: &Meeting) -> bool {
        match self {
            // The same meeting whatever the link's encoding details (case of the escapes,
            // context field order): compare what the links say.
            Filter::JoinWebUrl(link) => appmedia_signalling::join_url::TeamsJoinLink::parse(link)
                .is_ok_and(|l| {
                    l.thread_id == meeting.thread_id
                        && l.organizer_id == meeting.organizer
                        && l.tenant_id == meeting.tenant
                }),
            Filter::JoinMeetingId(id) => *id == meeting.join_meeting_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_filter_forms_parse_and_others_are_refused() {
        assert_eq!(
            Filter::parse("JoinWebUrl eq 'https://x/y?a=''b'''").unwrap(),
            Filter::JoinWebUrl("https://x/y?a='b'".into())
        );
        assert_eq!(
            Filter::parse("joinMeetingIdSettings/joinMeetingId eq '1234567'").unwrap(),
            Filter::JoinMeetingId("1234567".into())
        );
        for bad in [
            "",
            "subject eq 'x'",
            "JoinWebUrl ne 'x'",
            "JoinWebUrl eq x",
            "JoinWebUrl eq 'a'b'",
        ] {
            let err = Filter::parse(bad).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
