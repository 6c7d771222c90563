//! One UDP port for every call: [`MediaPort`] and its sans-IO [`PortSession`]s.
//!
//! A [`MediaSession`](crate::MediaSession) binds a socket and runs tasks of its own. A
//! [`MediaPort`] binds **one** socket and one thread for every session on it: the thread
//! reads datagrams in batches (`recvmmsg`, through `quinn-udp`) and routes each to its session
//! ([`demux`]). Each session is webrtc-rs' sans-IO core, `rtc::RTCPeerConnection`, which takes
//! datagrams and time and hands back datagrams, RTP packets and events: the port's thread
//! runs it until a pipeline is attached, then the call's own tick does, on whichever media
//! worker ticks the call (`CallPipeline::drive_transport`). No task, timer or socket per call.
//! RTP crosses to the media core through the same bounded lock-free queues as a
//! `MediaSession`'s ([`RtpEndpoint`], or `attach_pipeline`). A peer whose address changes
//! mid-call is followed once the stack has authenticated a check from its new address
//! ([`follow`]).
//!
//! The blob, the SDP and the peer's view are the same as a `MediaSession`'s: the two
//! interoperate, and Chromium sees an ordinary WebRTC peer (one host candidate, the port's).
//! An offering `PortSession` receives unmixed per-speaker audio as a `MediaSession` does
//! ([`crate::unmixed`]). Not on a `PortSession`: sending unmixed streams (the answering
//! side's part, the emulator's) and RTCP-derived statistics beyond the counters (both stay
//! on `MediaSession`).

pub(crate) mod demux;
pub(crate) mod pair;

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use appmedia_media::pipeline::{CallPipeline, TickTransport};
use appmedia_media::queue::{self, Consumer, Producer, Push};
use bytes::{Bytes, BytesMut};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::marshal::{Marshal, Unmarshal};
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::blob::{Blob, SdpKind};
use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::follow::PeerAddress;
use crate::guard::{DatagramKind, SocketCounters, classify};
use crate::lifecycle::{BlobIdentity, Role, StateCell};
use crate::link::{MediaLink, RtpEndpoint};
use crate::rtt::{RttCell, RttInterceptor};
use crate::session::{
    AUDIO_LEVEL_URI, EndReason, SessionState, advertise_public, check_remote_sdp, extmap_id,
    negotiated_telephone_event, opus_codec, rand_ssrc, telephone_event_codec,
};
use crate::stats::{MediaCounters, SessionStats, Snapshot};
use crate::unmixed::{self, UNMIXED_TRACK_PREFIX};
use demux::{Demux, DropReason, Route, SessionKey};

/// Socket buffer asked for, each way: 4 MiB, 2 s of 132 calls' audio and more.
const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams read per `recvmmsg` call.
const BATCH: usize = 32;
/// Datagrams waiting for a worker-driven session's next tick (a full inbox drops its
/// oldest): 20 ms of a call is a few datagrams; 64 absorbs a second of late ticks.
const INBOX: usize = 64;
/// Largest datagram accepted; a longer one is dropped and counted as garbage (no WebRTC peer
/// sends more than an MTU).
const MAX_DATAGRAM: usize = 2048;

/// The packet outbox of a pipeline that drives its session: the tick makes at most one
/// packet and the same tick's `after_tick` sends it, so two slots (3 KB) are plenty where a
/// transport draining from its own task needs 16 (24 KB a call).
const TICK_OUTBOX: usize = 2;

/// What a port saw, over all its sessions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PortStats {
    /// Sessions on the port now.
    pub sessions: usize,
    /// Datagrams read from the socket.
    pub datagrams_received: u64,
    /// Datagrams handed to a session.
    pub datagrams_routed: u64,
    /// Dropped: not STUN, DTLS or RTP/RTCP (RFC 7983), or longer than the port reads.
    pub dropped_garbage: u64,
    /// Dropped: a STUN Binding request whose USERNAME names no session of the port.
    pub dropped_unknown_ufrag: u64,
    /// Dropped: from an address no session of the port talks to.
    pub dropped_unknown_source: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams the socket refused to send (counted, not retried: media is real-time).
    pub send_errors: u64,
    /// `recvmmsg` calls that returned datagrams (datagrams_received / this = batch size).
    pub receive_batches: u64,
    /// Time the port's thread spent working (receiving, routing, driving sessions not yet
    /// on a worker, sending), not waiting; nanoseconds.
    pub driver_busy_ns: u64,
    /// CPU time media workers spent in attached sessions' transport (datagrams in,
    /// ICE/DTLS/SRTP, packets out), nanoseconds, over `worker_transport_ticks` ticks.
    pub worker_transport_ns: u64,
    /// Ticks that ran an attached session's transport.
    pub worker_transport_ticks: u64,
    /// CPU time in the socket's send calls, by the port's thread and the workers,
    /// nanoseconds (on loopback it includes the receiving side's kernel work).
    pub send_ns: u64,
}

#[derive(Debug, Default)]
struct PortCounters {
    received: AtomicU64,
    routed: AtomicU64,
    garbage: AtomicU64,
    unknown_ufrag: AtomicU64,
    unknown_source: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    batches: AtomicU64,
    driver_ns: AtomicU64,
    worker_ns: AtomicU64,
    worker_ticks: AtomicU64,
    send_ns: AtomicU64,
}

/// One session as the port sees it.
#[derive(Clone)]
struct Entry {
    core: Arc<Mutex<Core>>,
    shared: Arc<SessionShared>,
}

