//! One task per call plays the remote parties' script: ringing, answering, declining,
//! hanging up, meeting participants joining, leaving, muting and sharing content; and
//! turns each change into the notification the bot would get from Graph.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use appmedia_model::{CallState, ChangeType, CommsNotifications, IdentitySet, Participant};
use appmedia_signalling::validate::CreateCallKind;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::Party;
use crate::calls::Shared;
use crate::calls::book::{PartyState as ViewPartyState, ViewState};
use crate::calls::softphones::{Joined, SoftphoneCommand, StartedCall};
use crate::conference::media::{BOT_SOURCE_ID, MediaPeer};
use crate::config::Faults;
use crate::directory::{Behaviour, MeetingAction, MeetingEvent, Sound};
use crate::notify::NotificationQueue;
use crate::shapes::{self, MeetingContext, result};
use appmedia_emulator_media::{NetworkLink, PartyAudio, PartyKind, PartySpec};

pub(crate) mod actions;
pub(crate) mod invite;
pub(crate) mod transfer;

/// What the HTTP side tells a running call.
#[derive(Debug)]
pub enum Control {
    /// `DELETE /communications/calls/{id}`.
    HangUp,
    /// A person on the softphone page joins, mutes, leaves...
    Softphone(SoftphoneCommand),
    /// A call action (transfer, invite, mute, keepAlive…: `crate::http::actions`).
    Action(Action),
}

/// A call action on its way to the call's driver.
pub struct Action(pub(crate) Box<actions::CallAction>);

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action").finish_non_exhaustive()
    }
}

/// Everything the driver needs about one call.
#[derive(Clone, Debug)]
pub struct CallPlan {
    /// Call id.
    pub call_id: String,
    /// Where notifications go.
    pub callback_uri: String,
    /// P2P, PSTN, group or meeting.
    pub kind: CreateCallKind,
    /// The bot's identity in the roster.
    pub bot_identity: IdentitySet,
    /// The bot's participant id (`myParticipantId`).
    pub my_participant_id: String,
    /// Called parties with their behaviour (not for meetings).
    pub parties: Vec<(Party, Behaviour)>,
    /// The meeting, for joins.
    pub meeting: Option<(MeetingContext, crate::directory::Meeting)>,
    /// Delta rosters asked for.
    pub delta_roster: bool,
    /// Content-sharing notifications asked for.
    pub content_sharing: bool,
    /// When ringing parties give up.
    pub ringing_timeout: Duration,
    /// Fault injection.
    pub faults: Faults,
    /// The softphone page the caller of an incoming call calls from: the call rings there
    /// once the bot answered, and the person's joining establishes it.
    pub caller_page: Option<u64>,
}

