//! How long the syncs that make data durable take: per shard (a
//! thread-local of the shard's thread, no atomics), by kind, read by the
//! broker's metrics at scrape time.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Upper bounds of the latency histograms' buckets, in microseconds (0.5 ms
/// to 10 s); a last bucket counts everything slower.
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram: per bucket (not cumulative), then the total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }
}

/// What was synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// A shard journal's step (write, then `fdatasync`).
    Journal,
    /// One log's segment (`fdatasync`).
    Segment,
    /// A whole filesystem (`syncfs`: a retiring journal file, a stop).
    Filesystem,
}

impl SyncKind {
    pub const ALL: [SyncKind; 3] = [SyncKind::Journal, SyncKind::Segment, SyncKind::Filesystem];

    pub fn name(self) -> &'static str {
        match self {
            SyncKind::Journal => "journal",
            SyncKind::Segment => "segment",
            SyncKind::Filesystem => "filesystem",
        }
    }
}

thread_local! {
    static SYNCS: RefCell<[Histogram; 3]> = RefCell::default();
}

/// Records a sync of `kind` that started at `started`.
pub fn record(kind: SyncKind, started: Instant) {
    SYNCS.with(|s| s.borrow_mut()[kind as usize].record(started.elapsed()));
}

/// This thread's sync latencies so far, in [`SyncKind::ALL`] order.
pub fn snapshot() -> [Histogram; 3] {
    SYNCS.with(|s| s.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_falls_in_the_first_bucket_that_holds_it() {
        let mut h = Histogram::default();
        h.record(Duration::from_micros(500)); // on the bound: that bucket
        h.record(Duration::from_micros(501));
        h.record(Duration::from_secs(60)); // beyond the last bound
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[LATENCY_BUCKETS_US.len()], 1);
        assert_eq!((h.count, h.sum_us), (3, 60_001_001));
    }
}
