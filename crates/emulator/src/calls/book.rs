//! The control API's view of every call ([`CallView`], kept in the [`CallBook`]): the call
//! drivers and ringing calls write it, `GET /control/calls` ([`crate::http::control`]) reads
//! it.

use std::sync::Mutex;

use serde::Serialize;

use crate::admission::Party;

/// How many ended calls `GET /control/calls` still shows.
pub const ENDED_CALLS_KEPT: usize = 200;

/// Which way a call goes, seen from the bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Someone called the bot.
    Incoming,
    /// The bot called (or joined a meeting).
    Outgoing,
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ViewState {
    /// Ringing the bot.
    Incoming,
    /// Created or answered, not established yet.
    Establishing,
    /// Established (for a redirected call: a target answered).
    Established,
    /// The bot redirected it; the targets ring.
    Redirecting,
    /// Over.
    Terminated,
}

/// Where a party is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PartyState {
    /// Being rung (for the bot of an incoming call: offered, not answered yet).
    Ringing,
    /// In the call.
    Connected,
    /// Refused the call.
    Declined,
    /// Stopped ringing without answering (timeout, or another target answered first).
    Missed,
    /// Was in the call, and is not any more.
    Left,
}

/// What a party is to the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PartyRole {
    /// The bot (the application, or its instance).
    Bot,
    /// Who called the bot.
    Caller,
    /// Whom the bot called.
    Callee,
    /// A target the bot redirected the call to.
    Target,
    /// A meeting participant.
    Participant,
}

/// What kind of identity a party has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PartyKind {
    /// A directory user (id: the user id).
    User,
    /// A phone (id: the E.164 number).
    Phone,
    /// The bot's application (id: the app id).
    Application,
    /// The bot's application instance (id: the instance id).
    ApplicationInstance,
}

/// One party of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartyView {
    /// User id, phone number, app or instance id.
    pub id: String,
    /// What `id` is.
    pub kind: PartyKind,
    /// What the party is to the call.
    pub role: PartyRole,
    /// Where it is.
    pub state: PartyState,
}

impl PartyView {
    /// A user or phone party.
    pub fn of(party: &Party, role: PartyRole, state: PartyState) -> Self {
        let (id, kind) = match party {
            Party::User { id, .. } => (id.clone(), PartyKind::User),
            Party::Phone { number } => (number.clone(), PartyKind::Phone),
        };
        PartyView {
            id,
            kind,
            role,
            state,
        }
    }
}

/// Where a redirected call went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectView {
    /// The targets, in the request's order.
    pub targets: Vec<String>,
    /// The target that answered, if one did.
    pub answered_by: Option<String>,
}

/// How a call ended (the bot's `resultInfo`, or for a redirected call, the caller's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultView {
    /// `resultInfo.code`.
    pub code: i64,
    /// `resultInfo.subcode`.
    pub subcode: i64,
    /// `resultInfo.message`.
    pub message: String,
}

/// The control API's view of one call (`GET /control/calls/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    /// The Graph call id.
    pub id: String,
    /// Seen from the bot.
    pub direction: Direction,
    /// Where the call is.
    pub state: ViewState,
    /// The bot's application id.
    pub app: String,
    /// The bot first, then everyone else.
    pub parties: Vec<PartyView>,
    /// Where the bot redirected the call.
    pub redirect: Option<RedirectView>,
    /// How it ended.
    pub result: Option<ResultView>,
}

impl CallView {
    /// A new call: the bot (`bot_id` of `bot_kind`) and the other `parties`.
    pub fn new(
        id: &str,
        direction: Direction,
        state: ViewState,
        app: &str,
        (bot_id, bot_kind): (&str, PartyKind),
        parties: Vec<PartyView>,
    ) -> Self {
        let mut view = CallView {
            id: id.to_owned(),
            direction,
            state,
            app: app.to_owned(),
            parties: vec![PartyView {
                id: bot_id.to_owned(),
                kind: bot_kind,
                role: PartyRole::Bot,
                state: PartyState::Ringing,
            }],
            redirect: None,
            result: None,
        };
        view.parties.extend(parties);
        view.sync_bot();
        view
    }

    /// The bot's own state follows the call's: offered, in it, or gone.
    fn sync_bot(&mut self) {
        let state = match self.state {
            ViewState::Incoming => PartyState::Ringing,
            ViewState::Establishing | ViewState::Established => PartyState::Connected,
            ViewState::Redirecting | ViewState::Terminated => PartyState::Left,
        };
        if let Some(bot) = self.parties.iter_mut().find(|p| p.role == PartyRole::Bot)
            && !(bot.state == PartyState::Left && state != PartyState::Left)
        {
            bot.state = state;
        }
    }
}

impl CallView {
    /// A call the bot creates: it is in it from the start.
    pub fn outgoing(id: &str, app: &str) -> Self {
        CallView::new(
            id,
            Direction::Outgoing,
            ViewState::Establishing,
            app,
            (app, PartyKind::Application),
            Vec::new(),
        )
    }
}

