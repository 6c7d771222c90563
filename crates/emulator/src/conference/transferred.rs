//! Conversations that go on after the bot transferred its call away.
//!
//! When a transfer completes, Graph takes the bot out and connects the transferee with the
//! target; the bot's call ends (`terminated`, then 404), but the two people go on talking. The
//! emulator keeps the call's conference for them: the bot leaves it
//! (`ConferenceControl::detach_bot`: silence to everyone, nothing sent to the bot any more),
//! the target joins it, and it runs until one of them hangs up by script
//! (`hang_up_after_ms`, counted from the moment the transfer completed) or for
//! `EmulatorConfig::transferred_call_limit` at most. With `recordings_dir` set, its
//! `{call}-heard-by-speaker-{id}.wav` files show what each of them heard all along
//! ([`crate::conference::heard`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::conference::media::MediaPeer;
use crate::conference::service_media::ServiceMedia;

/// The conversations the bot transferred away and that still run.
#[derive(Debug, Default)]
pub struct Transferred {
    live: Arc<AtomicUsize>,
}

/// Holds a conversation's media until it ends; counted while alive.
struct Conversation {
    _media: Option<MediaPeer>,
    _service: Option<ServiceMedia>,
    live: Arc<AtomicUsize>,
}

impl Drop for Conversation {
    fn drop(&mut self) {
        // The media's own drop stops the conference and finishes its recordings.
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transferred {
    /// How many run now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Keeps `media` (the call's media, the bot already released from it) running for
    /// `lasts`, then stops it. One timer task per conversation, which ends with it.
    pub(crate) fn keep(
        &self,
        call_id: &str,
        media: Option<MediaPeer>,
        service: Option<ServiceMedia>,
        lasts: Duration,
    ) {
        if media.is_none() && service.is_none() {
            // A call without media (an opaque blob): nothing to keep.
            return;
        }
        self.live.fetch_add(1, Ordering::Relaxed);
        let conversation = Conversation {
            _media: media,
            _service: service,
            live: self.live.clone(),
        };
        let call_id = call_id.to_owned();
        tracing::info!(call = %call_id, ?lasts, "the transferred parties talk on without the bot");
        tokio::spawn(async move {
            tokio::time::sleep(lasts).await;
            drop(conversation);
            tracing::info!(call = %call_id, "the transferred conversation ended");
        });
    }
}
