//! The media actions through the HTTP API: `subscribeToTone` (keys a party presses reach the
//! bot as `toneInfo`), `sendDtmfTones` (the keys sound in what the parties hear),
//! `recordResponse` (what the parties say, recorded and served with its access token; the
//! four ways a recording ends and its cancellation) and the actions that only one kind of
//! media allows, refused on the other.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use appmedia_emulator::heard_recording_path;
use common::action_kit::*;
use common::bot::*;
use common::*;
use serde_json::{Value, json};

fn calls(id: &str, action: &str) -> String {
    format!("/communications/calls/{id}/{action}")
}

/// A service-hosted peer-to-peer call to `user` (seed example 1); returns its id once
/// established.
async fn service_call(h: &Harness, user: &str) -> String {
    let mut request = h.seed_request("example01-request.json");
    request["targets"][0]["identity"]["user"]["id"] = json!(user);
    let (status, _, created) = h.post_call(&request).await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for_call_state(h, &id, "established").await;
    id
}

/// The tone notifications of `call_id`: (sequenceId, tone).
fn tones_of(h: &Harness, call_id: &str) -> Vec<(i64, String)> {
    of_call(&h.received.all(), call_id)
        .iter()
        .filter_map(|b| {
            let info = &resource_data(b)["toneInfo"];
            Some((
                info["sequenceId"].as_i64()?,
                info["tone"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribed_bot_is_told_each_key_a_party_presses() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // Kay presses 1 then # 1.5 s after answering.
    let id = service_call(h, KAY).await;
    let (status, location, body) = post(
        h,
        &calls(&id, "subscribeToTone"),
        &json!({"clientContext": "fd1c7836-4d84-4e24-b6aa-23188688cc54"}),
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    assert_docs_shape(&body, "subscribe-to-tone.response.json", &[]);
    assert_eq!(body["status"], "completed");
    assert!(location.is_some_and(|l| l.contains("/operations/")));
    wait_until(h, "two tones", |_| tones_of(h, &id).len() >= 2).await;
    assert_eq!(
        tones_of(h, &id),
        [(1, "tone1".to_owned()), (2, "pound".to_owned())]
    );
    let first = of_call(&h.received.all(), &id)
        .into_iter()
        .find(|b| resource_data(b).get("toneInfo").is_some())
        .unwrap();
    assert_docs_shape(&first, "subscribe-to-tone.notification.json", &[]);

    // Not for app-hosted calls, as Graph documents.
    let app = established(h, p2p(h, UMA)).await;
    let (status, _, body) = post(h, &calls(&app, "subscribeToTone"), &json!({})).await;
    let (status, _, message) = refusal(status, &body);
    assert_eq!(status, 400);
    assert!(message.contains("serviceHostedMediaConfig"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_tones_sound_in_what_the_parties_hear() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let call = BotCall::start(h, false, p2p(h, UMA)).await;
    let uma = source_id(h, &call.id, UMA).await;
    let (status, _, body) = post(
        h,
        &calls(&call.id, "sendDtmfTones"),
        &json!({"tones": ["tone1", "bad"]}),
    )
    .await;
    assert!(refusal(status, &body).2.starts_with("tones[1]"), "{body:#}");

    let sent_at = Instant::now();
    let (status, location, body) = post(
        h,
        &calls(&call.id, "sendDtmfTones"),
        &json!({"tones": ["tone1", "tone5"], "delayBetweenTonesMs": 200,
                "clientContext": "e0be71f1-a14f-4cec-b65a-e7aba5db7c53"}),
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    assert_docs_shape(&body, "send-dtmf-tones.response.json", &[]);
    assert_eq!(body["status"], "running");
    assert!(location.is_some());
    let done = operation_done(h, &call.id, body["id"].as_str().unwrap()).await;
    assert!(
        sent_at.elapsed() >= Duration::from_millis(400),
        "two 100 ms keys 200 ms apart: {:?}",
        sent_at.elapsed()
    );
    assert_docs_shape(&done, "send-dtmf-tones-completed.notification.json", &[]);
    assert_eq!(
        done["value"][0]["resourceData"]["completionReason"],
        "completedSuccessfully"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.client.delete_call(&call.id).await.unwrap();
    wait_for_call_state(h, &call.id, "terminated").await;

    // Uma heard 1 (697 + 1209 Hz), then 5 (770 + 1336 Hz).
    let path = heard_recording_path(&setup.recordings, &call.id, uma);
    let (rate, heard) = wait_for_wav(&path, 0.5).await;
    let key_at = |low: f32, high: f32| {
        windows(&heard, rate, 40).iter().position(|w| {
            // A whole 40 ms of the key: both its tones at full strength (a window where
            // one key ends and silence or the next begins only leaks a little).
            let strong = |f: f32| tone_power(w, rate as f32, f) > 1e-3;
            strong(low) && strong(high)
        })
    };
    let one = key_at(697.0, 1209.0).expect("Uma heard the 1");
    let five = key_at(770.0, 1336.0).expect("Uma heard the 5");
    println!("keys heard at {} ms and {} ms", one * 40, five * 40);
    assert!(
        (five - one) * 40 >= 250,
        "the 5 comes 300 ms after the 1: {one} {five}"
    );
}

/// Starts a `recordResponse` with `body`; returns the operation's id.
async fn record(h: &Harness, id: &str, mut body: Value) -> String {
    if body.get("clientContext").is_none() {
        body["clientContext"] = json!("record-ctx");
    }
    let (status, location, answer) = post(h, &calls(id, "recordResponse"), &body).await;
    assert_eq!(status, 200, "{answer:#}");
    assert_docs_shape(&answer, "record-response.response.json", &[]);
    assert_eq!(answer["status"], "running");
    let op = answer["id"].as_str().unwrap().to_owned();
    assert!(location.is_some_and(|l| l.ends_with(&op)));
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_response_is_served_to_the_bearer_of_its_token() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // Ann says 440 Hz; the prompt (and the beep) are 1 kHz, played to her, not recorded.
    let id = service_call(h, ANN).await;
    let started = Instant::now();
    let op = record(
        h,
        &id,
        json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
                            "mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav"}}],
               "maxRecordDurationInSeconds": 2, "playBeep": true,
               "clientContext": "d45324c1-fcb5-430a-902c-f20af696537c"}),
    )
    .await;
    let done = operation_done(h, &id, &op).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "prompt, beep, then 2 s of recording: {took:?}"
    );
    assert_docs_shape(&done, "record-response.notification.json", &[]);
    let data = &done["value"][0]["resourceData"];
    assert_eq!(data["status"], "completed");
    assert_eq!(data["completionReason"], "maxRecordDurationReached");
    assert_eq!(data["resultInfo"]["subcode"], 8515);
    let location = data["recordingLocation"].as_str().unwrap();
    let token = data["recordingAccessToken"].as_str().unwrap();
    assert!(location.starts_with(h.emulator.base_url()), "{location}");

    let without = h.http.get(location).send().await.unwrap();
    assert_eq!(without.status().as_u16(), 401);
    let wrong = h
        .http
        .get(location)
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let response = h
        .http
        .get(location)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = response.bytes().await.unwrap();
    let reader = hound::WavReader::new(Cursor::new(bytes.to_vec())).unwrap();
    let rate = reader.spec().sample_rate;
    let samples: Vec<f32> = reader
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let seconds = samples.len() as f64 / f64::from(rate);
    println!("the response: {seconds:.2} s at {rate} Hz");
    assert!((1.8..=2.4).contains(&seconds), "{seconds} s");
    assert!(hears(&samples, rate, 440.0), "Ann is in the recording");
    assert!(
        silent_at(&samples, rate, 1000.0),
        "the prompt is not: {:.2e}",
        tone_power(&samples, rate as f32, 1000.0)
    );
    let unknown = h
        .http
        .get(format!("{}/recordings/no-such-op", h.emulator.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_ends_on_a_stop_tone_on_silence_or_when_cancelled() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // Kay presses 1, then # (a stop tone), 1.5 s after answering.
    let kay = service_call(h, KAY).await;
    let started = Instant::now();
    let op = record(
        h,
        &kay,
        json!({"stopTones": ["#"], "maxRecordDurationInSeconds": 10,
               "initialSilenceTimeoutInSeconds": 10, "playBeep": false}),
    )
    .await;
    let done = operation_done(h, &kay, &op).await;
    let data = &done["value"][0]["resourceData"];
    assert_eq!(data["completionReason"], "stopToneDetected", "{done:#}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Uma says nothing: the initial silence timeout.
    let uma = service_call(h, UMA).await;
    let op = record(
        h,
        &uma,
        json!({"initialSilenceTimeoutInSeconds": 1, "maxRecordDurationInSeconds": 10,
               "playBeep": false}),
    )
    .await;
    let done = operation_done(h, &uma, &op).await;
    assert_eq!(
        done["value"][0]["resourceData"]["completionReason"],
        "initialSilenceTimeout"
    );

    // A long recording, cancelled.
    let op = record(
        h,
        &uma,
        json!({"initialSilenceTimeoutInSeconds": 60, "maxRecordDurationInSeconds": 60}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, _, body) = post(h, &calls(&uma, "cancelMediaProcessing"), &json!({})).await;
    assert_eq!(status, 200, "{body:#}");
    let done = operation_done(h, &uma, &op).await;
    let data = &done["value"][0]["resourceData"];
    assert_eq!(data["status"], "failed", "{done:#}");
    assert_eq!(data["completionReason"], "operationCanceled");
    assert_eq!(data["resultInfo"]["subcode"], 8508);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_response_refuses_bad_bodies_and_app_hosted_calls() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let id = service_call(h, UMA).await;
    let prompt = json!({"mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav"}});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"maxRecordDurationInSeconds": 0}),
            "maxRecordDurationInSeconds",
        ),
        (
            json!({"maxSilenceTimeoutInSeconds": 121}),
            "maxSilenceTimeoutInSeconds",
        ),
        (
            json!({"initialSilenceTimeoutInSeconds": "5"}),
            "initialSilenceTimeoutInSeconds",
        ),
        (json!({"stopTones": ["x1"]}), "stopTones[0]"),
        (json!({"prompts": [prompt, prompt]}), "prompts: 2 prompts"),
        (
            json!({"prompts": [{"mediaInfo": {"uri": "https://elsewhere/x.wav"}}]}),
            "prompts[0].mediaInfo.uri",
        ),
    ];
    for (body, expected) in cases {
        let (status, _, answer) = post(h, &calls(&id, "recordResponse"), &body).await;
        let (status, code, message) = refusal(status, &answer);
        assert_eq!(
            (status, code.as_str()),
            (400, "BadRequest"),
            "{body}: {answer:#}"
        );
        assert!(message.starts_with(expected), "{body}: {message}");
    }
    // Screen sharing is for app-hosted media.
    let (status, _, body) = post(
        h,
        &calls(&id, "changeScreenSharingRole"),
        &json!({"role": "sharer"}),
    )
    .await;
    assert!(
        refusal(status, &body).2.contains("appHostedMediaConfig"),
        "{body:#}"
    );

    // The service's media actions on an app-hosted call.
    let app = established(h, p2p(h, ANN)).await;
    for (action, body) in [
        ("recordResponse", json!({})),
        ("cancelMediaProcessing", json!({})),
        ("playPrompt", json!({"prompts": [prompt]})),
    ] {
        let (status, _, answer) = post(h, &calls(&app, action), &body).await;
        let (status, _, message) = refusal(status, &answer);
        assert_eq!(status, 400, "{action}: {answer:#}");
        assert!(
            message.contains("serviceHostedMediaConfig"),
            "{action}: {message}"
        );
    }
}
