//! Calls to the bot. A directory user or phone calls an application (by its id, its
//! application instance's id or the instance's phone number), possibly from a meeting:
//!
//! 1. `ring` (`POST /control/incoming-calls`, or a directory `[[incoming_calls]]` script)
//!    posts the `created` notification with the `incoming` call to the application's calling
//!    webhook, signed like every notification, and the call rings the bot.
//! 2. Within [`crate::EmulatorConfig::incoming_answer_timeout`] (Graph: 15 s) the bot
//!    answers, rejects or redirects it (`crate::http::incoming`). Otherwise the call ends and the bot
//!    gets `terminated` with [`result::NOT_ANSWERED_IN_TIME`].
//! 3. Answered, the call is run by the same driver as created calls
//!    ([`crate::calls::driver::run_call`]): `establishing` (carrying the answer's media
//!    configuration: the emulator's answer blob for app-hosted media), `established`, a
//!    roster with the caller and the bot, the caller speaking its directory `media`;
//!    notifications go to the answer's `callbackUri`. A meeting call puts the bot in the
//!    meeting's script instead.
//! 4. Rejected, the caller is declined and the bot gets `terminated`; redirected, the bot's
//!    leg ends the same way and [`redirect`] rings the targets for the caller.
//!
//! One task per ringing call owns its fate: the handlers send it `Command`s and the first
//! one wins, so two answers, or an answer racing the deadline, cannot both happen.

pub mod redirect;
pub mod route;
pub mod shapes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_model::{Call, CallDirection, ChatInfo, MediaConfig, ParticipantInfo};
use appmedia_signalling::validate::CreateCallKind;
use tokio::sync::{mpsc, oneshot};

use crate::admission::Party;
use crate::calls::book::{
    CallView, Direction, PartyKind, PartyRole, PartyState, PartyView, ViewState,
};
use crate::calls::driver::{CallPlan, Control, run_call};
use crate::calls::softphones::SoftphoneCommand;
use crate::calls::{CallRecord, Shared};
use crate::conference::media::MediaPeer;
use crate::conference::service_media::ServiceMedia;
use crate::directory::{Answer, Behaviour, Directory, Presence};
use crate::error::ApiError;
use crate::notify::Destination;
use crate::notify::NotificationQueue;
use crate::shapes::{CallIds, MeetingContext};
use route::{Callee, IncomingRoute};

/// The `resultInfo` of the ways the bot's leg of an incoming call ends before it is answered.
pub mod result {
    /// (code, subcode, message): the bot did not answer, reject or redirect in time. Graph's
    /// "Call timed out due to no signaling from callee endpoints".
    pub const NOT_ANSWERED_IN_TIME: (i64, i64, &str) = (
        408,
        10057,
        "Call timed out due to no signaling from callee endpoints.",
    );
    /// … rejected with reason `none` (SIP 603 Decline, what the caller hears).
    pub const REJECTED: (i64, i64, &str) = (603, 0, "The call was rejected by the application.");
    /// … rejected with reason `busy` (SIP 486 Busy Here).
    pub const REJECTED_BUSY: (i64, i64, &str) =
        (486, 0, "The call was rejected by the application: busy.");
    /// … rejected with reason `forbidden` (SIP 403 Forbidden).
    pub const REJECTED_FORBIDDEN: (i64, i64, &str) = (
        403,
        0,
        "The call was rejected by the application: forbidden.",
    );
    /// … redirected (SIP 302 Moved Temporarily): the caller now rings the targets.
    pub const REDIRECTED: (i64, i64, &str) =
        (302, 0, "The call was redirected by the application.");
    /// … the caller hung up while it rang (SIP 487 Request Terminated: the caller's CANCEL).
    pub const CALLER_HUNG_UP: (i64, i64, &str) =
        (487, 0, "The caller hung up before the call was answered.");
    /// … the bot deleted the call while it rang.
    pub const ENDED_BY_APPLICATION: (i64, i64, &str) = crate::shapes::result::ENDED_BY_APPLICATION;
}

