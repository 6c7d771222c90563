//! Plain-RTP lab mode: Opus RTP over bare UDP, no ICE, no DTLS, no SRTP.
//!
//! For benchmarks and for interop with standard RTP tools (GStreamer, ffmpeg, SIPp). It is
//! never what a [`MediaSession`](crate::MediaSession) does: using it is an explicit choice
//! (its own type, its own constructor), and nothing on the wire is protected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use appmedia_media::pipeline::CallPipeline;
use bytes::Bytes;
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::TransportError;
use crate::guard::{DatagramKind, classify};
use crate::link::{MediaLink, RtpEndpoint};

/// Where a [`PlainRtpSession`] listens and sends.
#[derive(Debug, Clone)]
pub struct PlainRtpConfig {
    /// Local address to receive RTP on (port 0: any free port).
    pub listen: SocketAddr,
    /// Where to send RTP.
    pub send_to: SocketAddr,
    /// Payload type for Opus, both ways: outgoing packets are rewritten to it, incoming
    /// packets with another payload type are dropped (counted).
    pub payload_type: u8,
    /// Capacity, in packets, of each queue to the media side (a full queue drops its
    /// oldest packet).
    pub queue_capacity: usize,
    /// How often the outgoing queue is drained.
    pub send_poll_interval: Duration,
}

impl PlainRtpConfig {
    /// Listen on `listen`, send to `send_to`, payload type 111.
    pub fn new(listen: SocketAddr, send_to: SocketAddr) -> Self {
        Self {
            listen,
            send_to,
            payload_type: 111,
            queue_capacity: 64,
            send_poll_interval: Duration::from_millis(5),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    datagrams_received: AtomicU64,
    rtp_received: AtomicU64,
    rtcp_received: AtomicU64,
    wrong_payload_type: AtomicU64,
    garbage: AtomicU64,
    foreign_source: AtomicU64,
    inbound_queue_full: AtomicU64,
    packets_sent: AtomicU64,
    outbound_malformed: AtomicU64,
    send_errors: AtomicU64,
}

/// Statistics of a [`PlainRtpSession`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainRtpStats {
    /// UDP datagrams received.
    pub datagrams_received: u64,
    /// RTP packets with the configured payload type, handed to the media side.
    pub rtp_received: u64,
    /// RTCP packets (counted, not interpreted in lab mode).
    pub rtcp_received: u64,
    /// RTP packets with another payload type, dropped.
    pub wrong_payload_type: u64,
    /// Datagrams that were not RTP or RTCP, dropped.
    pub garbage: u64,
    /// RTP packets from another address than the one the first RTP packet came from,
    /// dropped: lab mode has no ICE or SRTP, so the session keeps to its first peer
    /// (symmetric-RTP latching) and a third party cannot inject audio.
    pub foreign_source: u64,
    /// Received packets dropped because the media side's queue was full (oldest first).
    pub inbound_queue_full: u64,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Packets from the media side that were not RTP, dropped.
    pub outbound_malformed: u64,
    /// Sends the socket refused.
    pub send_errors: u64,
}

/// Opus RTP to and from fixed UDP addresses, with the same queue interface as a
/// [`MediaSession`](crate::MediaSession). Must be created on a tokio runtime; dropping it
/// stops its tasks and closes the socket.
pub struct PlainRtpSession {
    local_addr: SocketAddr,
    link: Arc<MediaLink>,
    counters: Arc<Counters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PlainRtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainRtpSession")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl PlainRtpSession {
    /// Binds `config.listen` and starts moving packets.
    pub async fn bind(config: PlainRtpConfig) -> Result<Self, TransportError> {
        if config.payload_type > 127 {
            return Err(TransportError::InvalidConfig(format!(
                "payload_type {} does not fit RTP's 7 bits",
                config.payload_type
            )));
        }
        if config.queue_capacity == 0 || config.send_poll_interval.is_zero() {
            return Err(TransportError::InvalidConfig(
                "queue_capacity and send_poll_interval must be non-zero".into(),
            ));
        }
        let socket = Arc::new(UdpSocket::bind(config.listen).await?);
        let local_addr = socket.local_addr()?;
        let link = Arc::new(MediaLink::new(config.queue_capacity));
        let counters = Arc::new(Counters::default());
        let receive = tokio::spawn(receive(
            socket.clone(),
            link.clone(),
            counters.clone(),
            config.payload_type,
        ));
        let send = tokio::spawn(send(socket, link.clone(), counters.clone(), config));
        Ok(Self {
            local_addr,
            link,
            counters,
            tasks: vec![receive, send],
        })
    }

    /// The bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Takes the queues for code that handles RTP itself. `None` after the first call, or
    /// once a pipeline is attached.
    pub fn take_endpoint(&self) -> Option<RtpEndpoint> {
        self.link.take_endpoint()
    }

    /// Connects a media-core call pipeline directly, as
    /// [`MediaSession::attach_pipeline`](crate::MediaSession::attach_pipeline) does.
    pub fn attach_pipeline(&self, pipeline: &mut CallPipeline, epoch: Instant) {
        self.link.attach_pipeline(pipeline, epoch);
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PlainRtpStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PlainRtpStats {
            datagrams_received: get(&c.datagrams_received),
            rtp_received: get(&c.rtp_received),
            rtcp_received: get(&c.rtcp_received),
            wrong_payload_type: get(&c.wrong_payload_type),
            garbage: get(&c.garbage),
            foreign_source: get(&c.foreign_source),
            inbound_queue_full: get(&c.inbound_queue_full),
            packets_sent: get(&c.packets_sent),
            outbound_malformed: get(&c.outbound_malformed),
            send_errors: get(&c.send_errors),
        }
    }
}

impl Drop for PlainRtpSession {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    link: Arc<MediaLink>,
    counters: Arc<Counters>,
    payload_type: u8,
) {
    let mut buf = vec![0u8; 2048];
    let mut peer: Option<std::net::SocketAddr> = None;
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP port unreachable from an earlier send surfaces here on Linux; the socket
            // is still fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(%e, "plain RTP socket failed");
                return;
            }
        };
        counters.datagrams_received.fetch_add(1, Ordering::Relaxed);
        let datagram = &buf[..n];
        match classify(datagram) {
            DatagramKind::Rtp if datagram[1] & 0x7f == payload_type => {
                if *peer.get_or_insert(from) != from {
                    counters.foreign_source.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                counters.rtp_received.fetch_add(1, Ordering::Relaxed);
                if link.deliver(Bytes::copy_from_slice(datagram)) {
                    counters.inbound_queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            DatagramKind::Rtp => {
                counters.wrong_payload_type.fetch_add(1, Ordering::Relaxed);
            }
            DatagramKind::Rtcp => {
                counters.rtcp_received.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                counters.garbage.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn send(
    socket: Arc<UdpSocket>,
    link: Arc<MediaLink>,
    counters: Arc<Counters>,
    config: PlainRtpConfig,
) {
    let mut tick = tokio::time::interval(config.send_poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut batch = Vec::new();
    let mut out = Vec::with_capacity(1500);
    loop {
        tick.tick().await;
        link.drain(&mut batch);
        for packet in batch.drain(..) {
            if classify(&packet) != DatagramKind::Rtp {
                counters.outbound_malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            out.clear();
            out.extend_from_slice(&packet);
            out[1] = (out[1] & 0x80) | config.payload_type;
            match socket.send_to(&out, config.send_to).await {
                Ok(_) => counters.packets_sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => counters.send_errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}
