//! Per-partition log settings. Names carry their unit last.

use std::time::Duration;

/// When appended data is made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// `append` resolves only after its batch is on stable storage. Concurrent
    /// appends share one `fdatasync` (group commit).
    Always,
    /// `append` resolves once the batch is in the write buffer; a timer makes
    /// everything durable every interval.
    Interval(Duration),
}

/// How a compacted log (`cleanup.policy=compact`) is cleaned; see
/// [`crate::compaction`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompactionConfig {
    /// Clean once this share of the cleanable bytes is not yet cleaned
    /// (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// A segment whose newest record is younger than this is not cleaned
    /// (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: u64,
    /// A record uncleaned for this long is cleaned whatever the dirty ratio,
    /// and the active segment rolls at this age (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: u64,
    /// A delete marker (null value) stays this long after its segment was
    /// first cleaned (`delete.retention.ms`).
    pub delete_retention_ms: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX as u64,
            delete_retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// Settings of one partition log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Roll the active segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment once it is this old (and not empty).
    pub segment_ms: u64,
    /// Delete closed segments whose newest record is older than this; `None` keeps forever.
    pub retention_ms: Option<u64>,
    /// Delete the oldest closed segments while the log is larger than this; `None` keeps all.
    pub retention_bytes: Option<u64>,
    pub flush: FlushPolicy,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// Size of each aligned write buffer; a full buffer is one write.
    pub write_buffer_bytes: usize,
    /// Bound on concurrent writes submitted to the device per log.
    pub writes_in_flight_max: usize,
    /// Bytes of recently appended batches kept in memory for tailing readers.
    pub cache_bytes_max: usize,
    /// Largest batch `append` accepts.
    pub batch_bytes_max: usize,
    /// Space reserved ahead of the write position with `fallocate`, so a full
    /// disk shows up as a clean append error instead of a failed write.
    pub preallocate_bytes: u64,
    /// How often the recovery point is checkpointed after a sync at most.
    pub checkpoint_interval_ms: u64,
    /// An idempotent producer silent this long (by its batches' timestamps)
    /// is forgotten (`producer.id.expiration.ms`).
    pub producer_id_expiration_ms: u64,
    /// Keep the newest record per key (`Some`: `cleanup.policy` has
    /// `compact`); retention above applies as well when set.
    pub compaction: Option<CompactionConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            flush: FlushPolicy::Always,
            index_interval_bytes: 4096,
            write_buffer_bytes: 1 << 20,
            writes_in_flight_max: 4,
            cache_bytes_max: 8 << 20,
            batch_bytes_max: 1 << 20,
            preallocate_bytes: 32 << 20,
            checkpoint_interval_ms: 1000,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            compaction: None,
        }
    }
}