/// What a handler asks a ringing call. The reply says whether it was taken: only the first
/// command is, so every later one finds the channel closed.
pub(crate) enum Command {
    /// `POST …/answer`, with the media already set up.
    Answer {
        answered: Box<Answered>,
        reply: oneshot::Sender<()>,
    },
    /// `POST …/reject`: the bot's leg ends with `result`.
    Reject {
        result: (i64, i64, &'static str),
        callback_uri: Option<String>,
        reply: oneshot::Sender<()>,
    },
    /// `POST …/redirect`.
    Redirect {
        redirect: redirect::Redirect,
        reply: oneshot::Sender<()>,
    },
}

/// An accepted answer.
pub(crate) struct Answered {
    /// Where the call's notifications go now.
    pub callback_uri: String,
    /// The bot's media configuration, with the emulator's answer blob in place of the offer.
    pub media_config: MediaConfig,
    /// The emulator as media peer (app-hosted media with an appmedia blob).
    pub media: Option<MediaPeer>,
    /// The emulator playing prompts (service-hosted media).
    pub service: Option<ServiceMedia>,
    /// `callOptions.isDeltaRosterEnabled`.
    pub delta_roster: bool,
    /// `callOptions.isContentSharingNotificationEnabled`.
    pub content_sharing: bool,
}

/// Calling webhooks (changeable at run time) and the calls ringing a bot.
#[derive(Debug)]
pub struct IncomingState {
    /// Application id (lower case) → webhook.
    webhooks: Mutex<HashMap<String, String>>,
    /// Call id → its ringing task's commands.
    ringing: Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Answer { .. } => "Answer",
            Command::Reject { .. } => "Reject",
            Command::Redirect { .. } => "Redirect",
        })
    }
}

impl IncomingState {
    /// The directory's webhooks, nothing ringing.
    pub fn new(directory: &Directory) -> Self {
        let webhooks = directory
            .applications
            .iter()
            .filter_map(|a| Some((a.id.to_lowercase(), a.calling_webhook.clone()?)))
            .collect();
        IncomingState {
            webhooks: Mutex::new(webhooks),
            ringing: Mutex::default(),
        }
    }

    fn webhooks(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.webhooks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ringing_calls(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Command>>> {
        self.ringing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Application `app_id`'s calling webhook.
    pub fn webhook(&self, app_id: &str) -> Option<String> {
        self.webhooks().get(&app_id.to_lowercase()).cloned()
    }

    /// Sets (or with `None` removes) application `app_id`'s calling webhook.
    pub fn set_webhook(&self, app_id: &str, url: Option<String>) {
        let key = app_id.to_lowercase();
        match url {
            Some(url) => self.webhooks().insert(key, url),
            None => self.webhooks().remove(&key),
        };
    }

    /// The command channel of a call that still rings.
    pub(crate) fn ringing(&self, call_id: &str) -> Option<mpsc::UnboundedSender<Command>> {
        self.ringing_calls().get(call_id).cloned()
    }
}

/// Places the call `route` describes: the bot is offered it at its application's calling
/// webhook (409 when it has none). Returns the call id.
pub(crate) fn ring(shared: &Arc<Shared>, route: IncomingRoute) -> Result<String, ApiError> {
    let app = route.application.id.clone();
    let webhook = shared.incoming().webhook(&app).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "Conflict",
            format!(
                "application {app} has no calling webhook: set it with PUT {}/control/applications/{app}/calling-webhook",
                shared.base_url
            ),
        )
    })?;
    let ids = CallIds {
        id: uuid::Uuid::new_v4().to_string(),
        call_chain_id: uuid::Uuid::new_v4().to_string(),
        my_participant_id: uuid::Uuid::new_v4().to_string(),
    };
    let source_participant_id = uuid::Uuid::new_v4().to_string();
    let call = shapes::incoming_call(
        shared.directory(),
        &route,
        &ids,
        &source_participant_id,
        &webhook,
    );
    let (notify, _delivery) = shared.notifier().start_call(Destination {
        callback_uri: webhook.clone(),
        app_id: app.clone(),
        tenant_id: route.application.tenant.clone(),
    });
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    shared.insert_call(
        &ids.id,
        CallRecord {
            app_id: app.clone(),
            tenant_id: route.application.tenant.clone(),
            resource: call.clone(),
            participants: Vec::new(),
            control: control_tx,
            media: None,
            service: None,
        },
    );
    shared
        .incoming()
        .ringing_calls()
        .insert(ids.id.clone(), commands_tx);
    let bot_kind = match route.callee {
        Callee::Application => PartyKind::Application,
        Callee::Instance(_) | Callee::InstancePhone(_) => PartyKind::ApplicationInstance,
    };
    shared.book().open(CallView::new(
        &ids.id,
        Direction::Incoming,
        ViewState::Incoming,
        &app,
        (route.bot_id(), bot_kind),
        vec![PartyView::of(
            &route.caller,
            PartyRole::Caller,
            PartyState::Ringing,
        )],
    ));
    send(&notify, shapes::created_notification(&call));
    tracing::info!(call = %ids.id, %app, caller = ?route.caller, meeting = route.meeting.is_some(), %webhook, "incoming call rings the bot");
    let ringing = Ringing {
        shared: shared.clone(),
        route,
        call,
        webhook,
        notify,
        my_participant_id: ids.my_participant_id.clone(),
    };
    tokio::spawn(ringing.run(commands_rx, control_rx));
    Ok(ids.id)
}

