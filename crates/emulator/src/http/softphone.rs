//! The web softphone: a person joins an emulated call from a browser, as a directory user or
//! a meeting participant, with their own microphone and speakers.
//!
//! `GET /softphone` serves one self-contained page (`softphone.html`: inline script and
//! style, nothing fetched from elsewhere). The page talks to `GET /softphone/ws`, a
//! WebSocket carrying JSON messages (`docs/emulator.md` lists them):
//!
//! ```text
//! page → emulator   {"type":"register","user":"<user id>","meeting":"<joinMeetingId>"?}
//!                   {"type":"join","callId":"…","sdp":"<complete SDP offer>"}
//!                   {"type":"call","to":"<application id, instance id or its phone number>"}
//!                   {"type":"decline","callId":"…"}
//!                   {"type":"mute","muted":true}
//!                   {"type":"leave"}
//!                   {"type":"stats","packetsReceived":…,"totalAudioEnergy":…,"audioLevel":…,"packetsSent":…}
//! emulator → page   {"type":"directory","users":[…],"meetings":[…],"applications":[…]}   (on connect)
//!                   {"type":"registered","user":{…},"meeting":…}
//!                   {"type":"calling","callId":"…","to":"…"}          (the bot is rung)
//!                   {"type":"calls","calls":[…]}                       (live calls with media)
//!                   {"type":"incoming","callId":"…","from":"…","kind":"…"}
//!                   {"type":"joined","callId":"…","participantId":"…","sourceId":…,"sdp":"<answer>"}
//!                   {"type":"roster","callId":"…","participants":[…]}
//!                   {"type":"speaking","callId":"…","sourceIds":[…]}          (answers "stats")
//!                   {"type":"ended","callId":"…","reason":"…"}
//!                   {"type":"error","message":"…"}
//! ```
//!
//! The browser offers (non-trickle: its complete SDP after gathering), the emulator answers
//! with a transport `MediaSession` of its own per page. In the call's media the person is a
//! network party of the conference (`PartyAudio::Network`): their microphone is the RTP from
//! the browser, decoded by the media core, and they hear the mix-minus for them (everyone but
//! themself, the bot included). The call's driver puts them in the roster like any other
//! participant, so the bot sees them join, mute and leave, with their media source id.
//!
//! A page registered as a user rings when the bot calls that user (instead of the user's
//! scripted answer) and can join a live call by id: answer it while that user rings, take
//! the place of the simulated user when they are already in it, or join a meeting call.
//! A page registered for a meeting is told when the bot's call to that meeting is
//! established. Closing the page (the WebSocket) is leaving the call.
//!
//! A page registered as a user can also call the bot (`call`): the emulator rings the bot's
//! application as `POST /control/incoming-calls` does, with the person as the caller. Once the
//! bot answers, the call rings that page (`incoming` with the call id it was given in
//! `calling`), the page joins with its offer, and the person's joining establishes the call:
//! the bot hears their microphone and they hear the bot. Hanging up (`leave`) before that
//! cancels the call (the bot gets `terminated`, 487); a rejected, redirected or unanswered call
//! ends at the page with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use appmedia_emulator_media::NetworkLink;
use appmedia_transport::MediaSession;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::calls::Shared;
use crate::calls::driver::Control;
use crate::calls::softphones::{PageReport, SoftphoneCommand};

/// The page (inline script and style: it must work with no network).
pub const SOFTPHONE_HTML: &str = include_str!("softphone.html");

/// Largest message a page may send (an SDP offer is a few kilobytes).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How often packets move between a page's media session and its conference party.
const PUMP_INTERVAL: Duration = Duration::from_millis(5);
/// How long a join may wait for the call's driver.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A source heard this recently counts as speaking (the page reports every 0.5 s).
const SPEAKING_WINDOW: Duration = Duration::from_millis(600);

/// `GET /softphone` and `GET /softphone/ws`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/softphone", get(page))
        .route("/softphone/ws", get(upgrade))
        .with_state(shared)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SOFTPHONE_HTML,
    )
        .into_response()
}

