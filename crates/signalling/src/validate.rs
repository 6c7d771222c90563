//! Checks a create-call request, and the bodies of the call-control actions, before any
//! I/O, refusing what the service would refuse.

use std::fmt;
use std::net::IpAddr;

use appmedia_model::{Call, MediaConfig, MeetingInfo, Nullable};
use url::{Host, Url};

mod actions;

pub use actions::{
    validate_answer, validate_invite_participants, validate_record_response, validate_redirect,
    validate_reject, validate_send_dtmf_tones, validate_transfer,
};

/// The most targets a bot may invite to a group call it creates.
pub const MAX_GROUP_CALL_TARGETS: usize = 5;

/// The longest `ringingTimeoutInSeconds` the service accepts.
pub const MAX_RINGING_TIMEOUT_SECONDS: u32 = 115;

/// The most targets of one redirect (a simultaneous ring).
pub const MAX_REDIRECT_TARGETS: usize = 25;

/// The range of a redirect's `timeout`, in seconds.
pub const REDIRECT_TIMEOUT_SECONDS: std::ops::RangeInclusive<i32> = 15..=90;

/// What a create-call request asks for, as far as validation and permissions care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateCallKind {
    /// One target that is not a phone number (a Teams user, an application, ...).
    PeerToPeer,
    /// One target that is a phone number (PSTN, peer-to-peer).
    Pstn,
    /// Several targets and no meeting: a group call created by the bot.
    GroupCall,
    /// A `meetingInfo`: joining an existing meeting.
    MeetingJoin,
    /// Neither targets nor a meeting (invalid).
    Empty,
}

impl CreateCallKind {
    /// Classifies a create-call request.
    pub fn of(call: &Call) -> Self {
        let targets = call.targets();
        if call.meeting_info.is_value() {
            CreateCallKind::MeetingJoin
        } else {
            match targets {
                [] => CreateCallKind::Empty,
                [only] if phone_of(only).is_some() => CreateCallKind::Pstn,
                [_] => CreateCallKind::PeerToPeer,
                _ => CreateCallKind::GroupCall,
            }
        }
    }
}

impl fmt::Display for CreateCallKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CreateCallKind::PeerToPeer => "peer-to-peer call",
            CreateCallKind::Pstn => "peer-to-peer PSTN call",
            CreateCallKind::GroupCall => "group call",
            CreateCallKind::MeetingJoin => "meeting join",
            CreateCallKind::Empty => "call with neither targets nor meeting",
        })
    }
}

fn phone_of(
    target: &appmedia_model::InvitationParticipantInfo,
) -> Option<&appmedia_model::Identity> {
    target.identity.value()?.phone.value()
}

