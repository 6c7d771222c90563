//! The in-call actions through the HTTP API: transfer (failures, refusals, group calls),
//! invite (failures, `replacesCallId`, refusals), mute / unmute, participant mute and
//! removal (roster and audio), keepAlive and its deadline, recording status, screen sharing
//! role, and the Graph errors every action shares (unknown, foreign and ended calls, bad
//! bodies). The media actions (tones, recordResponse) are in `tests/media_actions.rs`; the
//! seed's PSTN scenarios in `tests/pstn_scenarios.rs`.

mod common;

use std::time::Duration;

use appmedia_model::{
    ChangeScreenSharingRoleRequest, Identity, IdentitySet, InvitationParticipantInfo,
    InviteParticipantsRequest, OperationStatus, ParticipantInfo, RecordingStatus,
    ScreenSharingRole, TransferRequest, UpdateRecordingStatusRequest,
};
use common::action_kit::*;
use common::bot::*;
use common::*;
use serde_json::{Value, json};

fn phone(number: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::phone(Identity::new(number)))
}

fn user(id: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::user(Identity::new(id)))
}

fn transfer_to(number: &str) -> Value {
    json!({"transferTarget": {"endpointType": "default", "identity": {"phone": {"id": number}}}})
}

fn calls(id: &str, action: &str) -> String {
    format!("/communications/calls/{id}/{action}")
}

/// The participant id of `key` in the roster of `call_id` (waiting for it to be there).
async fn participant_id(h: &Harness, call_id: &str, key: &str) -> String {
    wait_for_roster(h, call_id, &format!("{key} in the roster"), |r| {
        r.iter().any(|p| is_party(p, key))
    })
    .await
    .iter()
    .find(|p| is_party(p, key))
    .and_then(|p| p["id"].as_str().map(str::to_owned))
    .unwrap_or_else(|| panic!("{key} is not in the roster of {call_id}"))
}

