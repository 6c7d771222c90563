//! The web softphone: a person joins an emulated call from a browser.
//!
//! * The page is served, self-contained.
//! * The WebSocket protocol, driven from Rust (the "browser" is a transport `MediaSession`
//!   that offers): register, ring, join, the roster the bot receives, mute, leave, and the
//!   refusals.
//! * Headless Chromium with a fake microphone (a 440 Hz WAV made here) opens
//!   `/softphone?user=John&autojoin=1` and answers the bot's call: the bot hears 440 Hz, the
//!   browser hears the bot's tone and not itself, the roster lists the person with their
//!   source id, and closing the browser removes them. Skipped (with a message) when
//!   /usr/bin/chromium is missing.
//!
//! Every wait is bounded; Chromium is killed on every path (its guard's `Drop`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use appmedia_emulator::{PageReport, SoftphoneStatus};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_model::{Identity, MediaConfig};
use appmedia_signalling::builders::{Media, PeerToPeerCallBuilder};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_testkit::browser::{SoftphoneBrowser, SoftphonePage, chromium_missing};
use appmedia_transport::{MediaSession, TransportConfig};
use common::*;
use serde_json::{Value, json};

/// Waits (polling) until `f` gives a value, at most `limit`; panics with `what` otherwise.
async fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bot's side of an app-hosted P2P call to `user`: its media session (connected to the
/// emulator) and the call id.
struct BotCall {
    session: MediaSession,
    client: GraphClient,
    id: String,
}

impl BotCall {
    async fn start(h: &Harness, user: &str, pipeline: &mut CallPipeline, epoch: Instant) -> Self {
        let session = MediaSession::offer(TransportConfig::default())
            .await
            .unwrap();
        let request = PeerToPeerCallBuilder::new(
            h.callback_uri.clone(),
            Identity::new(user).with_display_name("John"),
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
        session
            .accept(config.blob.value().expect("an answer blob"))
            .await
            .unwrap();
        session.attach_pipeline(pipeline, epoch);
        tokio::time::timeout(Duration::from_secs(15), session.connected())
            .await
            .expect("the bot's media connects in time")
            .expect("the bot's media connects");
        BotCall {
            session,
            client,
            id,
        }
    }
}

fn bot_pipeline() -> CallPipeline {
    CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..PipelineConfig::default()
    })
    .unwrap()
}

