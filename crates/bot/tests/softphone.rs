//! A person on the emulator's softphone page calls the bot: the bot's incoming-call flow,
//! rung from a browser.
//!
//! * Over the page's WebSocket, driven from Rust (the "browser" is a transport
//!   `MediaSession` that offers): the page lists the bots it can call, calls the bot's phone
//!   number, the SDK's `IncomingCall` shows John calling, the answered call rings the page,
//!   and the call is established only once the person picks up; media flows; the bot's
//!   hang-up ends the call at the page. The refusals are typed messages.
//! * Hanging up on the page while the bot rings cancels the call (the bot's answer then
//!   fails, typed); a rejected call ends at the page with the reason.
//! * Headless Chromium with a fake microphone (440 Hz) opens
//!   `/softphone?user=John&callbot=<the bot's application id>`: the bot answers through the
//!   SDK, hears 440 Hz, and the browser hears the bot's 1 kHz and not itself. Skipped (with a
//!   message) when /usr/bin/chromium is missing.
//!
//! Every wait is bounded; Chromium is killed on every path (its guard's `Drop`).

mod common;

use std::time::Duration;

use appmedia_bot::{AnswerMedia, Bot, Called, MediaOptions};
use appmedia_emulator::Emulator;
use appmedia_emulator::PageReport;
use appmedia_model::{CallState, RejectReason};
use appmedia_testkit::browser::{SoftphoneBrowser, SoftphonePage, chromium_missing};
use appmedia_transport::{MediaSession, TransportConfig};
use common::*;
use serde_json::json;

/// An emulator whose seed bot rings `bot`.
async fn ringing_bot() -> (Emulator, Bot) {
    let emulator = emulator(echo_directory()).await;
    let bot = bot(&emulator).await;
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .expect("seed bot");
    (emulator, bot)
}

async fn next_incoming(bot: &Bot, limit: Duration) -> appmedia_bot::IncomingCall {
    tokio::time::timeout(limit, bot.next_incoming())
        .await
        .expect("an incoming call in time")
        .expect("the bot runs")
}

/// The user id of whoever calls.
fn caller_user(incoming: &appmedia_bot::IncomingCall) -> Option<String> {
    incoming
        .caller()
        .and_then(|c| c.user.value())
        .and_then(|u| u.id.value())
        .cloned()
}

/// The page's WebSocket, each wait for a message bounded by [`WAIT`].
async fn open_page(emulator: &Emulator) -> SoftphonePage {
    SoftphonePage::open(emulator.base_url(), emulator.softphone_key(), WAIT).await
}

