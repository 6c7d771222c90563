//! appmedia: a Rust toolkit for Microsoft Graph calling bots that host their own media.
//!
//! This facade re-exports the workspace crates.
pub use appmedia_acs as acs;
pub use appmedia_audio_io as audio_io;
pub use appmedia_bot as bot;
pub use appmedia_media as media;
pub use appmedia_model as model;
pub use appmedia_signalling as signalling;
pub use appmedia_transport as transport;
