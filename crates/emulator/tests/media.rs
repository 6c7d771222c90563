//! The emulator as the bot's media peer: the bot offers a WebRTC session in its blob (the
//! transport crate), the 201 body carries the emulator's answer, the called party's file
//! reaches the bot, and what the bot sends is recorded to WAV by the emulator.

mod common;

use appmedia_emulator::EmulatorConfig;
use appmedia_model::Identity;
use appmedia_signalling::builders::{Media, PeerToPeerCallBuilder};
use common::audio::dominant;
use common::bot::{BotCall, WAIT, scratch_dir, tone_frame, wait_for_wav};
use common::*;

const TONY: &str = "0b8a4e1c-0000-4000-8000-000000000004";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_party_is_heard_and_the_bot_is_recorded() {
    let recordings = scratch_dir();
    let h = Harness::start(EmulatorConfig {
        directory: test_directory("media-party.toml"),
        recordings_dir: Some(recordings.clone()),
        ..config()
    })
    .await;
    let callback = h.callback_uri.clone();
    // BotCall::start checks that the 201 carries the emulator's answer, not the offer.
    let mut bot = BotCall::start(&h, true, move |blob| {
        PeerToPeerCallBuilder::new(
            callback,
            Identity::new(TONY).with_display_name("Tony"),
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    })
    .await;
    // The bot says 440 Hz for 2.5 s and keeps what it hears.
    let heard = bot.run(125, |k| Some(tone_frame(440.0, 0.5, k))).await;
    // Tony's tone (2 s from his answer) is what the bot hears in the middle of the call.
    let (freq, ratio) = dominant(
        heard.window(0.5, 1.5),
        &[440.0, 1000.0, 250.0, 2000.0],
        48_000.0,
    );
    assert_eq!(freq, 1000.0, "the bot heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "ratio {ratio:.1}");

    bot.client.delete_call(&bot.id).await.unwrap();
    // The recording is finished within a tick or so of the hang-up.
    // The bot alone; `{id}-mixed.wav` is everyone, Tony's 1 kHz included.
    let path = appmedia_emulator::bot_recording_path(&recordings, &bot.id);
    assert_eq!(path, recordings.join(format!("{}-speaker-1.wav", bot.id)));
    let (rate, samples) = wait_for_wav(&path, 2.0).await;
    assert_eq!(rate, 16_000);
    let (freq, ratio) = dominant(&samples[8_000..], &[440.0, 1000.0, 250.0, 2000.0], 16_000.0);
    assert_eq!(
        freq, 440.0,
        "the emulator recorded {freq} Hz (ratio {ratio:.1})"
    );
    assert!(ratio > 10.0, "ratio {ratio:.1}");
    let _ = std::fs::remove_dir_all(&recordings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_whose_media_never_connects_loses_the_call_with_a_client_media_error() {
    let mut config = config();
    config.directory = test_directory("media-party.toml");
    config.transport.connect_timeout = std::time::Duration::from_millis(1500);
    let h = Harness::start(config).await;
    // The bot offers, the service answers, and the bot never takes the answer: no ICE, no
    // DTLS — what a bot that died right after its create looks like.
    let session = appmedia_transport::MediaSession::offer(Default::default())
        .await
        .unwrap();
    let request = PeerToPeerCallBuilder::new(
        h.callback_uri.clone(),
        Identity::new(TONY).with_display_name("Tony"),
        Media::app_hosted(session.blob()),
    )
    .build()
    .unwrap();
    let created = common::bot::graph_client(&h)
        .create_call(&request)
        .await
        .unwrap();
    let id = created.call_id().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    let terminated = loop {
        let found = h.received.all().into_iter().find(|batch| {
            describe(batch) == "state:terminated"
                && batch["value"][0]["resourceUrl"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&id))
        });
        if let Some(batch) = found {
            break batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no terminated: {:?}",
            h.received.all().iter().map(describe).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let info = &terminated["value"][0]["resourceData"]["resultInfo"];
    assert_eq!(
        (info["code"].as_i64(), info["subcode"].as_i64()),
        (Some(410), Some(301005))
    );
    drop(session);
}
