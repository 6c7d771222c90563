//! Notifications through the registry and the receiver: the seed's notifications in every
//! order, duplicated; delta rosters with gaps and duplicates; content sharing; what this
//! version does not model.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appmedia_model::{CallState, CommsNotifications, Nullable, Participant};
use appmedia_signalling::auth::CallbackAuth;
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver, FnSink};
use appmedia_signalling::roster::RosterPolicy;
use appmedia_signalling::sharing::SharingChange;
use appmedia_signalling::state::rank;
use serde_json::{Value, json};

const MEETING_CALL: &str = "2f1a1100-b174-40a0-aba7-0b405e01ed92";

fn batch(json: &str) -> CommsNotifications {
    serde_json::from_str(json).expect("a commsNotifications document")
}

fn seed_batch(name: &str) -> CommsNotifications {
    batch(&common::seed(name))
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            all.push(tail);
        }
    }
    all
}

/// Applies batches in order; returns the events.
fn run(registry: &CallRegistry, batches: &[CommsNotifications]) -> Vec<CallEvent> {
    let now = Instant::now();
    batches
        .iter()
        .flat_map(|b| registry.apply(b, now))
        .collect()
}

/// The states the events moved the call to, in order.
fn transitions(events: &[CallEvent]) -> Vec<CallState> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

fn assert_never_regresses(states: &[CallState]) {
    for pair in states.windows(2) {
        assert!(
            rank(&pair[0]) < rank(&pair[1]),
            "the call went from {} to {}",
            pair[0],
            pair[1]
        );
    }
}

#[test]
fn the_seed_establishing_and_established_pair_in_every_order_and_repeated() {
    let establishing = seed_batch("notification-meeting-establishing.json");
    let established = seed_batch("notification-meeting-established.json");
    let (a, b) = (&establishing, &established);
    let orders: Vec<Vec<&CommsNotifications>> = vec![
        vec![a, b],
        vec![b, a],
        vec![a, a, b],
        vec![b, b, a],
        vec![a, b, a, b],
        vec![b, a, b, a],
        vec![a, b, b],
        vec![b, a, a],
        vec![b, b, b, a, a, a],
    ];
    for order in orders {
        let registry = CallRegistry::default();
        let batches: Vec<_> = order.into_iter().cloned().collect();
        let events = run(&registry, &batches);
        let states = transitions(&events);
        assert_never_regresses(&states);
        assert_eq!(states.last(), Some(&CallState::Established));
        assert_eq!(
            states
                .iter()
                .filter(|s| **s == CallState::Established)
                .count(),
            1,
            "established is reported once"
        );
        assert_eq!(
            registry.state_of(MEETING_CALL),
            Some(CallState::Established)
        );
        // The meeting info the notifications carry is kept on the call.
        let organizer_kept = registry
            .with_call(MEETING_CALL, |agent| {
                agent.state().call().meeting_info.is_value()
            })
            .unwrap();
        assert!(organizer_kept);
    }
}

#[test]
fn the_seed_example_1_pair_names_two_different_calls() {
    // The seed's example 1 notifications carry different call ids (2e1a0b00-2db4… and
    // 2e1a0b00-b3c5…): they are routed to two calls, each in its own state.
    let registry = CallRegistry::default();
    run(
        &registry,
        &[
            seed_batch("notification-established.json"),
            seed_batch("notification-establishing.json"),
        ],
    );
    assert_eq!(
        registry.state_of("2e1a0b00-2db4-4022-9570-243709c565ab"),
        Some(CallState::Establishing)
    );
    assert_eq!(
        registry.state_of("2e1a0b00-b3c5-4b0f-99b3-c133bc1e6116"),
        Some(CallState::Established)
    );
}

fn call_state(state: &str, result_info: Option<Value>) -> CommsNotifications {
    let mut data = json!({"@odata.type": "#microsoft.graph.call", "state": state, "id": "c1"});
    if let Some(info) = result_info {
        data["resultInfo"] = info;
    }
    batch(
        &json!({"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
            "@odata.type": "#microsoft.graph.commsNotification",
            "changeType": if state == "terminated" { "deleted" } else { "updated" },
            "resourceUrl": "/communications/calls/c1",
            "resourceData": data}]})
        .to_string(),
    )
}

