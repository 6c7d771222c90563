//! Following a peer whose address changes mid-call (a NAT rebinding, a phone moving from one
//! network path to another), sans-IO.
//!
//! webrtc-rs' ICE agent picks its candidate pair once: as the controlling side (a bot's
//! offer) it never selects another, so a peer that reappears at a new address is heard (the
//! agent answers its checks) but never sent to, and the call ends when consent runs out.
//! Media servers that keep calls across rebinding (mediasoup's ICE-lite transport, Janus
//! through libnice) switch to the new address once a check from it has been authenticated.
//! This does the same beneath the stack: the stack keeps its pair; what carries its datagrams
//! translates — a [`MediaPort`](crate::MediaPort) for its sessions, and a
//! [`MediaSession`](crate::MediaSession)'s own socket (`guard.rs`).
//!
//! The rule, per session:
//! * an address is **verified** when the stack answers a Binding request from it with a
//!   success response: the stack answers only requests whose MESSAGE-INTEGRITY it checked
//!   with the session's ICE password (which only the peer has, from the signalling);
//! * the session **moves** to a verified address when a datagram arrives from it while the
//!   peer's current address has been silent for [`MOVE_AFTER_SILENCE`] (media flows every
//!   20 ms and consent checks every few seconds, so a live path is never that quiet while
//!   the peer sends elsewhere);
//! * once moved, what the stack sends to the peer's old address goes to the new one, and what
//!   comes from the new one is shown to the stack as coming from the old one (so its consent
//!   freshness, RFC 7675, keeps counting the replies), until the peer moves again or the
//!   stack itself chooses another address;
//! * a response to a Binding request always goes where the request really came from (by its
//!   transaction id), so a peer that returns to its first address can be verified there.
//!
//! A datagram from an address that was never verified cannot move a call: on a port it is not
//! even routed to the session (the demultiplexer knows only the addresses a session sent to);
//! on a session's own socket it reaches the stack as it came, which ignores it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::guard::{DatagramKind, classify};

/// How long the peer's current address must have been silent before a verified new one
/// takes its place.
pub(crate) const MOVE_AFTER_SILENCE: Duration = Duration::from_millis(500);

/// How long an authenticated check keeps an address verified (RFC 7675's consent lifetime).
const VERIFIED_FOR: Duration = Duration::from_secs(30);

/// One session's view of where its peer is.
#[derive(Debug, Default)]
pub(crate) struct PeerAddress {
    /// Where the stack sends its media (DTLS, SRTP, SRTCP): its selected pair's remote.
    stack: Option<SocketAddr>,
    /// Where the peer really is, once it moved away from `stack`.
    moved_to: Option<SocketAddr>,
    /// When the peer's current address was last heard from.
    last_heard: Option<Instant>,
    /// The latest address the stack answered an authenticated check from, and when.
    verified: Option<(SocketAddr, Instant)>,
    /// The last Binding requests' transaction ids and where they really came from.
    requests: [Option<([u8; 12], SocketAddr)>; REQUESTS],
    next_request: usize,
}

/// Binding requests remembered for their responses (a peer checks a pair or two at a time).
const REQUESTS: usize = 4;

impl PeerAddress {
    /// The peer's current address, as far as the session knows.
    fn current(&self) -> Option<SocketAddr> {
        self.moved_to.or(self.stack)
    }

