//! What one side sends from the moment it is connected reaches the other side: the first
//! packets of a call are not lost while the peer's side of the handshake completes.

mod common;

use std::time::{Duration, Instant};

use appmedia_transport::{MediaSession, TransportConfig};
use common::*;

fn config() -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    }
}

/// Offers, answers, waits for `sender_is_offerer`'s side only, then sends 50 numbered
/// packets at 20 ms; returns the sequence numbers the other side received.
async fn first_packets(sender_is_offerer: bool) -> Vec<u16> {
    let bot = MediaSession::offer(config()).await.unwrap();
    let (peer, answer) = MediaSession::answer_blob(config(), &bot.blob())
        .await
        .unwrap();
    bot.accept(&answer).await.unwrap();
    let (sender, receiver) = if sender_is_offerer {
        (&bot, &peer)
    } else {
        (&peer, &bot)
    };
    tokio::time::timeout(Duration::from_secs(15), sender.connected())
        .await
        .expect("connect within 15 s")
        .expect("connected");
    let started = Instant::now();
    let out = sender.take_endpoint().unwrap();
    let inc = receiver.take_endpoint().unwrap();
    let mut encoder =
        opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let pcm = tone(440.0, 0.02, 0.5);
    let mut buf = [0u8; 1500];
    let n = encoder.encode(&pcm, &mut buf).unwrap();
    let mut received = Vec::new();
    for seq in 0..75u16 {
        if seq < 50 {
            out.outgoing
                .push(rtp(0, seq, u32::from(seq) * 960, 0, &buf[..n]));
        }
        tokio::time::sleep_until((started + Duration::from_millis(20) * u32::from(seq + 1)).into())
            .await;
        while let Some(p) = inc.incoming.pop() {
            received.push(u16::from_be_bytes([p[2], p[3]]));
        }
    }
    eprintln!("receiver state {:?}", receiver.state());
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_packets_after_connecting_arrive() {
    for round in 0..6 {
        let offerer = round % 2 == 0;
        let got = first_packets(offerer).await;
        eprintln!(
            "offerer sends: {offerer}: {} received, first {:?}",
            got.len(),
            got.first()
        );
    }
}
