//! appmedia-emulator-media: the media processor of the local Graph calling service (the
//! emulator): the simulated remote parties of a call, mixed with the media core and sent to
//! the bot, and what the bot sends recorded.
//!
//! [`ConferenceMedia`] is one call, sans-IO like the media core's `CallPipeline`: packets, time
//! and commands in; packets, events and stats out. The emulator's HTTP service adds parties
//! from its directory scripts, and a transport (or the test) carries the packets. What
//! Graph's in-call actions do to the bot's side (server mute, leaving after a transfer, keys
//! played in its name, recordings of what the bot and each party hear) is [`bot_voice`].
//!
//! ```
//! use std::time::Duration;
//! use appmedia_emulator_media::{ConferenceConfig, ConferenceMedia, PartyAudio, PartyKind, PartySpec};
//! use appmedia_audio_io::clip::AudioClip;
//!
//! let mut call = ConferenceMedia::new(ConferenceConfig::default())?;
//! let tone: Vec<f32> = (0..48_000).map(|i| 0.3 * (i as f32 * 0.0576).sin()).collect(); // 440 Hz
//! let clip = AudioClip::from_samples(tone).expect("not empty");
//! let speak = PartyAudio::Speak { clip, looped: false, start_after: Duration::ZERO };
//! call.add_party(PartySpec::new("john-participant-id", "John", PartyKind::User, 10, speak))?;
//! for k in 0..10u32 {
//!     call.tick(Duration::from_millis(20) * k); // a fake clock; push_rtp() feeds the bot's packets
//!     let _to_the_bot: Vec<&[u8]> = call.outgoing_packets().collect();
//! }
//! assert!(call.stats().bot_leg.packets_sent > 0);
//! assert_eq!(call.source_map().collect::<Vec<_>>(), vec![(10, "john-participant-id")]);
//! # Ok::<(), appmedia_emulator_media::ConferenceError>(())
//! ```

pub mod bot_voice;
pub mod conference;
pub mod party;
pub mod phone;
pub mod realtime;

pub use bot_voice::in_band_dtmf;
pub use conference::{
    ConferenceConfig, ConferenceControl, ConferenceError, ConferenceEvent, ConferenceMedia,
    ConferenceStats, ConferenceTick, MAX_REPORTED_SPEAKERS, NetworkLink, PartyInfo, PartyStats,
    Rejection, StreamLayout,
};
pub use party::{PartyAudio, PartyKind, PartySpec, graph_source_id, parse_graph_source_id};
pub use phone::PhoneLine;
