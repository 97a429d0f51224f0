//! The Raft core alone: entries committed per second on a 3-node in-memory
//! cluster with 16 KiB batches (each batch one entry), and CPU time per
//! committed entry. Messages move instantly and persistence is immediate, so
//! this measures the state machine (and its reads of an in-memory stored
//! log), not I/O.
//!
//! `cargo bench -p rill-raft --bench raft_core`

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use rill_raft::log::MemStorage;
use rill_raft::node::{Config, HardState, Message, Raft, Role};

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn main() {
    let entries: u64 = std::env::var("RILL_BENCH_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let window: u64 = 256;
    let ids = [1u64, 2, 3];
    let disks: Vec<MemStorage> = ids.iter().map(|_| MemStorage::new()).collect();
    let mut nodes: Vec<Raft<MemStorage>> = ids
        .iter()
        .zip(&disks)
        .map(|(&id, disk)| {
            let mut c = Config::new(id, ids);
            c.seed = 7;
            c.inflight_max = 64;
            c.append_bytes_max = 256 << 10;
            Raft::new(c, HardState::default(), disk.clone())
        })
        .collect();
    let mut net: VecDeque<Message> = VecDeque::new();
    let pump = |nodes: &mut Vec<Raft<MemStorage>>, net: &mut VecDeque<Message>| loop {
        for (n, disk) in nodes.iter_mut().zip(&disks) {
            let r = n.take_ready();
            net.extend(r.messages);
            if let Some(t) = r.truncate_after {
                disk.truncate_after(t);
            }
            for e in r.entries.iter() {
                disk.append(e.clone());
            }
            if let Some(e) = r.entries.last() {
                n.persisted(e.end, e.term);
            }
            net.extend(r.persisted_messages);
        }
        let Some(m) = net.pop_front() else { break };
        let to = (m.to - 1) as usize;
        nodes[to].step(m);
    };
    // Elect node 1.
    while nodes[0].role() != Role::Leader {
        nodes[0].tick();
        pump(&mut nodes, &mut net);
    }
    let data = Bytes::from(vec![7u8; 16 << 10]);
    let base = nodes[0].commit();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut proposed = 0;
    while nodes[0].commit() < base + entries * 16 {
        while proposed < entries && (proposed * 16 + base) < nodes[0].commit() + window * 16 {
            nodes[0].propose(data.clone(), 16).expect("leader");
            proposed += 1;
        }
        pump(&mut nodes, &mut net);
        // Keep the in-memory logs bounded: compact what is committed everywhere.
        if proposed % 4096 == 0 {
            let c = nodes.iter().map(|n| n.commit()).min().unwrap();
            for (n, disk) in nodes.iter_mut().zip(&disks) {
                n.compact(c);
                disk.compact_to(c);
            }
        }
    }
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    println!(
        "raft_core: {entries} entries of 16 KiB committed on 3 nodes in {secs:.2} s: {:.0} entries/s, {:.2} µs CPU per committed entry (all three nodes, one thread)",
        entries as f64 / secs,
        cpu / entries as f64 * 1e6
    );
}
