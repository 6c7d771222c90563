//! One call's media transport: a WebRTC peer connection with one Opus audio m-line (and
//! RFC 4733 telephone-events on it), plus
//! receive-only unmixed audio m-lines when the offerer asks for per-speaker audio
//! (see [`crate::unmixed`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_media::pipeline::CallPipeline;
use bytes::Bytes;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::shared::marshal::{Marshal, Unmarshal};
use serde::Serialize;
use tokio::sync::watch;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, SettingEngineBuilder, StatsSelector, configure_rtcp_reports,
};

use crate::blob::{Blob, SdpKind};
use crate::config::TransportConfig;
use crate::error::{TransportError, webrtc as webrtc_err};
use crate::guard::{GuardedRuntime, SocketCounters};
use crate::lifecycle::{BlobIdentity, Role, StateCell};
use crate::link::{MediaLink, RtpEndpoint};
use crate::rtt::{RttCell, RttInterceptor};
use crate::stats::{MediaCounters, SessionStats, Snapshot};
use crate::unmixed::{self, MAX_UNMIXED_AUDIO_STREAMS, Route, Router, UNMIXED_TRACK_PREFIX};

/// RFC 6464 client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// How long ICE candidate gathering may take. Only host candidates are gathered (no STUN
/// or TURN servers), so this is a local operation and normally takes milliseconds.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum EndReason {
    /// ICE and DTLS did not both complete within the connect timeout.
    #[error(
        "ICE/DTLS did not complete within {timeout_ms} ms (last peer connection state: {last_state})"
    )]
    ConnectTimeout {
        /// The configured timeout.
        timeout_ms: u64,
        /// The peer connection state when the timer fired.
        last_state: String,
    },
    /// ICE or DTLS failed before the session was ever connected.
    #[error("ICE/DTLS failed before the session connected")]
    ConnectFailed,
    /// The peer stopped answering after the session had been connected.
    #[error("the peer stopped answering for {silent_ms} ms")]
    PeerGone {
        /// How long the peer was silent before the session gave up.
        silent_ms: u64,
    },
    /// The peer closed the DTLS association.
    #[error("the peer closed the connection")]
    ClosedByPeer,
    /// This side closed the session.
    #[error("closed by this side")]
    Closed,
}

/// Where a session is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum SessionState {
    /// The offer is out; waiting for [`MediaSession::accept`].
    AwaitingAnswer,
    /// Both descriptions are set; ICE and DTLS are running.
    Connecting,
    /// Media flows (ICE connected, DTLS-SRTP keys in place).
    Connected,
    /// Was connected; the peer has stopped answering ICE consent checks for now.
    Interrupted,
    /// Over, for good.
    Ended(EndReason),
}

/// What a [`MediaSession`]'s tasks and handles share.
struct MediaSessionShared {
    state: StateCell,
    gathered: watch::Sender<bool>,
    socket: Arc<SocketCounters>,
    media: MediaCounters,
    last_pc_state: Mutex<RTCPeerConnectionState>,
    peer_timeout: Duration,
    link: MediaLink,
    rtt: Arc<RttCell>,
    /// The payload type the answer gave `telephone-event/48000`, or [`NO_PAYLOAD_TYPE`]:
    /// set once the answer is known, before media flows.
    telephone_event_negotiated: AtomicU8,
    /// The payload type the media side uses for telephone-events (from the config).
    telephone_event_local: Option<u8>,
}

/// No payload type negotiated (RTP payload types are 7 bits).
const NO_PAYLOAD_TYPE: u8 = u8::MAX;

impl MediaSessionShared {
    /// The negotiated telephone-event payload type, if the answer has one.
    fn telephone_event_negotiated(&self) -> Option<u8> {
        let pt = self.telephone_event_negotiated.load(Ordering::Relaxed);
        (pt != NO_PAYLOAD_TYPE).then_some(pt)
    }

    /// Records the telephone-event payload type of the answer SDP (`None` when this side
    /// offers none, or the answer left it out).
    fn set_telephone_event(&self, answer_sdp: &str) {
        let pt = negotiated_telephone_event(self.telephone_event_local, answer_sdp)
            .unwrap_or(NO_PAYLOAD_TYPE);
        self.telephone_event_negotiated.store(pt, Ordering::Relaxed);
    }
}

