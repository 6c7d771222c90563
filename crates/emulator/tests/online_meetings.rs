//! Graph's Get onlineMeeting for the directory's meetings: by join link, by join id, by id;
//! with the permission and the application access policy Graph wants; bad filters and other
//! tenants' meetings refused. The flow the seed describes: read the meeting, then join it
//! with what it says.

mod common;

use axum::http::StatusCode;
use common::*;
use reqwest::Method;

/// `$filter=…` URL-encoded as a client sends it.
fn filtered(user: &str, filter: &str) -> String {
    let filter: String = url::form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/users/{user}/onlineMeetings?$filter={filter}")
}

#[tokio::test]
async fn a_meeting_is_read_by_its_link_its_join_id_and_its_id_then_joined() {
    let h = Harness::start(config()).await;
    let meeting = h.emulator.directory().meetings[0].clone();
    let link = meeting.join_url();

    let (status, body) = h
        .get(&filtered(BOB, &format!("JoinWebUrl eq '{link}'")))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let found = &body["value"][0];
    assert_eq!(found["chatInfo"]["threadId"], MEETING_THREAD, "{body}");
    assert_eq!(found["chatInfo"]["messageId"], "0");
    assert_eq!(found["joinWebUrl"], link.as_str());
    assert_eq!(
        found["participants"]["organizer"]["identity"]["user"]["id"],
        BOB
    );
    assert_eq!(
        found["participants"]["organizer"]["identity"]["user"]["tenantId"],
        TENANT
    );
    assert_eq!(
        found["joinMeetingIdSettings"]["joinMeetingId"],
        meeting.join_meeting_id.as_str()
    );

    let (status, by_join_id) = h
        .get(&filtered(
            BOB,
            &format!(
                "joinMeetingIdSettings/joinMeetingId eq '{}'",
                meeting.join_meeting_id
            ),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_join_id["value"][0]["id"], found["id"]);

    let id = found["id"].as_str().unwrap();
    let (status, by_id) = h.get(&format!("/users/{BOB}/onlineMeetings/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["chatInfo"], found["chatInfo"]);

    // Another organizer's list does not have it; an unknown id is 404.
    let (status, other) = h
        .get(&filtered(JOHN, &format!("JoinWebUrl eq '{link}'")))
        .await;
    assert_eq!(
        (status, other["value"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (status, _) = h.get(&format!("/users/{BOB}/onlineMeetings/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What it says is what a join by organizer needs (seed example 5's shape).
    let mut request = h.seed_request("example05-request.json");
    request["chatInfo"] = found["chatInfo"].clone();
    request["meetingInfo"]["organizer"]["user"]["id"] = BOB.into();
    request["meetingInfo"]["organizer"]["user"]["tenantId"] = TENANT.into();
    request["tenantId"] = TENANT.into();
    let (status, _, call) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
}

#[tokio::test]
async fn reading_meetings_needs_the_permission_and_an_access_policy() {
    let h = Harness::start(config()).await;
    let link = h.emulator.directory().meetings[0].join_url();
    let path = filtered(BOB, &format!("JoinWebUrl eq '{link}'"));
    // TestBot: calling permissions, no OnlineMeetings.Read.All.
    let token = h.token_for(TEST_BOT, TEST_BOT_SECRET).await;
    let (status, body) = h.request_with(Method::GET, &token, &path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        assert_graph_error(&body, "Forbidden").contains("OnlineMeetings.Read.All"),
        "{body}"
    );
    // The permission without a policy covering the organizer.
    let mut cfg = config();
    for app in &mut cfg.directory.applications {
        if app.id == CALLING_BOT {
            app.online_meetings_policy = vec![JOHN.to_owned()];
        }
    }
    let h = Harness::start(cfg).await;
    let (status, body) = h.get(&path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        assert_graph_error(&body, "Forbidden").contains("application access policy"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_filters_and_other_tenants_meetings_are_refused() {
    let h = Harness::start(config()).await;
    for filter in [
        "subject eq 'Weekly'",
        "JoinWebUrl ne 'x'",
        "JoinWebUrl eq unquoted",
        "JoinWebUrl eq 'it's'",
    ] {
        let (status, body) = h.get(&filtered(BOB, filter)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}: {body}");
        assert!(
            assert_graph_error(&body, "BadRequest").contains("Invalid filter clause"),
            "{body}"
        );
    }
    // A link that is not a Teams link finds nothing rather than failing.
    let (status, body) = h
        .get(&filtered(BOB, "JoinWebUrl eq 'https://example.com/x'"))
        .await;
    assert_eq!(
        (status, body["value"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    // Fabrikam's token (the bot is consented there) does not see the home tenant's meeting.
    let fabrikam = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let id_path = {
        let (_, body) = h
            .get(&filtered(
                BOB,
                "joinMeetingIdSettings/joinMeetingId eq '1234567'",
            ))
            .await;
        format!(
            "/users/{BOB}/onlineMeetings/{}",
            body["value"][0]["id"].as_str().unwrap()
        )
    };
    let (status, _) = fabrikam.get(&id_path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The SDK's side: the signalling client finds the meeting by its link and by its join id,
/// and what it found makes the same join request as parsing the link.
#[tokio::test]
async fn the_client_finds_a_meeting_and_makes_its_join_request() {
    use appmedia_signalling::client::{GraphClient, GraphClientConfig, MeetingLookup};
    use appmedia_signalling::join_url::TeamsJoinLink;

    let h = Harness::start(config()).await;
    let meeting = h.emulator.directory().meetings[0].clone();
    let client = GraphClient::new(
        GraphClientConfig::for_base_url(h.emulator.graph_url().parse().unwrap()),
        Harness::token_source(&h.emulator, CALLING_BOT, CALLING_BOT_SECRET),
    )
    .unwrap();
    let link = meeting.join_url();
    let by_link = client
        .find_online_meeting(BOB, MeetingLookup::JoinWebUrl(&link))
        .await
        .unwrap()
        .expect("found by its link");
    let by_id = client
        .find_online_meeting(BOB, MeetingLookup::JoinMeetingId(&meeting.join_meeting_id))
        .await
        .unwrap()
        .expect("found by its join id");
    assert_eq!(by_link.id, by_id.id);
    let resolved = TeamsJoinLink::from_online_meeting(&by_link).expect("thread, organizer, tenant");
    assert_eq!(resolved, TeamsJoinLink::parse(&link).unwrap());
    assert!(
        client
            .find_online_meeting(JOHN, MeetingLookup::JoinWebUrl(&link))
            .await
            .unwrap()
            .is_none(),
        "John organises no meeting"
    );
    // Without the permission: Graph's 403 as a typed error.
    let limited = GraphClient::new(
        GraphClientConfig::for_base_url(h.emulator.graph_url().parse().unwrap()),
        Harness::token_source(&h.emulator, TEST_BOT, TEST_BOT_SECRET),
    )
    .unwrap();
    let err = limited
        .find_online_meeting(BOB, MeetingLookup::JoinWebUrl(&link))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
}
