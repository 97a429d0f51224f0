//! Deterministic simulation of a Raft group, from a seed.
//!
//! Faults: messages dropped, duplicated, delayed (so reordered); symmetric and
//! one-way partitions; crashes at any step, losing writes not yet synced;
//! slow disks (persists complete later); restarts from the durable state.
//! After every step the invariants are checked; a failing seed is printed and
//! replays with `RILL_SIM_SEED=<seed> cargo test -p rill-raft replay`.
//! Soak: `RILL_SIM_SEEDS=100000 RILL_SIM_SECS=3600 RILL_SIM_BASE=<n> cargo test -p rill-raft thousands`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::log::{Entry, MemStorage, RaftLog, Storage};
use crate::node::{Bug, ConfChange, Config, HardState, Message, Raft, Ready, Role};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Clone, Default)]
struct Durable {
    hs: HardState,
    /// The node's stored log: what the driver wrote and synced. The core
    /// reads it through `Storage`, as a broker's core reads its partition.
    log: MemStorage,
}

type Core = Raft<MemStorage>;

/// The entries of a node's log as its core sees them: stored, then the
/// unstable tail.
fn view(log: &RaftLog<MemStorage>) -> Vec<Entry> {
    let (start, stable_end) = (log.start(), log.stable_end());
    let mut v: Vec<Entry> = log
        .storage()
        .all()
        .into_iter()
        .filter(|e| e.end > start && e.end <= stable_end)
        .collect();
    v.extend(log.unstable().iter().cloned());
    v
}

struct Node {
    raft: Option<Core>,
    durable: Durable,
    /// Readies whose persistence has not completed (lost on a crash).
    unsynced: VecDeque<(u64, Ready)>,
    /// Highest commit seen in this incarnation.
    commit_seen: u64,
}

#[derive(Clone, Copy)]
pub struct Faults {
    pub drop_per_mille: u64,
    pub dup_per_mille: u64,
    pub delay_max: u64,
    pub crash_per_mille: u64,
    pub restart_per_mille: u64,
    pub partition_per_mille: u64,
    pub heal_per_mille: u64,
    pub slow_disk_per_mille: u64,
    /// A leader hands leadership to a random voter.
    pub transfer_per_mille: u64,
    /// A node forgets a committed prefix of its log (log start moves), so
    /// lagging followers must be caught up from the leader's log start.
    pub compact_per_mille: u64,
    /// The leader moves the spare node one step: add as learner → promote →
    /// remove → add again.
    pub membership_per_mille: u64,
}

impl Faults {
    pub fn harsh() -> Faults {
        Faults {
            drop_per_mille: 50,
            dup_per_mille: 20,
            delay_max: 6,
            crash_per_mille: 4,
            restart_per_mille: 30,
            partition_per_mille: 6,
            heal_per_mille: 25,
            slow_disk_per_mille: 150,
            transfer_per_mille: 8,
            compact_per_mille: 10,
            membership_per_mille: 15,
        }
    }
}

impl Faults {
    /// No faults at all: a healthy network and disks.
    pub fn none() -> Faults {
        Faults {
            drop_per_mille: 0,
            dup_per_mille: 0,
            delay_max: 1,
            crash_per_mille: 0,
            restart_per_mille: 0,
            partition_per_mille: 0,
            heal_per_mille: 0,
            slow_disk_per_mille: 0,
            transfer_per_mille: 0,
            compact_per_mille: 0,
            membership_per_mille: 0,
        }
    }
}

/// A driver mistake to prove the checks catch it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DriverBug {
    /// Sends votes and acknowledgements before the disk write completes.
    AckBeforePersist,
}

pub struct Sim {
    seed: u64,
    rng: Rng,
    nodes: BTreeMap<u64, Node>,
    configs: BTreeMap<u64, Config>,
    net: Vec<(u64, Message)>,
    /// (from, to) pairs that cannot talk.
    cut: BTreeSet<(u64, u64)>,
    faults: Faults,
    driver_bug: Option<DriverBug>,
    time: u64,
    /// Every committed entry: end → (start, term, data, term of the committer).
    committed: BTreeMap<u64, (u64, u64, Bytes, u64)>,
    leaders: BTreeMap<u64, u64>,
    proposed: u64,
    /// Initial voters; node `voters + 1` starts outside the group (the spare).
    voters: u64,
    /// Membership changes the leader accepted.
    conf_changes: u64,
}

