//! DTMF over WebRTC: two sessions, each feeding a media-core pipeline; keys one pipeline
//! sends arrive at the other as `ToneReceived`, once each, in order.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use appmedia_media::dtmf::{Tone, ToneRequest};
use appmedia_media::frame::FRAME_DURATION;
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig, PipelineEvent};
use appmedia_transport::TransportConfig;
use common::connected_pair;

fn pipeline(telephone_event: u8) -> CallPipeline {
    CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        telephone_event_payload_type: Some(telephone_event),
        ..PipelineConfig::default()
    })
    .unwrap()
}

/// Ticks `pipeline` on absolute 20 ms deadlines for `for_ticks`, keeping its events.
fn run(mut pipeline: CallPipeline, epoch: Instant, ticks: u32) -> Vec<PipelineEvent> {
    let mut events = Vec::new();
    for k in 0..ticks {
        let now = FRAME_DURATION * k;
        if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        pipeline.tick(now);
        while let Some(event) = pipeline.poll_event() {
            events.push(event);
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cross_a_webrtc_session_once_each_in_order() {
    // The answerer's media side uses another payload type than the offer's: each side
    // maps the negotiated one to its own configured one.
    let (a, b) = connected_pair(
        TransportConfig::default(),
        TransportConfig {
            telephone_event_payload_type: Some(100),
            ..TransportConfig::default()
        },
    )
    .await;
    assert_eq!(
        a.telephone_event_payload_type(),
        Some(101),
        "{}",
        a.local_sdp()
    );
    assert_eq!(b.telephone_event_payload_type(), Some(101));
    assert!(
        b.local_sdp().contains("telephone-event/48000"),
        "{}",
        b.local_sdp()
    );

    let (mut pa, mut pb) = (pipeline(101), pipeline(100));
    let epoch = Instant::now();
    a.attach_pipeline(&mut pa, epoch);
    b.attach_pipeline(&mut pb, epoch);
    let keys = pa.tone_sender().unwrap();

    for c in "1#".chars() {
        keys.send(ToneRequest::key(Tone::from_char(c).unwrap()))
            .unwrap();
    }
    let ticks = 75; // 1.5 s: two 100 ms keys with pauses, plus time to settle.
    let sender = thread::spawn(move || run(pa, epoch, ticks));
    let receiver = thread::spawn(move || run(pb, epoch, ticks));
    let (sent, received) =
        tokio::task::spawn_blocking(move || (sender.join().unwrap(), receiver.join().unwrap()))
            .await
            .unwrap();

    let sent: Vec<Tone> = sent
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::ToneSent { tone } => Some(*tone),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [Tone::from_char('1').unwrap(), Tone::from_char('#').unwrap()]
    );
    let received: Vec<(Tone, bool)> = received
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::ToneReceived { tone, end_seen, .. } => Some((*tone, *end_seen)),
            _ => None,
        })
        .collect();
    assert_eq!(
        received,
        [
            (Tone::from_char('1').unwrap(), true),
            (Tone::from_char('#').unwrap(), true)
        ]
    );
    let stats = a.stats().await;
    assert_eq!(stats.outbound_no_telephone_event, 0, "{stats:?}");
    assert_eq!(stats.outbound_write_failed, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_to_a_peer_without_telephone_event_are_dropped_and_counted() {
    let (a, b) = connected_pair(
        TransportConfig::default(),
        TransportConfig {
            telephone_event_payload_type: None,
            ..TransportConfig::default()
        },
    )
    .await;
    assert_eq!(a.telephone_event_payload_type(), None, "{}", b.local_sdp());
    assert_eq!(b.telephone_event_payload_type(), None);

    let mut pa = pipeline(101);
    let epoch = Instant::now();
    a.attach_pipeline(&mut pa, epoch);
    let keys = pa.tone_sender().unwrap();
    keys.send(ToneRequest::key(Tone::from_char('5').unwrap()))
        .unwrap();
    let sender = thread::spawn(move || run(pa, epoch, 25));
    tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    // Let the pump drain what the last ticks queued.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stats = a.stats().await;
    assert!(stats.outbound_no_telephone_event >= 3, "{stats:?}");
    assert_eq!(stats.outbound_write_failed, 0, "{stats:?}");
}
