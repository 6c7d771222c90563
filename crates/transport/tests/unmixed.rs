//! Unmixed per-speaker audio through real WebRTC: the bot offers receive-only unmixed
//! m-lines, the media peer sends the mix on the first m-line and five speakers on their own,
//! and the bot gets six streams apart, each speaker under its own SSRC, each with its own tone
//! — with a session of its own and with a session on a shared media port.

mod common;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use appmedia_transport::{MediaPort, MediaSession, RtpEndpoint, TransportConfig, WebRtcSession};
use common::*;

/// The SSRC the peer's media core gives its mixed stream.
const MIXED: u32 = 0x00C0_FFEE;
/// Five speakers (source ids, as a conference would use them) and their tones.
const SPEAKERS: [(u32, f32); 5] = [
    (101, 400.0),
    (102, 600.0),
    (103, 900.0),
    (104, 1300.0),
    (105, 1800.0),
];
const MIXED_TONE: f32 = 250.0;
const TONES: [f32; 6] = [250.0, 400.0, 600.0, 900.0, 1300.0, 1800.0];

/// The bot's session (on `port`, or its own) offering `streams` unmixed m-lines and the
/// media peer answering it, both connected.
async fn unmixed_pair(port: Option<&MediaPort>, streams: usize) -> (WebRtcSession, MediaSession) {
    let bot_config = TransportConfig {
        receive_unmixed_meeting_audio: true,
        unmixed_audio_streams: streams,
        ..TransportConfig::default()
    };
    let peer_config = TransportConfig {
        mixed_ssrc: Some(MIXED),
        ..TransportConfig::default()
    };
    connected_offer(port, bot_config, peer_config).await
}

/// Sends the mix and every speaker as Opus RTP, one packet per stream per 20 ms.
fn send_streams(endpoint: RtpEndpoint, streams: Vec<(u32, f32)>, duration: Duration) {
    let mut encoders: Vec<_> = streams
        .iter()
        .map(|&(ssrc, freq)| {
            let enc =
                opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
            (ssrc, tone(freq, 1.0, 0.4), enc)
        })
        .collect();
    let start = Instant::now();
    let mut out = [0u8; 1500];
    let mut tick = 0u32;
    while start.elapsed() < duration {
        let deadline = start + Duration::from_millis(20) * tick;
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        for (ssrc, pcm, enc) in encoders.iter_mut() {
            let at = (tick as usize * FRAME) % (pcm.len() - FRAME);
            let n = enc.encode(&pcm[at..at + FRAME], &mut out).unwrap();
            endpoint
                .outgoing
                .push(rtp(0, tick as u16, tick * FRAME as u32, *ssrc, &out[..n]));
        }
        tick += 1;
    }
}

