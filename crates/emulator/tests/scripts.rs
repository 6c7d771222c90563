//! Scripted parties and delivery: declining, not answering, hanging up, notifications out
//! of order on request, and a callback endpoint that fails at first.

mod common;

use std::sync::atomic::Ordering;

use appmedia_emulator::{EmulatorConfig, Faults};
use axum::http::StatusCode;
use common::*;
use serde_json::Value;

const DEE: &str = "0b8a4e1c-0000-4000-8000-000000000001";
const NOAH: &str = "0b8a4e1c-0000-4000-8000-000000000002";
const HANK: &str = "0b8a4e1c-0000-4000-8000-000000000003";

fn scripted() -> EmulatorConfig {
    EmulatorConfig {
        directory: test_directory("scripted-parties.toml"),
        ..config()
    }
}

fn call_to(h: &Harness, user: &str) -> Value {
    let mut request = h.seed_request("example01-request.json");
    request["targets"][0]["identity"]["user"]["id"] = user.into();
    request
}

fn terminated_result(batch: &Value) -> (i64, String) {
    let data = resource_data(batch);
    assert_eq!(data["state"], "terminated", "{batch:#}");
    assert_eq!(batch["value"][0]["changeType"], "deleted");
    (
        data["resultInfo"]["code"].as_i64().unwrap(),
        data["resultInfo"]["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_declined_call_terminates_with_603() {
    let h = Harness::start(scripted()).await;
    let (status, _, _) = h.post_call(&call_to(&h, DEE)).await;
    assert_eq!(status, StatusCode::CREATED);
    let all = h.received.wait_for(2).await;
    assert_eq!(
        describe_all(&all),
        ["state:establishing", "state:terminated"]
    );
    assert_eq!(terminated_result(&all[1]).0, 603);
    assert_eq!(h.emulator.live_calls(), 0);
}

#[tokio::test]
async fn an_unanswered_call_terminates_at_the_ringing_timeout_with_408() {
    let h = Harness::start(scripted()).await;
    let mut request = call_to(&h, NOAH);
    request["ringingTimeoutInSeconds"] = 1.into();
    let (status, _, body) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["ringingTimeoutInSeconds"], 1);
    let all = h.received.wait_for(2).await;
    assert_eq!(
        describe_all(&all),
        ["state:establishing", "state:terminated"]
    );
    let (code, message) = terminated_result(&all[1]);
    assert_eq!(code, 408);
    assert!(message.contains("not answered"));
}

#[tokio::test]
async fn a_party_that_hangs_up_ends_a_peer_to_peer_call() {
    let h = Harness::start(scripted()).await;
    let (status, _, _) = h.post_call(&call_to(&h, HANK)).await;
    assert_eq!(status, StatusCode::CREATED);
    // A peer-to-peer call: its bot hears of state changes only (no roster).
    let all = h.received.wait_for(3).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "state:terminated"
        ]
    );
    assert!(terminated_result(&all[2]).1.contains("remote party"));
}

#[tokio::test]
async fn a_group_call_goes_on_while_one_target_declines() {
    let h = Harness::start(scripted()).await;
    let mut request = h.seed_request("example03-request.json");
    request["source"]["identity"]["application"]["id"] = CALLING_BOT.into();
    request["targets"][0]["identity"]["user"]["id"] = DEE.into();
    request["targets"][1]["identity"]["user"]["id"] = HANK.into();
    let (status, _, _) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED);
    // Dee declines, Hank answers and hangs up: then nobody is left.
    let all = h.received.wait_for(5).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "roster:2",
            "roster:1",
            "state:terminated"
        ]
    );
}

#[tokio::test]
async fn established_before_establishing_when_the_fault_is_injected() {
    let h = Harness::start(EmulatorConfig {
        faults: Faults {
            established_before_establishing: true,
        },
        ..config()
    })
    .await;
    let (status, _, _) = h.post_call(&h.seed_request("example02-request.json")).await;
    assert_eq!(status, StatusCode::CREATED);
    let all = h.received.wait_for(2).await;
    assert_eq!(
        describe_all(&all),
        ["state:established", "state:establishing"]
    );
}

#[tokio::test]
async fn a_notification_the_bot_answers_404_is_not_retried_and_the_next_ones_still_come() {
    let h = Harness::start(config()).await;
    h.received.fail_status.store(404, Ordering::SeqCst);
    h.received.fail_first.store(1, Ordering::SeqCst);
    // Example 1: John shares his screen, so four more notifications follow `establishing`.
    let (status, _, _) = h.post_call(&h.seed_request("example01-request.json")).await;
    assert_eq!(status, StatusCode::CREATED);
    // `establishing` was refused as not the bot's call: given up at once, the rest delivered.
    let all = h.received.wait_for(4).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:established",
            "sharing:created",
            "sharing:updated",
            "sharing:deleted"
        ]
    );
    let stats = h.emulator.delivery_stats();
    assert_eq!(h.received.refused.load(Ordering::SeqCst), 1);
    assert_eq!(stats.failed_attempts(), 1);
    assert_eq!(stats.refused(), 1);
    assert_eq!(stats.dropped(), 0);
}

#[tokio::test]
async fn a_failing_callback_endpoint_gets_every_notification_in_order_and_the_call_survives() {
    let h = Harness::start(config()).await;
    h.received.fail_first.store(4, Ordering::SeqCst);
    let (status, _, body) = h.post_call(&h.seed_request("example01-request.json")).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_owned();
    let all = h.received.wait_for(5).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "sharing:created",
            "sharing:updated",
            "sharing:deleted"
        ]
    );
    assert_eq!(h.received.refused.load(Ordering::SeqCst), 4);
    let stats = h.emulator.delivery_stats();
    assert_eq!(stats.failed_attempts(), 4);
    assert_eq!(stats.dropped(), 0);
    assert_eq!(h.received.unauthorized.load(Ordering::SeqCst), 0);
    let (status, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call["state"], "established");
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let all = h.received.wait_for(6).await;
    assert_eq!(describe(&all[5]), "state:terminated");
}

#[tokio::test]
async fn a_bot_expecting_another_app_id_refuses_the_notifications() {
    // The bot validates aud: a bot registered as TestBot must refuse notifications of a
    // call made by Calling Bot. Proves the token's audience is the calling app's id.
    let h = Harness::start_as(config(), TEST_BOT, TEST_BOT_SECRET).await;
    let token = h.token_for(CALLING_BOT, CALLING_BOT_SECRET).await;
    let request = h.seed_request("example02-request.json");
    let (status, _, _) = h.post_call_with(&token, &request).await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.received.unauthorized.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refused notification"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(h.received.all().is_empty());
}
