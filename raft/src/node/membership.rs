//! Single-step membership changes: add a learner, promote it, remove a
//! member; one pending change at a time.

use super::progress::Progress;
use super::{NodeId, Raft, Role};
use crate::log::Membership;
use crate::log::Storage;

/// A single-step membership change (one server at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChange {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChangeError {
    NotLeader,
    /// A previous change is not committed yet, or this leader has not yet
    /// committed an entry of its own term (required for single-step safety).
    Pending,
    Invalid(&'static str),
}

impl<S: Storage> Raft<S> {
    /// The membership in force.
    pub fn membership(&self) -> &Membership {
        &self.conf
    }

    /// Re-reads the membership after the log changed; a leader starts or
    /// stops tracking the members that came or went.
    pub(super) fn refresh_conf(&mut self) {
        let conf = self
            .log
            .membership()
            .cloned()
            .unwrap_or_else(|| self.initial_conf.clone());
        if conf == self.conf {
            return;
        }
        self.conf = conf;
        if self.role == Role::Leader {
            let peers = self.peers();
            self.progress.retain(|id, _| peers.contains(id));
            let (last, ticks) = (self.log.last_end(), self.ticks);
            for p in peers {
                self.progress.entry(p).or_insert(Progress::new(last, ticks));
            }
        }
    }

    /// Proposes a single-step membership change (leader only). One change
    /// at a time: the previous one must be committed, and so must an entry
    /// of this leader's term (the fix to single-server changes from Ongaro's
    /// thesis errata), before another is accepted.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
    ) -> Result<(u64, u64), ConfChangeError> {
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader);
        }
        let pending = self.log.last_conf_end().is_some_and(|e| e > self.hs.commit);
        if pending || self.log.term_at(self.hs.commit) != Some(self.hs.term) {
            return Err(ConfChangeError::Pending);
        }
        let mut next = self.conf.clone();
        match change {
            ConfChange::AddLearner(id) => {
                if next.voters.contains(&id) || !next.learners.insert(id) {
                    return Err(ConfChangeError::Invalid("already a member"));
                }
            }
            ConfChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(ConfChangeError::Invalid("not a learner"));
                }
                next.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                let was = next.voters.remove(&id) || next.learners.remove(&id);
                if !was {
                    return Err(ConfChangeError::Invalid("not a member"));
                }
                if next.voters.is_empty() {
                    return Err(ConfChangeError::Invalid("cannot remove the last voter"));
                }
            }
        }
        Ok(self.append_marker(Some(next)))
    }
}
