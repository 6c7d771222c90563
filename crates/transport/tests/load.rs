//! What the WebRTC transport alone costs: N connected session pairs in this process, each
//! sending 50 packets/s both ways over DTLS-SRTP, no codec. Prints CPU per session.
//! Ignored by default (it runs for seconds and measures): run with
//! `APPMEDIA_TRANSPORT_PAIRS=20 cargo test -p appmedia-transport --release --test load -- --ignored --nocapture`
//!
//! `APPMEDIA_TRANSPORT_UNMIXED=5` measures unmixed audio: the bot offers unmixed m-lines and
//! the peer sends, besides the mix, that many speaker streams (50 packets/s each) on them.

mod common;

use std::time::{Duration, Instant};

use appmedia_transport::{MediaSession, TransportConfig};
use common::rtp;

/// The SSRC of the stream each side sends on its first m-line (the mix, from the peer).
const MIXED: u32 = 1;

/// utime + stime of this process, from /proc (Linux; USER_HZ is 100 there).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: runs for seconds; see the module doc"]
async fn transport_cpu_per_session() {
    let pairs: usize = std::env::var("APPMEDIA_TRANSPORT_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seconds: u64 = std::env::var("APPMEDIA_TRANSPORT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let unmixed: usize = std::env::var("APPMEDIA_TRANSPORT_UNMIXED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bot_config = TransportConfig {
        receive_unmixed_meeting_audio: unmixed > 0,
        unmixed_audio_streams: unmixed.max(8),
        ..TransportConfig::default()
    };
    let peer_config = TransportConfig {
        mixed_ssrc: Some(MIXED),
        ..TransportConfig::default()
    };
    let mut sessions = Vec::new();
    // (endpoint, SSRCs it sends each tick)
    let mut endpoints = Vec::new();
    for _ in 0..pairs {
        let bot = MediaSession::offer(bot_config.clone()).await.unwrap();
        let (peer, answer) = MediaSession::answer_blob(peer_config.clone(), &bot.blob())
            .await
            .unwrap();
        bot.accept(&answer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::try_join!(bot.connected(), peer.connected())
        })
        .await
        .unwrap()
        .unwrap();
        endpoints.push((bot.take_endpoint().unwrap(), vec![MIXED]));
        let speakers = (0..unmixed as u32).map(|i| 100 + i);
        endpoints.push((
            peer.take_endpoint().unwrap(),
            std::iter::once(MIXED).chain(speakers).collect::<Vec<u32>>(),
        ));
        sessions.push((bot, peer));
    }

    let cpu_before = cpu_time().unwrap();
    let wall = Instant::now();
    let worker = std::thread::spawn(move || {
        let payload = [0x5au8; 80]; // about a 32 kb/s Opus frame
        let (mut sent, mut received) = (0u64, 0u64);
        let ticks = seconds * 50;
        let start = Instant::now();
        for k in 0..ticks {
            if let Some(wait) =
                (start + Duration::from_millis(20 * k)).checked_duration_since(Instant::now())
            {
                std::thread::sleep(wait);
            }
            for (ep, ssrcs) in &endpoints {
                for &ssrc in ssrcs {
                    ep.outgoing
                        .push(rtp(111, k as u16, (k * 960) as u32, ssrc, &payload));
                    sent += 1;
                }
                while ep.incoming.pop().is_some() {
                    received += 1;
                }
            }
        }
        (sent, received)
    });
    let (sent, received) = tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    let cpu = cpu_time().unwrap() - cpu_before;
    let wall = wall.elapsed();
    let sessions_n = 2 * pairs;
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "transport load: {pairs} pairs ({sessions_n} sessions), {unmixed} unmixed speakers, {seconds} s: \
         sent {sent}, received {received}; process CPU {:.2} s over {:.2} s wall = {:.1}% of one core, \
         {:.3}% per session, {:.3}% per call (includes the packet generator thread)",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        share * 100.0,
        share * 100.0 / sessions_n as f64,
        share * 100.0 / pairs as f64
    );
    assert!(received > sent / 2, "sent {sent}, received {received}");
    let stats = sessions[0].0.stats().await;
    eprintln!("first bot session: {stats:?}");
}