struct Handler {
    shared: Arc<MediaSessionShared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.shared.gathered.send_replace(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(?state, "peer connection state");
        if let Ok(mut last) = self.shared.last_pc_state.lock() {
            *last = state;
        }
        let was_connected = self.shared.state.is_connected();
        match state {
            RTCPeerConnectionState::Connected => self.shared.state.set(SessionState::Connected),
            RTCPeerConnectionState::Disconnected if was_connected => {
                self.shared.state.set(SessionState::Interrupted)
            }
            RTCPeerConnectionState::Failed if was_connected => {
                // The stack's own failure timer is set to the peer timeout, see `build`.
                self.shared.state.end(EndReason::PeerGone {
                    silent_ms: self.shared.peer_timeout.as_millis() as u64,
                })
            }
            RTCPeerConnectionState::Failed => self.shared.state.end(EndReason::ConnectFailed),
            RTCPeerConnectionState::Closed => self.shared.state.end(EndReason::ClosedByPeer),
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.shared.clone();
        // A speaker's stream on one of our unmixed m-lines: its own SSRC is in the CSRC.
        let unmixed = track.track_id().await.starts_with(UNMIXED_TRACK_PREFIX);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(mut packet) = event else {
                    continue;
                };
                if unmixed {
                    unmixed::restore_speaker(&mut packet.header);
                }
                // DTMF reaches the media side with the payload type it is configured with.
                if let Some(local) = shared.telephone_event_local
                    && shared.telephone_event_negotiated() == Some(packet.header.payload_type)
                {
                    packet.header.payload_type = local;
                }
                let media = &shared.media;
                let Ok(bytes) = packet.marshal() else {
                    media.inbound_marshal_failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                media.inbound_delivered.fetch_add(1, Ordering::Relaxed);
                let dropped_oldest = shared.link.deliver(bytes.freeze());
                if dropped_oldest {
                    media.inbound_queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// One call's media transport: ICE on host candidates, DTLS-SRTP, one Opus audio m-line
/// (`opus/48000/2`, `useinbandfec=1`, `usedtx` as configured), RTCP sender and receiver
/// reports. An offerer with `receive_unmixed_meeting_audio` adds receive-only unmixed
/// m-lines; the answerer sends one speaker on each (`docs/transport.md`, "Unmixed audio").
///
/// Create the offering side with [`MediaSession::offer`] and send its [`blob`](Self::blob)
/// in `appHostedMediaConfig`; apply the answer with [`accept`](Self::accept). The media
/// peer uses [`MediaSession::answer_blob`]. Packets flow through the [`RtpEndpoint`] from
/// [`take_endpoint`](Self::take_endpoint).
///
/// Async methods must run on a tokio runtime; many sessions share one. Dropping a session
/// closes it.
pub struct MediaSession {
    identity: BlobIdentity,
    role: Role,
    config: TransportConfig,
    pc: Arc<dyn PeerConnection>,
    local_sdp: String,
    shared: Arc<MediaSessionShared>,
    local_addr: SocketAddr,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// Send-only tracks on the peer's unmixed m-lines (answering side), with their SSRCs.
    unmixed: Vec<(Arc<TrackLocalStaticRTP>, u32)>,
    /// Unmixed m-lines this side offered to receive on (offering side).
    unmixed_receive: usize,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("id", &self.identity.id)
            .field("role", &self.role)
            .field("local_addr", &self.local_addr)
            .field("state", &self.shared.state.get())
            .finish()
    }
}

struct Built {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    unmixed: Vec<(Arc<TrackLocalStaticRTP>, u32)>,
    unmixed_receive: usize,
    shared: Arc<MediaSessionShared>,
    local_addr: SocketAddr,
    public_ip: Option<IpAddr>,
}

impl MediaSession {
    /// Creates the offering side: binds the socket, gathers host candidates and makes the
    /// SDP offer. The session then waits for [`accept`](Self::accept).
    pub async fn offer(config: TransportConfig) -> Result<MediaSession, TransportError> {
        let built = build(&config).await?;
        built
            .pc
            .add_track(built.track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_err("add_track"))?;
        // The stack narrows a track's m-line to the track's own codec (Opus); DTMF rides
        // on the same m-line, so it is put back.
        if let Some(payload_type) = config.telephone_event_payload_type {
            let codecs = vec![
                RTCRtpCodecParameters {
                    rtp_codec: opus_codec(&config),
                    payload_type: config.opus_payload_type,
                },
                RTCRtpCodecParameters {
                    rtp_codec: telephone_event_codec(),
                    payload_type,
                },
            ];
            for transceiver in built.pc.get_transceivers().await {
                transceiver
                    .set_codec_preferences(codecs.clone())
                    .await
                    .map_err(webrtc_err("set_codec_preferences"))?;
            }
        }
        let mut built = built;
        if config.receive_unmixed_meeting_audio {
            // After the mixed m-line: one receive-only m-line per unmixed speaker stream.
            for _ in 0..config.unmixed_audio_streams {
                built
                    .pc
                    .add_transceiver_from_kind(RtpCodecKind::Audio, Some(unmixed::receive_only()))
                    .await
                    .map_err(webrtc_err("add_transceiver_from_kind"))?;
            }
            built.unmixed_receive = config.unmixed_audio_streams;
        }
        let offer = built
            .pc
            .create_offer(None)
            .await
            .map_err(webrtc_err("create_offer"))?;
        built
            .pc
            .set_local_description(offer)
            .await
            .map_err(webrtc_err("set_local_description"))?;
        let local_sdp = gathered_sdp(&built).await?;
        built.shared.state.set(SessionState::AwaitingAnswer);
        Ok(Self::finish(built, config, Role::Offerer, local_sdp))
    }

    /// Creates the answering side from the far end's SDP offer. The answer is
    /// [`local_sdp`](Self::local_sdp).
    pub async fn answer_sdp(
        config: TransportConfig,
        offer_sdp: &str,
    ) -> Result<MediaSession, TransportError> {
        check_remote_sdp("offer", offer_sdp)?;
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).map_err(|e| {
            TransportError::Sdp {
                kind: "offer",
                reason: e.to_string(),
            }
        })?;
        let mut built = build(&config).await?;
        built
            .pc
            .set_remote_description(offer)
            .await
            .map_err(|e| TransportError::Sdp {
                kind: "offer",
                reason: e.to_string(),
            })?;
        // The first audio transceiver without a sender is the mixed m-line's; the unmixed
        // tracks then take the offer's receive-only m-lines in order.
        built
            .pc
            .add_track(built.track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_err("add_track"))?;
        let slots = unmixed::offered_unmixed_streams(offer_sdp).min(MAX_UNMIXED_AUDIO_STREAMS);
        for i in 0..slots {
            let ssrc = rand_ssrc();
            let track = Arc::new(audio_track(
                &config,
                &format!("{UNMIXED_TRACK_PREFIX}{i}"),
                ssrc,
            ));
            built
                .pc
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(webrtc_err("add_track (unmixed)"))?;
            built.unmixed.push((track, ssrc));
        }
        let answer = built
            .pc
            .create_answer(None)
            .await
            .map_err(webrtc_err("create_answer"))?;
        built
            .pc
            .set_local_description(answer)
            .await
            .map_err(webrtc_err("set_local_description"))?;
        let local_sdp = gathered_sdp(&built).await?;
        built.shared.set_telephone_event(&local_sdp);
        built.shared.state.set(SessionState::Connecting);
        Ok(Self::finish(built, config, Role::Answerer, local_sdp))
    }

    /// Creates the answering side (the bot's media peer) from the bot's blob. Returns the
    /// session and the answer blob, which goes back to the bot on the signalling channel
    /// (see `docs/blob.md`). `config.blob_integrity` must match how the bot sealed its blob.
    pub async fn answer_blob(
        config: TransportConfig,
        offer_blob: &str,
    ) -> Result<(MediaSession, String), TransportError> {
        let offer = Blob::parse(offer_blob, config.blob_integrity.key())?;
        offer.expect_kind(SdpKind::Offer)?;
        let mut session = Self::answer_sdp(config, &offer.webrtc.sdp).await?;
        // The answer speaks for the same media session: the bot matches on this id.
        session.identity.answering(&offer);
        let answer = session.blob();
        Ok((session, answer))
    }

    fn finish(
        built: Built,
        config: TransportConfig,
        role: Role,
        local_sdp: String,
    ) -> MediaSession {
        let pump = tokio::spawn(pump_outgoing(
            built.shared.clone(),
            Outgoing {
                track: built.track.clone(),
                ssrc: built.ssrc,
                unmixed: built.unmixed.clone(),
                router: Router::new(config.mixed_ssrc, built.unmixed.len()),
            },
            built.pc.clone(),
            config.send_poll_interval,
        ));
        let watchdog = tokio::spawn(watchdog(
            built.shared.clone(),
            built.pc.clone(),
            config.connect_timeout,
            config.peer_timeout,
        ));
        MediaSession {
            identity: BlobIdentity::new(),
            role,
            config,
            pc: built.pc,
            local_sdp,
            shared: built.shared,
            local_addr: built.local_addr,
            track: built.track,
            ssrc: built.ssrc,
            unmixed: built.unmixed,
            unmixed_receive: built.unmixed_receive,
            tasks: vec![pump, watchdog],
        }
    }

    /// The media session id (`mpMediaSessionId` in the blob).
    pub fn id(&self) -> &str {
        &self.identity.id
    }

    /// This side's SDP: the offer, or the answer on the answering side. Candidates are
    /// included (gathering is complete before a session is returned).
    pub fn local_sdp(&self) -> &str {
        &self.local_sdp
    }

    /// The id of the RFC 6464 audio-level header extension in this side's SDP (configure
    /// the media core's `audio_level_ext_id` with it). The far end may still decline it;
    /// the transport then strips it from what it sends.
    pub fn audio_level_extension_id(&self) -> Option<u8> {
        extmap_id(&self.local_sdp, AUDIO_LEVEL_URI)
    }

    /// Unmixed per-speaker streams this side can send: the receive-only m-lines the peer's
    /// offer asked for (answering side; 0 on the offering side). Outgoing packets whose SSRC
    /// is not [`TransportConfig::mixed_ssrc`] go on them, one speaker per m-line.
    pub fn unmixed_send_streams(&self) -> usize {
        self.unmixed.len()
    }

    /// Unmixed per-speaker streams this side offered to receive (offering side, with
    /// `receive_unmixed_meeting_audio`; 0 otherwise). Their packets arrive with the
    /// speaker's own SSRC.
    pub fn unmixed_receive_streams(&self) -> usize {
        self.unmixed_receive
    }

    /// The local UDP address the session's socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Records the Graph call id, so later [`blob`](Self::blob)s carry it.
    pub fn set_call_id(&self, call_id: impl Into<String>) {
        self.identity.set_call_id(Some(call_id.into()));
    }

    /// The sealed blob for `appHostedMediaConfig.blob` (on the answering side: the answer
    /// blob). Format: `docs/blob.md`.
    pub fn blob(&self) -> String {
        self.identity.seal(
            self.role,
            self.config.receive_unmixed_meeting_audio,
            &self.local_sdp,
            &self.config.blob_integrity,
        )
    }

    /// Applies the media peer's answer blob (verified, and checked to be an answer for
    /// this media session). ICE and DTLS start; the connect timeout runs from here.
    pub async fn accept(&self, answer_blob: &str) -> Result<(), TransportError> {
        let sdp = self
            .identity
            .answer_sdp(answer_blob, &self.config.blob_integrity)?;
        self.accept_sdp(&sdp).await
    }

    /// Applies a raw SDP answer (for peers that do not speak the blob, such as a browser).
    pub async fn accept_sdp(&self, answer_sdp: &str) -> Result<(), TransportError> {
        match self.shared.state.get() {
            SessionState::AwaitingAnswer if self.role == Role::Offerer => {}
            SessionState::Ended(reason) => return Err(TransportError::Ended(reason)),
            _ => return Err(TransportError::NotAwaitingAnswer),
        }
        check_remote_sdp("answer", answer_sdp)?;
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned()).map_err(|e| {
            TransportError::Sdp {
                kind: "answer",
                reason: e.to_string(),
            }
        })?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| TransportError::Sdp {
                kind: "answer",
                reason: e.to_string(),
            })?;
        self.shared.set_telephone_event(answer_sdp);
        self.shared.state.set(SessionState::Connecting);
        Ok(())
    }

    /// Takes the queues for code that handles RTP itself. `None` after the first call, or
    /// once a pipeline is attached.
    pub fn take_endpoint(&self) -> Option<RtpEndpoint> {
        self.shared.link.take_endpoint()
    }

    /// Connects a media-core call pipeline directly: received packets go into its
    /// `RtpInbox` stamped with their arrival time since `epoch` (the scheduler's epoch,
    /// the time base of the pipeline's ticks), and its outgoing packets are sent. Call
    /// before handing the pipeline to its worker thread. Replaces the [`RtpEndpoint`].
    ///
    /// DTMF: the pipeline's `PipelineConfig::telephone_event_payload_type` must equal this
    /// session's `TransportConfig::telephone_event_payload_type` (both default to 101);
    /// the transport maps it to and from the negotiated one
    /// ([`telephone_event_payload_type`](Self::telephone_event_payload_type)).
    ///
    /// The peer's RTCP receiver reports about what we send drive the pipeline's in-band FEC
    /// ([`CallPipeline::use_loss_reports`]): none on a clean path, as much as the reported
    /// loss calls for otherwise.
    pub fn attach_pipeline(&self, pipeline: &mut CallPipeline, epoch: Instant) {
        self.shared.link.attach_with_loss_reports(
            pipeline,
            epoch,
            crate::link::PACKET_OUTBOX,
            self.loss_reports(),
            &self.identity.id,
        );
    }

    /// The peer's latest receiver report about what we send (fraction lost), for code that
    /// drives its own encoder from an [`RtpEndpoint`].
    pub fn loss_reports(&self) -> Arc<appmedia_media::feedback::LossReports> {
        self.shared.rtt.loss.clone()
    }

    /// The payload type the SDP negotiated for `telephone-event/48000` (RFC 4733 DTMF), once
    /// the answer is known; `None` before that, or when either side left it out. On the
    /// media side DTMF uses the configured payload type instead (see
    /// [`attach_pipeline`](Self::attach_pipeline)); the packets a peer without
    /// telephone-event would get are dropped and counted
    /// (`SessionStats::outbound_no_telephone_event`).
    pub fn telephone_event_payload_type(&self) -> Option<u8> {
        self.shared.telephone_event_negotiated()
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.shared.state.get()
    }

    /// Waits until the session is connected, or returns why it ended first.
    pub async fn connected(&self) -> Result<(), EndReason> {
        self.shared.state.connected().await
    }

    /// Waits until the session ends and returns why.
    pub async fn ended(&self) -> EndReason {
        self.end_watch().await
    }

    /// What [`ended`](Self::ended) waits for, as a future that does not borrow the session:
    /// whoever owns the session can hand it to a task that watches for the peer's loss.
    /// Dropping the session resolves it with [`EndReason::Closed`].
    pub fn end_watch(&self) -> impl Future<Output = EndReason> + Send + 'static {
        self.shared.state.end_watch()
    }

