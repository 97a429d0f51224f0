//! Deterministic simulation of the whole replication stack: brokers ×
//! partitions, each replica a real partition log (`ReplicaLog` over
//! `PartitionLog`) on its broker's simulated disk, driven by the same
//! `Driver` a broker runs, over a fake network.
//!
//! Faults, all from the seed: messages dropped, duplicated, delayed (so
//! reordered); symmetric and one-way partitions; brokers crashing at any
//! point — between steps, or in the middle of a write, a sync or a
//! hard-state save (the disk refuses every change after a random count) —
//! losing what was not synced and tearing the last write; restarts that
//! recover every log from what the disk kept; bits flipped in a down
//! broker's synced data (one damaged broker at a time), which recovery
//! finds, cuts, and the replica abstains from elections until repaired.
//!
//! Checked after every step: one leader per term; every replica's
//! committed prefix (read back from its log) is the one history — same
//! offsets, epochs and bytes — also after crashes; a new leader holds every
//! entry committed before its term; a leader that would serve a lease read
//! does not lag anything committed; at the end, with faults healed, every
//! replica holds the whole committed history and a new write commits.
//!
//! A failing seed is printed with the command that replays it:
//! `RILL_SIM_SEED=<seed> cargo test -p rill-replica --test cluster_sim replay -- --nocapture`.
//! Soak: `RILL_CLUSTER_SEEDS=100000 RILL_CLUSTER_SECS=36000 cargo test --release -p rill-replica --test cluster_sim many_seeds -- --nocapture`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_raft::driver::{Driver, DriverBug, Durability};
use rill_raft::log::Storage;
use rill_raft::node::{Bug, ConfChange, Config, Message, Role};
use rill_replica::ReplicaLog;
use rill_storage::sim_disk::{CrashPlan, SimDisk};
use support::{
    batch, config, dir, env, flip_targets, run, stored, Faults, Held, History, Outbox, Replica,
    Rng, SimClock, Totals, TICK_MS,
};

/// The last invariant violation, so a test of a deliberate bug can tell it
/// from any other panic.
static FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

type Drv = Driver<Replica, Replica, Outbox, SimClock>;

struct Broker {
    disk: SimDisk,
    /// Per partition (Raft group); `None` while the broker is down.
    replicas: Option<BTreeMap<u64, Drv>>,
    outbox: Outbox,
    /// Per group: the committed prefix of this incarnation already checked.
    verified: BTreeMap<u64, u64>,
    /// While down: per group, what its disk holds for sure (synced).
    held_when_down: BTreeMap<u64, Held>,
    /// Down with bits flipped in the synced data of these groups' replicas,
    /// not yet restarted.
    flipped: BTreeSet<u64>,
}

struct Sim {
    seed: u64,
    rng: Rng,
    brokers: BTreeMap<u64, Broker>,
    voters: Vec<u64>,
    groups: Vec<u64>,
    net: Vec<(u64, Message)>,
    cut: BTreeSet<(u64, u64)>,
    faults: Faults,
    bug: Option<Bug>,
    driver_bug: Option<DriverBug>,
    clock: SimClock,
    step_no: u64,
    /// Per group: committed batches by end offset → (start, epoch, bytes),
    /// and the term in which each was first seen committed.
    history: BTreeMap<u64, History>,
    leaders: BTreeMap<(u64, u64), u64>,
    proposed: u64,
    totals: Totals,
}

impl Sim {
    async fn new(
        seed: u64,
        brokers: u64,
        groups: u64,
        faults: Faults,
        bug: Option<Bug>,
        driver_bug: Option<DriverBug>,
        voters: Vec<u64>,
    ) -> Sim {
        let mut sim = Sim {
            seed,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            brokers: BTreeMap::new(),
            voters,
            groups: (1..=groups).map(|g| g * 1000 + seed % 1000).collect(),
            net: Vec::new(),
            cut: BTreeSet::new(),
            faults,
            bug,
            driver_bug,
            clock: SimClock::default(),
            step_no: 0,
            history: BTreeMap::new(),
            leaders: BTreeMap::new(),
            proposed: 0,
            totals: Totals {
                seeds: 1,
                ..Totals::default()
            },
        };
        for id in 1..=brokers {
            sim.brokers.insert(
                id,
                Broker {
                    disk: SimDisk::new(),
                    replicas: None,
                    outbox: Outbox::default(),
                    verified: BTreeMap::new(),
                    held_when_down: BTreeMap::new(),
                    flipped: BTreeSet::new(),
                },
            );
            sim.start(id).await;
        }
        sim
    }

