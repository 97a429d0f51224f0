//! The parts of the whole-system simulation that hold no state of it: the
//! seeded random numbers, the transport and clock the drivers get, what a
//! replica holds durably, the fault and total counters, the log config, the
//! producer batches, reading a replica's batches back, the executor.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use rill_raft::driver::{Clock, Transport};
use rill_raft::node::Message;
use rill_record::header::BatchHeader;
use rill_record::{BatchBuilder, Compression};
use rill_replica::ReplicaLog;
use rill_storage::checkpoint::Checkpoint;
use rill_storage::sim_disk::SimDisk;
use rill_storage::{FlushPolicy, LogConfig};

pub const TICK_MS: u64 = 10;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

#[derive(Clone, Default)]
pub struct Outbox(pub Rc<RefCell<Vec<Message>>>);

impl Transport for Outbox {
    fn send(&self, m: Message) {
        self.0.borrow_mut().push(m);
    }
}

#[derive(Clone, Default)]
pub struct SimClock(pub Rc<Cell<u64>>);

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

pub type Replica = ReplicaLog<SimDisk>;
/// A group's committed batches: end offset → (start, epoch, bytes, the
/// term in which the batch was first seen committed).
pub type History = BTreeMap<u64, (u64, u64, Bytes, u64)>;
/// What a replica holds durably: the synced prefix of its log and the
/// leader epochs in it.
#[derive(Clone, Default)]
pub struct Held {
    pub durable_end: u64,
    pub epochs: Vec<(i32, i64)>,
    /// Its saved hard state says it abstains from elections after damage:
    /// what it lost cannot be outvoted with its help, so it counts as a
    /// holder of everything (the safety argument of `abstain_through`).
    pub abstaining: bool,
}

impl Held {
    pub fn of(log: &Replica) -> Held {
        Held {
            durable_end: log.log().durable_offset().max(0) as u64,
            epochs: log.log().leader_epochs(),
            abstaining: log.log().hard_state().abstain_through.is_some(),
        }
    }

    /// Holds the batch ending at `end` written in `epoch`.
    pub fn holds(&self, end: u64, epoch: u64) -> bool {
        self.abstaining
            || end <= self.durable_end
                && self
                    .epochs
                    .iter()
                    .rev()
                    .find(|(_, start)| *start < end as i64)
                    .is_some_and(|(e, _)| *e as u64 == epoch)
    }
}

#[derive(Clone, Copy)]
pub struct Faults {
    pub drop: u64,
    pub dup: u64,
    pub delay_max: u64,
    pub crash: u64,
    pub crash_mid_write: u64,
    pub restart: u64,
    pub partition: u64,
    pub heal: u64,
    /// A bit flipped in a down broker's synced data (one broker at a time).
    pub flip: u64,
}

impl Faults {
    pub fn harsh() -> Faults {
        Faults {
            drop: 50,
            dup: 20,
            delay_max: 5,
            crash: 5,
            crash_mid_write: 5,
            restart: 40,
            partition: 6,
            heal: 25,
            flip: 40,
        }
    }
    pub fn none() -> Faults {
        Faults {
            drop: 0,
            dup: 0,
            delay_max: 1,
            crash: 0,
            crash_mid_write: 0,
            restart: 0,
            partition: 0,
            heal: 0,
            flip: 0,
        }
    }
}

#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub seeds: u64,
    pub steps: u64,
    pub crashes: u64,
    pub crashes_mid_write: u64,
    pub torn_writes: u64,
    pub partitions: u64,
    pub messages: u64,
    pub dropped: u64,
    pub committed_batches: u64,
    pub syncs: u64,
    pub bit_flips: u64,
    /// Replicas flipped while their broker was down (one per down period).
    pub replicas_flipped: u64,
    /// Replicas that found a flip on recovery, cut their log and abstained.
    pub damaged_recoveries: u64,
}

pub fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 << 10,
        write_buffer_bytes: 8 << 10,
        writes_in_flight_max: 2,
        index_interval_bytes: 1024,
        cache_bytes_max: 8 << 10,
        preallocate_bytes: 16 << 10,
        // The driver syncs; the log never flushes on its own.
        flush: FlushPolicy::Always,
        checkpoint_interval_ms: 0,
        ..LogConfig::default()
    }
}

pub fn dir(broker: u64, group: u64) -> String {
    format!("/b{broker}/p{group}")
}

/// A producer's batch of `records` records, its values derived from `id`.
pub fn batch(id: u64, records: u64) -> Bytes {
    let mut b = BatchBuilder::new(256);
    for r in 0..records {
        let v = format!("batch {id} record {r}");
        b.push(
            1_000 + id as i64,
            Some(&id.to_be_bytes()),
            Some(v.as_bytes()),
            &[],
        );
    }
    b.finish(Compression::None).expect("encodes")
}

/// Every batch of a replica's log in `from..to`, as stored.
pub async fn stored(log: &Replica, from: u64, to: u64) -> Vec<(u64, u64, u64, Bytes)> {
    let mut out = Vec::new();
    let mut at = from as i64;
    while at < to as i64 {
        let data = log.log().read(at, 1 << 20).await.expect("readable");
        let mut pos = 0usize;
        let before = at;
        while let Some(len) = data
            .get(pos..)
            .and_then(rill_record::header::peek_total_len)
        {
            let end = pos + len as usize;
            if end > data.len() {
                break;
            }
            let b = data.slice(pos..end);
            pos = end;
            let h = BatchHeader::parse(&b).expect("a stored batch parses");
            if h.next_offset() > at && h.base_offset < to as i64 {
                out.push((
                    h.base_offset as u64,
                    h.next_offset() as u64,
                    h.leader_epoch as u64,
                    b,
                ));
                at = h.next_offset();
            }
        }
        assert!(
            at > before,
            "no progress reading at {at} (wanted to {to}; log end {}, durable {})",
            log.log().log_end_offset(),
            log.log().durable_offset()
        );
    }
    out
}

/// Where a bit flip can land in a replica's synced data that recovery will
/// scan: the CRC-covered part (attributes on) of a batch wholly below the
/// checkpoint's recovery point in the active segment. Returns the file and
/// the CRC-covered ranges. (RecordBatch leaves base offset, length, leader
/// epoch, magic and the CRC itself outside its CRC: a flip there is a
/// different, partly undetectable, fault.)
pub fn flip_targets(disk: &SimDisk, dir: &str) -> Option<(PathBuf, Vec<(u64, u64)>)> {
    let dir = Path::new(dir);
    let checkpoint = disk.contents(&dir.join("checkpoint"))?;
    let c = Checkpoint::newest(&checkpoint)?;
    let active = disk
        .files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .max()?;
    let path = dir.join(format!("{:020}.log", c.recovery_segment));
    if path != active {
        return None;
    }
    let data = disk.contents(&path)?;
    let mut ranges = Vec::new();
    let mut pos = 0usize;
    while let Some(len) = data
        .get(pos..)
        .and_then(rill_record::header::peek_total_len)
    {
        let end = pos + len as usize;
        if len == 0 || end as u64 > c.recovery_position {
            break;
        }
        ranges.push(((pos + 21) as u64, end as u64));
        pos = end;
    }
    Some((path, ranges))
}

/// Runs `f` on a glommio executor (the partition log's home) on this thread.
pub fn run<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("start executor")
        .join()
        .expect("executor thread")
}

pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