#[derive(Debug)]
enum Step {
    Answer(usize),
    Decline(usize),
    HangUp(usize),
    Press(usize),
    /// Called party `i` starts, changes or stops sharing content.
    Share(usize, ChangeType),
    RingTimeout,
    MeetingJoined,
    Meeting(MeetingEvent),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartyState {
    Ringing,
    Declined,
    Joined,
    Gone,
}

struct Run {
    shared: Arc<Shared>,
    plan: CallPlan,
    notify: NotificationQueue,
    /// Transfers, invitations, timers of the call actions.
    actions: actions::ActionState,
    /// Roster entries by key (user id or phone number), bot first.
    roster: Vec<(String, Participant)>,
    next_source_id: u32,
    /// The next source id of a video or screen-sharing stream.
    next_video_source_id: u32,
    delta_sequence: i64,
    established: bool,
    establishing_held: bool,
    sharing: Option<String>,
    /// Roster keys (user ids) a person on the softphone page holds: the script leaves them be.
    softphone_keys: HashSet<String>,
    /// A call to the bot that it answered (`crate::calls::incoming`): its one party is the caller.
    incoming: bool,
    /// The answered call's media configuration, for its call-state notifications.
    answer_media: Option<appmedia_model::MediaConfig>,
    /// Whether the bot gets roster notifications: group calls and meetings, and a two-party
    /// call (peer-to-peer or PSTN) once an invitee joined it (it is a group call from then).
    /// Graph tells a two-party call's bot only its state changes.
    group: bool,
    /// Whether a roster notification went out: the first one names everyone in the call.
    roster_announced: bool,
}

/// Where a joining party's microphone comes from.
enum JoinMedia<'a> {
    /// The directory's script.
    Script(&'a Sound),
    /// A person on the softphone page.
    Network,
}

/// Runs the call until it terminates.
pub async fn run_call(
    shared: Arc<Shared>,
    plan: CallPlan,
    mut control: mpsc::UnboundedReceiver<Control>,
    notify: NotificationQueue,
) {
    let start = Instant::now();
    // Called users with a softphone page open ring there instead of following the script.
    let called: Vec<String> = plan
        .parties
        .iter()
        .filter_map(|(party, _)| match party {
            Party::User { id, .. } => Some(id.clone()),
            Party::Phone { .. } => None,
        })
        .collect();
    let mut has_media = false;
    let (mut incoming, mut answer_media) = (false, None);
    let mut bot_lost = None;
    shared.update_call(&plan.call_id, |record| {
        has_media = record.media.is_some();
        bot_lost = record.media.as_mut().and_then(MediaPeer::take_bot_lost);
        incoming =
            record.resource.direction.value() == Some(&appmedia_model::CallDirection::Incoming);
        answer_media = has_media
            .then(|| record.resource.media_config.value().cloned())
            .flatten();
    });
    // The caller of an incoming call is nobody a softphone page should ring for, unless they
    // call from one: then that page (only) is where they pick up the answered call.
    let called = if incoming && plan.caller_page.is_none() {
        Vec::new()
    } else {
        called
    };
    let rung = shared.softphones().call_started(StartedCall {
        call_id: &plan.call_id,
        kind: &format!("{:?}", plan.kind),
        called: &called,
        meeting: plan
            .meeting
            .as_ref()
            .map(|(_, m)| m.join_meeting_id.as_str()),
        from: &display_name(&plan.bot_identity),
        has_media,
        only_page: plan.caller_page,
    });
    let mut timeline: Vec<(Duration, Step)> = Vec::new();
    for (i, (party, behaviour)) in plan.parties.iter().enumerate() {
        if rung.contains(&party_key(party)) {
            continue;
        }
        match behaviour.answer {
            crate::directory::Answer::Answer => {
                timeline.push((behaviour.ring_delay(), Step::Answer(i)));
                if let Some(press) = &behaviour.press {
                    timeline.push((
                        behaviour.ring_delay() + Duration::from_millis(press.after_ms),
                        Step::Press(i),
                    ));
                }
                for (after, change) in behaviour.share.iter().flat_map(|s| s.changes()) {
                    timeline.push((behaviour.ring_delay() + after, Step::Share(i, change)));
                }
                if let Some(after) = behaviour.hang_up_after_ms {
                    timeline.push((
                        behaviour.ring_delay() + Duration::from_millis(after),
                        Step::HangUp(i),
                    ));
                }
            }
            crate::directory::Answer::Decline => {
                timeline.push((behaviour.ring_delay(), Step::Decline(i)))
            }
            crate::directory::Answer::NoAnswer => {}
        }
    }
    if !plan.parties.is_empty() {
        timeline.push((plan.ringing_timeout, Step::RingTimeout));
    }
    if let Some((_, meeting)) = &plan.meeting {
        timeline.push((
            Duration::from_millis(meeting.join_delay_ms),
            Step::MeetingJoined,
        ));
        for event in &meeting.events {
            timeline.push((
                Duration::from_millis(event.at_ms),
                Step::Meeting(event.clone()),
            ));
        }
    }
    // Stable: equal times keep the script's order.
    timeline.sort_by_key(|(at, _)| *at);

    let mut states = vec![PartyState::Ringing; plan.parties.len()];
    let run_kind = plan.kind;
    let mut run = Run {
        actions: actions::ActionState::new(shared.config.keep_alive_timeout),
        shared,
        plan,
        notify,
        roster: Vec::new(),
        next_source_id: BOT_SOURCE_ID + 1,
        next_video_source_id: shapes::FIRST_VIDEO_SOURCE_ID,
        delta_sequence: 0,
        established: false,
        establishing_held: false,
        sharing: None,
        softphone_keys: HashSet::new(),
        incoming,
        answer_media,
        group: matches!(
            run_kind,
            CreateCallKind::GroupCall | CreateCallKind::MeetingJoin
        ),
        roster_announced: false,
    };
    run.begin();

    let mut timeline = timeline.into_iter().peekable();
    loop {
        run.publish(&states);
        let next = timeline.peek().map(|(at, _)| start + *at);
        let outcome = tokio::select! {
            _ = tokio::time::sleep_until(next.unwrap_or(start)), if next.is_some() => {
                match timeline.next() {
                    Some((_, step)) => run.step(step, &mut states),
                    None => None,
                }
            }
            _ = tokio::time::sleep_until(run.actions.next_deadline()) => {
                run.action_timer(&mut states)
            }
            lost = async {
                match bot_lost.as_mut() {
                    Some(lost) => lost.await,
                    None => std::future::pending().await,
                }
            }, if bot_lost.is_some() => {
                bot_lost = None;
                match lost {
                    Ok(reason) => {
                        tracing::info!(call = %run.plan.call_id, %reason, "the bot's media was lost");
                        Some(result::MEDIA_LOST)
                    }
                    // The media left with the call (transfer, hang-up): nothing to do.
                    Err(_) => None,
                }
            }
            command = control.recv() => match command {
                Some(Control::Softphone(command)) => run.softphone(command, &mut states),
                Some(Control::Action(action)) => run.action(*action.0, &mut states),
                // A closed channel means the emulator is shutting down: end the call too.
                Some(Control::HangUp) | None => Some(result::ENDED_BY_APPLICATION),
            }
        };
        if let Some(outcome) = outcome {
            run.terminate(outcome);
            return;
        }
    }
}

impl Run {
    fn send(&self, body: CommsNotifications) {
        match serde_json::to_value(&body) {
            // The delivery task outlives the call's driver; a send error means the
            // emulator is shutting down, when dropping the notification is right.
            Ok(value) => {
                let _ = self.notify.send(value);
            }
            Err(e) => tracing::error!(error = %e, "notification not serializable"),
        }
    }