    /// `datagram` arrived from `from`: the address to show the stack, and whether the peer
    /// has just moved there.
    pub(crate) fn inbound(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> (SocketAddr, bool) {
        if let Some(id) = binding_transaction(datagram, [0x00, 0x01]) {
            self.requests[self.next_request] = Some((id, from));
            self.next_request = (self.next_request + 1) % REQUESTS;
        }
        let Some(current) = self.current() else {
            return (from, false);
        };
        if from == current {
            self.last_heard = Some(now);
            return (self.shown(from), false);
        }
        let verified = self
            .verified
            .is_some_and(|(at, when)| at == from && now.duration_since(when) <= VERIFIED_FOR);
        let silent = self
            .last_heard
            .is_none_or(|heard| now.duration_since(heard) >= MOVE_AFTER_SILENCE);
        if !(verified && silent) {
            return (from, false);
        }
        self.moved_to = (Some(from) != self.stack).then_some(from);
        self.last_heard = Some(now);
        (self.shown(from), true)
    }

    /// The stack sends `datagram` to `to`: where it really goes.
    pub(crate) fn outbound(&mut self, to: SocketAddr, datagram: &[u8], now: Instant) -> SocketAddr {
        let stun = matches!(classify(datagram), DatagramKind::Stun);
        if !stun && self.stack != Some(to) && self.moved_to != Some(to) {
            // The stack (re)chose where its media goes: follow it, forget any move.
            self.stack = Some(to);
            self.moved_to = None;
            self.last_heard.get_or_insert(now);
        }
        if stun && let Some(id) = binding_transaction(datagram, [0x01, 0x01]) {
            let asked_from = self.requests.iter().flatten().find(|(t, _)| *t == id);
            let real = asked_from.map_or_else(|| self.translated(to), |&(_, from)| from);
            self.verified = Some((real, now));
            return real;
        }
        self.translated(to)
    }

    /// Where a datagram the stack sends to `to` goes, by the peer's move.
    fn translated(&self, to: SocketAddr) -> SocketAddr {
        match self.moved_to {
            Some(moved) if Some(to) == self.stack => moved,
            _ => to,
        }
    }

    /// The address the stack knows for a datagram from the peer's current address `from`.
    fn shown(&self, from: SocketAddr) -> SocketAddr {
        match (self.moved_to, self.stack) {
            (Some(moved), Some(stack)) if moved == from => stack,
            _ => from,
        }
    }
}

/// The transaction id of a STUN Binding message of `kind` (RFC 8489: `[0x00, 0x01]` a
/// request, `[0x01, 0x01]` a success response; magic cookie checked).
fn binding_transaction(datagram: &[u8], kind: [u8; 2]) -> Option<[u8; 12]> {
    if datagram.len() < 20 || datagram[..2] != kind || datagram[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    datagram[8..20].try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    const SRTP: [u8; 12] = [0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];

    /// A Binding message of `class` with transaction id `[id; 12]`.
    fn binding(class: [u8; 2], id: u8) -> Vec<u8> {
        let mut m = vec![class[0], class[1], 0, 0, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[id; 12]);
        m
    }

    const REQUEST: [u8; 2] = [0x00, 0x01];
    const SUCCESS: [u8; 2] = [0x01, 0x01];

    /// A session whose stack sends media to `old` and has heard it at `t0`.
    fn talking(old: SocketAddr, t0: Instant) -> PeerAddress {
        let mut p = PeerAddress::default();
        assert_eq!(p.outbound(old, &SRTP, t0), old);
        assert_eq!(p.inbound(old, &SRTP, t0), (old, false));
        p
    }

    /// The peer checks from `from` (transaction `id`) and the stack answers the address it
    /// was shown; where the answer really went.
    fn check(p: &mut PeerAddress, from: SocketAddr, id: u8, now: Instant) -> SocketAddr {
        let (shown, moved) = p.inbound(from, &binding(REQUEST, id), now);
        assert!(!moved, "a check alone never moves a session");
        p.outbound(shown, &binding(SUCCESS, id), now)
    }

    #[test]
    fn a_verified_address_takes_over_once_the_old_one_is_silent() {
        let (old, new, t0) = (addr(1000), addr(2000), Instant::now());
        let mut p = talking(old, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(p.inbound(new, &SRTP, t1), (new, false), "not verified yet");
        // The peer's check from the new address reaches the stack as it is; the stack's
        // success response to it verifies the address.
        assert_eq!(check(&mut p, new, 1, t1), new);
        // Media from it now moves the session: shown to the stack as the old address.
        assert_eq!(p.inbound(new, &SRTP, t1), (old, true));
        // What the stack sends to the old address goes to the new one, STUN included.
        assert_eq!(p.outbound(old, &SRTP, t1), new);
        assert_eq!(p.outbound(old, &binding(REQUEST, 2), t1), new);
        assert_eq!(p.inbound(new, &SRTP, t1), (old, false), "moved once");
        assert_eq!(
            check(&mut p, new, 3, t1),
            new,
            "checks from there answered there"
        );
        // The peer goes back to the address the stack knows: its check is answered there,
        // and once the new address has been silent long enough, the move is undone.
        let t2 = t1 + MOVE_AFTER_SILENCE;
        assert_eq!(check(&mut p, old, 4, t2), old);
        assert_eq!(p.inbound(old, &SRTP, t2), (old, true));
        assert_eq!(p.outbound(old, &SRTP, t2), old);
    }

    #[test]
    fn a_live_old_address_keeps_the_session_where_it_is() {
        let (old, new, t0) = (addr(1000), addr(2000), Instant::now());
        let mut p = talking(old, t0);
        let t1 = t0 + MOVE_AFTER_SILENCE / 2;
        assert_eq!(check(&mut p, new, 1, t1), new);
        // The peer still talks from the old address: a second path's media does not move it.
        assert_eq!(p.inbound(new, &SRTP, t1), (new, false));
        assert_eq!(p.outbound(old, &SRTP, t1), old);
    }

    #[test]
    fn an_unverified_or_stale_address_never_moves_it() {
        let (old, new, t0) = (addr(1000), addr(2000), Instant::now());
        let mut p = talking(old, t0);
        let late = t0 + Duration::from_secs(5);
        // Only a failure response (or a request) went to the new address: not verified.
        p.outbound(new, &binding([0x01, 0x11], 1), late);
        p.outbound(new, &binding(REQUEST, 2), late);
        assert_eq!(p.inbound(new, &SRTP, late), (new, false));
        // Verified long ago: stale.
        check(&mut p, new, 3, late);
        let later = late + VERIFIED_FOR + Duration::from_secs(1);
        assert_eq!(p.inbound(new, &SRTP, later), (new, false));
        assert_eq!(p.outbound(old, &SRTP, later), old);
    }

    #[test]
    fn the_stack_choosing_another_address_cancels_the_move() {
        let (old, new, other, t0) = (addr(1000), addr(2000), addr(3000), Instant::now());
        let mut p = talking(old, t0);
        let t1 = t0 + Duration::from_secs(1);
        check(&mut p, new, 1, t1);
        assert_eq!(p.inbound(new, &SRTP, t1), (old, true));
        // The stack sends its media somewhere else itself: it knows best.
        assert_eq!(p.outbound(other, &SRTP, t1), other);
        assert_eq!(p.outbound(old, &SRTP, t1), old);
    }

    #[test]
    fn before_the_stack_sends_media_nothing_is_translated() {
        let mut p = PeerAddress::default();
        let t0 = Instant::now();
        assert_eq!(p.inbound(addr(1), &SRTP, t0), (addr(1), false));
        assert_eq!(check(&mut p, addr(2), 1, t0), addr(2));
        assert_eq!(p.inbound(addr(2), &SRTP, t0), (addr(2), false));
    }
}
