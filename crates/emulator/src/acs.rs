//! The emulated Azure Communication Services resource, as every layer speaks of it: its
//! access key and phone number, the ACS identities of the directory's people, and ACS's
//! error body (`{"error":{"code","message"}}`).

use appmedia_acs::Identifier;
use appmedia_acs::hmac::AccessKey;
use appmedia_acs::models::ErrorResponse;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::directory::{Behaviour, Directory};

/// The `iss` of the JWT the emulator puts on the CloudEvents it posts (ACS's own).
pub const EVENTS_ISSUER: &str = "https://acscallautomation.communication.azure.com";
/// The ACS resource's own phone number when the configuration names none.
pub const DEFAULT_PHONE_NUMBER: &str = "+18005550100";

/// The emulated resource: what signs requests to it and what it calls from.
#[derive(Clone, Debug)]
pub struct AcsResource {
    /// The resource's access key (a new one every run).
    pub access_key: AccessKey,
    /// The resource's phone number: `sourceCallerIdNumber` of PSTN calls, and what callers dial.
    pub phone_number: String,
    /// The resource's immutable id: the `aud` of event tokens.
    pub resource_id: String,
}

/// The ACS user id of directory user `user_id` of tenant `tenant`: `8:acs:{tenant}_{user id}`
/// (ACS ids are `8:acs:{resource}_{id}`; the tenant stands for the resource, so the ids are
/// the same every run and can be printed with the directory).
pub fn acs_user_id(tenant: &str, user_id: &str) -> String {
    format!("8:acs:{tenant}_{user_id}")
}

/// Someone the emulated resource can call, found in the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct AcsParty {
    /// How ACS names them (the identifier the bot used, normalised).
    pub identifier: Identifier,
    /// A name for people and the conference.
    pub display_name: String,
    /// A phone (heard through the phone line) rather than a user.
    pub is_phone: bool,
    /// What they do when called.
    pub behaviour: Behaviour,
}

/// Why an identifier does not name anyone the emulator can ring.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnknownParty {
    /// Not a directory phone.
    #[error("phone number {0} is not in the emulator's directory")]
    Phone(String),
    /// Not a directory user.
    #[error("{0} is not a user of the emulator's directory")]
    User(String),
    /// A kind the emulator does not ring.
    #[error("{0} is not a phone number, ACS user or Teams user the emulator can call")]
    Kind(String),
}

/// Finds the person `identifier` names: a directory phone (`4:`), a directory user by ACS id
/// (`8:acs:{tenant}_{user}`) or by Teams object id (`8:orgid:{user}`).
pub fn find_party(
    directory: &Directory,
    identifier: &Identifier,
) -> Result<AcsParty, UnknownParty> {
    match identifier {
        Identifier::PhoneNumber(number) => directory
            .phone(number)
            .map(|phone| AcsParty {
                identifier: Identifier::phone(phone.number.clone()),
                display_name: phone.number.clone(),
                is_phone: true,
                behaviour: phone.behaviour.clone(),
            })
            .ok_or_else(|| UnknownParty::Phone(number.clone())),
        Identifier::CommunicationUser(id) => directory
            .users
            .iter()
            .find(|u| acs_user_id(&u.tenant, &u.id).eq_ignore_ascii_case(id))
            .map(|u| AcsParty {
                identifier: Identifier::user(acs_user_id(&u.tenant, &u.id)),
                display_name: u.display_name.clone(),
                is_phone: false,
                behaviour: u.behaviour.clone(),
            })
            .ok_or_else(|| UnknownParty::User(id.clone())),
        Identifier::MicrosoftTeamsUser { user_id, .. } => directory
            .user(user_id)
            .map(|u| AcsParty {
                identifier: Identifier::teams_user(u.id.clone()),
                display_name: u.display_name.clone(),
                is_phone: false,
                behaviour: u.behaviour.clone(),
            })
            .ok_or_else(|| UnknownParty::User(user_id.clone())),
        other => Err(UnknownParty::Kind(other.raw_id())),
    }
}

/// A refused ACS request: the status and ACS's error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct AcsApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
}

impl AcsApiError {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AcsApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `Denied`, as ACS refuses a request whose HMAC does not verify.
    pub fn denied(reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Denied",
            format!("Denied by the resource provider: {reason}"),
        )
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 409 `Conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// 500: the emulator failed, not the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }

    /// The body.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse::new(self.code, self.message.clone())
    }
}

impl IntoResponse for AcsApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_people_by_every_acs_name() {
        let directory = Directory::seed();
        let user = &directory.users[0];
        let by_acs = Identifier::user(acs_user_id(&user.tenant, &user.id));
        let by_teams = Identifier::teams_user(user.id.clone());
        assert_eq!(
            find_party(&directory, &by_acs).unwrap().display_name,
            user.display_name
        );
        assert_eq!(
            find_party(&directory, &by_teams).unwrap().display_name,
            user.display_name
        );
        let phone = &directory.phones[0];
        assert!(
            find_party(&directory, &Identifier::phone(phone.number.clone()))
                .unwrap()
                .is_phone
        );
        assert!(matches!(
            find_party(&directory, &Identifier::phone("+19999999999")),
            Err(UnknownParty::Phone(_))
        ));
        assert!(matches!(
            find_party(&directory, &Identifier::Unknown("9:x".into())),
            Err(UnknownParty::Kind(_))
        ));
    }
}