/// The bot's entry (no user or phone identity) in a roster.
fn bot_entry(roster: &[Value]) -> Value {
    roster
        .iter()
        .find(|p| {
            let identity = &p["info"]["identity"];
            identity.get("user").is_none() && identity.get("phone").is_none()
        })
        .cloned()
        .expect("the bot is in the roster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_whose_target_declines_or_does_not_answer_fails_and_the_call_goes_on() {
    let setup =
        InCall::start_with(|c| c.default_ringing_timeout = Duration::from_millis(800)).await;
    let h = &setup.h;
    let id = established(h, pstn(h, CALLER)).await;

    let (status, _, body) = post(h, &calls(&id, "transfer"), &transfer_to(DECLINER)).await;
    assert_eq!(status, 202, "{body:#}");
    wait_until(h, "the failed transfer", |_| {
        states_of(h, &id).ends_with(&["transferring".into(), "established".into()])
    })
    .await;
    let failed = of_call(&h.received.all(), &id)
        .into_iter()
        .rev()
        .find(|b| resource_data(b)["state"] == "established")
        .unwrap();
    assert_docs_shape(&failed, "transfer-failed.notification.json", &[]);
    let result = &resource_data(&failed)["resultInfo"];
    assert_eq!(
        (&result["code"], &result["subcode"]),
        (&500.into(), &7000.into())
    );
    assert!(
        result["message"].as_str().unwrap().contains("declined"),
        "{result}"
    );
    let (_, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(call["state"], "established");

    // A target that never answers: the call's ringing timeout ends the attempt. Meanwhile a
    // second transfer is a conflict.
    let (status, _, _) = post(h, &calls(&id, "transfer"), &transfer_to(NO_ANSWER)).await;
    assert_eq!(status, 202);
    let (status, _, body) = post(h, &calls(&id, "transfer"), &transfer_to(TARGET)).await;
    assert_eq!(status, 409, "{body:#}");
    assert_graph_error(&body, "Conflict");
    wait_until(h, "the unanswered transfer", |_| {
        states_of(h, &id)
            .iter()
            .filter(|s| *s == "established")
            .count()
            == 3
    })
    .await;
    let (_, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(call["state"], "established");
    h.delete(&format!("/communications/calls/{id}")).await;
    wait_for_call_state(h, &id, "terminated").await;
    assert_eq!(h.emulator.live_calls(), 0);
    assert_eq!(h.emulator.transferred_calls(), 0);
}

/// The seed: "the group call created does not support chat or recording" — its resource has
/// no chatInfo, and recording it is refused (a peer-to-peer call records, see below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_the_bot_created_has_no_chat_and_cannot_be_recorded() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let id = established(h, group(h, &[UMA, ANN])).await;
    let (status, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status.as_u16(), 200);
    assert!(call["chatInfo"].is_null(), "{call:#}");
    let (status, _, body) = post(
        h,
        &calls(&id, "updateRecordingStatus"),
        &json!({"clientContext": "c", "status": "recording"}),
    )
    .await;
    let (status, code, message) = refusal(status, &body);
    assert_eq!((status, code.as_str()), (400, "BadRequest"), "{body:#}");
    assert!(message.contains("does not support recording"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_transfers_the_participant_it_names() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let id = established(h, group(h, &[UMA, ANN])).await;
    wait_for_roster(h, &id, "Uma and Ann", |r| r.len() == 3).await;
    // Without a transferee the service cannot tell who goes.
    let to_vic = json!({"transferTarget": {"identity": {"user": {"id": VIC}}}});
    let (status, _, body) = post(h, &calls(&id, "transfer"), &to_vic).await;
    let (status, code, message) = refusal(status, &body);
    assert_eq!((status, code.as_str()), (400, "BadRequest"));
    assert!(message.starts_with("transferee"), "{message}");
    // A group call is not from an application instance: its target is a Teams user.
    let mut request = TransferRequest::new(user(VIC));
    let mut transferee = ParticipantInfo::new(IdentitySet::user(Identity::new(ANN)));
    transferee.participant_id = participant_id(h, &id, ANN).await.into();
    request.transferee = transferee.into();
    graph_client(h).transfer(&id, &request).await.unwrap();
    let end = wait_for_call_state(h, &id, "terminated").await;
    assert_eq!(resource_data(&end)["resultInfo"]["subcode"], 7015);
    // Ann and Vic talk on until the conversation's limit: the call is gone from the bot.
    assert_eq!(h.get(&format!("/communications/calls/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_are_refused_as_graph_refuses_them() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let ringing = create(h, pstn(h, SLOW_PHONE)).await;
    let (status, _, body) = post(h, &calls(&ringing, "transfer"), &transfer_to(TARGET)).await;
    let (status, code, message) = refusal(status, &body);
    assert_eq!((status, code.as_str()), (400, "BadRequest"), "{message}");
    assert!(message.contains("not established"), "{message}");

    let id = established(h, pstn(h, CALLER)).await;
    let path = calls(&id, "transfer");
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "transferTarget: required"),
        (json!({"transferTarget": 3}), "transferTarget:"),
        (
            json!({"transferTarget": {"identity": {}}}),
            "transferTarget.identity:",
        ),
        (
            json!({"transferTarget": {"identity": {"phone": {"id": "+19999999999"}}}}),
            "transferTarget.identity.phone.id",
        ),
        (
            json!({"transferTarget": {"identity": {"user": {"id": "no-such-user"}}}}),
            "transferTarget.identity.user.id",
        ),
        (
            transfer_to(CALLER),
            "transferTarget: +12345678901 is already",
        ),
        (
            json!({"transferTarget": {"identity": {"phone": {"id": TARGET}}}, "transferee": {}}),
            "transferee.participantId: required",
        ),
        (
            json!({"transferTarget": {"identity": {"phone": {"id": TARGET}}},
                   "transferee": {"participantId": "nobody"}}),
            "transferee.participantId: no participant",
        ),
        (
            json!({"transferTarget": {"identity": {"phone": {"id": TARGET}},
                   "replacesCallId": "no-such-call"}}),
            "transferTarget.replacesCallId",
        ),
        (
            json!({"transferTarget": {"identity": {"phone": {"id": TARGET}},
                   "replacesCallId": id}}),
            "transferTarget.replacesCallId",
        ),
    ];
    for (body, expected) in cases {
        let (status, _, answer) = post(h, &path, &body).await;
        let (status, code, message) = refusal(status, &answer);
        assert_eq!(
            (status, code.as_str()),
            (400, "BadRequest"),
            "{body}: {answer:#}"
        );
        assert!(message.starts_with(expected), "{body}: {message}");
        assert_graph_error(&answer, "BadRequest");
    }
    // Not JSON, not JSON at all.
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .bearer_auth(h.token().await)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .bearer_auth(h.token().await)
        .header("content-type", "text/plain")
        .body("transfer please")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);

    // A call that is not from an application instance does not go to the PSTN.
    let teams = established(h, p2p(h, UMA)).await;
    let (status, _, body) = post(h, &calls(&teams, "transfer"), &transfer_to(TARGET)).await;
    assert_eq!(status, 400);
    assert!(
        refusal(status, &body).2.contains("application instance"),
        "{body:#}"
    );
    // Meetings are not transferred.
    let meeting = established(h, meeting(h)).await;
    let (status, _, body) = post(h, &calls(&meeting, "transfer"), &transfer_to(TARGET)).await;
    assert_eq!(status, 400, "{body:#}");
    // Nothing changed: all three calls are still there.
    assert_eq!(h.emulator.live_calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_declined_or_not_answered_fails_its_operation() {
    let setup =
        InCall::start_with(|c| c.default_ringing_timeout = Duration::from_millis(800)).await;
    let h = &setup.h;
    let id = established(h, p2p(h, UMA)).await;
    let client = graph_client(h);
    for (invitee, code) in [(DECLINER, 603), (NO_ANSWER, 408)] {
        let op = client
            .invite_participants(&id, &InviteParticipantsRequest::new(vec![phone(invitee)]))
            .await
            .unwrap();
        let done = operation_done(h, &id, op.id.value().unwrap()).await;
        let data = &done["value"][0]["resourceData"];
        assert_eq!(data["status"], "failed", "{done:#}");
        assert_eq!(data["resultInfo"]["code"], code, "{done:#}");
    }
    // Nobody joined: the bot and Uma.
    assert_eq!(participants(h, &id).await.len(), 2);
    let (_, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(call["state"], "established");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_replacing_a_peer_to_peer_call_moves_its_party_over() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let other = established(h, p2p(h, VIC)).await;
    let id = established(h, p2p(h, UMA)).await;
    // Two peer-to-peer calls: their bot gets call states only, no roster (the seed).
    assert_eq!(roster_notifications(h, &id), 0);
    assert_eq!(roster_notifications(h, &other), 0);
    let mut vic = user(VIC);
    vic.replaces_call_id = other.clone().into();
    // Graph reads only the first participant of a request that replaces a call.
    let request = InviteParticipantsRequest::new(vec![vic, phone(PSTN_INVITEE)]);
    let op = graph_client(h)
        .invite_participants(&id, &request)
        .await
        .unwrap();
    assert_eq!(op.participants.value().map(Vec::len), Some(1), "{op:?}");
    let done = operation_done(h, &id, op.id.value().unwrap()).await;
    assert_eq!(done["value"][0]["resourceData"]["status"], "completed");
    let roster = wait_for_roster(h, &id, "Vic in the call", |r| r.len() == 3).await;
    assert!(roster.iter().any(|p| is_party(p, VIC)), "{roster:#?}");
    assert!(!roster.iter().any(|p| is_party(p, PSTN_INVITEE)));
    // A third party made it a group call: its roster is announced, first with everyone.
    wait_until(h, "the group call's first roster", |_| {
        latest_roster_notification(h, &id).is_some_and(|r| r.len() == 3)
    })
    .await;
    let end = wait_for_call_state(h, &other, "terminated").await;
    assert_eq!(resource_data(&end)["resultInfo"]["code"], 200, "{end:#}");
    assert_eq!(
        h.get(&format!("/communications/calls/{other}")).await.0,
        404
    );
    assert_eq!(h.emulator.live_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_refused_naming_the_field() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let ringing = create(h, pstn(h, SLOW_PHONE)).await;
    let invite = |who: Value| json!({"participants": [{"identity": who}]});
    let (status, _, body) = post(
        h,
        &calls(&ringing, "participants/invite"),
        &invite(json!({"phone": {"id": PSTN_INVITEE}})),
    )
    .await;
    assert!(
        refusal(status, &body).2.contains("not established"),
        "{body:#}"
    );

    let id = established(h, p2p(h, UMA)).await;
    let path = calls(&id, "participants/invite");
    let six: Vec<Value> = (0..6)
        .map(|_| json!({"identity": {"phone": {"id": PSTN_INVITEE}}}))
        .collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "participants: 0 participants"),
        (json!({"participants": []}), "participants: 0 participants"),
        (json!({"participants": six}), "participants: 6 participants"),
        (
            json!({"participants": [{"identity": 7}]}),
            "participants[0].identity",
        ),
        (
            invite(json!({"user": {"id": "nobody"}})),
            "participants[0].identity.user.id",
        ),
        (
            invite(json!({"user": {"id": UMA}})),
            "participants[0]: 0b8a4e1c",
        ),
        (
            json!({"participants": [{"identity": {"user": {"id": VIC}}},
                                     {"identity": {"phone": {"id": PSTN_INVITEE}}}]}),
            "participants: a peer-to-peer call invites one",
        ),
        (
            json!({"participants": [{"identity": {"user": {"id": VIC}}, "replacesCallId": id}]}),
            "participants[0].replacesCallId",
        ),
        (
            json!({"participants": [{"identity": {"user": {"id": VIC}}}],
                   "clientContext": "c".repeat(257)}),
            "clientContext",
        ),
    ];
    for (body, expected) in cases {
        let (status, _, answer) = post(h, &path, &body).await;
        let (status, code, message) = refusal(status, &answer);
        assert_eq!(
            (status, code.as_str()),
            (400, "BadRequest"),
            "{body}: {answer:#}"
        );
        assert!(message.starts_with(expected), "{body}: {message}");
    }
    assert_eq!(participants(h, &id).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_mutes_and_unmutes_itself_in_the_roster_and_in_the_audio() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // Eko repeats the bot 300 ms later: the bot hears its own voice only while unmuted. A
    // group call (Uma is silent): a peer-to-peer call's bot gets no roster notifications.
    let mut call = BotCall::start(h, true, group(h, &[EKO, UMA])).await;
    let (client, id) = (call.client.clone(), call.id.clone());
    let (heard, answers) = tokio::join!(
        call.run(200, |k| Some(tone_frame(600.0, 0.3, k))),
        async move {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let muted = client.mute(&id, Some("mute-ctx")).await;
            tokio::time::sleep(Duration::from_millis(1400)).await;
            let unmuted = client.unmute(&id, Some("unmute-ctx")).await;
            (muted, unmuted)
        }
    );
    let (muted, unmuted) = (answers.0.unwrap(), answers.1.unwrap());
    assert_eq!(muted.status.value(), Some(&OperationStatus::Completed));
    assert_eq!(
        muted.client_context.value().map(String::as_str),
        Some("mute-ctx")
    );
    assert_eq!(unmuted.kind(), Some("unmuteParticipantOperation"));
    let windows: Vec<(f64, f64, bool)> =
        vec![(0.5, 0.95, true), (1.7, 2.3, false), (3.2, 3.9, true)];
    for (from, to, echo) in windows {
        let p = tone_power(heard.window(from, to), 48_000.0, 600.0);
        println!("the bot's echo {from}-{to} s: {p:.2e}");
        assert_eq!(p > 1e-5, echo, "{from}-{to} s: {p:.2e}");
        if !echo {
            assert!(p < 1e-8, "muted, yet heard: {p:.2e}");
        }
    }
    // The roster said so, in the documentation's shape.
    let mut flags: Vec<bool> = h
        .received
        .all()
        .iter()
        .filter(|b| describe(b).starts_with("roster"))
        .filter_map(|b| {
            bot_entry(resource_data(b).as_array()?)
                .get("isMuted")?
                .as_bool()
        })
        .collect();
    // Each full roster names the bot; its flag changes twice.
    flags.dedup();
    assert_eq!(flags, [false, true, false], "{flags:?}");
    let muted_roster = h
        .received
        .all()
        .into_iter()
        .find(|b| {
            describe(b).starts_with("roster")
                && bot_entry(resource_data(b).as_array().unwrap())["isMuted"] == true
        })
        .unwrap();
    assert_docs_shape(
        &muted_roster,
        "mute.notification.json",
        &["region", "label", "user", "languageId"],
    );
    // Before the call is established, or after it ended: refused.
    call.client.delete_call(&call.id).await.unwrap();
    wait_for_call_state(h, &call.id, "terminated").await;
    let (status, _, body) = post(h, &calls(&call.id, "mute"), &json!({})).await;
    assert_eq!(status, 404, "{body:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_participant_is_muted_in_the_roster_and_in_the_audio() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, p2p(h, ANN)).await;
    let ann = participant_id(h, &call.id, ANN).await;
    let id = call.id.clone();
    let (heard, answer) = tokio::join!(call.run(150, |_| None), async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let token = h.token().await;
        post_with(
            h,
            &token,
            &calls(&id, &format!("participants/{ann}/mute")),
            &json!({"clientContext": "d45324c1-fcb5-430a-902c-f20af696537c"}),
        )
        .await
    });
    let (status, location, body) = answer;
    assert_eq!(status, 200, "{body:#}");
    assert_docs_shape(&body, "mute-participant.response.json", &[]);
    assert!(
        location
            .is_some_and(|l| l.ends_with(&format!("/operations/{}", body["id"].as_str().unwrap())))
    );
    let before = heard.window(0.4, 0.9);
    let after = heard.window(1.5, 2.9);
    assert!(hears(before, 48_000, 440.0), "Ann before her mute");
    assert!(
        silent_at(after, 48_000, 440.0),
        "Ann muted: {:.2e}",
        tone_power(after, 48_000.0, 440.0)
    );
    let roster = participants(h, &id).await;
    let entry = roster.iter().find(|p| is_party(p, ANN)).unwrap();
    assert_eq!(entry["isMuted"], true, "{entry:#}");
    // An unknown participant.
    let (status, _, body) = post(h, &calls(&id, "participants/nobody/mute"), &json!({})).await;
    assert_eq!(refusal(status, &body).0, 404, "{body:#}");
    assert_graph_error(&body, "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_leaves_the_roster_and_the_audio() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, group(h, &[ANN, UMA])).await;
    wait_for_roster(h, &call.id, "Ann and Uma", |r| r.len() == 3).await;
    let (ann, uma) = (
        participant_id(h, &call.id, ANN).await,
        participant_id(h, &call.id, UMA).await,
    );
    let id = call.id.clone();
    let client = call.client.clone();
    let ann_in = ann.clone();
    let (heard, removed) = tokio::join!(call.run(125, |_| None), async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        client.delete_participant(&id, &ann_in).await
    });
    removed.expect("204 No Content");
    assert!(hears(heard.window(0.4, 0.9), 48_000, 440.0));
    assert!(silent_at(heard.window(1.5, 2.4), 48_000, 440.0));
    let roster = wait_for_roster(h, &call.id, "Ann gone", |r| r.len() == 2).await;
    assert!(!roster.iter().any(|p| is_party(p, ANN)));
    let path = format!("/communications/calls/{}/participants/{ann}", call.id);
    assert_eq!(h.get(&path).await.0, 404);
    let (status, got) = h
        .get(&format!(
            "/communications/calls/{}/participants/{uma}",
            call.id
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["id"], uma.as_str());
    assert_eq!(h.delete(&path).await, 404, "gone already");
    // The bot itself is not removed this way.
    let bot = bot_entry(&roster)["id"].as_str().unwrap().to_owned();
    let bot_path = format!("/communications/calls/{}/participants/{bot}", call.id);
    assert_eq!(h.delete(&bot_path).await, 400);
    // Removing the last one ends the call.
    let uma_path = format!("/communications/calls/{}/participants/{uma}", call.id);
    assert_eq!(h.delete(&uma_path).await, 204);
    wait_for_call_state(h, &call.id, "terminated").await;
    assert_eq!(h.emulator.live_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_keep_alive_ends_and_one_with_it_lives() {
    let setup = InCall::start_with(|c| c.keep_alive_timeout = Duration::from_millis(1500)).await;
    let h = &setup.h;
    let kept = established(h, p2p(h, UMA)).await;
    let dropped = established(h, p2p(h, ANN)).await;
    let client = graph_client(h);
    for _ in 0..8 {
        client.keep_alive(&kept).await.expect("200 OK");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let end = wait_for_call_state(h, &dropped, "terminated").await;
    let result = &resource_data(&end)["resultInfo"];
    assert_eq!(result["code"], 408, "{end:#}");
    assert!(
        result["message"].as_str().unwrap().contains("keepAlive"),
        "{result}"
    );
    assert!(
        state_notification(h, &kept, "terminated").is_none(),
        "kept alive for 2.4 s"
    );
    let (status, _, body) = post(h, &calls(&dropped, "keepAlive"), &Value::Null).await;
    assert_eq!(status, 404, "{body:#}");
    assert_eq!(refusal(status, &body).1, "NotFound");
    // Without any body at all, as the documentation sends it.
    let response = h
        .http
        .post(format!(
            "{}{}",
            h.emulator.graph_url(),
            calls(&kept, "keepAlive")
        ))
        .bearer_auth(h.token().await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(h.emulator.live_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_status_and_screen_sharing_role_show_on_the_bots_roster_entry() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // A meeting: a bot-created group call cannot be recorded, and a peer-to-peer call's bot
    // gets no roster notifications.
    let id = established(h, meeting(h)).await;
    let client = graph_client(h);
    let (status, location, body) = post(
        h,
        &calls(&id, "updateRecordingStatus"),
        &json!({"clientContext": "clientContext-value", "status": "recording"}),
    )
    .await;
    assert_eq!(status, 200, "{body:#}");
    assert!(location.is_some());
    assert_docs_shape(&body, "update-recording-status.response.json", &[]);
    assert_eq!(body["status"], "completed");
    let roster = wait_for_roster(h, &id, "the bot recording", |r| {
        bot_entry(r)["recordingInfo"]["recordingStatus"] == "recording"
    })
    .await;
    let info = &bot_entry(&roster)["recordingInfo"];
    assert_eq!(
        info["initiator"]["application"]["id"], CALLING_BOT,
        "{info:#}"
    );
    let (_, listed) = h.get(&calls(&id, "participants")).await;
    assert!(
        listed["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["recordingInfo"]["recordingStatus"] == "recording"),
        "{listed:#}"
    );
    client
        .update_recording_status(
            &id,
            &UpdateRecordingStatusRequest::new(RecordingStatus::NotRecording, "ctx"),
        )
        .await
        .unwrap();
    wait_for_roster(h, &id, "the bot not recording", |r| {
        bot_entry(r)["recordingInfo"]["recordingStatus"] == "notRecording"
    })
    .await;
    let (status, _, body) = post(
        h,
        &calls(&id, "updateRecordingStatus"),
        &json!({"clientContext": "c", "status": "paused"}),
    )
    .await;
    assert!(refusal(status, &body).2.starts_with("status:"), "{body:#}");

    // Screen sharing: sharer adds the bot's sendOnly video-based screen-sharing stream.
    client
        .change_screen_sharing_role(
            &id,
            &ChangeScreenSharingRoleRequest::new(ScreenSharingRole::Sharer),
        )
        .await
        .expect("202 Accepted");
    let sharing = wait_for_roster(h, &id, "the bot sharing", |r| {
        bot_entry(r)["mediaStreams"]
            .as_array()
            .is_some_and(|s| s.len() == 2)
    })
    .await;
    let roster_note = h
        .received
        .all()
        .into_iter()
        .rev()
        .find(|b| describe(b).starts_with("roster"))
        .unwrap();
    let stream = bot_entry(&sharing)["mediaStreams"][1].clone();
    assert_eq!(stream["mediaType"], "videoBasedScreenSharing", "{stream:#}");
    assert_eq!(stream["direction"], "sendOnly");
    assert_eq!(stream["label"], "applicationsharing-video");
    // The documentation's roster shows one participant with its sharing stream only: the
    // bot's entry, cut to that stream, is compared with it.
    let mut entry = bot_entry(resource_data(&roster_note).as_array().unwrap());
    entry["mediaStreams"] = json!([stream]);
    let mut sharer_only = roster_note.clone();
    sharer_only["value"][0]["resourceData"] = json!([entry]);
    assert_docs_shape(
        &sharer_only,
        "change-screen-sharing-role.notification.json",
        &["region", "user", "languageId"],
    );
    let (_, listed) = h.get(&calls(&id, "participants")).await;
    assert!(listed.to_string().contains("videoBasedScreenSharing"));
    client
        .change_screen_sharing_role(
            &id,
            &ChangeScreenSharingRoleRequest::new(ScreenSharingRole::Viewer),
        )
        .await
        .unwrap();
    wait_for_roster(h, &id, "the bot viewing", |r| {
        bot_entry(r)["mediaStreams"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
    })
    .await;
    let (status, _, body) = post(
        h,
        &calls(&id, "changeScreenSharingRole"),
        &json!({"role": "presenter"}),
    )
    .await;
    assert!(refusal(status, &body).2.starts_with("role:"), "{body:#}");
}

/// Every action path, with a body it accepts in shape.
fn every_action(call: &str) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = [
        ("transfer", transfer_to(TARGET)),
        (
            "participants/invite",
            json!({"participants": [{"identity": {"phone": {"id": PSTN_INVITEE}}}]}),
        ),
        ("mute", json!({})),
        ("unmute", json!({})),
        ("participants/someone/mute", json!({})),
        ("keepAlive", Value::Null),
        ("subscribeToTone", json!({})),
        ("sendDtmfTones", json!({"tones": ["tone1"]})),
        ("recordResponse", json!({})),
        (
            "updateRecordingStatus",
            json!({"status": "recording", "clientContext": "c"}),
        ),
        ("changeScreenSharingRole", json!({"role": "viewer"})),
    ]
    .into_iter()
    .map(|(a, b)| (calls(call, a), b))
    .collect();
    list.push((
        calls(call, "playPrompt"),
        json!({"prompts": [{"mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav"}}]}),
    ));
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_404_on_unknown_foreign_and_ended_calls() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let ended = established(h, p2p(h, UMA)).await;
    h.delete(&format!("/communications/calls/{ended}")).await;
    wait_for_call_state(h, &ended, "terminated").await;
    let live = established(h, p2p(h, ANN)).await;
    let foreign = h.token_for(TEST_BOT, TEST_BOT_SECRET).await;
    let token = h.token().await;
    for (call, token) in [
        ("no-such-call", &token),
        (ended.as_str(), &token),
        (live.as_str(), &foreign),
    ] {
        for (path, body) in every_action(call) {
            let (status, _, answer) = post_with(h, token, &path, &body).await;
            assert_eq!(status, 404, "{path}: {answer:#}");
            assert_graph_error(&answer, "NotFound");
        }
        let response = h
            .http
            .delete(format!(
                "{}{}",
                h.emulator.graph_url(),
                calls(call, "participants/someone")
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404);
    }
    // Without a token: 401, whatever the call.
    for (path, body) in every_action(&live) {
        let response = h
            .http
            .post(format!("{}{path}", h.emulator.graph_url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{path}");
    }
    // The live call went on through all of it.
    let (_, call) = h.get(&format!("/communications/calls/{live}")).await;
    assert_eq!(call["state"], "established");
    assert_eq!(h.emulator.live_calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_naming_the_field() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let id = established(h, p2p(h, UMA)).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("mute", json!({"clientContext": 5}), "clientContext"),
        ("unmute", json!([1, 2]), "the body must be a JSON object"),
        ("sendDtmfTones", json!({"tones": "tone1"}), "tones"),
        ("sendDtmfTones", json!({"tones": []}), "tones: 0 tones"),
        (
            "sendDtmfTones",
            json!({"tones": ["tone1"], "delayBetweenTonesMs": -1}),
            "delayBetweenTonesMs",
        ),
        (
            "updateRecordingStatus",
            json!({"clientContext": "c"}),
            "status: required",
        ),
        ("changeScreenSharingRole", json!({}), "role: required"),
        ("changeScreenSharingRole", json!({"role": 1}), "role"),
        (
            "participants/invite",
            json!({"participants": {"identity": {}}}),
            "participants",
        ),
    ];
    for (action, body, expected) in cases {
        let (status, _, answer) = post(h, &calls(&id, action), &body).await;
        let (status, code, message) = refusal(status, &answer);
        assert_eq!(
            (status, code.as_str()),
            (400, "BadRequest"),
            "{action} {body}: {answer:#}"
        );
        assert!(message.starts_with(expected), "{action} {body}: {message}");
    }
    // And the call is fine.
    let (_, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(call["state"], "established");
}
