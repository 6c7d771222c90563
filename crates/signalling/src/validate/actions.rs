//! Checks of the call-control action bodies: what the service refuses, refused before any I/O.
//!
//! Only what the reference pages state is checked; everything else is left to the service.

use appmedia_model::{
    AnswerRequest, InviteParticipantsRequest, Nullable, RecordResponseRequest, RedirectRequest,
    RejectRequest, SendDtmfTonesRequest, TransferRequest,
};

use super::{
    MAX_REDIRECT_TARGETS, REDIRECT_TIMEOUT_SECONDS, ValidationError, ValidationErrors,
    check_callback_uri, check_invitation, check_media_config, into_result,
};

/// `answer`: the service requires `callbackUri` (https), `mediaConfig` (with its blob when
/// app-hosted) and at least one accepted modality.
pub fn validate_answer(request: &AnswerRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    check_callback_uri(&request.callback_uri, &mut errors);
    check_media_config(&request.media_config, &mut errors);
    if request
        .accepted_modalities
        .value()
        .is_none_or(|modalities| modalities.is_empty())
    {
        errors.push(ValidationError::EmptyAcceptedModalities);
    }
    into_result(errors)
}

/// `reject`: only a `callbackUri`, when given, must be https.
pub fn validate_reject(request: &RejectRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    check_optional_callback_uri(&request.callback_uri, &mut errors);
    into_result(errors)
}

/// `redirect`: 1 to 25 targets, each saying who it is; `timeout`, when given, 15 to 90 s;
/// `callbackUri`, when given, https.
pub fn validate_redirect(request: &RedirectRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let targets = request.targets();
    if targets.is_empty() || targets.len() > MAX_REDIRECT_TARGETS {
        errors.push(ValidationError::RedirectTargetCount {
            count: targets.len(),
        });
    }
    for (i, target) in targets.iter().enumerate() {
        check_invitation(target, &format!("targets[{i}]"), &mut errors);
    }
    if let Some(&value) = request.timeout.value()
        && !REDIRECT_TIMEOUT_SECONDS.contains(&value)
    {
        errors.push(ValidationError::RedirectTimeoutOutOfRange { value });
    }
    check_optional_callback_uri(&request.callback_uri, &mut errors);
    into_result(errors)
}

/// `transfer`: a `transferTarget` that says who it is.
pub fn validate_transfer(request: &TransferRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    match request.transfer_target.value() {
        None => errors.push(ValidationError::MissingTransferTarget),
        Some(target) => check_invitation(target, "transferTarget", &mut errors),
    }
    into_result(errors)
}

/// `participants/invite`: at least one participant, each saying who it is.
pub fn validate_invite_participants(
    request: &InviteParticipantsRequest,
) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let participants = request.participants();
    if participants.is_empty() {
        errors.push(ValidationError::NoParticipants);
    }
    for (i, participant) in participants.iter().enumerate() {
        check_invitation(participant, &format!("participants[{i}]"), &mut errors);
    }
    into_result(errors)
}

/// `sendDtmfTones`: at least one tone.
pub fn validate_send_dtmf_tones(request: &SendDtmfTonesRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    if request.tones().is_empty() {
        errors.push(ValidationError::NoTones);
    }
    into_result(errors)
}

/// `recordResponse`: the three durations, when given, positive.
pub fn validate_record_response(request: &RecordResponseRequest) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    for (field, value) in [
        (
            "initialSilenceTimeoutInSeconds",
            &request.initial_silence_timeout_in_seconds,
        ),
        (
            "maxSilenceTimeoutInSeconds",
            &request.max_silence_timeout_in_seconds,
        ),
        (
            "maxRecordDurationInSeconds",
            &request.max_record_duration_in_seconds,
        ),
    ] {
        if let Some(&value) = value.value()
            && value <= 0
        {
            errors.push(ValidationError::NonPositiveDuration { field, value });
        }
    }
    into_result(errors)
}

