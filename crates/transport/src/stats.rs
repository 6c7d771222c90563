//! What a session reports about itself.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::SessionState;
use crate::guard::SocketCounters;

/// rtc 0.21.1 reports both jitters in RTP timestamp units as they appear in the report
/// block (not seconds as W3C stats define them); Opus's RTP clock is 48 kHz.
const OPUS_CLOCK_KHZ: f64 = 48.0;

/// Counters kept by the transport itself, between the stack and the media queues.
#[derive(Debug, Default)]
pub(crate) struct MediaCounters {
    pub inbound_delivered: AtomicU64,
    pub inbound_queue_full: AtomicU64,
    pub inbound_marshal_failed: AtomicU64,
    pub outbound_sent: AtomicU64,
    pub outbound_malformed: AtomicU64,
    pub outbound_before_connected: AtomicU64,
    pub outbound_write_failed: AtomicU64,
    pub outbound_no_unmixed_slot: AtomicU64,
    pub outbound_no_telephone_event: AtomicU64,
}

/// A snapshot of one session's statistics.
///
/// Loss and jitter come from RTCP: `packets_lost`/`jitter_ms` are what this side measured
/// on the stream it receives (and reports in its receiver reports); the `remote_*` fields
/// are what the peer reported about the stream this side sends. Round-trip time is from
/// RTCP SR/RR when the peer has sent a report, and from ICE consent checks otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionStats {
    /// Where the session is.
    pub state: SessionState,
    /// RTP packets handed to the stack for sending (outbound-rtp).
    pub packets_sent: u64,
    /// RTP payload bytes sent.
    pub bytes_sent: u64,
    /// RTP packets received and decrypted (inbound-rtp).
    pub packets_received: u64,
    /// RTP payload bytes received.
    pub bytes_received: u64,
    /// Packets lost on the received stream (RFC 3550 cumulative count).
    pub packets_lost: i64,
    /// Interarrival jitter of the received stream, milliseconds.
    pub jitter_ms: f64,
    /// Packets lost on the sent stream, as the peer reported (RTCP RR).
    pub remote_packets_lost: i64,
    /// Fraction lost on the sent stream in the peer's last report, 0..=1.
    pub remote_fraction_lost: f64,
    /// Jitter of the sent stream as the peer reported, milliseconds.
    pub remote_jitter_ms: f64,
    /// Round-trip time from RTCP (SR/RR, RFC 3550 §6.4.1), milliseconds.
    pub rtcp_round_trip_time_ms: Option<f64>,
    /// Round-trip time of the last ICE consent check, milliseconds.
    pub ice_round_trip_time_ms: Option<f64>,
    /// UDP datagrams that reached the session's sockets.
    pub datagrams_received: u64,
    /// Datagrams that were no protocol a WebRTC peer sends (RFC 7983), dropped at the socket.
    pub garbage_datagrams: u64,
    /// Datagrams that looked like SRTP but the stack did not deliver: authentication
    /// failures, replays, unknown SSRCs, media before the DTLS handshake. The stack does not
    /// tell these apart, so they are counted together.
    pub srtp_rejected: u64,
    /// Received packets dropped because the media core's queue was full.
    pub inbound_queue_full: u64,
    /// Packets from the media core sent to the peer.
    pub outbound_sent: u64,
    /// Packets from the media core that were not RTP.
    pub outbound_malformed: u64,
    /// Packets from the media core discarded because the session was not connected yet.
    pub outbound_before_connected: u64,
    /// Packets the stack refused to send.
    pub outbound_write_failed: u64,
    /// Unmixed speaker packets dropped because every unmixed m-line the peer offered was
    /// busy with another speaker (more simultaneous speakers than m-lines).
    pub outbound_no_unmixed_slot: u64,
    /// DTMF (telephone-event) packets dropped because the peer did not negotiate
    /// `telephone-event/48000`.
    pub outbound_no_telephone_event: u64,
    /// Times the peer's address changed mid-call (a NAT rebinding) and the session followed
    /// it, after an authenticated ICE check from the new address. Only sessions on a shared
    /// [`MediaPort`](crate::MediaPort) follow a moved peer; a session with its own socket
    /// keeps its candidate pair and ends when consent runs out.
    pub peer_moves: u64,
}

pub(crate) struct Snapshot<'a> {
    pub state: SessionState,
    pub socket: &'a SocketCounters,
    pub media: &'a MediaCounters,
    pub report: &'a webrtc::peer_connection::RTCStatsReport,
    pub rtcp_rtt: Option<f64>,
}

impl SessionStats {
    pub(crate) fn from_snapshot(s: Snapshot<'_>) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut stats = SessionStats {
            state: s.state,
            packets_sent: 0,
            bytes_sent: 0,
            packets_received: 0,
            bytes_received: 0,
            packets_lost: 0,
            jitter_ms: 0.0,
            remote_packets_lost: 0,
            remote_fraction_lost: 0.0,
            remote_jitter_ms: 0.0,
            rtcp_round_trip_time_ms: s.rtcp_rtt.map(|seconds| seconds * 1000.0),
            ice_round_trip_time_ms: None,
            datagrams_received: get(&s.socket.datagrams_received),
            garbage_datagrams: get(&s.socket.garbage),
            peer_moves: get(&s.socket.peer_moves),
            srtp_rejected: 0,
            inbound_queue_full: get(&s.media.inbound_queue_full),
            outbound_sent: get(&s.media.outbound_sent),
            outbound_malformed: get(&s.media.outbound_malformed),
            outbound_before_connected: get(&s.media.outbound_before_connected),
            outbound_write_failed: get(&s.media.outbound_write_failed),
            outbound_no_unmixed_slot: get(&s.media.outbound_no_unmixed_slot),
            outbound_no_telephone_event: get(&s.media.outbound_no_telephone_event),
        };
        for inbound in s.report.inbound_rtp_streams() {
            let r = &inbound.received_rtp_stream_stats;
            stats.packets_received += r.packets_received;
            stats.bytes_received += inbound.bytes_received;
            stats.packets_lost += r.packets_lost;
            stats.jitter_ms = stats.jitter_ms.max(r.jitter / OPUS_CLOCK_KHZ);
        }
        for outbound in s.report.outbound_rtp_streams() {
            stats.packets_sent += outbound.sent_rtp_stream_stats.packets_sent;
            stats.bytes_sent += outbound.sent_rtp_stream_stats.bytes_sent;
        }
        for entry in s.report.iter() {
            use webrtc::peer_connection::RTCStatsReportEntry as E;
            match entry {
                E::RemoteInboundRtp(remote) => {
                    let r = &remote.received_rtp_stream_stats;
                    stats.remote_packets_lost += r.packets_lost;
                    stats.remote_fraction_lost = remote.fraction_lost;
                    stats.remote_jitter_ms = r.jitter / OPUS_CLOCK_KHZ;
                }
                E::IceCandidatePair(pair) if pair.nominated && pair.responses_received > 0 => {
                    stats.ice_round_trip_time_ms = Some(pair.current_round_trip_time * 1000.0);
                }
                _ => {}
            }
        }
        // Everything shaped like RTP at the socket that never came out of the stack.
        stats.srtp_rejected = get(&s.socket.rtp)
            .saturating_sub(get(&s.media.inbound_delivered))
            .saturating_sub(get(&s.media.inbound_marshal_failed));
        stats
    }
}
