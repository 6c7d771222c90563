//! The application permissions a create-call request (or an answer) needs, and the check
//! of a token's claims against them. The emulator enforces calls with the same function.

use std::fmt;
use std::str::FromStr;

use appmedia_model::{AnswerRequest, Call, MediaConfig};
use serde_json::Value;

use crate::validate::CreateCallKind;

/// A Graph permission a calling bot uses (application, or resource-specific consent): the
/// calling permissions, and reading online meetings before joining them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// `Calls.Initiate.All`: peer-to-peer calls, PSTN included.
    CallsInitiateAll,
    /// `Calls.InitiateGroupCall.All`: group calls.
    CallsInitiateGroupCallAll,
    /// `Calls.JoinGroupCall.All`: join meetings as the application.
    CallsJoinGroupCallAll,
    /// `Calls.JoinGroupCallAsGuest.All`: join meetings as a guest.
    CallsJoinGroupCallAsGuestAll,
    /// `Calls.JoinGroupCalls.Chat`: join the meetings of a chat (resource-specific consent).
    CallsJoinGroupCallsChat,
    /// `Calls.AccessMedia.All`: application-hosted media.
    CallsAccessMediaAll,
    /// `OnlineMeetings.Read.All`: Get onlineMeeting (with an application access policy).
    OnlineMeetingsReadAll,
    /// `OnlineMeetings.ReadWrite.All`: Get onlineMeeting too, and creating meetings.
    OnlineMeetingsReadWriteAll,
}

impl Permission {
    /// Every permission, in the order of the reference's table.
    pub const ALL: [Permission; 8] = [
        Permission::CallsInitiateAll,
        Permission::CallsInitiateGroupCallAll,
        Permission::CallsJoinGroupCallAll,
        Permission::CallsJoinGroupCallAsGuestAll,
        Permission::CallsJoinGroupCallsChat,
        Permission::CallsAccessMediaAll,
        Permission::OnlineMeetingsReadAll,
        Permission::OnlineMeetingsReadWriteAll,
    ];

    /// The name as it appears in a token's `roles` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::CallsInitiateAll => "Calls.Initiate.All",
            Permission::CallsInitiateGroupCallAll => "Calls.InitiateGroupCall.All",
            Permission::CallsJoinGroupCallAll => "Calls.JoinGroupCall.All",
            Permission::CallsJoinGroupCallAsGuestAll => "Calls.JoinGroupCallAsGuest.All",
            Permission::CallsJoinGroupCallsChat => "Calls.JoinGroupCalls.Chat",
            Permission::CallsAccessMediaAll => "Calls.AccessMedia.All",
            Permission::OnlineMeetingsReadAll => "OnlineMeetings.Read.All",
            Permission::OnlineMeetingsReadWriteAll => "OnlineMeetings.ReadWrite.All",
        }
    }

    /// True for the resource-specific permission (granted per chat by its owners).
    pub fn is_resource_specific(self) -> bool {
        self == Permission::CallsJoinGroupCallsChat
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a calling permission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Graph permission appmedia knows")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// Satisfied when any one of the permissions is granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnyOf(pub Vec<Permission>);

impl AnyOf {
    /// True when `granted` holds one of the permissions.
    pub fn is_satisfied_by(&self, granted: &[&str]) -> bool {
        self.0.iter().any(|p| granted.contains(&p.as_str()))
    }
}

impl fmt::Display for AnyOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("one of ")?;
                for (i, p) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a request needs: all of these, each satisfied by any of its permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredPermissions {
    /// The requirements; every one must be met.
    pub all_of: Vec<AnyOf>,
}

impl RequiredPermissions {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.all_of.is_empty()
    }

    /// The requirements `roles` does not meet (empty when the roles suffice).
    pub fn missing(&self, roles: &[&str]) -> Vec<AnyOf> {
        self.all_of
            .iter()
            .filter(|need| !need.is_satisfied_by(roles))
            .cloned()
            .collect()
    }

    /// True when `roles` meets every requirement.
    pub fn is_satisfied_by(&self, roles: &[&str]) -> bool {
        self.all_of.iter().all(|need| need.is_satisfied_by(roles))
    }
}

impl fmt::Display for RequiredPermissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all_of.is_empty() {
            return f.write_str("(none in particular: an application token)");
        }
        for (i, need) in self.all_of.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{need}")?;
        }
        Ok(())
    }
}

