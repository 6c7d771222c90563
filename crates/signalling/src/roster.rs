//! The roster of one call, from full rosters (a participant list) and delta rosters
//! (`deltaParticipants` with a `sequenceNumber`).
//!
//! Deltas are applied in `sequenceNumber` order: one ahead of the next expected number is
//! held until the missing ones arrive; one at or below the last applied number is stale
//! (or a duplicate) and dropped. When deltas have been held too long or too many are held,
//! the roster reports a gap: the bot should `GET …/participants` and hand the result to
//! [`Roster::apply_full`], which resets the roster (a full roster subsumes every delta sent
//! before it was read). Sans-IO: time is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use appmedia_model::{DeltaParticipants, Participant, RemovedState};

/// When held deltas become a gap that needs a full roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterPolicy {
    /// The first sequence number a call's deltas start at (`None`: accept whatever comes first).
    pub first_sequence: Option<i64>,
    /// Report a gap once this many deltas are held.
    pub max_held: usize,
    /// Report a gap once the oldest held delta has waited this long.
    pub max_hold: Duration,
    /// Never hold more than this many deltas; beyond it the oldest held is dropped (counted).
    pub hard_cap: usize,
}

impl Default for RosterPolicy {
    fn default() -> Self {
        Self {
            first_sequence: Some(1),
            max_held: 8,
            max_hold: Duration::from_secs(5),
            hard_cap: 64,
        }
    }
}

/// Someone who left the roster.
#[derive(Clone, Debug, PartialEq)]
pub struct LeftParticipant {
    /// The participant as last known (or as the removing delta described them).
    pub participant: Participant,
    /// Why, when a delta said (a full roster that no longer lists someone gives `None`).
    pub removed_state: Option<RemovedState>,
}

/// What one roster update changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RosterChange {
    /// Participants new to the roster.
    pub joined: Vec<Participant>,
    /// Participants already there whose properties changed (mute, media, …).
    pub updated: Vec<Participant>,
    /// Participants who left.
    pub left: Vec<LeftParticipant>,
}

impl RosterChange {
    /// True when nobody joined, changed or left.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.updated.is_empty() && self.left.is_empty()
    }

    fn append(&mut self, other: RosterChange) {
        self.joined.extend(other.joined);
        self.updated.extend(other.updated);
        self.left.extend(other.left);
    }
}

/// What happened to one delta.
#[derive(Clone, Debug, PartialEq)]
pub enum DeltaOutcome {
    /// Applied (with `sequence` `None` for a delta without a sequence number).
    Applied {
        /// The delta's sequence number.
        sequence: Option<i64>,
        /// What applying it (and any held deltas it released) changed.
        change: RosterChange,
    },
    /// Ahead of order: held until `expected` arrives.
    Held {
        /// The delta's sequence number.
        sequence: i64,
        /// The number applied next.
        expected: i64,
    },
    /// At or below the last applied number: dropped.
    Stale {
        /// The delta's sequence number.
        sequence: i64,
        /// The last number applied.
        last_applied: i64,
    },
    /// Already held: dropped.
    Duplicate {
        /// The delta's sequence number.
        sequence: i64,
    },
    /// Deltas are missing and the held ones cannot wait: fetch a full roster.
    GapNeedsFullRoster {
        /// The first missing number.
        expected: i64,
        /// The numbers held.
        held: Vec<i64>,
    },
    /// The held delta `sequence` was dropped to respect the hard cap.
    Evicted {
        /// The dropped delta's number.
        sequence: i64,
    },
    /// So far ahead of `expected` (more than [`MAX_SEQUENCE_JUMP`]) that it cannot be the next
    /// delta of this call: dropped, so that a forged or corrupt number cannot become the
    /// baseline every later delta would be "stale" against.
    Implausible {
        /// The delta's sequence number.
        sequence: i64,
        /// The number expected next.
        expected: i64,
    },
}

/// The furthest ahead of the expected number a delta is held. Graph numbers a call's deltas
/// one by one; a million missed deltas is no gap, it is a broken number.
pub const MAX_SEQUENCE_JUMP: i64 = 1 << 20;

/// Counters of what the roster dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RosterCounters {
    /// Deltas at or below the last applied number, dropped.
    pub stale: u64,
    /// Deltas already held, dropped.
    pub duplicate: u64,
    /// Held deltas dropped to respect the cap.
    pub evicted: u64,
    /// Deltas whose number jumped implausibly far ahead, dropped.
    pub implausible: u64,
    /// Participants without an id (they cannot be tracked).
    pub without_id: u64,
    /// Participants whose `rosterSequenceNumber` was older than the one already applied.
    pub stale_participants: u64,
}

