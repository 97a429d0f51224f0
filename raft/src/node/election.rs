//! Elections: (pre-)campaigns, counting votes, becoming leader.

use super::progress::Progress;
use super::{Message, MessageKind, NodeId, Raft, Role};
use crate::log::Storage;

impl<S: Storage> Raft<S> {
    pub(super) fn campaign(&mut self, pre: bool, force: bool) {
        self.reset_timeout();
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        self.leader = None;
        let (last_end, last_term) = (self.log.last_end(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.cfg.id)
            .collect();
        if pre {
            self.role = Role::PreCandidate;
            let term = self.hs.term + 1;
            for v in voters {
                self.ready.messages.push(Message {
                    group: self.cfg.group,
                    from: self.cfg.id,
                    to: v,
                    term,
                    kind: MessageKind::PreVote {
                        last_end,
                        last_term,
                    },
                });
            }
        } else {
            self.role = Role::Candidate;
            let term = self.hs.term + 1;
            self.set_term(term, Some(self.cfg.id));
            for v in voters {
                // Our own vote must be durable before we ask for others'.
                self.send_after_persist(
                    v,
                    term,
                    MessageKind::Vote {
                        last_end,
                        last_term,
                        force,
                    },
                );
            }
        }
        self.check_votes();
    }

    pub(super) fn check_votes(&mut self) {
        let granted = self.votes.values().filter(|&&g| g).count();
        let rejected = self.votes.values().filter(|&&g| !g).count();
        if granted >= self.quorum() {
            match self.role {
                Role::PreCandidate => self.campaign(false, false),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if rejected >= self.quorum() {
            let term = self.hs.term;
            self.become_follower(term, None);
        }
    }

    pub(super) fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        self.votes.clear();
        let last = self.log.last_end();
        let ticks = self.ticks;
        self.progress = self
            .peers()
            .into_iter()
            .map(|p| (p, Progress::new(last, ticks)))
            .collect();
        // An entry of the new term lets earlier entries commit (Raft §5.4.2);
        // it covers no Kafka offsets, so it is an empty marker of one offset.
        self.append_marker(None);
    }
}