/// `?key=` on the WebSocket URL.
#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// Who may open the WebSocket: whoever has this run's key (it is in the page's URL, printed
/// by the emulator), from the emulator's own origin when a browser says where it is (a page
/// on another site sends its own `Origin`). Refused: 403, before the upgrade.
fn admitted(
    shared: &Shared,
    headers: &axum::http::HeaderMap,
    key: Option<&str>,
) -> Result<(), &'static str> {
    if !key.is_some_and(|key| crate::directory::secret_matches(key, &shared.softphone_key)) {
        return Err("missing or wrong softphone key: open the URL the emulator printed");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if origin_host.is_none() || origin_host != host {
            return Err("the page is not the emulator's own");
        }
    }
    Ok(())
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(query): axum::extract::Query<KeyQuery>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(reason) = admitted(&shared, &headers, query.key.as_deref()) {
        tracing::warn!(reason, "softphone WebSocket refused");
        return (axum::http::StatusCode::FORBIDDEN, reason).into_response();
    }
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move { Connection::run(shared, socket).await })
}

/// What a page sends.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
enum FromPage {
    Register {
        user: String,
        #[serde(default)]
        meeting: Option<String>,
    },
    Join {
        call_id: String,
        sdp: String,
    },
    Call {
        to: String,
    },
    Decline {
        call_id: String,
    },
    Mute {
        muted: bool,
    },
    Leave,
    Stats(PageReport),
}

/// The person's media in a call: the session with the browser and the task that moves its
/// packets to and from the conference party.
struct InCall {
    call_id: String,
    user: String,
    session: Arc<MediaSession>,
    stop: Arc<AtomicBool>,
}

struct Connection {
    shared: Arc<Shared>,
    page: u64,
    tx: mpsc::UnboundedSender<Value>,
    call: Option<InCall>,
    /// The call this page placed to a bot, until the person picks it up or it ends.
    calling: Option<String>,
}

