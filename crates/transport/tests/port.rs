//! Sessions on one shared media port (`MediaPort` + `PortSession`, the sans-IO core) against
//! ordinary `MediaSession` peers on loopback: many calls through one socket, each call's
//! audio to its own peer, hostile datagrams counted and dropped, and the ways a session ends.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use appmedia_transport::{
    EndReason, MediaPort, MediaSession, PortSession, SessionState, TransportConfig, WebRtcSession,
};
use common::*;

fn config() -> TransportConfig {
    TransportConfig::default()
}

/// A bot session on `port` and a `MediaSession` peer answering its blob, both connected.
async fn connected(port: &MediaPort, peer_config: TransportConfig) -> (PortSession, MediaSession) {
    connected_as(port, config(), peer_config).await
}

/// The same with the bot's session configured by `bot_config`.
async fn connected_as(
    port: &MediaPort,
    bot_config: TransportConfig,
    peer_config: TransportConfig,
) -> (PortSession, MediaSession) {
    match connected_offer(Some(port), bot_config, peer_config).await {
        (WebRtcSession::Port(bot), peer) => (bot, peer),
        (WebRtcSession::Own(_), _) => unreachable!("offered on the port"),
    }
}

/// The bot's session sends 440 Hz and the peer's 1 kHz for `seconds`; what each received.
async fn talk(
    bot: &PortSession,
    peer: &MediaSession,
    seconds: Duration,
) -> (WorkerResult, WorkerResult) {
    let b = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let p = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
        .await
        .unwrap()
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
    // The 50 HTTP requests and the oversize datagram (longer than any WebRTC peer sends).
    assert_eq!(
        after.dropped_garbage - before.dropped_garbage,
        51,
        "{after:?}"
    );
    assert_eq!(after.sessions, 1, "nothing created for the attacker");
    // The call still carries media both ways.
    let (b, p) = talk(&bot, &peer, Duration::from_millis(1000)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_session_runs_on_its_pipelines_tick() {
    use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K};
    use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};

    let port = MediaPort::bind(&config(), 0).unwrap();
    let bot = PortSession::offer(&port, config()).unwrap();
    let (peer, answer) = MediaSession::answer_blob(config(), &bot.blob())
        .await
        .unwrap();
    let mut pipeline = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        audio_level_ext_id: bot.audio_level_extension_id(),
        ..PipelineConfig::default()
    })
    .unwrap();
    let epoch = std::time::Instant::now();
    bot.attach_pipeline(&mut pipeline, epoch);
    bot.accept(&answer).unwrap();
    // Nobody ticks the pipeline yet, and the port's thread no longer drives the session:
    // ICE cannot complete.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(bot.state(), SessionState::Connecting);

    // The media worker: the session's ICE, DTLS and SRTP now run on this thread's ticks.
    let bot_sender = pipeline.bot_sender();
    let seconds = Duration::from_millis(4000);
    let bot_worker = std::thread::spawn(move || {
        let voice = tone(440.0, 1.0, 0.5);
        let mut heard = Vec::new();
        let start = std::time::Instant::now();
        let first = (start - epoch).as_millis() as u32 / 20 + 1;
        let ticks = (seconds.as_millis() / FRAME_DURATION.as_millis()) as u32;
        for k in first..first + ticks {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let at = (k as usize * SAMPLES_PER_FRAME_48K) % (voice.len() - SAMPLES_PER_FRAME_48K);
            let mut frame: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
            for (out, &s) in frame.iter_mut().zip(&voice[at..]) {
                *out = f32::from(s) / 32768.0;
            }
            bot_sender.send_48k(&frame).unwrap();
            pipeline.tick(now);
            heard.extend(
                pipeline
                    .bot_frame_48k()
                    .iter()
                    .map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16),
            );
        }
        heard
    });
    tokio::time::timeout(Duration::from_secs(3), async {
        let (a, b) = tokio::join!(bot.connected(), peer.connected());
        a.and(b)
    })
    .await
    .expect("connected on the worker's ticks")
    .unwrap();
    let peer_worker = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        Duration::from_millis(2000),
    );
    let (peer_result, bot_heard) = tokio::task::spawn_blocking(move || {
        (peer_worker.join().unwrap(), bot_worker.join().unwrap())
    })
    .await
    .unwrap();
    let tail = &peer_result.decoded[peer_result.decoded.len().min(9600)..];
    let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
    assert_eq!(freq, 440.0, "peer heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "ratio {ratio:.1}");
    let heard = &bot_heard[bot_heard.len() / 3..];
    let (freq, ratio) = dominant(heard, &[440.0, 1000.0, 250.0, 2000.0], RATE);
    assert_eq!(freq, 1000.0, "pipeline heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "ratio {ratio:.1}");
    let stats = bot.stats();
    assert!(stats.outbound_sent > 50, "{stats:?}");
    assert_eq!(
        stats.outbound_malformed + stats.outbound_write_failed + stats.inbound_queue_full,
        0,
        "{stats:?}"
    );
}

/// `blob` with its SDP's loopback host candidate moved to `to`; the address it had.
fn through(blob: &str, to: std::net::SocketAddr) -> (String, std::net::SocketAddr) {
    use appmedia_testkit::impair::{host_candidate, rewrite_candidate_port};
    use appmedia_transport::{Blob, Integrity};
    let mut parsed = Blob::parse(blob, None).expect("a SHA-256 blob");
    let at = host_candidate(&parsed.webrtc.sdp).expect("a loopback host candidate");
    parsed.webrtc.sdp = rewrite_candidate_port(&parsed.webrtc.sdp, at, to);
    (parsed.seal(&Integrity::Sha256), at)
}

/// A bot session on `port` (side A of `relay`) and a `MediaSession` peer (side B), connected
/// through the relay.
async fn connected_through(
    relay: &appmedia_testkit::impair::Relay,
    port: &MediaPort,
) -> (PortSession, MediaSession) {
    match connected_through_as(relay, Some(port)).await {
        (WebRtcSession::Port(bot), peer) => (bot, peer),
        (WebRtcSession::Own(_), _) => unreachable!("offered on the port"),
    }
}

/// The same with the bot's session on `port` or, with `None`, a session of its own.
async fn connected_through_as(
    relay: &appmedia_testkit::impair::Relay,
    port: Option<&MediaPort>,
) -> (WebRtcSession, MediaSession) {
    let bot = WebRtcSession::offer(port, config()).await.unwrap();
    let (offer, bot_at) = through(&bot.blob(), relay.facing_b());
    let (peer, answer) = MediaSession::answer_blob(config(), &offer).await.unwrap();
    let (answer, peer_at) = through(&answer, relay.facing_a());
    relay.route(bot_at, peer_at);
    bot.accept(&answer).await.unwrap();
    both_connected(&bot, &peer).await;
    (bot, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_srtp_is_counted_and_never_delivered_twice() {
    use appmedia_testkit::impair::{Impairment, Relay};
    // Every datagram between the two has a 50 % chance of arriving twice: an SRTP replay.
    let relay = Relay::start(Impairment {
        duplicate: 0.5,
        seed: 7,
        ..Impairment::default()
    })
    .await
    .unwrap();
    let port = MediaPort::bind(&config(), 0).unwrap();
    let (bot, peer) = connected_through(&relay, &port).await;
    let (b, p) = talk(&bot, &peer, Duration::from_millis(2000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(relay.stats().duplicated > 50, "{:?}", relay.stats());
    // The bot got each of the peer's packets at most once, and counted the copies.
    assert!(
        b.received <= p.sent,
        "{} received of {} sent",
        b.received,
        p.sent
    );
    assert!(b.received > p.sent * 9 / 10, "{} of {}", b.received, p.sent);
    let stats = bot.stats();
    assert!(stats.srtp_rejected > 20, "{stats:?}");
    let (freq, _) = dominant(&b.decoded[4800..], &[440.0, 1000.0], RATE);
    assert_eq!(freq, 1000.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_on_every_interface_advertises_its_public_address() {
    use std::net::{IpAddr, Ipv4Addr};
    // As with Kubernetes host networking: bound to 0.0.0.0, the node's address known.
    let everywhere = TransportConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ..config()
    };
    assert!(
        MediaPort::bind(&everywhere, 0).is_err(),
        "no address to advertise"
    );
    let port = MediaPort::bind(
        &TransportConfig {
            public_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ..everywhere
        },
        0,
    )
    .unwrap();
    assert!(port.local_addr().ip().is_unspecified());
    let advertised = port.advertised_addr();
    assert_eq!(advertised.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(advertised.port(), port.local_addr().port());
    let (bot, peer) = connected(&port, config()).await;
    let candidate = format!(" {} {} typ host", advertised.ip(), advertised.port());
    assert!(bot.local_sdp().contains(&candidate), "{}", bot.local_sdp());
    assert!(!bot.local_sdp().contains("0.0.0.0 "), "{}", bot.local_sdp());
    let (b, p) = talk(&bot, &peer, Duration::from_millis(1000)).await;
    assert!(
        b.received > 20 && p.received > 20,
        "{} {}",
        b.received,
        p.received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_nat_rebinds_is_followed_after_an_authenticated_check() {
    let port = MediaPort::bind(&config(), 0).unwrap();
    followed_through_a_rebinding(Some(&port)).await;
    assert!(
        port.stats().dropped_unknown_source > 0,
        "the new address was not let in before its check: {:?}",
        port.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_its_own_follows_a_rebinding_peer_too() {
    followed_through_a_rebinding(None).await;
}

/// The peer reaches the bot's session (on `port`, or its own) through a "NAT" (the relay)
/// that gives its flow a new address mid-call; what the bot sends to the old one is lost.
/// The session follows it after an authenticated check, both ways, and the call goes on.
async fn followed_through_a_rebinding(port: Option<&MediaPort>) {
    use appmedia_testkit::impair::{Impairment, Relay};
    let mut relay = Relay::start(Impairment::default()).await.unwrap();
    let (bot, peer) = connected_through_as(&relay, port).await;
    let seconds = Duration::from_millis(9000);
    let b = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let p = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let received = async || {
        (
            bot.stats().await.packets_received,
            peer.stats().await.packets_received,
        )
    };
    let (bot_before, peer_before) = received().await;
    assert!(
        bot_before > 50 && peer_before > 50,
        "{bot_before} {peer_before}"
    );
    assert_eq!(bot.stats().await.peer_moves, 0);
    let old = relay.facing_a();
    let new = relay.rebind_facing_a().await.unwrap();
    assert_ne!(old, new);
    // The peer's media from the new address does not move the session until the peer's next
    // consent check from there is authenticated and answered (its agent checks once it hears
    // nothing for 2 s); then the session follows, both ways.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (bot_moved, peer_moved) = received().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (bot_after, peer_after) = received().await;
    let stats = bot.stats().await;
    assert_eq!(stats.peer_moves, 1, "{stats:?}");
    // 2.5 s is 125 packets each way.
    assert!(
        bot_after - bot_moved > 100,
        "the bot hears the moved peer: {bot_moved} -> {bot_after}"
    );
    assert!(
        peer_after - peer_moved > 100,
        "the moved peer hears the bot: {peer_moved} -> {peer_after}"
    );
    assert_eq!(bot.state(), SessionState::Connected);
    assert_eq!(peer.state(), SessionState::Connected);
    let (b, p) = tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
        .await
        .unwrap();
    assert_heard("bot", &b, 1000.0);
    assert_heard("peer", &p, 440.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_the_peers_own_address_neither_breaks_the_call_nor_gets_answers() {
    use appmedia_testkit::impair::{Impairment, Relay};
    // An attacker on the peer's path sends from the peer's address, which the port has let
    // in: DTLS ClientHellos (a new handshake mid-call), forged SRTP, and consent checks
    // with the right ufrag but no valid MESSAGE-INTEGRITY.
    let relay = Relay::start(Impairment::default()).await.unwrap();
    let port = MediaPort::bind(&config(), 0).unwrap();
    let (bot, peer) = connected_through(&relay, &port).await;
    let ufrag = bot
        .local_sdp()
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_string();
    let seconds = Duration::from_millis(4000);
    let b = run_media_worker(bot.take_endpoint().unwrap(), tone(440.0, 1.0, 0.5), seconds);
    let p = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (sent_before, stats_before) = (port.stats().datagrams_sent, bot.stats());
    let floods = 600;
    for i in 0..floods {
        let n = i as u8;
        relay.inject_to_a(&client_hello(n)).await.unwrap();
        let mut srtp = vec![0x80, 111, 0, n, 0, 0, 0, n, 0x12, 0x34, 0x56, 0x78];
        srtp.extend_from_slice(&[n; 80]);
        relay.inject_to_a(&srtp).await.unwrap();
        relay
            .inject_to_a(&unsigned_check(&format!("{ufrag}:peer"), n))
            .await
            .unwrap();
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Truncated ones: an RTP header cut short, a DTLS record header, a STUN header.
    let garbage_before = port.stats().dropped_garbage;
    for cut in [
        &[0x80u8, 111, 0, 1][..],
        &[22, 0xfe, 0xfd, 0],
        &[0, 1, 0, 0, 0x21],
    ] {
        relay.inject_to_a(cut).await.unwrap();
    }
    let flood_time = Duration::from_millis(1000);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (sent_after, stats_after) = (port.stats().datagrams_sent, bot.stats());
    // The bot answered none of it: what it sent in those ~2 s is its own media, RTCP and
    // consent checks (~50 + a few a second), not a reply per forged datagram.
    let sent = sent_after - sent_before;
    let expected = (2 * 50 + 20) as u64 + flood_time.as_secs() * 10;
    assert!(
        sent <= expected,
        "sent {sent} datagrams while {} forged ones arrived",
        3 * floods
    );
    assert!(
        stats_after.srtp_rejected - stats_before.srtp_rejected >= floods as u64 / 2,
        "{stats_after:?}"
    );
    assert_eq!(stats_after.peer_moves, 0);
    assert_eq!(port.stats().sessions, 1);
    assert_eq!(
        port.stats().dropped_garbage - garbage_before,
        3,
        "{:?}",
        port.stats()
    );
    let (b, p) = tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
        .await
        .unwrap();
    assert_eq!(bot.state(), SessionState::Connected);
    assert_eq!(peer.state(), SessionState::Connected);
    for (name, heard, tone_hz) in [("bot", &b, 1000.0), ("peer", &p, 440.0)] {
        assert!(
            heard.received > heard.sent * 9 / 10,
            "{name} got {} of {}",
            heard.received,
            heard.sent
        );
        assert_heard(name, heard, tone_hz);
    }
}

/// A DTLS 1.2 ClientHello record (epoch 0), as a peer starting a new handshake sends.
fn client_hello(n: u8) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(&[n; 32]); // random
    body.push(0); // session id
    body.push(0); // cookie
    body.extend_from_slice(&[0, 2, 0xc0, 0x2b]); // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // no compression
    body.extend_from_slice(&[0, 0]); // no extensions
    let len = body.len() as u32;
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&[0, 0]); // message_seq
    handshake.extend_from_slice(&[0, 0, 0]); // fragment_offset
    handshake.extend_from_slice(&len.to_be_bytes()[1..]); // fragment_length
    handshake.extend_from_slice(&body);
    let mut record = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, n];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// A STUN Binding request naming `username`, with a MESSAGE-INTEGRITY that is not an HMAC of
/// anything (the attacker does not know the ICE password).
fn unsigned_check(username: &str, n: u8) -> Vec<u8> {
    let name = username.as_bytes();
    let padded = name.len().div_ceil(4) * 4;
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attrs.extend_from_slice(name);
    attrs.resize(4 + padded, 0);
    attrs.extend_from_slice(&[0x00, 0x08, 0x00, 20]);
    attrs.extend_from_slice(&[n; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[n; 12]);
    m.extend_from_slice(&attrs);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_lite_session_answers_the_peers_checks_and_carries_media() {
    let lite = TransportConfig {
        ice_lite: true,
        ..config()
    };
    let port = MediaPort::bind(&lite, 0).unwrap();
    // The peer is a full agent: it controls, checks and nominates.
    let (bot, peer) = connected_as(&port, lite, config()).await;
    assert!(
        bot.local_sdp().contains("a=ice-lite"),
        "{}",
        bot.local_sdp()
    );
    let (b, p) = talk(&bot, &peer, Duration::from_millis(1500)).await;
    assert_heard("bot", &b, 1000.0);
    assert_heard("peer", &p, 440.0);
    // rtc 0.21's controlled side answers the peer's checks with triggered checks of its own,
    // lite or not (see `TransportConfig::ice_lite`): they measure a round trip.
    assert!(bot.stats().ice_round_trip_time_ms.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_with_several_sockets_carries_each_call_to_its_own_peer() {
    assert!(MediaPort::bind_reuseport(&config(), 0, 0).is_err());
    assert!(
        MediaPort::bind_reuseport(&config(), 0, appmedia_transport::MAX_PORT_SOCKETS + 1).is_err()
    );
    // Three sockets on one port (SO_REUSEPORT): the kernel spreads the peers over them.
    let port = MediaPort::bind_reuseport(&config(), 0, 3).unwrap();
    let mut pairs = Vec::new();
    for _ in 0..6 {
        pairs.push(connected(&port, config()).await);
    }
    for (bot, _) in &pairs {
        assert_eq!(bot.local_addr(), port.local_addr());
    }
    let seconds = Duration::from_millis(1500);
    let mut workers = Vec::new();
    for (i, (bot, peer)) in pairs.iter().enumerate() {
        let (bot_hz, peer_hz) = if i % 2 == 0 {
            (440.0, 1000.0)
        } else {
            (1000.0, 440.0)
        };
        workers.push((
            run_media_worker(
                bot.take_endpoint().unwrap(),
                tone(bot_hz, 1.0, 0.5),
                seconds,
            ),
            run_media_worker(
                peer.take_endpoint().unwrap(),
                tone(peer_hz, 1.0, 0.5),
                seconds,
            ),
            bot_hz,
            peer_hz,
        ));
    }
    for (b, p, bot_hz, peer_hz) in workers {
        let (b, p) = tokio::task::spawn_blocking(move || (b.join().unwrap(), p.join().unwrap()))
            .await
            .unwrap();
        assert_heard("bot", &b, peer_hz);
        assert_heard("peer", &p, bot_hz);
    }
    let stats = port.stats();
    assert_eq!(
        stats.dropped_unknown_source + stats.dropped_unknown_ufrag,
        0,
        "{stats:?}"
    );
}