/// The parties of a call the driver runs: its `called` parties with their states (the
/// caller, for an incoming call), then the meeting people of the `roster` (by key, the bot's
/// being empty) who are not among them.
pub(crate) fn driven_parties<'a>(
    incoming: bool,
    called: impl Iterator<Item = (&'a Party, PartyState)>,
    roster: impl Iterator<Item = &'a str>,
) -> Vec<PartyView> {
    let role = if incoming {
        PartyRole::Caller
    } else {
        PartyRole::Callee
    };
    let mut parties: Vec<PartyView> = called
        .map(|(party, state)| PartyView::of(party, role, state))
        .collect();
    for key in roster {
        if !key.is_empty() && !parties.iter().any(|p| p.id == key) {
            parties.push(PartyView {
                id: key.to_owned(),
                kind: PartyKind::User,
                role: PartyRole::Participant,
                state: PartyState::Connected,
            });
        }
    }
    parties
}

/// Every call's [`CallView`], live ones and the last ended ones, in creation order.
#[derive(Debug, Default)]
pub struct CallBook {
    views: Mutex<Vec<CallView>>,
}

impl CallBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallView>> {
        // A panicking writer leaves a usable list; keep serving.
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new call.
    pub fn open(&self, view: CallView) {
        self.lock().push(view);
    }

    /// Changes call `id`'s view (no-op for an unknown call).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut CallView)) {
        if let Some(view) = self.lock().iter_mut().find(|v| v.id == id) {
            f(view);
            view.sync_bot();
        }
    }

    /// The call's state.
    pub fn set_state(&self, id: &str, state: ViewState) {
        self.update(id, |v| v.state = state);
    }

    /// Replaces everyone but the bot.
    pub fn set_parties(&self, id: &str, state: ViewState, parties: Vec<PartyView>) {
        self.update(id, |v| {
            v.state = state;
            v.parties.retain(|p| p.role == PartyRole::Bot);
            v.parties.extend(parties);
        });
    }

    /// Call `id` ended with `result`: whoever still rang missed it, whoever was in it left.
    /// The oldest ended calls beyond [`ENDED_CALLS_KEPT`] are forgotten.
    pub fn ended(&self, id: &str, (code, subcode, message): (i64, i64, &str)) {
        self.update(id, |v| {
            v.state = ViewState::Terminated;
            v.result = Some(ResultView {
                code,
                subcode,
                message: message.to_owned(),
            });
            for p in &mut v.parties {
                p.state = match p.state {
                    PartyState::Ringing => PartyState::Missed,
                    PartyState::Connected => PartyState::Left,
                    other => other,
                };
            }
        });
        let mut views = self.lock();
        let ended = views
            .iter()
            .filter(|v| v.state == ViewState::Terminated)
            .count();
        let mut excess = ended.saturating_sub(ENDED_CALLS_KEPT);
        views.retain(|v| {
            let drop = excess > 0 && v.state == ViewState::Terminated;
            excess -= usize::from(drop);
            !drop
        });
    }

    /// One call.
    pub fn get(&self, id: &str) -> Option<CallView> {
        self.lock().iter().find(|v| v.id == id).cloned()
    }

    /// Every call, oldest first.
    pub fn all(&self) -> Vec<CallView> {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str) -> CallView {
        CallView::new(
            id,
            Direction::Incoming,
            ViewState::Incoming,
            "app",
            ("app", PartyKind::Application),
            vec![PartyView::of(
                &Party::Phone {
                    number: "+1".into(),
                },
                PartyRole::Caller,
                PartyState::Ringing,
            )],
        )
    }

    #[test]
    fn the_bot_follows_the_call_and_ending_settles_every_party() {
        let book = CallBook::default();
        book.open(view("a"));
        assert_eq!(book.get("a").unwrap().parties[0].state, PartyState::Ringing);
        book.set_state("a", ViewState::Established);
        assert_eq!(
            book.get("a").unwrap().parties[0].state,
            PartyState::Connected
        );
        book.ended("a", (200, 0, "bye"));
        let a = book.get("a").unwrap();
        assert_eq!(a.state, ViewState::Terminated);
        assert_eq!(a.parties[0].state, PartyState::Left);
        assert_eq!(a.parties[1].state, PartyState::Missed);
        assert_eq!(a.result.unwrap().code, 200);
        let json = serde_json::to_value(book.get("a").unwrap()).unwrap();
        assert_eq!(json["parties"][1]["role"], "caller");
        assert_eq!(json["direction"], "incoming");
    }

    #[test]
    fn only_the_last_ended_calls_are_kept() {
        let book = CallBook::default();
        book.open(view("live"));
        for i in 0..ENDED_CALLS_KEPT + 3 {
            let id = format!("ended-{i}");
            book.open(view(&id));
            book.ended(&id, (200, 0, ""));
        }
        let all = book.all();
        assert_eq!(all.len(), ENDED_CALLS_KEPT + 1);
        assert_eq!(all[0].id, "live");
        assert_eq!(all[1].id, "ended-3");
    }
}