/// The application permissions a create-call request needs:
///
/// * peer-to-peer (PSTN included): `Calls.Initiate.All`;
/// * group call: `Calls.InitiateGroupCall.All`;
/// * meeting join: any of `Calls.JoinGroupCall.All`, `Calls.JoinGroupCallAsGuest.All`,
///   `Calls.JoinGroupCalls.Chat` (resource-specific);
/// * and `Calls.AccessMedia.All` when the bot hosts the media.
///
/// A request with neither targets nor meeting needs `Calls.Initiate.All` here (it is
/// refused by validation anyway).
pub fn required_permissions(call: &Call) -> RequiredPermissions {
    let initiate = match CreateCallKind::of(call) {
        CreateCallKind::PeerToPeer | CreateCallKind::Pstn | CreateCallKind::Empty => {
            AnyOf(vec![Permission::CallsInitiateAll])
        }
        CreateCallKind::GroupCall => AnyOf(vec![Permission::CallsInitiateGroupCallAll]),
        CreateCallKind::MeetingJoin => AnyOf(vec![
            Permission::CallsJoinGroupCallAll,
            Permission::CallsJoinGroupCallAsGuestAll,
            Permission::CallsJoinGroupCallsChat,
        ]),
    };
    let mut all_of = vec![initiate];
    if matches!(call.media_config.value(), Some(MediaConfig::AppHosted(_))) {
        all_of.push(AnyOf(vec![Permission::CallsAccessMediaAll]));
    }
    RequiredPermissions { all_of }
}

/// The application permissions answering an incoming call needs, as the v1.0 `call: answer`
/// reference gives them: an invitation to a group call or a meeting (the offered call carries
/// `chatInfo`/`meetingInfo`) needs `Calls.JoinGroupCall.All` or
/// `Calls.JoinGroupCallAsGuest.All`, a peer-to-peer call nothing; application-hosted media
/// also needs `Calls.AccessMedia.All`. The other actions need nothing extra: Graph checks
/// permissions when the call is created or answered, not on each action.
pub fn required_permissions_for_answer(
    answer: &AnswerRequest,
    group_invitation: bool,
) -> RequiredPermissions {
    let mut all_of = Vec::new();
    if group_invitation {
        all_of.push(AnyOf(vec![
            Permission::CallsJoinGroupCallAll,
            Permission::CallsJoinGroupCallAsGuestAll,
        ]));
    }
    if answer.is_app_hosted() {
        all_of.push(AnyOf(vec![Permission::CallsAccessMediaAll]));
    }
    RequiredPermissions { all_of }
}

/// Why a token may not make a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    /// A delegated (user) token: Graph calling accepts application tokens only.
    #[error(
        "delegated token (scp: {scp:?}): calls need an application token (client credentials) with roles"
    )]
    DelegatedToken {
        /// The token's `scp` claim.
        scp: String,
    },
    /// The claims are not a JSON object.
    #[error("the token's claims are not a JSON object")]
    ClaimsNotAnObject,
    /// No `roles` claim.
    #[error("the token has no roles claim; grant the application permissions {required}")]
    NoRoles {
        /// What the request needs.
        required: RequiredPermissions,
    },
    /// `roles` is not a list of strings.
    #[error("the token's roles claim is not a list of strings")]
    MalformedRoles,
    /// Some requirement is not met.
    #[error("missing application permission: {}; the token grants [{}]", join(.missing, " and "), .granted.join(", "))]
    Missing {
        /// The requirements not met.
        missing: Vec<AnyOf>,
        /// The roles the token has.
        granted: Vec<String>,
    },
}

fn join(needs: &[AnyOf], sep: &str) -> String {
    needs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// Checks a token's claims (the decoded JWT payload) against what a request needs:
/// refuses delegated tokens (those with an `scp` claim), then names each missing permission.
pub fn check_token_claims(
    claims: &Value,
    required: &RequiredPermissions,
) -> Result<(), PermissionError> {
    let claims = claims
        .as_object()
        .ok_or(PermissionError::ClaimsNotAnObject)?;
    if let Some(scp) = claims.get("scp") {
        return Err(PermissionError::DelegatedToken {
            scp: scp.as_str().map_or_else(|| scp.to_string(), str::to_owned),
        });
    }
    let roles = match claims.get("roles") {
        None | Some(Value::Null) => {
            return Err(PermissionError::NoRoles {
                required: required.clone(),
            });
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(PermissionError::MalformedRoles))
            .collect::<Result<Vec<&str>, _>>()?,
        Some(_) => return Err(PermissionError::MalformedRoles),
    };
    let missing = required.missing(&roles);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PermissionError::Missing {
            missing,
            granted: roles.into_iter().map(str::to_owned).collect(),
        })
    }
}
