//! `GraphClient`'s call-control actions against the scripted local Graph: the method, the
//! path and the exact JSON body of each (the v1.0 docs' examples, from the model crate's
//! fixtures), the decoding of each documented response, Graph errors, and the validation
//! and permission refusals that send nothing.

mod common;

use appmedia_model::{
    AnswerRequest, ChangeScreenSharingRoleRequest, CommsOperation, InviteParticipantsRequest,
    OperationStatus, PlayPromptRequest, RecordResponseRequest, RedirectRequest, RejectRequest,
    SendDtmfTonesRequest, TransferRequest, UpdateRecordingStatusRequest,
};
use appmedia_signalling::client::{ClientError, GraphClient};
use appmedia_signalling::permissions::{PermissionError, required_permissions_for_answer};
use axum::http::Method;
use common::graph::{
    Graph, Scripted, Seen, client_request_id, config, credentials, graph_error, setup,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const CALL: &str = "57dab8b1-894c-409a-b240-bd8beae78896";
const PARTICIPANT: &str = "2765eb15-01f8-47c6-b12b-c32111a4a86f";

fn typed<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_str(&common::action_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Value {
    typed(name)
}

fn path(tail: &str) -> String {
    format!("/v1.0/communications/calls/{CALL}/{tail}")
}

/// A 200 carrying the docs' response example.
fn operation_reply(name: &str) -> Scripted {
    Scripted::new(200, common::action_fixture(name)).header("content-type", "application/json")
}

fn accepted() -> Scripted {
    Scripted::new(202, "")
}

/// The one request the scripted Graph saw: method, path, and body as JSON (`None` for an
/// empty body).
fn only_request(graph: &Graph) -> (Method, String, Option<Value>) {
    let seen = graph.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let Seen {
        method, path, body, ..
    } = seen.into_iter().next().unwrap();
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap());
    (method, path, body)
}

fn assert_sent(graph: &Graph, path: &str, fixture: &str) {
    let (method, seen_path, body) = only_request(graph);
    assert_eq!(method, Method::POST);
    assert_eq!(seen_path, path);
    assert_eq!(
        body,
        Some(json(fixture)),
        "{path}: body differs from {fixture}"
    );
    let content_type = &graph.seen()[0].headers["content-type"];
    assert_eq!(content_type, "application/json");
}

/// A client whose token lacks `Calls.AccessMedia.All`.
async fn setup_without_media_role() -> (Graph, GraphClient) {
    let graph = Graph::new();
    *graph.roles.lock().unwrap() = vec!["Calls.Initiate.All".to_owned()];
    let base = graph.start().await;
    let client = GraphClient::new(config(&base), credentials(&base)).unwrap();
    (graph, client)
}

#[tokio::test]
async fn answer_posts_the_documented_body_and_takes_202() {
    for name in [
        "answer-app-hosted-media.request.json",
        "answer-service-hosted-media.request.json",
    ] {
        let (graph, _, client) = setup().await;
        graph.push(accepted());
        client.answer(CALL, &typed(name)).await.unwrap();
        assert_sent(&graph, &path("answer"), name);
    }
}

#[tokio::test]
async fn answer_with_every_parameter_goes_out_verbatim_when_validation_is_off() {
    // The docs' first example has "callbackUri": "callbackUri-value", which validation
    // refuses; with validation off the body still goes out exactly as given.
    let request: AnswerRequest = typed("answer.request.json");
    let (graph, base, _) = setup().await;
    let mut lenient = config(&base);
    lenient.validate_requests = false;
    let client = GraphClient::new(lenient, credentials(&base)).unwrap();
    graph.push(accepted());
    client.answer(CALL, &request).await.unwrap();
    assert_sent(&graph, &path("answer"), "answer.request.json");

    let (graph, _, strict) = setup().await;
    match strict.answer(CALL, &request).await.unwrap_err() {
        ClientError::Invalid(errors) => assert!(errors.names_field("callbackUri"), "{errors}"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn answer_accepts_a_200_with_a_body_too() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(200, r#"{"anything": "ignored"}"#));
    client
        .answer(CALL, &typed("answer-app-hosted-media.request.json"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reject_redirect_transfer_and_screen_sharing_take_202() {
    let cases: Vec<(&str, &str)> = vec![
        ("reject", "reject-busy.request.json"),
        ("reject", "reject-none.request.json"),
        ("redirect", "redirect.request.json"),
        ("redirect", "redirect-simulring.request.json"),
        ("redirect", "redirect-pstn.request.json"),
        ("transfer", "transfer.request.json"),
        ("transfer", "transfer-consultative.request.json"),
        ("transfer", "transfer-pstn.request.json"),
        ("transfer", "transfer-consultative-pstn.request.json"),
        ("transfer", "transfer-group-call.request.json"),
        (
            "changeScreenSharingRole",
            "change-screen-sharing-role.request.json",
        ),
    ];
    for (action, name) in cases {
        let (graph, _, client) = setup().await;
        graph.push(accepted());
        match action {
            "reject" => client.reject(CALL, &typed::<RejectRequest>(name)).await,
            "redirect" => client.redirect(CALL, &typed::<RedirectRequest>(name)).await,
            "transfer" => client.transfer(CALL, &typed::<TransferRequest>(name)).await,
            _ => {
                client
                    .change_screen_sharing_role(
                        CALL,
                        &typed::<ChangeScreenSharingRoleRequest>(name),
                    )
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_sent(&graph, &path(action), name);
    }
}

#[tokio::test]
async fn operation_actions_post_their_bodies_and_decode_the_documented_operations() {
    type Outcome = Result<CommsOperation, ClientError>;
    // (path tail, request fixture, response fixture)
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "participants/invite",
            "invite-participants.request.json",
            "invite-participants.response.json",
        ),
        (
            "participants/invite",
            "invite-participants-multiple.request.json",
            "invite-participants-multiple.response.json",
        ),
        ("mute", "mute.request.json", "mute.response.json"),
        ("unmute", "unmute.request.json", "unmute.response.json"),
        (
            "participants/2765eb15-01f8-47c6-b12b-c32111a4a86f/mute",
            "mute-participant.request.json",
            "mute-participant.response.json",
        ),
        (
            "playPrompt",
            "play-prompt.request.json",
            "play-prompt.response.json",
        ),
        (
            "recordResponse",
            "record-response.request.json",
            "record-response.response.json",
        ),
        (
            "subscribeToTone",
            "subscribe-to-tone.request.json",
            "subscribe-to-tone.response.json",
        ),
        (
            "sendDtmfTones",
            "send-dtmf-tones.request.json",
            "send-dtmf-tones.response.json",
        ),
        (
            "cancelMediaProcessing",
            "cancel-media-processing.request.json",
            "cancel-media-processing.response.json",
        ),
        (
            "updateRecordingStatus",
            "update-recording-status.request.json",
            "update-recording-status.response.json",
        ),
    ];
    for (tail, request, response) in cases {
        let (graph, _, client) = setup().await;
        graph.push(operation_reply(response));
        // The client-context-only actions take the context as a string; the fixture is
        // what that string must become.
        let context = json(request)["clientContext"].as_str().map(str::to_owned);
        let context = context.as_deref();
        let outcome: Outcome = match tail {
            "participants/invite" => client.invite_participants(CALL, &typed(request)).await,
            "mute" => client.mute(CALL, context).await,
            "unmute" => client.unmute(CALL, context).await,
            "playPrompt" => client.play_prompt(CALL, &typed(request)).await,
            "recordResponse" => client.record_response(CALL, &typed(request)).await,
            "subscribeToTone" => client.subscribe_to_tone(CALL, context).await,
            "sendDtmfTones" => client.send_dtmf_tones(CALL, &typed(request)).await,
            "cancelMediaProcessing" => client.cancel_media_processing(CALL, context).await,
            "updateRecordingStatus" => client.update_recording_status(CALL, &typed(request)).await,
            _ => client.mute_participant(CALL, PARTICIPANT, context).await,
        };
        let operation = outcome.unwrap_or_else(|e| panic!("{tail}: {e}"));
        assert_eq!(operation, typed::<CommsOperation>(response), "{tail}");
        assert_sent(&graph, &path(tail), request);
    }
}

#[tokio::test]
async fn a_client_context_action_without_a_context_sends_an_empty_object() {
    let (graph, _, client) = setup().await;
    graph.push(operation_reply("mute.response.json"));
    client.mute(CALL, None).await.unwrap();
    let (_, _, body) = only_request(&graph);
    assert_eq!(body, Some(serde_json::json!({})));
}

#[tokio::test]
async fn typed_requests_built_in_code_match_the_docs() {
    use appmedia_model::{MediaInfo, MediaPrompt, RecordingStatus, Tone};
    let (graph, _, client) = setup().await;
    graph.push(operation_reply("send-dtmf-tones.response.json"));
    let mut dtmf = SendDtmfTonesRequest::new(vec![
        Tone::Tone1,
        Tone::Tone2,
        Tone::Tone3,
        Tone::Tone4,
        Tone::Tone5,
        Tone::Tone6,
        Tone::Tone7,
        Tone::Tone8,
        Tone::Tone9,
        Tone::Tone0,
        Tone::Star,
        Tone::Pound,
    ]);
    dtmf.delay_between_tones_ms = 1000.into();
    dtmf.client_context = "e0be71f1-a14f-4cec-b65a-e7aba5db7c53".to_owned().into();
    client.send_dtmf_tones(CALL, &dtmf).await.unwrap();
    assert_sent(
        &graph,
        &path("sendDtmfTones"),
        "send-dtmf-tones.request.json",
    );

    let (graph, _, client) = setup().await;
    graph.push(operation_reply("play-prompt.response.json"));
    let mut media = MediaInfo::new(
        "https://cdn.contoso.com/beep.wav",
        "1D6DE2D4-CD51-4309-8DAA-70768651088E",
    );
    media.odata_type = "#microsoft.graph.mediaInfo".to_owned().into();
    let prompt = PlayPromptRequest::new(vec![MediaPrompt::new(media)])
        .with_client_context("d45324c1-fcb5-430a-902c-f20af696537c");
    client.play_prompt(CALL, &prompt).await.unwrap();
    assert_sent(&graph, &path("playPrompt"), "play-prompt.request.json");

    let (graph, _, client) = setup().await;
    graph.push(operation_reply("update-recording-status.response.json"));
    let status =
        UpdateRecordingStatusRequest::new(RecordingStatus::Recording, "clientContext-value");
    let operation = client.update_recording_status(CALL, &status).await.unwrap();
    assert_eq!(operation.status.value(), Some(&OperationStatus::Completed));
    assert!(operation.result_info.is_null());
    assert_sent(
        &graph,
        &path("updateRecordingStatus"),
        "update-recording-status.request.json",
    );
}

#[tokio::test]
async fn keep_alive_posts_nothing_and_takes_200() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(200, ""));
    client.keep_alive(CALL).await.unwrap();
    let (method, seen_path, body) = only_request(&graph);
    assert_eq!(
        (method, seen_path, body),
        (Method::POST, path("keepAlive"), None)
    );
    assert!(graph.seen()[0].headers.get("content-type").is_none());
}

#[tokio::test]
async fn delete_participant_is_a_delete_on_the_participant() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(204, ""));
    client.delete_participant(CALL, PARTICIPANT).await.unwrap();
    let (method, seen_path, body) = only_request(&graph);
    assert_eq!(
        (method, seen_path, body),
        (
            Method::DELETE,
            path(&format!("participants/{PARTICIPANT}")),
            None
        )
    );
}

#[tokio::test]
async fn a_bodyless_2xx_for_an_operation_gives_the_id_from_location_and_the_context_sent() {
    let (graph, _, client) = setup().await;
    graph.push(accepted().header(
        "location",
        format!("https://graph.microsoft.com/v1.0/communications/calls/{CALL}/operations/op-7"),
    ));
    let operation = client
        .play_prompt(CALL, &typed("play-prompt.request.json"))
        .await
        .unwrap();
    assert_eq!(operation.id.value().map(String::as_str), Some("op-7"));
    assert_eq!(
        operation.client_context.value().map(String::as_str),
        Some("d45324c1-fcb5-430a-902c-f20af696537c")
    );
    assert!(operation.status.is_absent());

    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(204, ""));
    let operation = client.subscribe_to_tone(CALL, None).await.unwrap();
    assert_eq!(operation, CommsOperation::default());
}

#[tokio::test]
async fn a_success_whose_body_is_not_an_operation_is_an_error() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(200, "<html>proxy</html>"));
    let err = client.unmute(CALL, None).await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedResponse { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_graph_error_body_is_a_typed_service_error() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(
        403,
        graph_error(
            "Forbidden",
            "Call is not in a state that allows playPrompt",
            "req-play",
        ),
    ));
    let err = client
        .play_prompt(CALL, &typed("play-prompt.request.json"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.code(), Some("Forbidden"));
    assert_eq!(err.request_id(), Some("req-play"));
    match &err {
        ClientError::Service(e) => {
            assert_eq!(e.method, Method::POST);
            assert!(e.url.ends_with(&path("playPrompt")), "{}", e.url);
            assert_eq!(e.client_request_id, client_request_id(&graph.seen()[0]));
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    assert_eq!(graph.seen().len(), 1, "a 403 is not retried");
}

#[tokio::test]
async fn an_unknown_call_is_a_404_service_error() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(
        404,
        graph_error("itemNotFound", "Unknown call", "req-404"),
    ));
    let err = client.keep_alive("no-such-call").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("itemNotFound"));
    assert_eq!(
        graph.seen()[0].path,
        "/v1.0/communications/calls/no-such-call/keepAlive"
    );
}

