//! Incoming calls in the tests: the control API (`{control_url}/…`) and the bot's actions
//! (`POST /communications/calls/{id}/answer|reject|redirect`) over plain HTTP.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::bot::WAIT;
use super::{Harness, resource_data};

/// `{control_url}{path}` with an optional JSON body: (status, body).
pub async fn control(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = h
        .http
        .request(method, format!("{}{path}", h.emulator.control_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sets application `app`'s calling webhook; the status.
pub async fn set_webhook(h: &Harness, app: &str, url: Option<&str>) -> StatusCode {
    control(
        h,
        reqwest::Method::PUT,
        &format!("/applications/{app}/calling-webhook"),
        Some(json!({ "url": url })),
    )
    .await
    .0
}

/// `POST {control_url}/incoming-calls`.
pub async fn ring(h: &Harness, body: Value) -> (StatusCode, Value) {
    control(h, reqwest::Method::POST, "/incoming-calls", Some(body)).await
}

/// Points the harness's app at the harness's callback, makes `from` call `to` (201) and
/// returns the call id and the `created` notification the bot got.
pub async fn ring_bot(h: &Harness, from: &str, to: &str, meeting: Option<&str>) -> (String, Value) {
    assert_eq!(
        set_webhook(h, &h.app_id, Some(&h.callback_uri)).await,
        StatusCode::NO_CONTENT
    );
    let mut body = json!({ "from": from, "to": to });
    if let Some(meeting) = meeting {
        body["meeting"] = json!(meeting);
    }
    let (status, created) = ring(h, body).await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let id = created["callId"].as_str().expect("a callId").to_owned();
    let offered = wait_for_notification(h, &id, |n| n["value"][0]["changeType"] == "created").await;
    (id, offered)
}

/// Waits (bounded) for a notification about call `id` that `matches`, and returns it.
pub async fn wait_for_notification(
    h: &Harness,
    id: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = h.received.all().into_iter().find(|n| {
            n["value"][0]["resourceUrl"]
                .as_str()
                .is_some_and(|url| url.starts_with(&format!("/communications/calls/{id}")))
                && matches(n)
        });
        if let Some(n) = found {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no such notification for {id} in {:#?}",
            h.received.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `terminated` notification of call `id`.
pub async fn wait_for_terminated(h: &Harness, id: &str) -> Value {
    let n = wait_for_notification(h, id, |n| {
        n["value"][0]["resourceData"]["state"] == "terminated"
    })
    .await;
    assert_eq!(n["value"][0]["changeType"], "deleted", "{n:#}");
    resource_data(&n).clone()
}

/// `POST /communications/calls/{id}/{action}` with `app`'s token (the harness's by default).
pub async fn act(
    h: &Harness,
    token: &str,
    id: &str,
    action: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = h
        .http
        .post(format!(
            "{}/communications/calls/{id}/{action}",
            h.emulator.graph_url()
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The same with the harness's own token.
pub async fn act_as_bot(h: &Harness, id: &str, action: &str, body: Value) -> (StatusCode, Value) {
    let token = h.token().await;
    act(h, &token, id, action, body).await
}

/// A service-hosted answer body with the seed's prompts.
pub fn service_hosted_answer(callback_uri: &str) -> Value {
    json!({
        "callbackUri": callback_uri,
        "acceptedModalities": ["audio"],
        "mediaConfig": {
            "@odata.type": "#microsoft.graph.serviceHostedMediaConfig",
            "preFetchMedia": [{"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "beep"}]
        }
    })
}

/// `GET {control_url}/calls/{id}` (200 asserted).
pub async fn view(h: &Harness, id: &str) -> Value {
    let (status, body) = control(h, reqwest::Method::GET, &format!("/calls/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

/// Polls the control API's view of call `id` until `done` holds (bounded) and returns it.
pub async fn view_until(h: &Harness, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = view(h, id).await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "call {id} never got there: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The state of the party `id` in a control view.
pub fn party_state(view: &Value, id: &str) -> String {
    view["parties"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == id))
        .and_then(|p| p["state"].as_str())
        .unwrap_or_else(|| panic!("no party {id} in {view:#}"))
        .to_owned()
}

/// Every property path of a JSON document (`value[].resourceData.source.identity.user.id`).
pub fn property_paths(value: &Value) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, at: String, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    out.insert(path.clone());
                    walk(child, path, out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{at}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}

/// A fixture of `tests/fixtures/incoming/`.
pub fn incoming_fixture(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/incoming")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
