//! Each of the ten create-call examples of the Graph documentation (tests/fixtures/seed/),
//! sent to a real emulator by a bot built from the signalling crate: the 201 body is shaped
//! like the seed's response, and the notifications arrive, validated, in the documented
//! shapes and order.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

/// Properties the service generates: ours are fresh GUIDs, not the seed's.
const GENERATED: [&str; 3] = ["id", "callChainId", "myParticipantId"];

fn is_guid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

/// Every property of `seed`, at any depth (array items by position), that `ours` lacks.
fn missing_properties(seed: &Value, ours: &Value, path: &str, out: &mut Vec<String>) {
    match (seed, ours) {
        (Value::Object(seed), Value::Object(ours)) => {
            for (key, value) in seed {
                let at = format!("{path}/{key}");
                match ours.get(key) {
                    Some(got) => missing_properties(value, got, &at, out),
                    None => out.push(at),
                }
            }
        }
        (Value::Array(seed), Value::Array(ours)) => {
            for (i, (value, got)) in seed.iter().zip(ours).enumerate() {
                missing_properties(value, got, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The 201 body against the seed's response: every property the seed shows is there,
/// what the seed shows as null is null, generated ids are GUIDs, and what the service
/// echoes or decides (state, direction, source, targets, media, meeting) is the seed's.
fn assert_shaped_like_seed(example: &str, ours: &Value, seed: &Value) {
    let mut missing = Vec::new();
    missing_properties(seed, ours, "", &mut missing);
    // The seed's slip: examples 1 and 9 answer with two pre-fetched prompts their requests
    // never named; the service echoes the request's mediaConfig.
    missing.retain(|path| path != "/mediaConfig/preFetchMedia");
    assert!(
        missing.is_empty(),
        "{example}: properties the seed's response has and ours lacks: {missing:?}\n{ours:#}"
    );
    let ours_map = ours.as_object().expect("an object");
    for (key, expected) in seed.as_object().unwrap() {
        let got = ours_map
            .get(key)
            .unwrap_or_else(|| panic!("{example}: property {key} missing in {ours:#}"));
        if GENERATED.contains(&key.as_str()) {
            assert!(is_guid(got), "{example}: {key} = {got}");
        } else if expected.is_null() {
            assert!(got.is_null(), "{example}: {key} should be null, is {got}");
        }
    }
    for key in [
        "@odata.type",
        "@odata.context",
        "state",
        "direction",
        "requestedModalities",
    ] {
        assert_eq!(ours[key], seed[key], "{example}: {key}");
    }
    assert_eq!(
        ours["source"]["identity"], seed["source"]["identity"],
        "{example}: source"
    );
    let identities = |v: &Value| -> Vec<Value> {
        v["targets"]
            .as_array()
            .map(|t| t.iter().map(|t| t["identity"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(identities(ours), identities(seed), "{example}: targets");
    assert_eq!(
        ours["mediaConfig"]["@odata.type"], seed["mediaConfig"]["@odata.type"],
        "{example}: mediaConfig"
    );
    if seed["mediaConfig"].get("blob").is_some() {
        assert_eq!(ours["mediaConfig"]["blob"], BLOB, "{example}: blob echoed");
    }
    if seed.get("tenantId").is_some() {
        assert_eq!(ours["tenantId"], seed["tenantId"], "{example}: tenantId");
    }
    if seed["chatInfo"].is_object() {
        // Examples 7 and 8 show a shortened thread id; the meeting's is the directory's.
        assert_eq!(ours["chatInfo"]["threadId"], MEETING_THREAD, "{example}");
        assert_eq!(ours["chatInfo"]["messageId"], "0", "{example}");
        assert!(
            ours["chatInfo"]["replyChainMessageId"].is_null(),
            "{example}"
        );
    }
    assert_eq!(
        ours["meetingInfo"]["@odata.type"], seed["meetingInfo"]["@odata.type"],
        "{example}: meetingInfo"
    );
}

/// Sends example `nn` as `app`, checks the 201 and returns the call id.
async fn create(h: &Harness, nn: &str, request: Value) -> String {
    let (status, location, body) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED, "example{nn}: {body:#}");
    let id = body["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("{}/communications/calls/{id}", h.emulator.graph_url()).as_str())
    );
    let seed = seed_fixture(&format!("example{nn}-response.json"));
    assert_shaped_like_seed(&format!("example{nn}"), &body, &seed);
    assert_eq!(body["callbackUri"], h.callback_uri.as_str());
    id
}

/// The seed's notification fixture with its call id and callbackUri replaced by ours.
fn seed_notification(name: &str, seed_call_id: &str, call_id: &str, callback: &str) -> Value {
    let text = seed_fixture(name)
        .to_string()
        .replace(seed_call_id, call_id)
        .replace("https://bot.contoso.com/callback", callback);
    serde_json::from_str(&text).unwrap()
}

async fn hang_up_and_expect_terminated(h: &Harness, id: &str, already: usize) {
    assert_eq!(
        h.delete(&format!("/communications/calls/{id}")).await,
        StatusCode::NO_CONTENT
    );
    let all = h.received.wait_for(already + 1).await;
    let last = &all[already];
    assert_eq!(last["value"][0]["changeType"], "deleted");
    let data = resource_data(last);
    assert_eq!(data["state"], "terminated");
    assert_eq!(data["id"], id);
    assert_eq!(data["resultInfo"]["code"], 200);
    // The call is gone.
    let (status, body) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_graph_error(&body, "NotFound");
}

#[tokio::test]
async fn example01_p2p_service_hosted_with_delta_roster() {
    let h = Harness::start(config()).await;
    let id = create(&h, "01", h.seed_request("example01-request.json")).await;
    // A peer-to-peer call: state changes, no roster (delta or full), and — content sharing
    // asked for — the sessions John shares (the directory's script), as the seed shows.
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
    let seed_id = "2e1a0b00-2db4-4022-9570-243709c565ab";
    assert_eq!(
        all[0],
        seed_notification(
            "notification-establishing.json",
            seed_id,
            &id,
            &h.callback_uri
        )
    );
    assert_eq!(
        all[1],
        seed_notification(
            "notification-established.json",
            "2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116",
            &id,
            &h.callback_uri
        )
    );
    assert_seed_sharing(&h, &id, &all[2..5]);

    // GET shows the established call and its participants.
    let (status, call) = h.get(&format!("/communications/calls/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call["state"], "established");
    assert_eq!(call["answeredBy"]["identity"]["user"]["id"], JOHN);
    let (status, roster) = h
        .get(&format!("/communications/calls/{id}/participants"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(roster["value"].as_array().map(Vec::len), Some(2));
    hang_up_and_expect_terminated(&h, &id, 5).await;
}

/// Three content-sharing notifications (created, updated, deleted) in the seed's shape, one
/// session id throughout.
fn assert_seed_sharing(h: &Harness, id: &str, notifications: &[Value]) {
    let session = resource_data(&notifications[0])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(session.len(), 64);
    let seed_session = "F7D9EF30FF0A9BD3F64B274387FB8FF8E96B6CFBA8F87F8305A74DE99AF007BC";
    for (n, change) in notifications.iter().zip(["created", "updated", "deleted"]) {
        let expected = seed_notification(
            &format!("notification-content-sharing-{change}.json"),
            "421f4c00-4436-4c3a-9d9a-c4924cf98e67",
            id,
            &h.callback_uri,
        )
        .to_string()
        .replace(seed_session, &session);
        assert_eq!(*n, serde_json::from_str::<Value>(&expected).unwrap());
    }
}

/// Waits `for_ms` more and checks that call `id` got exactly the notifications `expected`
/// describes: nothing else arrived (a roster, say).
async fn nothing_more(h: &Harness, id: &str, expected: &[&str], for_ms: u64) {
    tokio::time::sleep(Duration::from_millis(for_ms)).await;
    let of_call: Vec<Value> = (h.received.all().into_iter())
        .filter(|n| {
            n["value"][0]["resourceUrl"]
                .as_str()
                .is_some_and(|u| u.contains(id))
        })
        .collect();
    assert_eq!(describe_all(&of_call), expected);
}

#[tokio::test]
async fn example02_p2p_app_hosted_full_roster() {
    let h = Harness::start(config()).await;
    let id = create(&h, "02", h.seed_request("example02-request.json")).await;
    // "For peer-to-peer calls, the expected notifications are only call state changes":
    // John answers after 300 ms and shares his screen (not asked for); nothing else comes.
    h.received.wait_for(2).await;
    let states = ["state:establishing", "state:established"];
    nothing_more(&h, &id, &states, 2500).await;
    // The roster is what the service lists, each participant with the seed's properties.
    let seed = seed_fixture("notification-roster.json");
    let keys = |p: &Value| {
        let mut k: Vec<String> = p.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let (status, listed) = h
        .get(&format!("/communications/calls/{id}/participants"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ours = listed["value"].as_array().unwrap();
    assert_eq!(ours.len(), 2, "{listed:#}");
    for participant in ours {
        assert_eq!(
            keys(participant),
            keys(&seed["value"][0]["resourceData"][0])
        );
    }
    hang_up_and_expect_terminated(&h, &id, 2).await;
}

async fn group_call(nn: &str, request: Value) {
    let h = Harness::start_as(config(), TEST_BOT, TEST_BOT_SECRET).await;
    let mut request = request;
    request["callbackUri"] = Value::String(h.callback_uri.clone());
    let id = create(&h, nn, request).await;
    // user1 answers after 200 ms, user2 after 400 ms.
    let all = h.received.wait_for(4).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "roster:2",
            "roster:3"
        ]
    );
    hang_up_and_expect_terminated(&h, &id, 4).await;
}

#[tokio::test]
async fn example03_group_call_service_hosted() {
    group_call("03", seed_fixture("example03-request.json")).await;
}

#[tokio::test]
async fn example04_group_call_app_hosted_with_the_blob_the_service_needs() {
    // The seed's request has no blob (see tests/fixtures/seed/README.md); the service
    // needs one, so it is added as the builders add it.
    let mut request = seed_fixture("example04-request.json");
    request["mediaConfig"]["blob"] = BLOB.into();
    group_call("04", request).await;
}

/// The meeting script of the built-in directory: the bot joins (John there, muted), Bob
/// joins, John unmutes, Bob shares (created/updated/deleted), Bob leaves.
async fn meeting(nn: &str, request: Value, seed_call_id: Option<&str>) {
    // The call's tenant is the token's: examples 5, 7 and 8 join as Fabrikam, whose
    // administrator consented to the bot, with a token for Fabrikam.
    let tenant = request["tenantId"].as_str().unwrap_or(TENANT).to_owned();
    let h = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, &tenant).await;
    let mut request = request;
    request["callbackUri"] = Value::String(h.callback_uri.clone());
    let id = create(&h, nn, request).await;
    let all = h.received.wait_for(6).await;
    // Content sharing is not asked for: no sharing notifications.
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "roster:2",
            "roster:3",
            "roster:3",
            "roster:2"
        ]
    );
    if let Some(seed_id) = seed_call_id {
        assert_eq!(
            all[0],
            seed_notification(
                "notification-meeting-establishing.json",
                seed_id,
                &id,
                &h.callback_uri
            )
        );
        assert_eq!(
            all[1],
            seed_notification(
                "notification-meeting-established.json",
                seed_id,
                &id,
                &h.callback_uri
            )
        );
    }
    let first = resource_data(&all[2]).as_array().unwrap();
    assert_eq!(first[1]["info"]["identity"]["user"]["id"], JOHN);
    assert_eq!(first[1]["isMuted"], true);
    // John's entry as the seed's roster has it: audio, video and screen-sharing streams
    // with their directions, each with its own source id.
    let seed = seed_fixture("notification-roster.json");
    let seed_john = &seed["value"][0]["resourceData"][0];
    let streams = |p: &Value| -> Vec<(Value, Value, Value)> {
        (p["mediaStreams"].as_array().unwrap().iter())
            .map(|s| {
                (
                    s["mediaType"].clone(),
                    s["direction"].clone(),
                    s["serverMuted"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(streams(&first[1]), streams(seed_john));
    let mut ids: Vec<&str> = (first[1]["mediaStreams"].as_array().unwrap().iter())
        .filter_map(|s| s["sourceId"].as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{:#}", first[1]);
    let unmuted = resource_data(&all[4]).as_array().unwrap();
    assert!(
        unmuted
            .iter()
            .any(|p| p["info"]["identity"]["user"]["id"] == JOHN && p["isMuted"] == false)
    );
    let after_leave = resource_data(&all[5]).as_array().unwrap();
    assert!(
        after_leave
            .iter()
            .all(|p| p["info"]["identity"]["user"]["id"] != BOB)
    );
    hang_up_and_expect_terminated(&h, &id, 6).await;
}

#[tokio::test]
async fn example05_join_meeting_by_organizer_service_hosted() {
    meeting(
        "05",
        seed_fixture("example05-request.json"),
        Some("2f1a1100-b174-40a0-aba7-0b405e01ed92"),
    )
    .await;
}

#[tokio::test]
async fn example06_join_meeting_by_organizer_app_hosted() {
    let mut request = seed_fixture("example06-request.json");
    request["mediaConfig"]["blob"] = BLOB.into();
    meeting("06", request, Some("2f1a1100-b174-40a0-aba7-0b405e01ed92")).await;
}

#[tokio::test]
async fn example07_join_meeting_by_join_id_and_passcode() {
    meeting("07", seed_fixture("example07-request.json"), None).await;
}

#[tokio::test]
async fn example08_join_meeting_by_join_id_without_passcode() {
    meeting("08", seed_fixture("example08-request.json"), None).await;
}

async fn pstn(nn: &str) {
    let h = Harness::start(config()).await;
    let id = create(&h, nn, h.seed_request(&format!("example{nn}-request.json"))).await;
    // A PSTN call is a two-party call: state changes only; the service lists the roster.
    h.received.wait_for(2).await;
    nothing_more(&h, &id, &["state:establishing", "state:established"], 1000).await;
    let (status, listed) = h
        .get(&format!("/communications/calls/{id}/participants"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let roster = listed["value"].as_array().unwrap();
    assert_eq!(
        roster[0]["info"]["identity"]["applicationInstance"]["id"],
        "3d913abb-aec0-4964-8fa6-3c6850c4f278"
    );
    assert_eq!(roster[1]["info"]["identity"]["phone"]["id"], "+12345678901");
    hang_up_and_expect_terminated(&h, &id, 2).await;
}

#[tokio::test]
async fn example09_pstn_service_hosted() {
    pstn("09").await;
}

#[tokio::test]
async fn example10_pstn_app_hosted() {
    pstn("10").await;
}

#[tokio::test]
async fn meeting_with_delta_roster_and_content_sharing() {
    let h = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let mut request = h.seed_request("example07-request.json");
    request["callOptions"] = json!({
        "@odata.type": "#microsoft.graph.outgoingCallOptions",
        "isContentSharingNotificationEnabled": true,
        "isDeltaRosterEnabled": true
    });
    let id = create(&h, "07", request).await;
    let all = h.received.wait_for(9).await;
    assert_eq!(
        describe_all(&all),
        [
            "state:establishing",
            "state:established",
            "delta:1:2",
            "delta:2:1",
            "delta:3:1",
            "sharing:created",
            "sharing:updated",
            "sharing:deleted",
            "delta:4:1"
        ]
    );
    // Bob leaving: removedState, as in the seed's delta roster.
    let left = &resource_data(&all[8])[0]["participants"][0];
    assert_eq!(left["info"]["identity"]["user"]["id"], BOB);
    assert_eq!(left["removedState"]["reason"], "Removed from roster");
    assert_eq!(left["rosterSequenceNumber"], 4);
    assert_seed_sharing(&h, &id, &all[5..8]);
    hang_up_and_expect_terminated(&h, &id, 9).await;
}
