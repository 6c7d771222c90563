//! The emulator as the bot's media peer: the bot offers a WebRTC session in its blob (the
//! transport crate), the 201 body carries the emulator's answer, the called party's file
//! reaches the bot, and what the bot sends is recorded to WAV by the emulator.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use appmedia_emulator::EmulatorConfig;
use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_model::{Identity, MediaConfig};
use appmedia_signalling::builders::{Media, PeerToPeerCallBuilder};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_transport::{MediaSession, TransportConfig};
use common::audio::dominant;
use common::*;

const TONY: &str = "0b8a4e1c-0000-4000-8000-000000000004";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_party_is_heard_and_the_bot_is_recorded() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let recordings =
        std::env::temp_dir().join(format!("appmedia-emulator-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&recordings).unwrap();
    let h = Harness::start(EmulatorConfig {
        directory: test_directory("media-party.toml"),
        media_samples_dir: root.join("media-samples"),
        recordings_dir: Some(recordings.clone()),
        ..config()
    })
    .await;

    let session = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    let request = PeerToPeerCallBuilder::new(
        h.callback_uri.clone(),
        Identity::new(TONY).with_display_name("Tony"),
        Media::app_hosted(session.blob()),
    )
    .build()
    .unwrap();
    let client = GraphClient::new(
        GraphClientConfig::for_base_url(h.emulator.graph_url().parse().unwrap()),
        Harness::token_source(&h.emulator, CALLING_BOT, CALLING_BOT_SECRET),
    )
    .unwrap();
    let created = client.create_call(&request).await.unwrap();
    let id = created.call_id().unwrap().to_owned();
    let Some(MediaConfig::AppHosted(config)) = created.call.media_config.value() else {
        panic!("no app-hosted media config in {:?}", created.call);
    };
    let answer = config.blob.value().expect("an answer blob").clone();
    assert_ne!(
        answer,
        session.blob(),
        "the 201 carries the emulator's answer"
    );
    session.accept(&answer).await.unwrap();

    let mut pipeline = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..PipelineConfig::default()
    })
    .unwrap();
    let epoch = Instant::now();
    session.attach_pipeline(&mut pipeline, epoch);
    tokio::time::timeout(Duration::from_secs(15), session.connected())
        .await
        .expect("connected in time")
        .expect("connected");
    let sender = pipeline.bot_sender();
    // The bot says 440 Hz for 2.5 s and keeps what it hears.
    let heard = tokio::task::spawn_blocking(move || {
        let mut heard = Vec::new();
        for k in 0..125u32 {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let mut frame: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
            for (n, out) in frame.iter_mut().enumerate() {
                let t = (k as usize * SAMPLES_PER_FRAME_48K + n) as f32 / 48_000.0;
                *out = 0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
            }
            sender.send_48k(&frame).unwrap();
            pipeline.tick(now);
            heard.extend_from_slice(pipeline.bot_frame_48k());
        }
        heard
    })
    .await
    .unwrap();
    // Tony's tone (2 s from his answer) is what the bot hears in the middle of the call.
    let middle = &heard[48_000 / 2..48_000 * 3 / 2];
    let (freq, ratio) = dominant(middle, &[440.0, 1000.0, 250.0, 2000.0], 48_000.0);
    assert_eq!(freq, 1000.0, "the bot heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "ratio {ratio:.1}");

    client.delete_call(&id).await.unwrap();
    // The recording is finished within a tick or so of the hang-up.
    // The bot alone; `{id}-mixed.wav` is everyone, Tony's 1 kHz included.
    let path = appmedia_emulator::media::bot_recording_path(&recordings, &id);
    assert_eq!(path, recordings.join(format!("{id}-speaker-1.wav")));
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples: Vec<f32> = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(reader) = hound::WavReader::open(&path) {
            let rate = reader.spec().sample_rate;
            let samples: Vec<f32> = reader
                .into_samples::<i16>()
                .map(|s| f32::from(s.unwrap()) / 32768.0)
                .collect();
            if samples.len() as u32 >= rate * 2 {
                assert_eq!(rate, 16_000);
                break samples;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no recording at {}",
            path.display()
        );
    };
    let (freq, ratio) = dominant(&samples[8_000..], &[440.0, 1000.0, 250.0, 2000.0], 16_000.0);
    assert_eq!(
        freq, 440.0,
        "the emulator recorded {freq} Hz (ratio {ratio:.1})"
    );
    assert!(ratio > 10.0, "ratio {ratio:.1}");
    let _ = std::fs::remove_dir_all(&recordings);
}
