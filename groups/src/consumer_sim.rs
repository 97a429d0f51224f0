//! A seeded simulation of one group under the KIP-848 consumer protocol:
//! clients that behave like rill-client and librdkafka (one heartbeat in
//! flight, reconcile on the answer — give up what the target dropped,
//! sometimes only a few steps later, take up what is new — report what they
//! own, rejoin at epoch 0 when fenced) with heterogeneous subscriptions
//! (names and a regex), while clients crash, restart (some static, with
//! `group.instance.id`), leave, stall past their session (zombies that
//! must be fenced), answers are late or lost, a topic grows,
//! and the coordinator fails over (the group is recorded and restored, as
//! a new coordinator replays it). Checked at every step:
//! - the group epoch never falls; no partition is held by two members in
//!   the coordinator's view (assigned or being revoked);
//! - no two clients that could commit right now (the coordinator accepts
//!   their id and epoch) hold the same partition;
//! - a client only holds partitions the coordinator gave it.
//!
//! Once the faults stop (some crashed clients never return: their sessions
//! must run out) the group must settle within a bound: Stable, every live
//! client a member, every subscribed partition owned by exactly one,
//! clients holding what the coordinator says. Replays with
//! `RILL_CONSUMER_SIM_SEED`; `RILL_SIM_TRACE=1` prints every heartbeat and
//! fault.
//!
//! What it found: a client must report as owned what it was given but has
//! not taken up yet. A client that reported only what it held, while a
//! slow reconciliation was still to take up an earlier assignment, let the
//! coordinator treat those partitions as released and hand them to another
//! member; the late take-up then gave them two owners. rill-client claims
//! them (`kip848::State::request`).

use std::collections::{BTreeMap, BTreeSet};

use rand::{rngs::StdRng, Rng, SeedableRng};
use rill_net::kafka_protocol::ResponseError;
use uuid::Uuid;

use super::assignor::Partitions;
use super::consumer::test_image::Image;
use super::consumer::*;

const SESSION_MS: i32 = 3_000;
const REBALANCE_MS: i32 = 4_000;
const HEARTBEAT_MS: i64 = 300;
const STEP_MS: i64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not in the group; joins at its next heartbeat.
    Out,
    In,
    /// Crashed: sends nothing, ignores answers.
    Dead,
}

#[derive(Debug, Clone)]
enum Sub {
    Topics(Vec<String>),
    Regex(String),
}

struct Client {
    id: String,
    instance: Option<String>,
    sub: Sub,
    phase: Phase,
    epoch: i32,
    owned: Partitions,
    /// The newest target not yet reconciled; a slow client gives up its
    /// revoked partitions only at `reconcile_at`.
    target: Option<Partitions>,
    reconcile_at: i64,
    next_heartbeat: i64,
    /// An answer on its way: (deliver at, incarnation, answer).
    in_flight: Option<(i64, u32, Result<HeartbeatReply, ResponseError>)>,
    /// Incarnation: answers to an older one are ignored.
    life: u32,
    /// The member epochs it was given, to check they only grow.
    last_epoch_seen: i32,
    /// Stalled (a long GC pause, a network partition): sends and hears
    /// nothing until then, holding what it owns — a zombie once its
    /// session runs out.
    paused_until: i64,
}

struct Sim {
    rng: StdRng,
    group: ConsumerGroup,
    image: Image,
    limits: ConsumerLimits,
    clients: Vec<Client>,
    now: i64,
    max_group_epoch: i32,
    seed: u64,
    faults: bool,
    tally: Tally,
}

/// What happened over the runs, printed at the end.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    crashes: u64,
    restarts: u64,
    leaves: u64,
    failovers: u64,
    grown: u64,
    fenced: u64,
    unreleased_instance: u64,
    revocations: u64,
    lost_answers: u64,
    pauses: u64,
}

fn count(p: &Partitions) -> usize {
    p.values().map(BTreeSet::len).sum()
}

fn is_subset(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .all(|(t, ps)| ps.is_empty() || b.get(t).is_some_and(|q| ps.is_subset(q)))
}

fn minus(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = Partitions::new();
    for (t, ps) in a {
        let rest: BTreeSet<i32> = match b.get(t) {
            Some(q) => ps.difference(q).copied().collect(),
            None => ps.clone(),
        };
        if !rest.is_empty() {
            out.insert(*t, rest);
        }
    }
    out
}

fn intersect(a: &Partitions, b: &Partitions) -> Partitions {
    let mut out = Partitions::new();
    for (t, ps) in a {
        if let Some(q) = b.get(t) {
            let both: BTreeSet<i32> = ps.intersection(q).copied().collect();
            if !both.is_empty() {
                out.insert(*t, both);
            }
        }
    }
    out
}

