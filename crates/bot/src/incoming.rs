//! A call offered to the bot: who calls, whom they called, and answer / reject / redirect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use appmedia_acs::events::IncomingCallData;
use appmedia_acs::models::{AnswerCallRequest, RedirectCallRequest, RejectCallRequest};
use appmedia_model::{
    AnswerRequest, Call as CallResource, CallState, ChatInfo, IdentitySet, MediaInfo, MeetingInfo,
    Modality, RedirectRequest, RejectReason, RejectRequest,
};
use appmedia_signalling::builders::Media;
use appmedia_signalling::callback::CallEvent;
use tokio::sync::mpsc;

use crate::bot::{BotInner, Signal};
use crate::call::{Call, Hosting, Target};
use crate::error::BotError;
use crate::media::MediaOptions;
use crate::{outgoing, setup};

/// Graph's deadline for answering, rejecting or redirecting an incoming call.
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(15);
/// How long the SDK watches an unhandled call for its end, to report it.
const EXPIRY_WATCH: Duration = Duration::from_secs(60);

/// How the bot takes the call's audio.
#[derive(Debug)]
pub enum AnswerMedia {
    /// The bot hosts the media (its own WebRTC session, the audio socket, recordings).
    App(MediaOptions),
    /// The service hosts the media; these prompts are fetched ahead for `play_prompt`.
    Service {
        /// Prompts the service fetches ahead of `play_prompt`.
        pre_fetch: Vec<MediaInfo>,
    },
}

/// Whom the caller called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Called {
    /// The bot's application.
    Application(String),
    /// One of its application instances (resource accounts), with the phone number called
    /// when the call came from the phone network.
    ApplicationInstance {
        /// The application instance's id.
        id: String,
        /// The number dialled, when the call came from the phone network.
        phone: Option<String>,
    },
    /// A phone number without an instance id.
    Phone(String),
    /// Something else (kept in the call resource's `targets`).
    Other,
}

/// A call offered to the bot. Handle it within [`ANSWER_DEADLINE`]: a call neither answered,
/// rejected nor redirected in time is ended by the service, and the bot counts it
/// (`BotStats::incoming_expired`).
pub struct IncomingCall {
    bot: Arc<BotInner>,
    call_id: String,
    resource: CallResource,
    received: Instant,
    signalling: Option<mpsc::UnboundedReceiver<Signal>>,
    handled: Option<&'static str>,
    /// The Event Grid offer, on the ACS backend.
    acs: Option<IncomingCallData>,
}

impl std::fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCall")
            .field("call_id", &self.call_id)
            .field("caller", &self.caller())
            .field("called", &self.called())
            .field("handled", &self.handled)
            .finish()
    }
}

impl IncomingCall {
    pub(crate) fn new(bot: Arc<BotInner>, call_id: String, resource: CallResource) -> Self {
        let signalling = bot.register(&call_id);
        IncomingCall {
            bot,
            call_id,
            resource,
            received: Instant::now(),
            signalling: Some(signalling),
            handled: None,
            acs: None,
        }
    }

    /// A call ACS offers through Event Grid. Its id is the server call id until it is
    /// answered (the answered [`Call`]'s id is its call connection id).
    pub(crate) fn new_acs(bot: Arc<BotInner>, data: IncomingCallData) -> Self {
        IncomingCall {
            bot,
            call_id: data.server_call_id.clone(),
            resource: crate::acs::calls::incoming_resource(&data),
            received: Instant::now(),
            signalling: None,
            handled: None,
            acs: Some(data),
        }
    }

    /// The call id.
    pub fn id(&self) -> &str {
        &self.call_id
    }

    /// The call resource of the `incoming` notification.
    pub fn resource(&self) -> &CallResource {
        &self.resource
    }

    /// Who calls (`source.identity`): a user, a phone, an application...
    pub fn caller(&self) -> Option<&IdentitySet> {
        self.resource
            .source
            .value()
            .and_then(|s| s.identity.value())
    }

    /// The caller's phone number, when the call comes from the phone network.
    pub fn caller_phone(&self) -> Option<&str> {
        self.caller()
            .and_then(|i| i.phone.value())
            .and_then(|p| p.id.value())
            .map(String::as_str)
    }

    /// Whom the caller called.
    pub fn called(&self) -> Called {
        let Some(target) = self
            .resource
            .targets
            .value()
            .and_then(|t| t.first())
            .and_then(|t| t.identity.value())
        else {
            return Called::Other;
        };
        let id = |i: &appmedia_model::Nullable<appmedia_model::Identity>| {
            i.value().and_then(|i| i.id.value()).cloned()
        };
        if let Some(instance) = id(&target.application_instance) {
            return Called::ApplicationInstance {
                id: instance,
                phone: id(&target.phone),
            };
        }
        if let Some(app) = id(&target.application) {
            return Called::Application(app);
        }
        if let Some(phone) = id(&target.phone) {
            return Called::Phone(phone);
        }
        Called::Other
    }