#[derive(Clone, Debug)]
struct Held {
    participants: Vec<Participant>,
    since: Instant,
}

/// The roster of one call.
#[derive(Clone, Debug)]
pub struct Roster {
    policy: RosterPolicy,
    participants: BTreeMap<String, Participant>,
    /// The last applied sequence number; `None` before the first delta or after a full roster.
    last_applied: Option<i64>,
    held: BTreeMap<i64, Held>,
    /// After a full roster read with no sequence known, the next delta sets the baseline.
    accept_any_next: bool,
    gap_reported: bool,
    counters: RosterCounters,
}

impl Default for Roster {
    fn default() -> Self {
        Self::new(RosterPolicy::default())
    }
}

impl Roster {
    /// An empty roster applying deltas by `policy`.
    pub fn new(policy: RosterPolicy) -> Self {
        Self {
            policy,
            participants: BTreeMap::new(),
            last_applied: None,
            held: BTreeMap::new(),
            accept_any_next: false,
            gap_reported: false,
            counters: RosterCounters::default(),
        }
    }

    /// The participants, by id.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// The participant `participant_id`, if present.
    pub fn get(&self, participant_id: &str) -> Option<&Participant> {
        self.participants.get(participant_id)
    }

    /// How many participants are present.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// True when nobody is present.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// The sequence number of the last delta applied (`None` before any).
    pub fn last_applied_sequence(&self) -> Option<i64> {
        self.last_applied
    }

    /// Sequence numbers of the held deltas, in order.
    pub fn held_sequences(&self) -> Vec<i64> {
        self.held.keys().copied().collect()
    }

    /// True once a gap was reported and no full roster came since.
    pub fn needs_full_roster(&self) -> bool {
        self.gap_reported
    }

    /// What the roster dropped so far.
    pub fn counters(&self) -> RosterCounters {
        self.counters
    }

    /// Replaces the roster with a full one (a participant-list notification, or the answer
    /// to `GET …/participants`). Held deltas are dropped: they were sent before the full
    /// roster was read, so it already contains them; later deltas continue after the
    /// highest one seen.
    pub fn apply_full(&mut self, participants: Vec<Participant>) -> RosterChange {
        let mut change = RosterChange::default();
        let mut next = BTreeMap::new();
        for participant in participants {
            let Some(id) = participant.id.value().cloned() else {
                self.counters.without_id += 1;
                continue;
            };
            match self.participants.get(&id) {
                None => change.joined.push(participant.clone()),
                Some(old) if old != &participant => change.updated.push(participant.clone()),
                Some(_) => {}
            }
            next.insert(id, participant);
        }
        for (id, old) in std::mem::take(&mut self.participants) {
            if !next.contains_key(&id) {
                change.left.push(LeftParticipant {
                    participant: old,
                    removed_state: None,
                });
            }
        }
        self.participants = next;
        if let Some(highest_held) = self.held.keys().next_back().copied() {
            self.last_applied = Some(
                self.last_applied
                    .map_or(highest_held, |l| l.max(highest_held)),
            );
        }
        self.held.clear();
        self.accept_any_next = self.last_applied.is_none();
        self.gap_reported = false;
        change
    }

