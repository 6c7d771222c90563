//! A MediaSession feeding the media core's CallPipeline directly: the bot's pipeline on
//! one side of DTLS-SRTP, a plain Opus endpoint on the other.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_transport::{MediaSession, TransportConfig};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_speaks_and_hears_through_the_session() {
    let config = TransportConfig::default();
    let bot = MediaSession::offer(config.clone()).await.unwrap();
    let (peer, answer) = MediaSession::answer_blob(config, &bot.blob())
        .await
        .unwrap();
    bot.accept(&answer).await.unwrap();

    let mut pipeline = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..PipelineConfig::default()
    })
    .unwrap();
    let epoch = Instant::now();
    bot.attach_pipeline(&mut pipeline, epoch);
    assert!(
        bot.take_endpoint().is_none(),
        "the pipeline owns the queues now"
    );
    let bot_sender = pipeline.bot_sender();

    tokio::time::timeout(Duration::from_secs(15), async {
        tokio::try_join!(bot.connected(), peer.connected())
    })
    .await
    .unwrap()
    .unwrap();

    let seconds = Duration::from_millis(2500);
    let peer_worker = run_media_worker(
        peer.take_endpoint().unwrap(),
        tone(1000.0, 1.0, 0.5),
        seconds,
    );
    // The media worker: ticks the pipeline on absolute 20 ms deadlines, as the scheduler does.
    let bot_worker = thread::spawn(move || {
        let voice = tone(440.0, 1.0, 0.5);
        let mut heard = Vec::new();
        let ticks = (seconds.as_millis() / FRAME_DURATION.as_millis()) as u32;
        for k in 0..ticks {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
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
    let (peer_result, bot_heard) = tokio::task::spawn_blocking(move || {
        (peer_worker.join().unwrap(), bot_worker.join().unwrap())
    })
    .await
    .unwrap();

    let tail = &peer_result.decoded[peer_result.decoded.len().min(9600)..];
    let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
    assert_eq!(
        freq, 440.0,
        "peer heard {freq} Hz from the pipeline (ratio {ratio:.1})"
    );
    assert!(ratio > 10.0, "ratio {ratio:.1}");

    let tail = &bot_heard[bot_heard.len() / 2..];
    let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
    assert_eq!(
        freq, 1000.0,
        "pipeline heard {freq} Hz from the peer (ratio {ratio:.1})"
    );
    assert!(ratio > 10.0, "ratio {ratio:.1}");

    let stats = bot.stats().await;
    assert!(stats.outbound_sent > 50, "{stats:?}");
    assert_eq!(
        stats.outbound_malformed + stats.outbound_write_failed,
        0,
        "{stats:?}"
    );
}
