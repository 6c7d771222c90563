//! The hand-off between a transport (WebRTC or plain RTP) and the media side: either an
//! [`RtpEndpoint`] for code that handles RTP itself, or a media-core [`CallPipeline`].

use std::sync::Mutex;
use std::time::Instant;

use appmedia_media::pipeline::{CallPipeline, OutgoingRtp, RtpInbox, SendOutcome};
use appmedia_media::queue::{self, Consumer, Producer, Push};
use bytes::Bytes;

/// Most packets a pipeline's outbox holds for a transport that drains it from its own task.
/// Its slots carry whole packets inline (1.5 KB each, so the tick never allocates), so this
/// is memory per call: 16 is 320 ms of one packet per tick, with room for a worker catching
/// up on late periods; the transport drains it every few milliseconds.
pub(crate) const PACKET_OUTBOX: usize = 16;

/// The two ends of the bounded queues between a session and a media thread, for code
/// that handles RTP itself (lab tools, tests). A [`CallPipeline`] is connected directly
/// with `attach_pipeline` instead.
///
/// `pop` and `push` never block, never allocate and never touch the async runtime (the
/// media core's drop-oldest queues). Packets are whole RTP packets (header and Opus
/// payload; SRTP already removed on the way in, added on the way out).
#[derive(Debug)]
pub struct RtpEndpoint {
    /// RTP packets received from the peer. When full, the oldest is dropped (counted).
    pub incoming: Consumer<Bytes>,
    /// RTP packets to send to the peer. The transport owns the payload type on the wire
    /// (and, for WebRTC, the SSRC): it rewrites them to the negotiated values, so the
    /// sender may use its own. When full, the oldest is dropped.
    pub outgoing: Producer<Bytes>,
}

/// Where received packets go.
enum Inbound {
    Endpoint(Producer<Bytes>),
    Pipeline { inbox: RtpInbox, epoch: Instant },
}

/// Where packets to send come from.
enum Outbound {
    Endpoint(Consumer<Bytes>),
    Pipeline(Consumer<OutgoingRtp>),
}

/// Owned by a session's shared state; used from its async tasks only.
pub(crate) struct MediaLink {
    inbound: Mutex<Inbound>,
    outbound: Mutex<Outbound>,
    endpoint: Mutex<Option<RtpEndpoint>>,
    capacity: usize,
}

impl MediaLink {
    pub(crate) fn new(capacity: usize) -> Self {
        let (incoming_tx, incoming_rx) = queue::bounded(capacity);
        let (outgoing_tx, outgoing_rx) = queue::bounded(capacity);
        Self {
            inbound: Mutex::new(Inbound::Endpoint(incoming_tx)),
            outbound: Mutex::new(Outbound::Endpoint(outgoing_rx)),
            endpoint: Mutex::new(Some(RtpEndpoint {
                incoming: incoming_rx,
                outgoing: outgoing_tx,
            })),
            capacity,
        }
    }

    /// Hands one received packet to the media side. Returns whether something was
    /// dropped for lack of room (the oldest packet). A consumer that went away is not an
    /// error: the call is being torn down.
    pub(crate) fn deliver(&self, packet: Bytes) -> bool {
        let Ok(inbound) = self.inbound.lock() else {
            return false;
        };
        match &*inbound {
            Inbound::Endpoint(tx) => {
                matches!(tx.push(packet), Push::QueuedEvicting(_) | Push::Rejected(_))
            }
            Inbound::Pipeline { inbox, epoch } => matches!(
                inbox.push(packet, epoch.elapsed()),
                Ok(SendOutcome::DroppedOldest)
            ),
        }
    }

    /// Moves every packet waiting to be sent into `batch`.
    pub(crate) fn drain(&self, batch: &mut Vec<Bytes>) {
        if let Ok(outbound) = self.outbound.lock() {
            match &*outbound {
                Outbound::Endpoint(rx) => batch.extend(std::iter::from_fn(|| rx.pop())),
                Outbound::Pipeline(rx) => batch.extend(
                    std::iter::from_fn(|| rx.pop()).map(|p| Bytes::copy_from_slice(p.as_bytes())),
                ),
            }
        }
    }

    pub(crate) fn take_endpoint(&self) -> Option<RtpEndpoint> {
        self.endpoint.lock().ok().and_then(|mut e| e.take())
    }

    /// Connects `pipeline` (see `attach_pipeline` below) with an outbox of `outbox` packets,
    /// and has the peer's receiver reports (`loss`) drive its in-band FEC; `session` names it
    /// in the warning if the encoder refuses.
    pub(crate) fn attach_with_loss_reports(
        &self,
        pipeline: &mut CallPipeline,
        epoch: Instant,
        outbox: usize,
        loss: std::sync::Arc<appmedia_media::feedback::LossReports>,
        session: &str,
    ) {
        self.attach_with_outbox(pipeline, epoch, outbox);
        if let Err(e) = pipeline.use_loss_reports(loss) {
            tracing::warn!(%session, error = %e, "the encoder refused adaptive FEC; keeping its configured FEC");
        }
    }

    pub(crate) fn attach_pipeline(&self, pipeline: &mut CallPipeline, epoch: Instant) {
        self.attach_with_outbox(pipeline, epoch, PACKET_OUTBOX);
    }

    fn attach_with_outbox(&self, pipeline: &mut CallPipeline, epoch: Instant, outbox: usize) {
        let outbox = pipeline.packet_outbox(self.capacity.min(outbox));
        if let Ok(mut endpoint) = self.endpoint.lock() {
            endpoint.take();
        }
        if let Ok(mut inbound) = self.inbound.lock() {
            *inbound = Inbound::Pipeline {
                inbox: pipeline.rtp_inbox(),
                epoch,
            };
        }
        if let Ok(mut outbound) = self.outbound.lock() {
            *outbound = Outbound::Pipeline(outbox);
        }
    }
}
