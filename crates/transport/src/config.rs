//! What a [`MediaSession`](crate::MediaSession) is configured with.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::blob::Integrity;

/// Knobs for one media session. Cheap to clone; one value usually serves a whole process.
///
/// The network part mirrors what Graph media bots configure: a local bind address, the
/// public address of a 1:1 NAT in front of the instance (`InstancePublicIPAddress`) and the
/// media port range. With a 1:1 NAT the public port equals the local port, so the range
/// must be forwarded unchanged.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Local address the session's UDP socket binds to. Host candidates carry this address
    /// unless [`public_ip`](Self::public_ip) is set. `0.0.0.0` means every non-loopback
    /// interface (one socket each).
    pub bind_ip: IpAddr,
    /// Public address of a 1:1 NAT (Graph's `InstancePublicIPAddress`). When set, host
    /// candidates advertise this address instead of the local one.
    pub public_ip: Option<IpAddr>,
    /// Media port range (Graph's default is 49152–65535). `None`: an ephemeral port.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Dynamic RTP payload type offered for Opus (96–127).
    pub opus_payload_type: u8,
    /// Dynamic RTP payload type offered for RFC 4733 `telephone-event/48000` (DTMF), with
    /// `None` to offer none. It is also the payload type the media side uses: the transport
    /// maps it to and from whatever the SDP negotiated, so an attached
    /// [`CallPipeline`](appmedia_media::pipeline::CallPipeline) must be configured with the
    /// same value (`PipelineConfig::telephone_event_payload_type`; both default to 101).
    pub telephone_event_payload_type: Option<u8>,
    /// Ask the far end to use discontinuous transmission (`usedtx=1` in the fmtp line).
    pub usedtx: bool,
    /// The session ends with [`EndReason::ConnectTimeout`](crate::EndReason) when ICE and
    /// DTLS have not both completed this long after the session started.
    pub connect_timeout: Duration,
    /// The session ends with [`EndReason::PeerGone`](crate::EndReason) when the peer has
    /// answered no ICE consent check for this long after being connected.
    pub peer_timeout: Duration,
    /// Capacity, in packets, of each queue between the transport and the media core
    /// (a full queue drops its oldest packet).
    pub queue_capacity: usize,
    /// How often the network side drains the outgoing queue. The media core runs on its
    /// own threads and never wakes the async runtime, so this bounds the added latency.
    pub send_poll_interval: Duration,
    /// Blob: the bot wants unmixed per-speaker audio (Graph's `ReceiveUnmixedMeetingAudio`).
    pub receive_unmixed_meeting_audio: bool,
    /// Offering side, with `receive_unmixed_meeting_audio`: how many unmixed per-speaker
    /// audio streams to offer to receive (one receive-only m-line each, after the mixed
    /// one). Graph gives four; the default is eight. At most
    /// [`MAX_UNMIXED_AUDIO_STREAMS`](crate::MAX_UNMIXED_AUDIO_STREAMS).
    pub unmixed_audio_streams: usize,
    /// Sending side, when the peer receives unmixed streams: the SSRC of the stream that
    /// goes on the first (mixed) m-line; every other SSRC is a speaker and goes on an
    /// unmixed m-line of its own. `None`: every packet goes on the first m-line.
    pub mixed_ssrc: Option<u32>,
    /// ICE-lite (RFC 8445 §2.5), as media servers on a reachable address run: the SDP says
    /// `a=ice-lite`, the peer (a full agent: browsers, the emulator) is the controlling side
    /// and nominates, and the session runs no check or consent timer of its own. As rtc 0.21
    /// implements it, the session still answers each of the peer's checks with a triggered
    /// check back (its controlled side does so lite or not), so a lite session is not
    /// silent: it only leaves the pacing of checks to the peer. Two lite peers cannot
    /// connect. Default `false`.
    pub ice_lite: bool,
    /// Blob: how blobs are sealed and verified. Both ends of a deployment must agree.
    pub blob_integrity: Integrity,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ip: None,
            port_range: None,
            opus_payload_type: 111,
            telephone_event_payload_type: Some(101),
            usedtx: false,
            connect_timeout: Duration::from_secs(10),
            peer_timeout: Duration::from_secs(10),
            queue_capacity: 64,
            send_poll_interval: Duration::from_millis(5),
            receive_unmixed_meeting_audio: false,
            unmixed_audio_streams: 8,
            mixed_ssrc: None,
            ice_lite: false,
            blob_integrity: Integrity::Sha256,
        }
    }
}

impl TransportConfig {
    /// The Opus fmtp line this session puts in its SDP (RFC 7587 §7).
    pub fn opus_fmtp(&self) -> String {
        let mut line = String::from("minptime=10;useinbandfec=1");
        if self.usedtx {
            line.push_str(";usedtx=1");
        }
        line
    }

    /// The telephone-event fmtp line: the 16 DTMF events and flash (RFC 4733 §3.2).
    pub const TELEPHONE_EVENT_FMTP: &'static str = "0-16";

    pub(crate) fn validate(&self) -> Result<(), crate::TransportError> {
        use crate::TransportError::InvalidConfig;
        if !(96..=127).contains(&self.opus_payload_type) {
            return Err(InvalidConfig(format!(
                "opus_payload_type {} is not a dynamic payload type (96..=127)",
                self.opus_payload_type
            )));
        }
        if let Some(pt) = self.telephone_event_payload_type
            && (!(96..=127).contains(&pt) || pt == self.opus_payload_type)
        {
            return Err(InvalidConfig(format!(
                "telephone_event_payload_type {pt} is not a dynamic payload type (96..=127) \
                 other than opus_payload_type {}",
                self.opus_payload_type
            )));
        }
        if let Some(range) = &self.port_range
            && (range.is_empty() || *range.start() == 0)
        {
            return Err(InvalidConfig(format!(
                "port_range {}..={} is empty or starts at 0",
                range.start(),
                range.end()
            )));
        }
        if self.queue_capacity == 0 {
            return Err(InvalidConfig("queue_capacity must be at least 1".into()));
        }
        if self.unmixed_audio_streams > crate::MAX_UNMIXED_AUDIO_STREAMS {
            return Err(InvalidConfig(format!(
                "unmixed_audio_streams {} is more than {}",
                self.unmixed_audio_streams,
                crate::MAX_UNMIXED_AUDIO_STREAMS
            )));
        }
        if self.send_poll_interval.is_zero() {
            return Err(InvalidConfig("send_poll_interval must not be zero".into()));
        }
        Ok(())
    }
}