    /// A snapshot of the session's statistics.
    pub async fn stats(&self) -> SessionStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        SessionStats::from_snapshot(Snapshot {
            state: self.shared.state.get(),
            socket: &self.shared.socket,
            media: &self.shared.media,
            report: &report,
            rtcp_rtt: self.shared.rtt.latest(),
        })
    }

    /// Ends the session and releases its socket. A connected peer is told with an RTCP
    /// BYE, so it ends at once ([`EndReason::ClosedByPeer`]) instead of after its peer
    /// timeout.
    pub async fn close(&self) {
        let was_connected = self.shared.state.is_connected();
        // Before ending: the end wakes the watchdog, which closes the stack.
        if was_connected {
            let bye = rtc::rtcp::goodbye::Goodbye {
                sources: std::iter::once(self.ssrc)
                    .chain(self.unmixed.iter().map(|(_, ssrc)| *ssrc))
                    .collect(),
                reason: Bytes::from_static(b"closed"),
            };
            if self.track.write_rtcp(vec![Box::new(bye)]).await.is_ok() {
                // Closing tears the stack down without draining its queue; give the BYE
                // a moment to leave.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        self.shared.state.end(EndReason::Closed);
        if let Err(err) = self.pc.close().await {
            tracing::debug!(%err, session = %self.identity.id, "closing peer connection");
        }
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.shared.state.end(EndReason::Closed);
        for task in &self.tasks {
            task.abort();
        }
        // The stack's driver keeps running until the connection is closed, and closing is
        // async: hand it to the runtime if there is one.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let pc = self.pc.clone();
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// The id an `a=extmap:<id>[/<direction>] <uri>` line gives `uri`.
pub(crate) fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let rest = line.strip_prefix("a=extmap:")?;
        let (id, tail) = rest.split_once(' ')?;
        let id = id.split('/').next()?;
        (tail.split_whitespace().next()? == uri).then(|| id.parse().ok())?
    })
}

