//! A [`Runtime`] wrapper whose UDP sockets classify every datagram before the WebRTC stack
//! sees it.
//!
//! The `webrtc` crate reads its sockets itself and only *logs* a datagram it cannot parse, so
//! garbage would be invisible in the session's statistics. Its `Runtime` trait is the extension
//! point it leaves open for exactly this kind of wrapping: we delegate everything to the tokio
//! runtime and put a classifying layer over `poll_recv`. Datagrams that cannot be STUN, DTLS,
//! TURN or RTP/RTCP (RFC 7983 demultiplexing on the first byte) are counted and dropped here.
//! The same layer follows a peer whose address changes mid-call, as a media port does for its
//! sessions ([`crate::follow`]): it translates addresses both ways beneath the stack.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::follow::PeerAddress;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// What the socket layer saw, shared between a session's sockets and its stats.
#[derive(Debug, Default)]
pub(crate) struct SocketCounters {
    pub datagrams_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub stun: AtomicU64,
    pub dtls: AtomicU64,
    pub rtp: AtomicU64,
    pub rtcp: AtomicU64,
    pub garbage: AtomicU64,
    /// Times the peer moved to a new address and the session followed (port sessions).
    pub peer_moves: AtomicU64,
}

/// RFC 7983 §7 demultiplexing by the first byte, tightened with minimum lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatagramKind {
    Stun,
    Dtls,
    Turn,
    Rtp,
    Rtcp,
    Garbage,
}

pub(crate) fn classify(datagram: &[u8]) -> DatagramKind {
    let Some(&first) = datagram.first() else {
        return DatagramKind::Garbage;
    };
    match first {
        // STUN: 20-byte header, magic cookie 0x2112A442 at offset 4.
        0..=3 if datagram.len() >= 20 && datagram[4..8] == [0x21, 0x12, 0xA4, 0x42] => {
            DatagramKind::Stun
        }
        // DTLS record header is 13 bytes.
        20..=63 if datagram.len() >= 13 => DatagramKind::Dtls,
        // TURN ChannelData: the length field must fit the datagram.
        64..=79
            if datagram.len() >= 4
                && usize::from(u16::from_be_bytes([datagram[2], datagram[3]]))
                    <= datagram.len() - 4 =>
        {
            DatagramKind::Turn
        }
        // RTP version 2; RTCP packet types 192..=223 share the range (RFC 5761 §4).
        128..=191 if datagram.len() >= 8 => match datagram[1] & 0x7f {
            64..=95 => DatagramKind::Rtcp,
            _ if datagram.len() >= 12 => DatagramKind::Rtp,
            _ => DatagramKind::Garbage,
        },
        _ => DatagramKind::Garbage,
    }
}

/// The tokio runtime, with classified UDP sockets.
#[derive(Debug)]
pub(crate) struct GuardedRuntime {
    inner: TokioRuntime,
    counters: Arc<SocketCounters>,
}

impl GuardedRuntime {
    pub(crate) fn new(counters: Arc<SocketCounters>) -> Self {
        Self {
            inner: TokioRuntime,
            counters,
        }
    }
}

impl Runtime for GuardedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner = self.inner.wrap_udp_socket(socket)?;
        Ok(Arc::new(GuardedUdpSocket {
            inner,
            counters: self.counters.clone(),
            peer: Mutex::new(PeerAddress::default()),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "appmedia-guarded-tokio"
    }
}

struct GuardedUdpSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    counters: Arc<SocketCounters>,
    /// Where the peer really is, when it moved from where the stack thinks.
    peer: Mutex<PeerAddress>,
}

