//! A bot made only of the signalling crate's parts — `GraphClient` to create and hang up,
//! `CallbackReceiver` + `CallRegistry` to turn the emulator's notifications into call
//! events — sees the call go establishing → established → terminated, with its roster and
//! content sharing, exactly as against the real service.

mod common;

use std::sync::Arc;
use std::time::Duration;

use appmedia_emulator::{Emulator, EmulatorConfig, Faults};
use appmedia_model::{CallState, Identity};
use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenValidator, TenantPolicy,
};
use appmedia_signalling::builders::{JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_signalling::sharing::SharingChange;
use common::*;
use tokio::sync::mpsc;

struct Bot {
    client: GraphClient,
    callback_uri: String,
    events: mpsc::Receiver<CallEvent>,
    receiver: CallbackReceiver,
}

async fn bot(emulator: &Emulator) -> Bot {
    let mut auth = CallbackAuthConfig::new(CALLING_BOT, TenantPolicy::Only(vec![TENANT.into()]));
    auth.issuers = vec![emulator.notification_issuer().to_owned()];
    auth.openid_configuration_url = emulator
        .notification_openid_configuration_url()
        .parse()
        .unwrap();
    let (receiver, events) = CallbackReceiver::with_channel(
        CallbackAuth::validate(Arc::new(CallbackTokenValidator::new(auth).unwrap())),
        Arc::new(CallRegistry::default()),
        256,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback_uri = format!("http://{}/callback", listener.local_addr().unwrap());
    let serving = receiver.clone();
    tokio::spawn(async move { serving.serve(listener, "/callback").await });
    let client = GraphClient::new(
        GraphClientConfig::for_base_url(emulator.graph_url().parse().unwrap()),
        Harness::token_source(emulator, CALLING_BOT, CALLING_BOT_SECRET),
    )
    .unwrap();
    Bot {
        client,
        callback_uri,
        events,
        receiver,
    }
}

impl Bot {
    async fn next(&mut self) -> CallEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the receiver is alive")
    }

    /// Events until (and with) the first state change to `state`.
    async fn until_state(&mut self, state: CallState) -> Vec<CallEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next().await;
            let done = matches!(&event, CallEvent::StateChanged { to, .. } if *to == state);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn states(events: &[CallEvent]) -> Vec<CallState> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn p2p_app_hosted_call_through_the_signalling_client() {
    let emulator = Emulator::start(config()).await.unwrap();
    let mut bot = bot(&emulator).await;
    let request = PeerToPeerCallBuilder::new(
        bot.callback_uri.clone(),
        Identity::new(JOHN).with_display_name("John"),
        Media::app_hosted(BLOB),
    )
    .build()
    .unwrap();
    let created = bot.client.create_call(&request).await.unwrap();
    let id = created.call_id().unwrap().to_owned();
    assert_eq!(created.call.state.value(), Some(&CallState::Establishing));

    let events = bot.until_state(CallState::Established).await;
    assert_eq!(
        states(&events),
        [CallState::Establishing, CallState::Established]
    );
    // A peer-to-peer call: no roster notification; the service lists the bot and John.
    let participants = bot.client.list_participants(&id).await.unwrap();
    assert_eq!(participants.len(), 2);

    bot.client.delete_call(&id).await.unwrap();
    let end = bot.until_state(CallState::Terminated).await;
    assert!(
        !end.iter().any(|e| matches!(e, CallEvent::Roster { .. })),
        "{end:?}"
    );
    match end.last() {
        Some(CallEvent::StateChanged {
            result_info: Some(result),
            ..
        }) => assert_eq!(result.code.value(), Some(&200)),
        other => panic!("terminated without resultInfo: {other:?}"),
    }
    assert_eq!(bot.receiver.stats().unauthorized, 0);
    let err = bot.client.get_call(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn meeting_with_delta_roster_and_sharing_through_the_callback_receiver() {
    let emulator = Emulator::start(config()).await.unwrap();
    let mut bot = bot(&emulator).await;
    let request = JoinMeetingIdBuilder::new(
        bot.callback_uri.clone(),
        "1234567",
        Some("psw123".into()),
        TENANT,
        Media::app_hosted(BLOB),
    )
    .delta_roster(true)
    .content_sharing_notifications(true)
    .build()
    .unwrap();
    let created = bot.client.create_call(&request).await.unwrap();
    let id = created.call_id().unwrap().to_owned();

    let mut sharing = Vec::new();
    let mut left = 0;
    let mut gaps = 0;
    // Bob's leave (delta 4) is the last scripted event.
    while left == 0 {
        match bot.next().await {
            CallEvent::ContentSharing { change, .. } => sharing.push(match change {
                SharingChange::Started(_) => "started",
                SharingChange::Updated(_) => "updated",
                SharingChange::Ended(_) => "ended",
            }),
            CallEvent::Roster { change, .. } => left += change.left.len(),
            CallEvent::RosterGap { .. } => gaps += 1,
            _ => {}
        }
    }
    assert_eq!(sharing, ["started", "updated", "ended"]);
    assert_eq!(gaps, 0, "delta rosters arrive in sequence");
    let roster = bot
        .receiver
        .registry()
        .with_call(&id, |agent| agent.roster().len())
        .unwrap();
    assert_eq!(roster, 2, "the bot and John remain");
    bot.client.delete_call(&id).await.unwrap();
    bot.until_state(CallState::Terminated).await;
}

#[tokio::test]
async fn out_of_order_establishing_does_not_move_the_call_back() {
    let emulator = Emulator::start(EmulatorConfig {
        faults: Faults {
            established_before_establishing: true,
        },
        ..config()
    })
    .await
    .unwrap();
    let mut bot = bot(&emulator).await;
    let request = PeerToPeerCallBuilder::new(
        bot.callback_uri.clone(),
        Identity::new(JOHN).with_display_name("John"),
        Media::app_hosted(BLOB),
    )
    .build()
    .unwrap();
    let id = bot
        .client
        .create_call(&request)
        .await
        .unwrap()
        .call_id()
        .unwrap()
        .to_owned();
    bot.until_state(CallState::Established).await;
    // Let the late "establishing" arrive, then check the state machine kept "established".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bot.receiver.registry().state_of(&id),
        Some(CallState::Established)
    );
    bot.client.delete_call(&id).await.unwrap();
    bot.until_state(CallState::Terminated).await;
}
