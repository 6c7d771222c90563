//! Service-hosted media end to end through the HTTP API: `preFetchMedia` resolved to local
//! files (a 400 naming the entry when it cannot be), `playPrompt` answered with a running
//! `playPromptOperation` and completed by a notification in Graph's documented shape,
//! `cancelMediaProcessing`, and the prompt found in the call's mixed recording (what the
//! parties hear) by normalized cross-correlation at the best lag.

mod common;

use std::time::{Duration, Instant};

use appmedia_audio_io::clip::AudioClip;
use appmedia_emulator::mixed_recording_path;
use common::audio::*;
use common::bot::*;
use common::*;
use serde_json::{Value, json};

const BEEP: &str = "https://cdn.contoso.com/beep.wav";
const COOL: &str = "https://cdn.contoso.com/cool.wav";
const SID: &str = "0b8a4e1c-0000-4000-8000-000000000013";

/// Seed example 1 (P2P, service-hosted) to Sid, who is silent, with the preFetchMedia of
/// seed examples 3, 5 and 9 (beep + cool).
fn seed_example_1(h: &Harness) -> Value {
    let mut request = h.seed_request("example01-request.json");
    request["targets"][0]["identity"]["user"]["id"] = json!(SID);
    request["mediaConfig"]["preFetchMedia"] = json!([
        {"uri": BEEP, "resourceId": "f8971b04-b53e-418c-9222-c82ce681a582"},
        {"uri": COOL, "resourceId": "86dc814b-c172-4428-9112-60f8ecae1edb"},
    ]);
    request
}

async fn post(h: &Harness, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .bearer_auth(h.token().await)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        location,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn play(uri: &str, context: &str) -> Value {
    json!({
        "clientContext": context,
        "prompts": [{
            "@odata.type": "#microsoft.graph.mediaPrompt",
            "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": uri, "resourceId": "1D6DE2D4-CD51-4309-8DAA-70768651088E"}
        }]
    })
}