/// The sessions of a port and how datagrams find them.
#[derive(Default)]
struct Table {
    demux: Demux,
    sessions: HashMap<SessionKey, Entry>,
}

struct PortShared {
    /// One socket, or several on the same port (`SO_REUSEPORT`) each with its own thread;
    /// sends go out of the first.
    sockets: Vec<PortSocket>,
    local: SocketAddr,
    /// What the sessions' one host candidate says: the bound port at `public_ip` when set,
    /// else at the bound address.
    advertised: SocketAddr,
    table: Mutex<Table>,
    counters: PortCounters,
    next_key: AtomicU64,
    stop: AtomicBool,
    /// How often the driver wakes when no datagram arrives (timers and outgoing media).
    interval: Duration,
}

/// A socket of the port and quinn's state for it (batched receive, GRO).
struct PortSocket {
    socket: UdpSocket,
    udp: quinn_udp::UdpSocketState,
}

/// The most sockets one port binds with [`MediaPort::bind_reuseport`].
pub const MAX_PORT_SOCKETS: usize = 64;

/// One UDP socket shared by every [`PortSession`] made on it, and the thread that drives
/// them (or several sockets on the one port, a thread each: [`MediaPort::bind_reuseport`]).
/// Dropping the port ends its sessions ([`EndReason::Closed`]) and joins its threads.
pub struct MediaPort {
    shared: Arc<PortShared>,
    drivers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for MediaPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPort")
            .field("local_addr", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl MediaPort {
    /// Binds `config.bind_ip` on `port` (0: an ephemeral port) and starts the driver thread.
    /// The sessions advertise that address, or `config.public_ip` when set (a 1:1 NAT, or a
    /// `0.0.0.0` bind on a host whose address is known, as with Kubernetes host networking);
    /// `config.send_poll_interval` is how often the driver looks at outgoing media and timers
    /// when nothing arrives.
    pub fn bind(config: &TransportConfig, port: u16) -> Result<MediaPort, TransportError> {
        Self::bind_sockets(config, port, 1)
    }

    /// As [`bind`](Self::bind), with `sockets` sockets on the one port (`SO_REUSEPORT`, 1 to
    /// [`MAX_PORT_SOCKETS`]), each read by a thread of its own; the kernel spreads the peers
    /// over them by a hash of their addresses. What a port with one thread can carry, and
    /// what several bought on this machine, is in `docs/benchmarks.md`: one socket is the
    /// default because one routing thread carries thousands of calls.
    pub fn bind_reuseport(
        config: &TransportConfig,
        port: u16,
        sockets: usize,
    ) -> Result<MediaPort, TransportError> {
        if !(1..=MAX_PORT_SOCKETS).contains(&sockets) {
            return Err(TransportError::InvalidConfig(format!(
                "a media port has 1 to {MAX_PORT_SOCKETS} sockets, not {sockets}"
            )));
        }
        Self::bind_sockets(config, port, sockets)
    }

    fn bind_sockets(
        config: &TransportConfig,
        port: u16,
        count: usize,
    ) -> Result<MediaPort, TransportError> {
        config.validate()?;
        if config.bind_ip.is_unspecified() && config.public_ip.is_none() {
            return Err(TransportError::InvalidConfig(
                "a media port advertises one address: with bind_ip unspecified, set public_ip"
                    .into(),
            ));
        }
        let first = port_socket(SocketAddr::new(config.bind_ip, port), count > 1)?;
        let local = first.socket.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..count {
            sockets.push(port_socket(local, true)?);
        }
        let shared = Arc::new(PortShared {
            sockets,
            local,
            advertised: SocketAddr::new(config.public_ip.unwrap_or(config.bind_ip), local.port()),
            table: Mutex::new(Table::default()),
            counters: PortCounters::default(),
            next_key: AtomicU64::new(1),
            stop: AtomicBool::new(false),
            interval: config.send_poll_interval,
        });
        let mut drivers = Vec::with_capacity(count);
        for index in 0..count {
            let name = match index {
                0 => format!("appmedia-port-{}", local.port()),
                i => format!("appmedia-port-{}-{i}", local.port()),
            };
            let spawned = std::thread::Builder::new().name(name).spawn({
                let shared = shared.clone();
                move || drive(&shared, index)
            });
            match spawned {
                Ok(driver) => drivers.push(driver),
                Err(e) => {
                    // Stop the threads already running before giving up.
                    drop(MediaPort { shared, drivers });
                    return Err(e.into());
                }
            }
        }
        Ok(MediaPort { shared, drivers })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The address every session's host candidate gives the peer.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.shared.advertised
    }

    /// What the port saw.
    pub fn stats(&self) -> PortStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PortStats {
            sessions: self
                .shared
                .table
                .lock()
                .map(|t| t.sessions.len())
                .unwrap_or(0),
            datagrams_received: get(&c.received),
            datagrams_routed: get(&c.routed),
            dropped_garbage: get(&c.garbage),
            dropped_unknown_ufrag: get(&c.unknown_ufrag),
            dropped_unknown_source: get(&c.unknown_source),
            datagrams_sent: get(&c.sent),
            send_errors: get(&c.send_errors),
            receive_batches: get(&c.batches),
            driver_busy_ns: get(&c.driver_ns),
            worker_transport_ns: get(&c.worker_ns),
            worker_transport_ticks: get(&c.worker_ticks),
            send_ns: get(&c.send_ns),
        }
    }
}

impl Drop for MediaPort {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for driver in self.drivers.drain(..) {
            let _ = driver.join();
        }
        if let Ok(mut table) = self.shared.table.lock() {
            for (_, entry) in table.sessions.drain() {
                entry.shared.state.end(EndReason::Closed);
            }
        }
    }
}