    /// The meeting the call comes from, when it does.
    pub fn meeting(&self) -> Option<(&ChatInfo, &MeetingInfo)> {
        Some((
            self.resource.chat_info.value()?,
            self.resource.meeting_info.value()?,
        ))
    }

    /// When Graph stops waiting for an answer.
    pub fn deadline(&self) -> Instant {
        self.received + ANSWER_DEADLINE
    }

    fn check_open(&self) -> Result<(), BotError> {
        match self.handled {
            Some(done) => Err(BotError::AlreadyHandled {
                call_id: self.call_id.clone(),
                done,
            }),
            None => self.bot.check_running(),
        }
    }

    /// Answers. With [`AnswerMedia::App`] the SDK offers its media session in the answer and
    /// connects when the service's answer blob arrives ([`Event::MediaConnected`](crate::Event)).
    /// On an error the call stays unanswered and may be answered again, rejected or redirected.
    pub async fn answer(&mut self, media: AnswerMedia) -> Result<Call, BotError> {
        self.check_open()?;
        if self.acs.is_some() {
            return self.answer_acs(media).await;
        }
        let client = self.bot.graph("answer")?;
        let callback = self.bot.callback_uri.clone();
        let (config, options, session) = match media {
            AnswerMedia::App(options) => {
                let session =
                    setup::offer(&self.bot, options.unmixed, options.unmixed_streams).await?;
                let config = Media::app_hosted(session.blob()).into_config();
                (config, Some(options), Some(session))
            }
            AnswerMedia::Service { pre_fetch } => {
                let media = if pre_fetch.is_empty() {
                    Media::service_hosted()
                } else {
                    Media::service_hosted_with_prefetch(pre_fetch)
                };
                (media.into_config(), None, None)
            }
        };
        let request = AnswerRequest::new(callback, config, vec![Modality::Audio]);
        if let Err(e) = client.answer(&self.call_id, &request).await {
            if let Some(session) = session {
                session.close().await;
            }
            return Err(e.into());
        }
        self.handled = Some("answered");
        self.bot
            .counters
            .incoming_answered
            .fetch_add(1, Ordering::Relaxed);
        let signalling = self
            .signalling
            .take()
            .expect("taken only once, when handled");
        let (media, offer) = match (session, options) {
            (Some(session), Some(options)) => {
                let offer = session.blob();
                match setup::start(&self.bot, &self.call_id, session, options) {
                    Ok(media) => (Some(media), Some(offer)),
                    Err(e) => {
                        // Answered but no media here: end the call rather than leave it mute.
                        let _ = client.delete_call(&self.call_id).await;
                        self.bot.unregister(&self.call_id);
                        return Err(e);
                    }
                }
            }
            _ => (None, None),
        };
        let hosting = if media.is_some() {
            Hosting::App
        } else {
            Hosting::Service
        };
        Ok(outgoing::spawn(
            &self.bot,
            self.call_id.clone(),
            hosting,
            Some(self.resource.clone()),
            signalling,
            media,
            offer,
            None,
        ))
    }