    /// Applies, holds or drops one delta; may also report a gap.
    pub fn apply_delta(&mut self, delta: &DeltaParticipants, now: Instant) -> Vec<DeltaOutcome> {
        let participants = delta.participants.value().cloned().unwrap_or_default();
        let Some(sequence) = delta.sequence_number.value().copied() else {
            // No ordering information: the best we can do is apply it now.
            let change = self.apply_participants(participants);
            return vec![DeltaOutcome::Applied {
                sequence: None,
                change,
            }];
        };
        let expected = self.expected();
        if let Some(expected) = expected
            && sequence.saturating_sub(expected) > MAX_SEQUENCE_JUMP
        {
            self.counters.implausible += 1;
            return vec![DeltaOutcome::Implausible { sequence, expected }];
        }
        if let Some(last) = self.last_applied
            && sequence <= last
            && last != i64::MAX
        {
            self.counters.stale += 1;
            return vec![DeltaOutcome::Stale {
                sequence,
                last_applied: last,
            }];
        }
        if self.held.contains_key(&sequence) {
            self.counters.duplicate += 1;
            return vec![DeltaOutcome::Duplicate { sequence }];
        }
        let mut outcomes = Vec::new();
        match expected {
            Some(expected) if sequence > expected => {
                self.held.insert(
                    sequence,
                    Held {
                        participants,
                        since: now,
                    },
                );
                outcomes.push(DeltaOutcome::Held { sequence, expected });
                while self.held.len() > self.policy.hard_cap {
                    // Drop the newest: the oldest are the ones closest to being applicable.
                    if let Some((evicted, _)) = self.held.pop_last() {
                        self.counters.evicted += 1;
                        outcomes.push(DeltaOutcome::Evicted { sequence: evicted });
                    }
                }
                outcomes.extend(self.poll(now));
            }
            Some(expected) if sequence < expected => {
                // Below the first expected number (a policy's first_sequence): stale.
                self.counters.stale += 1;
                outcomes.push(DeltaOutcome::Stale {
                    sequence,
                    last_applied: expected - 1,
                });
            }
            _ => {
                let change = self.apply_participants(participants);
                self.last_applied = Some(sequence);
                self.accept_any_next = false;
                outcomes.push(DeltaOutcome::Applied {
                    sequence: Some(sequence),
                    change,
                });
                outcomes.extend(self.drain_held());
            }
        }
        outcomes
    }

    /// Reports a gap when held deltas waited too long or are too many (once per gap).
    pub fn poll(&mut self, now: Instant) -> Option<DeltaOutcome> {
        if self.gap_reported || self.held.is_empty() {
            return None;
        }
        let oldest = self.held.values().map(|h| h.since).min()?;
        let too_many = self.held.len() >= self.policy.max_held;
        let too_long = now.saturating_duration_since(oldest) >= self.policy.max_hold;
        if !(too_many || too_long) {
            return None;
        }
        self.gap_reported = true;
        let expected = self.expected().unwrap_or(0);
        tracing::info!(
            expected,
            held = self.held.len(),
            "roster gap: a full roster is needed"
        );
        Some(DeltaOutcome::GapNeedsFullRoster {
            expected,
            held: self.held_sequences(),
        })
    }

    /// Gives up on the missing deltas and applies the held ones in order (when no full
    /// roster can be had).
    pub fn skip_gap(&mut self) -> Vec<DeltaOutcome> {
        let Some(first) = self.held.keys().next().copied() else {
            return Vec::new();
        };
        self.last_applied = Some(first - 1);
        self.gap_reported = false;
        self.drain_held()
    }

    fn expected(&self) -> Option<i64> {
        match self.last_applied {
            // At i64::MAX (a first delta may set any baseline) nothing can follow: take the next
            // one as a new baseline rather than overflow.
            Some(last) => last.checked_add(1),
            None if self.accept_any_next => None,
            None => self.policy.first_sequence,
        }
    }

    fn drain_held(&mut self) -> Vec<DeltaOutcome> {
        let mut outcomes = Vec::new();
        while let Some(next) = self.expected()
            && let Some(held) = self.held.remove(&next)
        {
            let change = self.apply_participants(held.participants);
            self.last_applied = Some(next);
            outcomes.push(DeltaOutcome::Applied {
                sequence: Some(next),
                change,
            });
        }
        if self.held.is_empty() {
            self.gap_reported = false;
        }
        outcomes
    }

    fn apply_participants(&mut self, participants: Vec<Participant>) -> RosterChange {
        let mut change = RosterChange::default();
        for participant in participants {
            change.append(self.apply_participant(participant));
        }
        change
    }

