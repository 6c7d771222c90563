//! Two port sessions wired to each other in memory, for the datagram bench
//! (`benches/datagram.rs`): the same state machines, demultiplexer and media hand-off as on a
//! port, with the socket taken out so that one datagram's cost can be timed on its own.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::sansio::Protocol;

use super::demux::{Demux, Route};
use super::{Addresses, Core, Outbox, answering, ice_ufrag, offering, stack};
use crate::link::RtpEndpoint;
use crate::{SessionState, TransportConfig, TransportError};

/// A bot's session and its peer's, both `PortSession` cores, connected (ICE, DTLS-SRTP) by
/// passing their datagrams by hand.
pub struct SansIoPair {
    bot: Core,
    peer: Core,
    bot_at: SocketAddr,
    peer_at: SocketAddr,
    /// The peer's port: what routes the bot's datagrams to the peer's session.
    demux: Demux,
    bot_rtp: RtpEndpoint,
    peer_rtp: RtpEndpoint,
    out: Outbox,
    discard: Outbox,
}

impl SansIoPair {
    /// Offer, answer and handshake, in memory. Fails when the two are not connected within
    /// ten seconds.
    pub fn connected() -> Result<SansIoPair, TransportError> {
        let config = TransportConfig::default();
        let at = |port: u16| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            Addresses {
                bound: addr,
                advertised: addr,
            }
        };
        let (bot_at, peer_at) = (at(40_000), at(40_002));
        let (bot, offer) = offering(bot_at, &config)?;
        let (peer, answer) = answering(peer_at, &config, &offer)?;
        let mut bot = Core::new(1, bot, &config, SessionState::Connecting);
        let answer_desc =
            RTCSessionDescription::answer(answer.clone()).map_err(|e| TransportError::Sdp {
                kind: "answer",
                reason: e.to_string(),
            })?;
        bot.pc
            .set_remote_description(Instant::now(), answer_desc)
            .map_err(|e| stack("set_remote_description", e))?;
        let peer = Core::new(2, peer, &config, SessionState::Connecting);
        let mut demux = Demux::default();
        let ufrag = ice_ufrag(&answer).unwrap_or_default();
        demux.add_session(2, &ufrag);
        let missing = || TransportError::InvalidConfig("a session's queues were taken".into());
        let bot_rtp = bot.shared.link.take_endpoint().ok_or_else(missing)?;
        let peer_rtp = peer.shared.link.take_endpoint().ok_or_else(missing)?;
        let mut pair = SansIoPair {
            bot,
            peer,
            bot_at: bot_at.advertised,
            peer_at: peer_at.advertised,
            demux,
            bot_rtp,
            peer_rtp,
            out: Outbox::default(),
            discard: Outbox::default(),
        };
        pair.handshake(Duration::from_secs(10))?;
        // The peer's port learned the bot's address from its own sends, as on a socket.
        pair.demux.claim(2, pair.bot_at);
        Ok(pair)
    }

    fn handshake(&mut self, within: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + within;
        while !(self.bot.shared.state.is_connected() && self.peer.shared.state.is_connected()) {
            let now = Instant::now();
            if now > deadline {
                return Err(TransportError::Ended(crate::EndReason::ConnectTimeout {
                    timeout_ms: within.as_millis() as u64,
                    last_state: self.bot.last_pc_state.to_string(),
                }));
            }
            let moved = exchange(
                now,
                (&mut self.bot, self.bot_at),
                (&mut self.peer, self.peer_at),
                &mut self.out,
            ) | exchange(
                now,
                (&mut self.peer, self.peer_at),
                (&mut self.bot, self.bot_at),
                &mut self.out,
            );
            if !moved {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// One RTP packet from the bot's media side to the peer's: out through the bot's session
    /// (header rewrite, SRTP protect, a datagram), in through the peer port's demultiplexer
    /// and the peer's session (SRTP unprotect, RTP parse). The packet as the peer's media side
    /// gets it; `None` if it was lost on the way (it never is, between these two).
    pub fn carry(&mut self, packet: Bytes) -> Option<Bytes> {
        let now = Instant::now();
        drop(self.bot_rtp.outgoing.push(packet));
        self.bot.send_media(now);
        self.bot.pump(now, &mut self.out);
        self.out.claims.clear();
        for (_, datagram) in self.out.datagrams.drain(..) {
            if let Route::Session(_) = self.demux.route(&datagram, self.bot_at) {
                self.peer.read(now, self.peer_at, self.bot_at, datagram);
            }
        }
        self.peer.pump(now, &mut self.discard);
        self.discard.claims.clear();
        self.discard.datagrams.clear();
        let got = self.peer_rtp.incoming.pop();
        // RTCP the bot's stack may have queued for the peer is not part of the timing.
        while self.bot_rtp.incoming.pop().is_some() {}
        got
    }
}

/// `from`'s timers and writes, read by `to`; whether a datagram moved.
fn exchange(
    now: Instant,
    (from, from_at): (&mut Core, SocketAddr),
    (to, to_at): (&mut Core, SocketAddr),
    out: &mut Outbox,
) -> bool {
    if from.pc.poll_timeout().is_some_and(|t| t <= now) {
        let _ = from.pc.handle_timeout(now);
    }
    from.pump(now, out);
    out.claims.clear();
    let moved = !out.datagrams.is_empty();
    for (_, datagram) in out.datagrams.drain(..) {
        to.read(now, to_at, from_at, datagram);
    }
    moved
}

impl Drop for SansIoPair {
    fn drop(&mut self) {
        let _ = self.bot.pc.close();
        let _ = self.peer.pc.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Bytes {
        let mut packet = vec![0x80, 111];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0]);
        packet.extend(std::iter::repeat_n(seq as u8, 80));
        Bytes::from(packet)
    }

    #[test]
    fn a_packet_crosses_from_one_session_to_the_other_intact() {
        let mut pair = SansIoPair::connected().expect("handshake in memory");
        for seq in 1..=200u16 {
            let got = pair.carry(rtp(seq)).expect("delivered");
            // Sequence number and payload as sent; SSRC and payload type the bot's session's.
            assert_eq!(u16::from_be_bytes([got[2], got[3]]), seq);
            assert!(got.ends_with(&[seq as u8; 80]), "{got:?}");
        }
    }
}