/// The roster entries of the full-roster notifications of call `id`, in order.
fn rosters(received: &Received, id: &str) -> Vec<Vec<Value>> {
    received
        .all()
        .iter()
        .filter(|b| {
            let n = &b["value"][0];
            n["resourceUrl"]
                .as_str()
                .is_some_and(|u| u.contains(id) && u.ends_with("/participants"))
        })
        .map(|b| {
            b["value"][0]["resourceData"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// Polls the participants the service lists for call `id` (a peer-to-peer call's bot gets no
/// roster notifications) until `f` finds what it looks for, at most `limit`.
async fn listed_within<T>(
    h: &Harness,
    id: &str,
    limit: Duration,
    what: &str,
    f: impl Fn(&[Value]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let (status, body) = h
            .get(&format!("/communications/calls/{id}/participants"))
            .await;
        if status == 200
            && let Some(found) = body["value"].as_array().and_then(|r| f(r))
        {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The entry of `user` in a roster: (participant id, sourceId, isMuted).
fn entry_of(roster: &[Value], user: &str) -> Option<(String, String, bool)> {
    roster
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == user)
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_owned(),
                p["mediaStreams"][0]["sourceId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                p["isMuted"].as_bool().unwrap_or(false),
            )
        })
}

fn terminated(received: &Received, id: &str) -> Option<Value> {
    received.all().into_iter().find(|b| {
        let n = &b["value"][0];
        n["resourceUrl"].as_str().is_some_and(|u| u.ends_with(id))
            && n["resourceData"]["state"] == "terminated"
    })
}

#[tokio::test]
async fn the_page_is_served_self_contained() {
    let h = Harness::start(config()).await;
    let response = h
        .http
        .get(format!("{}/softphone", h.emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("/softphone/ws"));
    // No network: nothing is loaded from another origin.
    for external in ["src=\"http", "href=\"http", "//cdn", "@import"] {
        assert!(!html.contains(external), "the page loads {external}");
    }
}

/// The page's WebSocket, each wait for a message bounded by 10 s.
async fn open_page(h: &Harness) -> SoftphonePage {
    SoftphonePage::open(
        h.emulator.base_url(),
        h.emulator.softphone_key(),
        Duration::from_secs(10),
    )
    .await
}

#[tokio::test]
async fn the_websocket_needs_this_runs_key_and_the_emulators_own_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let h = Harness::start(config()).await;
    let ws = h.emulator.base_url().replacen("http", "ws", 1);
    let key = h.emulator.softphone_key().to_owned();
    let host = h
        .emulator
        .base_url()
        .trim_start_matches("http://")
        .to_owned();
    let status = |url: String, origin: Option<String>| async move {
        let mut request = url.into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .expect("answered in time")
        {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(e) => panic!("{e}"),
        }
    };
    // Any web page the developer visits could open these: refused.
    assert_eq!(status(format!("{ws}/softphone/ws"), None).await, 403);
    assert_eq!(
        status(format!("{ws}/softphone/ws?key=guess"), None).await,
        403
    );
    assert_eq!(
        status(
            format!("{ws}/softphone/ws?key={key}"),
            Some("https://evil.example".into())
        )
        .await,
        403,
        "the right key from another site's page"
    );
    // The page the emulator printed, from its own origin, and a tool without an Origin.
    assert_eq!(
        status(
            format!("{ws}/softphone/ws?key={key}"),
            Some(format!("http://{host}"))
        )
        .await,
        101
    );
    assert_eq!(
        status(format!("{ws}/softphone/ws?key={key}"), None).await,
        101
    );
    assert!(
        h.emulator
            .softphone_url()
            .ends_with(&format!("/softphone?key={key}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_answers_mutes_and_leaves_over_the_websocket() {
    let h = Harness::start(config()).await;
    let mut page = open_page(&h).await;
    let directory = page.expect("directory").await;
    assert!(
        directory["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == JOHN && u["displayName"] == "John")
    );
    assert_eq!(directory["meetings"][0]["joinMeetingId"], "1234567");

    // Refusals are typed messages, and the connection stays usable.
    page.send(json!({"type": "register", "user": "nobody"}))
        .await;
    assert!(
        page.expect("error").await["message"]
            .as_str()
            .unwrap()
            .contains("nobody")
    );
    page.send(json!({"type": "dance"})).await;
    assert!(
        page.expect("error").await["message"]
            .as_str()
            .unwrap()
            .contains("bad message")
    );
    page.send(json!({"type": "join", "callId": "x", "sdp": "v=0"}))
        .await;
    assert_eq!(page.expect("error").await["message"], "register first");
    page.send(json!({"type": "register", "user": JOHN, "meeting": "999"}))
        .await;
    assert!(
        page.expect("error").await["message"]
            .as_str()
            .unwrap()
            .contains("999")
    );

    page.send(json!({"type": "register", "user": JOHN})).await;
    let registered = page.expect("registered").await;
    assert_eq!(registered["user"]["displayName"], "John");
    page.send(json!({"type": "join", "callId": "no-such-call", "sdp": "v=0"}))
        .await;
    assert!(
        page.expect("error").await["message"]
            .as_str()
            .unwrap()
            .contains("not live")
    );

    // The bot calls John: the page rings (John's script would answer after 300 ms; the
    // person takes longer, and the call waits for them).
    let mut pipeline = bot_pipeline();
    let bot = BotCall::start(&h, JOHN, &mut pipeline, Instant::now()).await;
    let incoming = page.expect("incoming").await;
    assert_eq!(incoming["callId"], bot.id.as_str());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, listed) = h
        .get(&format!("/communications/calls/{}/participants", bot.id))
        .await;
    assert_eq!(listed["value"], json!([]), "nobody answered for the person");

    // The "browser": a media session that offers, as the page's RTCPeerConnection does.
    let browser = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    page.send(json!({"type": "join", "callId": bot.id, "sdp": "not sdp"}))
        .await;
    assert!(
        page.expect("error").await["message"]
            .as_str()
            .unwrap()
            .contains("offer")
    );
    page.send(json!({"type": "join", "callId": bot.id, "sdp": browser.local_sdp()}))
        .await;
    let joined = page.expect("joined").await;
    browser
        .accept_sdp(joined["sdp"].as_str().unwrap())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(15), browser.connected())
        .await
        .expect("the browser's media connects in time")
        .expect("the browser's media connects");
    let source_id = joined["sourceId"].as_u64().unwrap();
    let participant_id = joined["participantId"].as_str().unwrap().to_owned();

    // The call's roster lists the person, with the source id the page was given.
    let roster = listed_within(
        &h,
        &bot.id,
        Duration::from_secs(10),
        "John in the roster",
        |r| entry_of(r, JOHN),
    )
    .await;
    assert_eq!(
        roster,
        (participant_id.clone(), source_id.to_string(), false)
    );
    let page_roster = page.expect("roster").await;
    assert!(
        page_roster["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["participantId"] == participant_id.as_str() && p["sourceId"] == source_id)
    );
    let status: Vec<SoftphoneStatus> = h.emulator.softphones();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].call_id.as_deref(), Some(bot.id.as_str()));
    assert_eq!(status[0].source_id, Some(source_id as u32));

    // Media flows to the browser: the conference sends it what it hears every 20 ms.
    let rtp = browser.take_endpoint().unwrap();
    let packets = within(Duration::from_secs(5), "packets to the browser", || {
        let mut n = 0;
        while rtp.incoming.pop().is_some() {
            n += 1;
        }
        (n > 0).then_some(n)
    })
    .await;
    assert!(packets > 0);

    // Mute, unmute: the roster follows.
    page.send(json!({"type": "mute", "muted": true})).await;
    listed_within(&h, &bot.id, Duration::from_secs(10), "John muted", |r| {
        entry_of(r, JOHN).filter(|e| e.2)
    })
    .await;
    page.send(json!({"type": "stats", "packetsReceived": 7, "totalAudioEnergy": 0.5}))
        .await;
    within(Duration::from_secs(5), "the page's report", || {
        h.emulator
            .softphones()
            .first()
            .and_then(|s| s.report)
            .filter(|r| r.packets_received == 7)
    })
    .await;
    // A report is answered with who speaks (nobody: the bot and the "browser" are silent).
    let speaking = page.expect("speaking").await;
    assert_eq!(speaking["callId"], bot.id.as_str());
    assert_eq!(speaking["sourceIds"], json!([]));

    // Hang up: the person leaves the roster; John was the only called party, so the P2P
    // call ends, as when the far end hangs up.
    page.send(json!({"type": "leave"})).await;
    assert_eq!(page.expect("ended").await["callId"], bot.id.as_str());
    within(Duration::from_secs(10), "the call terminated", || {
        terminated(&h.received, &bot.id)
    })
    .await;
    assert_eq!(h.emulator.softphones()[0].call_id, None);
    drop(bot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_joins_the_meeting_the_bot_is_in() {
    // Example 7 joins as Fabrikam (its tenantId), with a token for Fabrikam.
    let h = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let mut page = open_page(&h).await;
    page.send(json!({"type": "register", "user": "98da8a1a-1b87-452c-a713-65d3f10b5555", "meeting": "1234567"}))
        .await;
    page.expect("registered").await;

    let session = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    let mut request = h.seed_request("example07-request.json");
    request["mediaConfig"] = json!({
        "@odata.type": "#microsoft.graph.appHostedMediaConfig",
        "blob": session.blob(),
    });
    let (status, _, body) = h.post_call(&request).await;
    assert_eq!(status, 201, "{body:#}");
    let id = body["id"].as_str().unwrap().to_owned();
    let incoming = page.expect("incoming").await;
    assert_eq!(incoming["callId"], id.as_str());
    let browser = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    page.send(json!({"type": "join", "callId": id, "sdp": browser.local_sdp()}))
        .await;
    let joined = page.expect("joined").await;
    let source_id = joined["sourceId"].as_u64().unwrap().to_string();
    let entry = within(
        Duration::from_secs(10),
        "user1 in the meeting roster",
        || {
            rosters(&h.received, &id)
                .into_iter()
                .find_map(|r| entry_of(&r, "98da8a1a-1b87-452c-a713-65d3f10b5555"))
        },
    )
    .await;
    assert_eq!(entry.1, source_id);
    // Closing the page is leaving; the meeting goes on.
    drop(page);
    within(Duration::from_secs(10), "user1 out of the roster", || {
        rosters(&h.received, &id)
            .last()
            .filter(|r| entry_of(r, "98da8a1a-1b87-452c-a713-65d3f10b5555").is_none())
            .map(|_| ())
    })
    .await;
    assert!(terminated(&h.received, &id).is_none());

    // John is in the meeting (the script's, muted): a page signed in as John takes his
    // place — one roster update removes the simulated John and adds the person.
    let before = within(Duration::from_secs(5), "the script's John", || {
        rosters(&h.received, &id)
            .last()
            .and_then(|r| entry_of(r, JOHN))
    })
    .await;
    let mut john = open_page(&h).await;
    john.send(json!({"type": "register", "user": JOHN})).await;
    john.expect("registered").await;
    let browser = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    john.send(json!({"type": "join", "callId": id, "sdp": browser.local_sdp()}))
        .await;
    let joined = john.expect("joined").await;
    assert_ne!(joined["participantId"], before.0.as_str());
    let after = within(Duration::from_secs(10), "the person as John", || {
        rosters(&h.received, &id)
            .last()
            .and_then(|r| entry_of(r, JOHN))
            .filter(|e| e.0 != before.0)
    })
    .await;
    assert_eq!(after.0, joined["participantId"].as_str().unwrap());
    assert_eq!(after.1, joined["sourceId"].as_u64().unwrap().to_string());
    assert!(!after.2, "the person joins unmuted");
    let john_entries = rosters(&h.received, &id)
        .last()
        .unwrap()
        .iter()
        .filter(|p| p["info"]["identity"]["user"]["id"] == JOHN)
        .count();
    assert_eq!(john_entries, 1, "one John in the roster");

    // The bot hangs up: the page is told, and is in no call any more.
    assert_eq!(h.delete(&format!("/communications/calls/{id}")).await, 204);
    assert_eq!(john.expect("ended").await["callId"], id.as_str());
    within(Duration::from_secs(5), "the page out of the call", || {
        h.emulator
            .softphones()
            .iter()
            .all(|s| s.call_id.is_none())
            .then_some(())
    })
    .await;
}

/// What the bot does with its voice: nothing yet, silence while listening, a tone, stop.
const WARM_UP: u8 = 0;
const LISTEN: u8 = 1;
const SPEAK: u8 = 2;
const STOP: u8 = 3;

fn report_of(h: &Harness) -> Option<PageReport> {
    h.emulator
        .softphones()
        .into_iter()
        .find(|s| s.user.as_deref() == Some(JOHN))
        .and_then(|s| s.report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_the_bot_from_the_softphone_page() {
    if chromium_missing("softphone browser test") {
        return;
    }
    let h = Harness::start(config()).await;
    let url = format!("{}&user={JOHN}&autojoin=1", h.emulator.softphone_url());
    let chromium = SoftphoneBrowser::open(&url, 440.0);

    // The page signs in as John (it asks for the microphone first).
    within(
        Duration::from_secs(30),
        "the page to register as John",
        || {
            h.emulator
                .softphones()
                .into_iter()
                .any(|s| s.user.as_deref() == Some(JOHN))
                .then_some(())
        },
    )
    .await;

    // The bot calls John; the page rings and answers by itself (autojoin=1).
    let epoch = Instant::now();
    let mut pipeline = bot_pipeline();
    let bot = BotCall::start(&h, JOHN, &mut pipeline, epoch).await;
    let sender = pipeline.bot_sender();
    let phase = Arc::new(AtomicU8::new(WARM_UP));
    let bot_phase = phase.clone();
    // The bot's media thread: real-time ticks; silence, then 1 kHz at 0.3 when told; keeps
    // what it hears while listening.
    let media = tokio::task::spawn_blocking(move || {
        let mut heard = Vec::new();
        for k in 0..(90 * 50u32) {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let phase = bot_phase.load(Ordering::Relaxed);
            if phase == STOP {
                break;
            }
            let mut frame: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
            if phase == SPEAK {
                for (n, out) in frame.iter_mut().enumerate() {
                    let t = (k as usize * SAMPLES_PER_FRAME_48K + n) as f32 / 48_000.0;
                    *out = 0.3 * (std::f32::consts::TAU * 1000.0 * t).sin();
                }
            }
            let _ = sender.send_48k(&frame);
            pipeline.tick(now);
            if phase == LISTEN {
                heard.extend_from_slice(pipeline.bot_frame_48k());
            }
        }
        heard
    });
    // Whatever fails below, the media thread must stop: it owns a real-time loop.
    struct StopOnDrop(Arc<AtomicU8>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(STOP, Ordering::Relaxed);
        }
    }
    let _stop = StopOnDrop(phase.clone());

    let status = within(Duration::from_secs(30), "the page to join the call", || {
        h.emulator
            .softphones()
            .into_iter()
            .find(|s| s.call_id.as_deref() == Some(bot.id.as_str()))
    })
    .await;
    let source_id = status.source_id.unwrap().to_string();
    let entry = listed_within(
        &h,
        &bot.id,
        Duration::from_secs(10),
        "John in the roster",
        |r| entry_of(r, JOHN),
    )
    .await;
    assert_eq!(entry.1, source_id, "the roster's sourceId is the person's");
    assert_eq!(Some(entry.0), status.participant_id);
    // The browser's media is up and reporting.
    within(
        Duration::from_secs(30),
        "the browser to receive audio",
        || report_of(&h).filter(|r| r.packets_received > 50),
    )
    .await;

    // The bot listens (silent) for 2.5 s: it hears the browser's microphone, and the browser
    // hears nothing (only the bot is in the call with it, and it never hears itself).
    phase.store(LISTEN, Ordering::Relaxed);
    let r0 = report_of(&h).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r1 = report_of(&h).unwrap();
    // The bot speaks for 2.5 s: the browser hears it.
    phase.store(SPEAK, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r2 = report_of(&h).unwrap();
    phase.store(STOP, Ordering::Relaxed);
    let heard = tokio::time::timeout(Duration::from_secs(5), media)
        .await
        .expect("the bot's media thread stops")
        .unwrap();

    let quiet = r1.total_audio_energy - r0.total_audio_energy;
    let loud = r2.total_audio_energy - r1.total_audio_energy;
    let skip = heard.len().min(48_000 / 2); // the first half second: the jitter buffer settles
    let (freq, ratio) = audio::dominant(&heard[skip..], &[440.0, 1000.0, 250.0, 2000.0], 48_000.0);
    eprintln!(
        "softphone: bot heard {freq} Hz (ratio {ratio:.0}) from the browser; browser energy \
         {quiet:.5} while the bot was silent, {loud:.5} while it spoke; reports {r0:?} {r2:?}"
    );
    assert_eq!(freq, 440.0, "the bot heard {freq} Hz (ratio {ratio:.1})");
    assert!(ratio > 10.0, "the browser's tone is not clean: {ratio:.1}");
    assert!(loud > 0.01, "the browser did not hear the bot: {loud}");
    assert!(
        quiet < loud / 10.0,
        "the browser heard something while the bot was silent (itself?): {quiet} vs {loud}"
    );
    // Opus DTX sends (almost) nothing while the call is silent: the speaking half is 125.
    assert!(
        r2.packets_received > r0.packets_received + 100,
        "{r0:?} {r2:?}"
    );

    // The page's script ran without an uncaught error (its console is in the log).
    let uncaught = chromium.uncaught();
    assert!(
        uncaught.is_empty(),
        "the page threw: {}",
        uncaught.join("\n")
    );

    drop(chromium);
    within(Duration::from_secs(20), "the call to terminate", || {
        terminated(&h.received, &bot.id)
    })
    .await;
    bot.session.close().await;
    drop(bot.client);
}