/// Rings the bot as the directory's `[[incoming_calls]]` say, each at its time after start.
pub(crate) fn schedule_scripted(shared: &Arc<Shared>) {
    for (i, script) in shared.directory().incoming_calls.iter().enumerate() {
        let shared = shared.clone();
        let script = script.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(script.at_ms)).await;
            let placed = shared
                .directory()
                .incoming_route(&script.from, &script.to, script.meeting.as_deref())
                .map_err(|e| e.to_string())
                .and_then(|route| ring(&shared, route).map_err(|e| e.message));
            match placed {
                Ok(call) => {
                    tracing::info!(script = i, %call, from = %script.from, to = %script.to, "scripted incoming call placed")
                }
                Err(reason) => {
                    tracing::warn!(script = i, from = %script.from, to = %script.to, %reason, "scripted incoming call not placed")
                }
            }
        });
    }
}

fn send(notify: &NotificationQueue, body: appmedia_model::CommsNotifications) {
    match serde_json::to_value(&body) {
        // The delivery task outlives the call; a send error means the emulator is stopping.
        Ok(value) => {
            let _ = notify.send(value);
        }
        Err(e) => tracing::error!(error = %e, "notification not serializable"),
    }
}

/// A call ringing the bot, and everything its task needs.
struct Ringing {
    shared: Arc<Shared>,
    route: IncomingRoute,
    /// The call as offered.
    call: Call,
    webhook: String,
    /// Notifications to the webhook.
    notify: NotificationQueue,
    my_participant_id: String,
}

impl Ringing {
    fn id(&self) -> String {
        self.call.id.value().cloned().unwrap_or_default()
    }

