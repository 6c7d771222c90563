//! An ACS bot's endpoints as the service (and an attacker) reach them, over real HTTP and
//! WebSocket on loopback: Event Grid's validation handshake, incoming calls, and what is
//! refused — unknown call tokens, malformed bodies, sockets for calls the bot never set up.

use appmedia_bot::acs::AcsService;
use appmedia_bot::{Bot, BotConfig};
use serde_json::json;

/// A bot on an ACS resource that is never contacted: these tests only talk to the bot.
async fn bot() -> Bot {
    let service = AcsService::from_connection_string(
        "endpoint=https://127.0.0.1:9/;accesskey=dGhlLWVtdWxhdG9ycy1rZXk=",
    )
    .expect("connection string");
    let mut config = BotConfig::for_acs(service);
    config.media.workers = 1;
    Bot::start(config).await.expect("bot starts")
}

fn http() -> reqwest::Client {
    appmedia_signalling::install_crypto_provider();
    reqwest::Client::new()
}

#[tokio::test]
async fn event_grid_validation_is_answered_with_the_code() {
    let bot = bot().await;
    let body = json!([{
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": "/subscriptions/x", "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                 "validationUrl": "https://rp-eastus2.eventgrid.azure.net/x"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-01-01T00:00:00Z", "metadataVersion": "1", "dataVersion": "1"}]);
    let response = http()
        .post(bot.callback_uri())
        .header("aeg-event-type", "SubscriptionValidation")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    // Without Event Grid's header, the same body proves nothing.
    let response = http()
        .post(bot.callback_uri())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    bot.shutdown(None).await;
}

#[tokio::test]
async fn an_incoming_call_reaches_the_bot_with_its_caller_and_callee() {
    let bot = bot().await;
    let body = json!([{
        "id": "1", "subject": "/phonenumber/18005550100",
        "eventType": "Microsoft.Communication.IncomingCall", "eventTime": "2024-01-01T00:00:00Z",
        "data": {
            "to": {"kind": "phoneNumber", "rawId": "4:+18005550100", "phoneNumber": {"value": "+18005550100"}},
            "from": {"kind": "phoneNumber", "rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}},
            "serverCallId": "server-call-1", "incomingCallContext": "opaque",
            "correlationId": "corr"}}]);
    let response = http()
        .post(bot.callback_uri())
        .header("aeg-event-type", "Notification")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let incoming = tokio::time::timeout(std::time::Duration::from_secs(5), bot.next_incoming())
        .await
        .expect("offered in time")
        .expect("an incoming call");
    assert_eq!(incoming.id(), "server-call-1");
    assert_eq!(incoming.caller_phone(), Some("+14255550123"));
    assert_eq!(
        incoming.called(),
        appmedia_bot::Called::Phone("+18005550100".into())
    );
    assert_eq!(bot.stats().incoming_received, 1);
    drop(incoming);
    bot.shutdown(None).await;
}

#[tokio::test]
async fn events_and_sockets_for_calls_the_bot_never_set_up_are_refused() {
    let bot = bot().await;
    let http = http();
    let event = json!([{"id": "e1", "source": "calling/callConnections/c1", "specversion": "1.0",
        "type": "Microsoft.Communication.CallConnected", "data": {"callConnectionId": "c1"}}]);
    let unknown = format!("{}/0123456789abcdef0123456789abcdef", bot.callback_uri());
    let response = http.post(&unknown).json(&event).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // Not an Event Grid delivery at all: refused, the bot goes on.
    for body in ["{not json", "42", r#"[{"eventType": "x"}]"#] {
        let response = http
            .post(bot.callback_uri())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
    }
    // A WebSocket for an unknown call: refused before the upgrade.
    let media = format!("ws://{}/acs/media/0123456789abcdef", bot.local_addr());
    let refused = tokio_tungstenite::connect_async(media.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected a 404, got {other:?}"),
    }
    assert_eq!(bot.stats().incoming_received, 0);
    bot.shutdown(None).await;
}