/// The Raft group a seed's simulation runs (any id: the core stamps it on
/// every message).
fn group_of(seed: u64) -> u64 {
    seed % 10_000 + 1
}

fn entry_key(e: &Entry) -> (u64, u64, &Bytes) {
    (e.start, e.term, &e.data)
}

impl Sim {
    pub fn new(
        seed: u64,
        n: u64,
        faults: Faults,
        bug: Option<Bug>,
        driver_bug: Option<DriverBug>,
    ) -> Sim {
        let ids: Vec<u64> = (1..=n).collect();
        let mut configs = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for id in 1..=n + 1 {
            let mut c = Config::new(id, ids.clone());
            c.group = group_of(seed);
            c.seed = seed;
            c.election_ticks = 10;
            c.heartbeat_ticks = 2;
            c.inflight_max = 4;
            c.append_bytes_max = 64;
            c.bug = bug;
            let durable = Durable::default();
            let raft = Raft::new(c.clone(), HardState::default(), durable.log.clone());
            configs.insert(id, c);
            nodes.insert(
                id,
                Node {
                    raft: Some(raft),
                    durable,
                    unsynced: VecDeque::new(),
                    commit_seen: 0,
                },
            );
        }
        Sim {
            seed,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            nodes,
            configs,
            net: Vec::new(),
            cut: BTreeSet::new(),
            faults,
            driver_bug,
            time: 0,
            committed: BTreeMap::new(),
            leaders: BTreeMap::new(),
            proposed: 0,
            voters: n,
            conf_changes: 0,
        }
    }

    fn fail(&self, what: String) -> ! {
        for (id, n) in &self.nodes {
            match &n.raft {
                Some(r) => eprintln!(
                    "node {id}: {:?} term {} leader {:?} commit {} log {}..{} (last term {}) durable end {}",
                    r.role(), r.term(), r.leader(), r.commit(), r.log().start(), r.log().last_end(), r.log().last_term(),
                    n.durable.log.last_end()
                ),
                None => eprintln!("node {id}: down"),
            }
        }
        panic!(
            "seed {}: step {}: {what}\nreplay: RILL_SIM_SEED={} RILL_SIM_NODES={} cargo test -p rill-raft replay -- --nocapture",
            self.seed, self.time, self.seed, self.voters
        )
    }

    fn enqueue(&mut self, m: Message) {
        assert_eq!(m.group, group_of(self.seed), "a message without its group");
        if self.rng.chance(self.faults.drop_per_mille) {
            return;
        }
        let copies = if self.rng.chance(self.faults.dup_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.time + 1 + self.rng.below(self.faults.delay_max + 1);
            self.net.push((at, m.clone()));
        }
    }