fn check_optional_callback_uri(uri: &Nullable<String>, errors: &mut Vec<ValidationError>) {
    if uri.is_value() {
        check_callback_uri(uri, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_model::{
        AppHostedMediaConfig, Identity, IdentitySet, InvitationParticipantInfo, MediaConfig,
        Modality, Tone,
    };

    fn user(id: &str) -> InvitationParticipantInfo {
        InvitationParticipantInfo::new(IdentitySet::user(Identity::new(id)))
    }

    #[test]
    fn answer_needs_callback_media_and_modalities() {
        let errors = validate_answer(&AnswerRequest::default()).unwrap_err();
        for field in ["callbackUri", "mediaConfig", "acceptedModalities"] {
            assert!(errors.names_field(field), "{field}: {errors}");
        }
        let no_blob = AnswerRequest::new(
            "https://bot.contoso.com/cb",
            MediaConfig::AppHosted(AppHostedMediaConfig::default()),
            vec![Modality::Audio],
        );
        assert!(
            validate_answer(&no_blob)
                .unwrap_err()
                .names_field("mediaConfig.blob")
        );
        let good = AnswerRequest::new(
            "https://bot.contoso.com/cb",
            MediaConfig::AppHosted(AppHostedMediaConfig::new("{}")),
            vec![Modality::Audio],
        );
        assert_eq!(validate_answer(&good), Ok(()));
    }

    #[test]
    fn redirect_bounds_targets_and_timeout() {
        let none = validate_redirect(&RedirectRequest::new(Vec::new())).unwrap_err();
        assert!(none.names_field("targets"));
        let many = RedirectRequest::new((0..26).map(|i| user(&format!("u{i}"))).collect());
        assert_eq!(
            validate_redirect(&many).unwrap_err().errors(),
            &[ValidationError::RedirectTargetCount { count: 26 }]
        );
        let max = RedirectRequest::new((0..25).map(|i| user(&format!("u{i}"))).collect());
        assert_eq!(validate_redirect(&max), Ok(()));
        for (timeout, ok) in [(14, false), (15, true), (90, true), (91, false)] {
            let mut request = RedirectRequest::new(vec![user("u")]);
            request.timeout = timeout.into();
            assert_eq!(validate_redirect(&request).is_ok(), ok, "{timeout}");
        }
        let mut http = RedirectRequest::new(vec![user("u")]);
        http.callback_uri = "http://bot.contoso.com/cb".to_owned().into();
        assert!(
            validate_redirect(&http)
                .unwrap_err()
                .names_field("callbackUri")
        );
    }

    #[test]
    fn transfer_invite_tones_and_durations() {
        assert!(
            validate_transfer(&TransferRequest::default())
                .unwrap_err()
                .names_field("transferTarget")
        );
        let nobody = InvitationParticipantInfo::default();
        assert!(
            validate_transfer(&TransferRequest::new(nobody))
                .unwrap_err()
                .names_field("transferTarget.identity")
        );
        assert!(
            validate_invite_participants(&InviteParticipantsRequest::default())
                .unwrap_err()
                .names_field("participants")
        );
        assert!(
            validate_invite_participants(&InviteParticipantsRequest::new(vec![user("u")])).is_ok()
        );
        assert!(
            validate_send_dtmf_tones(&SendDtmfTonesRequest::new(Vec::new()))
                .unwrap_err()
                .names_field("tones")
        );
        assert!(validate_send_dtmf_tones(&SendDtmfTonesRequest::new(vec![Tone::Pound])).is_ok());
        let mut record = RecordResponseRequest::new(0);
        record.max_silence_timeout_in_seconds = (-1).into();
        let errors = validate_record_response(&record).unwrap_err();
        assert!(errors.names_field("maxRecordDurationInSeconds"));
        assert!(errors.names_field("maxSilenceTimeoutInSeconds"));
        assert!(validate_record_response(&RecordResponseRequest::new(10)).is_ok());
        assert!(validate_reject(&RejectRequest::default()).is_ok());
    }
}