    fn apply_participant(&mut self, participant: Participant) -> RosterChange {
        let mut change = RosterChange::default();
        let Some(id) = participant.id.value().cloned() else {
            self.counters.without_id += 1;
            return change;
        };
        if let (Some(known), Some(incoming)) = (
            self.participants
                .get(&id)
                .and_then(|p| p.roster_sequence_number.value().copied()),
            participant.roster_sequence_number.value().copied(),
        ) && incoming < known
        {
            self.counters.stale_participants += 1;
            return change;
        }
        if let Some(removed) = participant.removed_state.value() {
            if self.participants.remove(&id).is_some() {
                change.left.push(LeftParticipant {
                    removed_state: Some(removed.clone()),
                    participant,
                });
            }
            return change;
        }
        match self.participants.insert(id, participant.clone()) {
            None => change.joined.push(participant),
            Some(old) if old != participant => change.updated.push(participant),
            Some(_) => {}
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_model::Nullable;

    fn participant(id: &str) -> Participant {
        Participant {
            id: Nullable::Value(id.to_owned()),
            ..Participant::default()
        }
    }

    fn removed(id: &str) -> Participant {
        Participant {
            removed_state: Nullable::Value(RemovedState {
                reason: Nullable::Value("Removed from roster".into()),
                ..RemovedState::default()
            }),
            ..participant(id)
        }
    }

    fn delta(sequence: i64, participants: Vec<Participant>) -> DeltaParticipants {
        DeltaParticipants {
            sequence_number: Nullable::Value(sequence),
            participants: Nullable::Value(participants),
            ..DeltaParticipants::default()
        }
    }

    fn ids(roster: &Roster) -> Vec<String> {
        roster
            .participants()
            .filter_map(|p| p.id.value().cloned())
            .collect()
    }

    #[test]
    fn sequence_numbers_at_the_edge_of_i64_neither_panic_nor_freeze_the_roster() {
        let now = Instant::now();
        // A forged jump far ahead is dropped, not held until it becomes the baseline.
        let mut roster = Roster::new(RosterPolicy::default());
        roster.apply_delta(&delta(1, vec![participant("a")]), now);
        let out = roster.apply_delta(&delta(i64::MAX, vec![participant("x")]), now);
        assert!(
            matches!(out[..], [DeltaOutcome::Implausible { .. }]),
            "{out:?}"
        );
        roster.apply_delta(&delta(2, vec![participant("b")]), now);
        assert_eq!(ids(&roster), ["a", "b"]);
        assert_eq!(roster.counters().implausible, 1);
        // A first delta at i64::MAX (any first number is accepted without a policy start):
        // the next one is taken as a new baseline, no overflow.
        let mut roster = Roster::new(RosterPolicy {
            first_sequence: None,
            ..RosterPolicy::default()
        });
        roster.apply_delta(&delta(i64::MAX, vec![participant("a")]), now);
        roster.apply_delta(&delta(7, vec![participant("b")]), now);
        roster.apply_delta(&delta(8, vec![participant("c")]), now);
        assert_eq!(ids(&roster), ["a", "b", "c"]);
    }

    #[test]
    fn in_order_deltas_join_update_and_remove() {
        let mut roster = Roster::default();
        let now = Instant::now();
        let out = roster.apply_delta(&delta(1, vec![participant("a"), participant("b")]), now);
        assert!(
            matches!(&out[..], [DeltaOutcome::Applied { sequence: Some(1), change }] if change.joined.len() == 2)
        );
        let mut muted = participant("a");
        muted.is_muted = Nullable::Value(true);
        let out = roster.apply_delta(&delta(2, vec![muted, removed("b")]), now);
        match &out[..] {
            [DeltaOutcome::Applied { change, .. }] => {
                assert_eq!(change.updated.len(), 1);
                assert_eq!(change.left.len(), 1);
                assert_eq!(
                    change.left[0].removed_state.as_ref().unwrap().reason,
                    Nullable::Value("Removed from roster".into())
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ids(&roster), vec!["a"]);
    }

    #[test]
    fn ahead_of_order_deltas_are_held_then_applied_in_order() {
        let mut roster = Roster::default();
        let now = Instant::now();
        assert_eq!(
            roster.apply_delta(&delta(3, vec![removed("a")]), now),
            vec![DeltaOutcome::Held {
                sequence: 3,
                expected: 1
            }]
        );
        assert_eq!(
            roster.apply_delta(&delta(2, vec![participant("b")]), now),
            vec![DeltaOutcome::Held {
                sequence: 2,
                expected: 1
            }]
        );
        let out = roster.apply_delta(&delta(1, vec![participant("a")]), now);
        let applied: Vec<_> = out
            .iter()
            .map(|o| match o {
                DeltaOutcome::Applied { sequence, .. } => sequence.unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(applied, vec![1, 2, 3]);
        assert_eq!(ids(&roster), vec!["b"]);
        assert_eq!(roster.last_applied_sequence(), Some(3));
    }

    #[test]
    fn stale_and_duplicate_deltas_are_dropped() {
        let mut roster = Roster::default();
        let now = Instant::now();
        roster.apply_delta(&delta(1, vec![participant("a")]), now);
        roster.apply_delta(&delta(2, vec![removed("a")]), now);
        assert_eq!(
            roster.apply_delta(&delta(1, vec![participant("a")]), now),
            vec![DeltaOutcome::Stale {
                sequence: 1,
                last_applied: 2
            }]
        );
        roster.apply_delta(&delta(4, vec![participant("x")]), now);
        assert_eq!(
            roster.apply_delta(&delta(4, vec![participant("x")]), now),
            vec![DeltaOutcome::Duplicate { sequence: 4 }]
        );
        assert!(roster.is_empty(), "a is not resurrected");
        assert_eq!(roster.counters().stale, 1);
        assert_eq!(roster.counters().duplicate, 1);
    }

    #[test]
    fn a_gap_is_reported_after_holding_too_long_and_a_full_roster_resets() {
        let policy = RosterPolicy {
            max_hold: Duration::from_secs(2),
            ..RosterPolicy::default()
        };
        let mut roster = Roster::new(policy);
        let t0 = Instant::now();
        roster.apply_delta(&delta(1, vec![participant("a")]), t0);
        roster.apply_delta(&delta(3, vec![participant("c")]), t0);
        assert_eq!(roster.poll(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            roster.poll(t0 + Duration::from_secs(2)),
            Some(DeltaOutcome::GapNeedsFullRoster {
                expected: 2,
                held: vec![3]
            })
        );
        assert!(roster.needs_full_roster());
        assert_eq!(
            roster.poll(t0 + Duration::from_secs(3)),
            None,
            "reported once"
        );

        let change = roster.apply_full(vec![participant("b"), participant("c")]);
        assert_eq!(change.joined.len(), 2);
        assert_eq!(change.left.len(), 1);
        assert!(change.left[0].removed_state.is_none());
        assert!(!roster.needs_full_roster());
        assert_eq!(ids(&roster), vec!["b", "c"]);
        // The missing delta 2 shows up late: the full roster already covers it.
        assert!(matches!(
            roster.apply_delta(&delta(2, vec![participant("a")]), t0)[..],
            [DeltaOutcome::Stale { sequence: 2, .. }]
        ));
        assert!(matches!(
            roster.apply_delta(&delta(4, vec![removed("c")]), t0)[..],
            [DeltaOutcome::Applied {
                sequence: Some(4),
                ..
            }]
        ));
        assert_eq!(ids(&roster), vec!["b"]);
    }

    #[test]
    fn a_gap_is_reported_when_too_many_are_held_and_the_cap_evicts() {
        let policy = RosterPolicy {
            max_held: 3,
            hard_cap: 4,
            ..RosterPolicy::default()
        };
        let mut roster = Roster::new(policy);
        let now = Instant::now();
        roster.apply_delta(&delta(1, vec![]), now);
        let mut all = Vec::new();
        for sequence in 3..=7 {
            all.extend(roster.apply_delta(&delta(sequence, vec![]), now));
        }
        assert!(all.contains(&DeltaOutcome::GapNeedsFullRoster {
            expected: 2,
            held: vec![3, 4, 5]
        }));
        assert!(all.contains(&DeltaOutcome::Evicted { sequence: 7 }));
        assert_eq!(roster.held_sequences(), vec![3, 4, 5, 6]);
        let resumed = roster.skip_gap();
        assert_eq!(resumed.len(), 4);
        assert_eq!(roster.last_applied_sequence(), Some(6));
    }

    #[test]
    fn older_participant_versions_do_not_overwrite_newer_ones() {
        let mut roster = Roster::default();
        let now = Instant::now();
        let mut newer = participant("a");
        newer.roster_sequence_number = Nullable::Value(5);
        newer.is_muted = Nullable::Value(true);
        roster.apply_full(vec![newer]);
        let mut older = participant("a");
        older.roster_sequence_number = Nullable::Value(4);
        // After a full roster with no sequence known, the next delta sets the baseline.
        assert!(matches!(
            roster.apply_delta(&delta(7, vec![older]), now)[..],
            [DeltaOutcome::Applied {
                sequence: Some(7),
                ..
            }]
        ));
        assert_eq!(roster.get("a").unwrap().is_muted, Nullable::Value(true));
        assert_eq!(roster.counters().stale_participants, 1);
    }

    #[test]
    fn a_full_roster_reports_joins_updates_and_leaves() {
        let mut roster = Roster::default();
        roster.apply_full(vec![participant("a"), participant("b")]);
        let mut b = participant("b");
        b.is_in_lobby = Nullable::Value(false);
        let change = roster.apply_full(vec![b, participant("c"), Participant::default()]);
        assert_eq!(change.joined.len(), 1);
        assert_eq!(change.updated.len(), 1);
        assert_eq!(change.left.len(), 1);
        assert_eq!(roster.counters().without_id, 1);
    }
}