/// The payload type of the first `a=rtpmap:<pt> <encoding>` line whose encoding is
/// `encoding` (case-insensitive; `telephone-event/48000` also matches a `/1` suffix).
pub(crate) fn rtpmap_payload_type(sdp: &str, encoding: &str) -> Option<u8> {
    sdp.lines().find_map(|line| {
        let (pt, name) = line.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        let name = name.trim();
        let matches = name.eq_ignore_ascii_case(encoding)
            || name
                .strip_suffix("/1")
                .is_some_and(|n| n.eq_ignore_ascii_case(encoding));
        matches.then(|| pt.parse().ok())?
    })
}

/// Refuses SDP that could only lead to an unencrypted or audio-less session, with a reason
/// a person can act on, before the stack gives a less specific one.
/// The payload type the answer SDP `sdp` gives `telephone-event/48000`, when this side offers
/// telephone-events at all (`local`, the configured payload type).
pub(crate) fn negotiated_telephone_event(local: Option<u8>, sdp: &str) -> Option<u8> {
    local.and_then(|_| rtpmap_payload_type(sdp, "telephone-event/48000"))
}

pub(crate) fn check_remote_sdp(kind: &'static str, sdp: &str) -> Result<(), TransportError> {
    let fail = |reason: &str| {
        Err(TransportError::Sdp {
            kind,
            reason: reason.to_owned(),
        })
    };
    if !sdp.starts_with("v=0") {
        return fail("does not start with v=0");
    }
    if !sdp.lines().any(|l| l.starts_with("m=audio ")) {
        return fail("has no audio m-line");
    }
    if !sdp.lines().any(|l| l.starts_with("a=fingerprint:")) {
        return fail("has no DTLS fingerprint (DTLS-SRTP is mandatory)");
    }
    if !sdp
        .lines()
        .any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_lowercase().contains("opus/48000/2"))
    {
        return fail("offers no opus/48000/2");
    }
    Ok(())
}

