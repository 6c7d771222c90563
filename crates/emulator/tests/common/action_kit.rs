//! What the in-call action tests share: the directory `fixtures/in-call-parties.toml` with
//! its tone files written into a media directory of the test's own, recordings on, the
//! parties' ids, call builders, notification queries, the documentation-shape comparison
//! and tone measures over windows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use appmedia_emulator::EmulatorConfig;
use appmedia_model::{Call, Identity, IdentitySet, ParticipantInfo};
use appmedia_signalling::builders::{
    GroupCallBuilder, JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder, PstnCallBuilder,
};
use serde_json::Value;

use super::bot::{WAIT, scratch_dir};
use super::{Harness, TENANT, config, test_directory};

/// The bot's application instance (its PSTN identity).
pub const APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
/// Silent phone the bot calls first.
pub const CALLER: &str = "+12345678901";
/// Transfer target: says 1 kHz, hangs up 3 s after answering.
pub const TARGET: &str = "+12345678902";
/// Declines.
pub const DECLINER: &str = "+12345678903";
/// Never answers.
pub const NO_ANSWER: &str = "+12345678904";
/// PSTN invitee: says 700 Hz.
pub const PSTN_INVITEE: &str = "+12345678905";
/// Rings 20 s.
pub const SLOW_PHONE: &str = "+12345678906";
/// Silent Teams peer (present in the meeting).
pub const UMA: &str = "0b8a4e1c-0000-4000-8000-000000000021";
/// Teams invitee: says 1300 Hz.
pub const VIC: &str = "0b8a4e1c-0000-4000-8000-000000000022";
/// Echoes the bot 300 ms later.
pub const EKO: &str = "0b8a4e1c-0000-4000-8000-000000000023";
/// Presses 1 then # 1.5 s after answering.
pub const KAY: &str = "0b8a4e1c-0000-4000-8000-000000000024";
/// Says 440 Hz.
pub const ANN: &str = "0b8a4e1c-0000-4000-8000-000000000025";
/// The meeting (Uma present).
pub const MEETING: &str = "1234567";

/// The emulator with the in-call directory, recording, and one bot.
pub struct InCall {
    pub h: Harness,
    pub recordings: PathBuf,
    media: PathBuf,
}

impl InCall {
    pub async fn start() -> InCall {
        Self::start_with(|_| {}).await
    }

    /// With `change` applied to the config (short timeouts...).
    pub async fn start_with(change: impl FnOnce(&mut EmulatorConfig)) -> InCall {
        let media = scratch_dir();
        for (file, freq, seconds) in [
            ("tone-1000.wav", 1000.0, 10.0),
            ("tone-700.wav", 700.0, 10.0),
            ("tone-1300.wav", 1300.0, 10.0),
            ("tone-440.wav", 440.0, 10.0),
            ("prompt-beep.wav", 1000.0, 0.3),
        ] {
            appmedia_testkit::audio::write_tone_wav(&media.join(file), freq, 48_000, seconds, 0.3);
        }
        let recordings = scratch_dir();
        let mut config = EmulatorConfig {
            directory: test_directory("in-call-parties.toml"),
            media_samples_dir: media.clone(),
            recordings_dir: Some(recordings.clone()),
            ..config()
        };
        change(&mut config);
        InCall {
            h: Harness::start(config).await,
            recordings,
            media,
        }
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.media);
        let _ = std::fs::remove_dir_all(&self.recordings);
    }
}

fn instance_source() -> ParticipantInfo {
    ParticipantInfo::new(IdentitySet::application_instance(
        Identity::new(APP_INSTANCE).with_display_name("Calling Bot"),
    ))
}

