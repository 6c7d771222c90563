//! Calls to the bot, end to end on loopback: a real emulator, a real webhook (the harness's
//! callback receiver, which validates every notification token), the control API ringing the
//! bot, and the bot answering, rejecting or redirecting through the Graph API.

mod common;

use std::time::{Duration, Instant};

use appmedia_emulator::EmulatorConfig;
use appmedia_model::{AnswerRequest, AppHostedMediaConfig, MediaConfig, Modality};
use appmedia_transport::{MediaSession, TransportConfig};
use axum::http::StatusCode;
use common::audio::*;
use common::bot::*;
use common::incoming::*;
use common::*;
use serde_json::{Value, json};

const INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
const INSTANCE_PHONE: &str = "+14255550100";
const PHONE: &str = "+12345678901";
/// The seed's second PSTN number: answers after 300 ms, hangs up 2 s later.
const OTHER_PHONE: &str = "+12345678902";
const SID: &str = "0b8a4e1c-0000-4000-8000-000000000013";
const PROMPT_BOT: &str = "7c1d2e3f-0000-4000-8000-000000000021";
const PROMPT_BOT_SECRET: &str = "prompt-bot-secret";

/// The test config with a deadline long enough for any test that answers.
fn incoming_config() -> EmulatorConfig {
    EmulatorConfig {
        incoming_answer_timeout: Duration::from_secs(10),
        ..config()
    }
}

async fn seed_harness() -> Harness {
    Harness::start(incoming_config()).await
}

async fn parties_harness() -> Harness {
    Harness::start(EmulatorConfig {
        directory: test_directory("incoming-parties.toml"),
        ..incoming_config()
    })
    .await
}

/// Waits (bounded) until no call is live any more.
async fn no_call_left(h: &Harness) {
    let deadline = Instant::now() + WAIT;
    while h.emulator.live_calls() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} calls left",
            h.emulator.live_calls()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every property the documentation's example has, our notification has too.
