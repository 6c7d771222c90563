//! What every kind of WebRTC session shares: its state and how it is waited on, and the
//! blob that names it.

use std::sync::Mutex;

use tokio::sync::watch;

use crate::blob::{BLOB_VERSION, Blob, Integrity, PCM16K, SdpKind, WebRtcDescription};
use crate::{EndReason, SessionState, TransportError};

/// A session's state, shared by its API and whatever drives it: it moves forward, and an
/// end is final.
pub(crate) struct StateCell(watch::Sender<SessionState>);

impl StateCell {
    /// A session that is connecting.
    pub(crate) fn new() -> Self {
        StateCell(watch::channel(SessionState::Connecting).0)
    }

    /// Moves to `next` unless the session has already ended.
    pub(crate) fn set(&self, next: SessionState) {
        self.0.send_if_modified(|current| {
            if matches!(current, SessionState::Ended(_)) || *current == next {
                return false;
            }
            *current = next;
            true
        });
    }

    /// Ends the session (the first end wins).
    pub(crate) fn end(&self, reason: EndReason) {
        self.set(SessionState::Ended(reason));
    }

    /// Where the session is now.
    pub(crate) fn get(&self) -> SessionState {
        self.0.borrow().clone()
    }

    /// Whether media can flow (connected, or interrupted but not given up on).
    pub(crate) fn is_connected(&self) -> bool {
        matches!(
            self.get(),
            SessionState::Connected | SessionState::Interrupted
        )
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<SessionState> {
        self.0.subscribe()
    }

    /// Resolves when the session is connected, or with why it ended first.
    pub(crate) async fn connected(&self) -> Result<(), EndReason> {
        let mut rx = self.subscribe();
        let result = rx
            .wait_for(|s| matches!(s, SessionState::Connected | SessionState::Ended(_)))
            .await
            .map(|s| s.clone());
        match result {
            Ok(SessionState::Connected) => Ok(()),
            Ok(SessionState::Ended(reason)) => Err(reason),
            _ => Err(EndReason::Closed),
        }
    }

    /// Resolves with why the session ended, without borrowing it.
    pub(crate) fn end_watch(&self) -> impl Future<Output = EndReason> + Send + 'static {
        let mut rx = self.subscribe();
        async move {
            match rx
                .wait_for(|s| matches!(s, SessionState::Ended(_)))
                .await
                .map(|s| s.clone())
            {
                Ok(SessionState::Ended(reason)) => reason,
                _ => EndReason::Closed,
            }
        }
    }
}

/// Who made the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Offerer,
    Answerer,
}

/// What a session's blob says besides its SDP: the media session id, the Graph call id once
/// known, and the audio contexts.
pub(crate) struct BlobIdentity {
    pub(crate) id: String,
    call_id: Mutex<Option<String>>,
    source_context: String,
    render_context: String,
}

impl BlobIdentity {
    /// A new media session id and contexts.
    pub(crate) fn new() -> Self {
        BlobIdentity {
            id: uuid::Uuid::new_v4().to_string(),
            call_id: Mutex::new(None),
            source_context: uuid::Uuid::new_v4().to_string(),
            render_context: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Takes the id and call id of the offer being answered.
    pub(crate) fn answering(&mut self, offer: &Blob) {
        self.id = offer.mp_media_session_id.clone();
        self.set_call_id(offer.call_id.clone());
    }

    pub(crate) fn set_call_id(&self, call_id: Option<String>) {
        if let Ok(mut slot) = self.call_id.lock() {
            *slot = call_id;
        }
    }

    /// The sealed blob: `role`'s SDP `sdp`.
    pub(crate) fn seal(
        &self,
        role: Role,
        receive_unmixed: bool,
        sdp: &str,
        integrity: &Integrity,
    ) -> String {
        let call_id = self.call_id.lock().ok().and_then(|c| c.clone());
        Blob {
            version: BLOB_VERSION,
            mp_media_session_id: self.id.clone(),
            call_id,
            supported_audio_format: PCM16K.to_owned(),
            audio_source_contexts: vec![self.source_context.clone()],
            audio_render_contexts: vec![self.render_context.clone()],
            receive_unmixed_meeting_audio: receive_unmixed,
            webrtc: WebRtcDescription {
                kind: match role {
                    Role::Offerer => SdpKind::Offer,
                    Role::Answerer => SdpKind::Answer,
                },
                sdp: sdp.to_owned(),
            },
        }
        .seal(integrity)
    }

    /// The SDP of the media peer's answer blob, verified and checked to be an answer for
    /// this media session.
    pub(crate) fn answer_sdp(
        &self,
        answer_blob: &str,
        integrity: &Integrity,
    ) -> Result<String, TransportError> {
        let answer = Blob::parse(answer_blob, integrity.key())?;
        answer.expect_kind(SdpKind::Answer)?;
        if answer.mp_media_session_id != self.id {
            return Err(crate::BlobError::SessionMismatch {
                expected: self.id.clone(),
                found: answer.mp_media_session_id,
            }
            .into());
        }
        Ok(answer.webrtc.sdp)
    }
}
