//! The PSTN scenarios the Graph "create call" reference lists (tests/fixtures/seed), with the
//! in-call actions they end in, end to end with real audio: the bot (signalling client,
//! transport session, media-core pipeline) calls the emulator's scripted parties
//! (`fixtures/in-call-parties.toml`, each saying its own tone), transfers or invites, and the
//! test listens to what the bot heard and to what the parties heard (the emulator's
//! `{call}-heard-by-speaker-{id}.wav` recordings).
//!
//! The scenarios that start with an incoming call to the bot are the `incoming` work's.

mod common;

use std::time::Duration;

use appmedia_emulator::heard_recording_path;
use appmedia_model::{
    Identity, IdentitySet, InvitationParticipantInfo, InviteParticipantsRequest, OperationStatus,
    TransferRequest,
};
use common::action_kit::*;
use common::bot::*;
use common::*;

fn phone(number: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::phone(Identity::new(number)))
}

fn user(id: &str) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(IdentitySet::user(Identity::new(id)))
}

/// What party `key` heard in call `call_id`, once its conference ended: (rate, samples).
async fn heard_by(setup: &InCall, call_id: &str, source_id: u32) -> (u32, Vec<f32>) {
    let path = heard_recording_path(&setup.recordings, call_id, source_id);
    wait_for_wav(&path, 1.0).await;
    appmedia_testkit::audio::read_wav(&path)
}