impl Sim {
    fn fresh_id(&mut self, i: usize) -> String {
        format!("c{i}-{}", self.rng.gen::<u32>())
    }

    /// A crashed client starts again as a new process: a new member id
    /// (a static one keeps its instance id), nothing owned.
    fn restart(&mut self, i: usize) {
        let id = self.fresh_id(i);
        let now = self.now;
        let c = &mut self.clients[i];
        c.id = id;
        c.phase = Phase::Out;
        c.epoch = 0;
        c.owned.clear();
        c.target = None;
        c.last_epoch_seen = 0;
        c.next_heartbeat = now;
    }

    /// The heartbeat a client sends now.
    fn request(&self, c: &Client) -> Heartbeat {
        let (topics, regex) = match &c.sub {
            Sub::Topics(t) => (Some(t.clone()), None),
            Sub::Regex(r) => (None, Some(r.clone())),
        };
        Heartbeat {
            member_id: c.id.clone(),
            epoch: c.epoch,
            instance_id: c.instance.clone(),
            rebalance_timeout_ms: REBALANCE_MS,
            topics,
            regex,
            // What it holds and what it was given but has not taken up
            // yet: it may take that up any moment, so it must not be
            // handed to anyone else meanwhile (reporting less than it may
            // hold would let the coordinator think it released it).
            owned: Some(if c.epoch == 0 {
                Partitions::new()
            } else {
                let mut claim = c.owned.clone();
                for (t, ps) in c.target.iter().flatten() {
                    claim.entry(*t).or_default().extend(ps);
                }
                claim
            }),
            client_id: "sim".into(),
            client_host: "/127.0.0.1".into(),
            ..Default::default()
        }
    }

    fn heartbeat(&mut self, i: usize) {
        let hb = self.request(&self.clients[i]);
        let shown = format!(
            "{} e{} owned {:?}",
            hb.member_id,
            hb.epoch,
            hb.owned.as_ref().map(count)
        );
        let answer = self
            .group
            .heartbeat(self.now, hb, &self.image, &self.limits)
            .map(|(reply, _)| reply)
            .map_err(|e| e.error);
        let delay = if self.faults {
            self.rng.gen_range(0..4) * STEP_MS
        } else {
            0
        };
        let lost = self.faults && self.rng.gen_bool(0.05);
        if std::env::var("RILL_SIM_TRACE").is_ok() {
            eprintln!(
                "{} hb {shown} -> {:?} delay {delay} lost {lost}",
                self.now,
                answer
                    .as_ref()
                    .map(|r| (r.epoch, r.assignment.as_ref().map(count)))
            );
        }
        let c = &mut self.clients[i];
        c.next_heartbeat = self.now + HEARTBEAT_MS;
        if lost {
            self.tally.lost_answers += 1;
        } else {
            c.in_flight = Some((self.now + delay, c.life, answer));
        }
    }

