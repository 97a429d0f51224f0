//! What a shard counts while it serves: plain cells owned by the shard's
//! thread (no atomics, no locks on the request path), read only when a
//! scrape asks the shard for a [`ShardSnapshot`](super::ShardSnapshot).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

pub use rill_storage::sync_stats::{Histogram, LATENCY_BUCKETS_US};

/// Highest Kafka API key a shard keeps counters for (ApiKey values are
/// small and dense; an unknown key is not counted).
pub const API_KEYS: usize = 96;

/// Requests of one API: how many, and how long each took from decoding to
/// its answer being ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiCounters {
    pub requests: u64,
    pub latency: Histogram,
}

/// Traffic of one topic through this shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicTraffic {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

impl TopicTraffic {
    pub fn merge(&mut self, o: &TopicTraffic) {
        self.bytes_in += o.bytes_in;
        self.records_in += o.records_in;
        self.bytes_out += o.bytes_out;
        self.records_out += o.records_out;
    }
}

/// What the compaction cleaner did on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerTotals {
    pub passes: u64,
    pub segments_read: u64,
    pub segments_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
}

impl CleanerTotals {
    pub fn add(&mut self, o: &rill_storage::log::CleanOutcome) {
        self.passes += 1;
        self.segments_read += o.segments_read as u64;
        self.segments_written += o.segments_written as u64;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.records_removed += o.records_removed;
    }

    pub fn merge(&mut self, o: &CleanerTotals) {
        self.passes += o.passes;
        self.segments_read += o.segments_read;
        self.segments_written += o.segments_written;
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.records_removed += o.records_removed;
    }
}

/// One shard's counters.
#[derive(Debug)]
pub struct ShardCounters {
    apis: RefCell<Vec<ApiCounters>>,
    /// (API key, error code) → answers carrying that code (per partition,
    /// topic or group where the answer has one per item).
    errors: RefCell<HashMap<(i16, i16), u64>>,
    topics: RefCell<HashMap<String, TopicTraffic>>,
    pub connections_accepted: Cell<u64>,
    pub connections_open: Cell<u64>,
    /// Time the shard's executor spent running tasks, summed from
    /// glommio's statistics (which reset each time they are read).
    busy: Cell<Duration>,
    pub cleaner: Cell<CleanerTotals>,
}

impl Default for ShardCounters {
    fn default() -> Self {
        ShardCounters {
            apis: RefCell::new(vec![ApiCounters::default(); API_KEYS]),
            errors: RefCell::default(),
            topics: RefCell::default(),
            connections_accepted: Cell::new(0),
            connections_open: Cell::new(0),
            busy: Cell::new(Duration::ZERO),
            cleaner: Cell::default(),
        }
    }
}

impl ShardCounters {
    pub fn request_done(&self, api_key: i16, elapsed: Duration) {
        if let Some(a) = self.apis.borrow_mut().get_mut(api_key as usize) {
            a.requests += 1;
            a.latency.record(elapsed);
        }
    }

    pub fn error(&self, api_key: i16, code: i16) {
        *self.errors.borrow_mut().entry((api_key, code)).or_default() += 1;
    }

    /// Batches appended to `topic` (a topic seen before costs no allocation).
    pub fn produced(&self, topic: &str, bytes: u64, records: u64) {
        self.traffic(topic, |t| {
            t.bytes_in += bytes;
            t.records_in += records;
        });
    }

    /// Batches sent to consumers (or followers) from `topic`.
    pub fn fetched(&self, topic: &str, bytes: u64, records: u64) {
        self.traffic(topic, |t| {
            t.bytes_out += bytes;
            t.records_out += records;
        });
    }

    fn traffic(&self, topic: &str, f: impl FnOnce(&mut TopicTraffic)) {
        let mut topics = self.topics.borrow_mut();
        match topics.get_mut(topic) {
            Some(t) => f(t),
            None => f(topics.entry(topic.to_string()).or_default()),
        }
    }

    /// A cleaner pass that rewrote segments.
    pub fn cleaned(&self, o: &rill_storage::log::CleanOutcome) {
        let mut t = self.cleaner.get();
        t.add(o);
        self.cleaner.set(t);
    }

    /// Forgets a deleted topic's traffic, so series do not outlive it.
    pub fn forget_topic(&self, topic: &str) {
        self.topics.borrow_mut().remove(topic);
    }

    /// The shard's busy time so far (call on the shard's thread).
    pub fn busy(&self) -> Duration {
        let run = glommio::executor().executor_stats().total_runtime();
        self.busy.set(self.busy.get() + run);
        self.busy.get()
    }

    pub fn apis(&self) -> Vec<ApiCounters> {
        self.apis.borrow().clone()
    }

    pub fn errors(&self) -> Vec<((i16, i16), u64)> {
        self.errors.borrow().iter().map(|(k, v)| (*k, *v)).collect()
    }

    pub fn topics(&self) -> Vec<(String, TopicTraffic)> {
        self.topics
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Records in a run of v2 record batches (each batch's header says how
/// many it holds); stops at anything that is not a whole batch.
pub fn records_in_batches(mut data: &[u8]) -> u64 {
    const LENGTH_AT: usize = 8;
    const COUNT_AT: usize = 57;
    let mut records = 0u64;
    while data.len() >= COUNT_AT + 4 {
        let len = i32::from_be_bytes(data[LENGTH_AT..LENGTH_AT + 4].try_into().expect("4"));
        let total = 12 + len.max(0) as usize;
        if total < COUNT_AT + 4 || total > data.len() {
            break;
        }
        let count = i32::from_be_bytes(data[COUNT_AT..COUNT_AT + 4].try_into().expect("4"));
        records += count.max(0) as u64;
        data = &data[total..];
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_from_batch_headers() {
        let mut data = Vec::new();
        for count in [3i32, 5] {
            let mut b = vec![0u8; 61 + 10];
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            data.extend_from_slice(&b);
        }
        assert_eq!(records_in_batches(&data), 8);
        // A cut batch at the end (a fetch answer may end in one) is not counted.
        assert_eq!(records_in_batches(&data[..data.len() - 1]), 3);
    }
}