/// A non-blocking UDP socket bound to `addr` (with `SO_REUSEPORT` when the port has
/// several), with room to queue every call's datagrams while its thread is away (real-time
/// media workers may hold every core for a while), as single-port servers ask for. The kernel
/// caps the buffers at net.core.rmem_max / wmem_max.
fn port_socket(addr: SocketAddr, reuse_port: bool) -> Result<PortSocket, TransportError> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from(socket);
    let udp = quinn_udp::UdpSocketState::new((&socket).into())?;
    let _ = udp.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
    let _ = udp.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
    Ok(PortSocket { socket, udp })
}

/// A driver thread, until the port is dropped: reads socket `index` and routes what arrives;
/// the first thread also drives the sessions no media worker drives (timers, outgoing
/// media). Every datagram leaves through the first socket.
fn drive(port: &PortShared, index: usize) {
    let PortSocket { socket, udp } = &port.sockets[index];
    // Each slot takes a whole GRO batch of datagrams (the kernel coalesces a flow's datagrams
    // when it can) and is one byte longer than the longest datagram accepted, so that a
    // longer one is seen as such rather than cut to size.
    // One zeroed allocation (the allocator maps it untouched): only the pages datagrams land
    // in become resident, where 32 separately copied slots of a 64-datagram GRO batch each
    // were 4 MiB resident from the start.
    let slot = (MAX_DATAGRAM * udp.gro_segments().max(1)).max(MAX_DATAGRAM + 1);
    let mut storage = vec![0u8; slot * BATCH];
    let mut meta = [quinn_udp::RecvMeta::default(); BATCH];
    let mut sessions: Vec<Entry> = Vec::new();
    let mut out = Outbox::default();
    let timeout_ms = i32::try_from(port.interval.as_millis().max(1)).unwrap_or(i32::MAX);
    while !port.stop.load(Ordering::Relaxed) {
        wait_readable(socket, timeout_ms);
        let busy = Instant::now();
        loop {
            let mut bufs: Vec<IoSliceMut<'_>> =
                storage.chunks_mut(slot).map(IoSliceMut::new).collect();
            match udp.recv(socket.into(), &mut bufs, &mut meta) {
                Ok(n) => {
                    port.counters.batches.fetch_add(1, Ordering::Relaxed);
                    drop(bufs);
                    for (buf, meta) in storage.chunks(slot).zip(&meta).take(n) {
                        let stride = meta.stride.max(1);
                        for datagram in buf[..meta.len.min(buf.len())].chunks(stride) {
                            if datagram.len() > MAX_DATAGRAM {
                                port.counters.received.fetch_add(1, Ordering::Relaxed);
                                port.counters.garbage.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            receive(port, datagram, meta.addr, &mut out);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors for a vanished peer surface here on Linux; nothing to do
                    // but read on (the session's consent checks end it).
                    tracing::debug!(error = %e, "media port receive");
                    break;
                }
            }
        }
        // Every session the media workers do not drive: timers, outgoing media, events
        // (the first thread's job).
        sessions.clear();
        if index == 0
            && let Ok(table) = port.table.lock()
        {
            sessions.extend(
                table
                    .sessions
                    .values()
                    .filter(|e| !e.shared.worker_driven.load(Ordering::Acquire))
                    .cloned(),
            );
        }
        let now = Instant::now();
        for entry in &sessions {
            if let Ok(mut core) = entry.core.lock() {
                core.drive(now, &mut out);
            }
        }
        flush(port, &mut out);
        port.counters
            .driver_ns
            .fetch_add(busy.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// CPU time of the calling thread, nanoseconds (what the transport costs a worker, not the
/// wall time a preempted thread would add); 0 without the clock.
fn thread_cpu_ns() -> u64 {
    appmedia_media::cpu::thread_cpu_time().map_or(0, |t| t.as_nanos() as u64)
}

/// Blocks until the socket is readable or `timeout_ms` passes.
fn wait_readable(socket: &UdpSocket, timeout_ms: i32) {
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(&mut fds, 1, timeout_ms);
    }
}

fn receive(port: &PortShared, datagram: &[u8], from: SocketAddr, out: &mut Outbox) {
    let c = &port.counters;
    c.received.fetch_add(1, Ordering::Relaxed);
    let entry = {
        let Ok(table) = port.table.lock() else { return };
        match table.demux.route(datagram, from) {
            Route::Session(key) => table.sessions.get(&key).cloned(),
            Route::Drop(reason) => {
                match reason {
                    DropReason::Garbage => &c.garbage,
                    DropReason::UnknownUfrag => &c.unknown_ufrag,
                    DropReason::UnknownSource => &c.unknown_source,
                }
                .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    };
    let Some(entry) = entry else { return };
    c.routed.fetch_add(1, Ordering::Relaxed);
    let datagram = BytesMut::from(datagram);
    if entry.shared.worker_driven.load(Ordering::Acquire) {
        // Its worker reads it at the call's next tick.
        if matches!(
            entry.shared.inbox.push((from, datagram)),
            Push::QueuedEvicting(_) | Push::Rejected(_)
        ) {
            entry
                .shared
                .media
                .inbound_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    } else if let Ok(mut core) = entry.core.lock() {
        let now = Instant::now();
        core.read(now, port.advertised, from, datagram);
        core.pump(now, out);
    }
}

/// Datagrams the sessions want sent, and the peer addresses they send to for the first
/// time (so the port lets the peer's answers through).
#[derive(Default)]
struct Outbox {
    datagrams: Vec<(SocketAddr, BytesMut)>,
    claims: Vec<(SessionKey, SocketAddr)>,
}

fn flush(port: &PortShared, out: &mut Outbox) {
    if !out.claims.is_empty()
        && let Ok(mut table) = port.table.lock()
    {
        for (key, to) in out.claims.drain(..) {
            table.demux.claim(key, to);
        }
    }
    if out.datagrams.is_empty() {
        return;
    }
    let cpu = thread_cpu_ns();
    for (to, datagram) in out.datagrams.drain(..) {
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents: &datagram,
            segment_size: None,
            src_ip: None,
        };
        let PortSocket { socket, udp } = &port.sockets[0];
        match udp.try_send(socket.into(), &transmit) {
            Ok(()) => port.counters.sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => port.counters.send_errors.fetch_add(1, Ordering::Relaxed),
        };
    }
    port.counters
        .send_ns
        .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
}

/// What the API side and the driver share about one session.
struct SessionShared {
    state: StateCell,
    socket: SocketCounters,
    media: MediaCounters,
    link: MediaLink,
    rtt: Arc<RttCell>,
    /// Set once a media worker drives the session ([`PortSession::attach_pipeline`]): the
    /// port thread then only queues its datagrams in `inbox`.
    worker_driven: AtomicBool,
    inbox: Producer<(SocketAddr, BytesMut)>,
    /// The inbox's other end, until a worker takes it.
    inbox_rx: Mutex<Option<Consumer<(SocketAddr, BytesMut)>>>,
}

/// One session's sans-IO state, driven by the port thread.
struct Core {
    key: SessionKey,
    pc: RTCPeerConnection,
    shared: Arc<SessionShared>,
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// Negotiated once connected: the Opus payload type and the header extension ids.
    negotiated: Option<(u8, Vec<u8>)>,
    telephone_event_local: Option<u8>,
    telephone_event_negotiated: Option<u8>,
    connect_deadline: Option<Instant>,
    connect_timeout: Duration,
    peer_timeout: Duration,
    interrupted_since: Option<Instant>,
    last_pc_state: RTCPeerConnectionState,
    batch: Vec<Bytes>,
    closing: bool,
    /// Peer addresses this session has sent to (and so claimed on the port).
    claimed: Vec<SocketAddr>,
    /// Where the peer is, when it moved from where the stack thinks (see `follow`).
    peer: PeerAddress,
    /// Unmixed m-lines offered to receive on: their packets carry the speaker in the CSRC.
    unmixed_receive: usize,
}

impl Core {
    fn new(key: SessionKey, built: Built, config: &TransportConfig, state: SessionState) -> Core {
        built.shared.state.set(state);
        Core {
            key,
            pc: built.pc,
            shared: built.shared,
            sender: built.sender,
            ssrc: built.ssrc,
            negotiated: None,
            telephone_event_local: config.telephone_event_payload_type,
            telephone_event_negotiated: built.telephone_event_negotiated,
            connect_deadline: None,
            connect_timeout: config.connect_timeout,
            peer_timeout: config.peer_timeout,
            interrupted_since: None,
            last_pc_state: RTCPeerConnectionState::New,
            batch: Vec::with_capacity(config.queue_capacity),
            closing: false,
            claimed: Vec::new(),
            peer: PeerAddress::default(),
            unmixed_receive: built.unmixed_receive,
        }
    }

    fn read(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, datagram: BytesMut) {
        let c = &self.shared.socket;
        c.datagrams_received.fetch_add(1, Ordering::Relaxed);
        c.bytes_received
            .fetch_add(datagram.len() as u64, Ordering::Relaxed);
        match classify(&datagram) {
            DatagramKind::Stun | DatagramKind::Turn => &c.stun,
            DatagramKind::Dtls => &c.dtls,
            DatagramKind::Rtp => &c.rtp,
            DatagramKind::Rtcp => &c.rtcp,
            DatagramKind::Garbage => &c.garbage,
        }
        .fetch_add(1, Ordering::Relaxed);
        let (shown, moved) = self.peer.inbound(from, &datagram, now);
        if moved {
            c.peer_moves.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%from, "media port session: the peer moved (an authenticated check from its new address); following it");
        }
        let result = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: local,
                peer_addr: shown,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: datagram,
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "media port session read");
        }
    }

    /// Timers, outgoing media, then whatever the stack has for us.
    fn drive(&mut self, now: Instant, out: &mut Outbox) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now)
            && let Err(e) = self.pc.handle_timeout(now)
        {
            tracing::debug!(error = %e, "media port session timeout");
        }
        self.send_media(now);
        self.pump(now, out);
        self.watch(now);
    }

    /// Drains the stack: datagrams to send, received RTP, events.
    fn pump(&mut self, now: Instant, out: &mut Outbox) {
        while let Some(event) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                self.on_state(now, state);
            }
        }
        while let Some(message) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(track, mut packet) = message.message {
                // A speaker's stream on one of our unmixed m-lines: its own SSRC is the CSRC.
                if self.unmixed_receive > 0 && track.starts_with(UNMIXED_TRACK_PREFIX) {
                    unmixed::restore_speaker(&mut packet.header);
                }
                self.deliver(packet);
            }
        }
        self.take_writes(now, out);
    }

    fn take_writes(&mut self, now: Instant, out: &mut Outbox) {
        while let Some(datagram) = self.pc.poll_write() {
            let to = self
                .peer
                .outbound(datagram.transport.peer_addr, &datagram.message, now);
            if self.claimed.len() < demux::MAX_CLAIMS_PER_SESSION && !self.claimed.contains(&to) {
                self.claimed.push(to);
                out.claims.push((self.key, to));
            }
            out.datagrams.push((to, datagram.message));
        }
    }

    fn on_state(&mut self, now: Instant, state: RTCPeerConnectionState) {
        self.last_pc_state = state;
        match state {
            RTCPeerConnectionState::Connected => {
                self.interrupted_since = None;
                if self.negotiated.is_none() {
                    self.negotiated = self.negotiate();
                }
                self.shared.state.set(SessionState::Connected);
            }
            RTCPeerConnectionState::Disconnected => {
                self.interrupted_since.get_or_insert(now);
                self.shared.state.set(SessionState::Interrupted);
            }
            RTCPeerConnectionState::Failed => {
                let silent_ms = self
                    .interrupted_since
                    .map_or(0, |since| now.duration_since(since).as_millis() as u64);
                self.shared.state.end(EndReason::PeerGone { silent_ms });
            }
            RTCPeerConnectionState::Closed => self.shared.state.end(EndReason::Closed),
            _ => {}
        }
    }

    /// The connect timeout, the peer timeout and a peer's RTCP BYE.
    fn watch(&mut self, now: Instant) {
        match self.shared.state.get() {
            SessionState::Connecting => {
                let deadline = *self
                    .connect_deadline
                    .get_or_insert(now + self.connect_timeout);
                if now >= deadline {
                    self.shared.state.end(EndReason::ConnectTimeout {
                        timeout_ms: self.connect_timeout.as_millis() as u64,
                        last_state: self.last_pc_state.to_string(),
                    });
                }
            }
            SessionState::Connected | SessionState::Interrupted
                if self.shared.rtt.bye_received() =>
            {
                self.shared.state.end(EndReason::ClosedByPeer);
            }
            SessionState::Interrupted => {
                if let Some(since) = self.interrupted_since
                    && now.duration_since(since) >= self.peer_timeout
                {
                    self.shared.state.end(EndReason::PeerGone {
                        silent_ms: now.duration_since(since).as_millis() as u64,
                    });
                }
            }
            _ => {}
        }
    }

    /// The sender's negotiated Opus payload type and header extension ids.
    fn negotiate(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut sender = self.pc.rtp_sender(self.sender)?;
        let params = sender.get_parameters();
        let codec = params
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))?;
        let ids = params
            .rtp_parameters
            .header_extensions
            .iter()
            .filter_map(|e| u8::try_from(e.id).ok())
            .collect();
        Some((codec.payload_type, ids))
    }

    fn deliver(&mut self, packet: rtc::rtp::packet::Packet) {
        let media = &self.shared.media;
        let Ok(mut bytes) = packet.marshal().map(BytesMut::freeze) else {
            media.inbound_marshal_failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // The media side sees the configured telephone-event payload type.
        if let (Some(local), Some(negotiated)) =
            (self.telephone_event_local, self.telephone_event_negotiated)
            && bytes.len() > 1
            && bytes[1] & 0x7f == negotiated
        {
            let mut owned = BytesMut::from(&bytes[..]);
            owned[1] = (owned[1] & 0x80) | local;
            bytes = owned.freeze();
        }
        media.inbound_delivered.fetch_add(1, Ordering::Relaxed);
        if self.shared.link.deliver(bytes) {
            media.inbound_queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves the media core's packets into the stack, as a `MediaSession`'s pump does.
    fn send_media(&mut self, now: Instant) {
        self.shared.link.drain(&mut self.batch);
        if self.batch.is_empty() {
            return;
        }
        let media = &self.shared.media;
        let connected = self.shared.state.is_connected();
        let mut batch = std::mem::take(&mut self.batch);
        for mut buf in batch.drain(..) {
            let Some((pt, ids)) = self.negotiated.as_ref().filter(|_| connected) else {
                media
                    .outbound_before_connected
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Ok(mut packet) = rtc::rtp::packet::Packet::unmarshal(&mut buf) else {
                media.outbound_malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let header = &mut packet.header;
            header.ssrc = self.ssrc;
            header.payload_type = if Some(header.payload_type) == self.telephone_event_local {
                let Some(te) = self.telephone_event_negotiated else {
                    media
                        .outbound_no_telephone_event
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                te
            } else {
                *pt
            };
            header.extensions.retain(|e| ids.contains(&e.id));
            header.extension = !header.extensions.is_empty();
            let written = self
                .pc
                .rtp_sender(self.sender)
                .map(|mut s| s.write_rtp(now, packet));
            match written {
                Some(Ok(())) => media.outbound_sent.fetch_add(1, Ordering::Relaxed),
                _ => media.outbound_write_failed.fetch_add(1, Ordering::Relaxed),
            };
        }
        self.batch = batch;
    }

    fn close(&mut self, out: &mut Outbox) {
        if self.closing {
            return;
        }
        self.closing = true;
        if self.shared.state.is_connected()
            && let Some(mut sender) = self.pc.rtp_sender(self.sender)
        {
            let bye = rtc::rtcp::goodbye::Goodbye {
                sources: vec![self.ssrc],
                reason: Bytes::from_static(b"closed"),
            };
            let _ = sender.write_rtcp(Instant::now(), vec![Box::new(bye)]);
        }
        let _ = self.pc.close();
        self.take_writes(Instant::now(), out);
        self.shared.state.end(EndReason::Closed);
    }
}

/// One call's media session on a [`MediaPort`]: the same blob, SDP and media hand-off as a
/// [`MediaSession`](crate::MediaSession), with no socket, task or timer of its own.
/// Dropping it (or [`close`](Self::close)) ends it and takes it off the port.
pub struct PortSession {
    identity: BlobIdentity,
    key: SessionKey,
    role: Role,
    config: TransportConfig,
    local_sdp: String,
    core: Arc<Mutex<Core>>,
    shared: Arc<SessionShared>,
    port: Arc<PortShared>,
}

impl std::fmt::Debug for PortSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSession")
            .field("id", &self.identity.id)
            .field("role", &self.role)
            .field("port", &self.port.local)
            .field("state", &self.shared.state.get())
            .finish()
    }
}

impl PortSession {
    /// The offering side, on `port`: the SDP offer with the port's host candidate. The
    /// session then waits for [`accept`](Self::accept).
    pub fn offer(port: &MediaPort, config: TransportConfig) -> Result<PortSession, TransportError> {
        let (built, sdp) = offering(port.addresses(), &config)?;
        Self::register(
            port,
            config,
            built,
            Role::Offerer,
            sdp,
            SessionState::AwaitingAnswer,
        )
    }

    /// The answering side, on `port`, from the far end's SDP offer. The answer is
    /// [`local_sdp`](Self::local_sdp).
    pub fn answer_sdp(
        port: &MediaPort,
        config: TransportConfig,
        offer_sdp: &str,
    ) -> Result<PortSession, TransportError> {
        let (built, sdp) = answering(port.addresses(), &config, offer_sdp)?;
        Self::register(
            port,
            config,
            built,
            Role::Answerer,
            sdp,
            SessionState::Connecting,
        )
    }

    /// The answering side from a bot's blob: the session and the answer blob.
    pub fn answer_blob(
        port: &MediaPort,
        config: TransportConfig,
        offer_blob: &str,
    ) -> Result<(PortSession, String), TransportError> {
        let offer = Blob::parse(offer_blob, config.blob_integrity.key())?;
        offer.expect_kind(SdpKind::Offer)?;
        let mut session = Self::answer_sdp(port, config, &offer.webrtc.sdp)?;
        session.identity.answering(&offer);
        let answer = session.blob();
        Ok((session, answer))
    }

    fn register(
        port: &MediaPort,
        config: TransportConfig,
        built: Built,
        role: Role,
        local_sdp: String,
        state: SessionState,
    ) -> Result<PortSession, TransportError> {
        let ufrag = ice_ufrag(&local_sdp).ok_or_else(|| TransportError::Sdp {
            kind: "offer",
            reason: "the stack's SDP has no a=ice-ufrag".into(),
        })?;
        let key = port.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let shared = built.shared.clone();
        let core = Arc::new(Mutex::new(Core::new(key, built, &config, state)));
        {
            let mut table = port
                .shared
                .table
                .lock()
                .map_err(|_| TransportError::InvalidConfig("media port poisoned".into()))?;
            if !table.demux.add_session(key, &ufrag) {
                return Err(TransportError::InvalidConfig(format!(
                    "ICE ufrag {ufrag} is already on this port"
                )));
            }
            table.sessions.insert(
                key,
                Entry {
                    core: core.clone(),
                    shared: shared.clone(),
                },
            );
        }
        Ok(PortSession {
            identity: BlobIdentity::new(),
            key,
            role,
            config,
            local_sdp,
            core,
            shared,
            port: port.shared.clone(),
        })
    }

    /// The media session id (`mpMediaSessionId` in the blob).
    pub fn id(&self) -> &str {
        &self.identity.id
    }

    /// Unmixed per-speaker streams this side offered to receive (offering side, with
    /// `receive_unmixed_meeting_audio`; 0 otherwise). Their packets reach the media side
    /// under each speaker's own SSRC. (Sending unmixed streams, the answering side's part,
    /// is a [`MediaSession`](crate::MediaSession)'s: a `PortSession` answering puts no
    /// track on such m-lines.)
    pub fn unmixed_receive_streams(&self) -> usize {
        match self.role {
            Role::Offerer if self.config.receive_unmixed_meeting_audio => {
                self.config.unmixed_audio_streams
            }
            _ => 0,
        }
    }

    /// This side's SDP (offer, or answer on the answering side), with the port's candidate.
    pub fn local_sdp(&self) -> &str {
        &self.local_sdp
    }

    /// The id of the RFC 6464 audio-level header extension in this side's SDP.
    pub fn audio_level_extension_id(&self) -> Option<u8> {
        extmap_id(&self.local_sdp, AUDIO_LEVEL_URI)
    }

    /// The port's address (every session on a port shares it).
    pub fn local_addr(&self) -> SocketAddr {
        self.port.local
    }

    /// Records the Graph call id, so later [`blob`](Self::blob)s carry it.
    pub fn set_call_id(&self, call_id: impl Into<String>) {
        self.identity.set_call_id(Some(call_id.into()));
    }

    /// The sealed blob for `appHostedMediaConfig.blob` (format: `docs/blob.md`).
    pub fn blob(&self) -> String {
        self.identity.seal(
            self.role,
            self.config.receive_unmixed_meeting_audio,
            &self.local_sdp,
            &self.config.blob_integrity,
        )
    }

    /// Applies the media peer's answer blob (verified, and for this media session).
    pub fn accept(&self, answer_blob: &str) -> Result<(), TransportError> {
        let sdp = self
            .identity
            .answer_sdp(answer_blob, &self.config.blob_integrity)?;
        self.accept_sdp(&sdp)
    }

    /// Applies a raw SDP answer. ICE and DTLS start; the connect timeout runs from here.
    pub fn accept_sdp(&self, answer_sdp: &str) -> Result<(), TransportError> {
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
        let mut core = self
            .core
            .lock()
            .map_err(|_| TransportError::InvalidConfig("session poisoned".into()))?;
        core.pc
            .set_remote_description(Instant::now(), answer)
            .map_err(|e| TransportError::Sdp {
                kind: "answer",
                reason: e.to_string(),
            })?;
        core.telephone_event_negotiated =
            negotiated_telephone_event(self.config.telephone_event_payload_type, answer_sdp);
        self.shared.state.set(SessionState::Connecting);
        Ok(())
    }

    /// Takes the queues for code that handles RTP itself (see [`RtpEndpoint`]).
    pub fn take_endpoint(&self) -> Option<RtpEndpoint> {
        self.shared.link.take_endpoint()
    }

    /// Connects a media-core call pipeline, as
    /// [`MediaSession::attach_pipeline`](crate::MediaSession::attach_pipeline) does, and
    /// from then on the session runs on the pipeline's own tick (`drive_transport`): the
    /// media worker that ticks the call reads its datagrams, runs its timers and sends its
    /// packets; the port's thread only routes datagrams to it. Call before handing the
    /// pipeline to its worker.
    pub fn attach_pipeline(&self, pipeline: &mut CallPipeline, epoch: Instant) {
        self.shared.link.attach_with_loss_reports(
            pipeline,
            epoch,
            TICK_OUTBOX,
            self.shared.rtt.loss.clone(),
            &self.identity.id,
        );
        let Some(inbox) = self
            .shared
            .inbox_rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
        else {
            return;
        };
        pipeline.drive_transport(Box::new(WorkerDriver {
            core: self.core.clone(),
            inbox,
            port: self.port.clone(),
            out: Outbox::default(),
        }));
        self.shared.worker_driven.store(true, Ordering::Release);
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
        self.shared.state.end_watch().await
    }

    /// A snapshot of the session's statistics.
    pub fn stats(&self) -> SessionStats {
        let report = match self.core.lock() {
            Ok(mut core) => core
                .pc
                .get_stats(Instant::now(), rtc::statistics::StatsSelector::None),
            Err(_) => Default::default(),
        };
        SessionStats::from_snapshot(Snapshot {
            state: self.shared.state.get(),
            socket: &self.shared.socket,
            media: &self.shared.media,
            report: &report,
            rtcp_rtt: self.shared.rtt.latest(),
        })
    }

    /// Ends the session: a connected peer is told with an RTCP BYE, and the session leaves
    /// the port.
    pub fn close(&self) {
        let mut out = Outbox::default();
        if let Ok(mut core) = self.core.lock() {
            core.close(&mut out);
        }
        flush(&self.port, &mut out);
        if let Ok(mut table) = self.port.table.lock() {
            table.sessions.remove(&self.key);
            table.demux.remove_session(self.key);
        }
    }
}

/// A session driven by the media worker that ticks its call.
struct WorkerDriver {
    core: Arc<Mutex<Core>>,
    inbox: Consumer<(SocketAddr, BytesMut)>,
    port: Arc<PortShared>,
    out: Outbox,
}

impl TickTransport for WorkerDriver {
    fn before_tick(&mut self, _now: Duration) {
        let cpu = thread_cpu_ns();
        let now = Instant::now();
        if let Ok(mut core) = self.core.lock() {
            let mut work = false;
            // Bounded by the inbox's capacity, so a flood cannot hold the tick.
            for _ in 0..self.inbox.capacity() {
                let Some((from, datagram)) = self.inbox.pop() else {
                    break;
                };
                core.read(now, self.port.advertised, from, datagram);
                work = true;
            }
            if core.pc.poll_timeout().is_some_and(|t| t <= now) {
                work = true;
                if let Err(e) = core.pc.handle_timeout(now) {
                    tracing::debug!(error = %e, "media port session timeout");
                }
            }
            // Nothing read and no timer: nothing new for the stack to hand out before the
            // media step (the end of the tick drains it anyway).
            if work {
                core.pump(now, &mut self.out);
            }
        }
        flush(&self.port, &mut self.out);
        self.port
            .counters
            .worker_ns
            .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
    }

    fn after_tick(&mut self, _now: Duration) {
        let cpu = thread_cpu_ns();
        let now = Instant::now();
        if let Ok(mut core) = self.core.lock() {
            core.send_media(now);
            core.pump(now, &mut self.out);
            core.watch(now);
        }
        flush(&self.port, &mut self.out);
        let c = &self.port.counters;
        c.worker_ns
            .fetch_add(thread_cpu_ns().saturating_sub(cpu), Ordering::Relaxed);
        c.worker_ticks.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for PortSession {
    fn drop(&mut self) {
        self.close();
    }
}

struct Built {
    pc: RTCPeerConnection,
    sender: RTCRtpSenderId,
    ssrc: u32,
    shared: Arc<SessionShared>,
    telephone_event_negotiated: Option<u8>,
    /// Unmixed m-lines offered to receive on (offering side).
    unmixed_receive: usize,
}

fn stack(operation: &'static str, source: rtc::shared::error::Error) -> TransportError {
    TransportError::WebRtc { operation, source }
}

/// A peer connection with the Opus (and telephone-event) codec, the audio-level extension,
/// RTCP reports, the session's send track and the port's host candidate.
fn build(advertised: SocketAddr, config: &TransportConfig) -> Result<Built, TransportError> {
    config.validate()?;
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(config),
                payload_type: config.opus_payload_type,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| stack("register_codec", e))?;
    if let Some(payload_type) = config.telephone_event_payload_type {
        media_engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: telephone_event_codec(),
                    payload_type,
                },
                RtpCodecKind::Audio,
            )
            .map_err(|e| stack("register_codec (telephone-event)", e))?;
    }
    media_engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(|e| stack("register_header_extension", e))?;
    let rtt = Arc::new(RttCell::default());
    let registry = configure_rtcp_reports(Registry::new()).with(
        rtc::interceptor::Slot::Custom(500),
        RttInterceptor::new(rtt.clone()),
    );
    let half = config.peer_timeout / 2;
    let settings = SettingEngineBuilder::new()
        .with_ice_timeouts(Some(half), Some(half), Some(Duration::from_secs(1)))
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_lite(config.ice_lite)
        .build();
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(|e| stack("build peer connection", e))?;
    let ssrc = rand_ssrc();
    let track = MediaStreamTrack::new(
        "appmedia".to_owned(),
        "appmedia-audio".to_owned(),
        "appmedia-audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(config),
            ..Default::default()
        }],
    );
    let sender = pc.add_track(track).map_err(|e| stack("add_track", e))?;
    // The candidate and the address the ICE agent sees datagrams arrive at are one and the
    // same: what the peer sends to.
    let local = advertised;
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: local.ip().to_string(),
            port: local.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(|e| stack("host candidate", e))?;
    let init = RTCIceCandidate::from(&candidate)
        .to_json()
        .map_err(|e| stack("host candidate", e))?;
    pc.add_local_candidate(init)
        .map_err(|e| stack("add_local_candidate", e))?;
    let (inbox, inbox_rx) = queue::bounded(INBOX);
    Ok(Built {
        pc,
        sender,
        ssrc,
        shared: Arc::new(SessionShared {
            state: StateCell::new(),
            socket: SocketCounters::default(),
            media: MediaCounters::default(),
            link: MediaLink::new(config.queue_capacity),
            rtt,
            worker_driven: AtomicBool::new(false),
            inbox,
            inbox_rx: Mutex::new(Some(inbox_rx)),
        }),
        telephone_event_negotiated: None,
        unmixed_receive: 0,
    })
}