    fn fail(&self, what: String) -> ! {
        *FAILURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(what.clone());
        for (id, b) in &self.brokers {
            match &b.replicas {
                None => eprintln!("broker {id}: down"),
                Some(rs) => {
                    for (g, d) in rs {
                        let n = d.node();
                        eprintln!(
                            "broker {id} group {g}: {:?} term {} leader {:?} commit {} log end {} durable {}",
                            n.role(),
                            n.term(),
                            n.leader(),
                            n.commit(),
                            n.log().last_end(),
                            d.log().log().durable_offset()
                        );
                        if std::env::var("RILL_SIM_VERBOSE").is_ok() {
                            eprintln!(
                                "    epochs {:?} hard state {:?} progress {}",
                                d.log().log().leader_epochs(),
                                d.node().hard_state(),
                                d.node().progress_report()
                            );
                        }
                    }
                }
            }
        }
        panic!(
            "seed {}: step {}: {what}\nreplay: RILL_SIM_SEED={} cargo test -p rill-replica --test cluster_sim replay -- --nocapture",
            self.seed, self.step_no, self.seed
        )
    }

    /// Opens every replica of `id` from its disk (recovery runs).
    async fn start(&mut self, id: u64) {
        let disk = self.brokers[&id].disk.clone();
        let outbox = self.brokers[&id].outbox.clone();
        let mut replicas = BTreeMap::new();
        for &g in &self.groups {
            let (log, hs) = match ReplicaLog::open(disk.clone(), &dir(id, g), config()).await {
                Ok(x) => x,
                Err(e) => self.fail(format!("broker {id} cannot reopen group {g}: {e}")),
            };
            if self.brokers[&id].flipped.contains(&g) && hs.abstain_through.is_some() {
                self.totals.damaged_recoveries += 1;
            }
            let mut cfg = Config::new(id, self.voters.clone());
            cfg.group = g;
            cfg.seed = self.seed ^ g;
            cfg.election_ticks = 10;
            cfg.heartbeat_ticks = 2;
            cfg.inflight_max = 4;
            cfg.append_bytes_max = 512;
            cfg.bug = self.bug;
            let d = Driver::new(
                cfg,
                log.clone(),
                hs,
                log,
                outbox.clone(),
                self.clock.clone(),
                Durability::Synced,
                TICK_MS,
            )
            .with_bug(self.driver_bug);
            replicas.insert(g, d);
        }
        let b = self.brokers.get_mut(&id).expect("broker");
        b.replicas = Some(replicas);
        b.verified.clear();
        b.flipped.clear();
    }

    /// Whether broker `id` has damage not yet repaired: a flip it has not
    /// recovered from, or a replica abstaining since it recovered.
    fn damaged(&self, id: u64) -> bool {
        let b = &self.brokers[&id];
        !b.flipped.is_empty()
            || b.replicas.as_ref().is_some_and(|r| {
                r.values()
                    .any(|d| d.node().hard_state().abstain_through.is_some())
            })
    }

