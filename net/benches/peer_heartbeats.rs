//! Heartbeats of 10,000 Raft groups between two brokers through the peer
//! protocol: every group's leader is on node 1, its follower on node 2; each
//! round ticks all 20,000 replicas, puts each direction's messages in one
//! frame, decodes it on the other side and steps every message into its
//! group. Reports messages/s and bytes/s of the idle-cluster traffic (after
//! the elections), and the bytes a heartbeat costs on the wire — the number
//! coalescing (Redpanda's lightweight heartbeats: group ids only while
//! nothing changed) would cut.
//!
//! `cargo bench -p rill-net --bench peer_heartbeats` (`RILL_BENCH_GROUPS`,
//! `RILL_BENCH_ROUNDS` to change the size).

use std::collections::BTreeMap;
use std::time::Instant;

use rill_net::peer::{decode_frame, encode_frame};
use rill_raft::log::MemStorage;
use rill_raft::node::{Config, HardState, Message, Raft, Role};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// One broker's replicas, by group.
struct Node {
    id: u64,
    groups: BTreeMap<u64, (Raft<MemStorage>, MemStorage)>,
}

impl Node {
    fn new(id: u64, groups: u64, election_ticks: u32) -> Node {
        let groups = (0..groups)
            .map(|g| {
                let mut c = Config::new(id, [1, 2]);
                c.group = g;
                c.seed = g;
                c.election_ticks = election_ticks;
                c.heartbeat_ticks = 2;
                let disk = MemStorage::new();
                (g, (Raft::new(c, HardState::default(), disk.clone()), disk))
            })
            .collect();
        Node { id, groups }
    }

    /// Ticks every group (if `tick`), and returns what they send, with
    /// persistence immediate (this measures the protocol, not the disk).
    fn round(&mut self, tick: bool) -> Vec<Message> {
        let mut out = Vec::new();
        for (raft, disk) in self.groups.values_mut() {
            if tick {
                raft.tick();
            }
            let ready = raft.take_ready();
            for e in &ready.entries {
                disk.append(e.clone());
            }
            if let Some(e) = ready.entries.last() {
                raft.persisted(e.end, e.term);
            }
            out.extend(ready.messages);
            out.extend(ready.persisted_messages);
        }
        out
    }

    fn deliver(&mut self, messages: Vec<Message>) {
        for m in messages {
            debug_assert_eq!(m.to, self.id);
            self.groups
                .get_mut(&m.group)
                .expect("a known group")
                .0
                .step(m);
        }
    }
}

fn main() {
    let groups = env("RILL_BENCH_GROUPS", 10_000);
    let rounds = env("RILL_BENCH_ROUNDS", 200);
    let mut one = Node::new(1, groups, 10);
    // Node 2 never campaigns: every leader is on node 1.
    let mut two = Node::new(2, groups, 1_000_000);
    let exchange = |one: &mut Node, two: &mut Node, tick: bool| -> (u64, u64) {
        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut to_two = one.round(tick);
        let mut to_one = two.round(tick);
        // Answers travel in the same round until both sides are quiet.
        while !to_two.is_empty() || !to_one.is_empty() {
            for (batch, dest) in [
                (std::mem::take(&mut to_two), 2u64),
                (std::mem::take(&mut to_one), 1),
            ] {
                if batch.is_empty() {
                    continue;
                }
                messages += batch.len() as u64;
                let frame = encode_frame("bench", &batch);
                bytes += frame.len() as u64;
                let got = decode_frame("bench", frame).expect("a frame we wrote");
                if dest == 2 {
                    two.deliver(got);
                } else {
                    one.deliver(got);
                }
            }
            to_two = one.round(false);
            to_one = two.round(false);
        }
        (messages, bytes)
    };
    let started = Instant::now();
    while one.groups.values().any(|(r, _)| r.role() != Role::Leader) {
        exchange(&mut one, &mut two, true);
        assert!(
            started.elapsed().as_secs() < 120,
            "elections did not finish"
        );
    }
    println!(
        "{groups} groups elected their leaders on node 1 in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    for _ in 0..rounds {
        let (m, b) = exchange(&mut one, &mut two, true);
        messages += m;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{rounds} ticks, heartbeat every 2: {messages} messages, {bytes} bytes in {secs:.2} s"
    );
    println!(
        "  {:.0} messages/s, {:.1} MB/s, {:.1} bytes per message on the wire, {:.0} ticks/s of all {} groups",
        messages as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / messages.max(1) as f64,
        rounds as f64 / secs,
        groups
    );
}
