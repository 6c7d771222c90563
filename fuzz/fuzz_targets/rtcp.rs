//! One datagram from the network as a WebRTC session's socket layer meets it: RFC 7983
//! classification, then, for what parses as RTCP, the session's RTCP interceptor (BYE, round
//! trip times, loss reports about our streams). The first 8 bytes name the local and remote
//! SSRCs bound to the session, so reports and BYEs can match them.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ssrcs, datagram) = data.split_at(data.len().min(8));
    let mut ids = [0u8; 8];
    ids[..ssrcs.len()].copy_from_slice(ssrcs);
    let local = u32::from_be_bytes([ids[0], ids[1], ids[2], ids[3]]);
    let remote = u32::from_be_bytes([ids[4], ids[5], ids[6], ids[7]]);
    appmedia_transport::fuzzing::datagram(datagram, local, remote);
});
