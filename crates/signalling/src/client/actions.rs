//! The call-control actions of [`GraphClient`]: answer, reject, redirect, transfer, invite,
//! mute, media operations, recording status, screen sharing, keep-alive.
//!
//! Every action is one POST (or, for removing a participant, one DELETE) under
//! `/communications/calls/{id}`, sent through the same path as `create_call`: bearer token,
//! one `client-request-id` kept across retries, 429/503 retried, 401 refreshing the token
//! once, Graph error bodies as [`ClientError::Service`]. A POST is not retried on 504 unless
//! [`RetryPolicy::retry_gateway_timeout_on_post`](super::RetryPolicy) says so: an action
//! such as `playPrompt` is not idempotent.
//!
//! The actions that start a `commsOperation` return it. Graph documents `200 OK` with the
//! operation in the body; a 2xx without a body (202, 204, or an empty 200, as a proxy or a
//! future version may answer) is accepted too, and gives an operation carrying only what is
//! known: the id from the `Location` header and the `clientContext` sent. Its progress then
//! arrives as notifications (`CallEvent::Operation`).

use appmedia_model::{
    AnswerRequest, ChangeScreenSharingRoleRequest, ClientContextRequest, CommsOperation,
    InviteParticipantsRequest, PlayPromptRequest, RecordResponseRequest, RedirectRequest,
    RejectRequest, SendDtmfTonesRequest, TransferRequest, UpdateRecordingStatusRequest,
};
use reqwest::Method;
use reqwest::header::LOCATION;
use serde::Serialize;
use url::Url;

use super::{
    Answer, ClientError, GraphClient, checked_id, checked_participant_id, decode, header_string,
};
use crate::permissions::required_permissions_for_answer;
use crate::validate::{
    ValidationErrors, validate_answer, validate_invite_participants, validate_record_response,
    validate_redirect, validate_reject, validate_send_dtmf_tones, validate_transfer,
};

impl GraphClient {
    /// `POST /communications/calls/{id}/answer` (202 Accepted).
    ///
    /// Validated first (callbackUri, mediaConfig with its blob, acceptedModalities); answering
    /// with app-hosted media needs `Calls.AccessMedia.All` in the token's roles. (An invitation
    /// to a group call also needs a join permission; the client does not know what the call
    /// is, so the service checks that one.)
    pub async fn answer(&self, call_id: &str, request: &AnswerRequest) -> Result<(), ClientError> {
        self.validate(|| validate_answer(request))?;
        self.check_token_roles(&required_permissions_for_answer(request, false))
            .await?;
        self.post_for_nothing(call_id, &["answer"], Some(request))
            .await
    }

    /// `POST /communications/calls/{id}/reject` (202 Accepted).
    pub async fn reject(&self, call_id: &str, request: &RejectRequest) -> Result<(), ClientError> {
        self.validate(|| validate_reject(request))?;
        self.post_for_nothing(call_id, &["reject"], Some(request))
            .await
    }

    /// `POST /communications/calls/{id}/redirect` (202 Accepted). 1 to 25 targets; `timeout`
    /// 15 to 90 s when given.
    pub async fn redirect(
        &self,
        call_id: &str,
        request: &RedirectRequest,
    ) -> Result<(), ClientError> {
        self.validate(|| validate_redirect(request))?;
        self.post_for_nothing(call_id, &["redirect"], Some(request))
            .await
    }

    /// `POST /communications/calls/{id}/transfer` (202 Accepted); the outcome arrives as call
    /// state notifications (`transferring`, `transferAccepted`, then `terminated` or back to
    /// `established`).
    pub async fn transfer(
        &self,
        call_id: &str,
        request: &TransferRequest,
    ) -> Result<(), ClientError> {
        self.validate(|| validate_transfer(request))?;
        self.post_for_nothing(call_id, &["transfer"], Some(request))
            .await
    }

