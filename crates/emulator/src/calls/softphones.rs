//! The softphone pages a call may ring, and what a page asks of a call's driver: the
//! registry the page's WebSocket handler ([`crate::http::softphone`]) and the call drivers
//! share. Each page is a channel of JSON messages to its WebSocket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use appmedia_emulator_media::NetworkLink;
use appmedia_model::Participant;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What a page asks of a call's driver (through the call's control channel).
#[derive(Debug)]
pub enum SoftphoneCommand {
    /// The person joins: answers a ringing call, takes the place of the simulated user, or
    /// joins the meeting. The driver replies with the party it added, or why not.
    Join {
        /// The directory user the page speaks for.
        user: String,
        /// Where the driver answers: the party added, or why not.
        reply: oneshot::Sender<Result<Joined, String>>,
    },
    /// The person declines a call that rings them.
    Decline {
        /// The directory user the page speaks for.
        user: String,
    },
    /// The person mutes or unmutes.
    Mute {
        /// The directory user the page speaks for.
        user: String,
        /// Muted (`true`) or unmuted.
        muted: bool,
    },
    /// The person hangs up (or closed the page).
    Leave {
        /// The directory user the page speaks for.
        user: String,
    },
}

/// The person, in the call.
#[derive(Debug)]
pub struct Joined {
    /// Graph participant id.
    pub participant_id: String,
    /// Media source id (the roster's `sourceId`).
    pub source_id: u32,
    /// The conference party's packets.
    pub link: NetworkLink,
}

/// The latest audio report of a page (from the browser's `getStats()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PageReport {
    /// RTP packets the browser received from the emulator.
    pub packets_received: u64,
    /// The browser's `totalAudioEnergy` of what it received (grows with loudness × time).
    pub total_audio_energy: f64,
    /// The browser's `audioLevel` of what it received (0..1).
    pub audio_level: f64,
    /// RTP packets the browser sent (its microphone).
    pub packets_sent: u64,
}

/// One open softphone page, as [`crate::Emulator::softphones`] shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoftphoneStatus {
    /// The directory user the page is registered as (`None` before it registered).
    pub user: Option<String>,
    /// The meeting (joinMeetingId) it waits in.
    pub meeting: Option<String>,
    /// The call it is in.
    pub call_id: Option<String>,
    /// Its participant id and media source id in that call.
    pub participant_id: Option<String>,
    /// Its media source id in that call (the roster's `sourceId`).
    pub source_id: Option<u32>,
    /// Whether the person is muted.
    pub muted: bool,
    /// The browser's latest report and when it came.
    pub report: Option<PageReport>,
    #[serde(skip)]
    /// When [`report`](Self::report) came (not serialised).
    pub reported_at: Option<Instant>,
}

/// A live call a page could join.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallSummary {
    call_id: String,
    kind: String,
    /// Users the bot called (ids).
    called: Vec<String>,
    /// The meeting's joinMeetingId, for meeting calls.
    meeting: Option<String>,
    established: bool,
    #[serde(skip)]
    has_media: bool,
    /// The latest roster message, for a page that enters the call after it was sent.
    #[serde(skip)]
    roster: Option<Value>,
}

struct Page {
    tx: mpsc::UnboundedSender<Value>,
    status: SoftphoneStatus,
}

#[derive(Default)]
struct Inner {
    pages: HashMap<u64, Page>,
    calls: HashMap<String, CallSummary>,
}

/// A call a driver starts, as the pages see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StartedCall<'a> {
    /// The call id.
    pub call_id: &'a str,
    /// P2P, PSTN, group or meeting (`CreateCallKind`'s name).
    pub kind: &'a str,
    /// The user ids the bot called (for a call to the bot placed from a page: its caller).
    pub called: &'a [String],
    /// The meeting's joinMeetingId, for meeting calls.
    pub meeting: Option<&'a str>,
    /// Who calls, as the page shows it.
    pub from: &'a str,
    /// Whether the emulator takes part in the call's media (a page can join only then).
    pub has_media: bool,
    /// Only this page rings (the one that placed the call to the bot).
    pub only_page: Option<u64>,
}

/// Every open page and every live call they may join; shared by the WebSocket handlers and
/// the call drivers.
#[derive(Default)]
pub struct Softphones {
    inner: Mutex<Inner>,
    next_page: AtomicU64,
}

impl std::fmt::Debug for Softphones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Softphones").finish_non_exhaustive()
    }
}

impl Softphones {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every open page.
    pub fn status(&self) -> Vec<SoftphoneStatus> {
        self.lock()
            .pages
            .values()
            .map(|p| p.status.clone())
            .collect()
    }

    fn broadcast_calls(inner: &Inner) {
        let calls: Vec<&CallSummary> = inner.calls.values().filter(|c| c.has_media).collect();
        let message = json!({"type": "calls", "calls": calls});
        for page in inner.pages.values() {
            let _ = page.tx.send(message.clone());
        }
    }

