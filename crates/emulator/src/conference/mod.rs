//! Layer 1 of the emulator (`docs/architecture.md`): conference media. The emulator as the
//! bot's media peer for app-hosted calls ([`media`]), the service's own voice for
//! service-hosted ones ([`service_media`], [`service_actions`]), what each party heard
//! ([`heard`]) and the conversations the bot transferred away ([`transferred`]). It knows
//! nothing of calls or HTTP above it.

pub mod acs_media;
pub mod heard;
pub mod media;
pub mod service_actions;
pub mod service_media;
pub mod transferred;