    /// `POST /communications/calls/{id}/participants/invite` (200 OK with an
    /// `inviteParticipantsOperation`).
    pub async fn invite_participants(
        &self,
        call_id: &str,
        request: &InviteParticipantsRequest,
    ) -> Result<CommsOperation, ClientError> {
        self.validate(|| validate_invite_participants(request))?;
        let context = request.client_context.value().map(String::as_str);
        self.post_for_operation(call_id, &["participants", "invite"], Some(request), context)
            .await
    }

    /// `POST /communications/calls/{id}/mute`: the bot mutes itself (200 OK with a
    /// `muteParticipantOperation`).
    pub async fn mute(
        &self,
        call_id: &str,
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        self.client_context_action(call_id, &["mute"], client_context)
            .await
    }

    /// `POST /communications/calls/{id}/unmute` (200 OK with an `unmuteParticipantOperation`).
    pub async fn unmute(
        &self,
        call_id: &str,
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        self.client_context_action(call_id, &["unmute"], client_context)
            .await
    }

    /// `POST /communications/calls/{id}/participants/{participantId}/mute` (200 OK with a
    /// `muteParticipantOperation`).
    pub async fn mute_participant(
        &self,
        call_id: &str,
        participant_id: &str,
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        let participant_id = checked_participant_id(participant_id)?;
        self.client_context_action(
            call_id,
            &["participants", participant_id, "mute"],
            client_context,
        )
        .await
    }

    /// `DELETE /communications/calls/{id}/participants/{participantId}` (204 No Content):
    /// removes a participant. Any 2xx is success.
    pub async fn delete_participant(
        &self,
        call_id: &str,
        participant_id: &str,
    ) -> Result<(), ClientError> {
        let url = self.url(&[
            "communications",
            "calls",
            checked_id(call_id)?,
            "participants",
            checked_participant_id(participant_id)?,
        ])?;
        self.execute(Method::DELETE, url, None).await.map(drop)
    }

    /// `POST /communications/calls/{id}/playPrompt` (200 OK with a `playPromptOperation`).
    pub async fn play_prompt(
        &self,
        call_id: &str,
        request: &PlayPromptRequest,
    ) -> Result<CommsOperation, ClientError> {
        let context = request.client_context.value().map(String::as_str);
        self.post_for_operation(call_id, &["playPrompt"], Some(request), context)
            .await
    }

    /// `POST /communications/calls/{id}/recordResponse` (200 OK with a `recordOperation`;
    /// the recording's location comes in its completion notification). Durations, when
    /// given, must be positive.
    pub async fn record_response(
        &self,
        call_id: &str,
        request: &RecordResponseRequest,
    ) -> Result<CommsOperation, ClientError> {
        self.validate(|| validate_record_response(request))?;
        let context = request.client_context.value().map(String::as_str);
        self.post_for_operation(call_id, &["recordResponse"], Some(request), context)
            .await
    }

    /// `POST /communications/calls/{id}/subscribeToTone` (200 OK with a
    /// `subscribeToToneOperation`); each tone then arrives as a call notification carrying
    /// `toneInfo`.
    pub async fn subscribe_to_tone(
        &self,
        call_id: &str,
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        self.client_context_action(call_id, &["subscribeToTone"], client_context)
            .await
    }

    /// `POST /communications/calls/{id}/sendDtmfTones` (200 OK with a
    /// `sendDtmfTonesOperation`). At least one tone.
    pub async fn send_dtmf_tones(
        &self,
        call_id: &str,
        request: &SendDtmfTonesRequest,
    ) -> Result<CommsOperation, ClientError> {
        self.validate(|| validate_send_dtmf_tones(request))?;
        let context = request.client_context.value().map(String::as_str);
        self.post_for_operation(call_id, &["sendDtmfTones"], Some(request), context)
            .await
    }

    /// `POST /communications/calls/{id}/cancelMediaProcessing` (200 OK with a
    /// `cancelMediaProcessingOperation`): cancels the queued and running playPrompt and
    /// recordResponse operations (each then ends with a notification of its own).
    pub async fn cancel_media_processing(
        &self,
        call_id: &str,
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        self.client_context_action(call_id, &["cancelMediaProcessing"], client_context)
            .await
    }