    /// A call started; returns the called users a page registered as that user answers for:
    /// the call rings there, not in the script.
    pub(crate) fn call_started(&self, call: StartedCall<'_>) -> Vec<String> {
        let StartedCall {
            call_id,
            kind,
            called,
            meeting,
            from,
            has_media,
            only_page,
        } = call;
        let mut inner = self.lock();
        inner.calls.insert(
            call_id.to_owned(),
            CallSummary {
                call_id: call_id.to_owned(),
                kind: kind.to_owned(),
                called: called.to_vec(),
                meeting: meeting.map(str::to_owned),
                established: false,
                has_media,
                roster: None,
            },
        );
        let mut rung = Vec::new();
        if has_media {
            for (id, page) in &inner.pages {
                if let Some(user) = &page.status.user
                    && page.status.call_id.is_none()
                    && only_page.is_none_or(|only| only == *id)
                    && called.contains(user)
                {
                    let _ = page.tx.send(json!({
                        "type": "incoming", "callId": call_id, "from": from, "kind": kind,
                    }));
                    if !rung.contains(user) {
                        rung.push(user.clone());
                    }
                }
            }
        }
        Self::broadcast_calls(&inner);
        rung
    }

    /// The call is established; pages waiting in its meeting are told they can join.
    pub(crate) fn call_established(&self, call_id: &str, from: &str) {
        let mut inner = self.lock();
        let Some(call) = inner.calls.get_mut(call_id) else {
            return;
        };
        call.established = true;
        let call = call.clone();
        if let Some(meeting) = &call.meeting
            && call.has_media
        {
            for page in inner.pages.values() {
                if page.status.meeting.as_ref() == Some(meeting) && page.status.call_id.is_none() {
                    let _ = page.tx.send(json!({
                        "type": "incoming", "callId": call_id, "from": from, "kind": call.kind,
                    }));
                }
            }
        }
        Self::broadcast_calls(&inner);
    }

    /// The call's roster changed: pages in the call see it.
    pub(crate) fn roster(&self, call_id: &str, participants: &[Participant]) {
        let mut inner = self.lock();
        let list: Vec<Value> = participants.iter().map(roster_entry).collect();
        let message = json!({"type": "roster", "callId": call_id, "participants": list});
        if let Some(call) = inner.calls.get_mut(call_id) {
            call.roster = Some(message.clone());
        }
        for page in inner.pages.values() {
            if page.status.call_id.as_deref() == Some(call_id) {
                let _ = page.tx.send(message.clone());
            }
        }
    }

    /// The call is over: pages in it (or rung by it) hang up.
    pub(crate) fn call_ended(&self, call_id: &str, reason: &str) {
        let mut inner = self.lock();
        inner.calls.remove(call_id);
        let message = json!({"type": "ended", "callId": call_id, "reason": reason});
        for page in inner.pages.values_mut() {
            // Every page hears it: one that was rung stops ringing.
            let _ = page.tx.send(message.clone());
            if page.status.call_id.as_deref() == Some(call_id) {
                page.status.call_id = None;
                page.status.participant_id = None;
                page.status.source_id = None;
            }
        }
        Self::broadcast_calls(&inner);
    }

    pub(crate) fn open(&self, tx: mpsc::UnboundedSender<Value>) -> u64 {
        let id = self.next_page.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let calls: Vec<&CallSummary> = inner.calls.values().filter(|c| c.has_media).collect();
        let _ = tx.send(json!({"type": "calls", "calls": calls}));
        inner.pages.insert(
            id,
            Page {
                tx,
                status: SoftphoneStatus {
                    user: None,
                    meeting: None,
                    call_id: None,
                    participant_id: None,
                    source_id: None,
                    muted: false,
                    report: None,
                    reported_at: None,
                },
            },
        );
        id
    }

    pub(crate) fn update(&self, page: u64, f: impl FnOnce(&mut SoftphoneStatus)) {
        if let Some(p) = self.lock().pages.get_mut(&page) {
            f(&mut p.status);
        }
    }

    /// The page is in the call now: it gets the latest roster (its own joining is in it).
    pub(crate) fn enter(&self, page: u64, call_id: &str, participant_id: &str, source_id: u32) {
        let mut inner = self.lock();
        let roster = inner.calls.get(call_id).and_then(|c| c.roster.clone());
        if let Some(p) = inner.pages.get_mut(&page) {
            p.status.call_id = Some(call_id.to_owned());
            p.status.participant_id = Some(participant_id.to_owned());
            p.status.source_id = Some(source_id);
            p.status.muted = false;
            if let Some(roster) = roster {
                let _ = p.tx.send(roster);
            }
        }
    }

    pub(crate) fn get(&self, page: u64) -> Option<SoftphoneStatus> {
        self.lock().pages.get(&page).map(|p| p.status.clone())
    }

    pub(crate) fn close(&self, page: u64) {
        self.lock().pages.remove(&page);
    }
}

/// A roster entry as the page shows it.
fn roster_entry(p: &Participant) -> Value {
    let info = p.info.value();
    let identity = info.and_then(|i| i.identity.value());
    let (name, id, is_bot) = identity
        .map(|set| {
            let user = set.user.value();
            let app = set.application.value().or(set.application_instance.value());
            let phone = set.phone.value();
            let who = user.or(app).or(phone);
            (
                who.and_then(|i| i.display_name.value().cloned())
                    .or_else(|| who.and_then(|i| i.id.value().cloned()))
                    .unwrap_or_default(),
                who.and_then(|i| i.id.value().cloned()).unwrap_or_default(),
                user.is_none() && phone.is_none(),
            )
        })
        .unwrap_or_default();
    json!({
        "participantId": p.id.value(),
        "id": id,
        "displayName": name,
        "isBot": is_bot,
        "muted": p.is_muted.value().copied().unwrap_or(false),
        "sourceId": crate::shapes::source_id_of(p),
    })
}
