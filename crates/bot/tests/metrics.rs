//! `/metrics` over real calls on an in-process emulator: the media counters move while a call
//! runs, hold what ended calls left (summed, never counted twice, never going backwards), and
//! a notification with a bad token is counted under its reason.

mod common;

use std::collections::BTreeMap;

use appmedia_bot::{Bot, CallEnd, Event, MediaOptions, RecordOptions};
use common::*;

/// Every series of the text: `name{labels}` → value.
async fn scrape(bot: &Bot) -> BTreeMap<String, f64> {
    let response = reqwest::get(format!("http://{}/metrics", bot.local_addr()))
        .await
        .expect("the bot's server answers");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("a body");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`name{labels} value`");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn get(metrics: &BTreeMap<String, f64>, series: &str) -> f64 {
    *metrics
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {metrics:#?}"))
}

/// Counters only rise from one scrape to the next.
fn assert_no_counter_fell(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    for (series, old) in before.iter().filter(|(s, _)| is_counter(s)) {
        let new = get(after, series);
        assert!(new >= *old, "{series} went from {old} to {new}");
    }
}

fn is_counter(series: &str) -> bool {
    series
        .split('{')
        .next()
        .is_some_and(|n| n.ends_with("_total"))
}

/// A recorded app-hosted call to John (who echoes), `frames` × 20 ms of tone into it; returns
/// the scrape taken while it runs and how the call ended.
async fn recorded_call(bot: &Bot, frames: usize) -> (BTreeMap<String, f64>, CallEnd) {
    let options = MediaOptions::default().recorded(RecordOptions {
        prefix: "metrics".into(),
        ..RecordOptions::default()
    });
    let mut call = bot
        .call(call_to(JOHN, bot, appmedia_bot::app_hosted()), options)
        .await
        .expect("call placed");
    let audio = call.audio_socket().expect("app-hosted");
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    let mut phase = 0;
    for _ in 0..frames {
        audio.send(&tone_frame(1000.0, &mut phase)).expect("queued");
        let _ = audio.recv().await;
    }
    // The worker publishes its counters once a second; the recorder its bytes twice.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let during = scrape(bot).await;
    call.hang_up().await.expect("hung up");
    let (end, _) = ended(&mut call).await;
    (during, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_counters_move_during_calls_and_keep_what_ended_calls_left() {
    let emulator = emulator(echo_directory()).await;
    let dir = std::env::temp_dir().join(format!("appmedia-bot-metrics-{}", std::process::id()));
    let bot = Bot::start(bot_config(&emulator).with_recordings_dir(&dir))
        .await
        .expect("bot starts");
    let start = scrape(&bot).await;
    assert_eq!(get(&start, "appmedia_bot_rtp_packets_received_total"), 0.0);

    // A notification whose token is not one: refused, and counted under its reason.
    let refused = reqwest::Client::new()
        .post(bot.callback_uri())
        .bearer_auth("not-a-token")
        .json(&serde_json::json!({"value": []}))
        .send()
        .await
        .expect("the bot's server answers");
    assert_eq!(refused.status().as_u16(), 401);
    let after_refusal = scrape(&bot).await;
    let unauthorized = r#"appmedia_bot_notifications_rejected_total{reason="unauthorized"}"#;
    assert_eq!(get(&after_refusal, unauthorized), 1.0);
    assert_eq!(
        get(
            &after_refusal,
            "appmedia_bot_notifications_unauthorized_total"
        ),
        1.0
    );
    let malformed = r#"appmedia_bot_notifications_rejected_total{reason="malformed"}"#;
    assert_eq!(get(&after_refusal, malformed), 0.0);

    // The first call: about a second of tone, echoed back by John.
    let (during, first) = recorded_call(&bot, 50).await;
    assert_eq!(get(&during, "appmedia_bot_live_calls"), 1.0);
    for series in [
        "appmedia_bot_media_ticks_total",
        "appmedia_bot_rtp_packets_sent_total",
        "appmedia_bot_rtp_packets_received_total",
        "appmedia_bot_recording_bytes_total",
    ] {
        assert!(
            get(&during, series) > 0.0,
            "{series} did not move: {during:#?}"
        );
    }
    let jitter = get(&during, "appmedia_bot_rtp_jitter_seconds");
    assert!(
        (0.0..0.5).contains(&jitter),
        "jitter {jitter} s on loopback"
    );
    for series in [
        "appmedia_bot_media_late_ticks_total",
        "appmedia_bot_rtp_packets_lost_total",
        "appmedia_bot_concealed_frames_total",
        "appmedia_bot_fec_recovered_frames_total",
    ] {
        get(&during, series);
    }
    assert_no_counter_fell(&after_refusal, &during);

    // Ended: the totals are exactly what the call's own final counters say.
    let after_first = scrape(&bot).await;
    assert_no_counter_fell(&during, &after_first);
    assert_eq!(get(&after_first, "appmedia_bot_live_calls"), 0.0);
    let totals = |end: &CallEnd| {
        let media = end.media.expect("media counters");
        let recording = end.recording.as_ref().expect("recorded");
        [
            media.pipeline.packets_sent,
            media.rtp_received.packets,
            media.rtp_received.lost,
            media.rtp_received.concealed,
            media.rtp_received.fec_recovered,
            recording.bytes_written(),
        ]
    };
    let names = [
        "appmedia_bot_rtp_packets_sent_total",
        "appmedia_bot_rtp_packets_received_total",
        "appmedia_bot_rtp_packets_lost_total",
        "appmedia_bot_concealed_frames_total",
        "appmedia_bot_fec_recovered_frames_total",
        "appmedia_bot_recording_bytes_total",
    ];
    let of = |metrics: &BTreeMap<String, f64>| names.map(|n| get(metrics, n) as u64);
    assert_eq!(of(&after_first), totals(&first), "{names:?}");
    assert!(
        totals(&first)[1] > 25,
        "packets received: {:?}",
        totals(&first)
    );

    // A second call: its counts come on top of the first's, which stay.
    let (during, second) = recorded_call(&bot, 25).await;
    assert_no_counter_fell(&after_first, &during);
    assert!(
        get(&during, "appmedia_bot_rtp_packets_received_total")
            > get(&after_first, "appmedia_bot_rtp_packets_received_total")
    );
    let after_second = scrape(&bot).await;
    assert_no_counter_fell(&during, &after_second);
    let both: Vec<u64> = totals(&first)
        .iter()
        .zip(totals(&second))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(of(&after_second).to_vec(), both, "{names:?}");
    bot.shutdown(None).await;
    let _ = std::fs::remove_dir_all(&dir);
}