async fn build(config: &TransportConfig) -> Result<Built, TransportError> {
    config.validate()?;
    let socket = Arc::new(SocketCounters::default());
    let (gathered, _) = watch::channel(false);
    let shared = Arc::new(MediaSessionShared {
        state: StateCell::new(),
        gathered,
        socket: socket.clone(),
        media: MediaCounters::default(),
        last_pc_state: Mutex::new(RTCPeerConnectionState::New),
        peer_timeout: config.peer_timeout,
        rtt: Arc::new(RttCell::default()),
        link: MediaLink::new(config.queue_capacity),
        telephone_event_negotiated: AtomicU8::new(NO_PAYLOAD_TYPE),
        telephone_event_local: config.telephone_event_payload_type,
    });

    let candidates = candidate_ports(config)?;
    let mut last_err = None;
    for port in candidates {
        let addr = SocketAddr::new(config.bind_ip, port);
        match build_peer_connection(config, addr, &shared, &socket).await {
            Ok(pc) => {
                let ssrc = rand_ssrc();
                let track = Arc::new(audio_track(config, "appmedia-audio", ssrc));
                return Ok(Built {
                    pc,
                    track,
                    ssrc,
                    unmixed: Vec::new(),
                    unmixed_receive: 0,
                    shared,
                    local_addr: addr,
                    public_ip: config.public_ip,
                });
            }
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| match &config.port_range {
        Some(range) => TransportError::PortRangeExhausted {
            ip: config.bind_ip,
            start: *range.start(),
            end: *range.end(),
        },
        None => TransportError::InvalidConfig("no port to bind".into()),
    }))
}