    fn state_notification(&self, state: CallState, result: Option<(i64, i64, &str)>) {
        let body = shapes::call_state_notification(
            &self.plan.call_id,
            &self.plan.callback_uri,
            self.plan.kind,
            state.clone(),
            self.plan.meeting.as_ref().map(|(context, _)| context),
            result.map(shapes::result_info),
        );
        if self.incoming {
            self.send(crate::calls::incoming::shapes::answered_call_state(
                body,
                state,
                self.answer_media.as_ref(),
            ));
        } else {
            self.send(body);
        }
    }

    /// Tells the control API where each party is (`GET /control/calls/{id}`).
    fn publish(&self, states: &[PartyState]) {
        let called = (self.plan.parties.iter().zip(states)).map(|((party, _), state)| {
            let state = match state {
                PartyState::Ringing => ViewPartyState::Ringing,
                PartyState::Declined => ViewPartyState::Declined,
                PartyState::Joined => ViewPartyState::Connected,
                PartyState::Gone => ViewPartyState::Left,
            };
            (party, state)
        });
        let roster = self.roster.iter().map(|(key, _)| key.as_str());
        let parties = crate::calls::book::driven_parties(self.incoming, called, roster);
        let state = if self.established {
            ViewState::Established
        } else {
            ViewState::Establishing
        };
        (self.shared.book()).set_parties(&self.plan.call_id, state, parties);
    }

    fn begin(&mut self) {
        if self.plan.faults.established_before_establishing {
            self.establishing_held = true;
        } else {
            self.state_notification(CallState::Establishing, None);
        }
    }

    fn release_establishing(&mut self) {
        if self.establishing_held {
            self.establishing_held = false;
            self.state_notification(CallState::Establishing, None);
        }
    }

    /// Moves the call to established (once) and puts the bot in the roster; the bot's entry
    /// is returned so the caller announces it in the same roster update as whoever made
    /// the call established.
    fn establish(&mut self) -> Option<Participant> {
        if self.established {
            return None;
        }
        self.established = true;
        self.shared.update_call(&self.plan.call_id, |record| {
            record.resource.state = CallState::Established.into();
        });
        self.state_notification(CallState::Established, None);
        self.release_establishing();
        self.shared
            .softphones()
            .call_established(&self.plan.call_id, &display_name(&self.plan.bot_identity));
        let bot = shapes::participant(
            &self.plan.my_participant_id,
            self.plan.bot_identity.clone(),
            BOT_SOURCE_ID,
            false,
        );
        // The bot's roster key is empty: no directory user or phone has that id.
        self.roster.push((String::new(), bot.clone()));
        Some(bot)
    }

