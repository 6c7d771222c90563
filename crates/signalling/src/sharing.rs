//! Content-sharing sessions of one call, followed through `created` / `updated` / `deleted`
//! notifications on `/communications/calls/{id}/contentsharingsessions`.
//!
//! Notifications carry no sequence number, so order is repaired where it can be: an
//! `updated` for a session never seen starts it (its `created` was lost or is late), and a
//! session that ended is remembered for a while so a late `created` or `updated` cannot bring
//! it back.

use std::collections::{BTreeMap, VecDeque};

use appmedia_model::{ChangeType, ContentSharingSession};

/// How many ended session ids are remembered.
const ENDED_MEMORY: usize = 64;

/// What a notification did to the sessions.
#[derive(Clone, Debug, PartialEq)]
pub enum SharingChange {
    /// A session began (someone started sharing).
    Started(ContentSharingSession),
    /// A live session changed.
    Updated(ContentSharingSession),
    /// A session ended (as it was last known).
    Ended(ContentSharingSession),
}

/// The content-sharing sessions of one call.
#[derive(Clone, Debug, Default)]
pub struct ContentSharing {
    sessions: BTreeMap<String, ContentSharingSession>,
    ended: VecDeque<String>,
    ignored: u64,
}

impl ContentSharing {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live sessions, by id.
    pub fn sessions(&self) -> impl Iterator<Item = &ContentSharingSession> {
        self.sessions.values()
    }

    /// The live session `id`, if any.
    pub fn get(&self, id: &str) -> Option<&ContentSharingSession> {
        self.sessions.get(id)
    }

    /// True while someone shares.
    pub fn is_sharing(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Sessions dropped: without an id, late for an ended session, or with an unknown change type.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Applies one notification's sessions.
    pub fn apply(
        &mut self,
        change_type: Option<&ChangeType>,
        sessions: &[ContentSharingSession],
    ) -> Vec<SharingChange> {
        let mut changes = Vec::new();
        for session in sessions {
            let Some(id) = session.id.value().cloned() else {
                self.ignored += 1;
                continue;
            };
            let has_ended = self.ended.contains(&id);
            match change_type {
                Some(ChangeType::Created | ChangeType::Updated) if has_ended => {
                    tracing::debug!(%id, "late notification for an ended sharing session");
                    self.ignored += 1;
                }
                Some(ChangeType::Created | ChangeType::Updated) => {
                    match self.sessions.insert(id, session.clone()) {
                        None => changes.push(SharingChange::Started(session.clone())),
                        Some(old) if &old != session => {
                            changes.push(SharingChange::Updated(session.clone()))
                        }
                        // A duplicate `created` (or an `updated` that changes nothing) is
                        // still an update the service announced: report `updated` ones only.
                        Some(_) if change_type == Some(&ChangeType::Updated) => {
                            changes.push(SharingChange::Updated(session.clone()))
                        }
                        Some(_) => {}
                    }
                }
                Some(ChangeType::Deleted) => {
                    if has_ended {
                        self.ignored += 1;
                        continue;
                    }
                    let last = self.sessions.remove(&id).unwrap_or_else(|| session.clone());
                    self.remember_ended(id);
                    changes.push(SharingChange::Ended(last));
                }
                Some(ChangeType::Unknown(other)) => {
                    tracing::info!(change_type = %other, "content-sharing change type this version does not know");
                    self.ignored += 1;
                }
                None => {
                    tracing::info!("content-sharing notification without a change type");
                    self.ignored += 1;
                }
            }
        }
        changes
    }

    fn remember_ended(&mut self, id: String) {
        if self.ended.len() == ENDED_MEMORY {
            self.ended.pop_front();
        }
        self.ended.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_model::Nullable;

    fn session(id: &str) -> ContentSharingSession {
        ContentSharingSession {
            id: Nullable::Value(id.to_owned()),
            ..ContentSharingSession::default()
        }
    }

    #[test]
    fn created_updated_deleted() {
        let mut sharing = ContentSharing::new();
        let s = [session("s1")];
        assert_eq!(
            sharing.apply(Some(&ChangeType::Created), &s),
            vec![SharingChange::Started(session("s1"))]
        );
        assert!(sharing.is_sharing());
        assert_eq!(
            sharing.apply(Some(&ChangeType::Updated), &s),
            vec![SharingChange::Updated(session("s1"))]
        );
        assert_eq!(
            sharing.apply(Some(&ChangeType::Deleted), &s),
            vec![SharingChange::Ended(session("s1"))]
        );
        assert!(!sharing.is_sharing());
    }

    #[test]
    fn out_of_order_notifications_are_repaired() {
        let mut sharing = ContentSharing::new();
        let s = [session("s1")];
        // updated before created: it starts the session.
        assert_eq!(
            sharing.apply(Some(&ChangeType::Updated), &s),
            vec![SharingChange::Started(session("s1"))]
        );
        // the late created is a no-op.
        assert_eq!(sharing.apply(Some(&ChangeType::Created), &s), vec![]);
        sharing.apply(Some(&ChangeType::Deleted), &s);
        // nothing brings an ended session back, and it ends once.
        assert_eq!(sharing.apply(Some(&ChangeType::Created), &s), vec![]);
        assert_eq!(sharing.apply(Some(&ChangeType::Updated), &s), vec![]);
        assert_eq!(sharing.apply(Some(&ChangeType::Deleted), &s), vec![]);
        assert!(!sharing.is_sharing());
        assert_eq!(sharing.ignored(), 3);
    }

    #[test]
    fn deleted_before_created_ends_it_for_good() {
        let mut sharing = ContentSharing::new();
        let s = [session("s1")];
        assert_eq!(
            sharing.apply(Some(&ChangeType::Deleted), &s),
            vec![SharingChange::Ended(session("s1"))]
        );
        assert_eq!(sharing.apply(Some(&ChangeType::Created), &s), vec![]);
        assert!(!sharing.is_sharing());
    }

    #[test]
    fn sessions_without_id_or_change_type_are_counted() {
        let mut sharing = ContentSharing::new();
        sharing.apply(
            Some(&ChangeType::Created),
            &[ContentSharingSession::default()],
        );
        sharing.apply(None, &[session("s1")]);
        sharing.apply(Some(&ChangeType::Unknown("moved".into())), &[session("s1")]);
        assert_eq!(sharing.ignored(), 3);
        assert!(!sharing.is_sharing());
    }
}