/// A session's addresses on its port: bound, and advertised.
#[derive(Debug, Clone, Copy)]
struct Addresses {
    bound: SocketAddr,
    advertised: SocketAddr,
}

impl MediaPort {
    fn addresses(&self) -> Addresses {
        Addresses {
            bound: self.shared.local,
            advertised: self.shared.advertised,
        }
    }
}

/// An offering peer connection and its SDP offer.
fn offering(at: Addresses, config: &TransportConfig) -> Result<(Built, String), TransportError> {
    let mut built = build(at.advertised, config)?;
    if config.receive_unmixed_meeting_audio {
        // After the mixed m-line: one receive-only m-line per unmixed speaker stream, as a
        // `MediaSession` offers them (`crate::unmixed`).
        for _ in 0..config.unmixed_audio_streams {
            built
                .pc
                .add_transceiver_from_kind(RtpCodecKind::Audio, Some(unmixed::receive_only()))
                .map_err(|e| stack("add_transceiver_from_kind", e))?;
        }
        built.unmixed_receive = config.unmixed_audio_streams;
    }
    let offer = built
        .pc
        .create_offer(None)
        .map_err(|e| stack("create_offer", e))?;
    built
        .pc
        .set_local_description(Instant::now(), offer)
        .map_err(|e| stack("set_local_description", e))?;
    let sdp = local_sdp(&built.pc, at)?;
    Ok((built, sdp))
}