    /// Moves a node's Ready through the simulated disk.
    fn drain_ready(&mut self, id: u64) {
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return;
        };
        let mut ready = raft.take_ready();
        if ready.is_empty() {
            return;
        }
        for m in std::mem::take(&mut ready.messages) {
            self.enqueue(m);
        }
        if self.driver_bug == Some(DriverBug::AckBeforePersist) {
            for m in std::mem::take(&mut ready.persisted_messages) {
                self.enqueue(m);
            }
        }
        let done_at = if self.rng.chance(self.faults.slow_disk_per_mille) {
            self.time + 1 + self.rng.below(5)
        } else {
            self.time
        };
        self.nodes
            .get_mut(&id)
            .expect("node")
            .unsynced
            .push_back((done_at, ready));
        self.sync_disk(id);
    }

    /// Completes the node's persists that are due, in order.
    fn sync_disk(&mut self, id: u64) {
        loop {
            let node = self.nodes.get_mut(&id).expect("node");
            match node.unsynced.front() {
                Some((at, _)) if *at <= self.time => {}
                _ => return,
            }
            let (_, ready) = node.unsynced.pop_front().expect("front");
            let d = &mut node.durable;
            if let Some(hs) = &ready.hard_state {
                d.hs = hs.clone();
            }
            if let Some((end, term, conf)) = ready.restore {
                d.log.restore(end, term, conf);
            }
            if let Some(t) = ready.truncate_after {
                d.log.truncate_after(t.max(d.log.first().0));
            }
            for e in &ready.entries {
                if e.start == d.log.last_end() {
                    d.log.append(e.clone());
                }
            }
            let (end, term) = (d.log.last_end(), d.log.last_term());
            if let Some(raft) = node.raft.as_mut() {
                raft.persisted(end, term);
            }
            for m in ready.persisted_messages {
                self.enqueue(m);
            }
            self.drain_ready(id);
        }
    }

    fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn crash(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        node.raft = None;
        node.unsynced.clear(); // unsynced writes are lost
        self.net.retain(|(_, m)| m.to != id);
    }

    fn restart(&mut self, id: u64) {
        let cfg = self.configs[&id].clone();
        let node = self.nodes.get_mut(&id).expect("node");
        let d = node.durable.clone();
        node.raft = Some(Raft::new(cfg, d.hs, d.log));
        node.commit_seen = 0;
    }

    fn faults_step(&mut self, allow: bool) {
        if !allow {
            return;
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        let n = ids.len() as u64;
        if self.rng.chance(self.faults.crash_per_mille) {
            let id = ids[self.rng.below(n) as usize];
            let crashed = ids.iter().filter(|i| self.nodes[i].raft.is_none()).count();
            // At most a minority of the initial voters is down at once (with the
            // spare promoted, the group is one larger and still has a quorum).
            if self.nodes[&id].raft.is_some() && crashed < (self.voters as usize - 1) / 2 {
                self.crash(id);
            }
        }
        for &id in &ids {
            if self.nodes[&id].raft.is_none() && self.rng.chance(self.faults.restart_per_mille) {
                self.restart(id);
            }
        }
        if self.rng.chance(self.faults.partition_per_mille) {
            self.cut.clear();
            let one_way = self.rng.chance(300);
            for &a in &ids {
                for &b in &ids {
                    if a != b && self.rng.chance(350) {
                        self.cut.insert((a, b));
                        if !one_way {
                            self.cut.insert((b, a));
                        }
                    }
                }
            }
        }
        if self.rng.chance(self.faults.heal_per_mille) {
            self.cut.clear();
        }
        if self.rng.chance(self.faults.transfer_per_mille) {
            let to = ids[self.rng.below(n) as usize];
            let leader = self.live().into_iter().find(|id| {
                self.nodes[id]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            });
            if let Some(l) = leader {
                self.nodes
                    .get_mut(&l)
                    .expect("node")
                    .raft
                    .as_mut()
                    .expect("live")
                    .transfer_leadership(to);
                self.drain_ready(l);
            }
        }
        if self.rng.chance(self.faults.membership_per_mille) {
            let spare = self.voters + 1;
            let leader = self.live().into_iter().find(|id| {
                self.nodes[id]
                    .raft
                    .as_ref()
                    .is_some_and(|r| r.role() == Role::Leader)
            });
            if let Some(l) = leader {
                let raft = self
                    .nodes
                    .get_mut(&l)
                    .expect("node")
                    .raft
                    .as_mut()
                    .expect("live");
                let m = raft.membership().clone();
                let change = if m.voters.contains(&spare) {
                    ConfChange::Remove(spare)
                } else if m.learners.contains(&spare) {
                    ConfChange::Promote(spare)
                } else {
                    ConfChange::AddLearner(spare)
                };
                if raft.propose_conf_change(change).is_ok() {
                    self.conf_changes += 1;
                }
                self.drain_ready(l);
            }
        }
        if self.rng.chance(self.faults.compact_per_mille) {
            let id = ids[self.rng.below(n) as usize];
            let node = self.nodes.get_mut(&id).expect("node");
            if let Some(raft) = node.raft.as_mut() {
                // Compact to a committed boundary present both in memory and on disk.
                let upto = raft
                    .commit()
                    .min(node.durable.log.last_end())
                    .min(raft.log().stable_end());
                let at = raft.log().find_conflict_by_term(upto, u64::MAX);
                if at > raft.log().start() && node.durable.log.term_at(at) == raft.log().term_at(at)
                {
                    raft.compact(at);
                    node.durable.log.compact_to(at);
                }
            }
        }
    }

    /// One simulated tick: faults, clocks, deliveries, disks, workload, checks.
    pub fn step(&mut self, faults: bool) {
        self.time += 1;
        self.faults_step(faults);
        for id in self.live() {
            self.nodes
                .get_mut(&id)
                .expect("node")
                .raft
                .as_mut()
                .expect("live")
                .tick();
            self.drain_ready(id);
        }
        let now = self.time;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.net = later;
        for (_, m) in due {
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            let to = m.to;
            if let Some(raft) = self.nodes.get_mut(&to).and_then(|n| n.raft.as_mut()) {
                raft.step(m);
                self.drain_ready(to);
            }
        }
        for id in self.live() {
            self.sync_disk(id);
        }
        if self.time.is_multiple_of(3) {
            self.propose();
        }
        self.check();
    }

    fn propose(&mut self) -> bool {
        let leader = self.live().into_iter().find(|id| {
            self.nodes[id]
                .raft
                .as_ref()
                .is_some_and(|r| r.role() == Role::Leader)
        });
        let Some(id) = leader else { return false };
        self.proposed += 1;
        let data = Bytes::from(format!("p{}", self.proposed));
        let offsets = 1 + self.rng.below(3);
        let ok = self
            .nodes
            .get_mut(&id)
            .expect("node")
            .raft
            .as_mut()
            .expect("live")
            .propose(data, offsets)
            .is_ok();
        self.drain_ready(id);
        ok
    }

    /// Holders needed for a committed entry: a majority of the initial
    /// voters (a majority of the group with the spare promoted is at least that).
    fn quorum(&self) -> usize {
        self.voters as usize / 2 + 1
    }

    /// The invariants, checked after every step.
    fn check(&mut self) {
        let live = self.live();
        for &id in &live {
            let raft = self.nodes[&id].raft.as_ref().expect("live");
            // Election safety: at most one leader per term.
            if raft.role() == Role::Leader {
                let term = raft.term();
                let prev = *self.leaders.entry(term).or_insert(id);
                if prev != id {
                    self.fail(format!("two leaders in term {term}: {prev} and {id}"));
                }
            }
            // Commit index never moves back within an incarnation, and never past the log.
            let commit = raft.commit();
            if commit < self.nodes[&id].commit_seen {
                self.fail(format!(
                    "node {id} commit went back from {} to {commit}",
                    self.nodes[&id].commit_seen
                ));
            }
            if commit > raft.log().last_end() {
                self.fail(format!(
                    "node {id} commit {commit} beyond its log end {}",
                    raft.log().last_end()
                ));
            }
            self.nodes.get_mut(&id).expect("node").commit_seen = commit;
        }
        // State machine safety: committed prefixes agree everywhere.
        for &id in &live {
            let raft = self.nodes[&id].raft.as_ref().expect("live");
            let (commit, term) = (raft.commit(), raft.term());
            let entries: Vec<Entry> = view(raft.log())
                .into_iter()
                .filter(|e| e.end <= commit)
                .collect();
            for e in entries {
                match self.committed.get(&e.end) {
                    Some((start, t, data, _)) => {
                        if (*start, *t, data) != entry_key(&e) {
                            self.fail(format!(
                                "node {id} committed a different entry at {}: term {} vs {t}",
                                e.end, e.term
                            ));
                        }
                    }
                    None => {
                        self.committed
                            .insert(e.end, (e.start, e.term, e.data.clone(), term));
                    }
                }
            }
        }
        // Committed entries are never lost: each stays on a majority of disks.
        let quorum = self.quorum();
        for (end, (_, term, _, _)) in &self.committed {
            let holders = self
                .nodes
                .values()
                .filter(|n| {
                    n.durable.log.first().0 >= *end || n.durable.log.term_at(*end) == Some(*term)
                })
                .count();
            if holders < quorum {
                self.fail(format!("committed entry ending at {end} (term {term}) is durable on {holders} nodes only"));
            }
        }
        // Lease reads see every committed write: a leader that serves a read
        // from its lease must not lag anything committed anywhere.
        let max_committed = self.committed.keys().next_back().copied().unwrap_or(0);
        for &id in &live {
            let raft = self.nodes[&id].raft.as_ref().expect("live");
            if let Some(read) = raft.lease_read() {
                if read < max_committed {
                    self.fail(format!("leader {id} (term {}) would serve a lease read at {read}, but {max_committed} is committed", raft.term()));
                }
            }
        }
        // Leader completeness: a leader holds everything committed before its term.
        for &id in &live {
            let raft = self.nodes[&id].raft.as_ref().expect("live");
            if raft.role() != Role::Leader {
                continue;
            }
            for (end, (_, term, _, committed_in)) in &self.committed {
                if *committed_in < raft.term()
                    && raft.log().term_at(*end) != Some(*term)
                    && raft.log().start() < *end
                {
                    self.fail(format!("leader {id} of term {} lacks entry ending at {end} committed in term {committed_in}", raft.term()));
                }
            }
        }
        // Log matching: where two logs share an entry, they share everything before it.
        for (i, &a) in live.iter().enumerate() {
            for &b in &live[i + 1..] {
                let la = self.nodes[&a].raft.as_ref().expect("live").log();
                let lb = self.nodes[&b].raft.as_ref().expect("live").log();
                let (va, vb) = (view(la), view(lb));
                let common = va
                    .iter()
                    .rev()
                    .find(|e| lb.term_at(e.end) == Some(e.term) && e.end > lb.start());
                if let Some(c) = common {
                    let pa: Vec<_> = va
                        .iter()
                        .filter(|e| e.end <= c.end && e.start >= lb.start())
                        .map(entry_key)
                        .collect();
                    let pb: Vec<_> = vb
                        .iter()
                        .filter(|e| e.end <= c.end && e.start >= la.start())
                        .map(entry_key)
                        .collect();
                    if pa != pb {
                        self.fail(format!(
                            "logs of {a} and {b} agree at {} but differ before it",
                            c.end
                        ));
                    }
                }
            }
        }
    }

    /// Heals everything and checks that a leader emerges and a new proposal
    /// commits on every node within a bounded number of ticks.
    pub fn check_liveness(&mut self) {
        self.cut.clear();
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.nodes[&id].raft.is_none() {
                self.restart(id);
            }
        }
        let saved = self.faults;
        self.faults = Faults {
            membership_per_mille: 0,
            transfer_per_mille: 0,
            drop_per_mille: 0,
            dup_per_mille: 0,
            slow_disk_per_mille: 0,
            ..saved
        };
        let bound = 60 * 10;
        let start = self.time;
        let mut target = None;
        while self.time - start < bound {
            self.step(false);
            if target.is_none() && self.propose() {
                let leader = self
                    .live()
                    .into_iter()
                    .find(|id| {
                        self.nodes[id]
                            .raft
                            .as_ref()
                            .is_some_and(|r| r.role() == Role::Leader)
                    })
                    .expect("leader");
                target = Some(
                    self.nodes[&leader]
                        .raft
                        .as_ref()
                        .expect("live")
                        .log()
                        .last_end(),
                );
            }
            if let Some(t) = target {
                // Every current member (voters and learners) commits the proposal;
                // a node removed from the group is not waited for.
                let leader = self.live().into_iter().find(|id| {
                    self.nodes[id]
                        .raft
                        .as_ref()
                        .is_some_and(|r| r.role() == Role::Leader)
                });
                let members: Vec<u64> = match leader {
                    Some(l) => {
                        let m = self.nodes[&l].raft.as_ref().expect("live").membership();
                        m.voters.iter().chain(m.learners.iter()).copied().collect()
                    }
                    None => Vec::new(),
                };
                if !members.is_empty()
                    && members.iter().all(|id| {
                        self.nodes[id]
                            .raft
                            .as_ref()
                            .is_some_and(|r| r.commit() >= t)
                    })
                {
                    self.faults = saved;
                    return;
                }
            }
        }
        self.fail(format!(
            "no progress within {bound} ticks after healing (proposal target {target:?})"
        ));
    }

    pub fn committed_entries(&self) -> usize {
        self.committed.len()
    }
}

mod grown;
mod runs;
