//! The Raft state machine: no I/O, no clock, no threads.
//!
//! The driver feeds it ticks, messages and proposals, and takes a [`Ready`]
//! after each call: state to persist, messages to send, a new commit index.
//!
//! # Persistence contract
//!
//! For each [`Ready`], in this order:
//! 1. Send `messages` at any time (they promise nothing about local disk).
//! 2. Make durable, together: `hard_state` (term, vote, commit), then
//!    `restore` (log restarted at a leader's log start), `truncate_after`
//!    (drop entries after that offset), then `entries` (append).
//! 3. Only then send `persisted_messages`: votes (a vote must survive a crash,
//!    or a node could vote twice in one term) and acknowledgements of entries
//!    (an acknowledged entry may be counted toward a commit; losing it on a
//!    crash could lose committed data).
//! 4. Call [`Raft::persisted`] with the log end now durable, so the leader
//!    can count its own copy.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::log::{Entry, Membership, RaftLog};

pub type NodeId = u64;

/// The state that must survive a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: u64,
    pub vote: Option<NodeId>,
    /// The highest offset known committed (the high watermark).
    pub commit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// "Would you vote for me in term `msg.term`?" Changes no state (pre-vote).
    PreVote {
        last_end: u64,
        last_term: u64,
    },
    PreVoteResp {
        granted: bool,
    },
    /// `force` is set when the leader handed over leadership (TimeoutNow), so
    /// followers do not refuse it for having heard from a leader recently.
    Vote {
        last_end: u64,
        last_term: u64,
        force: bool,
    },
    VoteResp {
        granted: bool,
    },
    /// Entries after (`prev_end`, `prev_term`); empty entries make a heartbeat.
    Append {
        prev_end: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Success: the follower's log matches up to `end`. Failure: the
    /// follower's best guess of where it may match: (`end`, `hint_term`).
    AppendResp {
        success: bool,
        end: u64,
        hint_term: u64,
    },
    /// The leader no longer has the entries the follower needs: restart the
    /// log at the leader's log start (`end`, `term`), with `conf` the
    /// membership in force there, and continue from there.
    Snapshot {
        end: u64,
        term: u64,
        conf: Membership,
    },
    /// Leadership transfer: start an election now.
    TimeoutNow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub kind: MessageKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Output of one round of input; see the module docs for the contract.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    /// (end, term, membership) the log restarts at.
    pub restore: Option<(u64, u64, Membership)>,
    pub truncate_after: Option<u64>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    /// New commit index, if it moved.
    pub commit: Option<u64>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        *self == Ready::default()
    }
}

/// Deliberate bugs for proving that the simulator's checks bite.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The leader commits what it has itself, without a majority.
    CommitWithoutMajority,
}

#[derive(Debug, Clone)]
pub struct Config {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Unsure where the follower's log matches: one Append at a time.
    Probe { waiting: bool },
    /// Matching: Appends are pipelined up to `inflight_max`.
    Replicate,
}

#[derive(Debug, Clone)]
struct Progress {
    /// Offset up to which the follower's log is known to match.
    matched: u64,
    /// `prev_end` of the next Append.
    next: u64,
    flow: Flow,
    /// End offsets of Appends in flight (replicate mode).
    inflight: Vec<u64>,
    /// Heard from since the last check-quorum round.
    active: bool,
    /// Tick of the last message heard from this follower.
    last_heard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader { leader: Option<NodeId> },
    Transferring,
}

pub struct Raft {
    cfg: Config,
    hs: HardState,
    hs_dirty: bool,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
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

impl Raft {
    /// A node restarted from its durable state (or new, from defaults).
    pub fn new(cfg: Config, hs: HardState, log: RaftLog) -> Raft {
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
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn hard_state(&self) -> &HardState {
        &self.hs
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
            from: self.cfg.id,
            to,
            term: self.hs.term,
            kind,
        };
        self.ready.messages.push(m);
    }

    fn send_after_persist(&mut self, to: NodeId, term: u64, kind: MessageKind) {
        self.ready.persisted_messages.push(Message {
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
                        let active = self
                            .cfg
                            .voters
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
                if self.election_elapsed >= self.timeout && self.is_voter() {
                    self.campaign(self.cfg.pre_vote, false);
                }
            }
        }
    }

