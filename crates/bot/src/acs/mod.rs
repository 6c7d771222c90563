//! The SDK's second backend: Azure Communication Services Call Automation, with the call's
//! audio streamed over a WebSocket (`docs/acs.md`). The bot's code is the same as on Graph:
//! the backend translates ACS's events into the SDK's [`Event`](crate::Event)s and its
//! actions into Call Automation requests, and the streamed PCM enters the same media
//! pipeline as RTP does.

pub(crate) mod actions;
pub(crate) mod backend;
pub(crate) mod calls;
mod config;
pub(crate) mod stream;
pub(crate) mod translate;

pub use backend::AcsCounters;
pub use config::{ACS_ISSUER, ACS_OPENID_CONFIGURATION, AcsService, EventAuth};
pub use stream::StreamStats;
