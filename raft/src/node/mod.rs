//! The Raft state machine: no I/O, no clock, no threads.
//!
//! The driver feeds it ticks, messages and proposals, and takes a [`Ready`]
//! after each call: state to persist, messages to send, a new commit index.
//!
//! # Persistence contract
//!
//! For each [`Ready`], in this order:
//! 1. Send `messages` at any time (they promise nothing about local disk).
//! 2. Make durable: `restore` (log restarted at a leader's log start),
//!    `truncate_after` (drop entries after that offset), `entries`
//!    (append), and after them `hard_state` (term, vote, commit): its
//!    commit index may cover entries of this same Ready, and a restart
//!    trusts the saved commit, so the log must be durable first.
//! 3. Only then send `persisted_messages`: votes (a vote must survive a crash,
//!    or a node could vote twice in one term) and acknowledgements of entries
//!    (an acknowledged entry may be counted toward a commit; losing it on a
//!    crash could lose committed data).
//! 4. Call [`Raft::persisted`] with the log end now durable, so the leader
//!    can count its own copy.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::log::{Entry, Membership, RaftLog, Storage};

#[cfg(test)]
mod abstain_tests;
mod election;
mod membership;
mod message;
mod progress;
mod replicate;

pub use membership::{ConfChange, ConfChangeError};
pub use message::{GroupId, HardState, Message, MessageKind, NodeId, Ready, Role};
use progress::Progress;

/// Deliberate bugs for proving that the simulator's checks bite.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The leader commits what it has itself, without a majority.
    CommitWithoutMajority,
    /// Check-quorum counts the voters the node was built with, not the
    /// membership in force (the bug this crate had until the simulator's
    /// grown-group case caught it).
    CheckQuorumInitialVoters,
    /// A node whose recovery cut damaged synced entries votes and campaigns
    /// at once, as if it had never acknowledged them.
    VoteAfterDamage,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The group this node is a replica of; stamped on every message.
    pub group: GroupId,
    pub id: NodeId,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Base election timeout; the actual one is random in `[base, 2·base)`.
    pub election_ticks: u32,
    pub heartbeat_ticks: u32,
    /// Bound on unacknowledged Append messages per follower in replicate mode.
    pub inflight_max: usize,
    /// Soft bound on entry bytes per Append.
    pub append_bytes_max: usize,
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// Seeds the randomized election timeouts (deterministic for tests).
    pub seed: u64,
    #[doc(hidden)]
    pub bug: Option<Bug>,
}