/// An answering peer connection for `offer_sdp`, and its SDP answer.
fn answering(
    at: Addresses,
    config: &TransportConfig,
    offer_sdp: &str,
) -> Result<(Built, String), TransportError> {
    check_remote_sdp("offer", offer_sdp)?;
    let mut built = build(at.advertised, config)?;
    let offer =
        RTCSessionDescription::offer(offer_sdp.to_owned()).map_err(|e| TransportError::Sdp {
            kind: "offer",
            reason: e.to_string(),
        })?;
    built
        .pc
        .set_remote_description(Instant::now(), offer)
        .map_err(|e| TransportError::Sdp {
            kind: "offer",
            reason: e.to_string(),
        })?;
    let answer = built
        .pc
        .create_answer(None)
        .map_err(|e| stack("create_answer", e))?;
    built
        .pc
        .set_local_description(Instant::now(), answer)
        .map_err(|e| stack("set_local_description", e))?;
    let sdp = local_sdp(&built.pc, at)?;
    built.telephone_event_negotiated =
        negotiated_telephone_event(config.telephone_event_payload_type, &sdp);
    Ok((built, sdp))
}

/// The local description's SDP, its connection lines at the advertised address too.
fn local_sdp(pc: &RTCPeerConnection, at: Addresses) -> Result<String, TransportError> {
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| TransportError::Sdp {
            kind: "offer",
            reason: "the stack produced no local description".into(),
        })?;
    let (local, advertised) = (at.bound.ip(), at.advertised.ip());
    Ok(if local == advertised {
        sdp
    } else {
        advertise_public(&sdp, local, advertised)
    })
}

/// The session-level or first media-level `a=ice-ufrag:`.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}