    /// Waits for the bot's decision (or the deadline) and carries it out.
    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let deadline = tokio::time::Instant::now() + self.shared.config.incoming_answer_timeout;
        let command = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(call = %self.id(), timeout = ?self.shared.config.incoming_answer_timeout,
                        "the bot did not answer, reject or redirect the incoming call in time");
                    self.end(None, result::NOT_ANSWERED_IN_TIME);
                    return;
                }
                command = control.recv() => match command {
                    // `DELETE` by the bot, or the emulator stopping.
                    Some(Control::HangUp) | None => {
                        self.end(None, result::ENDED_BY_APPLICATION);
                        return;
                    }
                    // The person on the softphone page who calls hangs up.
                    Some(Control::Softphone(SoftphoneCommand::Leave { user }))
                        if self.route.from_page.is_some() && self.route.caller.is_user(&user) =>
                    {
                        tracing::info!(call = %self.id(), %user, "the caller hung up while the call rang the bot");
                        self.end(None, result::CALLER_HUNG_UP);
                        return;
                    }
                    // Nothing else (softphone pages, in-call actions) applies to a call that
                    // only rings the bot.
                    Some(_) => continue,
                },
                // The sender stays in the ringing map until this task leaves it.
                Some(command) = commands.recv() => break command,
            }
        };
        // No second command can be taken from here on: later ones see a closed channel.
        self.shared.incoming().ringing_calls().remove(&self.id());
        drop(commands);
        match command {
            Command::Reject {
                result,
                callback_uri,
                reply,
            } => {
                tracing::info!(call = %self.id(), code = result.0, "the bot rejected the incoming call");
                self.end(callback_uri, result);
                // Answered once the call is gone: a GET after the 202 finds nothing.
                let _ = reply.send(());
            }
            Command::Redirect { redirect, reply } => {
                self.redirect(redirect, reply).await;
            }
            Command::Answer { answered, reply } => {
                self.answer(*answered, reply, control).await;
            }
        }
    }

    /// Ends the bot's leg and the call: gone first, then `terminated` to `callback_uri` (else
    /// the webhook), so a bot that reads the notification finds the call gone.
    fn end(&self, callback_uri: Option<String>, outcome: (i64, i64, &str)) {
        let id = self.id();
        self.shared.incoming().ringing_calls().remove(&id);
        self.shared.remove_call(&id);
        self.shared.book().ended(&id, outcome);
        // A page that placed the call stops calling.
        self.shared.softphones().call_ended(&id, outcome.2);
        self.notify_terminated(callback_uri, outcome);
    }

    /// The `deleted` notification that ends the bot's leg.
    fn notify_terminated(&self, callback_uri: Option<String>, outcome: (i64, i64, &str)) {
        let target = callback_uri.unwrap_or_else(|| self.webhook.clone());
        let body = shapes::terminated_notification(&self.call, &target, outcome);
        if target == self.webhook {
            send(&self.notify, body);
        } else {
            let (notify, _delivery) = self.shared.notifier().start_call(self.destination(target));
            send(&notify, body);
        }
    }

    fn destination(&self, callback_uri: String) -> Destination {
        Destination {
            callback_uri,
            app_id: self.route.application.id.clone(),
            tenant_id: self.route.application.tenant.clone(),
        }
    }

    async fn redirect(self, redirect: redirect::Redirect, reply: oneshot::Sender<()>) {
        let id = self.id();
        tracing::info!(call = %id, targets = redirect.targets.len(), "the bot redirected the incoming call");
        // The bot's leg ends now; the caller's goes on, without it.
        self.shared.incoming().ringing_calls().remove(&id);
        self.shared.remove_call(&id);
        self.notify_terminated(redirect.callback_uri.clone(), result::REDIRECTED);
        // The redirect's targets ring for the directory's caller; a page that placed the call
        // follows no redirect: it is told the call went elsewhere.
        if self.route.from_page.is_some() {
            self.shared
                .softphones()
                .call_ended(&id, "the bot redirected the call");
        }
        let _ = reply.send(());
        redirect::run(
            self.shared.clone(),
            id,
            (
                self.route.caller.clone(),
                self.route.caller_behaviour.clone(),
            ),
            redirect,
        )
        .await;
    }

    /// The bot answered: the call becomes a call like any other, run by the driver.
    async fn answer(
        self,
        answered: Answered,
        reply: oneshot::Sender<()>,
        control: mpsc::UnboundedReceiver<Control>,
    ) {
        let id = self.id();
        let route = &self.route;
        let (notify, _delivery) = self
            .shared
            .notifier()
            .start_call(self.destination(answered.callback_uri.clone()));
        let bot_identity = route.bot_identity();
        let Answered {
            callback_uri,
            media_config,
            media,
            service,
            delta_roster,
            content_sharing,
        } = answered;
        if let Some(service) = &service {
            service.attach_notifications(notify.clone());
        }
        self.shared.update_call(&id, |record| {
            record.resource.state = appmedia_model::CallState::Establishing.into();
            record.resource.media_config = media_config.into();
            record.resource.callback_uri = callback_uri.clone().into();
            record.resource.answered_by = ParticipantInfo::new(bot_identity.clone()).into();
            record.media = media;
            record.service = service;
        });
        self.shared.book().set_state(&id, ViewState::Establishing);
        // The handler answers 202 once the call is answered, not before.
        let _ = reply.send(());
        tracing::info!(call = %id, callback = %callback_uri, "the bot answered the incoming call");
        let kind = match (&route.meeting, &route.caller) {
            (Some(_), _) => CreateCallKind::MeetingJoin,
            (None, Party::Phone { .. }) => CreateCallKind::Pstn,
            (None, Party::User { .. }) => CreateCallKind::PeerToPeer,
        };
        let meeting = route.meeting.clone().map(|mut meeting| {
            // Whoever called from the meeting is in it when the bot arrives.
            if let Party::User { id: user, .. } = &route.caller
                && !meeting
                    .present
                    .iter()
                    .any(|p| p.user.eq_ignore_ascii_case(user))
            {
                meeting.present.push(Presence {
                    user: user.clone(),
                    muted: false,
                });
            }
            (
                MeetingContext {
                    chat_info: ChatInfo::new(&meeting.thread_id, "0"),
                    meeting_info: crate::shapes::organizer_meeting_info(
                        self.shared.directory(),
                        &meeting.organizer,
                    ),
                },
                meeting,
            )
        });
        // Outside a meeting the caller is the call's one party: in it from the answer on,
        // speaking and hanging up as its directory entry says.
        let parties = match &meeting {
            Some(_) => Vec::new(),
            None => vec![(
                route.caller.clone(),
                Behaviour {
                    answer: Answer::Answer,
                    ring_delay_ms: 0,
                    ..route.caller_behaviour.clone()
                },
            )],
        };
        let plan = CallPlan {
            call_id: id,
            callback_uri,
            kind,
            bot_identity,
            my_participant_id: self.my_participant_id.clone(),
            parties,
            meeting,
            delta_roster,
            content_sharing,
            ringing_timeout: self.shared.config.default_ringing_timeout,
            faults: self.shared.config.faults,
            caller_page: route.from_page,
        };
        run_call(self.shared.clone(), plan, control, notify).await;
    }
}

/// True when the record is a call offered to the bot and not yet answered.
pub(crate) fn is_incoming(call: &Call) -> bool {
    call.direction.value() == Some(&CallDirection::Incoming)
        && call.state.value() == Some(&appmedia_model::CallState::Incoming)
}