/// Polls until no call is left on either side, within [`WAIT`].
async fn no_call_left(emulator: &Emulator, bot: &Bot) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (emulator.live_calls() > 0 || bot.stats().live_calls > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emulator.live_calls(), 0, "the emulator still has the call");
    assert_eq!(bot.stats().live_calls, 0, "the bot still has the call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_on_the_softphone_page_calls_the_bot_and_picks_up_its_answer() {
    let (emulator, bot) = ringing_bot().await;
    let mut page = open_page(&emulator).await;

    // The page lists the bots it can call: the application, its instance and its number.
    let directory = page.expect("directory").await;
    let app = directory["applications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == CALLING_BOT)
        .cloned()
        .expect("the seed bot is listed");
    assert!(
        app["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == APP_INSTANCE && i["phone"] == BOT_NUMBER),
        "{app:#}"
    );

    // Refusals are typed messages, and the connection stays usable.
    assert_eq!(
        page.refused(json!({"type": "call", "to": BOT_NUMBER}))
            .await,
        "register first"
    );
    page.send(json!({"type": "register", "user": JOHN})).await;
    page.expect("registered").await;
    let unknown = page
        .refused(json!({"type": "call", "to": "no-such-bot"}))
        .await;
    assert!(unknown.contains("no-such-bot"), "{unknown}");

    // John calls the bot's phone number.
    page.send(json!({"type": "call", "to": BOT_NUMBER})).await;
    let calling = page.expect("calling").await;
    let call_id = calling["callId"].as_str().unwrap().to_owned();
    assert_eq!(
        page.refused(json!({"type": "call", "to": BOT_NUMBER}))
            .await,
        "already in a call: hang up first"
    );
    let mut incoming = next_incoming(&bot, WAIT).await;
    assert_eq!(incoming.id(), call_id);
    assert_eq!(caller_user(&incoming).as_deref(), Some(JOHN));
    assert_eq!(
        incoming.called(),
        Called::ApplicationInstance {
            id: APP_INSTANCE.into(),
            phone: Some(BOT_NUMBER.into())
        }
    );
    let mut call = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect("answered");
    let audio = call.audio_socket().expect("app-hosted");

    // The answered call rings the page that placed it; it is not established before the
    // person picks up.
    let rung = page.expect("incoming").await;
    assert_eq!(rung["callId"], call_id.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_ne!(call.state(), Some(CallState::Established));

    let browser = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    page.send(json!({"type": "join", "callId": call_id, "sdp": browser.local_sdp()}))
        .await;
    let joined = page.expect("joined").await;
    browser
        .accept_sdp(joined["sdp"].as_str().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, browser.connected())
        .await
        .expect("the browser's media connects in time")
        .expect("the browser's media connects");
    assert!(
        call.wait_for_state(CallState::Established, WAIT).await
            || call.state() == Some(CallState::Established),
        "the person's pick-up establishes the call"
    );
    let status = emulator
        .softphones()
        .into_iter()
        .find(|s| s.user.as_deref() == Some(JOHN))
        .unwrap();
    assert_eq!(status.call_id.as_deref(), Some(call_id.as_str()));

    // The bot speaks: its audio reaches the browser.
    let rtp = browser.take_endpoint().unwrap();
    let mut n = 0;
    let mut packets = 0;
    for _ in 0..100 {
        if audio.recv().await.is_some() {
            let _ = audio.send(&tone_frame(1000.0, &mut n));
        }
        while rtp.incoming.pop().is_some() {
            packets += 1;
        }
    }
    assert!(packets > 20, "{packets} packets reached the browser");

    // The bot hangs up: the page is told, nothing is left.
    call.hang_up().await.expect("hung up");
    assert_eq!(page.expect("ended").await["callId"], call_id.as_str());
    no_call_left(&emulator, &bot).await;
    assert_eq!(bot.stats().incoming_answered, 1);
    browser.close().await;
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_on_the_page_while_the_bot_rings_cancels_the_call() {
    let (emulator, bot) = ringing_bot().await;
    let mut page = open_page(&emulator).await;
    page.send(json!({"type": "register", "user": JOHN})).await;
    page.expect("registered").await;

    page.send(json!({"type": "call", "to": CALLING_BOT})).await;
    let call_id = page.expect("calling").await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut incoming = next_incoming(&bot, WAIT).await;
    assert_eq!(incoming.called(), Called::Application(CALLING_BOT.into()));
    page.send(json!({"type": "leave"})).await;
    let ended = page.expect("ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    assert_eq!(ended["reason"], "you hung up");
    let deadline = tokio::time::Instant::now() + WAIT;
    while emulator.live_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emulator.live_calls(), 0, "the cancelled call is gone");
    // Too late for the bot: the service refuses the answer, typed.
    let err = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect_err("the caller hung up");
    assert!(err.status().is_some(), "{err:?}");
    drop(incoming);

    // A call the bot rejects ends at the page with the reason.
    page.send(json!({"type": "call", "to": CALLING_BOT})).await;
    let call_id = page.expect("calling").await["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut incoming = next_incoming(&bot, WAIT).await;
    incoming.reject(RejectReason::Busy).await.expect("rejected");
    let ended = page.expect("ended").await;
    assert_eq!(ended["callId"], call_id.as_str());
    assert!(
        ended["reason"].as_str().unwrap().contains("busy"),
        "{ended}"
    );
    // The page may call again.
    page.send(json!({"type": "call", "to": CALLING_BOT})).await;
    page.expect("calling").await;
    let mut incoming = next_incoming(&bot, WAIT).await;
    incoming.reject(RejectReason::None).await.expect("rejected");
    drop(incoming);
    no_call_left(&emulator, &bot).await;
    assert_eq!(bot.stats().incoming_rejected, 2);
    bot.shutdown(None).await;
}

fn report_of(emulator: &Emulator) -> Option<PageReport> {
    emulator
        .softphones()
        .into_iter()
        .find(|s| s.user.as_deref() == Some(JOHN))
        .and_then(|s| s.report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_calls_the_bot_from_the_softphone_page() {
    if chromium_missing("softphone browser test") {
        return;
    }
    let (emulator, bot) = ringing_bot().await;
    let url = format!(
        "{}&user={JOHN}&callbot={CALLING_BOT}",
        emulator.softphone_url()
    );
    let chromium = SoftphoneBrowser::open(&url, 440.0);

    // The page signs in as John and calls the bot by itself (callbot=…).
    let mut incoming = next_incoming(&bot, Duration::from_secs(40)).await;
    assert_eq!(caller_user(&incoming).as_deref(), Some(JOHN));
    assert_eq!(incoming.called(), Called::Application(CALLING_BOT.into()));
    let mut call = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect("answered");
    let audio = call.audio_socket().expect("app-hosted");
    assert!(
        call.wait_for_state(CallState::Established, Duration::from_secs(30))
            .await
            || call.state() == Some(CallState::Established),
        "the page picks up the answered call"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while report_of(&emulator).is_none_or(|r| r.packets_sent < 50) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the browser's media never flowed: {:?}",
            report_of(&emulator)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The bot listens (silent) for 2.5 s: it hears the browser's microphone, and the
    // browser hears nothing (it never hears itself).
    let r0 = report_of(&emulator).unwrap();
    let mut heard = Vec::new();
    for _ in 0..125 {
        if let Some(frame) = audio.recv().await {
            heard.extend(samples(&frame.mixed));
        }
    }
    let r1 = report_of(&emulator).unwrap();
    // The bot speaks 1 kHz for 2.5 s, a frame for each it receives: the browser hears it.
    let mut n = 0;
    for _ in 0..125 {
        if audio.recv().await.is_some() {
            let _ = audio.send(&tone_frame(1000.0, &mut n));
        }
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // the page's next report
    let r2 = report_of(&emulator).unwrap();

    let skip = heard.len().min(16_000 / 2); // the first half second: the jitter buffer settles
    let (freq, ratio) = appmedia_testkit::audio::dominant(
        &heard[skip..],
        &[440.0, 1000.0, 250.0, 2000.0],
        16_000.0,
    );
    let quiet = r1.total_audio_energy - r0.total_audio_energy;
    let loud = r2.total_audio_energy - r1.total_audio_energy;
    eprintln!(
        "softphone → bot: the bot heard {freq} Hz (ratio {ratio:.0}); browser energy {quiet:.5} \
         while the bot was silent, {loud:.5} while it spoke"
    );
    assert_eq!(freq, 440.0, "the bot heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "the browser's tone is not clean: {ratio:.1}");
    assert!(loud > 0.01, "the browser did not hear the bot: {loud}");
    assert!(
        quiet < loud / 10.0,
        "the browser heard something while the bot was silent: {quiet} vs {loud}"
    );

    // The bot hangs up: the page leaves the call.
    call.hang_up().await.expect("hung up");
    let deadline = tokio::time::Instant::now() + WAIT;
    while emulator.softphones().iter().any(|s| s.call_id.is_some()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page is still in the call"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let uncaught = chromium.uncaught();
    assert!(
        uncaught.is_empty(),
        "the page threw: {}",
        uncaught.join("\n")
    );
    drop(chromium);
    no_call_left(&emulator, &bot).await;
    bot.shutdown(None).await;
}
