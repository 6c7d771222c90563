//! Plain-RTP lab mode: two sessions on loopback exchange Opus; garbage and stray payload
//! types are counted, not delivered.

mod common;

use std::time::Duration;

use appmedia_transport::{PlainRtpConfig, PlainRtpSession};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_over_bare_udp_both_ways() {
    // Bind both first (port 0), then point them at each other.
    let probe_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let probe_b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (addr_a, addr_b) = (probe_a.local_addr().unwrap(), probe_b.local_addr().unwrap());
    drop((probe_a, probe_b));
    let a = PlainRtpSession::bind(PlainRtpConfig::new(addr_a, addr_b))
        .await
        .unwrap();
    let b = PlainRtpSession::bind(PlainRtpConfig::new(addr_b, addr_a))
        .await
        .unwrap();

    let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stray.send_to(b"not rtp at all", addr_a).unwrap();
    stray.send_to(&rtp(8, 1, 0, 7, &[0; 160]), addr_a).unwrap(); // PCMA, not ours

    let seconds = Duration::from_millis(1500);
    let wa = run_media_worker(a.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let wb = run_media_worker(b.take_endpoint().unwrap(), tone(1000.0, 1.0, 0.5), seconds);
    let (ra, rb) = tokio::task::spawn_blocking(move || (wa.join().unwrap(), wb.join().unwrap()))
        .await
        .unwrap();
    for (name, result, expect) in [("a", &ra, 1000.0), ("b", &rb, 440.0)] {
        assert!(
            result.received > result.sent / 2,
            "{name}: {} of {}",
            result.received,
            result.sent
        );
        let tail = &result.decoded[result.decoded.len().min(4800)..];
        let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
        assert_eq!(freq, expect, "{name} heard {freq} Hz (ratio {ratio:.1})");
    }
    // b's packets came first: a latched on b. A third party's Opus is dropped and counted.
    stray
        .send_to(&rtp(111, 1, 0, 9, &[0xf8, 0xff, 0xfe]), addr_a)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.stats().foreign_source == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = a.stats();
    assert_eq!(stats.garbage, 1, "{stats:?}");
    assert_eq!(stats.wrong_payload_type, 1, "{stats:?}");
    assert!(stats.packets_sent > 50, "{stats:?}");
    assert_eq!(stats.send_errors, 0, "{stats:?}");
}