    /// Flips a bit in the synced data of one replica of a down broker, if
    /// no other broker has unrepaired damage (so a minority is damaged).
    fn flip_bit(&mut self) {
        let down: Vec<u64> = self
            .brokers
            .iter()
            .filter(|(_, b)| b.replicas.is_none())
            .map(|(id, _)| *id)
            .collect();
        if down.is_empty() {
            return;
        }
        let id = down[self.rng.below(down.len() as u64) as usize];
        if self.brokers.keys().any(|&o| o != id && self.damaged(o)) {
            return;
        }
        let g = self.groups[self.rng.below(self.groups.len() as u64) as usize];
        let disk = self.brokers[&id].disk.clone();
        let Some((path, ranges)) = flip_targets(&disk, &dir(id, g)) else {
            return;
        };
        if ranges.is_empty() {
            return;
        }
        let (from, to) = ranges[self.rng.below(ranges.len() as u64) as usize];
        let at = from + self.rng.below(to - from);
        let bit = self.rng.below(8) as u8;
        assert!(disk.flip_bit(&path, at, bit));
        let b = self.brokers.get_mut(&id).expect("broker");
        if b.flipped.insert(g) {
            self.totals.replicas_flipped += 1;
        }
        if let Some(h) = b.held_when_down.get_mut(&g) {
            h.abstaining = true;
        }
        self.totals.bit_flips += 1;
    }

    /// Kills broker `id`: its disk keeps what was synced, some of the
    /// pending writes, and maybe part of the next one.
    fn crash(&mut self, id: u64) {
        let landed = self.rng.below(4) as usize;
        let torn = self.rng.below(3) as usize;
        let b = self.brokers.get_mut(&id).expect("broker");
        let Some(replicas) = b.replicas.take() else {
            return;
        };
        b.held_when_down = replicas
            .iter()
            .map(|(g, d)| (*g, Held::of(d.log())))
            .collect();
        b.disk = b.disk.crash(CrashPlan {
            landed,
            torn_sectors: torn,
        });
        b.outbox.0.borrow_mut().clear();
        self.net.retain(|(_, m)| m.to != id);
        self.totals.crashes += 1;
        if torn > 0 {
            self.totals.torn_writes += 1;
        }
    }

