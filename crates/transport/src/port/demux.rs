//! Which session a datagram on the shared media port belongs to.
//!
//! One UDP port carries every call, so each datagram is routed before any session sees it,
//! the way single-port media servers (Janus, mediasoup, LiveKit) do it:
//!
//! 1. RFC 7983 classification on the first byte ([`classify`]); what is neither STUN, DTLS
//!    nor RTP/RTCP is dropped and counted.
//! 2. A STUN Binding request names its session: the first part of its USERNAME
//!    (`receiver-ufrag:sender-ufrag`, RFC 8445 §7.2.2) is the ICE username fragment this
//!    side put in its SDP. An unknown fragment is dropped and counted: no state is created
//!    and nothing is answered, so a flood of made-up checks costs one table lookup each.
//! 3. Everything else (STUN responses and indications, DTLS, SRTP, SRTCP) is routed by its
//!    source address, which a session *learns* from what it sends: a session only sends to
//!    addresses its ICE agent checks (the peer's candidates from the authenticated SDP, or
//!    peer-reflexive ones learned from checks that passed MESSAGE-INTEGRITY). A datagram
//!    from an address no session sent to is dropped and counted.
//!
//! The session's own ICE agent still authenticates every check (MESSAGE-INTEGRITY with the
//! session's password) and decides whether the peer's address may change; the demultiplexer
//! only narrows who may be asked.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;

use crate::guard::{DatagramKind, classify};

/// A session's key in the port's table.
pub(crate) type SessionKey = u64;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// To this session.
    Session(SessionKey),
    /// Nowhere: dropped for this reason (counted by the caller).
    Drop(DropReason),
}

/// Why the demultiplexer dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Not STUN, DTLS, TURN or RTP/RTCP (RFC 7983), or too short to be any of them.
    Garbage,
    /// A STUN Binding request whose USERNAME names no session of this port, or has none.
    UnknownUfrag,
    /// Not a STUN request, and from an address no session of this port talks to.
    UnknownSource,
}

/// STUN message type of a Binding request (RFC 8489 §5: method 0x001, class request).
const BINDING_REQUEST: u16 = 0x0001;
/// STUN USERNAME attribute (RFC 8489 §14.3).
const ATTR_USERNAME: u16 = 0x0006;
/// Peer addresses one session may claim: its peer's candidates and the peer-reflexive
/// addresses ICE learns are a handful; the cap keeps a peer that answers from ever-new
/// addresses (or a session made to send to them) from growing the table.
pub(crate) const MAX_CLAIMS_PER_SESSION: usize = 16;
/// Longest USERNAME (RFC 8489 §14.3: fewer than 509 bytes).
const MAX_USERNAME: usize = 508;

/// The local part of a STUN Binding request's USERNAME (`local:remote`, as the receiver
/// reads it): `None` when `datagram` is not a well-formed Binding request with one.
///
/// Walks the attributes in place (no allocation); stops at the first USERNAME, or at an
/// attribute whose length runs past the message.
pub(crate) fn binding_request_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    if datagram.len() < 20 || datagram[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let message_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    if message_type != BINDING_REQUEST {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + length)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == ATTR_USERNAME {
            if len > MAX_USERNAME {
                return None;
            }
            let colon = value.iter().position(|&b| b == b':')?;
            let local = &value[..colon];
            return (!local.is_empty()).then_some(local);
        }
        // Values are padded to a multiple of four bytes.
        let padded = (4 + len + 3) & !3;
        rest = rest.get(padded..)?;
    }
    None
}

/// The routing table of one media port: sessions by ICE username fragment and by the peer
/// addresses they talk to.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_ufrag: HashMap<Box<[u8]>, SessionKey>,
    by_addr: HashMap<SocketAddr, SessionKey>,
    /// Addresses each session has claimed, to forget them when it goes.
    addrs_of: HashMap<SessionKey, Vec<SocketAddr>>,
}

