//! The example bots (`examples/`), each driven against an embedded emulator: a phone rings the
//! bot's number through the control API, scripted like a person (what it says, the keys it
//! presses, when it hangs up), and the test checks what the bot did with real audio.

// Each example is its own crate with its own `mod common;`; included here together, that file
// is loaded once per example.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/echo_bot.rs"]
mod echo_bot;
#[allow(dead_code)]
#[path = "../examples/ivr_bot.rs"]
mod ivr_bot;
#[allow(dead_code)]
#[path = "../examples/recorder_bot.rs"]
mod recorder_bot;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use appmedia::bot::{Bot, BotConfig};
use appmedia_emulator::directory::{KeyPresses, Sound};
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_testkit::audio::{dominant, level_dbfs, read_wav};
use tokio::sync::mpsc;

const BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SECRET: &str = "calling-bot-secret";
const CALLER: &str = "+12345678901";
const BOT_NUMBER: &str = "+14255550100";
const WAIT: Duration = Duration::from_secs(30);

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media-samples")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("appmedia-examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The seed directory whose caller says `speak`, presses `keys` after 1.5 s (if any) and hangs
/// up after `hang_up_ms`.
fn directory(speak: &str, keys: Option<&str>, hang_up_ms: Option<u64>) -> Directory {
    let mut directory = Directory::seed();
    for phone in &mut directory.phones {
        if phone.number == CALLER {
            phone.behaviour.media = Sound::Speak(speak.into());
            phone.behaviour.press = keys.map(|k| KeyPresses {
                after_ms: 1500,
                keys: k.into(),
            });
            phone.behaviour.hang_up_after_ms = hang_up_ms;
        }
    }
    directory
}

async fn start(directory: Directory, recordings: Option<PathBuf>) -> (Emulator, Arc<Bot>) {
    let emulator = Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: samples_dir(),
        recordings_dir: recordings,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let mut config = BotConfig::for_emulator(&emulator, BOT, SECRET).unwrap();
    config.media.workers = 1;
    let bot = Arc::new(Bot::start(config).await.unwrap());
    emulator
        .set_calling_webhook(BOT, bot.callback_uri())
        .unwrap();
    (emulator, bot)
}

async fn ring(emulator: &Emulator) -> String {
    appmedia::signalling::install_crypto_provider();
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/incoming-calls", emulator.control_url()))
        .json(&serde_json::json!({"from": CALLER, "to": BOT_NUMBER}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["callId"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

async fn until_no_calls(emulator: &Emulator, bot: &Bot) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (emulator.live_calls() > 0 || bot.stats().live_calls > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bot.stats().live_calls, 0, "the bot still has calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_sends_the_caller_back_what_they_said() {
    let recordings = temp_dir("echo");
    let (emulator, bot) = start(
        directory("tone-440hz-48k.wav", None, Some(3000)),
        Some(recordings.clone()),
    )
    .await;
    let serving = tokio::spawn({
        let bot = bot.clone();
        async move { echo_bot::run(&bot).await }
    });
    let call_id = ring(&emulator).await;
    until_no_calls(&emulator, &bot).await;
    // What the bot sent, as the emulator heard it: the caller's 440 Hz, echoed.
    let path = appmedia_emulator::bot_recording_path(&recordings, &call_id);
    let (rate, sent) = read_wav(&path);
    let (freq, ratio) = dominant(&sent, &[440.0, 1000.0], rate as f32);
    assert_eq!(freq, 440.0, "ratio {ratio}");
    assert!(level_dbfs(&sent) > -30.0, "{} dBFS", level_dbfs(&sent));
    serving.abort();
    let _ = std::fs::remove_dir_all(&recordings);
}

async fn ivr_call(keys: &str, messages: PathBuf) -> (ivr_bot::IvrOutcome, Emulator, Arc<Bot>) {
    let (emulator, bot) = start(directory("jane-speech.wav", Some(keys), Some(9000)), None).await;
    let ivr = Arc::new(ivr_bot::Ivr {
        menu: samples_dir().join("ivr-menu.wav"),
        messages,
        message_length: Duration::from_secs(2),
        ..ivr_bot::Ivr::default()
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let serving = tokio::spawn({
        let bot = bot.clone();
        async move { ivr_bot::run(&bot, ivr, Some(tx)).await }
    });
    let call_id = ring(&emulator).await;
    let (id, outcome) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an outcome in time")
        .expect("the IVR runs");
    assert_eq!(id, call_id);
    serving.abort();
    (outcome, emulator, bot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_records_a_message_on_key_2() {
    let messages = temp_dir("ivr-messages");
    let (outcome, emulator, bot) = ivr_call("2", messages.clone()).await;
    let ivr_bot::IvrOutcome::MessageRecorded(path) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(path.starts_with(&messages));
    let (rate, message) = read_wav(&path);
    let seconds = message.len() as f64 / f64::from(rate);
    assert!((1.5..=2.5).contains(&seconds), "{seconds} s");
    assert!(
        level_dbfs(&message) > -40.0,
        "the caller's speech: {} dBFS",
        level_dbfs(&message)
    );
    until_no_calls(&emulator, &bot).await;
    let _ = std::fs::remove_dir_all(&messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_hangs_up_on_key_9() {
    let (outcome, emulator, bot) = ivr_call("9", temp_dir("ivr-9")).await;
    assert_eq!(outcome, ivr_bot::IvrOutcome::HungUp);
    until_no_calls(&emulator, &bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_transfers_to_the_agent_on_key_1() {
    let (outcome, emulator, bot) = ivr_call("1", temp_dir("ivr-1")).await;
    assert_eq!(outcome, ivr_bot::IvrOutcome::Transferred);
    assert_eq!(bot.stats().live_calls, 0, "the bot left the call");
    drop(emulator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_bot_writes_the_mix_and_each_speaker_until_the_caller_hangs_up() {
    let dir = temp_dir("recorder");
    let (emulator, bot) = start(directory("jane-speech.wav", None, Some(4000)), None).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let serving = tokio::spawn({
        let (bot, dir) = (bot.clone(), dir.clone());
        async move { recorder_bot::run(&bot, Some(dir), Some(tx)).await }
    });
    let call_id = ring(&emulator).await;
    let (id, end) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the call ends in time")
        .expect("the recorder runs");
    assert_eq!(id, call_id);
    let end = end.expect("recorded");
    let recording = end.recording.expect("a recording");
    assert!(
        recording.tracks.len() >= 2,
        "mix + the caller: {:?}",
        recording.tracks
    );
    for track in &recording.tracks {
        assert!(track.path.starts_with(&dir));
        let (rate, samples) = read_wav(&track.path);
        assert!(
            samples.len() as u32 > rate,
            "{}: over a second",
            track.path.display()
        );
        assert!(
            level_dbfs(&samples) > -45.0,
            "{}: speech",
            track.path.display()
        );
    }
    serving.abort();
    until_no_calls(&emulator, &bot).await;
    let _ = std::fs::remove_dir_all(&dir);
}