    fn leave(&mut self, i: usize) {
        let c = &self.clients[i];
        let hb = Heartbeat {
            member_id: c.id.clone(),
            epoch: if c.instance.is_some() {
                STATIC_LEAVE_EPOCH
            } else {
                LEAVE_EPOCH
            },
            instance_id: c.instance.clone(),
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let _ = self
            .group
            .heartbeat(self.now, hb, &self.image, &self.limits);
        let c = &mut self.clients[i];
        c.phase = Phase::Out;
        c.epoch = 0;
        c.owned.clear();
        c.target = None;
        c.in_flight = None;
        c.life += 1;
        c.next_heartbeat = self.now + self.rng.gen_range(1..20) * STEP_MS;
        c.last_epoch_seen = 0;
        if c.instance.is_none() {
            c.id = format!("c{i}-{}", self.rng.gen::<u32>());
        }
    }

    fn deliver(&mut self, i: usize) {
        let Some((at, life, _)) = &self.clients[i].in_flight else {
            return;
        };
        if *at > self.now {
            return;
        }
        let life = *life;
        let (_, _, answer) = self.clients[i].in_flight.take().expect("in flight");
        let c = &mut self.clients[i];
        if c.phase == Phase::Dead || life != c.life {
            return;
        }
        match answer {
            Ok(reply) => {
                assert_eq!(
                    reply.member_id, c.id,
                    "seed {}: the answer names another member",
                    self.seed
                );
                assert!(
                    reply.epoch >= c.last_epoch_seen,
                    "seed {}: member {} epoch fell from {} to {}",
                    self.seed,
                    c.id,
                    c.last_epoch_seen,
                    reply.epoch
                );
                c.last_epoch_seen = reply.epoch;
                c.phase = Phase::In;
                c.epoch = reply.epoch;
                if let Some(a) = reply.assignment {
                    c.target = Some(a);
                    // Most clients reconcile at once; some take a while.
                    c.reconcile_at = self.now
                        + if self.faults && self.rng.gen_bool(0.2) {
                            self.rng.gen_range(1..30) * STEP_MS
                        } else {
                            0
                        };
                }
            }
            Err(ResponseError::FencedMemberEpoch) | Err(ResponseError::UnknownMemberId) => {
                // Lost: everything goes, rejoin at epoch 0 under the same id.
                self.tally.fenced += 1;
                c.owned.clear();
                c.target = None;
                c.epoch = 0;
                c.last_epoch_seen = 0;
                c.phase = Phase::Out;
                c.next_heartbeat = self.now;
            }
            Err(ResponseError::UnreleasedInstanceId) => {
                self.tally.unreleased_instance += 1;
                c.next_heartbeat = self.now + STEP_MS * 2;
            }
            Err(e) => panic!("seed {}: unexpected answer {e:?} to {}", self.seed, c.id),
        }
    }

    /// A client applies its target: revokes first, takes up what is new,
    /// and heartbeats at once when something changed.
    fn reconcile(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(target) = c.target.clone() else {
            return;
        };
        if c.reconcile_at > self.now {
            return;
        }
        c.target = None;
        let revoked = minus(&c.owned, &target);
        let added = minus(&target, &c.owned);
        if count(&revoked) == 0 && count(&added) == 0 {
            return;
        }
        if count(&revoked) > 0 {
            self.tally.revocations += 1;
        }
        let c = &mut self.clients[i];
        c.owned = intersect(&c.owned, &target);
        for (t, ps) in added {
            c.owned.entry(t).or_default().extend(ps);
        }
        c.next_heartbeat = self.now;
    }

    fn fault(&mut self) {
        let i = self.rng.gen_range(0..self.clients.len());
        let kind = self.rng.gen_range(0..8);
        if std::env::var("RILL_SIM_TRACE").is_ok() {
            eprintln!(
                "{} fault {kind} on {} ({:?})",
                self.now, self.clients[i].id, self.clients[i].phase
            );
        }
        match kind {
            // Crash.
            0 | 1 => {
                self.tally.crashes += 1;
                let c = &mut self.clients[i];
                c.phase = Phase::Dead;
                c.in_flight = None;
                c.life += 1;
            }
            // A crashed client restarts: a static one under its instance id
            // (a new member id, as a new process), a dynamic one anew.
            2 | 3 => {
                if self.clients[i].phase == Phase::Dead {
                    self.tally.restarts += 1;
                    self.restart(i);
                }
            }
            4 => {
                if self.clients[i].phase == Phase::In {
                    self.tally.leaves += 1;
                    self.leave(i);
                }
            }
            // The coordinator moves: the group as recorded, replayed.
            5 => {
                self.tally.failovers += 1;
                let json = serde_json::to_vec(&self.group).expect("serializes");
                let back: ConsumerGroup = serde_json::from_slice(&json).expect("restores");
                self.group = back.restore(self.now, &self.limits);
            }
            // A client stalls, sometimes past its session.
            6 => {
                self.tally.pauses += 1;
                let pause = self.rng.gen_range(10..100) * STEP_MS;
                self.clients[i].paused_until = self.now + pause;
            }
            // A topic grows.
            _ => {
                let b = self.image.topics.get_mut("b").expect("b");
                if b.1 < 12 {
                    self.tally.grown += 1;
                    b.1 += 1;
                    self.image.version += 1;
                }
            }
        }
    }

    fn check(&mut self) {
        let seed = self.seed;
        assert!(
            self.group.epoch >= self.max_group_epoch,
            "seed {seed}: the group epoch fell"
        );
        self.max_group_epoch = self.group.epoch;
        // The coordinator's view: one holder per partition.
        let mut held: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for m in self.group.members.values() {
            for (t, ps) in m.assigned.iter().chain(m.revoking.iter()) {
                for p in ps {
                    if let Some(other) = held.insert((*t, *p), &m.id) {
                        assert_eq!(
                            other, m.id,
                            "seed {seed}: partition {t}-{p} held by {other} and {}",
                            m.id
                        );
                    }
                }
            }
        }
        // Clients the coordinator would take a commit from now.
        let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for c in &self.clients {
            if c.phase != Phase::In || self.group.check_member_epoch(&c.id, c.epoch).is_err() {
                continue;
            }
            let m = &self.group.members[&c.id];
            let mut may_hold = m.assigned.clone();
            for (t, ps) in &m.revoking {
                may_hold.entry(*t).or_default().extend(ps);
            }
            assert!(
                is_subset(&c.owned, &may_hold),
                "seed {seed}: client {} holds {:?}, the coordinator gave it {:?}",
                c.id,
                c.owned,
                may_hold
            );
            for (t, ps) in &c.owned {
                for p in ps {
                    if let Some(other) = owner.insert((*t, *p), &c.id) {
                        panic!(
                            "seed {seed}: {t}-{p} held by committing clients {other} and {}",
                            c.id
                        );
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP_MS;
        for gone in self.group.tick(self.now, &self.image) {
            // The coordinator removed it; the client learns at its next answer.
            let _ = gone;
        }
        for i in 0..self.clients.len() {
            if self.clients[i].phase == Phase::Dead || self.clients[i].paused_until > self.now {
                continue;
            }
            self.deliver(i);
            self.reconcile(i);
            let c = &self.clients[i];
            if c.in_flight.is_none() && c.next_heartbeat <= self.now {
                self.heartbeat(i);
            }
        }
    }

    /// Every live client in the group, Stable, each subscribed partition
    /// owned once, each client holding exactly its assignment.
    fn settled(&self) -> bool {
        let live: Vec<&Client> = self
            .clients
            .iter()
            .filter(|c| c.phase != Phase::Dead)
            .collect();
        if live.is_empty() {
            return self.group.members.is_empty();
        }
        if self.group.state() != ConsumerGroupState::Stable
            || self.group.members.len() != live.len()
        {
            return false;
        }
        let mut all = 0;
        for c in &live {
            let Some(m) = self.group.members.get(&c.id) else {
                return false;
            };
            if c.phase != Phase::In
                || c.epoch != m.epoch
                || c.owned != m.assigned
                || c.target.is_some()
            {
                return false;
            }
            all += count(&c.owned);
        }
        // Every member subscribes to "a" at least (names or the regex),
        // "b" through some: every partition of a subscribed topic is owned.
        let subscribed: usize = self
            .group
            .subscribed
            .values()
            .map(|(_, n)| *n as usize)
            .sum();
        all == subscribed
    }
}

fn run(seed: u64, tally: &mut Tally) -> i64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.gen_range(2..6);
    let subs = [
        Sub::Topics(vec!["a".into()]),
        Sub::Topics(vec!["a".into(), "b".into()]),
        Sub::Regex("a|b".into()),
    ];
    let clients: Vec<Client> = (0..n)
        .map(|i| Client {
            id: format!("c{i}-0"),
            instance: rng.gen_bool(0.4).then(|| format!("static-{i}")),
            sub: subs[rng.gen_range(0..subs.len())].clone(),
            phase: Phase::Out,
            epoch: 0,
            owned: Partitions::new(),
            target: None,
            reconcile_at: 0,
            next_heartbeat: rng.gen_range(0..10) * STEP_MS,
            in_flight: None,
            life: 0,
            last_epoch_seen: 0,
            paused_until: 0,
        })
        .collect();
    let image = Image {
        version: 1,
        topics: [
            ("a".to_string(), (Uuid::from_bytes([1; 16]), 8)),
            ("b".to_string(), (Uuid::from_bytes([2; 16]), 5)),
            ("other".to_string(), (Uuid::from_bytes([3; 16]), 4)),
        ]
        .into(),
    };
    let limits = ConsumerLimits {
        session_timeout_ms: SESSION_MS,
        heartbeat_interval_ms: HEARTBEAT_MS as i32,
        max_members: usize::MAX,
    };
    let mut sim = Sim {
        rng,
        group: ConsumerGroup::new(),
        image,
        limits,
        clients,
        now: 0,
        max_group_epoch: 0,
        seed,
        faults: true,
        tally: *tally,
    };
    for _ in 0..1_200 {
        if sim.rng.gen_bool(0.03) {
            sim.fault();
        }
        sim.step();
        sim.check();
    }
    // Faults stop; some of the dead come back, the others stay dead.
    sim.faults = false;
    for i in 0..sim.clients.len() {
        if sim.clients[i].phase == Phase::Dead && sim.rng.gen_bool(0.5) {
            sim.restart(i);
        }
    }
    let calm = sim.now;
    let bound = (SESSION_MS + REBALANCE_MS) as i64 + 2_000;
    loop {
        sim.step();
        sim.check();
        if sim.settled() {
            *tally = sim.tally;
            return sim.now - calm;
        }
        assert!(
            sim.now - calm < bound,
            "seed {seed}: not settled {bound} ms after the faults stopped: {:?}, {} members for {} live clients",
            sim.group.state(),
            sim.group.members.len(),
            sim.clients.iter().filter(|c| c.phase != Phase::Dead).count()
        );
    }
}

#[test]
fn consumer_groups_settle_and_never_give_a_partition_two_owners() {
    let seeds: Vec<u64> = match std::env::var("RILL_CONSUMER_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("a seed")],
        Err(_) => (0..300).collect(),
    };
    let (mut worst, mut tally) = (0, Tally::default());
    for seed in seeds {
        worst = worst.max(run(seed, &mut tally));
    }
    println!("settled at most {worst} ms after the last fault; {tally:?}");
}
