//! DTMF end to end through the HTTP API: a scripted phone presses keys
//! (`press = { after-ms, keys }` in `fixtures/keypad-phone.toml`), and the bot — the real
//! signalling client, transport session and media-core pipeline — reports them.

mod common;

use appmedia_media::dtmf::Tone;
use appmedia_media::pipeline::PipelineEvent;
use appmedia_model::{Identity, IdentitySet, ParticipantInfo};
use appmedia_signalling::builders::{Media, PstnCallBuilder};
use common::bot::*;
use common::*;

const APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
const PHONE: &str = "+12345678901";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_presses_keys_and_the_bot_hears_them_once_each_in_order() {
    let h = Harness::start(appmedia_emulator::EmulatorConfig {
        directory: test_directory("keypad-phone.toml"),
        ..config()
    })
    .await;
    let source = ParticipantInfo::new(IdentitySet::application_instance(
        Identity::new(APP_INSTANCE).with_display_name("Calling Bot"),
    ));
    let callback = h.callback_uri.clone();
    let mut phone = BotCall::start(&h, true, move |blob| {
        PstnCallBuilder::new(callback, source, PHONE, TENANT, Media::app_hosted(blob))
            .build()
            .unwrap()
    })
    .await;
    // The phone presses 500 ms after answering; three keys of 200 ms each follow.
    let heard = phone.run(2 * 50, |_| None).await;
    phone.client.delete_call(&phone.id).await.unwrap();

    let keys: Vec<(Tone, bool)> = heard
        .events
        .iter()
        .filter_map(|e| match e {
            PipelineEvent::ToneReceived { tone, end_seen, .. } => Some((*tone, *end_seen)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = keys.iter().map(|(t, _)| t.graph_name()).collect();
    assert_eq!(names, ["tone4", "tone2", "pound"], "{:?}", heard.events);
    assert!(keys.iter().all(|(_, end_seen)| *end_seen), "{keys:?}");
}
