//! The shared media port's routing table (`MediaPort`): sessions registered by ICE ufrag and
//! claimed peer addresses, and datagrams routed among them (RFC 7983 class, a STUN Binding
//! request's USERNAME, the source address). See `appmedia_transport::fuzzing::demux` for the
//! record format and what must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appmedia_transport::fuzzing::demux(data);
});
