//! The example bots (`examples/`), each driven against an embedded emulator: a phone rings the
//! bot's number through the control API, scripted like a person (what it says, the keys it
//! presses, when it hangs up), and the test checks what the bot did with real audio. Each
//! example runs twice, unchanged: on the emulator's Graph API (WebRTC media) and on its ACS
//! Call Automation API (audio streaming) — only the bot's configuration differs.

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

/// The calling service the example bot runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// The emulator's Graph API: the bot's WebRTC media.
    Graph,
    /// The emulator's ACS Call Automation API: audio streaming over a WebSocket.
    Acs,
}

/// The example's configuration for `backend` — the only thing that differs.
fn config(emulator: &Emulator, backend: Backend) -> BotConfig {
    let mut config = match backend {
        Backend::Graph => BotConfig::for_emulator(emulator, BOT, SECRET).unwrap(),
        Backend::Acs => BotConfig::for_emulator_acs(emulator).unwrap(),
    };
    config.media.workers = 1;
    config
}

async fn start(
    directory: Directory,
    recordings: Option<PathBuf>,
    backend: Backend,
) -> (Emulator, Arc<Bot>) {
    let emulator = Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: samples_dir(),
        recordings_dir: recordings,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let bot = Arc::new(Bot::start(config(&emulator, backend)).await.unwrap());
    match backend {
        Backend::Graph => emulator
            .set_calling_webhook(BOT, bot.callback_uri())
            .unwrap(),
        // The bot's Event Grid subscription, validated as Event Grid does.
        Backend::Acs => {
            control(
                &emulator,
                "/acs/event-subscriptions",
                serde_json::json!({"endpoint": bot.callback_uri()}),
            )
            .await;
        }
    }
    (emulator, bot)
}