    /// Answers on ACS: bidirectional audio streaming for app-hosted media.
    async fn answer_acs(&mut self, media: AnswerMedia) -> Result<Call, BotError> {
        let bot = self.bot.clone();
        let acs = bot.acs().ok_or(BotError::ShuttingDown)?;
        let context = self
            .acs
            .as_ref()
            .map(|d| d.incoming_call_context.clone())
            .unwrap_or_default();
        let options = match media {
            AnswerMedia::App(options) => Some(options),
            AnswerMedia::Service { pre_fetch } if pre_fetch.is_empty() => None,
            AnswerMedia::Service { .. } => {
                return Err(BotError::Unsupported {
                    backend: "acs",
                    capability: "prompts fetched ahead (ACS fetches files when it plays them)",
                });
            }
        };
        let token = acs.new_token()?;
        let request = AnswerCallRequest {
            incoming_call_context: context,
            callback_uri: acs.callback_of(&token),
            operation_context: None,
            media_streaming_options: options
                .as_ref()
                .map(|o| crate::acs::calls::streaming_options(acs, &token, o)),
        };
        let answered = match acs.client.answer_call(&request).await {
            Ok(answered) => answered,
            Err(e) => {
                acs.forget(&token);
                return Err(e.into());
            }
        };
        self.handled = Some("answered");
        bot.counters
            .incoming_answered
            .fetch_add(1, Ordering::Relaxed);
        let call_id = answered.call_connection_id;
        let signalling = bot.register(&call_id);
        acs.bind(&token, &call_id, None);
        let media = match options {
            Some(options) => {
                match crate::acs::calls::start_media(&bot, acs, &token, &call_id, options) {
                    Ok(media) => Some(media),
                    Err(e) => {
                        // Answered but no media here: end the call rather than leave it mute.
                        let _ = acs.client.hang_up(&call_id).await;
                        acs.forget(&token);
                        bot.unregister(&call_id);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let mut resource = self.resource.clone();
        resource.id = call_id.clone().into();
        resource.state = CallState::Establishing.into();
        Ok(crate::acs::calls::spawn(
            &bot, call_id, token, resource, signalling, media,
        ))
    }

    /// Declines the call (`busy`, `forbidden` or `none`).
    pub async fn reject(&mut self, reason: RejectReason) -> Result<(), BotError> {
        self.check_open()?;
        match (&self.acs, self.bot.acs()) {
            (Some(offer), Some(acs)) => {
                let reason = match reason {
                    RejectReason::Busy => appmedia_acs::models::RejectReason::Busy,
                    RejectReason::Forbidden => appmedia_acs::models::RejectReason::Forbidden,
                    _ => appmedia_acs::models::RejectReason::None,
                };
                acs.client
                    .reject_call(&RejectCallRequest {
                        incoming_call_context: offer.incoming_call_context.clone(),
                        call_reject_reason: Some(reason),
                    })
                    .await?;
            }
            _ => {
                self.bot
                    .graph("reject")?
                    .reject(&self.call_id, &RejectRequest::new(reason))
                    .await?;
            }
        }
        self.handled = Some("rejected");
        self.bot
            .counters
            .incoming_rejected
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends the call on to up to 25 targets; they ring for `timeout` (15–90 s; Graph's
    /// default when `None`). The bot is out of the call once this returns.
    pub async fn redirect(
        &mut self,
        targets: Vec<Target>,
        timeout: Option<Duration>,
    ) -> Result<(), BotError> {
        self.check_open()?;
        if let (Some(offer), Some(acs)) = (&self.acs, self.bot.acs()) {
            // Call Automation redirects to one target, which rings for the service's time.
            let [target] = <[Target; 1]>::try_from(targets).map_err(|_| BotError::Unsupported {
                backend: "acs",
                capability: "redirecting to several targets at once",
            })?;
            if timeout.is_some() {
                return Err(BotError::Unsupported {
                    backend: "acs",
                    capability: "a redirect timeout",
                });
            }
            acs.client
                .redirect_call(&RedirectCallRequest {
                    incoming_call_context: offer.incoming_call_context.clone(),
                    target: crate::acs::calls::target_identifier(target)?,
                })
                .await?;
            self.handled = Some("redirected");
            self.bot
                .counters
                .incoming_redirected
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let targets = targets.into_iter().map(Target::into_participant).collect();
        let mut request = RedirectRequest::new(targets);
        if let Some(timeout) = timeout {
            request.timeout = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX).into();
        }
        self.bot
            .graph("redirect")?
            .redirect(&self.call_id, &request)
            .await?;
        self.handled = Some("redirected");
        self.bot
            .counters
            .incoming_redirected
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for IncomingCall {
    /// An answered call belongs to its driver. Any other watches for the service's end of the
    /// call, so that its routes are freed and an unhandled call is reported as expired.
    fn drop(&mut self) {
        let Some(mut signalling) = self.signalling.take() else {
            // An ACS offer left unhandled rings until the service gives up on it.
            if self.acs.is_some() && self.handled.is_none() {
                self.bot
                    .counters
                    .incoming_expired
                    .fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let bot = self.bot.clone();
        let call_id = std::mem::take(&mut self.call_id);
        let unhandled = self.handled.is_none();
        if unhandled {
            tracing::warn!(call = %call_id, "incoming call dropped unanswered: Graph ends it at its deadline");
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            bot.unregister(&call_id);
            return;
        };
        runtime.spawn(async move {
            let ended = tokio::time::timeout(EXPIRY_WATCH, async {
                while let Some(event) = signalling.recv().await {
                    if let Signal::Graph(CallEvent::StateChanged {
                        to: CallState::Terminated,
                        ..
                    }) = event
                    {
                        return true;
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            if unhandled {
                bot.counters
                    .incoming_expired
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(call = %call_id, ended, "unanswered incoming call expired");
            }
            bot.unregister(&call_id);
        });
    }
}