impl Config {
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Config {
        Config {
            group: 0,
            id,
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            election_ticks: 10,
            heartbeat_ticks: 2,
            inflight_max: 16,
            append_bytes_max: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            seed: 0,
            bug: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader { leader: Option<NodeId> },
    Transferring,
}

pub struct Raft<S> {
    cfg: Config,
    hs: HardState,
    hs_dirty: bool,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog<S>,
    /// Log end durable on this node.
    persisted_end: u64,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    timeout: u32,
    ticks: u64,
    rng: u64,
    transfer_to: Option<NodeId>,
    /// Membership from the configuration, used until the log sets one.
    initial_conf: Membership,
    /// Membership in force: the latest in the log (committed or not).
    conf: Membership,
    ready: Ready,
}

impl<S: Storage> Raft<S> {
    /// A node restarted from its durable state (or new, from defaults): its
    /// hard state and its stored log.
    pub fn new(cfg: Config, hs: HardState, storage: S) -> Raft<S> {
        let log = RaftLog::new(storage);
        assert!(cfg.heartbeat_ticks >= 1 && cfg.election_ticks > cfg.heartbeat_ticks);
        let persisted_end = log.last_end();
        let rng = (cfg.seed ^ cfg.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let mut r = Raft {
            hs: HardState {
                commit: hs.commit.min(persisted_end),
                ..hs
            },
            hs_dirty: false,
            role: Role::Follower,
            leader: None,
            log,
            persisted_end,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            timeout: 0,
            ticks: 0,
            rng,
            transfer_to: None,
            initial_conf: Membership {
                voters: cfg.voters.clone(),
                learners: cfg.learners.clone(),
            },
            conf: Membership::default(),
            ready: Ready::default(),
            cfg,
        };
        r.conf = r
            .log
            .membership()
            .cloned()
            .unwrap_or_else(|| r.initial_conf.clone());
        r.reset_timeout();
        r
    }

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> u64 {
        self.hs.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit(&self) -> u64 {
        self.hs.commit
    }
    pub fn log(&self) -> &RaftLog<S> {
        &self.log
    }
    pub fn hard_state(&self) -> &HardState {
        &self.hs
    }

    /// What the leader knows of each follower, for a failing simulation's report.
    #[doc(hidden)]
    pub fn progress_report(&self) -> String {
        format!("{:?}", self.progress)
    }

    /// Takes what the driver must persist and send (see the module docs).
    pub fn take_ready(&mut self) -> Ready {
        if self.hs_dirty {
            self.ready.hard_state = Some(self.hs.clone());
            self.hs_dirty = false;
        }
        std::mem::take(&mut self.ready)
    }

    fn quorum(&self) -> usize {
        self.conf.voters.len() / 2 + 1
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn reset_timeout(&mut self) {
        let base = self.cfg.election_ticks as u64;
        self.timeout = (base + self.next_random() % base) as u32;
        self.election_elapsed = 0;
    }

    fn send(&mut self, to: NodeId, kind: MessageKind) {
        let m = Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term: self.hs.term,
            kind,
        };
        self.ready.messages.push(m);
    }

    fn send_after_persist(&mut self, to: NodeId, term: u64, kind: MessageKind) {
        self.ready.persisted_messages.push(Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term,
            kind,
        });
    }

    fn set_term(&mut self, term: u64, vote: Option<NodeId>) {
        if self.hs.term != term || self.hs.vote != vote {
            self.hs.term = term;
            self.hs.vote = vote;
            self.hs_dirty = true;
        }
    }

    fn set_commit(&mut self, commit: u64) {
        if commit > self.hs.commit {
            self.hs.commit = commit;
            self.hs_dirty = true;
            self.ready.commit = Some(commit);
        }
        if let Some(t) = self.hs.abstain_through {
            if self.log.term_at(self.hs.commit).is_some_and(|c| c > t) {
                self.hs.abstain_through = None;
                self.hs_dirty = true;
            }
        }
    }

    /// Whether this node abstains through its current term, so that only a
    /// new term lets it vote again (said in its Append answers).
    fn abstaining_through_term(&self) -> bool {
        self.abstaining() && self.hs.abstain_through.is_some_and(|t| t >= self.hs.term)
    }

    /// Whether this node takes part in elections now (see
    /// [`HardState::abstain_through`]).
    pub fn abstaining(&self) -> bool {
        self.hs.abstain_through.is_some() && self.cfg.bug != Some(Bug::VoteAfterDamage)
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.hs.term {
            self.set_term(term, None);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.transfer_to = None;
        self.reset_timeout();
    }

    fn is_voter(&self) -> bool {
        self.conf.voters.contains(&self.cfg.id)
    }

    fn peers(&self) -> Vec<NodeId> {
        self.conf
            .voters
            .iter()
            .chain(self.conf.learners.iter())
            .copied()
            .filter(|&n| n != self.cfg.id)
            .collect()
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        match self.role {
            Role::Leader => {
                self.heartbeat_elapsed += 1;
                self.election_elapsed += 1;
                if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_append(true);
                }
                if self.election_elapsed >= self.cfg.election_ticks {
                    self.election_elapsed = 0;
                    self.transfer_to = None;
                    if self.cfg.check_quorum {
                        let id = self.cfg.id;
                        // The voters in force: after a membership change the
                        // ones the node started with are not the group.
                        let voters = if self.cfg.bug == Some(Bug::CheckQuorumInitialVoters) {
                            &self.cfg.voters
                        } else {
                            &self.conf.voters
                        };
                        let active = voters
                            .iter()
                            .filter(|&&v| {
                                v == id || self.progress.get(&v).is_some_and(|p| p.active)
                            })
                            .count();
                        for p in self.progress.values_mut() {
                            p.active = false;
                        }
                        if active < self.quorum() {
                            // Cannot reach a majority: stop acting as leader.
                            let term = self.hs.term;
                            self.become_follower(term, None);
                        }
                    }
                }
            }
            _ => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.timeout && self.is_voter() && !self.abstaining() {
                    self.campaign(self.cfg.pre_vote, false);
                }
            }
        }
    }

    /// Appends (as leader) an entry of this term covering one offset and no
    /// records — a new term's first entry, or a membership change — and
    /// sends it. Returns its (start, end).
    fn append_marker(&mut self, conf: Option<Membership>) -> (u64, u64) {
        let start = self.log.last_end();
        self.append_local(Entry {
            term: self.hs.term,
            start,
            end: start + 1,
            data: Bytes::new(),
            conf,
        });
        self.broadcast_append(false);
        (start, start + 1)
    }

    fn append_local(&mut self, entry: Entry) {
        let conf = entry.conf.is_some();
        self.log.append(entry.clone());
        self.ready.entries.push(entry);
        if conf {
            self.refresh_conf();
        }
    }

    /// Appends a batch covering `offsets` offsets (leader only).
    pub fn propose(&mut self, data: Bytes, offsets: u64) -> Result<(u64, u64), ProposeError> {
        assert!(offsets > 0);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer_to.is_some() {
            return Err(ProposeError::Transferring);
        }
        let start = self.log.last_end();
        let entry = Entry {
            term: self.hs.term,
            start,
            end: start + offsets,
            data,
            conf: None,
        };
        self.append_local(entry);
        self.broadcast_append(false);
        Ok((start, start + offsets))
    }

    /// The driver made the log durable up to `end` (entries of `term` there).
    pub fn persisted(&mut self, end: u64, term: u64) {
        if !self.log.persisted(end, term) {
            return; // superseded by a truncation since
        }
        self.persisted_end = end;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Hands leadership to `to` once it has caught up.
    pub fn transfer_leadership(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.cfg.id || !self.conf.voters.contains(&to) {
            return;
        }
        self.transfer_to = Some(to);
        self.election_elapsed = 0;
        if self
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_end())
        {
            self.send(to, MessageKind::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
    }

    /// Lease read: the commit index if this leader heard from a majority
    /// within the last election timeout, so no other leader can exist yet.
    pub fn lease_read(&self) -> Option<u64> {
        // Until it commits an entry of its own term, a new leader's commit
        // index may lag what its predecessor already committed.
        if self.role != Role::Leader
            || !self.cfg.check_quorum
            || self.log.term_at(self.hs.commit) != Some(self.hs.term)
        {
            return None;
        }
        let horizon = self
            .ticks
            .saturating_sub(self.cfg.election_ticks as u64 / 2);
        let id = self.cfg.id;
        let fresh = self
            .conf
            .voters
            .iter()
            .filter(|&&v| {
                v == id
                    || self
                        .progress
                        .get(&v)
                        .is_some_and(|p| p.last_heard >= horizon)
            })
            .count();
        (fresh >= self.quorum()).then_some(self.hs.commit)
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, m: Message) {
        // Routing is the driver's job; a message of another group or for
        // another node reaching this one is a driver bug.
        assert!(
            m.group == self.cfg.group,
            "group {} got a message of group {}",
            self.cfg.group,
            m.group
        );
        if m.to != self.cfg.id {
            return;
        }
        let in_lease = self.cfg.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.cfg.election_ticks;
        if m.term > self.hs.term {
            match &m.kind {
                MessageKind::PreVote { .. } => {}
                MessageKind::PreVoteResp { granted: true } if self.role == Role::PreCandidate => {}
                MessageKind::Vote { force: false, .. } if in_lease => return,
                MessageKind::Append { .. }
                | MessageKind::Snapshot { .. }
                | MessageKind::TimeoutNow => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.hs.term {
            match m.kind {
                // A stale leader learns the new term and steps down.
                MessageKind::Append { .. } | MessageKind::Snapshot { .. } => {
                    self.send(
                        m.from,
                        MessageKind::AppendResp {
                            success: false,
                            end: 0,
                            hint_term: 0,
                            abstaining: false,
                        },
                    );
                }
                MessageKind::PreVote { .. } => {
                    self.send(m.from, MessageKind::PreVoteResp { granted: false })
                }
                _ => {}
            }
            return;
        }
        match m.kind {
            MessageKind::PreVote {
                last_end,
                last_term,
            } => {
                let granted = !in_lease
                    && !self.abstaining()
                    && self.log.is_up_to_date(last_end, last_term)
                    && m.term > self.hs.term;
                let term = if granted { m.term } else { self.hs.term };
                self.ready.messages.push(Message {
                    group: self.cfg.group,
                    from: self.cfg.id,
                    to: m.from,
                    term,
                    kind: MessageKind::PreVoteResp { granted },
                });
            }
            MessageKind::Vote {
                last_end,
                last_term,
                ..
            } => {
                let free = self.hs.vote.is_none_or(|v| v == m.from);
                let granted = free
                    && !self.abstaining()
                    && self.log.is_up_to_date(last_end, last_term)
                    && self.role != Role::Leader;
                if granted {
                    let term = self.hs.term;
                    self.set_term(term, Some(m.from));
                    self.reset_timeout();
                }
                let term = self.hs.term;
                self.send_after_persist(m.from, term, MessageKind::VoteResp { granted });
            }
            MessageKind::PreVoteResp { granted } => {
                if self.role == Role::PreCandidate && (m.term == self.hs.term + 1 || !granted) {
                    self.votes.insert(m.from, granted);
                    self.check_votes();
                }
            }
            MessageKind::VoteResp { granted } => {
                if self.role == Role::Candidate {
                    self.votes.insert(m.from, granted);
                    self.check_votes();
                }
            }
            MessageKind::Append {
                prev_end,
                prev_term,
                entries,
                commit,
            } => {
                if self.role != Role::Follower {
                    let term = self.hs.term;
                    self.become_follower(term, Some(m.from));
                }
                self.leader = Some(m.from);
                self.election_elapsed = 0;
                self.handle_append(m.from, prev_end, prev_term, entries, commit);
            }
            MessageKind::Snapshot { end, term, conf } => {
                if self.role != Role::Follower {
                    let t = self.hs.term;
                    self.become_follower(t, Some(m.from));
                }
                self.leader = Some(m.from);
                self.election_elapsed = 0;
                if end > self.hs.commit && self.log.term_at(end) != Some(term) {
                    self.log.restore(end, term, conf.clone());
                    self.ready.restore = Some((end, term, conf));
                    self.ready.entries.clear();
                    self.ready.truncate_after = None;
                    self.persisted_end = self.persisted_end.min(end);
                    self.set_commit(end);
                    self.refresh_conf();
                }
                // Either restored at `end`, or already holding it: matched up to `end`.
                let t = self.hs.term;
                self.send_after_persist(
                    m.from,
                    t,
                    MessageKind::AppendResp {
                        success: true,
                        end,
                        hint_term: 0,
                        abstaining: self.abstaining_through_term(),
                    },
                );
            }
            MessageKind::AppendResp {
                success,
                end,
                hint_term,
                abstaining,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_resp(m.from, success, end, hint_term, abstaining);
                }
            }
            MessageKind::TimeoutNow => {
                if self.is_voter() && !self.abstaining() {
                    self.campaign(false, true);
                }
            }
        }
    }

    /// The driver loaded the entries asked for in [`Ready::fetch`]: send
    /// what was waiting for them.
    pub fn entries_loaded(&mut self) {
        if self.role == Role::Leader {
            self.broadcast_append(false);
        }
    }

    /// Forgets entries up to `end` (a boundary at or below the commit index):
    /// the log start moves, and followers behind it get a Snapshot message.
    pub fn compact(&mut self, end: u64) {
        assert!(
            end <= self.hs.commit,
            "only committed entries may be compacted"
        );
        self.log.compact_to(end);
    }
}