fn assert_has_the_properties_of(fixture: &str, ours: &Value) {
    let ours = property_paths(ours);
    let missing: Vec<String> = property_paths(&incoming_fixture(fixture))
        .into_iter()
        .filter(|p| !ours.contains(p))
        .collect();
    assert!(missing.is_empty(), "{fixture}: missing {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_calls_the_app_and_the_bot_is_offered_the_call_in_graphs_shape() {
    let h = seed_harness().await;
    let (id, offered) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    assert_has_the_properties_of("incoming-user-to-app.json", &offered);
    let n = &offered["value"][0];
    assert_eq!(n["changeType"], "created");
    assert_eq!(n["resourceUrl"], format!("/communications/calls/{id}"));
    let call = resource_data(&offered);
    assert_eq!(call["@odata.type"], "#microsoft.graph.call");
    assert_eq!(call["id"], id);
    assert_eq!(call["state"], "incoming");
    assert_eq!(call["direction"], "incoming");
    assert_eq!(call["callbackUri"], h.callback_uri);
    assert_eq!(call["tenantId"], TENANT);
    assert_eq!(call["requestedModalities"], json!(["audio"]));
    assert_eq!(call["source"]["identity"]["user"]["id"], JOHN);
    assert_eq!(call["source"]["identity"]["user"]["displayName"], "John");
    assert_eq!(
        call["targets"][0]["identity"]["application"]["id"],
        CALLING_BOT
    );
    assert_eq!(call["targets"][0]["id"], call["myParticipantId"]);
    let context = &call["incomingContext"];
    assert_eq!(context["sourceParticipantId"], call["source"]["id"]);
    assert_eq!(context["observedParticipantId"], call["source"]["id"]);
    assert!(call.get("chatInfo").is_none() && call.get("meetingInfo").is_none());
    // Signed like every notification: the receiver validated the token.
    assert_eq!(
        h.received
            .unauthorized
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // The bot sees the call as offered; the control API sees it ring.
    let (status, got) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["state"], "incoming");
    let v = view(&h, &id).await;
    assert_eq!(v["direction"], "incoming");
    assert_eq!(v["state"], "incoming");
    assert_eq!(v["app"], CALLING_BOT);
    assert_eq!(party_state(&v, CALLING_BOT), "ringing");
    assert_eq!(party_state(&v, JOHN), "ringing");
    let (_, all) = control(&h, reqwest::Method::GET, "/calls", None).await;
    assert!(
        all["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id)
    );
    assert_eq!(
        act_as_bot(&h, &id, "reject", json!({"reason": "none"}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_pstn_number() {
    let h = seed_harness().await;
    let (id, offered) = ring_bot(&h, PHONE, INSTANCE_PHONE, None).await;
    let call = resource_data(&offered);
    assert_eq!(call["source"]["identity"]["phone"]["id"], PHONE);
    let target = &call["targets"][0]["identity"];
    assert_eq!(target["applicationInstance"]["id"], INSTANCE);
    assert_eq!(target["applicationInstance"]["tenantId"], TENANT);
    assert_eq!(target["phone"]["id"], INSTANCE_PHONE);
    let v = view(&h, &id).await;
    assert_eq!(v["parties"][0]["kind"], "applicationInstance");
    assert_eq!(
        v["parties"][1],
        json!({"id": PHONE, "kind": "phone", "role": "caller", "state": "ringing"})
    );

    // Answered (service-hosted): the phone is in the roster with the bot — listed by the
    // service, not notified (a two-party call's bot gets its state changes only).
    let (status, _) = act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let established =
        wait_for_notification(&h, &id, |n| resource_data(n)["state"] == "established").await;
    assert_eq!(resource_data(&established)["direction"], "incoming");
    let (status, listed) = h
        .get(&format!("/communications/calls/{id}/participants"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed:#}");
    let people = listed["value"].as_array().unwrap().clone();
    assert_eq!(people.len(), 2, "{people:#?}");
    assert!(
        people
            .iter()
            .any(|p| p["info"]["identity"]["phone"]["id"] == PHONE)
    );
    assert!(
        people
            .iter()
            .any(|p| p["info"]["identity"]["applicationInstance"]["id"] == INSTANCE)
    );
    let rosters = format!("/communications/calls/{id}/participants");
    assert!(
        !(h.received.all().iter()).any(|n| n["value"][0]["resourceUrl"] == rosters.as_str()),
        "a PSTN call's bot got a roster notification"
    );
    // Service-hosted: the emulator plays the bot's prompts, as for a call the bot made.
    let (status, operation) = act_as_bot(
        &h,
        &id,
        "playPrompt",
        json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
            "mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "beep"}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{operation:#}");
    let done = wait_for_notification(&h, &id, |n| {
        n["value"][0]["resourceUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/operations/"))
    })
    .await;
    assert_eq!(resource_data(&done)["status"], "completed");
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let ended = wait_for_terminated(&h, &id).await;
    assert_eq!(ended["resultInfo"]["code"], 200);
    no_call_left(&h).await;
    let v = view(&h, &id).await;
    assert_eq!(v["state"], "terminated");
    assert_eq!(party_state(&v, PHONE), "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id() {
    let h = seed_harness().await;
    let (id, offered) = ring_bot(&h, JOHN, INSTANCE, None).await;
    assert_has_the_properties_of("incoming-user-to-instance.json", &offered);
    let call = resource_data(&offered);
    let target = &call["targets"][0];
    assert_eq!(target["identity"]["applicationInstance"]["id"], INSTANCE);
    assert!(target["identity"].get("phone").is_none(), "{target:#}");
    assert_eq!(target["endpointType"], "default");
    assert_eq!(call["source"]["identity"]["user"]["tenantId"], TENANT);
    let reject: appmedia_model::RejectRequest =
        serde_json::from_value(json!({"reason": "busy"})).unwrap();
    graph_client(&h)
        .reject(&id, &reject)
        .await
        .expect("202 Accepted");
    assert_eq!(
        wait_for_terminated(&h, &id).await["resultInfo"]["code"],
        486
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_meeting_calls_the_bots_instance() {
    let h = seed_harness().await;
    let (id, offered) = ring_bot(&h, BOB, INSTANCE, Some("1234567")).await;
    let call = resource_data(&offered);
    assert_eq!(call["chatInfo"]["threadId"], MEETING_THREAD);
    assert_eq!(
        call["meetingInfo"]["@odata.type"],
        "#microsoft.graph.organizerMeetingInfo"
    );
    assert_eq!(call["meetingInfo"]["organizer"]["user"]["id"], BOB);

    // Answered, the bot is in the meeting: its script's people and the caller.
    let (status, _) = act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let established =
        wait_for_notification(&h, &id, |n| resource_data(n)["state"] == "established").await;
    assert_eq!(
        resource_data(&established)["chatInfo"]["threadId"],
        MEETING_THREAD
    );
    let v = view_until(&h, &id, |v| v["state"] == "established").await;
    assert_eq!(party_state(&v, JOHN), "connected");
    assert_eq!(party_state(&v, BOB), "connected");
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_with_app_hosted_media_the_bot_hears_the_caller() {
    let h = parties_harness().await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let session = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    let answer = AnswerRequest::new(
        h.callback_uri.clone(),
        MediaConfig::AppHosted(AppHostedMediaConfig::new(session.blob())),
        vec![Modality::Audio],
    );
    // Through the bot's own client: the same validation and permission checks as the emulator's.
    let client = graph_client(&h);
    client.answer(&id, &answer).await.expect("202 Accepted");

    // 202 has no body: the answer blob comes in the establishing notification, and in GET.
    let establishing =
        wait_for_notification(&h, &id, |n| resource_data(n)["state"] == "establishing").await;
    let config = &resource_data(&establishing)["mediaConfig"];
    assert_eq!(
        config["@odata.type"],
        "#microsoft.graph.appHostedMediaConfig"
    );
    let blob = config["blob"].as_str().expect("the answer blob").to_owned();
    assert_ne!(blob, session.blob());
    assert!(blob.contains("\"answer\""), "{blob}");
    let (_, got) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(got["mediaConfig"]["blob"], blob);
    assert_eq!(got["direction"], "incoming");

    let mut bot =
        BotCall::connect(&h, client, id.clone(), Instant::now(), session, &blob, true).await;
    let heard = bot.run(75, |_| None).await;
    let (tone, ratio) = dominant(&heard.samples, &[440.0, 1000.0], 48_000.0);
    assert_eq!(
        tone, 440.0,
        "the bot hears John's 440 Hz (ratio {ratio:.1})"
    );
    assert!(
        level_dbfs(&heard.samples) > -40.0,
        "{} dBFS",
        level_dbfs(&heard.samples)
    );

    let (_, roster) = h
        .get(&format!("/communications/calls/{id}/participants"))
        .await;
    let people = roster["value"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{roster:#}");
    assert!(
        people
            .iter()
            .any(|p| p["info"]["identity"]["user"]["id"] == JOHN)
    );
    assert!(
        people
            .iter()
            .any(|p| p["info"]["identity"]["application"]["id"] == CALLING_BOT)
    );
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_ends_the_answered_call() {
    let h = parties_harness().await;
    let (id, _) = ring_bot(&h, SID, CALLING_BOT, None).await;
    let other_callback = format!("{}?leg=answered", h.callback_uri);
    let (status, _) = act_as_bot(&h, &id, "answer", service_hosted_answer(&other_callback)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ended = wait_for_terminated(&h, &id).await;
    assert_eq!(ended["resultInfo"]["code"], 200);
    // After the answer, notifications go to the answer's callbackUri.
    let established =
        wait_for_notification(&h, &id, |n| resource_data(n)["state"] == "established").await;
    assert_eq!(established["value"][0]["callbackUri"], other_callback);
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_rejects_with_each_reason() {
    let h = seed_harness().await;
    for (reason, code) in [
        ("busy", 486),
        ("forbidden", 403),
        ("none", 603),
        ("Busy", 486),
    ] {
        let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
        let (status, body) = act_as_bot(&h, &id, "reject", json!({"reason": reason})).await;
        assert_eq!(
            (status, body),
            (StatusCode::ACCEPTED, Value::Null),
            "{reason}"
        );
        let ended = wait_for_terminated(&h, &id).await;
        assert_eq!(ended["resultInfo"]["code"], code, "{reason}");
        assert_eq!(ended["direction"], "incoming");
        let (status, _) = h.get(&format!("/communications/calls/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let v = view(&h, &id).await;
        assert_eq!(v["result"]["code"], code);
        assert_eq!(party_state(&v, JOHN), "missed");
        // Rejected is rejected: the call is gone for every action.
        let (status, _) =
            act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let (status, body) = act_as_bot(&h, &id, "reject", json!({"reason": "later"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_graph_error(&body, "BadRequest").contains("reason"));
    assert_eq!(
        act_as_bot(&h, &id, "reject", json!({})).await.0,
        StatusCode::ACCEPTED
    );
    no_call_left(&h).await;
}

/// Redirects call `id` to the seed's second PSTN number and follows it: the bot's leg ends
/// with 302, the number rings and answers, then hangs up.
async fn redirect_to_another_pstn(h: &Harness, id: &str, caller: &str) {
    let leg = format!("{}?leg=redirect", h.callback_uri);
    let (status, body) = act_as_bot(
        h,
        id,
        "redirect",
        json!({
            "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": {"@odata.type": "#microsoft.graph.identitySet",
                    "phone": {"@odata.type": "#microsoft.graph.identity", "id": OTHER_PHONE}}}],
            "timeout": 30,
            "callbackUri": leg,
        }),
    )
    .await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let ended = wait_for_terminated(h, id).await;
    assert_eq!(ended["resultInfo"]["code"], 302);
    assert_eq!(ended["callbackUri"], leg);
    let terminated =
        wait_for_notification(h, id, |n| resource_data(n)["state"] == "terminated").await;
    // The documentation's example is a user calling an application; who is in the identity
    // sets differs, the rest of the shape does not.
    let shape = |v: &Value| -> std::collections::BTreeSet<String> {
        property_paths(v)
            .into_iter()
            .filter(|p| !p.contains(".identity."))
            .collect()
    };
    let fixture = incoming_fixture("terminated-after-redirect.json");
    let missing: Vec<String> = shape(&fixture)
        .difference(&shape(&terminated))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "missing {missing:?}");
    // The bot's leg is gone; the caller's rings the number.
    let (status, _) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.emulator.live_calls(), 0);
    let v = view(h, id).await;
    assert_eq!(v["redirect"]["targets"], json!([OTHER_PHONE]));
    assert_eq!(v["parties"][0]["role"], "bot");
    assert_eq!(v["parties"][0]["state"], "left");
    let v = view_until(h, id, |v| v["state"] == "established").await;
    assert_eq!(v["redirect"]["answeredBy"], OTHER_PHONE);
    assert_eq!(party_state(&v, OTHER_PHONE), "connected");
    assert_eq!(party_state(&v, caller), "connected");
    let v = view_until(h, id, |v| v["state"] == "terminated").await;
    assert_eq!(v["result"]["code"], 200);
    assert_eq!(party_state(&v, OTHER_PHONE), "left");
    assert_eq!(party_state(&v, caller), "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_pstn_number_then_the_bot_redirects_to_another_pstn() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, PHONE, INSTANCE_PHONE, None).await;
    redirect_to_another_pstn(&h, &id, PHONE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id_then_the_bot_redirects_to_another_pstn() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, JOHN, INSTANCE, None).await;
    redirect_to_another_pstn(&h, &id, JOHN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_redirects_are_refused_and_the_call_still_rings() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let phone = json!({"identity": {"phone": {"id": OTHER_PHONE}}});
    let cases = [
        (
            json!({"targets": vec![phone.clone(); 26]}),
            StatusCode::BAD_REQUEST,
            "this one has 26",
        ),
        (
            json!({"targets": [phone.clone()], "timeout": 10}),
            StatusCode::BAD_REQUEST,
            "timeout",
        ),
        (
            json!({"targets": [phone.clone()], "timeout": 91}),
            StatusCode::BAD_REQUEST,
            "timeout",
        ),
        (
            json!({"targets": []}),
            StatusCode::BAD_REQUEST,
            "this one has 0",
        ),
        (
            json!({"targets": [{"identity": {"phone": {"id": "+19999999999"}}}]}),
            StatusCode::NOT_FOUND,
            "+19999999999",
        ),
    ];
    for (body, status, text) in cases {
        let (got, error) = act_as_bot(&h, &id, "redirect", body.clone()).await;
        assert_eq!(got, status, "{body}: {error:#}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(text),
            "{error:#}"
        );
    }
    assert_eq!(view(&h, &id).await["state"], "incoming");
    // Two targets ring at once and answer at the same time: the first in the request wins.
    let (status, _) = act_as_bot(
        &h,
        &id,
        "redirect",
        json!({"targets": [phone, {"identity": {"phone": {"id": PHONE}}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let v = view_until(&h, &id, |v| !v["redirect"]["answeredBy"].is_null()).await;
    assert_eq!(v["redirect"]["targets"], json!([OTHER_PHONE, PHONE]));
    assert_eq!(v["redirect"]["answeredBy"], OTHER_PHONE);
    assert_eq!(party_state(&v, PHONE), "missed");
    view_until(&h, &id, |v| v["state"] == "terminated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_twice_is_a_conflict_and_an_outgoing_call_cannot_be_answered() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let answer = service_hosted_answer(&h.callback_uri);
    assert_eq!(
        act_as_bot(&h, &id, "answer", answer.clone()).await.0,
        StatusCode::ACCEPTED
    );
    for action in ["answer", "reject", "redirect"] {
        let body = if action == "redirect" {
            json!({"targets": [{"identity": {"phone": {"id": OTHER_PHONE}}}]})
        } else {
            answer.clone()
        };
        let (status, error) = act_as_bot(&h, &id, action, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {error:#}");
        assert!(assert_graph_error(&error, "Conflict").contains(&id));
    }
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );

    let (status, _, created) = h.post_call(&h.seed_request("example01-request.json")).await;
    assert_eq!(status, StatusCode::CREATED);
    let outgoing = created["id"].as_str().unwrap();
    let (status, error) = act_as_bot(&h, outgoing, "answer", answer).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error:#}");
    assert_eq!(view(&h, outgoing).await["direction"], "outgoing");
    assert_eq!(
        h.delete(&format!("/communications/calls/{outgoing}")).await,
        StatusCode::NO_CONTENT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_ends_an_unanswered_call_and_a_late_answer_is_not_found() {
    let h = Harness::start(EmulatorConfig {
        incoming_answer_timeout: Duration::from_millis(400),
        ..config()
    })
    .await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let ended = wait_for_terminated(&h, &id).await;
    assert_eq!(ended["resultInfo"]["code"], 408);
    assert_eq!(ended["resultInfo"]["subcode"], 10057);
    no_call_left(&h).await;
    let (status, error) =
        act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_graph_error(&error, "NotFound");
    let v = view(&h, &id).await;
    assert_eq!(v["state"], "terminated");
    assert_eq!(v["result"]["subcode"], 10057);
    assert_eq!(party_state(&v, CALLING_BOT), "left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answering_a_meeting_invitation_needs_a_join_permission() {
    // The calling bot without Calls.JoinGroupCall.All (nor the guest variant).
    let mut directory = appmedia_emulator::Directory::seed();
    for app in &mut directory.applications {
        if app.id == CALLING_BOT {
            app.roles.retain(|r| !r.starts_with("Calls.JoinGroupCall"));
        }
    }
    let h = Harness::start(EmulatorConfig {
        directory,
        ..incoming_config()
    })
    .await;
    let (id, _) = ring_bot(&h, BOB, INSTANCE, Some("1234567")).await;
    let (status, error) =
        act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_graph_error(&error, "Forbidden").contains("Calls.JoinGroupCall.All"));
    // A peer-to-peer call needs no join permission: John's call is answered.
    let (p2p, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let (status, _) = act_as_bot(&h, &p2p, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The refused answer left the invitation ringing: it can still be rejected.
    let (status, _) = act_as_bot(&h, &id, "reject", json!({"reason": "none"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        h.delete(&format!("/communications/calls/{p2p}")).await,
        StatusCode::NO_CONTENT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosting_the_media_needs_calls_access_media_all() {
    let h = Harness::start_as(
        EmulatorConfig {
            directory: test_directory("incoming-parties.toml"),
            ..incoming_config()
        },
        PROMPT_BOT,
        PROMPT_BOT_SECRET,
    )
    .await;
    let (id, _) = ring_bot(&h, JOHN, PROMPT_BOT, None).await;
    let session = MediaSession::offer(TransportConfig::default())
        .await
        .unwrap();
    let app_hosted = json!({
        "callbackUri": h.callback_uri, "acceptedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": session.blob()},
    });
    let (status, error) = act_as_bot(&h, &id, "answer", app_hosted).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_graph_error(&error, "Forbidden").contains("Calls.AccessMedia.All"));
    // Still ringing: service-hosted media needs no media permission.
    let (status, _) = act_as_bot(&h, &id, "answer", service_hosted_answer(&h.callback_uri)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_calls_and_other_applications_calls_are_not_found() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let other = h.token_for(TEST_BOT, TEST_BOT_SECRET).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for action in ["answer", "reject", "redirect"] {
        let (status, error) = act(&h, &other, &id, action, json!({})).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{action} of another app's call"
        );
        assert_graph_error(&error, "NotFound");
        let (status, _) = act_as_bot(&h, &unknown, action, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action} of an unknown call");
    }
    let (status, _) = act(&h, "garbage", &id, "answer", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(view(&h, &id).await["state"], "incoming");
    assert_eq!(
        act_as_bot(&h, &id, "reject", json!({"reason": "busy"}))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_are_refused_naming_the_field() {
    let h = seed_harness().await;
    let (id, _) = ring_bot(&h, JOHN, CALLING_BOT, None).await;
    let service = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    let cases = [
        (
            json!({"callbackUri": h.callback_uri, "acceptedModalities": ["audio"]}),
            "mediaConfig",
        ),
        (
            json!({"callbackUri": h.callback_uri, "mediaConfig": service}),
            "acceptedModalities",
        ),
        (
            json!({"acceptedModalities": ["audio"], "mediaConfig": service}),
            "callbackUri",
        ),
        (
            json!({"callbackUri": "http://bot.contoso.com/cb", "acceptedModalities": ["audio"], "mediaConfig": service}),
            "callbackUri",
        ),
        (
            json!({"callbackUri": h.callback_uri, "acceptedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig"}}),
            "blob",
        ),
        (
            json!({"callbackUri": h.callback_uri, "acceptedModalities": ["audio"],
                "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "{\"version\": 1}"}}),
            "mediaConfig.blob",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = act_as_bot(&h, &id, "answer", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error:#}");
        assert!(
            assert_graph_error(&error, "BadRequest").contains(field),
            "{error:#}"
        );
    }
    let response = h
        .http
        .post(format!(
            "{}/communications/calls/{id}/answer",
            h.emulator.graph_url()
        ))
        .bearer_auth(h.token().await)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    // None of that answered the call.
    assert_eq!(view(&h, &id).await["state"], "incoming");
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let ended = wait_for_terminated(&h, &id).await;
    assert_eq!(ended["resultInfo"]["code"], 200);
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_refuses_bad_requests_clearly() {
    let h = seed_harness().await;
    let put = |app: &str, body: Value| {
        let path = format!("/applications/{app}/calling-webhook");
        let h = &h;
        async move { control(h, reqwest::Method::PUT, &path, Some(body)).await }
    };
    let (status, error) = put("nope", json!({"url": "http://127.0.0.1:1/x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"]["message"].as_str().unwrap().contains("nope"));
    let (status, error) = put(CALLING_BOT, json!({"url": "ftp://x"})).await;
    assert_eq!(
        (status, error["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("BadRequest"))
    );
    let (status, _) = put(CALLING_BOT, json!({"uri": "http://x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = h
        .http
        .put(format!(
            "{}/applications/{CALLING_BOT}/calling-webhook",
            h.emulator.control_url()
        ))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let (status, _) = control(
        &h,
        reqwest::Method::GET,
        "/applications/nope/calling-webhook",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No webhook yet: 409.
    let (status, error) = ring(&h, json!({"from": JOHN, "to": CALLING_BOT})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error:#}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("calling-webhook")
    );
    assert_eq!(
        set_webhook(&h, CALLING_BOT, Some(&h.callback_uri)).await,
        StatusCode::NO_CONTENT
    );
    let cases = [
        (
            json!({"from": "nobody", "to": CALLING_BOT}),
            StatusCode::NOT_FOUND,
            "from",
        ),
        (
            json!({"from": "+19999999999", "to": INSTANCE_PHONE}),
            StatusCode::NOT_FOUND,
            "from",
        ),
        (
            json!({"from": JOHN, "to": "nobody"}),
            StatusCode::NOT_FOUND,
            "to",
        ),
        (
            json!({"from": JOHN, "to": INSTANCE, "meeting": "0"}),
            StatusCode::NOT_FOUND,
            "meeting",
        ),
        (
            json!({"from": JOHN, "to": CALLING_BOT, "meeting": "1234567"}),
            StatusCode::BAD_REQUEST,
            "instance",
        ),
        (
            json!({"from": PHONE, "to": CALLING_BOT}),
            StatusCode::BAD_REQUEST,
            "phone number",
        ),
        (json!({"from": JOHN}), StatusCode::BAD_REQUEST, "to"),
        (
            json!({"from": JOHN, "to": CALLING_BOT, "colour": 1}),
            StatusCode::BAD_REQUEST,
            "colour",
        ),
    ];
    for (body, status, text) in cases {
        let (got, error) = ring(&h, body.clone()).await;
        assert_eq!(got, status, "{body}: {error:#}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(text),
            "{body}: {error:#}"
        );
    }
    let (status, _) = control(&h, reqwest::Method::GET, "/calls/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.emulator.live_calls(), 0);
    assert!(h.received.all().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calling_webhook_can_change_at_run_time() {
    let h = seed_harness().await;
    let first = format!("{}?webhook=1", h.callback_uri);
    let second = format!("{}?webhook=2", h.callback_uri);
    assert_eq!(
        set_webhook(&h, CALLING_BOT, Some(&first)).await,
        StatusCode::NO_CONTENT
    );
    let (_, got) = control(
        &h,
        reqwest::Method::GET,
        &format!("/applications/{CALLING_BOT}/calling-webhook"),
        None,
    )
    .await;
    assert_eq!(got, json!({"url": first}));
    let (_, a) = ring(&h, json!({"from": JOHN, "to": CALLING_BOT})).await;
    assert_eq!(
        set_webhook(&h, CALLING_BOT, Some(&second)).await,
        StatusCode::NO_CONTENT
    );
    let (_, b) = ring(&h, json!({"from": JOHN, "to": CALLING_BOT})).await;
    for (call, webhook) in [(&a, &first), (&b, &second)] {
        let id = call["callId"].as_str().unwrap();
        let offered =
            wait_for_notification(&h, id, |n| n["value"][0]["changeType"] == "created").await;
        assert_eq!(resource_data(&offered)["callbackUri"], **webhook);
        assert_eq!(
            act_as_bot(&h, id, "reject", json!({})).await.0,
            StatusCode::ACCEPTED
        );
        // Without an answer's callbackUri, the end goes to the webhook the call was offered at.
        assert_eq!(wait_for_terminated(&h, id).await["callbackUri"], **webhook);
    }
    assert_eq!(
        set_webhook(&h, CALLING_BOT, None).await,
        StatusCode::NO_CONTENT
    );
    let (_, got) = control(
        &h,
        reqwest::Method::GET,
        &format!("/applications/{CALLING_BOT}/calling-webhook"),
        None,
    )
    .await;
    assert_eq!(got, json!({"url": null}));
    assert_eq!(
        ring(&h, json!({"from": JOHN, "to": CALLING_BOT})).await.0,
        StatusCode::CONFLICT
    );
    no_call_left(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_scripts_ring_the_bot_at_their_time() {
    let directory = appmedia_emulator::Directory::from_toml_str(&format!(
        r#"{}
        [[incoming_calls]]
        from = "{PHONE}"
        to = "{INSTANCE_PHONE}"
        at_ms = 600
        [[incoming_calls]]
        from = "{JOHN}"
        to = "{TEST_BOT}"
        at_ms = 0
        "#,
        appmedia_emulator::directory::SEED_DIRECTORY_TOML
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let h = Harness::start(EmulatorConfig {
        directory,
        incoming_answer_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    // Set before the first script fires; the second app has no webhook: skipped, logged.
    assert_eq!(
        set_webhook(&h, CALLING_BOT, Some(&h.callback_uri)).await,
        StatusCode::NO_CONTENT
    );
    let offered = h.received.wait_for(1).await;
    let call = resource_data(&offered[0]);
    assert_eq!(call["source"]["identity"]["phone"]["id"], PHONE);
    let id = call["id"].as_str().unwrap().to_owned();
    // Nobody answers it: the deadline ends it.
    assert_eq!(
        wait_for_terminated(&h, &id).await["resultInfo"]["code"],
        408
    );
    let (_, all) = control(&h, reqwest::Method::GET, "/calls", None).await;
    assert_eq!(all["calls"].as_array().unwrap().len(), 1, "{all:#}");
    no_call_left(&h).await;
}
