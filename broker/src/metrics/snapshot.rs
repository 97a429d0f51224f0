//! What a scrape takes from one shard: its counters and the gauges of what
//! it owns, copied on the shard's own thread into plain data that can
//! cross to the admin thread.

use rill_storage::sync_stats::{self, Histogram};

use super::counters::{ApiCounters, CleanerTotals, TopicTraffic};
use crate::shard::Shard;

/// One partition's log, as a scrape sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionGauges {
    pub topic: String,
    pub partition: i32,
    pub log_start: i64,
    pub log_end: i64,
    pub high_watermark: i64,
    pub segments: u64,
    pub bytes: u64,
    /// A compacted partition's clean point; `None` if it is not compacted.
    pub cleaned_to: Option<i64>,
}

/// One consumer group this shard coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupGauges {
    pub group: String,
    /// Kafka's name of the state (classic and KIP-848 groups alike).
    pub state: &'static str,
    pub protocol: &'static str,
    pub members: u64,
    /// Committed offsets: topic, partition, offset.
    pub committed: Vec<(String, i32, i64)>,
}

/// Everything one shard reports to a scrape.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub apis: Vec<ApiCounters>,
    pub errors: Vec<((i16, i16), u64)>,
    pub topics: Vec<(String, TopicTraffic)>,
    pub connections_accepted: u64,
    pub connections_open: u64,
    /// Partitions the metadata places on this shard that are not open.
    pub partitions_unopened: u64,
    /// Partitions serving from the clean-stop record, their logs not open yet.
    pub partitions_dormant: u64,
    pub partitions: Vec<PartitionGauges>,
    pub groups: Vec<GroupGauges>,
    /// Sync latencies, in [`sync_stats::SyncKind::ALL`] order.
    pub syncs: [Histogram; 3],
    pub journal_steps: u64,
    pub journal_bytes: u64,
    /// The size the shard journal makes its files at now (0 without one).
    pub journal_file_bytes: u64,
    /// Bytes prepared by read-ahead for catch-up readers.
    pub read_ahead_bytes: u64,
    /// How reads past the cache were served (read ahead or not).
    pub read_ahead: rill_storage::read_ahead::Outcomes,
    /// Partition files open on this shard, and how many it may hold.
    pub open_files: u64,
    pub open_files_budget: u64,
    /// Memory: recent batches cached for readers, write buffers held.
    pub read_cache_bytes: u64,
    pub write_buffer_bytes: u64,
    /// Idempotent producer ids the shard's partitions remember.
    pub producer_ids: u64,
    /// Time the shard spent running tasks since it started.
    pub busy_seconds: f64,
    /// CPU time of the shard's thread (user and system: the kernel's part of
    /// the I/O it submits counts here, not in `busy_seconds`).
    pub cpu_seconds: f64,
    /// What the compaction cleaner did on this shard.
    pub cleaner: CleanerTotals,
}

impl Shard {
    /// This shard's snapshot for a scrape (on the shard's thread; takes no
    /// lock another task could hold across an await).
    pub fn metrics_snapshot(&self) -> ShardSnapshot {
        let c = &self.counters;
        let (mut read_cache_bytes, mut producer_ids, mut dormant) = (0u64, 0u64, 0u64);
        let partitions = self
            .partitions_snapshot()
            .into_iter()
            .map(|((topic, partition), p)| {
                read_cache_bytes += p.cache_bytes() as u64;
                producer_ids += p.producer_count() as u64;
                dormant += u64::from(!p.is_open());
                let (segments, bytes) = p.disk_usage();
                PartitionGauges {
                    topic,
                    partition,
                    log_start: p.log_start_offset(),
                    log_end: p.log_end_offset(),
                    high_watermark: p.high_watermark(),
                    segments: segments as u64,
                    bytes,
                    cleaned_to: p.cleaned_to(),
                }
            })
            .collect();
        let groups = self
            .groups
            .groups
            .borrow()
            .values()
            .map(|g| {
                let (state, protocol, members) = match &g.consumer {
                    Some(cg) => (cg.state().name(), "consumer", cg.members.len()),
                    None => (g.state.name(), "classic", g.members.len()),
                };
                GroupGauges {
                    group: g.id.clone(),
                    state,
                    protocol,
                    members: members as u64,
                    committed: g
                        .offsets
                        .iter()
                        .map(|((t, p), c)| (t.clone(), *p, c.offset))
                        .collect(),
                }
            })
            .collect();
        let (journal_steps, journal_bytes, journal_file_bytes) =
            self.journal().map_or((0, 0, 0), |j| {
                let s = j.stats();
                (s.steps, s.bytes, s.file_bytes)
            });
        let open_files = rill_storage::open_files::stats().open;
        let open_files_budget = rill_storage::open_files::budget_share();
        // Every topic has its traffic series from its creation on, at zero
        // until used: a counter first seen at N shows no rate for those N.
        let mut topics = c.topics();
        if self.id == 0 {
            for name in self.meta().topics.keys() {
                if !topics.iter().any(|(t, _)| t == name) {
                    topics.push((name.clone(), Default::default()));
                }
            }
        }
        ShardSnapshot {
            shard: self.id,
            apis: c.apis(),
            errors: c.errors(),
            topics,
            connections_accepted: c.connections_accepted.get(),
            connections_open: c.connections_open.get(),
            partitions_unopened: self.unopened_partitions() as u64,
            partitions_dormant: dormant,
            partitions,
            groups,
            syncs: sync_stats::snapshot(),
            journal_steps,
            journal_bytes,
            journal_file_bytes,
            read_ahead_bytes: rill_storage::read_ahead::held_bytes() as u64,
            read_ahead: rill_storage::read_ahead::outcomes(),
            open_files: open_files as u64,
            open_files_budget: open_files_budget as u64,
            read_cache_bytes,
            write_buffer_bytes: rill_storage::appender::write_buffer_bytes() as u64,
            producer_ids,
            busy_seconds: c.busy().as_secs_f64(),
            cpu_seconds: thread_cpu_seconds(),
            cleaner: c.cleaner.get(),
        }
    }
}

/// User and system CPU time of the calling thread.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}
