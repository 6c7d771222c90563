//! Media transport for appmedia: the bot's media endpoint on the wire.
//!
//! A [`MediaSession`] is one call's WebRTC transport (on the `webrtc` crate's sans-IO `rtc`
//! core): host ICE candidates on a configurable address (plus a 1:1 NAT public address and
//! a media port range, as Graph bots configure), DTLS-SRTP always, one Opus audio m-line
//! (plus one receive-only m-line per unmixed speaker stream when the bot asks for unmixed
//! audio: `TransportConfig::receive_unmixed_meeting_audio`), RTCP sender/receiver reports and
//! the statistics they give. Its [`blob`](MediaSession::blob)
//! is what goes into `appHostedMediaConfig.blob` (format: `docs/blob.md`). RTP packets cross
//! to the media core through bounded lock-free queues ([`RtpEndpoint`]), so the async runtime
//! never runs on media threads. [`PlainRtpSession`] is the explicit opt-in lab mode: Opus
//! RTP over bare UDP, for benchmarks and standard RTP tools.
//!
//! ```no_run
//! use appmedia_transport::{MediaSession, TransportConfig};
//!
//! # async fn demo() -> Result<(), appmedia_transport::TransportError> {
//! let bot = MediaSession::offer(TransportConfig::default()).await?;
//! let blob = bot.blob(); // -> appHostedMediaConfig.blob
//! // The media peer (the service, or the emulator) answers:
//! let (peer, answer_blob) = MediaSession::answer_blob(TransportConfig::default(), &blob).await?;
//! bot.accept(&answer_blob).await?; // the answer comes back on the signalling channel
//! bot.connected().await.expect("connected");
//! let rtp = bot.take_endpoint().expect("first take"); // hand to the media worker thread
//! while let Some(packet) = rtp.incoming.pop() { rtp.outgoing.push(packet); } // echo
//! // (or `bot.attach_pipeline(&mut call_pipeline, scheduler_epoch)` for the media core)
//! println!("{:?}", bot.stats().await);
//! # drop(peer); Ok(()) }
//! ```

mod any;
mod blob;
mod config;
mod error;
mod follow;
mod guard;
mod lifecycle;
mod link;
mod plain;
mod port;
mod rtt;
mod session;
mod stats;
mod unmixed;

/// Entry points for the fuzz targets in `fuzz/`, built only by `cargo fuzz` (`--cfg fuzzing`):
/// what a datagram from the network meets in this crate before and beside the WebRTC stack.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;

    use rtc::interceptor::{Interceptor, StreamInfo};

    /// The socket layer's RFC 7983 classification of `datagram`, then, for what parses as
    /// RTCP, the session's RTCP interceptor (BYE, round-trip time, loss reports), with
    /// `local` and `remote` bound as the session's streams first.
    pub fn datagram(datagram: &[u8], local: u32, remote: u32) {
        let _ = crate::guard::classify(datagram);
        let Ok(packets) = rtc::rtcp::packet::unmarshal(&mut &datagram[..]) else {
            return;
        };
        let mut interceptor = crate::rtt::RttInterceptor::new(Arc::default());
        interceptor.bind_local_stream(&StreamInfo {
            ssrc: local,
            ..StreamInfo::default()
        });
        interceptor.bind_remote_stream(&StreamInfo {
            ssrc: remote,
            ..StreamInfo::default()
        });
        interceptor.observe(&packets);
    }

    /// Operations on a media port's routing table, 3-byte records each followed by a body:
    /// `op` (add a session with the body as its ufrag, claim an address, remove a session,
    /// route the body as a datagram), `who` (session key in the low 3 bits, source port
    /// above), body length. What is routed to a session must belong to a live one, and a
    /// Binding request must reach the session whose ufrag its USERNAME names.
    pub fn demux(data: &[u8]) {
        use crate::port::demux::{Demux, Route, binding_request_ufrag};
        let mut demux = Demux::default();
        let mut ufrags: std::collections::HashMap<u64, Vec<u8>> = Default::default();
        let mut rest = data;
        while let [op, who, len, tail @ ..] = rest {
            let (body, next) = tail.split_at(usize::from(*len).min(tail.len()));
            rest = next;
            let key = u64::from(who & 7);
            let from = std::net::SocketAddr::from(([127, 0, 0, 1], 5000 + u16::from(who >> 3)));
            match op % 4 {
                0 => {
                    if let Ok(ufrag) = std::str::from_utf8(body)
                        && !ufrag.is_empty()
                        && !ufrag.contains(':')
                        && !ufrags.contains_key(&key)
                        && demux.add_session(key, ufrag)
                    {
                        ufrags.insert(key, body.to_vec());
                    }
                }
                1 => {
                    let claimed = demux.claim(key, from);
                    assert!(!claimed || ufrags.contains_key(&key));
                }
                2 => {
                    demux.remove_session(key);
                    ufrags.remove(&key);
                }
                _ => {
                    if let Route::Session(k) = demux.route(body, from) {
                        let ufrag = ufrags.get(&k).expect("routed to a live session");
                        if let Some(named) = binding_request_ufrag(body) {
                            assert_eq!(named, &ufrag[..]);
                        }
                    }
                }
            }
        }
    }

    /// A session following its peer's address (`follow.rs`), 3-byte records each
    /// followed by a body: `op` (even: a datagram arrives, odd: the stack sends one), `who`
    /// (the address, one of eight), `ms` (time passing first), body length; the body is the
    /// datagram. What must hold: the session moves only to an address the stack has answered a
    /// Binding request from (never on media or a forged response alone), and it never sends
    /// to an address nobody named.
    pub fn follow(data: &[u8]) {
        use crate::follow::PeerAddress;
        let mut peer = PeerAddress::default();
        let mut now = std::time::Instant::now();
        let mut named = std::collections::HashSet::new();
        let mut answered = std::collections::HashSet::new();
        let mut rest = data;
        while let [op, who, ms, len, tail @ ..] = rest {
            let (body, next) = tail.split_at(usize::from(*len).min(tail.len()));
            rest = next;
            now += std::time::Duration::from_millis(u64::from(*ms) * 8);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 5000 + u16::from(who & 7)));
            named.insert(addr);
            if op % 2 == 0 {
                let (shown, moved) = peer.inbound(addr, body, now);
                assert!(named.contains(&shown));
                assert!(
                    !moved || answered.contains(&addr),
                    "moved to {addr} unverified"
                );
            } else {
                let to = peer.outbound(addr, body, now);
                assert!(named.contains(&to), "sent to {to}, which nobody named");
                if body.len() >= 20 && body[..2] == [0x01, 0x01] {
                    answered.insert(to);
                }
            }
        }
    }
}

/// For the datagram bench (`benches/datagram.rs`): two port sessions connected in memory.
#[doc(hidden)]
pub mod bench {
    pub use crate::port::pair::SansIoPair;
}

pub use any::WebRtcSession;
pub use blob::{BLOB_VERSION, Blob, BlobError, Integrity, PCM16K, SdpKind, WebRtcDescription};
pub use config::TransportConfig;
pub use error::TransportError;
pub use link::RtpEndpoint;
pub use plain::{PlainRtpConfig, PlainRtpSession, PlainRtpStats};
pub use port::{MAX_PORT_SOCKETS, MediaPort, PortSession, PortStats};
pub use session::{AUDIO_LEVEL_URI, EndReason, MediaSession, SessionState};
pub use stats::SessionStats;
pub use unmixed::{MAX_UNMIXED_AUDIO_STREAMS, SLOT_IDLE, UNMIXED_TRACK_PREFIX};