#[tokio::test]
async fn a_throttled_action_is_retried_with_the_same_client_request_id() {
    let (graph, _, client) = setup().await;
    graph
        .push(
            Scripted::new(503, graph_error("ServiceUnavailable", "busy", "r1"))
                .header("retry-after", "0"),
        )
        .push(operation_reply("send-dtmf-tones.response.json"));
    client
        .send_dtmf_tones(CALL, &typed("send-dtmf-tones.request.json"))
        .await
        .unwrap();
    let seen = graph.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(client_request_id(&seen[0]), client_request_id(&seen[1]));
    assert_eq!(seen[0].body, seen[1].body);
}

#[tokio::test]
async fn a_504_on_an_action_is_not_retried() {
    // playPrompt is not idempotent: a gateway timeout does not say whether it was queued.
    let (graph, _, client) = setup().await;
    graph
        .push(Scripted::new(
            504,
            graph_error("GatewayTimeout", "late", "r"),
        ))
        .push(operation_reply("play-prompt.response.json"));
    let err = client
        .play_prompt(CALL, &typed("play-prompt.request.json"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(504));
    assert_eq!(graph.seen().len(), 1);
}

fn assert_invalid(outcome: Result<impl std::fmt::Debug, ClientError>, field: &str) {
    match outcome {
        Err(ClientError::Invalid(errors)) => {
            assert!(errors.names_field(field), "{field}: {errors}")
        }
        other => panic!("expected a validation error on {field}, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_action_bodies_are_refused_before_sending() {
    use appmedia_model::{Identity, IdentitySet, InvitationParticipantInfo};
    let (graph, _, client) = setup().await;
    let user = |id: &str| InvitationParticipantInfo::new(IdentitySet::user(Identity::new(id)));

    let mut no_modalities: AnswerRequest = typed("answer-app-hosted-media.request.json");
    no_modalities.accepted_modalities = appmedia_model::Nullable::Absent;
    assert_invalid(
        client.answer(CALL, &no_modalities).await,
        "acceptedModalities",
    );
    let mut no_media: AnswerRequest = typed("answer-app-hosted-media.request.json");
    no_media.media_config = appmedia_model::Nullable::Null;
    assert_invalid(client.answer(CALL, &no_media).await, "mediaConfig");

    let too_many = RedirectRequest::new((0..26).map(|i| user(&format!("u{i}"))).collect());
    assert_invalid(client.redirect(CALL, &too_many).await, "targets");
    assert_invalid(
        client
            .redirect(CALL, &RedirectRequest::new(Vec::new()))
            .await,
        "targets",
    );
    let mut short = RedirectRequest::new(vec![user("u")]);
    short.timeout = 10.into();
    assert_invalid(client.redirect(CALL, &short).await, "timeout");

    assert_invalid(
        client.transfer(CALL, &TransferRequest::default()).await,
        "transferTarget",
    );
    assert_invalid(
        client
            .invite_participants(CALL, &InviteParticipantsRequest::new(Vec::new()))
            .await,
        "participants",
    );
    assert_invalid(
        client
            .send_dtmf_tones(CALL, &SendDtmfTonesRequest::new(Vec::new()))
            .await,
        "tones",
    );
    assert_invalid(
        client
            .record_response(CALL, &RecordResponseRequest::new(-5))
            .await,
        "maxRecordDurationInSeconds",
    );
    assert!(graph.seen().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn bad_ids_are_refused_before_sending() {
    let (graph, _, client) = setup().await;
    assert!(matches!(
        client.keep_alive("a/b").await,
        Err(ClientError::BadCallId(_))
    ));
    assert!(matches!(
        client.mute_participant(CALL, "", None).await,
        Err(ClientError::BadParticipantId(_))
    ));
    assert!(matches!(
        client.delete_participant(CALL, "x/../y").await,
        Err(ClientError::BadParticipantId(_))
    ));
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn answering_with_app_hosted_media_needs_the_media_role() {
    let (graph, client) = setup_without_media_role().await;
    let app_hosted: AnswerRequest = typed("answer-app-hosted-media.request.json");
    assert_eq!(
        required_permissions_for_answer(&app_hosted, false).to_string(),
        "Calls.AccessMedia.All"
    );
    // A group invitation also needs a way to join it.
    let group = required_permissions_for_answer(&app_hosted, true);
    assert_eq!(group.all_of.len(), 2);
    let text = group.to_string();
    for needed in [
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
        "Calls.AccessMedia.All",
    ] {
        assert!(text.contains(needed), "{text}");
    }
    match client.answer(CALL, &app_hosted).await.unwrap_err() {
        ClientError::Permission(PermissionError::Missing { missing, granted }) => {
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].to_string(), "Calls.AccessMedia.All");
            assert_eq!(granted, vec!["Calls.Initiate.All"]);
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
    assert!(graph.seen().is_empty(), "nothing was sent");

    // Service-hosted media needs nothing more, and neither do the other actions.
    let service_hosted: AnswerRequest = typed("answer-service-hosted-media.request.json");
    assert!(required_permissions_for_answer(&service_hosted, false).is_empty());
    graph
        .push(accepted())
        .push(operation_reply("play-prompt.response.json"));
    client.answer(CALL, &service_hosted).await.unwrap();
    client
        .play_prompt(CALL, &typed("play-prompt.request.json"))
        .await
        .unwrap();
    assert_eq!(graph.seen().len(), 2);
}

#[tokio::test]
async fn the_permission_check_can_be_turned_off() {
    let graph = Graph::new();
    *graph.roles.lock().unwrap() = vec!["Calls.Initiate.All".to_owned()];
    let base = graph.start().await;
    let mut unchecked = config(&base);
    unchecked.check_permissions = false;
    let client = GraphClient::new(unchecked, credentials(&base)).unwrap();
    graph.push(accepted());
    client
        .answer(CALL, &typed("answer-app-hosted-media.request.json"))
        .await
        .unwrap();
    assert_eq!(graph.seen().len(), 1);
}