    /// `POST /communications/calls/{id}/updateRecordingStatus` (200 OK with an
    /// `updateRecordingStatusOperation`).
    pub async fn update_recording_status(
        &self,
        call_id: &str,
        request: &UpdateRecordingStatusRequest,
    ) -> Result<CommsOperation, ClientError> {
        let context = request.client_context.value().map(String::as_str);
        self.post_for_operation(call_id, &["updateRecordingStatus"], Some(request), context)
            .await
    }

    /// `POST /communications/calls/{id}/changeScreenSharingRole` (202 Accepted).
    pub async fn change_screen_sharing_role(
        &self,
        call_id: &str,
        request: &ChangeScreenSharingRoleRequest,
    ) -> Result<(), ClientError> {
        self.post_for_nothing(call_id, &["changeScreenSharingRole"], Some(request))
            .await
    }

    /// `POST /communications/calls/{id}/keepAlive` with no body (200 OK, no body). A call
    /// that gets none for 45 minutes is ended; an ended call answers 404.
    pub async fn keep_alive(&self, call_id: &str) -> Result<(), ClientError> {
        self.post_for_nothing::<()>(call_id, &["keepAlive"], None)
            .await
    }

    /// The actions whose body is `{"clientContext"}` or `{}` and that start an operation.
    async fn client_context_action(
        &self,
        call_id: &str,
        action: &[&str],
        client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        let body = ClientContextRequest::new(client_context);
        self.post_for_operation(call_id, action, Some(&body), client_context)
            .await
    }

    /// Runs `check` when the client validates requests.
    fn validate(
        &self,
        check: impl FnOnce() -> Result<(), ValidationErrors>,
    ) -> Result<(), ClientError> {
        if self.config.validate_requests {
            check()?;
        }
        Ok(())
    }

    /// POSTs `body` (none: an empty body) to `/communications/calls/{call_id}/{action...}`:
    /// the one path every action takes to the service.
    async fn post_action<B: Serialize>(
        &self,
        call_id: &str,
        action: &[&str],
        body: Option<&B>,
    ) -> Result<(Url, Answer), ClientError> {
        let mut segments = vec!["communications", "calls", checked_id(call_id)?];
        segments.extend_from_slice(action);
        let url = self.url(&segments)?;
        let body = body.map(|body| serialize_body(&url, body)).transpose()?;
        let answer = self.execute(Method::POST, url.clone(), body).await?;
        Ok((url, answer))
    }

    /// An action that answers 202 or 200 with nothing the caller needs: any 2xx is success,
    /// and a body, if any, is not read.
    async fn post_for_nothing<B: Serialize>(
        &self,
        call_id: &str,
        action: &[&str],
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.post_action(call_id, action, body).await.map(drop)
    }

    /// An action that starts an operation: the body's operation, or for a bodyless 2xx the
    /// operation the headers describe (see the module docs).
    async fn post_for_operation<B: Serialize>(
        &self,
        call_id: &str,
        action: &[&str],
        body: Option<&B>,
        sent_client_context: Option<&str>,
    ) -> Result<CommsOperation, ClientError> {
        let (url, answer) = self.post_action(call_id, action, body).await?;
        if answer.body.iter().all(u8::is_ascii_whitespace) {
            Ok(operation_from_headers(&answer, sent_client_context))
        } else {
            decode(&Method::POST, &url, &answer)
        }
    }
}

fn serialize_body<B: Serialize>(url: &Url, body: &B) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::UnexpectedResponse {
        method: Method::POST,
        url: url.to_string(),
        status: 0,
        reason: format!("cannot serialise the request: {e}"),
    })
}

/// The operation a bodyless 2xx stands for: its id is the last segment of `Location`
/// (`…/calls/{id}/operations/{operationId}`), its client context the one sent.
fn operation_from_headers(answer: &Answer, sent_client_context: Option<&str>) -> CommsOperation {
    let id = header_string(&answer.headers, LOCATION.as_str()).and_then(|location| {
        location
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    });
    let mut operation = CommsOperation::default();
    if let Some(id) = id {
        operation.id = id.into();
    }
    if let Some(context) = sent_client_context {
        operation.client_context = context.to_owned().into();
    }
    operation
}