async fn control(emulator: &Emulator, path: &str, body: serde_json::Value) -> serde_json::Value {
    appmedia::signalling::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(format!("{}{path}", emulator.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_default()
}

/// The caller rings the bot's number; on Graph, the call's id (the bot's call id too; on ACS
/// the bot's call connection id is made when it answers).
async fn ring(emulator: &Emulator, backend: Backend) -> Option<String> {
    let to = match backend {
        Backend::Graph => BOT_NUMBER.to_owned(),
        Backend::Acs => emulator.acs().phone_number.clone(),
    };
    let answer = control(
        emulator,
        "/incoming-calls",
        serde_json::json!({"from": CALLER, "to": to}),
    )
    .await;
    match backend {
        Backend::Graph => Some(
            answer["callId"]
                .as_str()
                .unwrap_or_else(|| panic!("{answer}"))
                .to_owned(),
        ),
        Backend::Acs => {
            // A ringing ACS call is not a call connection yet: wait for the bot's answer, so
            // that "no calls left" means the call ended, not that it has not started.
            let deadline = tokio::time::Instant::now() + WAIT;
            while emulator.acs_calls().is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(!emulator.acs_calls().is_empty(), "the bot answered");
            None
        }
    }
}

/// What the emulator recorded of the bot (`{call id}-speaker-1.wav`), the call's only one.
fn bot_recording(dir: &std::path::Path) -> PathBuf {
    // `{call id}-speaker-N.wav`, whatever N the emulator gives the bot.
    let suffix = appmedia_emulator::bot_recording_path(dir, "")
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let find = || -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(&suffix))
            .collect()
    };
    // The recorder finishes its files a moment after the call ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut found = find();
    while found.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        found = find();
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

async fn until_no_calls(emulator: &Emulator, bot: &Bot) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (emulator.live_calls() > 0
        || !emulator.acs_calls().is_empty()
        || bot.stats().live_calls > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bot.stats().live_calls, 0, "the bot still has calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_sends_the_caller_back_what_they_said() {
    echo_bot_test(Backend::Graph).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_on_acs_sends_the_caller_back_what_they_said() {
    echo_bot_test(Backend::Acs).await;
}

async fn echo_bot_test(backend: Backend) {
    let recordings = temp_dir(&format!("echo-{backend:?}"));
    let (emulator, bot) = start(
        directory("tone-440hz-48k.wav", None, Some(3000)),
        Some(recordings.clone()),
        backend,
    )
    .await;
    let serving = tokio::spawn({
        let bot = bot.clone();
        async move { echo_bot::run(&bot).await }
    });
    let call_id = ring(&emulator, backend).await;
    until_no_calls(&emulator, &bot).await;
    // What the bot sent, as the emulator heard it: the caller's 440 Hz, echoed.
    let path = bot_recording(&recordings);
    if let Some(call_id) = call_id {
        assert_eq!(
            path,
            appmedia_emulator::bot_recording_path(&recordings, &call_id)
        );
    }
    emulator.shutdown().await;
    let (rate, sent) = read_wav(&path);
    let (freq, ratio) = dominant(&sent, &[440.0, 1000.0], rate as f32);
    assert_eq!(freq, 440.0, "ratio {ratio}");
    assert!(level_dbfs(&sent) > -30.0, "{} dBFS", level_dbfs(&sent));
    serving.abort();
    let _ = std::fs::remove_dir_all(&recordings);
}

async fn ivr_call(
    keys: &str,
    messages: PathBuf,
    backend: Backend,
) -> (ivr_bot::IvrOutcome, Emulator, Arc<Bot>) {
    let (emulator, bot) = start(
        directory("jane-speech.wav", Some(keys), Some(9000)),
        None,
        backend,
    )
    .await;
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
    let call_id = ring(&emulator, backend).await;
    let (id, outcome) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an outcome in time")
        .expect("the IVR runs");
    if let Some(call_id) = call_id {
        assert_eq!(id, call_id);
    }
    serving.abort();
    (outcome, emulator, bot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_records_a_message_on_key_2() {
    ivr_records_a_message(Backend::Graph).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_on_acs_records_a_message_on_key_2() {
    ivr_records_a_message(Backend::Acs).await;
}

async fn ivr_records_a_message(backend: Backend) {
    let messages = temp_dir(&format!("ivr-messages-{backend:?}"));
    let (outcome, emulator, bot) = ivr_call("2", messages.clone(), backend).await;
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
    for backend in [Backend::Graph, Backend::Acs] {
        let (outcome, emulator, bot) =
            ivr_call("9", temp_dir(&format!("ivr-9-{backend:?}")), backend).await;
        assert_eq!(outcome, ivr_bot::IvrOutcome::HungUp, "{backend:?}");
        until_no_calls(&emulator, &bot).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_bot_transfers_to_the_agent_on_key_1() {
    for backend in [Backend::Graph, Backend::Acs] {
        let (outcome, emulator, bot) =
            ivr_call("1", temp_dir(&format!("ivr-1-{backend:?}")), backend).await;
        assert_eq!(outcome, ivr_bot::IvrOutcome::Transferred, "{backend:?}");
        assert_eq!(
            bot.stats().live_calls,
            0,
            "{backend:?}: the bot left the call"
        );
        drop(emulator);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_bot_writes_the_mix_and_each_speaker_until_the_caller_hangs_up() {
    recorder_test(Backend::Graph).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_bot_on_acs_writes_the_mix_and_each_speaker_until_the_caller_hangs_up() {
    recorder_test(Backend::Acs).await;
}

async fn recorder_test(backend: Backend) {
    let dir = temp_dir(&format!("recorder-{backend:?}"));
    let (emulator, bot) = start(
        directory("jane-speech.wav", None, Some(4000)),
        None,
        backend,
    )
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let serving = tokio::spawn({
        let (bot, dir) = (bot.clone(), dir.clone());
        async move { recorder_bot::run(&bot, Some(dir), Some(tx)).await }
    });
    let call_id = ring(&emulator, backend).await;
    let (id, end) = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the call ends in time")
        .expect("the recorder runs");
    if let Some(call_id) = call_id {
        assert_eq!(id, call_id);
    }
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
