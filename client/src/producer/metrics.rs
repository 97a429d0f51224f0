//! What a producer's Produce requests did: counters the sender keeps, read
//! as a [`ProducerMetrics`] snapshot. Rates and means come from two
//! snapshots (see [`ProducerMetrics::since`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::accumulator::{Batch, Payload, Tp};

/// A producer's Produce requests since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerMetrics {
    /// Requests written to a broker.
    pub requests: u64,
    /// Requests answered (or failed) since.
    pub answered: u64,
    /// Record batches the written requests carried (one per partition).
    pub batches: u64,
    /// Bytes of those batches, as encoded.
    pub bytes: u64,
    /// Round trips of the answered requests, summed: from the request
    /// written to its answer read.
    pub round_trip_total: Duration,
    /// The longest round trip.
    pub round_trip_max: Duration,
}

impl ProducerMetrics {
    /// Requests written and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.requests.saturating_sub(self.answered)
    }

    /// What happened between `earlier` and this snapshot (`round_trip_max`
    /// stays the largest since the producer was made).
    pub fn since(&self, earlier: &ProducerMetrics) -> ProducerMetrics {
        ProducerMetrics {
            requests: self.requests - earlier.requests,
            answered: self.answered - earlier.answered,
            batches: self.batches - earlier.batches,
            bytes: self.bytes - earlier.bytes,
            round_trip_total: self.round_trip_total - earlier.round_trip_total,
            round_trip_max: self.round_trip_max,
        }
    }

    /// The mean round trip of the answered requests.
    pub fn round_trip_mean(&self) -> Option<Duration> {
        (self.answered > 0).then(|| self.round_trip_total.div_f64(self.answered as f64))
    }

    /// Adds another producer's figures (a report over several producers).
    pub fn add(&mut self, other: &ProducerMetrics) {
        self.requests += other.requests;
        self.answered += other.answered;
        self.batches += other.batches;
        self.bytes += other.bytes;
        self.round_trip_total += other.round_trip_total;
        self.round_trip_max = self.round_trip_max.max(other.round_trip_max);
    }
}

/// The sender's counters behind [`ProducerMetrics`].
#[derive(Debug, Default)]
pub(super) struct RequestTally {
    requests: AtomicU64,
    answered: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    round_trip_us: AtomicU64,
    round_trip_max_us: AtomicU64,
}

impl RequestTally {
    /// A request carrying `batches` was written; when, for its round trip.
    pub(super) fn started(&self, batches: &[(Tp, Batch)]) -> Instant {
        let bytes: usize = batches
            .iter()
            .map(|(_, b)| match &b.payload {
                Payload::Encoded(bytes) => bytes.len(),
                Payload::Building(_) => 0,
            })
            .sum();
        self.requests.fetch_add(1, Relaxed);
        self.batches.fetch_add(batches.len() as u64, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        Instant::now()
    }

    /// A request's answer arrived (or it failed) `round_trip` after it was
    /// written.
    pub(super) fn answered(&self, round_trip: Duration) {
        let us = round_trip.as_micros() as u64;
        self.round_trip_us.fetch_add(us, Relaxed);
        self.round_trip_max_us.fetch_max(us, Relaxed);
        self.answered.fetch_add(1, Relaxed);
    }

    /// The counters now (each read on its own: a request being answered
    /// meanwhile may show in some and not yet in others).
    pub(super) fn snapshot(&self) -> ProducerMetrics {
        ProducerMetrics {
            requests: self.requests.load(Relaxed),
            answered: self.answered.load(Relaxed),
            batches: self.batches.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            round_trip_total: Duration::from_micros(self.round_trip_us.load(Relaxed)),
            round_trip_max: Duration::from_micros(self.round_trip_max_us.load(Relaxed)),
        }
    }
}