impl Connection {
    async fn run(shared: Arc<Shared>, mut socket: WebSocket) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let page = shared.softphones().open(tx.clone());
        let mut connection = Connection {
            shared,
            page,
            tx,
            call: None,
            calling: None,
        };
        connection.send(connection.directory());
        loop {
            tokio::select! {
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => connection.handle(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => connection.error("messages are JSON text"),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {} // ping/pong: axum answers pings itself
                },
                outgoing = rx.recv() => {
                    let Some(value) = outgoing else { break };
                    connection.observe(&value).await;
                    if socket.send(Message::Text(value.to_string().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Closing the page is hanging up.
        connection.leave().await;
        connection.shared.softphones().close(page);
    }

    fn send(&self, value: Value) {
        let _ = self.tx.send(value);
    }

    fn error(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(page = self.page, %message, "softphone request refused");
        self.send(json!({"type": "error", "message": message}));
    }

    fn directory(&self) -> Value {
        let directory = self.shared.directory();
        let users: Vec<Value> = directory
            .users
            .iter()
            .map(|u| json!({"id": u.id, "displayName": u.display_name}))
            .collect();
        let meetings: Vec<Value> = directory
            .meetings
            .iter()
            .map(|m| {
                let organizer = directory
                    .user(&m.organizer)
                    .map_or(m.organizer.as_str(), |u| u.display_name.as_str());
                json!({"joinMeetingId": m.join_meeting_id, "organizer": organizer})
            })
            .collect();
        // Whom a page can call: each application, and its instances with their numbers.
        let applications: Vec<Value> = directory
            .applications
            .iter()
            .map(|a| {
                let instances: Vec<Value> = directory
                    .application_instances
                    .iter()
                    .filter(|i| i.application.eq_ignore_ascii_case(&a.id))
                    .map(|i| json!({"id": i.id, "displayName": i.display_name, "phone": i.phone}))
                    .collect();
                json!({"id": a.id, "displayName": a.display_name, "instances": instances})
            })
            .collect();
        json!({
            "type": "directory", "users": users, "meetings": meetings,
            "applications": applications,
        })
    }

    /// Messages to the page that change this connection's state: the call ended.
    async fn observe(&mut self, value: &Value) {
        if value["type"] == "ended" && value["callId"].as_str() == self.calling.as_deref() {
            self.calling = None;
        }
        if value["type"] == "ended"
            && let Some(call) = &self.call
            && value["callId"].as_str() == Some(call.call_id.as_str())
            && let Some(call) = self.call.take()
        {
            call.stop.store(true, Ordering::Relaxed);
            call.session.close().await;
            self.shared.softphones().update(self.page, |s| {
                s.call_id = None;
                s.participant_id = None;
                s.source_id = None;
            });
        }
    }

    async fn handle(&mut self, text: &str) {
        let message: FromPage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return self.error(format!("bad message: {e}")),
        };
        match message {
            FromPage::Register { user, meeting } => self.register(user, meeting),
            FromPage::Join { call_id, sdp } => {
                if let Err(message) = self.join(&call_id, &sdp).await {
                    self.error(message);
                }
            }
            FromPage::Call { to } => {
                if let Err(message) = self.call(&to) {
                    self.error(message);
                }
            }
            FromPage::Decline { call_id } => match self.registered_user() {
                Some(user) => self.command(&call_id, SoftphoneCommand::Decline { user }),
                None => self.error("register first"),
            },
            FromPage::Mute { muted } => match &self.call {
                Some(call) => {
                    let command = SoftphoneCommand::Mute {
                        user: call.user.clone(),
                        muted,
                    };
                    let call_id = call.call_id.clone();
                    self.command(&call_id, command);
                    self.shared
                        .softphones()
                        .update(self.page, |s| s.muted = muted);
                }
                None => self.error("not in a call"),
            },
            FromPage::Leave => self.leave().await,
            FromPage::Stats(report) => {
                self.shared.softphones().update(self.page, |s| {
                    s.report = Some(report);
                    s.reported_at = Some(Instant::now());
                });
                // Each report is answered with who speaks in the call.
                if let Some(call) = &self.call {
                    let mut speaking = Vec::new();
                    self.shared.update_call(&call.call_id, |record| {
                        if let Some(media) = &record.media {
                            speaking = media.recent_speakers(SPEAKING_WINDOW);
                        }
                    });
                    self.send(json!({
                        "type": "speaking", "callId": call.call_id, "sourceIds": speaking,
                    }));
                }
            }
        }
    }

    fn registered_user(&self) -> Option<String> {
        self.shared.softphones().get(self.page).and_then(|s| s.user)
    }

    fn register(&mut self, user: String, meeting: Option<String>) {
        if self.call.is_some() {
            return self.error("hang up before changing identity");
        }
        let directory = self.shared.directory();
        let Some(found) = directory.user(&user) else {
            return self.error(format!("no user {user:?} in the directory"));
        };
        let meeting = meeting.filter(|m| !m.is_empty());
        if let Some(m) = &meeting
            && !directory.meetings.iter().any(|x| &x.join_meeting_id == m)
        {
            return self.error(format!("no meeting with joinMeetingId {m:?}"));
        }
        let display_name = found.display_name.clone();
        self.shared.softphones().update(self.page, |s| {
            s.user = Some(user.clone());
            s.meeting = meeting.clone();
        });
        tracing::info!(page = self.page, %user, ?meeting, "softphone registered");
        self.send(json!({
            "type": "registered",
            "user": {"id": user, "displayName": display_name},
            "meeting": meeting,
        }));
    }

    /// The person calls the bot `to` (an application id, instance id or phone number).
    fn call(&mut self, to: &str) -> Result<(), String> {
        if self.call.is_some() || self.calling.is_some() {
            return Err("already in a call: hang up first".into());
        }
        let user = self.registered_user().ok_or("register first")?;
        let mut route = self
            .shared
            .directory()
            .incoming_route(&user, to, None)
            .map_err(|e| e.to_string())?;
        route.from_page = Some(self.page);
        let call_id = crate::calls::incoming::ring(&self.shared, route).map_err(|e| e.message)?;
        tracing::info!(page = self.page, call = %call_id, %user, %to, "softphone calls the bot");
        self.send(json!({"type": "calling", "callId": call_id, "to": to}));
        self.calling = Some(call_id);
        Ok(())
    }

    fn command(&self, call_id: &str, command: SoftphoneCommand) {
        match self.shared.call_control(call_id) {
            Some(control) if control.send(Control::Softphone(command)).is_ok() => {}
            _ => self.error(format!("call {call_id} is not live")),
        }
    }

    async fn join(&mut self, call_id: &str, sdp: &str) -> Result<(), String> {
        if self.call.is_some() {
            return Err("already in a call: hang up first".into());
        }
        let user = self.registered_user().ok_or("register first")?;
        let control = self
            .shared
            .call_control(call_id)
            .ok_or_else(|| format!("call {call_id} is not live"))?;
        let session = MediaSession::answer_sdp(self.shared.transport_config(), sdp)
            .await
            .map_err(|e| format!("the browser's offer: {e}"))?;
        let endpoint = session
            .take_endpoint()
            .ok_or("the media session's queues are taken")?;
        let (reply, answer) = oneshot::channel();
        let command = SoftphoneCommand::Join {
            user: user.clone(),
            reply,
        };
        if control.send(Control::Softphone(command)).is_err() {
            session.close().await;
            return Err(format!("call {call_id} is not live"));
        }
        let joined = match tokio::time::timeout(JOIN_TIMEOUT, answer).await {
            Ok(Ok(Ok(joined))) => joined,
            Ok(Ok(Err(reason))) => {
                session.close().await;
                return Err(reason);
            }
            _ => {
                session.close().await;
                return Err(format!("call {call_id} ended before the join"));
            }
        };
        let session = Arc::new(session);
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(pump(
            self.shared.conference_epoch(),
            endpoint,
            joined.link,
            session.clone(),
            stop.clone(),
            Farewell {
                page: self.tx.clone(),
                control,
                call_id: call_id.to_owned(),
                user: user.clone(),
            },
        ));
        self.send(json!({
            "type": "joined",
            "callId": call_id,
            "participantId": joined.participant_id,
            "sourceId": joined.source_id,
            "sdp": session.local_sdp(),
        }));
        self.shared.softphones().enter(
            self.page,
            call_id,
            &joined.participant_id,
            joined.source_id,
        );
        tracing::info!(page = self.page, call = %call_id, %user, source_id = joined.source_id, "softphone joined");
        if self.calling.as_deref() == Some(call_id) {
            self.calling = None;
        }
        self.call = Some(InCall {
            call_id: call_id.to_owned(),
            user,
            session,
            stop,
        });
        Ok(())
    }

    async fn leave(&mut self) {
        // A call this page placed and the person has not picked up yet: hanging up cancels it.
        if let Some(call_id) = self.calling.take() {
            if let (Some(user), Some(control)) =
                (self.registered_user(), self.shared.call_control(&call_id))
            {
                let _ = control.send(Control::Softphone(SoftphoneCommand::Leave { user }));
            }
            self.send(json!({"type": "ended", "callId": call_id, "reason": "you hung up"}));
        }
        let Some(call) = self.call.take() else {
            return;
        };
        let command = SoftphoneCommand::Leave {
            user: call.user.clone(),
        };
        // A call already over has no driver to tell.
        if let Some(control) = self.shared.call_control(&call.call_id) {
            let _ = control.send(Control::Softphone(command));
        }
        call.stop.store(true, Ordering::Relaxed);
        call.session.close().await;
        self.shared.softphones().update(self.page, |s| {
            s.call_id = None;
            s.participant_id = None;
            s.source_id = None;
            s.muted = false;
        });
        self.send(json!({"type": "ended", "callId": call.call_id, "reason": "you left"}));
    }
}

/// Who to tell when the browser's media ends on its own (the browser vanished, ICE failed).
struct Farewell {
    page: mpsc::UnboundedSender<Value>,
    control: mpsc::UnboundedSender<Control>,
    call_id: String,
    user: String,
}

/// Moves packets between the browser's media session and the conference party until the
/// page leaves, or the session ends: then the person leaves the call and the page is told.
async fn pump(
    epoch: Instant,
    endpoint: appmedia_transport::RtpEndpoint,
    link: NetworkLink,
    session: Arc<MediaSession>,
    stop: Arc<AtomicBool>,
    farewell: Farewell,
) {
    let mut interval = tokio::time::interval(PUMP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        interval.tick().await;
        if let appmedia_transport::SessionState::Ended(reason) = session.state() {
            if stop.load(Ordering::Relaxed) {
                return; // the page left first
            }
            let Farewell {
                page,
                control,
                call_id,
                user,
            } = farewell;
            tracing::info!(call = %call_id, %user, %reason, "softphone media ended: the person leaves");
            let _ = control.send(Control::Softphone(SoftphoneCommand::Leave { user }));
            let _ = page.send(json!({
                "type": "ended",
                "callId": call_id,
                "reason": format!("media ended: {reason}"),
            }));
            return;
        }
        while let Some(packet) = endpoint.incoming.pop() {
            // A full inbox drops its oldest packet, which the jitter buffer then conceals.
            let _ = link.inbox.push(packet, epoch.elapsed());
        }
        while let Some(packet) = link.outbox.pop() {
            let _ = endpoint
                .outgoing
                .push(Bytes::copy_from_slice(packet.as_bytes()));
        }
    }
}