impl fmt::Debug for GuardedUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedUdpSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl GuardedUdpSocket {
    /// Counts every datagram of one received message; returns whether any of them is
    /// worth handing to the stack.
    fn account(&self, message: &[u8], stride: usize) -> bool {
        let c = &self.counters;
        let mut useful = false;
        for datagram in message.chunks(stride.max(1)) {
            c.datagrams_received.fetch_add(1, Ordering::Relaxed);
            c.bytes_received
                .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            let counter = match classify(datagram) {
                DatagramKind::Stun | DatagramKind::Turn => &c.stun,
                DatagramKind::Dtls => &c.dtls,
                DatagramKind::Rtp => &c.rtp,
                DatagramKind::Rtcp => &c.rtcp,
                DatagramKind::Garbage => {
                    c.garbage.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            useful = true;
        }
        useful
    }

    /// The address to show the stack for a message from `from` (each of its datagrams is
    /// from there), following the peer if it has just moved there.
    fn shown(&self, from: SocketAddr, message: &[u8], stride: usize) -> SocketAddr {
        let Ok(mut peer) = self.peer.lock() else {
            return from;
        };
        let now = Instant::now();
        let mut shown = from;
        for datagram in message.chunks(stride.max(1)) {
            let (address, moved) = peer.inbound(from, datagram, now);
            if moved {
                self.counters.peer_moves.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%from, "media session: the peer moved (an authenticated check from its new address); following it");
            }
            shown = address;
        }
        shown
    }
}

impl AsyncUdpSocket for GuardedUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // A GSO batch goes to one address: its first datagram stands for all of it.
        let first = transmit.segment_size.map_or(transmit.contents, |n| {
            &transmit.contents[..n.min(transmit.contents.len())]
        });
        let to = match self.peer.lock() {
            Ok(mut peer) => peer.outbound(transmit.destination, first, Instant::now()),
            Err(_) => transmit.destination,
        };
        if to == transmit.destination {
            return self.inner.poll_send(cx, transmit);
        }
        let moved = Transmit {
            destination: to,
            ecn: transmit.ecn,
            contents: transmit.contents,
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        };
        self.inner.poll_send(cx, &moved)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // A batch made only of garbage is consumed here and the socket is read again, so the
        // stack never sees it. A mixed batch is passed on whole (the driver asks for one
        // message at a time, so in practice a batch is one message): the stack drops the
        // garbage part itself, and it has already been counted.
        loop {
            match self.inner.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => {
                    let mut useful = false;
                    for i in 0..n.min(bufs.len()).min(meta.len()) {
                        let len = meta[i].len.min(bufs[i].len());
                        let message = &bufs[i][..len];
                        useful |= self.account(message, meta[i].stride);
                        meta[i].addr = self.shown(meta[i].addr, message, meta[i].stride);
                    }
                    if useful || n == 0 {
                        return Poll::Ready(Ok(n));
                    }
                }
                other => return other,
            }
        }
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte_and_length() {
        let mut stun = [0u8; 20];
        stun[4..8].copy_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        assert_eq!(classify(&stun), DatagramKind::Stun);
        assert_eq!(classify(&stun[..10]), DatagramKind::Garbage);

        let mut dtls = [0u8; 13];
        dtls[0] = 22; // handshake
        assert_eq!(classify(&dtls), DatagramKind::Dtls);

        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert_eq!(classify(&rtp), DatagramKind::Rtp);
        rtp[1] = 200; // SR
        assert_eq!(classify(&rtp[..8]), DatagramKind::Rtcp);
        rtp[1] = 0x80 | 111; // marker bit set, still RTP
        assert_eq!(classify(&rtp), DatagramKind::Rtp);

        assert_eq!(
            classify(&[0x40, 0x00, 0x00, 0x02, 1, 2]),
            DatagramKind::Turn
        );
        assert_eq!(classify(b"GET / HTTP/1.1\r\n\r\n"), DatagramKind::Garbage);
        assert_eq!(classify(&[]), DatagramKind::Garbage);
        assert_eq!(classify(b"hello world, not media"), DatagramKind::Garbage);
        assert_eq!(classify(&[0xff; 64]), DatagramKind::Garbage);
    }
}