    fn take_source_id(&mut self) -> u32 {
        let id = self.next_source_id;
        self.next_source_id += 1;
        id
    }

    /// A new roster entry for `party`: its audio stream with the next source id, and a
    /// directory user's video and screen-sharing streams (ids of their own range).
    fn party_participant(&mut self, party: &Party, muted: bool) -> Participant {
        let source_id = self.take_source_id();
        let mut participant = shapes::participant(
            &uuid::Uuid::new_v4().to_string(),
            party.identity(),
            source_id,
            muted,
        );
        let others = match party {
            Party::User { id, .. } => (self.shared.directory().user(id))
                .map(crate::directory::User::other_streams)
                .unwrap_or_default(),
            Party::Phone { .. } => Vec::new(),
        };
        for (kind, direction) in others {
            let id = self.next_video_source_id;
            self.next_video_source_id += 1;
            shapes::add_stream(&mut participant, kind, direction, id);
        }
        participant
    }

    /// Adds a roster entry's party to the call's media (when the call has media), with the
    /// roster's source id, so the bot can match unmixed audio to participants. A network
    /// party's link comes back (`None` without media, or when the conference refused it).
    fn media_join(
        &self,
        participant: &Participant,
        name: String,
        kind: PartyKind,
        media: JoinMedia<'_>,
    ) -> Option<NetworkLink> {
        let (Some(source_id), Some(participant_id)) =
            (shapes::source_id_of(participant), participant.id.value())
        else {
            return None;
        };
        let audio = match media {
            JoinMedia::Script(sound) => self.shared.party_audio(sound),
            JoinMedia::Network => PartyAudio::Network,
        };
        let mut spec = PartySpec::new(participant_id.clone(), name, kind, source_id, audio);
        spec.muted = participant.is_muted.value().copied().unwrap_or(false);
        let mut link = None;
        self.with_media(|media| match spec.audio {
            PartyAudio::Network => media.add_network_party(spec).map(|l| link = Some(l)),
            _ => media.add_party(spec),
        });
        link
    }

    /// Runs a command on the call's media, if it has any; a refusal is logged (the call and
    /// its signalling go on without that party's audio).
    fn with_media(
        &self,
        f: impl FnOnce(
            &appmedia_emulator_media::ConferenceControl,
        ) -> Result<(), appmedia_emulator_media::ConferenceError>,
    ) {
        let call_id = &self.plan.call_id;
        self.shared.update_call(call_id, |record| {
            if let Some(media) = record.conference()
                && let Err(e) = f(media)
            {
                tracing::warn!(call = %call_id, error = %e, "conference media command refused");
            }
        });
    }

    fn join(&mut self, key: String, participant: Participant, bot: Option<Participant>) {
        self.roster.push((key, participant.clone()));
        let mut changed: Vec<Participant> = bot.into_iter().collect();
        changed.push(participant);
        self.roster_changed(&changed, &[]);
    }

    fn leave(&mut self, key: &str) {
        if let Some(pos) = self.roster.iter().position(|(k, _)| k == key) {
            let (_, gone) = self.roster.remove(pos);
            if let Some(source_id) = shapes::source_id_of(&gone) {
                self.with_media(|media| media.remove_party(source_id));
            }
            self.roster_changed(&[], &[gone]);
        }
    }

    fn set_muted(&mut self, key: &str, muted: bool) {
        let changed = self
            .roster
            .iter_mut()
            .find(|(k, _)| k == key)
            .filter(|(_, p)| p.is_muted.value() != Some(&muted))
            .map(|(_, p)| {
                p.is_muted = muted.into();
                p.clone()
            });
        if let Some(p) = changed {
            if let Some(source_id) = shapes::source_id_of(&p) {
                self.with_media(|media| media.set_muted(source_id, muted));
            }
            self.roster_changed(&[p], &[]);
        }
    }

