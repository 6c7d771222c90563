use crate::blob::BlobError;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A [`TransportConfig`](crate::TransportConfig) value that cannot work.
    #[error("invalid transport configuration: {0}")]
    InvalidConfig(String),
    /// No port in the configured media port range could be bound.
    #[error("no free UDP port on {ip} in {start}..={end}")]
    PortRangeExhausted {
        /// The bind address.
        ip: std::net::IpAddr,
        /// First port of the range.
        start: u16,
        /// Last port of the range.
        end: u16,
    },
    /// A socket operation failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// The WebRTC stack refused an operation.
    #[error("webrtc {operation} failed: {source}")]
    WebRtc {
        /// What we asked the stack to do.
        operation: &'static str,
        /// The stack's error.
        #[source]
        source: webrtc::error::Error,
    },
    /// The far end's SDP is not usable for this session.
    #[error("unusable SDP {kind}: {reason}")]
    Sdp {
        /// `offer` or `answer`.
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A blob could not be used.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// ICE candidate gathering did not finish in time.
    #[error("ICE candidate gathering did not finish within {0:?}")]
    GatheringTimeout(std::time::Duration),
    /// The operation needs a session that has not ended.
    #[error("the session has ended: {0}")]
    Ended(crate::EndReason),
    /// `accept` was called on a session that is not waiting for an answer.
    #[error(
        "the session is not waiting for an answer (it was created as the answering side or already accepted one)"
    )]
    NotAwaitingAnswer,
}

pub(crate) fn webrtc(
    operation: &'static str,
) -> impl FnOnce(webrtc::error::Error) -> TransportError {
    move |source| TransportError::WebRtc { operation, source }
}
