//! [`WebRtcSession`]: a call's WebRTC session, on a socket of its own or on a shared
//! [`MediaPort`], behind one API.

use std::time::Instant;

use appmedia_media::pipeline::CallPipeline;

use crate::port::{MediaPort, PortSession};
use crate::{
    EndReason, MediaSession, RtpEndpoint, SessionState, SessionStats, TransportConfig,
    TransportError,
};

/// One call's WebRTC session: a [`MediaSession`] (its own socket and tasks) or a
/// [`PortSession`] (the shared port's socket, driven by the call's media worker once a
/// pipeline is attached). The blob, the SDP and what the peer sees are the same.
#[derive(Debug)]
pub enum WebRtcSession {
    /// A session with its own socket.
    Own(MediaSession),
    /// A session on a shared media port.
    Port(PortSession),
}

impl WebRtcSession {
    /// The offering side: on `port` when there is one, otherwise a session of its own.
    pub async fn offer(
        port: Option<&MediaPort>,
        config: TransportConfig,
    ) -> Result<WebRtcSession, TransportError> {
        match port {
            Some(port) => Ok(WebRtcSession::Port(PortSession::offer(port, config)?)),
            None => Ok(WebRtcSession::Own(MediaSession::offer(config).await?)),
        }
    }

    /// Unmixed per-speaker streams this side offered to receive (0 without
    /// `receive_unmixed_meeting_audio`).
    pub fn unmixed_receive_streams(&self) -> usize {
        match self {
            WebRtcSession::Own(s) => s.unmixed_receive_streams(),
            WebRtcSession::Port(s) => s.unmixed_receive_streams(),
        }
    }

    /// The sealed blob for `appHostedMediaConfig.blob`.
    pub fn blob(&self) -> String {
        match self {
            WebRtcSession::Own(s) => s.blob(),
            WebRtcSession::Port(s) => s.blob(),
        }
    }

    /// This side's SDP (offer, or answer on the answering side).
    pub fn local_sdp(&self) -> &str {
        match self {
            WebRtcSession::Own(s) => s.local_sdp(),
            WebRtcSession::Port(s) => s.local_sdp(),
        }
    }

    /// Records the Graph call id, so later blobs carry it.
    pub fn set_call_id(&self, call_id: impl Into<String>) {
        match self {
            WebRtcSession::Own(s) => s.set_call_id(call_id),
            WebRtcSession::Port(s) => s.set_call_id(call_id),
        }
    }

    /// The RFC 6464 audio-level extension id of this side's SDP.
    pub fn audio_level_extension_id(&self) -> Option<u8> {
        match self {
            WebRtcSession::Own(s) => s.audio_level_extension_id(),
            WebRtcSession::Port(s) => s.audio_level_extension_id(),
        }
    }

    /// Applies the media peer's answer blob.
    pub async fn accept(&self, answer_blob: &str) -> Result<(), TransportError> {
        match self {
            WebRtcSession::Own(s) => s.accept(answer_blob).await,
            WebRtcSession::Port(s) => s.accept(answer_blob),
        }
    }

    /// Applies a raw SDP answer (a peer that does not speak the blob, such as a browser).
    pub async fn accept_sdp(&self, answer_sdp: &str) -> Result<(), TransportError> {
        match self {
            WebRtcSession::Own(s) => s.accept_sdp(answer_sdp).await,
            WebRtcSession::Port(s) => s.accept_sdp(answer_sdp),
        }
    }

    /// Takes the queues for code that handles RTP itself (once; `None` after a pipeline is
    /// attached).
    pub fn take_endpoint(&self) -> Option<RtpEndpoint> {
        match self {
            WebRtcSession::Own(s) => s.take_endpoint(),
            WebRtcSession::Port(s) => s.take_endpoint(),
        }
    }

    /// Connects a media-core call pipeline (see [`MediaSession::attach_pipeline`] and
    /// [`PortSession::attach_pipeline`]).
    pub fn attach_pipeline(&self, pipeline: &mut CallPipeline, epoch: Instant) {
        match self {
            WebRtcSession::Own(s) => s.attach_pipeline(pipeline, epoch),
            WebRtcSession::Port(s) => s.attach_pipeline(pipeline, epoch),
        }
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        match self {
            WebRtcSession::Own(s) => s.state(),
            WebRtcSession::Port(s) => s.state(),
        }
    }

    /// Waits until the session is connected, or returns why it ended first.
    pub async fn connected(&self) -> Result<(), EndReason> {
        match self {
            WebRtcSession::Own(s) => s.connected().await,
            WebRtcSession::Port(s) => s.connected().await,
        }
    }

    /// Waits until the session ends and returns why.
    pub async fn ended(&self) -> EndReason {
        match self {
            WebRtcSession::Own(s) => s.ended().await,
            WebRtcSession::Port(s) => s.ended().await,
        }
    }

    /// A snapshot of the session's statistics.
    pub async fn stats(&self) -> SessionStats {
        match self {
            WebRtcSession::Own(s) => s.stats().await,
            WebRtcSession::Port(s) => s.stats(),
        }
    }

    /// Ends the session (a connected peer is told with an RTCP BYE).
    pub async fn close(&self) {
        match self {
            WebRtcSession::Own(s) => s.close().await,
            WebRtcSession::Port(s) => s.close(),
        }
    }
}