/// Decodes what arrives, one decoder per SSRC.
fn receive_streams(endpoint: RtpEndpoint, duration: Duration) -> BTreeMap<u32, Vec<i16>> {
    let mut decoders: BTreeMap<u32, (opus::Decoder, Vec<i16>)> = BTreeMap::new();
    let start = Instant::now();
    let mut pcm = vec![0i16; FRAME * 6];
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(10));
        while let Some(packet) = endpoint.incoming.pop() {
            assert!(packet.len() >= 12, "short packet");
            let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
            assert_eq!(packet[0] & 0x0f, 0, "the CSRC was taken back out");
            let (dec, decoded) = decoders.entry(ssrc).or_insert_with(|| {
                (
                    opus::Decoder::new(RATE, opus::Channels::Mono).unwrap(),
                    Vec::new(),
                )
            });
            if let Some(payload) = rtp_payload(&packet)
                && let Ok(n) = dec.decode(payload, &mut pcm, false)
            {
                decoded.extend_from_slice(&pcm[..n]);
            }
        }
    }
    decoders.into_iter().map(|(k, (_, d))| (k, d)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_speakers_and_the_mix_arrive_as_six_streams() {
    six_streams_apart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_shared_port_five_speakers_and_the_mix_arrive_as_six_streams() {
    let port = MediaPort::bind(&TransportConfig::default(), 0).unwrap();
    six_streams_apart(Some(&port)).await;
    assert!(matches!(
        unmixed_pair(Some(&port), 1).await.0,
        WebRtcSession::Port(_)
    ));
}

async fn six_streams_apart(port: Option<&MediaPort>) {
    let (bot, peer) = unmixed_pair(port, 8).await;
    // The blob says so too: a media peer reads the flag from it.
    let blob = appmedia_transport::Blob::parse(&bot.blob(), None).unwrap();
    assert!(blob.receive_unmixed_meeting_audio);
    assert_eq!(bot.unmixed_receive_streams(), 8);
    assert_eq!(peer.unmixed_send_streams(), 8, "{}", bot.local_sdp());
    assert_eq!(peer.unmixed_receive_streams(), 0);

    let duration = Duration::from_millis(2500);
    let mut streams = vec![(MIXED, MIXED_TONE)];
    streams.extend(SPEAKERS);
    let sender_end = peer.take_endpoint().unwrap();
    let receiver_end = bot.take_endpoint().unwrap();
    let sender = thread::spawn(move || send_streams(sender_end, streams, duration));
    let receiver = thread::spawn(move || receive_streams(receiver_end, duration));
    let received = tokio::task::spawn_blocking(move || {
        sender.join().unwrap();
        receiver.join().unwrap()
    })
    .await
    .unwrap();

    assert_eq!(received.len(), 6, "streams by SSRC: {:?}", received.keys());
    for (ssrc, freq) in SPEAKERS {
        let pcm = received
            .get(&ssrc)
            .unwrap_or_else(|| panic!("speaker {ssrc} missing: {:?}", received.keys()));
        assert!(
            pcm.len() > RATE as usize,
            "speaker {ssrc}: {} samples",
            pcm.len()
        );
        let (heard, ratio) = dominant(&pcm[4800..], &TONES, RATE);
        assert_eq!(heard, freq, "speaker {ssrc} (ratio {ratio:.1})");
        assert!(ratio > 10.0, "speaker {ssrc}: not clean, ratio {ratio:.1}");
    }
    // The mix arrives on the first m-line under that m-line's SSRC.
    let (mixed_ssrc, mixed) = received
        .iter()
        .find(|(ssrc, _)| !SPEAKERS.iter().any(|(s, _)| s == *ssrc))
        .expect("the mixed stream");
    assert_ne!(*mixed_ssrc, MIXED, "rewritten to the negotiated SSRC");
    let (heard, ratio) = dominant(&mixed[4800..], &TONES, RATE);
    assert_eq!(heard, MIXED_TONE, "mixed (ratio {ratio:.1})");

    let stats = peer.stats().await;
    assert_eq!(stats.outbound_no_unmixed_slot, 0, "{stats:?}");
    assert_eq!(stats.outbound_write_failed, 0, "{stats:?}");
    assert!(stats.outbound_sent > 6 * 100, "{stats:?}");
    let stats = bot.stats().await;
    assert_eq!(stats.srtp_rejected, 0, "{stats:?}");
    assert_eq!(stats.inbound_queue_full, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_speakers_than_m_lines_are_counted_not_sent() {
    let (bot, peer) = unmixed_pair(None, 2).await;
    assert_eq!(peer.unmixed_send_streams(), 2);
    let duration = Duration::from_millis(600);
    let sender_end = peer.take_endpoint().unwrap();
    let receiver_end = bot.take_endpoint().unwrap();
    let sender = thread::spawn(move || send_streams(sender_end, SPEAKERS[..3].to_vec(), duration));
    let receiver = thread::spawn(move || receive_streams(receiver_end, duration));
    let received = tokio::task::spawn_blocking(move || {
        sender.join().unwrap();
        receiver.join().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        received.keys().copied().collect::<Vec<_>>(),
        vec![101, 102],
        "the first two speakers hold the two m-lines"
    );
    let stats = peer.stats().await;
    assert!(stats.outbound_no_unmixed_slot > 10, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_unmixed_audio_the_offer_has_one_m_line() {
    let bot = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    assert_eq!(bot.unmixed_receive_streams(), 0);
    assert_eq!(bot.local_sdp().matches("m=audio").count(), 1);
    let (peer, _) = MediaSession::answer_blob(
        TransportConfig {
            mixed_ssrc: Some(MIXED),
            ..TransportConfig::default()
        },
        &bot.blob(),
    )
    .await
    .unwrap();
    assert_eq!(peer.unmixed_send_streams(), 0);
}

/// A session on a port sends no unmixed streams (the emulator's part stays on a
/// `MediaSession`): answering an offer with unmixed m-lines, it puts no track on them (rtc
/// 0.21 marks them `sendonly` all the same), so nothing is ever sent there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_session_answering_puts_no_track_on_the_unmixed_m_lines() {
    let bot = MediaSession::offer(TransportConfig {
        receive_unmixed_meeting_audio: true,
        unmixed_audio_streams: 2,
        ..TransportConfig::default()
    })
    .await
    .unwrap();
    let port = MediaPort::bind(&TransportConfig::default(), 0).unwrap();
    let (peer, _) = appmedia_transport::PortSession::answer_blob(
        &port,
        TransportConfig::default(),
        &bot.blob(),
    )
    .unwrap();
    let answer = peer.local_sdp();
    let sections: Vec<&str> = answer.split("m=audio").skip(1).collect();
    assert_eq!(sections.len(), 3, "{answer}");
    assert!(
        sections[0].contains("a=ssrc:"),
        "the mixed m-line's track: {answer}"
    );
    for unmixed in &sections[1..] {
        assert!(
            !unmixed.contains("a=ssrc:") && !unmixed.contains("a=msid:"),
            "no track on an unmixed m-line: {answer}"
        );
    }
    assert_eq!(peer.unmixed_receive_streams(), 0);
}
