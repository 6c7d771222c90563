//! Test-only audio helpers: the media pipeline lives in appmedia-media; these tests only
//! need enough of it to prove that audio crosses the transport intact.
#![allow(dead_code)]

use std::thread;
use std::time::{Duration, Instant};

use appmedia_transport::{MediaPort, MediaSession, RtpEndpoint, TransportConfig, WebRtcSession};
use bytes::Bytes;

pub const RATE: u32 = 48_000;
pub const FRAME: usize = 960; // 20 ms at 48 kHz

/// A mono sine tone, `seconds` long, at 48 kHz.
pub fn tone(freq: f32, seconds: f32, amplitude: f32) -> Vec<i16> {
    let n = (RATE as f32 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            (amplitude * (2.0 * std::f32::consts::PI * freq * t).sin() * i16::MAX as f32) as i16
        })
        .collect()
}

/// The strongest of `candidates` in `samples`, and how many times stronger it is than the
/// runner-up (the test kit's Goertzel, on the samples scaled to ±1).
pub fn dominant(samples: &[i16], candidates: &[f32], rate: u32) -> (f32, f64) {
    let scaled: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    appmedia_testkit::audio::dominant(&scaled, candidates, rate as f32)
}

/// Builds one RTP packet (RFC 3550 fixed header, no CSRC, no extension).
pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Bytes {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt & 0x7f);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    Bytes::from(p)
}

/// The payload of an RTP packet (skips CSRCs and the header extension).
pub fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let cc = (packet[0] & 0x0f) as usize;
    let mut off = 12 + 4 * cc;
    if packet[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*packet.get(off + 2)?, *packet.get(off + 3)?]) as usize;
        off += 4 + 4 * len;
    }
    packet.get(off..)
}

/// What a media worker saw during [`run_media_worker`].
pub struct WorkerResult {
    pub sent: usize,
    pub received: usize,
    /// Received packets that carried an RTP header extension.
    pub with_extension: usize,
    /// Decoded mono PCM at 48 kHz, in arrival order.
    pub decoded: Vec<i16>,
}

/// `heard` (what one side of a call received while the other sent `tone_hz`, 440 or
/// 1000 Hz): most packets arrived, and its last second is that tone, clearly.
pub fn assert_heard(name: &str, heard: &WorkerResult, tone_hz: f32) {
    assert!(
        heard.received > heard.sent / 2,
        "{name} received {} of ~{}",
        heard.received,
        heard.sent
    );
    let tail = &heard.decoded[heard.decoded.len().saturating_sub(RATE as usize)..];
    let (freq, ratio) = dominant(tail, &[440.0, 1000.0], RATE);
    assert_eq!(freq, tone_hz, "{name} heard {freq} Hz at the end");
    assert!(ratio > 10.0, "{name}: ratio {ratio:.1}");
}

/// Plays `pcm` as Opus RTP into `endpoint` at real-time pace on a plain thread (the way
/// the media core will), and decodes whatever arrives. Runs for `duration`.
pub fn run_media_worker(
    endpoint: RtpEndpoint,
    pcm: Vec<i16>,
    duration: Duration,
) -> thread::JoinHandle<WorkerResult> {
    thread::spawn(move || {
        let mut encoder =
            opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut decoder = opus::Decoder::new(RATE, opus::Channels::Mono).unwrap();
        let start = Instant::now();
        let mut out = [0u8; 1500];
        let mut frame_pcm = vec![0i16; FRAME * 6];
        let mut result = WorkerResult {
            sent: 0,
            received: 0,
            with_extension: 0,
            decoded: Vec::new(),
        };
        let mut tick = 0u32;
        while start.elapsed() < duration {
            let deadline = start + Duration::from_millis(20) * tick;
            if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let at = (tick as usize * FRAME) % (pcm.len() - FRAME);
            let n = encoder.encode(&pcm[at..at + FRAME], &mut out).unwrap();
            // PT 0 and SSRC 0 on purpose: the transport must rewrite both.
            let packet = rtp(0, tick as u16, tick * FRAME as u32, 0, &out[..n]);
            endpoint.outgoing.push(packet);
            result.sent += 1;
            while let Some(packet) = endpoint.incoming.pop() {
                result.received += 1;
                if packet.first().is_some_and(|b| b & 0x10 != 0) {
                    result.with_extension += 1;
                }
                if let Some(payload) = rtp_payload(&packet)
                    && let Ok(samples) = decoder.decode(payload, &mut frame_pcm, false)
                {
                    result.decoded.extend_from_slice(&frame_pcm[..samples]);
                }
            }
            tick += 1;
        }
        result
    })
}

/// A bot session offering (on `port`, or one of its own) and a `MediaSession` peer
/// answering its blob, both connected (within 15 s).
pub async fn connected_offer(
    port: Option<&MediaPort>,
    offer: TransportConfig,
    answer: TransportConfig,
) -> (WebRtcSession, MediaSession) {
    let bot = WebRtcSession::offer(port, offer).await.unwrap();
    let (peer, answer) = MediaSession::answer_blob(answer, &bot.blob())
        .await
        .unwrap();
    bot.accept(&answer).await.unwrap();
    both_connected(&bot, &peer).await;
    (bot, peer)
}

/// Waits (at most 15 s) until both sessions are connected.
pub async fn both_connected(bot: &WebRtcSession, peer: &MediaSession) {
    let both = async { tokio::try_join!(bot.connected(), peer.connected()) };
    tokio::time::timeout(Duration::from_secs(15), both)
        .await
        .expect("connect within 15 s")
        .expect("both connected");
}

/// A bot session offering with `offer` and a peer answering its blob with `answer`, both
/// connected (ICE + DTLS) within 15 s.
pub async fn connected_pair(
    offer: TransportConfig,
    answer: TransportConfig,
) -> (MediaSession, MediaSession) {
    match connected_offer(None, offer, answer).await {
        (WebRtcSession::Own(bot), peer) => (bot, peer),
        (WebRtcSession::Port(_), _) => unreachable!("no port: a session of its own"),
    }
}
