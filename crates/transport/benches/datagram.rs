//! One datagram's way out of a session and into another (issue 16): RTP from the bot's media
//! side → header rewrite, SRTP protect → a datagram → the peer port's demultiplexer → SRTP
//! unprotect, RTP parse → the peer's media side. Two port sessions connected in memory
//! (`appmedia_transport::bench::SansIoPair`): the state machines a port runs, without the
//! socket (a send and a receive syscall come on top; `appmedia loadtest --transport
//! webrtc-port` measures the whole path per call tick).
//!
//! `cargo bench -p appmedia-transport --bench datagram`

use std::hint::black_box;

use appmedia_transport::bench::SansIoPair;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

/// A 20 ms Opus packet's size at 32 kb/s: 80 bytes of payload.
fn packet(seq: u16) -> Bytes {
    let mut p = Vec::with_capacity(92);
    p.extend_from_slice(&[0x80, 111]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq).wrapping_mul(960)).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1]);
    p.extend(std::iter::repeat_n(0x5a, 80));
    Bytes::from(p)
}

fn datagram(c: &mut Criterion) {
    let mut pair = SansIoPair::connected().expect("the two sessions connect in memory");
    let mut seq = 0u16;
    c.bench_function("datagram_out_and_in", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            black_box(pair.carry(packet(seq)))
        })
    });
}

criterion_group!(benches, datagram);
criterion_main!(benches);
