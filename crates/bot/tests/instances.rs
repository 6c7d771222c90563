//! One bot among several instances, against a real emulator: the instance id in the callback
//! URL, `/healthz` `/readyz` `/metrics`, 404 for a call held elsewhere, 503 for a new call
//! while full or draining.

mod common;

use std::time::Duration;

use appmedia_bot::{AnswerMedia, Bot, BotError, Event};
use appmedia_model::CallState;
use appmedia_signalling::builders::Media;
use common::*;

/// The seed's PSTN phone.
const PHONE: &str = "+12345678901";

async fn get(bot: &Bot, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", bot.local_addr()))
        .await
        .expect("the bot's server answers");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

/// The service's word on who ended a call.
fn ended_by(end: &appmedia_bot::CallEnd) -> String {
    end.result_info
        .as_ref()
        .and_then(|info| info.message.value().cloned())
        .unwrap_or_default()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("appmedia_bot_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_id_is_in_the_callback_url_and_the_health_endpoints_follow_capacity() {
    let emulator = emulator(echo_directory()).await;
    let local = {
        let probe = bot(&emulator).await;
        let local = probe.local_addr();
        probe.shutdown(None).await;
        local
    };
    // The public URL names the instance; the emulator posts to it directly here (no proxy:
    // the path is the route, the host is the bot's own).
    let config = bot_config(&emulator)
        .with_listen(local)
        .with_callback_url(
            format!("http://{local}/{{instance}}/callback")
                .parse()
                .unwrap(),
        )
        .with_instance_id("bot-1")
        .with_max_calls(1);
    let bot = Bot::start(config).await.expect("bot starts");
    assert_eq!(bot.instance_id(), "bot-1");
    assert_eq!(bot.callback_uri(), format!("http://{local}/bot-1/callback"));
    assert_eq!(get(&bot, "/healthz").await.0, 200);
    assert_eq!(get(&bot, "/readyz").await.0, 200);
    let (_, text) = get(&bot, "/metrics").await;
    assert_eq!(metric(&text, "ready"), 1);

    let request = call_to(JOHN, &bot, Media::service_hosted());
    let mut call = bot.call(request, Default::default()).await.expect("placed");
    assert!(call.wait_for_state(CallState::Established, WAIT).await);
    // Full at one call: not ready, and says so.
    assert!(!bot.is_ready());
    assert_eq!(get(&bot, "/readyz").await.0, 503);
    let (_, text) = get(&bot, "/metrics").await;
    assert_eq!(metric(&text, "ready"), 0);
    assert_eq!(metric(&text, "live_calls"), 1);
    assert!(metric(&text, "notifications_accepted_total") >= 1);
    // Nor does it place another.
    let another = call_to(JOHN, &bot, Media::service_hosted());
    assert!(matches!(
        bot.call(another, Default::default()).await,
        Err(BotError::AtCapacity { max_calls: 1 })
    ));

    call.hang_up().await.unwrap();
    assert!(bot.is_ready());
    assert_eq!(get(&bot, "/readyz").await.0, 200);
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_for_a_call_held_elsewhere_is_404_and_counted() {
    let emulator = emulator(echo_directory()).await;
    let here = bot(&emulator).await;
    let elsewhere = bot(&emulator).await;
    // A call whose callbackUri is `here`'s, created by someone else (what a misrouting
    // proxy, or this instance's previous life, looks like from here).
    let request = call_to(JOHN, &here, Media::service_hosted());
    let created = elsewhere
        .client()
        .expect("a Graph bot")
        .create_call(&request)
        .await
        .unwrap();
    let id = created.call_id().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    while here.stats().notifications_unknown_call == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = here.stats();
    assert!(stats.notifications_unknown_call >= 1, "{stats:?}");
    // Nothing of it was applied here.
    assert_eq!(stats.live_calls, 0);
    assert_eq!(stats.orphan_notifications, 0);
    let (_, text) = get(&here, "/metrics").await;
    assert!(metric(&text, "notifications_unknown_call_total") >= 1);
    elsewhere
        .client()
        .expect("a Graph bot")
        .delete_call(&id)
        .await
        .unwrap();
    here.shutdown(None).await;
    elsewhere.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_refuses_new_incoming_calls_with_503_and_takes_them_again_when_free() {
    let emulator = emulator(echo_directory()).await;
    let bot = Bot::start(bot_config(&emulator).with_max_calls(1))
        .await
        .expect("bot starts");
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .unwrap();
    // The first call fills it.
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut offered = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .unwrap();
    let mut first = offered
        .answer(AnswerMedia::Service { pre_fetch: vec![] })
        .await
        .expect("answered");
    until(&mut first, |e| {
        matches!(
            e,
            Event::State {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    assert!(!bot.is_ready());

    // The second is refused before anything is applied: 503, nothing offered to the code.
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot.stats().notifications_busy == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bot.stats().notifications_busy >= 1);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bot.next_incoming())
            .await
            .is_err(),
        "a refused call is not offered"
    );
    assert_eq!(bot.stats().incoming_received, 1);

    // Free again, it takes the next one.
    first.hang_up().await.unwrap();
    assert!(bot.is_ready());
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut third = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .expect("offered once free")
        .unwrap();
    third
        .reject(appmedia_model::RejectReason::None)
        .await
        .unwrap();
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_come_on_the_shared_webhook_calls_continue_on_the_instance_path_and_drain_lets_them_end()
 {
    // The caller hangs up 1.5 s after the answer.
    let mut directory = echo_directory();
    for phone in &mut directory.phones {
        if phone.number == PHONE {
            phone.behaviour.hang_up_after_ms = Some(1500);
        }
    }
    let emulator = emulator(directory).await;
    let local = {
        let probe = bot(&emulator).await;
        let local = probe.local_addr();
        probe.shutdown(None).await;
        local
    };
    let drain = Duration::from_secs(12);
    let config = bot_config(&emulator)
        .with_listen(local)
        .with_callback_url(
            format!("http://{local}/{{instance}}/callback")
                .parse()
                .unwrap(),
        )
        .with_instance_id("bot-7")
        .with_drain_timeout(drain);
    let bot = Bot::start(config).await.expect("bot starts");
    // The application's webhook is the shared path, not this instance's.
    emulator
        .set_calling_webhook(CALLING_BOT, &format!("http://{local}/callback"))
        .unwrap();
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut offered = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .expect("offered through the shared webhook")
        .unwrap();
    let mut call = offered
        .answer(AnswerMedia::Service { pre_fetch: vec![] })
        .await
        .expect("answered");
    assert!(call.wait_for_state(CallState::Established, WAIT).await);
    // The answer pinned the call to this instance's own path.
    let resource = bot
        .client()
        .expect("a Graph bot")
        .get_call(call.id())
        .await
        .expect("GET call");
    assert_eq!(
        resource.callback_uri.value().map(String::as_str),
        Some(format!("http://{local}/bot-7/callback").as_str())
    );

    // SIGTERM's work: not ready at once, new calls refused, the held call may end by itself.
    let started = tokio::time::Instant::now();
    let draining = tokio::spawn(bot.drain());
    let readyz = format!("http://{local}/readyz");
    let deadline = started + WAIT;
    while reqwest::get(&readyz)
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(503)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said 503"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let end = loop {
        match tokio::time::timeout(WAIT, call.next_event()).await {
            Ok(Some(Event::Ended(end))) => break end,
            Ok(Some(_)) => {}
            other => panic!("the call did not end by itself: {other:?}"),
        }
    };
    let stats = tokio::time::timeout(WAIT, draining)
        .await
        .expect("the drain ends once its calls have")
        .unwrap();
    assert!(
        started.elapsed() < drain,
        "waited for the deadline with no call left"
    );
    assert!(stats.notifications_busy >= 1, "{stats:?}");
    assert_eq!(stats.incoming_received, 1, "{stats:?}");
    assert_eq!(stats.live_calls, 0);
    assert!(ended_by(&end).contains("remote party"), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_hangs_up_what_outlives_its_deadline() {
    let emulator = emulator(echo_directory()).await;
    let config = bot_config(&emulator).with_drain_timeout(Duration::from_millis(500));
    let bot = Bot::start(config).await.expect("bot starts");
    let request = call_to(JOHN, &bot, Media::service_hosted());
    let mut call = bot.call(request, Default::default()).await.expect("placed");
    assert!(call.wait_for_state(CallState::Established, WAIT).await);
    let stats = tokio::time::timeout(WAIT, bot.drain())
        .await
        .expect("the drain ends at its deadline");
    assert_eq!(stats.live_calls, 0);
    let end = loop {
        match tokio::time::timeout(WAIT, call.next_event()).await {
            Ok(Some(Event::Ended(end))) => break end,
            Ok(Some(_)) => {}
            other => panic!("the call was not ended: {other:?}"),
        }
    };
    assert!(ended_by(&end).contains("application"), "{end:?}");
}