    /// Called party `i` presses its script's keys: DTMF to the bot on its media.
    fn press(&self, i: usize) {
        let (party, behaviour) = &self.plan.parties[i];
        let Some(tones) = behaviour.press.as_ref().and_then(|p| p.tones()) else {
            return;
        };
        let key = party_key(party);
        let source_id = self
            .roster
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, p)| shapes::source_id_of(p));
        let Some(source_id) = source_id else {
            return;
        };
        tracing::info!(call = %self.plan.call_id, party = %key, keys = tones.len(), "a party presses keys");
        for tone in tones {
            self.with_media(|media| media.press(source_id, tone));
        }
    }

    fn roster_changed(&mut self, changed: &[Participant], removed: &[Participant]) {
        let everyone: Vec<Participant> = self.roster.iter().map(|(_, p)| p.clone()).collect();
        self.shared
            .softphones()
            .roster(&self.plan.call_id, &everyone);
        self.shared.update_call(&self.plan.call_id, |record| {
            record.participants = everyone.clone();
        });
        // A two-party call's roster is only what `GET …/participants` lists.
        if !self.group {
            return;
        }
        let first = !std::mem::replace(&mut self.roster_announced, true);
        if self.plan.delta_roster {
            self.delta_sequence += 1;
            self.send(shapes::delta_roster_notification(
                &self.plan.call_id,
                self.delta_sequence,
                if first { &everyone } else { changed },
                removed,
            ));
        } else {
            self.send(shapes::roster_notification(
                &self.plan.call_id,
                &self.plan.callback_uri,
                &everyone,
            ));
        }
    }

    fn sharing(&mut self, change: ChangeType) {
        let session = match change {
            ChangeType::Created => {
                let id = shapes::new_session_id();
                self.sharing = Some(id.clone());
                Some(id)
            }
            ChangeType::Deleted => self.sharing.take(),
            _ => self.sharing.clone(),
        };
        // Without a session (an update or stop with nothing shared) there is nothing to say.
        if let Some(id) = session
            && self.plan.content_sharing
        {
            self.send(shapes::content_sharing_notification(
                &self.plan.call_id,
                change,
                &id,
            ));
        }
    }

    /// Applies one step; `Some(result)` ends the call.
    fn step(&mut self, step: Step, states: &mut [PartyState]) -> Option<(i64, i64, &'static str)> {
        match step {
            Step::Answer(i) if states[i] == PartyState::Ringing => {
                let sound = self.plan.parties[i].1.media.clone();
                self.answer(i, states, JoinMedia::Script(&sound));
                None
            }
            Step::Decline(i) if states[i] == PartyState::Ringing => {
                states[i] = PartyState::Declined;
                self.nobody_left(states).then_some(result::DECLINED)
            }
            Step::HangUp(i)
                if states[i] == PartyState::Joined
                    && !self
                        .softphone_keys
                        .contains(&party_key(&self.plan.parties[i].0)) =>
            {
                states[i] = PartyState::Gone;
                let key = party_key(&self.plan.parties[i].0);
                self.leave(&key);
                self.nobody_left(states).then_some(result::ENDED_BY_REMOTE)
            }
            Step::Press(i) if states[i] == PartyState::Joined => {
                self.press(i);
                None
            }
            Step::Share(i, change)
                if states[i] == PartyState::Joined
                    && !self
                        .softphone_keys
                        .contains(&party_key(&self.plan.parties[i].0)) =>
            {
                self.sharing(change);
                None
            }
            Step::RingTimeout => {
                for state in states.iter_mut() {
                    if *state == PartyState::Ringing {
                        *state = PartyState::Declined;
                    }
                }
                self.nobody_left(states).then_some(result::NOT_ANSWERED)
            }
            Step::MeetingJoined => {
                let mut changed: Vec<Participant> = self.establish().into_iter().collect();
                let present = self
                    .plan
                    .meeting
                    .as_ref()
                    .map(|(_, m)| m.present.clone())
                    .unwrap_or_default();
                for presence in present {
                    if let Some(p) = self.meeting_participant(&presence.user, presence.muted) {
                        changed.push(p);
                    }
                }
                // One roster with the bot and everyone already there, as on joining a meeting.
                self.roster_changed(&changed, &[]);
                None
            }
            Step::Meeting(event) => {
                // A person on the softphone page decides for themself.
                if self.established && !self.softphone_keys.contains(&event.user) {
                    match event.action {
                        MeetingAction::Join => self.meeting_user_joins(&event.user, false),
                        MeetingAction::Leave => self.leave(&event.user),
                        MeetingAction::Mute => self.set_muted(&event.user, true),
                        MeetingAction::Unmute => self.set_muted(&event.user, false),
                        MeetingAction::StartSharing => self.sharing(ChangeType::Created),
                        MeetingAction::UpdateSharing => self.sharing(ChangeType::Updated),
                        MeetingAction::StopSharing => self.sharing(ChangeType::Deleted),
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn meeting_user_joins(&mut self, user_id: &str, muted: bool) {
        if let Some(p) = self.meeting_participant(user_id, muted) {
            self.roster_changed(&[p], &[]);
        }
    }

    /// Adds a directory user to the roster (not yet announced); `None` when already there.
    fn meeting_participant(&mut self, user_id: &str, muted: bool) -> Option<Participant> {
        if self.roster.iter().any(|(k, _)| k == user_id) {
            return None;
        }
        let user = self.shared.directory().user(user_id).cloned()?;
        let party = Party::User {
            id: user.id.clone(),
            display_name: user.display_name.clone(),
        };
        let participant = self.party_participant(&party, muted);
        self.media_join(
            &participant,
            user.display_name.clone(),
            PartyKind::MeetingParticipant,
            JoinMedia::Script(&user.behaviour.media),
        );
        self.roster.push((user.id, participant.clone()));
        Some(participant)
    }

    /// True when no called or invited party is ringing or in the call any more.
    fn nobody_left(&self, states: &[PartyState]) -> bool {
        !states
            .iter()
            .any(|s| matches!(s, PartyState::Ringing | PartyState::Joined))
            && !self.actions.invitations.anyone_in()
    }

    fn terminate(&mut self, outcome: (i64, i64, &str)) {
        self.release_establishing();
        self.shared
            .softphones()
            .call_ended(&self.plan.call_id, outcome.2);
        self.termination_notification(outcome);
        self.shared.remove_call(&self.plan.call_id);
        self.shared.book().ended(&self.plan.call_id, outcome);
        tracing::info!(call = %self.plan.call_id, code = outcome.0, "call terminated");
    }
}

impl Run {
    /// Called party `i` answers, with its script's sound or as a person on the softphone
    /// page; the network party's link comes back.
    fn answer(
        &mut self,
        i: usize,
        states: &mut [PartyState],
        media: JoinMedia<'_>,
    ) -> Option<NetworkLink> {
        states[i] = PartyState::Joined;
        let party = self.plan.parties[i].0.clone();
        let participant = self.party_participant(&party, false);
        let (name, kind) = match &party {
            Party::User { display_name, .. } => (display_name.clone(), PartyKind::User),
            Party::Phone { number } => (number.clone(), PartyKind::Phone),
        };
        // The party hears the call before the bot is told it is established: a greeting the
        // bot starts on `established` reaches them from its first word.
        let link = self.media_join(&participant, name, kind, media);
        let bot = self.establish();
        self.shared.update_call(&self.plan.call_id, |record| {
            if record.resource.answered_by.value().is_none() {
                record.resource.answered_by =
                    appmedia_model::ParticipantInfo::new(party.identity()).into();
            }
        });
        self.join(party_key(&party), participant, bot);
        link
    }

    /// Applies what a person on the softphone page did; `Some(result)` ends the call.
    fn softphone(
        &mut self,
        command: SoftphoneCommand,
        states: &mut [PartyState],
    ) -> Option<(i64, i64, &'static str)> {
        match command {
            SoftphoneCommand::Join { user, reply } => {
                let joined = self.softphone_join(&user, states);
                if let Ok(joined) = &joined {
                    tracing::info!(call = %self.plan.call_id, %user, source_id = joined.source_id, "a person joined from the softphone page");
                }
                // A page that gave up waiting has dropped the receiver; the person then
                // leaves when its WebSocket closes.
                let _ = reply.send(joined);
                None
            }
            SoftphoneCommand::Decline { user } => match self.called_index(&user) {
                Some(i) if states[i] == PartyState::Ringing => self.step(Step::Decline(i), states),
                _ => None,
            },
            SoftphoneCommand::Mute { user, muted } => {
                if self.softphone_keys.contains(&user) {
                    self.set_muted(&user, muted);
                }
                None
            }
            SoftphoneCommand::Leave { user } => {
                if !self.softphone_keys.remove(&user) {
                    // A caller who hangs up on the page between the bot's answer and their
                    // own pick-up: the call ends as when they hang up in it.
                    return match self.called_index(&user) {
                        Some(i)
                            if self.plan.caller_page.is_some()
                                && states[i] == PartyState::Ringing =>
                        {
                            states[i] = PartyState::Gone;
                            Some(result::ENDED_BY_REMOTE)
                        }
                        _ => None,
                    };
                }
                match self.called_index(&user) {
                    Some(i) if states[i] == PartyState::Joined => {
                        self.step(Step::HangUp(i), states)
                    }
                    _ => {
                        self.leave(&user);
                        None
                    }
                }
            }
        }
    }

    fn called_index(&self, user: &str) -> Option<usize> {
        self.plan
            .parties
            .iter()
            .position(|(p, _)| matches!(p, Party::User { id, .. } if id == user))
    }

    /// A person joins as `user`: answers while that user rings, takes the place of the
    /// simulated user already in the call, or joins the meeting.
    fn softphone_join(&mut self, user: &str, states: &mut [PartyState]) -> Result<Joined, String> {
        if self.softphone_keys.contains(user) {
            return Err(format!("{user} is already in this call from another page"));
        }
        let mut has_media = false;
        self.shared
            .update_call(&self.plan.call_id, |r| has_media = r.media.is_some());
        if !has_media {
            return Err("this call has no media the emulator takes part in \
                 (app-hosted media with an appmedia blob)"
                .into());
        }
        let in_roster = self.roster.iter().any(|(k, _)| k == user);
        let called = self.called_index(user);
        let link = match called {
            Some(i) if states[i] == PartyState::Ringing => {
                self.answer(i, states, JoinMedia::Network)
            }
            _ if in_roster => self.take_over(user),
            Some(_) => return Err(format!("{user} has left or declined this call")),
            None if self.plan.meeting.is_some() && self.established => {
                self.meeting_person_joins(user)
            }
            None if self.plan.meeting.is_some() => {
                return Err("the bot has not joined the meeting yet".into());
            }
            None => return Err(format!("{user} is not a party of this call")),
        };
        let participant = self
            .roster
            .iter()
            .find(|(k, _)| k == user)
            .map(|(_, p)| p.clone());
        match (link, participant) {
            (Some(link), Some(p)) => {
                self.softphone_keys.insert(user.to_owned());
                Ok(Joined {
                    participant_id: p.id.value().cloned().unwrap_or_default(),
                    source_id: shapes::source_id_of(&p).unwrap_or_default(),
                    link,
                })
            }
            _ => Err("the call's media refused the party (see the emulator's log)".into()),
        }
    }

    /// The simulated `user` leaves and the person takes their place (a new participant).
    fn take_over(&mut self, user: &str) -> Option<NetworkLink> {
        let pos = self.roster.iter().position(|(k, _)| k == user)?;
        let (_, gone) = self.roster.remove(pos);
        if let Some(source_id) = shapes::source_id_of(&gone) {
            self.with_media(|media| media.remove_party(source_id));
        }
        let (link, joined) = self.network_participant(user)?;
        self.roster_changed(&[joined], &[gone]);
        link
    }

    /// A person joins the meeting as `user`.
    fn meeting_person_joins(&mut self, user: &str) -> Option<NetworkLink> {
        let (link, joined) = self.network_participant(user)?;
        self.roster_changed(&[joined], &[]);
        link
    }

    /// Adds `user` to the roster (not yet announced) as a network party.
    fn network_participant(&mut self, user: &str) -> Option<(Option<NetworkLink>, Participant)> {
        let found = self.shared.directory().user(user).cloned()?;
        let party = Party::User {
            id: found.id.clone(),
            display_name: found.display_name.clone(),
        };
        let participant = self.party_participant(&party, false);
        let kind = if self.plan.meeting.is_some() {
            PartyKind::MeetingParticipant
        } else {
            PartyKind::User
        };
        let link = self.media_join(&participant, found.display_name, kind, JoinMedia::Network);
        self.roster.push((found.id, participant.clone()));
        Some((link, participant))
    }
}

/// A display name for an identity set (the bot's, for the page's "incoming call from").
fn display_name(identity: &IdentitySet) -> String {
    [
        &identity.application,
        &identity.application_instance,
        &identity.user,
        &identity.phone,
    ]
    .into_iter()
    .find_map(|i| {
        i.value()
            .and_then(|i| i.display_name.value().or(i.id.value()).cloned())
    })
    .unwrap_or_else(|| "the bot".to_owned())
}

fn party_key(party: &Party) -> String {
    match party {
        Party::User { id, .. } => id.clone(),
        Party::Phone { number } => number.clone(),
    }
}