/// One reason the service would refuse a create-call request; each names its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No `callbackUri`.
    #[error("callbackUri: missing; the service needs a URL to post the call's notifications to")]
    MissingCallbackUri,
    /// `callbackUri` is not an absolute URL.
    #[error("callbackUri: {value:?} is not an absolute URL ({reason})")]
    InvalidCallbackUri {
        /// The value sent.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// `callbackUri` is not https, and not http on a loopback host.
    #[error(
        "callbackUri: {value:?} must use https (http is allowed only for loopback hosts: 127.0.0.0/8, ::1, localhost)"
    )]
    CallbackUriNotHttps {
        /// The value sent.
        value: String,
    },
    /// Neither targets nor a meeting to join.
    #[error("targets: a call needs at least one target, or a meetingInfo to join a meeting")]
    NoTargetsOrMeeting,
    /// A group call with too many targets.
    #[error(
        "targets: a group call created by a bot may invite at most {MAX_GROUP_CALL_TARGETS} participants, this one invites {count}"
    )]
    TooManyGroupTargets {
        /// How many targets the request has.
        count: usize,
    },
    /// A target that does not say who it is.
    #[error(
        "{field}: a target needs an identity (user, application, applicationInstance, phone, guest, ...)"
    )]
    TargetWithoutIdentity {
        /// Where, e.g. `targets[1].identity`.
        field: String,
    },
    /// A phone target whose id is not E.164.
    #[error(
        "{field}: {value:?} is not an E.164 phone number ('+' then up to 15 digits, the first not 0)"
    )]
    PhoneNotE164 {
        /// Where, e.g. `targets[0].identity.phone.id`.
        field: String,
        /// The value sent.
        value: String,
    },
    /// A call to a phone number whose source is not an application instance.
    #[error(
        "source.identity.applicationInstance: a call to a phone number must come from an application instance (the bot's resource account with a phone number)"
    )]
    PstnWithoutApplicationInstance,
    /// No `mediaConfig`.
    #[error("mediaConfig: missing; say whether the service or the bot hosts the media")]
    MissingMediaConfig,
    /// `appHostedMediaConfig` without a blob.
    #[error("mediaConfig.blob: application-hosted media needs the media session's blob")]
    AppHostedMediaWithoutBlob,
    /// A `joinMeetingId` that is not a string of digits.
    #[error("meetingInfo.joinMeetingId: {value:?} is not a string of digits")]
    JoinMeetingIdNotDigits {
        /// The value sent (empty when missing).
        value: String,
    },
    /// A meeting join without `tenantId`.
    #[error("tenantId: joining a meeting needs the meeting's tenantId")]
    MeetingJoinWithoutTenantId,
    /// A join by organizer (`organizerMeetingInfo`) without the meeting's chat thread or
    /// message id, which name the meeting together with its organizer.
    #[error(
        "{field}: joining a meeting by its organizer needs chatInfo's threadId and messageId (from Get onlineMeeting)"
    )]
    MeetingJoinWithoutChatInfo {
        /// `chatInfo.threadId` or `chatInfo.messageId`.
        field: &'static str,
    },
    /// The call's `tenantId` is not the tenant of the meeting's organizer: a meeting is joined
    /// in the tenant it is scheduled in.
    #[error(
        "tenantId: {tenant} is not the organizer's tenant {organizer_tenant}; join a meeting in the tenant it is scheduled in"
    )]
    MeetingTenantMismatch {
        /// The call's `tenantId`.
        tenant: String,
        /// `meetingInfo.organizer.user.tenantId`.
        organizer_tenant: String,
    },
    /// `ringingTimeoutInSeconds` above the service's maximum.
    #[error(
        "ringingTimeoutInSeconds: {value} is more than the {MAX_RINGING_TIMEOUT_SECONDS} s the service allows"
    )]
    RingingTimeoutTooLong {
        /// The value sent.
        value: u32,
    },
    /// `requestedModalities` missing or empty.
    #[error("requestedModalities: must list at least one modality (e.g. \"audio\")")]
    EmptyRequestedModalities,
    /// `acceptedModalities` of an answer missing or empty.
    #[error("acceptedModalities: an answer must accept at least one modality (e.g. \"audio\")")]
    EmptyAcceptedModalities,
    /// A redirect with no targets, or more than the service rings at once.
    #[error("targets: a redirect needs 1 to {MAX_REDIRECT_TARGETS} targets, this one has {count}")]
    RedirectTargetCount {
        /// How many targets the request has.
        count: usize,
    },
    /// A redirect `timeout` outside 15..=90 seconds.
    #[error("timeout: {value} s is outside the 15 to 90 s a redirect may ring")]
    RedirectTimeoutOutOfRange {
        /// The value sent.
        value: i32,
    },
    /// A transfer without `transferTarget`.
    #[error("transferTarget: a transfer needs the participant to transfer the call to")]
    MissingTransferTarget,
    /// An invitation of nobody.
    #[error("participants: an invitation needs at least one participant")]
    NoParticipants,
    /// A sendDtmfTones without tones.
    #[error("tones: sendDtmfTones needs at least one tone")]
    NoTones,
    /// A recordResponse duration that is zero or negative.
    #[error("{field}: {value} s is not a positive duration")]
    NonPositiveDuration {
        /// Which duration, e.g. `maxRecordDurationInSeconds`.
        field: &'static str,
        /// The value sent.
        value: i32,
    },
}