/// Waits (bounded) for the notification of operation `op` and returns its resourceData.
async fn operation_notification(h: &Harness, call: &str, op: &str) -> Value {
    let url = format!("/communications/calls/{call}/operations/{op}");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(n) = h
            .received
            .all()
            .iter()
            .find(|b| b["value"][0]["resourceUrl"] == url.as_str())
        {
            assert_eq!(n["value"][0]["changeType"], "deleted", "{n:#}");
            return n["value"][0]["resourceData"].clone();
        }
        assert!(Instant::now() < deadline, "no notification for {url}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_prompt_plays_to_the_parties_and_completes_with_a_notification() {
    let recordings = scratch_dir();
    let h = audio_parties(Some(recordings.clone())).await;
    let (status, _, created) = h.post_call(&seed_example_1(&h)).await;
    assert_eq!(status, 201, "{created:#}");
    assert_eq!(
        created["mediaConfig"]["@odata.type"],
        "#microsoft.graph.serviceHostedMediaConfig"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    wait_for_state(&h, "state:established").await;
    // Sid is in the call's media, and says nothing.
    let media = h
        .emulator
        .call_media(&id)
        .expect("a service-hosted call has media");
    assert_eq!(media.parties.len(), 1, "{media:?}");
    assert_eq!(media.parties[0].first_audio_at, None);
    assert!(h.emulator.call_media("no-such-call").is_none());

    let (status, location, op) = post(
        &h,
        &format!("/communications/calls/{id}/playPrompt"),
        &play(BEEP, "ctx-1"),
    )
    .await;
    let played_at = Instant::now();
    assert_eq!(status, 200, "{op:#}");
    assert_eq!(op["@odata.type"], "#microsoft.graph.playPromptOperation");
    assert_eq!(op["status"], "running");
    assert_eq!(op["clientContext"], "ctx-1");
    let op_id = op["id"].as_str().unwrap();
    assert_eq!(
        location.as_deref(),
        Some(
            format!(
                "{}/communications/calls/{id}/operations/{op_id}",
                h.emulator.graph_url()
            )
            .as_str()
        )
    );

    let done = operation_notification(&h, &id, op_id).await;
    let took = played_at.elapsed();
    println!("the 2.4 s prompt completed after {took:?}");
    assert!(
        took >= Duration::from_millis(2300),
        "completed before it could have played: {took:?}"
    );
    assert_eq!(done["@odata.type"], "#microsoft.graph.playPromptOperation");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["clientContext"], "ctx-1");
    assert_eq!(done["id"], op_id);
    assert_eq!(done["resultInfo"]["code"], 200);
    assert_eq!(done["resultInfo"]["subcode"], 0);
    assert_eq!(
        done["resultInfo"]["message"],
        "Action completed successfully."
    );

    // A long prompt (cool.wav, the seed's default: the 5 s IVR prompt), cancelled.
    let (status, _, long) = post(
        &h,
        &format!("/communications/calls/{id}/playPrompt"),
        &play(COOL, "ctx-2"),
    )
    .await;
    assert_eq!(status, 200, "{long:#}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, location, cancel) = post(
        &h,
        &format!("/communications/calls/{id}/cancelMediaProcessing"),
        &json!({"clientContext": "ctx-3"}),
    )
    .await;
    assert_eq!(status, 200, "{cancel:#}");
    assert_eq!(
        cancel["@odata.type"],
        "#microsoft.graph.cancelMediaProcessingOperation"
    );
    assert_eq!(cancel["status"], "completed");
    assert!(location.is_some_and(|l| l.contains("/operations/")));
    let cancelled = operation_notification(&h, &id, long["id"].as_str().unwrap()).await;
    assert_eq!(cancelled["status"], "failed", "{cancelled:#}");
    assert_eq!(cancelled["resultInfo"]["code"], 400);
    assert_eq!(cancelled["resultInfo"]["subcode"], 8508);

    h.delete(&format!("/communications/calls/{id}")).await;
    wait_for_state(&h, "state:terminated").await;

    // What the parties heard: the DTMF prompt is in the mixed track.
    let path = mixed_recording_path(&recordings, &id);
    let (rate, mixed) = wait_for_wav(&path, 2.0).await;
    assert_eq!(rate, 16_000);
    println!("mixed recording: {:.2} s", mixed.len() as f64 / 16_000.0);
    let source = AudioClip::open(media_samples().join("dtmf-123456789star0hash-8k.wav")).unwrap();
    let source_16k: Vec<f32> = source.samples().iter().step_by(3).copied().collect();
    let r = median_match_spread(&source_16k, &mixed, 6_400);
    println!("prompt in the mixed recording: normalized correlation {r:.3}");
    assert!(
        r > 0.9,
        "the prompt is in what the parties heard: r = {r:.3}"
    );
    let _ = std::fs::remove_dir_all(&recordings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_that_cannot_be_had_are_refused_naming_the_field() {
    let h = audio_parties(None).await;
    // preFetchMedia: a URI nobody mapped, a mapped file that is not there.
    for (uri, index) in [
        ("https://cdn.contoso.com/nope.wav", 1),
        ("https://cdn.contoso.com/missing.wav", 1),
    ] {
        let mut request = seed_example_1(&h);
        request["mediaConfig"]["preFetchMedia"][1]["uri"] = json!(uri);
        let (status, _, body) = h.post_call(&request).await;
        assert_eq!(status, 400, "{body:#}");
        let message = assert_graph_error(&body, "BadRequest");
        assert!(
            message.contains(&format!("mediaConfig.preFetchMedia[{index}].uri")),
            "{message}"
        );
        assert!(message.contains(uri), "{message}");
    }
    assert_eq!(h.emulator.live_calls(), 0);

    let (status, _, created) = h.post_call(&seed_example_1(&h)).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap();
    let path = format!("/communications/calls/{id}/playPrompt");
    let (status, _, body) = post(&h, &path, &play("https://elsewhere/x.wav", "c")).await;
    assert_eq!(status, 400);
    assert!(assert_graph_error(&body, "BadRequest").contains("prompts[0].mediaInfo.uri"));
    let (status, _, body) = post(&h, &path, &json!({"prompts": []})).await;
    assert_eq!(status, 400);
    assert!(assert_graph_error(&body, "BadRequest").starts_with("prompts:"));
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .bearer_auth(h.token().await)
        .header("content-type", "text/plain")
        .body(play(BEEP, "c").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .json(&play(BEEP, "c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "no token");
    let (status, _, body) = post(
        &h,
        "/communications/calls/no-such-call/playPrompt",
        &play(BEEP, "c"),
    )
    .await;
    assert_eq!(status, 404, "{body:#}");

    // An app-hosted call has no service to play prompts.
    let mut request = h.seed_request("example02-request.json");
    request["targets"][0]["identity"]["user"]["id"] = json!(SID);
    let (status, _, app_hosted) = h.post_call(&request).await;
    assert_eq!(status, 201);
    let app_id = app_hosted["id"].as_str().unwrap();
    let (status, _, body) = post(
        &h,
        &format!("/communications/calls/{app_id}/playPrompt"),
        &play(BEEP, "c"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(assert_graph_error(&body, "BadRequest").contains("serviceHostedMediaConfig"));
}
