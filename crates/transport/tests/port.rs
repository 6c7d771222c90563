//! Sessions on one shared media port (`MediaPort` + `PortSession`, the sans-IO core) against
//! ordinary `MediaSession` peers on loopback: many calls through one socket, each call's
//! audio to its own peer, hostile datagrams counted and dropped, and the ways a session ends.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use appmedia_transport::{
    EndReason, MediaPort, MediaSession, PortSession, SessionState, TransportConfig,
};
use common::*;

fn config() -> TransportConfig {
    TransportConfig::default()
}

/// A bot session on `port` and a `MediaSession` peer answering its blob, both connected.
async fn connected(port: &MediaPort, peer_config: TransportConfig) -> (PortSession, MediaSession) {
    let bot = PortSession::offer(port, config()).unwrap();
    let (peer, answer) = MediaSession::answer_blob(peer_config, &bot.blob())
        .await
        .unwrap();
    bot.accept(&answer).unwrap();
    let both = async {
        let (a, b) = tokio::join!(bot.connected(), peer.connected());
        a.and(b)
    };
    tokio::time::timeout(Duration::from_secs(15), both)
        .await
        .expect("connected within 15 s")
        .expect("both sides connected");
    (bot, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_share_one_socket_and_each_hears_only_its_own_peer() {
    let port = MediaPort::bind(&config(), 0).unwrap();
    let calls = 6;
    let mut pairs = Vec::new();
    for _ in 0..calls {
        pairs.push(connected(&port, config()).await);
    }
    let addr = port.local_addr();
    for (bot, _) in &pairs {
        assert_eq!(bot.local_addr(), addr);
        let candidate = format!("{} {} typ host", addr.ip(), addr.port());
        assert!(bot.local_sdp().contains(&candidate), "{}", bot.local_sdp());
    }
    assert_eq!(port.stats().sessions, calls);

    // Each peer sends its own tone; each bot session hears exactly its peer's, and each peer
    // hears what its bot session sends (a tone of its own).
    let seconds = Duration::from_millis(2000);
    let freqs: Vec<f32> = (0..calls).map(|i| 300.0 + 250.0 * i as f32).collect();
    let mut workers = Vec::new();
    for (i, (bot, peer)) in pairs.iter().enumerate() {
        let peer_tone = freqs[i];
        let bot_tone = freqs[(i + 1) % calls];
        workers.push((
            run_media_worker(
                bot.take_endpoint().unwrap(),
                tone(bot_tone, 1.0, 0.5),
                seconds,
            ),
            run_media_worker(
                peer.take_endpoint().unwrap(),
                tone(peer_tone, 1.0, 0.5),
                seconds,
            ),
        ));
    }
    let results = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|(b, p)| (b.join().unwrap(), p.join().unwrap()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (i, (bot, peer)) in results.iter().enumerate() {
        for (name, result, expect) in [
            ("bot", bot, freqs[i]),
            ("peer", peer, freqs[(i + 1) % calls]),
        ] {
            assert!(
                result.received > result.sent / 2,
                "call {i} {name} received {} of ~{}",
                result.received,
                result.sent
            );
            let tail = &result.decoded[result.decoded.len().min(4800)..];
            let (freq, ratio) = dominant(tail, &freqs, RATE);
            assert_eq!(freq, expect, "call {i} {name} heard {freq} Hz");
            assert!(ratio > 10.0, "call {i} {name}: ratio {ratio:.1}");
        }
    }
    let stats = port.stats();
    assert_eq!(
        stats.dropped_unknown_source + stats.dropped_unknown_ufrag,
        0,
        "{stats:?}"
    );
    assert_eq!(stats.dropped_garbage, 0, "{stats:?}");
    assert!(stats.datagrams_routed > 100 * calls as u64, "{stats:?}");
    for (bot, _) in &pairs {
        let s = bot.stats();
        assert!(s.packets_sent > 50 && s.packets_received > 50, "{s:?}");
        assert_eq!(s.outbound_malformed, 0, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_counted_and_dropped_and_the_call_goes_on() {
    let port = MediaPort::bind(&config(), 0).unwrap();
    let (bot, peer) = connected(&port, config()).await;
    let before = port.stats();
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = port.local_addr();
    // A Binding request naming a ufrag nobody has.
    let mut check = vec![0x00, 0x01, 0x00, 12, 0x21, 0x12, 0xA4, 0x42];
    check.extend_from_slice(&[9; 12]);
    check.extend_from_slice(&[0x00, 0x06, 0x00, 8]);
    check.extend_from_slice(b"nobody:x");
    // DTLS ClientHello-shaped, RTP-shaped, garbage, and an oversize datagram.
    let mut hello = vec![22u8, 0xfe, 0xfd];
    hello.extend_from_slice(&[0; 60]);
    let mut rtp = vec![0x80, 111];
    rtp.extend_from_slice(&[1; 170]);
    let junk = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    let oversize = vec![0x80; 4000];
    for _ in 0..50 {
        for datagram in [&check, &hello, &rtp, &junk] {
            attacker.send_to(datagram, to).unwrap();
        }
    }
    let _ = attacker.send_to(&oversize, to);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = port.stats();
    assert_eq!(
        after.dropped_unknown_ufrag - before.dropped_unknown_ufrag,
        50,
        "{after:?}"
    );
    assert!(
        after.dropped_unknown_source - before.dropped_unknown_source >= 100,
        "{after:?}"
    );
    assert!(
        after.dropped_garbage - before.dropped_garbage >= 50,
        "{after:?}"
    );
    assert_eq!(after.sessions, 1, "nothing created for the attacker");
    // The call still carries media both ways.
    let seconds = Duration::from_millis(1000);
    let b = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let p = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    let (b, p) = tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
        .await
        .unwrap();
    assert!(
        b.received > 20 && p.received > 20,
        "{} {}",
        b.received,
        p.received
    );
    assert_eq!(bot.state(), SessionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_tells_the_peer_and_frees_the_port_entry() {
    let port = MediaPort::bind(&config(), 0).unwrap();
    let (bot, peer) = connected(&port, config()).await;
    bot.close();
    assert_eq!(bot.state(), SessionState::Ended(EndReason::Closed));
    assert_eq!(port.stats().sessions, 0);
    let reason = tokio::time::timeout(Duration::from_secs(3), peer.ended())
        .await
        .expect("the peer notices the BYE well before its peer timeout");
    assert_eq!(reason, EndReason::ClosedByPeer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_ends_the_session_after_the_peer_timeout() {
    let short = TransportConfig {
        peer_timeout: Duration::from_secs(2),
        ..config()
    };
    let port = MediaPort::bind(&short, 0).unwrap();
    let bot = PortSession::offer(&port, short.clone()).unwrap();
    let (peer, answer) = MediaSession::answer_blob(config(), &bot.blob())
        .await
        .unwrap();
    bot.accept(&answer).unwrap();
    tokio::time::timeout(Duration::from_secs(15), bot.connected())
        .await
        .unwrap()
        .unwrap();
    // Gone without a word: its socket closes, nothing answers the bot's consent checks.
    std::mem::forget(peer.take_endpoint());
    drop(peer);
    let reason = tokio::time::timeout(Duration::from_secs(15), bot.ended())
        .await
        .expect("ended within the peer timeout and a margin");
    assert!(
        matches!(reason, EndReason::PeerGone { .. } | EndReason::ClosedByPeer),
        "{reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_comes_ends_with_the_connect_timeout() {
    let short = TransportConfig {
        connect_timeout: Duration::from_millis(800),
        ..config()
    };
    let port = MediaPort::bind(&short, 0).unwrap();
    // An answer whose candidate is a port where nobody listens.
    let bot = PortSession::offer(&port, short.clone()).unwrap();
    let (peer, answer) = MediaSession::answer_blob(config(), &bot.blob())
        .await
        .unwrap();
    drop(peer);
    bot.accept(&answer).unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), bot.ended())
        .await
        .unwrap();
    assert!(
        matches!(
            reason,
            EndReason::ConnectTimeout {
                timeout_ms: 800,
                ..
            }
        ),
        "{reason:?}"
    );
}