impl ValidationError {
    /// The JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::MissingCallbackUri
            | ValidationError::InvalidCallbackUri { .. }
            | ValidationError::CallbackUriNotHttps { .. } => "callbackUri",
            ValidationError::NoTargetsOrMeeting | ValidationError::TooManyGroupTargets { .. } => {
                "targets"
            }
            ValidationError::PhoneNotE164 { field, .. }
            | ValidationError::TargetWithoutIdentity { field } => field,
            ValidationError::PstnWithoutApplicationInstance => {
                "source.identity.applicationInstance"
            }
            ValidationError::MissingMediaConfig => "mediaConfig",
            ValidationError::AppHostedMediaWithoutBlob => "mediaConfig.blob",
            ValidationError::JoinMeetingIdNotDigits { .. } => "meetingInfo.joinMeetingId",
            ValidationError::MeetingJoinWithoutTenantId
            | ValidationError::MeetingTenantMismatch { .. } => "tenantId",
            ValidationError::MeetingJoinWithoutChatInfo { field } => field,
            ValidationError::RingingTimeoutTooLong { .. } => "ringingTimeoutInSeconds",
            ValidationError::EmptyRequestedModalities => "requestedModalities",
            ValidationError::EmptyAcceptedModalities => "acceptedModalities",
            ValidationError::RedirectTargetCount { .. } => "targets",
            ValidationError::RedirectTimeoutOutOfRange { .. } => "timeout",
            ValidationError::MissingTransferTarget => "transferTarget",
            ValidationError::NoParticipants => "participants",
            ValidationError::NoTones => "tones",
            ValidationError::NonPositiveDuration { field, .. } => field,
        }
    }
}

/// Every reason a request is refused (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// The errors.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// True when one of the errors is about `field`.
    pub fn names_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field() == field)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks a create-call request (`POST /communications/calls` body) and returns every
/// reason the service would refuse it. Pure: no I/O.
pub fn validate_create_call(call: &Call) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    check_callback_uri(&call.callback_uri, &mut errors);

    let targets = call.targets();
    let kind = CreateCallKind::of(call);
    match kind {
        CreateCallKind::Empty => errors.push(ValidationError::NoTargetsOrMeeting),
        CreateCallKind::GroupCall if targets.len() > MAX_GROUP_CALL_TARGETS => {
            errors.push(ValidationError::TooManyGroupTargets {
                count: targets.len(),
            })
        }
        _ => {}
    }
    for (i, target) in targets.iter().enumerate() {
        check_invitation(target, &format!("targets[{i}]"), &mut errors);
    }
    // Any phone target (alone, or among a group's) is reached through the PSTN,
    // which only an application instance with a phone number can call from.
    if targets.iter().any(|t| phone_of(t).is_some()) {
        let has_instance = call
            .source
            .value()
            .and_then(|source| source.identity.value())
            .is_some_and(|identity| identity.application_instance.is_value());
        if !has_instance {
            errors.push(ValidationError::PstnWithoutApplicationInstance);
        }
    }

    check_media_config(&call.media_config, &mut errors);

    if let Some(meeting) = call.meeting_info.value() {
        if let MeetingInfo::JoinMeetingId(info) = meeting {
            let value = info
                .join_meeting_id
                .value()
                .map(String::as_str)
                .unwrap_or_default();
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                errors.push(ValidationError::JoinMeetingIdNotDigits {
                    value: value.to_owned(),
                });
            }
        }
        let tenant = call.tenant_id.value().filter(|tenant| !tenant.is_empty());
        if tenant.is_none() {
            errors.push(ValidationError::MeetingJoinWithoutTenantId);
        }
        if let MeetingInfo::Organizer(info) = meeting {
            let chat = call.chat_info.value();
            let has = |id: Option<&Nullable<String>>| {
                id.and_then(Nullable::value)
                    .is_some_and(|id| !id.is_empty())
            };
            if !has(chat.map(|c| &c.thread_id)) {
                errors.push(ValidationError::MeetingJoinWithoutChatInfo {
                    field: "chatInfo.threadId",
                });
            }
            if !has(chat.map(|c| &c.message_id)) {
                errors.push(ValidationError::MeetingJoinWithoutChatInfo {
                    field: "chatInfo.messageId",
                });
            }
            let organizer_tenant = info
                .organizer
                .value()
                .and_then(|organizer| organizer.user.value())
                .and_then(|user| user.tenant_id.value())
                .filter(|t| !t.is_empty());
            if let (Some(tenant), Some(organizer_tenant)) = (tenant, organizer_tenant)
                && !tenant.eq_ignore_ascii_case(organizer_tenant)
            {
                errors.push(ValidationError::MeetingTenantMismatch {
                    tenant: tenant.clone(),
                    organizer_tenant: organizer_tenant.clone(),
                });
            }
        }
    }

    if let Some(&value) = call.ringing_timeout_in_seconds.value()
        && value > MAX_RINGING_TIMEOUT_SECONDS
    {
        errors.push(ValidationError::RingingTimeoutTooLong { value });
    }

    if call
        .requested_modalities
        .value()
        .is_none_or(|modalities| modalities.is_empty())
    {
        errors.push(ValidationError::EmptyRequestedModalities);
    }

    into_result(errors)
}