/// Ports to try, in order. With a range, a few free ones starting at a random offset (so
/// concurrent sessions do not all race for the first port); without, one ephemeral port
/// chosen by the kernel. The probe socket is closed before the stack binds the port, so
/// another process can take it in between; the caller then tries the next one.
fn candidate_ports(config: &TransportConfig) -> Result<Vec<u16>, TransportError> {
    const ATTEMPTS: usize = 4;
    let Some(range) = &config.port_range else {
        // Held together so the kernel hands out distinct ports; each is a fallback for the
        // one before if something else takes it before the stack binds.
        let probes = (0..ATTEMPTS)
            .map(|_| UdpSocket::bind(SocketAddr::new(config.bind_ip, 0)))
            .collect::<Result<Vec<_>, _>>()?;
        return probes
            .iter()
            .map(|p| {
                p.local_addr()
                    .map(|a| a.port())
                    .map_err(TransportError::from)
            })
            .collect();
    };
    let (start, end) = (*range.start() as u32, *range.end() as u32);
    let len = end - start + 1;
    let offset = rand_ssrc() % len;
    let mut free = Vec::with_capacity(ATTEMPTS);
    for i in 0..len {
        let port = (start + (offset + i) % len) as u16;
        if UdpSocket::bind(SocketAddr::new(config.bind_ip, port)).is_ok() {
            free.push(port);
            if free.len() == ATTEMPTS {
                break;
            }
        }
    }
    if free.is_empty() {
        return Err(TransportError::PortRangeExhausted {
            ip: config.bind_ip,
            start: start as u16,
            end: end as u16,
        });
    }
    Ok(free)
}

/// One Opus send track with a fixed SSRC, in msid stream `appmedia`.
fn audio_track(config: &TransportConfig, track_id: &str, ssrc: u32) -> TrackLocalStaticRTP {
    TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "appmedia".to_owned(),
        track_id.to_owned(),
        track_id.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(config),
            ..Default::default()
        }],
    ))
}

pub(crate) fn rand_ssrc() -> u32 {
    // uuid's v4 generator is already a dependency and is seeded from the OS.
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

pub(crate) fn opus_codec(config: &TransportConfig) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: config.opus_fmtp(),
        rtcp_feedback: vec![],
    }
}

/// RFC 4733 DTMF, offered next to Opus at the same clock rate (as browsers do).
pub(crate) fn telephone_event_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
        clock_rate: 48000,
        channels: 0,
        sdp_fmtp_line: TransportConfig::TELEPHONE_EVENT_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