/// Waits (bounded) until the conversations transferred away have ended.
async fn wait_for_transferred_calls_to_end(h: &Harness) {
    let deadline = std::time::Instant::now() + WAIT;
    while h.emulator.transferred_calls() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the transferred conversation never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The caller's ear around a transfer, in 100 ms windows: it heard the bot's 600 Hz, then
/// the target's 1 kHz, and never the bot again once the target was there.
fn assert_heard_bot_then_target(rate: u32, heard: &[f32]) {
    let w = windows(heard, rate, 100);
    let profile: String = w
        .iter()
        .map(|s| match (hears(s, rate, 600.0), hears(s, rate, 1000.0)) {
            (true, true) => 'X',
            (true, false) => 'b',
            (false, true) => 't',
            (false, false) => '.',
        })
        .collect();
    println!("caller's ear (100 ms windows; b = bot, t = target): {profile}");
    let first_target = profile.find('t').expect("the caller heard the target");
    assert!(
        profile[..first_target].contains('b'),
        "the caller heard the bot before the transfer: {profile}"
    );
    // One window of overlap at most, as the bot leaves on the tick the target joins.
    for (i, s) in w.iter().enumerate().skip(first_target + 2) {
        assert!(
            silent_at(s, rate, 600.0),
            "window {i}: the caller still hears the bot ({:.2e}): {profile}",
            tone_power(s, rate as f32, 600.0)
        );
    }
    let target_windows = profile[first_target..].matches('t').count();
    assert!(
        target_windows >= 20,
        "the target spoke to the caller for 2 s at least: {profile}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_call_from_the_bot_with_an_instance_id_to_a_pstn_number_then_blind_transfer_to_another_pstn()
 {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut bot = BotCall::start(h, true, pstn(h, CALLER)).await;
    let id = bot.id.clone();
    let caller = source_id(h, &id, CALLER).await;
    // The bot says 600 Hz; 1 s in it transfers the caller to the target (1 kHz).
    let client = bot.client.clone();
    let transfer_id = id.clone();
    let (_, transferred) = tokio::join!(
        bot.run(150, |k| Some(tone_frame(600.0, 0.3, k))),
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client
                .transfer(&transfer_id, &TransferRequest::new(phone(TARGET)))
                .await
        }
    );
    transferred.expect("202 Accepted");

    let terminated = wait_for_call_state(h, &id, "terminated").await;
    let states = states_of(h, &id);
    assert_eq!(
        states[states.len() - 3..],
        ["transferring", "transferAccepted", "terminated"],
        "{states:?}"
    );
    assert_docs_shape(
        &state_notification(h, &id, "transferring").unwrap(),
        "transfer-transferring.notification.json",
        &[],
    );
    assert_docs_shape(
        &state_notification(h, &id, "transferAccepted").unwrap(),
        "transfer-accepted.notification.json",
        &[],
    );
    assert_docs_shape(&terminated, "transfer-completed.notification.json", &[]);
    let result = &resource_data(&terminated)["resultInfo"];
    assert_eq!(
        (&result["code"], &result["subcode"], &result["message"]),
        (&0.into(), &7015.into(), &"GracefulTransferCompleted".into())
    );
    // The bot's call is gone; the caller and the target talk on without it.
    assert_eq!(h.get(&format!("/communications/calls/{id}")).await.0, 404);
    assert_eq!(h.emulator.live_calls(), 0);
    assert_eq!(h.emulator.transferred_calls(), 1);

    // The target hangs up 3 s after answering: the conversation ends, nothing is left.
    wait_for_transferred_calls_to_end(h).await;
    let (rate, heard) = heard_by(&setup, &id, caller).await;
    assert_heard_bot_then_target(rate, &heard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_pstn_call_then_consultative_transfer_to_the_pstn_the_bot_consulted() {
    let setup = InCall::start().await;
    let h = &setup.h;
    // Call A: the caller. Call B: the bot consults the target.
    let mut a = BotCall::start(h, true, pstn(h, CALLER)).await;
    let b = BotCall::start(h, false, pstn(h, TARGET)).await;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    wait_for_roster(h, &b_id, "the target in call B", |r| {
        r.iter().any(|p| is_party(p, TARGET))
    })
    .await;
    let caller = source_id(h, &a_id, CALLER).await;
    let client = a.client.clone();
    let transfer_id = a_id.clone();
    let mut target = phone(TARGET);
    target.replaces_call_id = b_id.clone().into();
    let (_, transferred) = tokio::join!(
        a.run(125, |k| Some(tone_frame(600.0, 0.3, k))),
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client
                .transfer(&transfer_id, &TransferRequest::new(target))
                .await
        }
    );
    transferred.expect("202 Accepted");

    // A ends as Graph's consultative example says; B, whose party moved, ends too.
    let a_end = wait_for_call_state(h, &a_id, "terminated").await;
    assert_docs_shape(
        &a_end,
        "transfer-consultative-completed.notification.json",
        &[],
    );
    assert_eq!(resource_data(&a_end)["terminationReason"], "AppTransferred");
    assert!(
        resource_data(&a_end).get("resultInfo").is_none(),
        "{a_end:#}"
    );
    let a_states = states_of(h, &a_id);
    assert_eq!(
        a_states[a_states.len() - 3..],
        ["transferring", "transferAccepted", "terminated"]
    );
    let b_end = wait_for_call_state(h, &b_id, "terminated").await;
    assert_eq!(
        resource_data(&b_end)["resultInfo"]["code"],
        200,
        "{b_end:#}"
    );
    assert_eq!(h.emulator.live_calls(), 0);

    wait_for_transferred_calls_to_end(h).await;
    let (rate, heard) = heard_by(&setup, &a_id, caller).await;
    assert_heard_bot_then_target(rate, &heard);
}

/// The bot (already in `call`) invites `invitee`, who says `freq`; the bot must hear it.
async fn invite_and_hear(
    h: &Harness,
    call: &mut BotCall,
    invitee: InvitationParticipantInfo,
    key: &str,
    freq: f32,
) {
    let client = call.client.clone();
    let id = call.id.clone();
    let request = InviteParticipantsRequest {
        client_context: "invite-ctx".to_owned().into(),
        ..InviteParticipantsRequest::new(vec![invitee])
    };
    let (heard, operation) = tokio::join!(call.run(150, |_| None), async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.invite_participants(&id, &request).await
    });
    let operation = operation.expect("200 with an inviteParticipantsOperation");
    assert_eq!(operation.status.value(), Some(&OperationStatus::Running));
    assert_eq!(
        operation.odata_type.value().map(String::as_str),
        Some("#microsoft.graph.inviteParticipantsOperation")
    );
    let op_id = operation.id.value().cloned().unwrap();
    let done = operation_done(h, &call.id, &op_id).await;
    // The documentation invites a user: a phone's identity is compared only where it is one.
    let ignore: &[&str] = if key.starts_with('+') {
        &["identity"]
    } else {
        &[]
    };
    assert_docs_shape(&done, "invite-participants.notification.json", ignore);
    let data = &done["value"][0]["resourceData"];
    assert_eq!(data["status"], "completed", "{done:#}");
    assert_eq!(data["clientContext"], "invite-ctx");
    let roster = wait_for_roster(h, &call.id, "the invitee in the roster", |r| {
        r.iter().any(|p| is_party(p, key))
    })
    .await;
    assert!(
        roster.len() >= 3,
        "the bot, its peer and the invitee: {roster:#?}"
    );

    // Heard by the bot: nothing at the invitee's tone before the invitation, the tone after.
    let before = heard.window(0.0, 0.4);
    let after = heard.window(1.8, 2.9);
    println!(
        "{freq} Hz in the bot's ear: before {:.2e}, after {:.2e}",
        tone_power(before, 48_000.0, freq),
        tone_power(after, 48_000.0, freq)
    );
    assert!(
        silent_at(before, 48_000, freq),
        "heard before the invitation"
    );
    assert!(
        hears(after, 48_000, freq),
        "the invitee is in the bot's mix"
    );
    call.client.delete_call(&call.id).await.unwrap();
    wait_for_call_state(h, &call.id, "terminated").await;
    assert_eq!(h.emulator.live_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_call_between_the_bot_and_a_pstn_peer_the_bot_invites_another_pstn() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, pstn(h, CALLER)).await;
    invite_and_hear(h, &mut call, phone(PSTN_INVITEE), PSTN_INVITEE, 700.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_call_between_the_bot_and_a_teams_user_the_bot_invites_another_pstn() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, p2p(h, UMA)).await;
    invite_and_hear(h, &mut call, phone(PSTN_INVITEE), PSTN_INVITEE, 700.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_call_between_the_bot_and_a_teams_user_the_bot_invites_another_teams_user() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, p2p(h, UMA)).await;
    invite_and_hear(h, &mut call, user(VIC), VIC, 1300.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_joins_a_scheduled_meeting_then_invites_a_pstn() {
    let setup = InCall::start().await;
    let h = &setup.h;
    let mut call = BotCall::start(h, true, meeting(h)).await;
    invite_and_hear(h, &mut call, phone(PSTN_INVITEE), PSTN_INVITEE, 700.0).await;
}