#[test]
fn a_whole_call_life_in_every_order_with_duplicates_ends_terminated_with_its_result() {
    let info = json!({"@odata.type": "#microsoft.graph.resultInfo", "code": 410, "subcode": 301005,
                      "message": "The call was ended because of a client media error."});
    let life = vec![
        call_state("establishing", None),
        call_state("established", None),
        call_state("terminating", Some(info.clone())),
        call_state("terminated", Some(info)),
    ];
    let mut orders = 0;
    for order in permutations(&life) {
        for duplicate in 0..order.len() {
            let mut batches = order.clone();
            batches.insert(duplicate + 1, order[duplicate].clone());
            let registry = CallRegistry::default();
            let events = run(&registry, &batches);
            let states = transitions(&events);
            assert_never_regresses(&states);
            assert_eq!(states.last(), Some(&CallState::Terminated));
            assert_eq!(registry.state_of("c1"), Some(CallState::Terminated));
            let (code, subcode) = registry
                .with_call("c1", |a| {
                    let info = a.state().result_info().expect("resultInfo kept").clone();
                    (info.code, info.subcode)
                })
                .unwrap();
            assert_eq!(
                (code, subcode),
                (Nullable::Value(410), Nullable::Value(301005))
            );
            orders += 1;
        }
    }
    assert_eq!(orders, 24 * 4);
}

#[test]
fn a_late_terminating_still_gives_the_reason() {
    let info = json!({"code": 500, "subcode": 9999, "message": "media processor shutdown"});
    let registry = CallRegistry::default();
    run(
        &registry,
        &[
            call_state("established", None),
            call_state("terminated", None),
            call_state("terminating", Some(info)),
        ],
    );
    assert_eq!(registry.state_of("c1"), Some(CallState::Terminated));
    let subcode = registry
        .with_call("c1", |a| a.state().result_info().map(|r| r.subcode.clone()))
        .flatten();
    assert_eq!(subcode, Some(Nullable::Value(9999)));
}

#[tokio::test]
async fn a_terminated_notification_with_the_codes_as_strings_is_applied() {
    // As Microsoft's v1.0 documentation shows it: `"code": "200"`, strings.
    let body = json!({"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": "deleted",
        "resourceUrl": "/communications/calls/c1",
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "terminated",
            "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo",
                "code": "200", "subcode": "5002", "message": "The call was ended."}}}]});
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::disabled_for_loopback("127.0.0.1:1".parse().unwrap()).unwrap(),
        Arc::new(CallRegistry::default()),
        8,
    );
    let response = receiver
        .handle(None, body.to_string().as_bytes(), Instant::now())
        .await;
    assert_eq!(response.status.as_u16(), 202, "{:?}", response.error);
    match events.recv().await.unwrap() {
        CallEvent::StateChanged {
            to, result_info, ..
        } => {
            assert_eq!(to, CallState::Terminated);
            let result = result_info.expect("resultInfo");
            assert_eq!(
                (result.code, result.subcode),
                (Nullable::Value(200), Nullable::Value(5002))
            );
        }
        other => panic!("{other:?}"),
    }
    // Written back in the canonical form: numbers.
    let parsed = batch(&body.to_string());
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        written["value"][0]["resourceData"]["resultInfo"]["code"],
        json!(200)
    );
}

#[test]
fn an_incoming_call_is_announced() {
    let registry = CallRegistry::default();
    let events = run(
        &registry,
        &[batch(
            &json!({"value": [{"changeType": "created", "resourceUrl": "/communications/calls/in1",
            "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming",
                             "direction": "incoming", "id": "in1"}}]})
            .to_string(),
        )],
    );
    assert!(matches!(&events[..], [CallEvent::Incoming { call_id, .. }] if call_id == "in1"));
}