    fn campaign(&mut self, pre: bool, force: bool) {
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

    fn check_votes(&mut self) {
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

    fn become_leader(&mut self) {
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
            .map(|p| {
                (
                    p,
                    Progress {
                        matched: 0,
                        next: last,
                        flow: Flow::Probe { waiting: false },
                        inflight: Vec::new(),
                        active: true,
                        last_heard: ticks,
                    },
                )
            })
            .collect();
        // An entry of the new term lets earlier entries commit (Raft §5.4.2);
        // it covers no Kafka offsets, so it is an empty marker of one offset.
        let start = self.log.last_end();
        let entry = Entry {
            term: self.hs.term,
            start,
            end: start + 1,
            data: Bytes::new(),
            conf: None,
        };
        self.append_local(entry);
        self.broadcast_append(false);
    }

    fn append_local(&mut self, entry: Entry) {
        let conf = entry.conf.is_some();
        self.log.append(entry.clone());
        self.ready.entries.push(entry);
        if conf {
            self.refresh_conf();
        }
    }

    /// The membership in force.
    pub fn membership(&self) -> &Membership {
        &self.conf
    }

    /// Re-reads the membership after the log changed; a leader starts or
    /// stops tracking the members that came or went.
    fn refresh_conf(&mut self) {
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
                self.progress.entry(p).or_insert(Progress {
                    matched: 0,
                    next: last,
                    flow: Flow::Probe { waiting: false },
                    inflight: Vec::new(),
                    active: true,
                    last_heard: ticks,
                });
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
        let pending = self
            .log
            .entries()
            .iter()
            .any(|e| e.conf.is_some() && e.end > self.hs.commit);
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
        let start = self.log.last_end();
        let entry = Entry {
            term: self.hs.term,
            start,
            end: start + 1,
            data: Bytes::new(),
            conf: Some(next),
        };
        self.append_local(entry);
        self.broadcast_append(false);
        Ok((start, start + 1))
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
        if self.log.term_at(end) != Some(term) || end > self.log.last_end() {
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
                    && self.log.is_up_to_date(last_end, last_term)
                    && m.term > self.hs.term;
                let term = if granted { m.term } else { self.hs.term };
                self.ready.messages.push(Message {
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
                    self.log.restore(end, term, Some(conf.clone()));
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
                    },
                );
            }
            MessageKind::AppendResp {
                success,
                end,
                hint_term,
            } => {
                if self.role == Role::Leader {
                    self.handle_append_resp(m.from, success, end, hint_term);
                }
            }
            MessageKind::TimeoutNow => {
                if self.is_voter() {
                    self.campaign(false, true);
                }
            }
        }
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_end: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
    ) {
        let term = self.hs.term;
        if prev_end < self.hs.commit {
            // Already committed here; say how far we match for sure.
            let commit = self.hs.commit;
            self.send_after_persist(
                leader,
                term,
                MessageKind::AppendResp {
                    success: true,
                    end: commit,
                    hint_term: 0,
                },
            );
            return;
        }
        if self.log.term_at(prev_end) != Some(prev_term) {
            // The largest boundary here whose term is at most the leader's
            // `prev_term`: skips our entries of terms the leader never had,
            // and guarantees the leader's next guess moves strictly back.
            let hint_end = self
                .log
                .find_conflict_by_term(prev_end.min(self.log.last_end()), prev_term);
            let hint_term = self.log.term_at(hint_end).unwrap_or(0);
            self.send(
                leader,
                MessageKind::AppendResp {
                    success: false,
                    end: hint_end,
                    hint_term,
                },
            );
            return;
        }
        let mut last_new = prev_end;
        for e in entries {
            last_new = e.end;
            if self.log.term_at(e.end) == Some(e.term) && e.end <= self.log.last_end() {
                continue;
            }
            if e.start < self.log.last_end() {
                assert!(
                    e.start >= self.hs.commit,
                    "never truncate committed entries ({} < {})",
                    e.start,
                    self.hs.commit
                );
                self.log.truncate_after(e.start);
                self.refresh_conf();
                self.ready.entries.retain(|x| x.end <= e.start);
                self.ready.truncate_after = Some(
                    self.ready
                        .truncate_after
                        .map_or(e.start, |t| t.min(e.start)),
                );
                self.persisted_end = self.persisted_end.min(e.start);
            }
            self.append_local(e);
        }
        self.set_commit(leader_commit.min(last_new));
        self.send_after_persist(
            leader,
            term,
            MessageKind::AppendResp {
                success: true,
                end: last_new,
                hint_term: 0,
            },
        );
    }

    fn handle_append_resp(&mut self, from: NodeId, success: bool, end: u64, hint_term: u64) {
        let ticks = self.ticks;
        let log_start = self.log.start();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.active = true;
        p.last_heard = ticks;
        if success {
            if end > p.matched {
                p.matched = end;
            }
            p.next = p.next.max(p.matched);
            p.inflight.retain(|&e| e > end);
            if let Flow::Probe { .. } = p.flow {
                p.flow = Flow::Replicate;
                p.next = p.matched;
                p.inflight.clear();
            }
            self.maybe_commit();
            if self.transfer_to == Some(from) && self.progress[&from].matched == self.log.last_end()
            {
                self.send(from, MessageKind::TimeoutNow);
            }
            self.send_append(from, false);
        } else {
            // Back off to where the follower can match, skipping a whole
            // conflicting term at a time.
            // A follower whose best match lies before our log start cannot be
            // served entries any more: aim below the start so the next send
            // is a Snapshot (restart your log at our log start).
            let below_start =
                end < log_start || (end == log_start && hint_term != self.log.start_term());
            let guess = if below_start && log_start > 0 {
                log_start - 1
            } else {
                self.log.find_conflict_by_term(end, hint_term)
            };
            let p = self.progress.get_mut(&from).expect("present");
            p.flow = Flow::Probe { waiting: false };
            p.inflight.clear();
            p.next = guess.max(p.matched).min(p.next);
            self.send_append(from, false);
        }
    }

    fn maybe_commit(&mut self) {
        let own = self.persisted_end.min(self.log.last_end());
        let candidate = if self.cfg.bug == Some(Bug::CommitWithoutMajority) {
            own
        } else {
            let mut matched: Vec<u64> = self
                .conf
                .voters
                .iter()
                .map(|v| {
                    if *v == self.cfg.id {
                        own
                    } else {
                        self.progress.get(v).map_or(0, |p| p.matched)
                    }
                })
                .collect();
            matched.sort_unstable_by(|a, b| b.cmp(a));
            matched[self.quorum() - 1]
        };
        // Only entries of the current term commit by counting (Raft §5.4.2).
        if candidate > self.hs.commit && self.log.term_at(candidate) == Some(self.hs.term) {
            self.set_commit(candidate);
            self.broadcast_append(false);
        }
        // A leader that the committed membership no longer lists steps down.
        if self.role == Role::Leader && !self.conf.voters.contains(&self.cfg.id) {
            let conf_end = self
                .log
                .entries()
                .iter()
                .rev()
                .find(|e| e.conf.is_some())
                .map(|e| e.end);
            if conf_end.is_none_or(|e| e <= self.hs.commit) {
                let term = self.hs.term;
                self.become_follower(term, None);
            }
        }
    }

    fn broadcast_append(&mut self, heartbeat: bool) {
        for p in self.peers() {
            self.send_append(p, heartbeat);
        }
    }

    /// Sends `to` what it lacks, within flow control; `heartbeat` sends even
    /// when there is nothing new (and re-probes a waiting follower).
    fn send_append(&mut self, to: NodeId, heartbeat: bool) {
        let last_end = self.log.last_end();
        let (log_start, log_start_term) = (self.log.start(), self.log.start_term());
        let start_conf = self
            .log
            .start_conf()
            .cloned()
            .unwrap_or_else(|| self.initial_conf.clone());
        let inflight_max = self.cfg.inflight_max;
        let commit = self.hs.commit;
        let Some(p) = self.progress.get_mut(&to) else {
            return;
        };
        if p.next < log_start {
            if heartbeat || !matches!(p.flow, Flow::Probe { waiting: true }) {
                p.flow = Flow::Probe { waiting: true };
                self.send(
                    to,
                    MessageKind::Snapshot {
                        end: log_start,
                        term: log_start_term,
                        conf: start_conf,
                    },
                );
            }
            return;
        }
        if heartbeat && p.flow == Flow::Replicate && p.inflight.len() >= inflight_max {
            // Nothing acknowledged for a whole window: an Append was probably
            // lost. Fall back to probing from what is known to match.
            p.flow = Flow::Probe { waiting: false };
            p.inflight.clear();
            p.next = p.matched.max(log_start);
        }
        let paused = match p.flow {
            Flow::Probe { waiting } => waiting && !heartbeat,
            Flow::Replicate => p.inflight.len() >= inflight_max,
        };
        if paused {
            return;
        }
        let has_new = p.next < last_end;
        if !has_new && !heartbeat {
            return;
        }
        let prev_end = p.next;
        let entries = if has_new {
            self.log.entries_after(prev_end, self.cfg.append_bytes_max)
        } else {
            Vec::new()
        };
        let prev_term = self
            .log
            .term_at(prev_end)
            .expect("progress points at an entry boundary");
        let p = self.progress.get_mut(&to).expect("present");
        if let Some(last) = entries.last() {
            match p.flow {
                Flow::Replicate => {
                    p.next = last.end;
                    p.inflight.push(last.end);
                }
                Flow::Probe { .. } => p.flow = Flow::Probe { waiting: true },
            }
        } else if let Flow::Probe { .. } = p.flow {
            p.flow = Flow::Probe { waiting: true };
        }
        // A follower may only commit what it is known to hold.
        let commit = commit.min(prev_end.max(entries.last().map_or(0, |e| e.end)));
        self.send(
            to,
            MessageKind::Append {
                prev_end,
                prev_term,
                entries,
                commit,
            },
        );
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