impl Demux {
    /// Registers a session under its local ICE username fragment. False when another
    /// session already has that fragment (ufrags are random: a collision is refused, not
    /// shared).
    pub(crate) fn add_session(&mut self, key: SessionKey, ufrag: &str) -> bool {
        match self.by_ufrag.entry(ufrag.as_bytes().into()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(key);
                self.addrs_of.entry(key).or_default();
                true
            }
        }
    }

    /// Forgets a session: its ufrag and every address it claimed.
    pub(crate) fn remove_session(&mut self, key: SessionKey) {
        self.by_ufrag.retain(|_, k| *k != key);
        for addr in self.addrs_of.remove(&key).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&key) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Records that `key` sends to `peer`: datagrams from `peer` now go to it. The first
    /// session to claim an address keeps it while it lives (two sessions cannot share a
    /// peer address on one port: nothing in DTLS or SRTP would tell them apart); returns
    /// false when `peer` is another session's, or the session already has
    /// [`MAX_CLAIMS_PER_SESSION`] addresses.
    pub(crate) fn claim(&mut self, key: SessionKey, peer: SocketAddr) -> bool {
        let Some(addrs) = self.addrs_of.get_mut(&key) else {
            return false;
        };
        match self.by_addr.entry(peer) {
            Entry::Occupied(owner) => *owner.get() == key,
            Entry::Vacant(_) if addrs.len() >= MAX_CLAIMS_PER_SESSION => false,
            Entry::Vacant(slot) => {
                slot.insert(key);
                addrs.push(peer);
                true
            }
        }
    }

    /// Where `datagram`, received from `from`, goes.
    pub(crate) fn route(&self, datagram: &[u8], from: SocketAddr) -> Route {
        match classify(datagram) {
            DatagramKind::Garbage => Route::Drop(DropReason::Garbage),
            DatagramKind::Stun
                if u16::from_be_bytes([datagram[0], datagram[1]]) == BINDING_REQUEST =>
            {
                match binding_request_ufrag(datagram).and_then(|u| self.by_ufrag.get(u)) {
                    Some(&key) => Route::Session(key),
                    None => Route::Drop(DropReason::UnknownUfrag),
                }
            }
            _ => match self.by_addr.get(&from) {
                Some(&key) => Route::Session(key),
                None => Route::Drop(DropReason::UnknownSource),
            },
        }
    }

    /// Sessions registered.
    #[cfg(test)]
    pub(crate) fn sessions(&self) -> usize {
        self.addrs_of.len()
    }

    /// Peer addresses claimed, over all sessions.
    #[cfg(test)]
    pub(crate) fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN message of `message_type` with the given attributes (type, value), padded.
    fn stun(message_type: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&message_type.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        out.extend_from_slice(&[7; 12]);
        out.extend_from_slice(&body);
        out
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_usernames_first_part_names_the_session() {
        // PRIORITY before USERNAME, an odd-length USERNAME (padding), then more attributes.
        let request = stun(
            BINDING_REQUEST,
            &[
                (0x0024, &[0, 0, 0, 1]),
                (ATTR_USERNAME, b"botfrag:peerfrag1"),
                (0x8029, &[1; 8]),
            ],
        );
        assert_eq!(binding_request_ufrag(&request), Some(&b"botfrag"[..]));
        // A response or an indication is not routed by USERNAME.
        let response = stun(0x0101, &[(ATTR_USERNAME, b"botfrag:peer")]);
        assert_eq!(binding_request_ufrag(&response), None);
        // No colon, empty local part, no USERNAME at all.
        for attrs in [
            vec![(ATTR_USERNAME, &b"botfrag"[..])],
            vec![(ATTR_USERNAME, &b":peer"[..])],
            vec![(0x0024, &[0u8, 0, 0, 1][..])],
        ] {
            assert_eq!(binding_request_ufrag(&stun(BINDING_REQUEST, &attrs)), None);
        }
    }

    #[test]
    fn malformed_stun_is_refused_without_reading_past_the_datagram() {
        let request = stun(BINDING_REQUEST, &[(ATTR_USERNAME, b"botfrag:peer")]);
        // Cut anywhere: the header's length no longer fits, or the attribute is cut.
        for cut in 0..request.len() {
            assert_eq!(binding_request_ufrag(&request[..cut]), None, "cut at {cut}");
        }
        // An attribute claiming more than the message holds.
        let mut lying = request.clone();
        lying[22..24].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(binding_request_ufrag(&lying), None);
        // A header length beyond the datagram.
        let mut long = request.clone();
        long[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(binding_request_ufrag(&long), None);
        // Wrong magic cookie.
        let mut cookie = request;
        cookie[4] = 0;
        assert_eq!(binding_request_ufrag(&cookie), None);
        // A USERNAME longer than STUN allows.
        let huge = vec![b'a'; MAX_USERNAME + 1];
        assert_eq!(
            binding_request_ufrag(&stun(BINDING_REQUEST, &[(ATTR_USERNAME, &huge)])),
            None
        );
    }

    #[test]
    fn checks_go_by_ufrag_and_the_rest_by_the_address_the_session_talks_to() {
        let mut demux = Demux::default();
        assert!(demux.add_session(1, "aaaa"));
        assert!(demux.add_session(2, "bbbb"));
        assert!(!demux.add_session(3, "aaaa"), "a ufrag names one session");
        let check = |ufrag: &str| {
            stun(
                BINDING_REQUEST,
                &[(ATTR_USERNAME, format!("{ufrag}:x").as_bytes())],
            )
        };
        assert_eq!(demux.route(&check("aaaa"), addr(9)), Route::Session(1));
        assert_eq!(demux.route(&check("bbbb"), addr(9)), Route::Session(2));
        assert_eq!(
            demux.route(&check("cccc"), addr(9)),
            Route::Drop(DropReason::UnknownUfrag)
        );
        // DTLS, RTP and STUN responses from an address nobody sent to.
        let mut dtls = [0u8; 13];
        dtls[0] = 22;
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        let response = stun(0x0101, &[]);
        for datagram in [&dtls[..], &rtp[..], &response[..]] {
            assert_eq!(
                demux.route(datagram, addr(5000)),
                Route::Drop(DropReason::UnknownSource)
            );
        }
        assert!(demux.claim(2, addr(5000)));
        assert!(demux.claim(2, addr(5000)), "claiming again is harmless");
        assert!(!demux.claim(1, addr(5000)), "the address is session 2's");
        assert!(!demux.claim(9, addr(5001)), "no such session");
        for datagram in [&dtls[..], &rtp[..], &response[..]] {
            assert_eq!(demux.route(datagram, addr(5000)), Route::Session(2));
        }
        assert_eq!(
            demux.route(b"GET / HTTP/1.1\r\n\r\n", addr(5000)),
            Route::Drop(DropReason::Garbage)
        );
        // A session that goes takes its ufrag and addresses with it.
        demux.remove_session(2);
        assert_eq!(
            demux.route(&rtp, addr(5000)),
            Route::Drop(DropReason::UnknownSource)
        );
        assert_eq!(
            demux.route(&check("bbbb"), addr(9)),
            Route::Drop(DropReason::UnknownUfrag)
        );
        assert!(demux.claim(1, addr(5000)), "free again");
        assert_eq!((demux.sessions(), demux.addresses()), (1, 1));
    }

    #[test]
    fn a_session_claims_a_bounded_number_of_addresses() {
        let mut demux = Demux::default();
        demux.add_session(1, "aaaa");
        for port in 0..100 {
            let claimed = demux.claim(1, addr(6000 + port));
            assert_eq!(
                claimed,
                usize::from(port) < MAX_CLAIMS_PER_SESSION,
                "{port}"
            );
        }
        assert_eq!(demux.addresses(), MAX_CLAIMS_PER_SESSION);
        assert!(demux.claim(1, addr(6000)), "one it has");
    }

    #[test]
    fn a_flood_of_unknown_checks_creates_nothing() {
        let mut demux = Demux::default();
        demux.add_session(1, "known");
        for i in 0..10_000u32 {
            let request = stun(
                BINDING_REQUEST,
                &[(ATTR_USERNAME, format!("made-up-{i}:x").as_bytes())],
            );
            let from = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 40_000));
            assert_eq!(
                demux.route(&request, from),
                Route::Drop(DropReason::UnknownUfrag)
            );
        }
        assert_eq!((demux.sessions(), demux.addresses()), (1, 0));
    }
}