#[test]
fn the_seed_full_roster_and_delta_roster() {
    let registry = CallRegistry::default();
    let events = run(&registry, &[seed_batch("notification-roster.json")]);
    match &events[..] {
        [CallEvent::Roster { call_id, change }] => {
            assert_eq!(call_id, MEETING_CALL);
            assert_eq!(change.joined.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        registry.with_call(MEETING_CALL, |a| a.roster().len()),
        Some(2)
    );

    // The delta roster (another call in the seed): John joins at sequence 1; the bot is
    // listed with a removedState, but was never in this roster, so nobody "leaves".
    let delta_call = "421f7700-f4ad-4ea9-a3fc-c1d2195675ad";
    let events = run(&registry, &[seed_batch("notification-roster-delta.json")]);
    match &events[..] {
        [CallEvent::Roster { call_id, change }] => {
            assert_eq!(call_id, delta_call);
            assert_eq!(change.joined.len(), 1);
            assert!(change.left.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let ids = registry
        .with_call(delta_call, |a| {
            a.roster()
                .participants()
                .filter_map(|p| p.id.value().cloned())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(ids, vec!["0d7664b6-6432-43ed-8d27-d9e7adec188c"]);
    // The same delta again is a duplicate: no event.
    assert!(run(&registry, &[seed_batch("notification-roster-delta.json")]).is_empty());
}

fn delta_batch(sequence: i64, joins: &[&str], leaves: &[&str]) -> CommsNotifications {
    let mut participants: Vec<Value> = joins
        .iter()
        .map(|id| json!({"@odata.type": "#microsoft.graph.participant", "id": id, "rosterSequenceNumber": sequence}))
        .collect();
    participants.extend(leaves.iter().map(|id| {
        json!({"@odata.type": "#microsoft.graph.participant", "id": id, "rosterSequenceNumber": sequence,
               "removedState": {"reason": "Removed from roster"}})
    }));
    batch(
        &json!({"value": [{"changeType": "updated",
            "resourceUrl": "/communications/calls/d1/participants",
            "resourceData": [{"@odata.type": "#microsoft.graph.deltaParticipants",
                              "participants": participants, "sequenceNumber": sequence}]}]})
        .to_string(),
    )
}

/// Twelve deltas: people join, some leave, one rejoins.
fn script() -> Vec<CommsNotifications> {
    vec![
        delta_batch(1, &["bot", "alice"], &[]),
        delta_batch(2, &["bob"], &[]),
        delta_batch(3, &["carol"], &[]),
        delta_batch(4, &[], &["alice"]),
        delta_batch(5, &["dave"], &[]),
        delta_batch(6, &["alice"], &[]),
        delta_batch(7, &[], &["bob"]),
        delta_batch(8, &["erin"], &[]),
        delta_batch(9, &[], &["carol", "dave"]),
        delta_batch(10, &["frank"], &[]),
        delta_batch(11, &[], &["erin"]),
        delta_batch(12, &["grace"], &[]),
    ]
}

fn roster_ids(registry: &CallRegistry, call: &str) -> Vec<String> {
    registry
        .with_call(call, |a| {
            a.roster()
                .participants()
                .filter_map(|p| p.id.value().cloned())
                .collect()
        })
        .unwrap_or_default()
}

/// A deterministic shuffle (xorshift), so a failure names the seed that produced it.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.max(1);
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

#[test]
fn delta_rosters_in_any_order_with_duplicates_end_like_in_order() {
    let in_order = CallRegistry::default();
    run(&in_order, &script());
    let expected = roster_ids(&in_order, "d1");
    assert_eq!(expected, vec!["alice", "bot", "frank", "grace"]);

    let policy = RosterPolicy {
        max_held: 32,
        hard_cap: 64,
        ..RosterPolicy::default()
    };
    for seed in 1..=200u64 {
        let mut batches = script();
        // Duplicate three of them, then shuffle everything.
        for i in [seed % 12, (seed * 7) % 12, (seed * 11) % 12] {
            batches.push(batches[i as usize].clone());
        }
        shuffle(&mut batches, seed);
        let registry = CallRegistry::new(policy.clone(), Duration::from_secs(60));
        let events = run(&registry, &batches);
        assert_eq!(roster_ids(&registry, "d1"), expected, "shuffle seed {seed}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, CallEvent::RosterGap { .. })),
            "nothing is missing, so no gap (seed {seed})"
        );
        let last = registry
            .with_call("d1", |a| a.roster().last_applied_sequence())
            .flatten();
        assert_eq!(last, Some(12), "seed {seed}");
    }
}

#[test]
fn a_missing_delta_is_a_gap_that_a_full_roster_repairs() {
    let policy = RosterPolicy {
        max_held: 3,
        ..RosterPolicy::default()
    };
    let registry = CallRegistry::new(policy, Duration::from_secs(60));
    let mut batches = script();
    let lost = batches.remove(4); // sequence 5 never arrives (for now)
    let events = run(&registry, &batches[..7]); // 1-4, then 6, 7, 8 held
    let gaps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            CallEvent::RosterGap { expected, held, .. } => Some((*expected, held.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(gaps, vec![(5, vec![6, 7, 8])]);
    assert_eq!(
        roster_ids(&registry, "d1"),
        vec!["bob", "bot", "carol"],
        "held deltas not applied"
    );

    // The bot reads the full roster (as of sequence 8) and hands it over.
    let truth = CallRegistry::default();
    run(&truth, &script()[..8]);
    let full: Vec<Participant> = truth
        .with_call("d1", |a| a.roster().participants().cloned().collect())
        .unwrap();
    let events = registry.apply_full_roster("d1", full);
    assert!(matches!(&events[..], [CallEvent::Roster { .. }]));
    assert_eq!(roster_ids(&registry, "d1"), roster_ids(&truth, "d1"));

    // The lost delta shows up late: stale, dropped. The rest applies on top.
    run(&registry, &[lost]);
    run(&registry, &batches[7..]);
    assert_eq!(
        roster_ids(&registry, "d1"),
        vec!["alice", "bot", "frank", "grace"]
    );
}

#[test]
fn a_gap_is_reported_by_time_through_poll() {
    let policy = RosterPolicy {
        max_hold: Duration::from_millis(500),
        ..RosterPolicy::default()
    };
    let registry = CallRegistry::new(policy, Duration::from_secs(60));
    let t0 = Instant::now();
    registry.apply(&script()[0], t0);
    registry.apply(&script()[2], t0);
    assert!(registry.poll(t0 + Duration::from_millis(100)).is_empty());
    let events = registry.poll(t0 + Duration::from_millis(600));
    assert!(matches!(
        &events[..],
        [CallEvent::RosterGap { expected: 2, .. }]
    ));
    assert!(
        registry.poll(t0 + Duration::from_secs(5)).is_empty(),
        "reported once"
    );
}

#[test]
fn content_sharing_in_every_order() {
    let created = seed_batch("notification-content-sharing-created.json");
    let updated = seed_batch("notification-content-sharing-updated.json");
    let deleted = seed_batch("notification-content-sharing-deleted.json");
    let call = "421f4c00-4436-4c3a-9d9a-c4924cf98e67";

    let registry = CallRegistry::default();
    let events = run(
        &registry,
        &[created.clone(), updated.clone(), deleted.clone()],
    );
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e {
            CallEvent::ContentSharing { change, .. } => match change {
                SharingChange::Started(_) => "started",
                SharingChange::Updated(_) => "updated",
                SharingChange::Ended(_) => "ended",
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec!["started", "updated", "ended"]);

    for order in permutations(&[created, updated, deleted]) {
        let registry = CallRegistry::default();
        let events = run(&registry, &order);
        let ended = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    CallEvent::ContentSharing {
                        change: SharingChange::Ended(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(ended, 1);
        assert_eq!(
            registry.with_call(call, |a| a.sharing().is_sharing()),
            Some(false)
        );
    }
}

#[test]
fn unknown_resources_and_properties_are_kept_not_refused() {
    let registry = CallRegistry::default();
    let body = json!({"@odata.type": "#microsoft.graph.commsNotifications", "futureBatchField": 1,
    "value": [
        {"changeType": "updated", "resourceUrl": "/communications/calls/u1/recordings",
         "resourceData": {"@odata.type": "#microsoft.graph.somethingNew", "x": [1, 2]}},
        {"changeType": "updated", "resourceUrl": "/communications/calls/u1",
         "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established",
                          "newCallProperty": {"a": true}}},
        {"changeType": "updated", "resourceUrl": "/somewhere/else",
         "resourceData": {"@odata.type": "#microsoft.graph.other"}}
    ]});
    let events = run(&registry, &[batch(&body.to_string())]);
    assert_eq!(events.len(), 3);
    match &events[0] {
        CallEvent::Unhandled {
            call_id,
            notification,
        } => {
            assert_eq!(call_id.as_deref(), Some("u1"));
            let data = serde_json::to_value(&notification.resource_data).unwrap();
            assert_eq!(data["x"], json!([1, 2]), "kept verbatim");
        }
        other => panic!("{other:?}"),
    }
    match &events[1] {
        CallEvent::StateChanged { call, .. } => {
            assert_eq!(call.extra["newCallProperty"], json!({"a": true}));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &events[2],
        CallEvent::Unhandled { call_id: None, .. }
    ));
}

#[tokio::test]
async fn every_seed_notification_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::disabled_for_loopback(addr).unwrap(),
        Arc::new(CallRegistry::default()),
        64,
    );
    let router = receiver.router("api/calls");
    common::serve_with_peers(listener, router);
    let http =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5)).unwrap();
    let names = [
        "notification-establishing.json",
        "notification-established.json",
        "notification-content-sharing-created.json",
        "notification-content-sharing-updated.json",
        "notification-content-sharing-deleted.json",
        "notification-meeting-establishing.json",
        "notification-meeting-established.json",
        "notification-roster.json",
        "notification-roster-delta.json",
    ];
    for name in names {
        let response = http
            .post(format!("http://{addr}/api/calls"))
            .header("content-type", "application/json")
            .body(common::seed(name))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202, "{name}");
    }
    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        received.push(event);
    }
    // 2 + 3 + 2 state/sharing events, 1 full roster, 1 delta roster.
    assert_eq!(received.len(), 9, "{received:#?}");
    let stats = receiver.stats();
    assert_eq!(stats.accepted, names.len() as u64);
    assert_eq!(stats.notifications, names.len() as u64);
    assert_eq!(stats.events_delivered, 9);
}

#[tokio::test]
async fn a_full_event_channel_is_503_and_nothing_is_dropped_or_applied() {
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::disabled_for_loopback("127.0.0.1:1".parse().unwrap()).unwrap(),
        Arc::new(CallRegistry::default()),
        1,
    );
    let now = Instant::now();
    let roster = common::seed("notification-roster.json");
    let a = receiver
        .handle(
            None,
            common::seed("notification-meeting-establishing.json").as_bytes(),
            now,
        )
        .await;
    let b = receiver.handle(None, roster.as_bytes(), now).await;
    // Graph does not resend what was answered 202: a batch that cannot be delivered is
    // refused whole, to be sent again.
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (202, 503));
    assert_eq!(b.retry_after, Some(1));
    assert_eq!(receiver.stats().events_dropped, 0);
    assert_eq!(receiver.stats().events_delivered, 1);
    assert_eq!(
        receiver
            .registry()
            .with_call(MEETING_CALL, |a| a.roster().len()),
        Some(0),
        "the roster is not applied"
    );
    // Once the bot has read, the batch sent again is applied.
    events.recv().await.unwrap();
    let again = receiver.handle(None, roster.as_bytes(), now).await;
    assert_eq!(again.status.as_u16(), 202);
    assert_eq!(
        receiver
            .registry()
            .with_call(MEETING_CALL, |a| a.roster().len()),
        Some(2)
    );
}

#[tokio::test]
async fn a_callback_sink_receives_events() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let seen = seen.clone();
        FnSink(move |event: CallEvent| seen.lock().unwrap().push(event))
    };
    let receiver = CallbackReceiver::new(
        CallbackAuth::disabled_for_loopback("[::1]:1".parse().unwrap()).unwrap(),
        Arc::new(CallRegistry::default()),
        sink,
    );
    receiver
        .handle(
            None,
            common::seed("notification-meeting-established.json").as_bytes(),
            Instant::now(),
        )
        .await;
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn terminated_calls_are_forgotten_after_the_retention() {
    let registry = CallRegistry::new(RosterPolicy::default(), Duration::from_secs(10));
    let t0 = Instant::now();
    registry.apply(&call_state("established", None), t0);
    registry.apply(&call_state("terminated", None), t0);
    assert_eq!(registry.call_ids(), vec!["c1"]);
    registry.apply(
        &seed_batch("notification-meeting-establishing.json"),
        t0 + Duration::from_secs(11),
    );
    assert_eq!(registry.call_ids(), vec![MEETING_CALL]);
}

#[tokio::test]
async fn serve_refuses_an_unauthenticated_receiver_off_loopback() {
    let receiver = CallbackReceiver::new(
        CallbackAuth::disabled_for_loopback("127.0.0.1:0".parse().unwrap()).unwrap(),
        Arc::new(CallRegistry::default()),
        FnSink(|_| {}),
    );
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = receiver.serve(listener, "/callback").await.unwrap_err();
    assert!(matches!(
        err,
        appmedia_signalling::callback::ServeError::UnauthenticatedOffLoopback { .. }
    ));
    // On loopback it serves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = receiver.clone();
    tokio::spawn(async move { serving.serve(listener, "/callback").await });
    let response =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5))
            .unwrap()
            .post(format!("http://{addr}/callback"))
            .body(common::seed("notification-meeting-established.json"))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}