pub(crate) fn into_result(errors: Vec<ValidationError>) -> Result<(), ValidationErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// An invitation (a target, a transfer target, an invited participant) must say who it
/// is, and a phone number must be E.164. `field` is where it sits, e.g. `targets[0]`.
pub(crate) fn check_invitation(
    target: &appmedia_model::InvitationParticipantInfo,
    field: &str,
    errors: &mut Vec<ValidationError>,
) {
    if target.identity.value().is_none_or(is_empty_identity_set) {
        errors.push(ValidationError::TargetWithoutIdentity {
            field: format!("{field}.identity"),
        });
    }
    if let Some(phone) = phone_of(target) {
        let value = phone.id.value().map(String::as_str).unwrap_or_default();
        if !is_e164(value) {
            errors.push(ValidationError::PhoneNotE164 {
                field: format!("{field}.identity.phone.id"),
                value: value.to_owned(),
            });
        }
    }
}

/// A media config must be there, and app-hosted media must carry its blob.
pub(crate) fn check_media_config(
    media_config: &Nullable<MediaConfig>,
    errors: &mut Vec<ValidationError>,
) {
    match media_config.value() {
        None => errors.push(ValidationError::MissingMediaConfig),
        Some(MediaConfig::AppHosted(config)) => {
            if config.blob.value().is_none_or(|blob| blob.is_empty()) {
                errors.push(ValidationError::AppHostedMediaWithoutBlob);
            }
        }
        Some(_) => {}
    }
}

/// True when a set names nobody: no known identity slot and no other property
/// (an identity kind this model does not name would be in `extra`).
fn is_empty_identity_set(set: &appmedia_model::IdentitySet) -> bool {
    [
        &set.user,
        &set.application,
        &set.application_instance,
        &set.phone,
        &set.guest,
        &set.device,
    ]
    .iter()
    .all(|slot| !slot.is_value())
        && set.extra.is_empty()
}

pub(crate) fn check_callback_uri(uri: &Nullable<String>, errors: &mut Vec<ValidationError>) {
    let Some(value) = uri.value() else {
        errors.push(ValidationError::MissingCallbackUri);
        return;
    };
    let url = match Url::parse(value) {
        Ok(url) => url,
        Err(e) => {
            errors.push(ValidationError::InvalidCallbackUri {
                value: value.clone(),
                reason: e.to_string(),
            });
            return;
        }
    };
    if !is_https_or_loopback(&url) {
        errors.push(ValidationError::CallbackUriNotHttps {
            value: value.clone(),
        });
    }
}

/// `https` to any host, or plain `http` to a loopback one: where a secret or a notification
/// may go without crossing a network in clear.
pub fn is_https_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => url.host().is_some_and(|host| is_loopback(&host)),
        _ => false,
    }
}

/// Loopback hosts, where plain http cannot leave the machine: 127.0.0.0/8, ::1, localhost.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// E.164: '+', then 1 to 15 digits, the first (the country code's) not 0.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (1..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164() {
        for good in ["+12345678901", "+33123456789", "+1"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "12345678901",
            "+",
            "+0123456",
            "+1234567890123456",
            "+1 234 567",
            "+1-234",
            "tel:+1234",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        let host = |s: &str| Url::parse(s).unwrap().host().unwrap().to_owned();
        assert!(is_loopback(&Host::Domain("LocalHost")));
        for uri in [
            "http://127.0.0.1/",
            "http://127.9.8.7:8080/",
            "http://[::1]:3000/cb",
        ] {
            let h = host(uri);
            let h = match &h {
                Host::Domain(d) => Host::Domain(d.as_str()),
                Host::Ipv4(ip) => Host::Ipv4(*ip),
                Host::Ipv6(ip) => Host::Ipv6(*ip),
            };
            assert!(is_loopback(&h), "{uri}");
        }
        assert!(!is_loopback(&Host::Domain("localhost.contoso.com")));
        assert!(!is_loopback(&Host::Ipv4("10.0.0.1".parse().unwrap())));
        assert!(!is_loopback(&Host::Ipv6("::2".parse().unwrap())));
    }
}