/// A PSTN call from the bot's application instance to `number`.
pub fn pstn(h: &Harness, number: &str) -> impl FnOnce(String) -> Call + use<> {
    let (callback, number) = (h.callback_uri.clone(), number.to_owned());
    move |blob| {
        PstnCallBuilder::new(
            callback,
            instance_source(),
            number,
            TENANT,
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    }
}

/// A peer-to-peer call from the bot to Teams user `user`.
pub fn p2p(h: &Harness, user: &str) -> impl FnOnce(String) -> Call + use<> {
    let (callback, user) = (h.callback_uri.clone(), user.to_owned());
    move |blob| {
        PeerToPeerCallBuilder::new(callback, Identity::new(user), Media::app_hosted(blob))
            .build()
            .unwrap()
    }
}

/// A group call from the bot to `users`.
pub fn group(h: &Harness, users: &[&str]) -> impl FnOnce(String) -> Call + use<> {
    let callback = h.callback_uri.clone();
    let users: Vec<Identity> = users.iter().map(|u| Identity::new(*u)).collect();
    move |blob| {
        GroupCallBuilder::new(
            callback,
            ParticipantInfo::new(IdentitySet::application(Identity::new(super::CALLING_BOT))),
            users,
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    }
}

/// The bot joins the meeting by its id.
pub fn meeting(h: &Harness) -> impl FnOnce(String) -> Call + use<> {
    let callback = h.callback_uri.clone();
    move |blob| {
        JoinMeetingIdBuilder::new(
            callback,
            MEETING,
            Some("psw123".into()),
            TENANT,
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    }
}

/// The notifications about call `call_id` (its state, roster and operations).
pub fn of_call(all: &[Value], call_id: &str) -> Vec<Value> {
    let prefix = format!("/communications/calls/{call_id}");
    all.iter()
        .filter(|b| {
            b["value"][0]["resourceUrl"]
                .as_str()
                .is_some_and(|u| u == prefix || u.starts_with(&format!("{prefix}/")))
        })
        .cloned()
        .collect()
}

/// The call-state notifications of `call_id`, as their states.
pub fn states_of(h: &Harness, call_id: &str) -> Vec<String> {
    let url = format!("/communications/calls/{call_id}");
    h.received
        .all()
        .iter()
        .filter(|b| b["value"][0]["resourceUrl"] == url.as_str())
        .filter_map(|b| {
            b["value"][0]["resourceData"]["state"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The first call-state notification of `call_id` in `state`.
pub fn state_notification(h: &Harness, call_id: &str, state: &str) -> Option<Value> {
    let url = format!("/communications/calls/{call_id}");
    h.received.all().into_iter().find(|b| {
        b["value"][0]["resourceUrl"] == url.as_str()
            && b["value"][0]["resourceData"]["state"] == state
    })
}

/// Waits (bounded) until `check` holds for the notifications received, and returns them.
pub async fn wait_until(h: &Harness, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = h.received.all();
        if check(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in {:#?}",
            super::describe_all(&all)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until call `call_id` has had a call-state notification in `state`.
pub async fn wait_for_call_state(h: &Harness, call_id: &str, state: &str) -> Value {
    wait_until(h, &format!("state {state} of {call_id}"), |_| {
        state_notification(h, call_id, state).is_some()
    })
    .await;
    state_notification(h, call_id, state).unwrap()
}

/// Waits for the notification that operation `op` of `call_id` ended; its resourceData.
pub async fn operation_done(h: &Harness, call_id: &str, op: &str) -> Value {
    let url = format!("/communications/calls/{call_id}/operations/{op}");
    let all = wait_until(h, &format!("end of {url}"), |all| {
        all.iter()
            .any(|b| b["value"][0]["resourceUrl"] == url.as_str())
    })
    .await;
    let n = all
        .into_iter()
        .find(|b| b["value"][0]["resourceUrl"] == url.as_str())
        .unwrap();
    assert_eq!(n["value"][0]["changeType"], "deleted", "{n:#}");
    n
}

/// Whether a roster entry is the user or phone `key`.
pub fn is_party(participant: &Value, key: &str) -> bool {
    let identity = &participant["info"]["identity"];
    identity["user"]["id"] == key || identity["phone"]["id"] == key
}

/// The roster of `call_id` as the service lists it (`GET …/participants`): the same for every
/// kind of call, while roster notifications go to group calls and meetings only.
pub async fn participants(h: &Harness, call_id: &str) -> Vec<Value> {
    let (status, body) = h
        .get(&format!("/communications/calls/{call_id}/participants"))
        .await;
    match status.as_u16() {
        200 => body["value"].as_array().cloned().unwrap_or_default(),
        // The call ended: nobody is in it.
        404 => Vec::new(),
        other => panic!("listing the participants of {call_id}: {other} {body:#}"),
    }
}

/// The latest roster notification of `call_id` (full, or a delta's participants), if any.
pub fn latest_roster_notification(h: &Harness, call_id: &str) -> Option<Vec<Value>> {
    let url = format!("/communications/calls/{call_id}/participants");
    h.received
        .all()
        .iter()
        .rev()
        .find(|b| b["value"][0]["resourceUrl"] == url.as_str())
        .and_then(|b| b["value"][0]["resourceData"].as_array().cloned())
}

/// The roster notifications `call_id`'s bot got.
pub fn roster_notifications(h: &Harness, call_id: &str) -> usize {
    let url = format!("/communications/calls/{call_id}/participants");
    (h.received.all().iter())
        .filter(|b| b["value"][0]["resourceUrl"] == url.as_str())
        .count()
}

/// Waits until the roster of `call_id` satisfies `check`; returns that roster.
pub async fn wait_for_roster(
    h: &Harness,
    call_id: &str,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let roster = participants(h, call_id).await;
        if check(&roster) {
            return roster;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {roster:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The media source id the roster gives party `key` in `call_id` (waiting for it to be there).
pub async fn source_id(h: &Harness, call_id: &str, key: &str) -> u32 {
    wait_for_roster(h, call_id, &format!("{key} in the roster"), |r| {
        r.iter().any(|p| is_party(p, key))
    })
    .await
    .iter()
    .find(|p| is_party(p, key))
    .and_then(|p| p["mediaStreams"][0]["sourceId"].as_str()?.parse().ok())
    .unwrap_or_else(|| panic!("{key} is not in the roster of {call_id}"))
}

/// POSTs `body` (JSON) to `{graph}{path}` with the bot's token: (status, Location, body).
pub async fn post(h: &Harness, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    let token = h.token().await;
    post_with(h, &token, path, body).await
}

/// Like [`post`], with `token`.
pub async fn post_with(
    h: &Harness,
    token: &str,
    path: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let response = h
        .http
        .post(format!("{}{path}", h.emulator.graph_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap_or_default();
    (
        status,
        location,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// A documentation example of `tests/fixtures/actions/`.
pub fn docs(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/actions")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every property the documentation example `name` has, `actual` has too, with a value of the
/// same JSON type (the example's `null` matches anything; arrays are compared element 0 to
/// element 0). `ignore`: property names left out (see the fixtures' README).
pub fn assert_docs_shape(actual: &Value, name: &str, ignore: &[&str]) {
    fn walk(actual: &Value, docs: &Value, path: &str, ignore: &[&str]) {
        match (docs, actual) {
            (Value::Null, _) => {}
            (Value::Object(d), Value::Object(a)) => {
                for (key, value) in d {
                    if ignore.contains(&key.as_str()) {
                        continue;
                    }
                    // The transfer page's failure example writes resultInfo's subcode so.
                    let key = if key == "subCode" { "subcode" } else { key };
                    let Some(mine) = a.get(key) else {
                        panic!("{path}.{key} is missing");
                    };
                    walk(mine, value, &format!("{path}.{key}"), ignore);
                }
            }
            (Value::Array(d), Value::Array(a)) => {
                if let (Some(d), Some(a)) = (d.first(), a.first()) {
                    walk(a, d, &format!("{path}[0]"), ignore);
                }
            }
            (Value::String(_), Value::String(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_)) => {}
            (d, a) => panic!("{path}: the documentation has {d}, the emulator {a}"),
        }
    }
    walk(actual, &docs(name), name, ignore);
}

// One definition of the tone measures, shared with the SDK's tests.
#[allow(unused_imports)] // each test binary uses some of them
pub use appmedia_testkit::audio::{hears, silent_at, tone_power, windows};

/// Creates a call without media (the documentation's opaque blob) and returns its id; the
/// call is not waited for.
pub async fn create(h: &Harness, build: impl FnOnce(String) -> Call) -> String {
    let created = super::bot::graph_client(h)
        .create_call(&build(super::BLOB.to_owned()))
        .await
        .expect("201 Created");
    created.call_id().expect("an id").to_owned()
}

/// Creates a call without media and waits until it is established.
pub async fn established(h: &Harness, build: impl FnOnce(String) -> Call) -> String {
    let id = create(h, build).await;
    wait_for_call_state(h, &id, "established").await;
    id
}

/// The Graph error of a refused request: (status, code, message).
pub fn refusal(status: u16, body: &Value) -> (u16, String, String) {
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
    (status, code, message)
}