async fn build_peer_connection(
    config: &TransportConfig,
    addr: SocketAddr,
    shared: &Arc<MediaSessionShared>,
    socket: &Arc<SocketCounters>,
) -> Result<Arc<dyn PeerConnection>, TransportError> {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(config),
                payload_type: config.opus_payload_type,
            },
            RtpCodecKind::Audio,
        )
        .map_err(webrtc_err("register_codec"))?;
    if let Some(payload_type) = config.telephone_event_payload_type {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: telephone_event_codec(),
                    payload_type,
                },
                RtpCodecKind::Audio,
            )
            .map_err(webrtc_err("register_codec (telephone-event)"))?;
    }
    // RFC 6464 client-to-mixer audio level: the media core reads it for active-speaker
    // detection without decoding, and writes it on what it sends.
    media_engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(webrtc_err("register_header_extension"))?;
    // Audio only: RTCP SR/RR (loss, jitter, RTT). NACK, TWCC and simulcast are video tools.
    let registry = configure_rtcp_reports(Registry::new()).with(
        // Wire-most on the read walk: sees every inbound report before anything else.
        rtc::interceptor::Slot::Custom(500),
        RttInterceptor::new(shared.rtt.clone()),
    );

    let half = config.peer_timeout / 2;
    // No `with_nat_1to1_ips`: rtc 0.21.1 stores that setting but never applies it, so the
    // public address is written into the SDP we hand out instead (see `advertise_public`).
    let settings = SettingEngineBuilder::new()
        // Disconnected after half the peer timeout, failed after the whole of it.
        .with_ice_timeouts(Some(half), Some(half), Some(Duration::from_secs(1)))
        // A bot has no use for mDNS host-name candidates, and they cannot be combined with
        // a 1:1 NAT address.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(is_loopback(config.bind_ip))
        .with_lite(config.ice_lite);

    let handler = Arc::new(Handler {
        shared: shared.clone(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_runtime(Arc::new(GuardedRuntime::new(socket.clone())))
        .with_udp_addrs(vec![addr])
        .build()
        .await
        .map_err(webrtc_err("build peer connection"))?;
    Ok(Arc::new(pc))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Rewrites this side's host candidates (and connection lines) from the local address to
/// the 1:1 NAT's public address, keeping the port: what Graph's `InstancePublicIPAddress`
/// means. The peer's connectivity checks then arrive through the NAT at the local socket,
/// where the ICE agent answers them as usual.
pub(crate) fn advertise_public(sdp: &str, local: IpAddr, public: IpAddr) -> String {
    let local = local.to_string();
    let public = public.to_string();
    let family = if public.contains(':') { "IP6" } else { "IP4" };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ ...
            let mut fields: Vec<&str> = rest.split(' ').collect();
            if fields.len() > 4 && fields[4] == local {
                fields[4] = &public;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(ending);
                continue;
            }
        } else if let Some(addr) = body.strip_prefix("c=IN ")
            && addr.get(4..) == Some(local.as_str())
        {
            out.push_str(&format!("c=IN {family} {public}{ending}"));
            continue;
        }
        out.push_str(line);
    }
    out
}

async fn gathered_sdp(built: &Built) -> Result<String, TransportError> {
    let mut rx = built.shared.gathered.subscribe();
    tokio::time::timeout(GATHERING_TIMEOUT, rx.wait_for(|done| *done))
        .await
        .map_err(|_| TransportError::GatheringTimeout(GATHERING_TIMEOUT))?
        .map_err(|_| TransportError::GatheringTimeout(GATHERING_TIMEOUT))?;
    let public = built.public_ip;
    let local = built.local_addr.ip();
    built
        .pc
        .local_description()
        .await
        .map(|d| match public {
            Some(public) => advertise_public(&d.sdp, local, public),
            None => d.sdp,
        })
        .ok_or_else(|| TransportError::Sdp {
            kind: "offer",
            reason: "the stack produced no local description".into(),
        })
}

/// The send side of a session: the mixed m-line's track and the unmixed ones.
struct Outgoing {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    unmixed: Vec<(Arc<TrackLocalStaticRTP>, u32)>,
    router: Router,
}

/// Moves packets from the media core's outgoing queue into the stack. Runs on the async
/// runtime; the media core only ever does `try_send`.
async fn pump_outgoing(
    shared: Arc<MediaSessionShared>,
    mut out: Outgoing,
    pc: Arc<dyn PeerConnection>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut payload_type = None;
    let mut extension_ids: Vec<u8> = Vec::new();
    let media = &shared.media;
    let mut batch: Vec<Bytes> = Vec::new();
    // Out of RTP's 7-bit range when telephone-events are off: matches no packet.
    let telephone_event_local = shared.telephone_event_local.unwrap_or(NO_PAYLOAD_TYPE);
    loop {
        tick.tick().await;
        let state = shared.state.get();
        if matches!(state, SessionState::Ended(_)) {
            return;
        }
        let connected = matches!(state, SessionState::Connected | SessionState::Interrupted);
        if connected && payload_type.is_none() {
            (payload_type, extension_ids) = negotiated(pc.as_ref()).await;
        }
        // Drain under the link's lock, send after it: writing to the stack awaits.
        shared.link.drain(&mut batch);
        let now = Instant::now();
        for bytes in batch.drain(..) {
            let Some(pt) = payload_type.filter(|_| connected) else {
                // Graph discards media sent before the send status is active; so do we.
                media
                    .outbound_before_connected
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let mut buf = bytes;
            let Ok(mut packet) = rtc::rtp::packet::Packet::unmarshal(&mut buf) else {
                media.outbound_malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let header = &mut packet.header;
            let track = match out.router.route(header.ssrc, header.sequence_number, now) {
                Route::Main => {
                    header.ssrc = out.ssrc;
                    &out.track
                }
                Route::Unmixed {
                    slot,
                    sequence_number,
                } => {
                    let (track, slot_ssrc) = &out.unmixed[slot];
                    // The speaker's own SSRC rides along as the contributing source.
                    header.csrc = vec![header.ssrc];
                    header.ssrc = *slot_ssrc;
                    header.sequence_number = sequence_number;
                    track
                }
                Route::NoSlot => {
                    media
                        .outbound_no_unmixed_slot
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            header.payload_type = if header.payload_type == telephone_event_local {
                // DTMF keeps its own payload type, the negotiated one.
                let Some(te) = shared.telephone_event_negotiated() else {
                    media
                        .outbound_no_telephone_event
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                te
            } else {
                pt
            };
            // The stack refuses extensions that were not negotiated on this m-line.
            header.extensions.retain(|e| extension_ids.contains(&e.id));
            header.extension = !header.extensions.is_empty();
            match track.write_rtp(packet).await {
                Ok(()) => media.outbound_sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => media.outbound_write_failed.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}

/// The negotiated Opus payload type and header extension ids of the sending side.
async fn negotiated(pc: &dyn PeerConnection) -> (Option<u8>, Vec<u8>) {
    for sender in pc.get_senders().await {
        if let Ok(params) = sender.get_parameters().await
            && let Some(codec) = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))
        {
            let ids = params
                .rtp_parameters
                .header_extensions
                .iter()
                .filter_map(|e| u8::try_from(e.id).ok())
                .collect();
            return (Some(codec.payload_type), ids);
        }
    }
    (None, Vec::new())
}

/// Ends the session when a timer runs out, and closes the peer connection when it ends.
async fn watchdog(
    shared: Arc<MediaSessionShared>,
    pc: Arc<dyn PeerConnection>,
    connect_timeout: Duration,
    peer_timeout: Duration,
) {
    let mut rx = shared.state.subscribe();
    let mut connect_deadline = None;
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            SessionState::AwaitingAnswer => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
            SessionState::Connecting => {
                let deadline = *connect_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + connect_timeout);
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep_until(deadline) => {
                        let last_state = shared
                            .last_pc_state
                            .lock()
                            .map(|s| s.to_string())
                            .unwrap_or_default();
                        shared.state.end(EndReason::ConnectTimeout {
                            timeout_ms: connect_timeout.as_millis() as u64,
                            last_state,
                        });
                    }
                }
            }
            SessionState::Connected | SessionState::Interrupted if shared.rtt.bye_received() => {
                shared.state.end(EndReason::ClosedByPeer);
            }
            SessionState::Connected => {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = shared.rtt.bye.notified() => {}
                }
            }
            SessionState::Interrupted => {
                let since = tokio::time::Instant::now();
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = shared.rtt.bye.notified() => {}
                    _ = tokio::time::sleep(peer_timeout) => {
                        shared.state.end(EndReason::PeerGone {
                            silent_ms: since.elapsed().as_millis() as u64,
                        });
                    }
                }
            }
            SessionState::Ended(reason) => {
                tracing::info!(%reason, "media session ended");
                let _ = pc.close().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extmap_ids_are_found_by_uri() {
        let sdp = "a=extmap:3 urn:x\r\na=extmap:5/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(extmap_id(sdp, AUDIO_LEVEL_URI), Some(5));
        assert_eq!(extmap_id(sdp, "urn:y"), None);
    }

    #[test]
    fn rtpmap_payload_types_are_found_by_encoding() {
        let sdp = "a=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n\
                   a=rtpmap:110 Telephone-Event/48000\r\n";
        assert_eq!(rtpmap_payload_type(sdp, "telephone-event/48000"), Some(110));
        assert_eq!(rtpmap_payload_type(sdp, "telephone-event/16000"), None);
        let with_channels = "a=rtpmap:101 telephone-event/48000/1\r\n";
        assert_eq!(
            rtpmap_payload_type(with_channels, "telephone-event/48000"),
            Some(101)
        );
        assert_eq!(
            rtpmap_payload_type("a=rtpmap:x telephone-event/48000", "telephone-event/48000"),
            None
        );
    }

    #[test]
    fn public_address_replaces_local_candidates_only() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\n\
a=candidate:2 1 udp 2130706431 10.0.0.6 50002 typ host\r\n";
        let out = advertise_public(
            sdp,
            "10.0.0.5".parse().unwrap(),
            "203.0.113.7".parse().unwrap(),
        );
        assert_eq!(
            out,
            "v=0\r\nc=IN IP4 203.0.113.7\r\n\
a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\n\
a=candidate:2 1 udp 2130706431 10.0.0.6 50002 typ host\r\n"
        );
    }
}
