//! Two MediaSessions on loopback: offer/answer through the blob, Opus RTP both ways over
//! DTLS-SRTP, RTCP statistics, and the ways a session ends.

mod common;

use std::time::Duration;

use appmedia_transport::{
    BlobError, EndReason, Integrity, MediaSession, SessionState, TransportConfig, TransportError,
};
use common::*;

fn config() -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_flows_both_ways_over_dtls_srtp() {
    let (bot, peer) = connected_pair(config(), config()).await;

    let sdp = bot.local_sdp();
    assert!(sdp.contains("opus/48000/2"), "{sdp}");
    assert!(sdp.contains("useinbandfec=1"), "{sdp}");
    assert!(sdp.contains("a=fingerprint:"), "{sdp}");
    assert!(sdp.contains("UDP/TLS/RTP/SAVPF"), "{sdp}");

    let seconds = Duration::from_millis(2500);
    let bot_worker = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let peer_worker = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    assert!(
        bot.take_endpoint().is_none(),
        "the endpoint is handed out once"
    );
    let (bot_result, peer_result) = tokio::task::spawn_blocking(move || {
        (bot_worker.join().unwrap(), peer_worker.join().unwrap())
    })
    .await
    .unwrap();

    for (name, result, expect) in [("bot", &bot_result, 1000.0), ("peer", &peer_result, 440.0)] {
        assert!(
            result.received > result.sent / 2,
            "{name} received {} of ~{} packets",
            result.received,
            result.sent
        );
        // Skip the first 100 ms: the decoder's start-up.
        let tail = &result.decoded[result.decoded.len().min(4800)..];
        let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
        assert_eq!(freq, expect, "{name} heard {freq} Hz (ratio {ratio:.1})");
        assert!(ratio > 10.0, "{name}: tone not clean, ratio {ratio:.1}");
    }

    let stats = bot.stats().await;
    assert_eq!(stats.state, SessionState::Connected);
    assert!(stats.packets_sent > 50, "{stats:?}");
    assert!(stats.packets_received > 50, "{stats:?}");
    assert_eq!(stats.outbound_malformed, 0, "{stats:?}");
    assert_eq!(stats.garbage_datagrams, 0, "{stats:?}");
    assert!(stats.packets_lost <= 2, "loopback loses nothing: {stats:?}");
    let rtt = stats
        .rtcp_round_trip_time_ms
        .expect("an RTCP RTT after 2.5 s of SR/RR");
    assert!((0.0..500.0).contains(&rtt), "loopback RTT {rtt} ms");
    assert!(stats.jitter_ms < 50.0, "loopback jitter: {stats:?}");
    let json = serde_json::to_string(&stats).unwrap();
    assert!(json.contains("\"packetsLost\"") || json.contains("\"packets_lost\""));

    bot.close().await;
    assert_eq!(bot.state(), SessionState::Ended(EndReason::Closed));
    let reason = tokio::time::timeout(Duration::from_secs(3), peer.ended())
        .await
        .expect("the peer notices the BYE well before its 10 s peer timeout");
    assert_eq!(
        reason,
        EndReason::ClosedByPeer,
        "the BYE ends the peer at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_that_never_comes_back_over_the_wire_times_out() {
    // The bot accepts an answer, but the peer that made it is gone before ICE starts.
    let config = TransportConfig {
        connect_timeout: Duration::from_millis(1500),
        ..TransportConfig::default()
    };
    let bot = MediaSession::offer(config.clone()).await.unwrap();
    let (peer, answer) = MediaSession::answer_blob(config, &bot.blob())
        .await
        .unwrap();
    peer.close().await;
    drop(peer);
    bot.accept(&answer).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), bot.ended())
        .await
        .expect("ends by itself");
    assert!(
        matches!(
            reason,
            EndReason::ConnectTimeout {
                timeout_ms: 1500,
                ..
            } | EndReason::ConnectFailed
        ),
        "{reason:?}"
    );
    assert!(matches!(
        bot.accept(&answer).await,
        Err(TransportError::Ended(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_is_counted_and_harmless() {
    let (bot, peer) = connected_pair(config(), config()).await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..25u8 {
        // Text, random-looking bytes, a truncated RTP header, and an RTP-shaped packet
        // whose SRTP authentication tag cannot be right.
        socket
            .send_to(b"GET / HTTP/1.1\r\n\r\n", bot.local_addr())
            .unwrap();
        socket
            .send_to(&[0xff, i, 0x00, 0x13], bot.local_addr())
            .unwrap();
        socket
            .send_to(&[0x80, 111, 0, i], bot.local_addr())
            .unwrap();
        let mut forged = rtp(111, 1000 + i as u16, 0, 0x1234_5678, &[0u8; 40]).to_vec();
        forged.extend_from_slice(&[0xAA; 10]);
        socket.send_to(&forged, bot.local_addr()).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = bot.stats().await;
    assert_eq!(stats.garbage_datagrams, 75, "{stats:?}");
    assert!(stats.srtp_rejected >= 25, "{stats:?}");
    assert_eq!(stats.state, SessionState::Connected);
    assert_eq!(peer.state(), SessionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_checked_before_anything_is_bound() {
    let bot = MediaSession::offer(config()).await.unwrap();
    let blob = bot.blob();

    // The bot's own offer is not an answer.
    assert!(matches!(
        bot.accept(&blob).await,
        Err(TransportError::Blob(BlobError::WrongSdpKind { .. }))
    ));
    // Tampered: the candidate address changed in transit.
    let tampered = blob.replace("127.0.0.1", "127.0.0.2");
    assert!(matches!(
        MediaSession::answer_blob(config(), &tampered).await,
        Err(TransportError::Blob(BlobError::Tampered { .. }))
    ));
    // Keyed deployment refuses an unkeyed blob.
    let keyed = TransportConfig {
        blob_integrity: Integrity::HmacSha256(b"k".to_vec()),
        ..config()
    };
    assert!(matches!(
        MediaSession::answer_blob(keyed, &blob).await,
        Err(TransportError::Blob(BlobError::KeyedBlobExpected))
    ));
    // An answer for another media session.
    let other = MediaSession::offer(config()).await.unwrap();
    let (_peer, other_answer) = MediaSession::answer_blob(config(), &other.blob())
        .await
        .unwrap();
    assert!(matches!(
        bot.accept(&other_answer).await,
        Err(TransportError::Blob(BlobError::SessionMismatch { .. }))
    ));
    // Raw SDP without DTLS is refused with a reason.
    let err = bot
        .accept_sdp("v=0\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DTLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_share_one_runtime_and_a_port_range() {
    let config = TransportConfig {
        port_range: Some(41000..=41063),
        usedtx: true,
        ..config()
    };
    let mut pairs = Vec::new();
    for _ in 0..4 {
        pairs.push(connected_pair(config.clone(), config.clone()).await);
    }
    for (bot, peer) in &pairs {
        for port in [bot.local_addr().port(), peer.local_addr().port()] {
            assert!((41000..=41063).contains(&port), "{port}");
        }
        assert!(bot.local_sdp().contains("usedtx=1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_address_replaces_the_host_candidate() {
    let config = TransportConfig {
        public_ip: Some("203.0.113.7".parse().unwrap()),
        ..config()
    };
    let bot = MediaSession::offer(config).await.unwrap();
    let port = bot.local_addr().port();
    let candidate = bot
        .local_sdp()
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("a candidate");
    assert!(
        candidate.contains(&format!("203.0.113.7 {port} typ host")),
        "{candidate}"
    );
    assert!(
        !bot.local_sdp().contains("127.0.0.1 "),
        "{}",
        bot.local_sdp()
    );
    bot.set_call_id("f91e2c1a-call");
    assert!(bot.blob().contains("\"callId\":\"f91e2c1a-call\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_ends_the_session_with_peer_gone() {
    let config = TransportConfig {
        peer_timeout: Duration::from_secs(2),
        ..config()
    };
    let bot = MediaSession::offer(config.clone()).await.unwrap();
    let offer = bot.blob();

    // The peer lives on its own runtime; shutting that runtime down silences its socket
    // without a DTLS close_notify, which is what a crashed or unplugged peer looks like.
    let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
    let (vanish_tx, vanish_rx) = std::sync::mpsc::channel::<()>();
    let peer_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let peer = runtime.block_on(async move {
            let (peer, answer) = MediaSession::answer_blob(config, &offer).await.unwrap();
            answer_tx.send(answer).unwrap();
            peer.connected().await.unwrap();
            peer
        });
        vanish_rx.recv().unwrap();
        std::mem::forget(peer); // no close, no Drop: just gone
        runtime.shutdown_background();
    });
    bot.accept(&answer_rx.await.unwrap()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), bot.connected())
        .await
        .unwrap()
        .unwrap();
    vanish_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || peer_thread.join().unwrap())
        .await
        .unwrap();

    let reason = tokio::time::timeout(Duration::from_secs(15), bot.ended())
        .await
        .expect("the bot gives up within its peer timeout (plus ICE's)");
    assert!(matches!(reason, EndReason::PeerGone { .. }), "{reason:?}");
}

/// Sends 3 s of Opus through `sender`'s endpoint, leaving out every `gap_every`-th sequence
/// number (0: none), and returns what the peer's receiver reports told the sender.
async fn reported_loss(gap_every: u16) -> (u64, u8) {
    let (bot, peer) = connected_pair(config(), config()).await;
    let out = bot.take_endpoint().unwrap();
    let _inc = peer.take_endpoint().unwrap();
    let mut encoder =
        opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let pcm = tone(440.0, 0.02, 0.5);
    let mut buf = [0u8; 1500];
    let n = encoder.encode(&pcm, &mut buf).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..150u16 {
        tick.tick().await;
        if gap_every == 0 || seq % gap_every != 0 {
            out.outgoing
                .push(rtp(0, seq, u32::from(seq) * 960, 0, &buf[..n]));
        }
    }
    let reports = bot.loss_reports().latest();
    bot.close().await;
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_receiver_reports_say_what_it_lost_of_ours() {
    let (count, fraction) = reported_loss(0).await;
    assert!(count >= 1, "receiver reports within 3 s: {count}");
    assert_eq!(fraction, 0, "nothing lost on loopback");
    // Every 10th sequence number never sent: the peer reports ~10 % (26/256) lost.
    let (count, fraction) = reported_loss(10).await;
    assert!(count >= 1, "{count}");
    assert!(
        (15..=40).contains(&fraction),
        "fraction lost {fraction}/256"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_lite_offer_connects_to_a_full_agent_and_carries_media() {
    let lite = TransportConfig {
        ice_lite: true,
        ..TransportConfig::default()
    };
    let (bot, peer) = connected_pair(lite, TransportConfig::default()).await;
    assert!(bot.local_sdp().contains("a=ice-lite"));
    let seconds = Duration::from_millis(1500);
    let b = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let p = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    let (b, p) = tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
        .await
        .unwrap();
    assert_heard("bot", &b, 1000.0);
    assert_heard("peer", &p, 440.0);
}