    fn live(&self) -> Vec<u64> {
        self.brokers
            .iter()
            .filter(|(_, b)| b.replicas.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn down(&self) -> usize {
        self.brokers.len() - self.live().len()
    }

    /// Runs the driver of (`id`, `g`) after it was given input; a store
    /// error (the disk refused a write: the process died) crashes the broker.
    async fn process(&mut self, id: u64, g: u64) {
        let Some(d) = self
            .brokers
            .get_mut(&id)
            .and_then(|b| b.replicas.as_mut())
            .and_then(|r| r.get_mut(&g))
        else {
            return;
        };
        match d.process().await {
            Ok(p) => self.totals.syncs += p.syncs as u64,
            Err(e) => {
                if std::env::var("RILL_SIM_VERBOSE").is_ok() {
                    eprintln!("step {}: broker {id} group {g}: {e}", self.step_no);
                }
                self.totals.crashes_mid_write += 1;
                // What the driver sent before it died is on the wire.
                self.flush_outbox(id);
                self.crash(id);
            }
        }
        self.flush_outbox(id);
    }

    fn flush_outbox(&mut self, id: u64) {
        let out: Vec<Message> = std::mem::take(&mut *self.brokers[&id].outbox.0.borrow_mut());
        for m in out {
            self.totals.messages += 1;
            if self.rng.chance(self.faults.drop) {
                self.totals.dropped += 1;
                continue;
            }
            let copies = if self.rng.chance(self.faults.dup) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.step_no + 1 + self.rng.below(self.faults.delay_max + 1);
                self.net.push((at, m.clone()));
            }
        }
    }

    async fn faults_step(&mut self) {
        let ids: Vec<u64> = self.brokers.keys().copied().collect();
        let n = ids.len() as u64;
        let minority = (self.voters.len() - 1) / 2;
        if self.rng.chance(self.faults.crash) && self.down() < minority {
            let id = ids[self.rng.below(n) as usize];
            self.crash(id);
        }
        if self.rng.chance(self.faults.crash_mid_write) && self.down() < minority {
            // The process dies within its next few disk changes.
            let id = ids[self.rng.below(n) as usize];
            if self.brokers[&id].replicas.is_some() {
                let after = self.rng.below(6);
                self.brokers[&id].disk.die_after(after);
            }
        }
        for &id in &ids {
            if self.brokers[&id].replicas.is_none() && self.rng.chance(self.faults.restart) {
                // A restarted process's disk accepts changes again.
                let fresh = self.brokers[&id].disk.crash(CrashPlan {
                    landed: 0,
                    torn_sectors: 0,
                });
                self.brokers.get_mut(&id).expect("broker").disk = fresh;
                self.start(id).await;
            }
        }
        if self.rng.chance(self.faults.flip) {
            self.flip_bit();
        }
        if self.rng.chance(self.faults.partition) {
            self.totals.partitions += 1;
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
        if self.rng.chance(self.faults.heal) {
            self.cut.clear();
        }
    }

    async fn step(&mut self, faults: bool) {
        self.step_no += 1;
        self.totals.steps += 1;
        self.clock.0.set(self.clock.0.get() + TICK_MS);
        if faults {
            self.faults_step().await;
        }
        let groups = self.groups.clone();
        for id in self.live() {
            for &g in &groups {
                if let Some(d) = self
                    .brokers
                    .get_mut(&id)
                    .and_then(|b| b.replicas.as_mut())
                    .and_then(|r| r.get_mut(&g))
                {
                    d.advance_clock();
                }
                self.process(id, g).await;
            }
        }
        let now = self.step_no;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.net = later;
        for (_, m) in due {
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            let (to, g) = (m.to, m.group);
            let Some(d) = self
                .brokers
                .get_mut(&to)
                .and_then(|b| b.replicas.as_mut())
                .and_then(|r| r.get_mut(&g))
            else {
                continue;
            };
            d.step(m);
            self.process(to, g).await;
        }
        if self.step_no.is_multiple_of(2) {
            for g in groups {
                self.propose(g).await;
            }
        }
        self.check().await;
    }

    fn leader_of(&self, g: u64) -> Option<u64> {
        self.live().into_iter().find(|id| {
            self.brokers[id].replicas.as_ref().expect("live")[&g]
                .node()
                .role()
                == Role::Leader
        })
    }

    fn driver(&mut self, id: u64, g: u64) -> &mut Drv {
        self.brokers
            .get_mut(&id)
            .and_then(|b| b.replicas.as_mut())
            .and_then(|r| r.get_mut(&g))
            .expect("a live replica")
    }

    async fn propose(&mut self, g: u64) -> Option<u64> {
        let id = self.leader_of(g)?;
        self.proposed += 1;
        let records = 1 + self.rng.below(3);
        let data = batch(self.proposed, records);
        let end = self
            .driver(id, g)
            .propose(data, records)
            .ok()
            .map(|(_, e)| e);
        self.process(id, g).await;
        end
    }

    async fn check(&mut self) {
        let live = self.live();
        let groups = self.groups.clone();
        // Every committed batch is durable on a majority of the voters (a
        // down broker counts with what its disk had synced when it died).
        let quorum = self.voters.len() / 2 + 1;
        for &g in &groups {
            let held: Vec<Held> = self
                .brokers
                .values()
                .map(|b| match &b.replicas {
                    Some(r) => Held::of(r[&g].log()),
                    None => b.held_when_down.get(&g).cloned().unwrap_or_default(),
                })
                .collect();
            let Some(history) = self.history.get(&g) else {
                continue;
            };
            for (end, (start, epoch, _, _)) in history {
                let holders = held.iter().filter(|h| h.holds(*end, *epoch)).count();
                if holders < quorum {
                    self.fail(format!("group {g}: the committed batch {start}..{end} (epoch {epoch}) is durable on {holders} brokers, fewer than a majority"));
                }
            }
        }
        for &id in &live {
            for &g in &groups {
                let Some(replicas) = self.brokers[&id].replicas.as_ref() else {
                    continue; // crashed during this check
                };
                let d = &replicas[&g];
                let n = d.node();
                let (role, term, commit) = (n.role(), n.term(), n.commit());
                let lease = n.lease_read();
                let log = d.log().clone();
                if role == Role::Leader {
                    let prev = *self.leaders.entry((g, term)).or_insert(id);
                    if prev != id {
                        self.fail(format!(
                            "group {g}: two leaders in term {term}: {prev} and {id}"
                        ));
                    }
                    // Leader completeness.
                    let history = self.history.get(&g).cloned().unwrap_or_default();
                    for (end, (_, epoch, _, committed_in)) in &history {
                        if *committed_in <= term && log.term_at(*end) != Some(*epoch) {
                            self.fail(format!("group {g}: leader {id} of term {term} lacks the batch ending at {end} (epoch {epoch}) committed in term {committed_in}"));
                        }
                    }
                }
                let max_committed = self
                    .history
                    .get(&g)
                    .and_then(|h| h.keys().next_back().copied())
                    .unwrap_or(0);
                if let Some(read) = lease {
                    if read < max_committed {
                        self.fail(format!("group {g}: leader {id} would serve a lease read at {read}, but {max_committed} is committed"));
                    }
                }
                // The committed prefix, read back from the log, is the history.
                let verified = self.brokers[&id].verified.get(&g).copied().unwrap_or(0);
                if commit > log.last_end() {
                    self.fail(format!("group {g}: broker {id} ({role:?}) has commit {commit} beyond its stored log end {} (view end {})", log.last_end(), self.brokers[&id].replicas.as_ref().expect("live")[&g].node().log().last_end()));
                }
                if commit > verified {
                    for (start, end, epoch, bytes) in stored(&log, verified, commit).await {
                        if end > commit {
                            break;
                        }
                        let h = self.history.entry(g).or_default();
                        match h.get(&end) {
                            Some((s, e, b, _)) => {
                                if (*s, *e, b) != (start, epoch, &bytes) {
                                    let (s, e) = (*s, *e);
                                    self.fail(format!("group {g}: broker {id} committed {start}..{end} epoch {epoch}, but {s}..{end} epoch {e} was committed before"));
                                }
                            }
                            None => {
                                let inside =
                                    h.range(start + 1..).next().is_some_and(|(k, _)| *k < end);
                                let overlaps = h
                                    .range(end + 1..)
                                    .next()
                                    .is_some_and(|(_, (s, ..))| *s < end);
                                if inside || overlaps {
                                    self.fail(format!("group {g}: broker {id} committed {start}..{end} across committed batch boundaries"));
                                }
                                h.insert(end, (start, epoch, bytes, term));
                                self.totals.committed_batches += 1;
                            }
                        }
                    }
                    if let Some(b) = self.brokers.get_mut(&id) {
                        b.verified.insert(g, commit);
                    }
                }
            }
        }
    }

    async fn restart_down(&mut self) {
        for id in self.brokers.keys().copied().collect::<Vec<_>>() {
            if self.brokers[&id].replicas.is_none() {
                // A restarted process's disk accepts changes again.
                let fresh = self.brokers[&id].disk.crash(CrashPlan {
                    landed: 0,
                    torn_sectors: 0,
                });
                self.brokers.get_mut(&id).expect("broker").disk = fresh;
                self.start(id).await;
            }
        }
    }

    /// Heals everything, restarts every broker, and checks that every
    /// group commits a new write on every replica, and that every replica
    /// then holds the whole committed history byte for byte.
    async fn check_liveness(&mut self) {
        self.cut.clear();
        self.faults = Faults::none();
        let groups = self.groups.clone();
        let mut target: BTreeMap<u64, u64> = BTreeMap::new();
        let bound = 800;
        for _ in 0..bound {
            // A process death armed before the heal may still strike once.
            self.restart_down().await;
            self.step(false).await;
            for &g in &groups {
                if let std::collections::btree_map::Entry::Vacant(slot) = target.entry(g) {
                    if let Some(end) = self.propose(g).await {
                        slot.insert(end);
                    }
                }
            }
            let done = groups.iter().all(|g| {
                target.get(g).is_some_and(|&t| {
                    self.brokers.values().all(|b| {
                        b.replicas
                            .as_ref()
                            .is_some_and(|r| r[g].node().commit() >= t)
                    })
                })
            });
            if done {
                for &g in &groups {
                    let history = self.history.get(&g).cloned().unwrap_or_default();
                    for id in self.live() {
                        let d = &self.brokers[&id].replicas.as_ref().expect("live")[&g];
                        let (log, end) = (d.log().clone(), d.node().commit());
                        let got: BTreeMap<u64, (u64, u64, Bytes)> = stored(&log, 0, end)
                            .await
                            .into_iter()
                            .map(|(s, e, ep, b)| (e, (s, ep, b)))
                            .collect();
                        for (e, (s, ep, b, _)) in history.range(..=end) {
                            if got.get(e) != Some(&(*s, *ep, b.clone())) {
                                self.fail(format!("group {g}: broker {id} lost or changed the committed batch {s}..{e} (epoch {ep})"));
                            }
                        }
                    }
                }
                return;
            }
        }
        self.fail(format!(
            "no progress within {bound} steps after healing (targets {target:?})"
        ));
    }
}

async fn run_seed(
    seed: u64,
    steps: u64,
    bug: Option<Bug>,
    driver_bug: Option<DriverBug>,
) -> Totals {
    let brokers = if seed.is_multiple_of(3) { 5 } else { 3 };
    let voters: Vec<u64> = (1..=brokers).collect();
    let mut sim = Sim::new(seed, brokers, 2, Faults::harsh(), bug, driver_bug, voters).await;
    for _ in 0..steps {
        sim.step(true).await;
    }
    sim.check_liveness().await;
    sim.totals
}

#[test]
fn many_seeds_keep_every_invariant() {
    let seeds = env("RILL_CLUSTER_SEEDS", 1000);
    let budget = Duration::from_secs(env("RILL_CLUSTER_SECS", 150));
    let base = env("RILL_CLUSTER_BASE", 1);
    let t = run(move || async move {
        let start = Instant::now();
        let mut t = Totals::default();
        for s in 0..seeds {
            if start.elapsed() > budget {
                break;
            }
            let x = run_seed(base + s, 300, None, None).await;
            t.seeds += x.seeds;
            t.steps += x.steps;
            t.crashes += x.crashes;
            t.crashes_mid_write += x.crashes_mid_write;
            t.torn_writes += x.torn_writes;
            t.bit_flips += x.bit_flips;
            t.damaged_recoveries += x.damaged_recoveries;
            t.replicas_flipped += x.replicas_flipped;
            t.partitions += x.partitions;
            t.messages += x.messages;
            t.dropped += x.dropped;
            t.committed_batches += x.committed_batches;
            t.syncs += x.syncs;
        }
        println!(
            "{} seeds (3 and 5 brokers × 2 partitions) in {:?}: {} steps, {} crashes ({} in the middle of a disk change, {} with a torn write), {} bits flipped in synced data ({} replicas flipped, {} found by recovery: log cut, replica abstaining until repaired), {} network partitions, {} messages ({} dropped), {} log syncs, {} batches committed, 0 lost",
            t.seeds, start.elapsed(), t.steps, t.crashes, t.crashes_mid_write, t.torn_writes, t.bit_flips, t.replicas_flipped, t.damaged_recoveries, t.partitions, t.messages, t.dropped, t.syncs, t.committed_batches
        );
        t
    });
    assert!(
        t.seeds >= seeds.min(1000),
        "only {} seeds ran within {budget:?}: the machine is too slow for a meaningful run",
        t.seeds
    );
    assert!(t.crashes > t.seeds, "crashes are exercised");
    assert!(t.committed_batches > t.seeds * 20, "too little progress");
}

#[test]
fn replay() {
    let Some(seed) = std::env::var("RILL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let t = run(move || run_seed(seed, 300, None, None));
    println!(
        "seed {seed}: ok, {} batches committed, {} crashes",
        t.committed_batches, t.crashes
    );
}

/// The first seed at which the checks catch the bug, and what they said.
fn caught(bug: Option<Bug>, driver_bug: Option<DriverBug>, seeds: u64) -> Option<(u64, String)> {
    // One bug hunt at a time: they share FAILURE.
    static HUNT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = HUNT.lock().unwrap_or_else(|e| e.into_inner());
    (1..=seeds).find_map(|seed| {
        *FAILURE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let failed =
            std::panic::catch_unwind(|| run(move || run_seed(seed, 300, bug, driver_bug))).is_err();
        let what = FAILURE.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (failed, what) {
            (false, _) => None,
            (true, Some(what)) => Some((seed, what)),
            (true, None) => panic!("seed {seed} panicked outside the checks"),
        }
    })
}

#[test]
fn keeping_a_divergent_suffix_is_caught() {
    let (seed, what) = caught(None, Some(DriverBug::KeepDivergentSuffix), 300)
        .expect("keeping a divergent suffix was not caught in 300 seeds");
    println!("caught at seed {seed}: {what}");
}

#[test]
fn acknowledging_before_persisting_is_caught() {
    let (seed, what) = caught(None, Some(DriverBug::AckBeforePersist), 600)
        .expect("acknowledging before persisting was not caught in 600 seeds");
    println!("caught at seed {seed}: {what}");
}

/// Two brokers; partitions start with broker 1 as their only voter and
/// grow by membership changes — control batches in the partition logs — to
/// voters {1, 2}. Both brokers restart and read the membership back from
/// their logs; on a healthy network the leader then keeps leading.
async fn grown_partitions_keep_their_leader(bug: Option<Bug>) -> Result<(), String> {
    let mut sim = Sim::new(7, 2, 2, Faults::none(), bug, None, vec![1]).await;
    let groups = sim.groups.clone();
    for _ in 0..100 {
        sim.step(false).await;
    }
    for change in [ConfChange::AddLearner(2), ConfChange::Promote(2)] {
        for &g in &groups {
            let leader = sim.leader_of(g).ok_or("no leader")?;
            sim.driver(leader, g)
                .node_mut()
                .propose_conf_change(change)
                .map_err(|e| format!("{change:?}: {e:?}"))?;
            sim.process(leader, g).await;
        }
        for _ in 0..100 {
            sim.step(false).await;
        }
    }
    // A clean restart of both: everything synced is kept.
    for id in [1, 2] {
        sim.crash(id);
    }
    sim.restart_down().await;
    for &g in &groups {
        for id in [1u64, 2] {
            let m = sim.driver(id, g).node().membership().clone();
            if m.voters != BTreeSet::from([1, 2]) {
                return Err(format!(
                    "broker {id} group {g} read back voters {:?}",
                    m.voters
                ));
            }
        }
    }
    for _ in 0..100 {
        sim.step(false).await;
    }
    let leaders: Vec<(Option<u64>, u64)> = groups
        .iter()
        .map(|&g| {
            let l = sim.leader_of(g);
            (
                l,
                l.map_or(0, |l| {
                    sim.brokers[&l].replicas.as_ref().expect("live")[&g]
                        .node()
                        .term()
                }),
            )
        })
        .collect();
    for _ in 0..500 {
        sim.step(false).await;
        for (&g, &(l, term)) in groups.iter().zip(&leaders) {
            let now = sim.leader_of(g);
            let t = now.map_or(0, |x| {
                sim.brokers[&x].replicas.as_ref().expect("live")[&g]
                    .node()
                    .term()
            });
            if l.is_none() {
                return Err(format!("group {g}: no leader after the restart"));
            }
            if now != l || t != term {
                return Err(format!(
                    "group {g}: leader {l:?} of term {term} became {now:?} of term {t}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn grown_partitions_keep_their_leader_through_restarts() {
    run(|| grown_partitions_keep_their_leader(None)).expect("the grown group is stable");
}

#[test]
fn check_quorum_over_the_initial_voters_is_caught() {
    let e = run(|| grown_partitions_keep_their_leader(Some(Bug::CheckQuorumInitialVoters)))
        .expect_err("check-quorum over the initial voters was not caught");
    assert!(
        e.contains("became") || e.contains("no leader"),
        "caught for another reason: {e}"
    );
    println!("caught: {e}");
}

#[test]
fn voting_after_damage_is_caught() {
    let (seed, what) = caught(Some(Bug::VoteAfterDamage), None, 600)
        .expect("voting right after losing acknowledged entries was not caught in 600 seeds");
    println!("caught at seed {seed}: {what}");
}
