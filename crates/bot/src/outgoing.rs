//! Placing a call, and starting the driver of any call (placed or answered).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use appmedia_model::{Call as CallResource, MediaConfig};
use appmedia_signalling::builders::Media;
use appmedia_signalling::validate::CreateCallKind;
use tokio::sync::{mpsc, watch};

use crate::bot::{BotInner, Signal};
use crate::call::{Call, CallControl, CallShared, Hosting, Snapshot};
use crate::driver::{AcsCall, Driver};
use crate::error::BotError;
use crate::media::MediaOptions;
use crate::setup::{self, LiveMedia};

/// `POST /communications/calls` with the bot's callback URL and, for app-hosted media, a
/// fresh media session's blob; then the call's media on the scheduler and its driver.
pub(crate) async fn place(
    inner: &Arc<BotInner>,
    mut request: CallResource,
    options: MediaOptions,
) -> Result<Call, BotError> {
    inner.check_running()?;
    if let Some(acs) = inner.acs() {
        let _in_flight = InFlight::claim(inner)?;
        return crate::acs::calls::place(inner, acs, request, options).await;
    }
    let client = inner.graph("create call")?;
    // A slot of `max_calls` from here; while the create is in flight its first notifications
    // may beat the 201: they are held for the call, not answered 404 as a stranger's.
    let in_flight = InFlight::claim(inner)?;
    request.callback_uri = inner.callback_uri.clone().into();
    let app_hosted = matches!(
        request.media_config.value(),
        Some(MediaConfig::AppHosted(_))
    );
    let session = if app_hosted {
        let session = setup::offer(inner, options.unmixed, options.unmixed_streams).await?;
        let remove = match request.media_config.value() {
            Some(MediaConfig::AppHosted(c)) => c
                .remove_from_default_audio_group
                .value()
                .copied()
                .unwrap_or(false),
            _ => false,
        };
        request.media_config = Media::app_hosted(session.blob())
            .remove_from_default_audio_group(remove)
            .into_config()
            .into();
        Some(session)
    } else {
        None
    };
    let created = client.create_call(&request).await?;
    let call_id = created
        .call_id()
        .ok_or_else(|| BotError::Protocol("the 201 has no call id".into()))?
        .to_owned();
    inner.counters.calls_created.fetch_add(1, Ordering::Relaxed);
    let signalling = inner.register(&call_id);
    drop(in_flight);
    let media = match session {
        None => None,
        Some(session) => {
            let answer = match created.call.media_config.value() {
                Some(MediaConfig::AppHosted(config)) => config.blob.value().cloned(),
                _ => None,
            };
            let started = async {
                let answer = answer
                    .ok_or_else(|| BotError::Protocol("the 201 has no answer blob".into()))?;
                session.accept(&answer).await?;
                setup::start(inner, &call_id, session, options)
            }
            .await;
            match started {
                Ok(media) => Some(media),
                Err(e) => {
                    // Leave nothing behind on the service or here.
                    let _ = client.delete_call(&call_id).await;
                    inner.unregister(&call_id);
                    return Err(e);
                }
            }
        }
    };
    let hosting = if app_hosted {
        Hosting::App
    } else {
        Hosting::Service
    };
    Ok(spawn(
        inner,
        call_id,
        hosting,
        Some(created.call),
        signalling,
        media,
        None,
        None,
    ))
}

/// Starts the driver of a call whose events arrive on `signalling`. `answer_offer` is the
/// bot's blob when the answer blob is still to come in a notification (answered calls);
/// `acs` is set for a call on the ACS backend.
// One call site per kind of call; a struct would only name the same eight things again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn(
    inner: &Arc<BotInner>,
    call_id: String,
    hosting: Hosting,
    resource: Option<CallResource>,
    signalling: mpsc::UnboundedReceiver<Signal>,
    mut media: Option<LiveMedia>,
    answer_offer: Option<String>,
    acs: Option<AcsCall>,
) -> Call {
    // Graph tells a two-party call's bot only its state changes (a meeting's or a group
    // call's offer carries chatInfo).
    let two_party = acs.is_none()
        && resource.as_ref().is_some_and(|call| {
            !call.chat_info.is_value()
                && matches!(
                    CreateCallKind::of(call),
                    CreateCallKind::PeerToPeer | CreateCallKind::Pstn
                )
        });
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let audio = media.as_mut().and_then(|m| m.socket.take());
    // Every log line of the call's driver carries its call id and instance.
    let span = tracing::info_span!("call", id = %call_id, instance = %inner.config.instance_id);
    let shared = Arc::new(CallShared {
        id: call_id,
        bot: inner.clone(),
        hosting,
        snapshot: Mutex::new(Snapshot {
            state: resource.as_ref().and_then(|c| c.state.value().cloned()),
            resource,
            ..Snapshot::default()
        }),
        prompts: media.as_ref().map(|m| m.prompts.clone()),
        tones: media.as_ref().and_then(|m| m.tones.clone()),
        recorder_tx: media.as_ref().map(|m| m.feed.recorder.clone()),
        recorder: Mutex::new(media.as_mut().and_then(|m| m.recorder.take())),
        done: done_rx,
        abandon: tokio::sync::Notify::new(),
        stream: media.as_ref().and_then(|m| match &m.link {
            crate::setup::MediaLink::Stream(link) => Some(link.clone()),
            crate::setup::MediaLink::WebRtc(_) => None,
        }),
    });
    let control = CallControl {
        shared: shared.clone(),
    };
    inner.add_live(&control);
    let driver = Driver {
        shared,
        signalling,
        events: events_tx,
        done: done_tx,
        awaiting_answer_blob: answer_offer.is_some(),
        offer_blob: answer_offer,
        media,
        acs,
        two_party,
    };
    tokio::spawn(tracing::Instrument::instrument(driver.run(), span));
    Call::new(control, events_rx, audio)
}

/// Counts a create in flight for as long as it lives (errors and cancellation included).
struct InFlight<'a>(&'a BotInner);

impl<'a> InFlight<'a> {
    /// Counts a new create, unless the bot is at [`max_calls`](crate::BotConfig::max_calls).
    fn claim(inner: &'a BotInner) -> Result<Self, BotError> {
        inner.claim_create()?;
        Ok(InFlight(inner))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.creates_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
