//! Counters and HDR latency histograms shared by the load tasks, and the
//! summaries taken from them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// A histogram for the whole measured phase and one for the current second.
pub struct Latencies {
    inner: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            inner: Mutex::new((histogram(), histogram())),
        }
    }
}

impl Latencies {
    /// Records `us`; into the whole-run histogram only when `measured`.
    pub fn record(&self, us: u64, measured: bool) {
        let v = us.clamp(1, 600_000_000);
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if measured {
            h.0.saturating_record(v);
        }
        h.1.saturating_record(v);
    }

    /// Records several `(us, measured)` values under one lock.
    pub fn record_all(&self, values: &[(u64, bool)]) {
        if values.is_empty() {
            return;
        }
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &(us, measured) in values {
            let v = us.clamp(1, 600_000_000);
            if measured {
                h.0.saturating_record(v);
            }
            h.1.saturating_record(v);
        }
    }

    /// p99 of the values since the last call, in ms (None if none).
    pub fn take_interval_p99_ms(&self) -> Option<f64> {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let p = (!h.1.is_empty()).then(|| h.1.value_at_quantile(0.99) as f64 / 1000.0);
        h.1.reset();
        p
    }

    pub fn whole(&self) -> Histogram<u64> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

/// Counters of one direction (produce or consume).
#[derive(Default)]
pub struct Flow {
    /// Every message and byte, warm-up included.
    pub all_msgs: AtomicU64,
    pub all_bytes: AtomicU64,
    /// Measured-phase messages and bytes.
    pub msgs: AtomicU64,
    pub bytes: AtomicU64,
}

impl Flow {
    pub fn add(&self, bytes: usize, measured: bool) {
        self.all_msgs.fetch_add(1, Ordering::Relaxed);
        self.all_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        if measured {
            self.msgs.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}

/// What one task saw since it last reported: counted and recorded in
/// [`RunStats`] together, one lock and a few atomic additions per batch of
/// messages rather than per message.
#[derive(Default)]
pub struct Tally {
    latencies: Vec<(u64, bool)>,
    msgs: u64,
    bytes: u64,
    measured_msgs: u64,
    measured_bytes: u64,
}

impl Tally {
    pub fn add(&mut self, bytes: usize, latency_us: u64, measured: bool) {
        self.latencies.push((latency_us, measured));
        self.count(bytes, measured);
    }

    /// Counts a message without a latency.
    pub fn count(&mut self, bytes: usize, measured: bool) {
        self.msgs += 1;
        self.bytes += bytes as u64;
        if measured {
            self.measured_msgs += 1;
            self.measured_bytes += bytes as u64;
        }
    }

    pub fn len(&self) -> usize {
        self.latencies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latencies.is_empty()
    }

    /// Moves what was seen into `flow` and `latencies`.
    pub fn report(&mut self, flow: &Flow, latencies: &Latencies) {
        if self.msgs > 0 {
            flow.all_msgs.fetch_add(self.msgs, Ordering::Relaxed);
            flow.all_bytes.fetch_add(self.bytes, Ordering::Relaxed);
            flow.msgs.fetch_add(self.measured_msgs, Ordering::Relaxed);
            flow.bytes.fetch_add(self.measured_bytes, Ordering::Relaxed);
        }
        latencies.record_all(&self.latencies);
        self.latencies.clear();
        self.msgs = 0;
        self.bytes = 0;
        self.measured_msgs = 0;
        self.measured_bytes = 0;
    }
}

/// Everything the tasks of one run report into.
#[derive(Default)]
pub struct RunStats {
    pub produced: Flow,
    /// Over all subscriptions.
    pub consumed: Flow,
    pub publish: Latencies,
    pub end_to_end: Latencies,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl RunStats {
    pub fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
    /// (percentile, ms) from 0 to 99.999, for the percentile curve.
    pub curve: Vec<(f64, f64)>,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        let ms = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        // Evenly spaced in "nines": 0, 50, 75, 87.5, … up to 99.999.
        let mut curve = Vec::new();
        let mut q = 0.0f64;
        while q < 0.99999 {
            curve.push((q * 100.0, ms(q)));
            q = 1.0 - (1.0 - q) / 2f64.powf(0.25);
        }
        curve.push((99.999, ms(0.99999)));
        curve.push((100.0, h.max() as f64 / 1000.0));
        LatencySummary {
            count: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            p9999_ms: ms(0.9999),
            max_ms: h.max() as f64 / 1000.0,
            curve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let l = Latencies::default();
        for us in 1..=100_000u64 {
            l.record(us, true);
        }
        l.record(5, false); // warm-up: not in the summary
        let s = LatencySummary::of(&l.whole());
        assert_eq!(s.count, 100_000);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{}", s.p50_ms);
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{}", s.p99_ms);
        assert!((s.max_ms - 100.0).abs() < 0.1);
        assert!(s
            .curve
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(l.take_interval_p99_ms().is_some());
        assert!(l.take_interval_p99_ms().is_none(), "the interval restarts");
    }
}
