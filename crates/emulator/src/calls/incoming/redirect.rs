//! A redirected call: the bot's leg has ended, and the caller now rings the targets at the
//! same time (Graph's "simulring", up to 25), each following its directory behaviour. The
//! first to answer is connected to the caller; the others stop ringing. With nobody
//! answering within the redirect's timeout, or everyone declining, the caller is turned
//! away. A connected call ends when the target or the caller hangs up (their
//! `hang_up_after_ms`). No bot takes part, so no notification is sent and no media runs: the
//! control API (`GET /control/calls/{id}`) is where it shows.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::admission::Party;
use crate::calls::Shared;
use crate::calls::book::{PartyRole, PartyState, PartyView, RedirectView, ViewState};
use crate::directory::{Answer, Behaviour};
use crate::shapes::result;

/// An accepted redirect request.
#[derive(Clone, Debug)]
pub(crate) struct Redirect {
    /// Who rings, with what they do.
    pub targets: Vec<(Party, Behaviour)>,
    /// How long they ring.
    pub timeout: Duration,
    /// Where the bot's `terminated` notification goes (else the calling webhook).
    pub callback_uri: Option<String>,
}

impl Redirect {
    /// Graph's default when the request sets no timeout: 55 s for one target, 60 s for more.
    pub fn default_timeout(targets: usize) -> Duration {
        Duration::from_secs(if targets > 1 { 60 } else { 55 })
    }
}

fn key(party: &Party) -> String {
    match party {
        Party::User { id, .. } => id.clone(),
        Party::Phone { number } => number.clone(),
    }
}

enum Step {
    Answer(usize),
    Decline(usize),
    Timeout,
}

/// Rings the targets for the caller of call `call_id` until the call is over.
pub(crate) async fn run(
    shared: Arc<Shared>,
    call_id: String,
    caller: (Party, Behaviour),
    redirect: Redirect,
) {
    let start = Instant::now();
    let mut states = vec![PartyState::Ringing; redirect.targets.len()];
    let publish = |states: &[PartyState], caller_state: PartyState, state: ViewState| {
        let mut parties = vec![PartyView::of(&caller.0, PartyRole::Caller, caller_state)];
        parties.extend(
            redirect
                .targets
                .iter()
                .zip(states)
                .map(|((party, _), s)| PartyView::of(party, PartyRole::Target, *s)),
        );
        shared.book().set_parties(&call_id, state, parties);
    };
    shared.book().update(&call_id, |v| {
        v.redirect = Some(RedirectView {
            targets: redirect.targets.iter().map(|(p, _)| key(p)).collect(),
            answered_by: None,
        });
    });
    publish(&states, PartyState::Ringing, ViewState::Redirecting);

    let mut timeline: Vec<(Duration, Step)> = redirect
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, (_, behaviour))| match behaviour.answer {
            Answer::Answer => Some((behaviour.ring_delay(), Step::Answer(i))),
            Answer::Decline => Some((behaviour.ring_delay(), Step::Decline(i))),
            Answer::NoAnswer => None,
        })
        .collect();
    timeline.push((redirect.timeout, Step::Timeout));
    // Stable: at equal times the request's order decides.
    timeline.sort_by_key(|(at, _)| *at);

    let mut answered = None;
    for (at, step) in timeline {
        tokio::time::sleep_until(start + at).await;
        match step {
            Step::Answer(i) => {
                answered = Some(i);
                break;
            }
            Step::Decline(i) => {
                states[i] = PartyState::Declined;
                if states.iter().all(|s| *s == PartyState::Declined) {
                    break;
                }
                publish(&states, PartyState::Ringing, ViewState::Redirecting);
            }
            Step::Timeout => break,
        }
    }
    let Some(i) = answered else {
        let outcome = if states.iter().all(|s| *s == PartyState::Declined) {
            result::DECLINED
        } else {
            result::NOT_ANSWERED
        };
        for s in states.iter_mut().filter(|s| **s == PartyState::Ringing) {
            *s = PartyState::Missed;
        }
        publish(&states, PartyState::Left, ViewState::Redirecting);
        tracing::info!(call = %call_id, code = outcome.0, "no redirect target answered");
        shared.book().ended(&call_id, outcome);
        return;
    };

    for (j, s) in states.iter_mut().enumerate() {
        *s = if j == i {
            PartyState::Connected
        } else if *s == PartyState::Ringing {
            PartyState::Missed
        } else {
            *s
        };
    }
    let target = key(&redirect.targets[i].0);
    shared.book().update(&call_id, |v| {
        if let Some(r) = &mut v.redirect {
            r.answered_by = Some(target.clone());
        }
    });
    publish(&states, PartyState::Connected, ViewState::Established);
    tracing::info!(call = %call_id, %target, "a redirect target answered");
    let connected = Instant::now();
    let hang_up = [
        redirect.targets[i].1.hang_up_after_ms,
        caller.1.hang_up_after_ms,
    ]
    .into_iter()
    .flatten()
    .min();
    match hang_up {
        Some(ms) => tokio::time::sleep_until(connected + Duration::from_millis(ms)).await,
        // Nobody in this call is scripted to hang up: it lasts as long as the emulator.
        None => std::future::pending::<()>().await,
    }
    tracing::info!(call = %call_id, %target, "the redirected call ended");
    shared.book().ended(&call_id, result::ENDED_BY_REMOTE);
}
