//! A session following a peer whose address changes (`crates/transport/src/follow.rs`): datagrams
//! in and out from and to eight addresses over time. See
//! `appmedia_transport::fuzzing::follow` for the record format and what must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appmedia_transport::fuzzing::follow(data);
});
