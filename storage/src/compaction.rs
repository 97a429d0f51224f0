//! Log compaction's decisions, pure (the I/O is in `log/clean.rs`): which
//! part of a log is cleaned and when, the bounded key → newest offset map,
//! which records stay, how segments are grouped when rewritten, and the
//! cleaner's small persistent state.
//!
//! The scheme is Kafka's `LogCleaner`: the log is a cleaned prefix and a
//! dirty rest. A pass maps every key of the dirty part (as far as the map's
//! memory allows: a log whose keys do not fit is cleaned in several passes)
//! to the offset of its newest record, then rewrites every cleanable segment
//! from the log start to the end of what it mapped, keeping a record only if
//! no newer record of its key was mapped. Delete markers (null values) go
//! once their segment has been clean for `delete.retention.ms` (the horizon
//! per segment, as Redpanda keeps it), so a consumer reading from the start
//! within that time still sees the delete.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use crate::batch::compact::KeyedRecord;
use crate::config::CompactionConfig;

/// A key as the offset map stores it: 128 bits of XXH3, so two keys of one
/// log colliding (which would lose the older key's newest value) is as
/// unlikely as Kafka's MD5 makes it.
pub fn key_hash(key: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key)
}

/// The keys are hashes already: use their low bits as the table's hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// Key → offset of its newest record seen, holding at most as many keys as
/// its memory budget allows (Kafka's dedupe buffer).
pub struct OffsetMap {
    map: HashMap<u128, i64, BuildHasherDefault<PassThrough>>,
    capacity: usize,
}

/// Bytes one table slot takes: a 16-byte key and an 8-byte offset padded to
/// 32, and a control byte.
const SLOT_BYTES: usize = 33;

impl OffsetMap {
    /// A map that stays within `bytes` of memory (at least one key). The
    /// table grows as keys arrive and stops before its next doubling would
    /// pass the budget.
    pub fn with_memory(bytes: usize) -> OffsetMap {
        let slots = (bytes / SLOT_BYTES).max(2);
        // hashbrown holds 7/8 of a power of two of slots.
        let buckets = 1usize << (usize::BITS - 1 - slots.leading_zeros());
        OffsetMap {
            map: HashMap::default(),
            capacity: (buckets / 8 * 7).max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records `offset` as the newest of `key`; false, storing nothing, when
    /// the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = key_hash(key);
        if let Some(o) = self.map.get_mut(&h) {
            *o = (*o).max(offset);
            return true;
        }
        if self.map.len() >= self.capacity {
            return false;
        }
        self.map.insert(h, offset);
        true
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(&key_hash(key)).copied()
    }
}

/// What a cleaning pass may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerLimits {
    /// Memory of the key map (Kafka's `log.cleaner.dedupe.buffer.size`).
    pub map_bytes: usize,
    /// Bytes read plus written per second at most
    /// (`log.cleaner.io.max.bytes.per.second`); `None`: as fast as it goes.
    pub io_bytes_per_second: Option<u64>,
}

impl CleanerLimits {
    pub fn map_only(map_bytes: usize) -> CleanerLimits {
        CleanerLimits {
            map_bytes,
            io_bytes_per_second: None,
        }
    }
}

/// Paces a pass to a byte rate: after `bytes` in total, `elapsed` since
/// the pass began, how long to wait before going on.
pub fn io_pause(
    bytes: u64,
    elapsed: std::time::Duration,
    rate: Option<u64>,
) -> Option<std::time::Duration> {
    let rate = rate.filter(|r| *r > 0)?;
    let due = std::time::Duration::from_secs_f64(bytes as f64 / rate as f64);
    due.checked_sub(elapsed).filter(|d| !d.is_zero())
}

/// What the cleaner needs to know of one closed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentView {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
    pub max_timestamp: i64,
}

/// The cleanable part of a log and how dirty it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    /// Closed segments `..end` may be cleaned (the rest are younger than
    /// `min.compaction.lag.ms`).
    pub end: usize,
    /// The first of them holding records past the clean point, if any.
    pub first_dirty: Option<usize>,
    /// Dirty bytes ÷ cleanable bytes.
    pub dirty_ratio: f64,
}

/// The cleanable part of the closed segments (oldest first).
pub fn cleanable(
    closed: &[SegmentView],
    cleaned_to: i64,
    now_ms: i64,
    config: &CompactionConfig,
) -> Cleanable {
    let young_after =
        now_ms.saturating_sub(config.min_compaction_lag_ms.min(i64::MAX as u64) as i64);
    let end = closed
        .iter()
        .position(|s| s.max_timestamp > young_after)
        .unwrap_or(closed.len());
    let first_dirty = closed[..end]
        .iter()
        .position(|s| s.next_offset > cleaned_to);
    let total: u64 = closed[..end].iter().map(|s| s.size_bytes).sum();
    let dirty: u64 = first_dirty
        .map(|f| closed[f..end].iter().map(|s| s.size_bytes).sum())
        .unwrap_or(0);
    Cleanable {
        end,
        first_dirty,
        dirty_ratio: if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        },
    }
}

/// Whether a pass is due: dirty enough, or the oldest dirty record (by its
/// timestamp) has waited `max.compaction.lag.ms`.
pub fn due(
    c: &Cleanable,
    oldest_dirty_timestamp: i64,
    now_ms: i64,
    config: &CompactionConfig,
) -> bool {
    let max_lag = config.max_compaction_lag_ms.min(i64::MAX as u64) as i64;
    c.dirty_ratio >= config.min_cleanable_dirty_ratio
        || oldest_dirty_timestamp <= now_ms.saturating_sub(max_lag)
}

/// The `cleaned_at` of a segment rewritten with its delete markers removed:
/// it holds none, and need not be visited for them again.
pub const TOMBSTONE_FREE: i64 = i64::MIN;

/// Whether a segment's delete markers may go: it has been wholly clean
/// since `cleaned_at_ms`, at least `delete.retention.ms` ago.
pub fn tombstones_expired(
    cleaned_at_ms: Option<i64>,
    now_ms: i64,
    config: &CompactionConfig,
) -> bool {
    let horizon = now_ms.saturating_sub(config.delete_retention_ms.min(i64::MAX as u64) as i64);
    cleaned_at_ms.is_some_and(|t| t <= horizon)
}

/// Whether a segment may still hold delete markers that are due to go (a
/// pass is due for them even when nothing is dirty).
pub fn tombstones_due(cleaned_at_ms: Option<i64>, now_ms: i64, config: &CompactionConfig) -> bool {
    cleaned_at_ms != Some(TOMBSTONE_FREE) && tombstones_expired(cleaned_at_ms, now_ms, config)
}

/// Whether a record survives a pass: no newer record of its key was mapped,
/// and it is not an expired delete marker. Records without a key (written
/// before the topic became compacted) go, as Kafka's cleaner drops them.
pub fn keep(record: &KeyedRecord<'_>, map: &OffsetMap, drop_tombstones: bool) -> bool {
    let Some(key) = record.key else {
        return false;
    };
    let newest = map.get(key).is_none_or(|o| record.offset >= o);
    newest && !(record.tombstone && drop_tombstones)
}

/// Whether the cleaner's output segment, started at `group_base` and
/// holding `written` bytes so far, takes in `next` too. Kafka groups
/// segments up to `segment.bytes` by their sizes before cleaning; here the
/// group grows by what the cleaned output already holds, so segments that
/// cleaning all but emptied merge into one instead of staying one tiny
/// file each, while the next segment would still fit whole and its offsets
/// stay within what a segment's 32-bit relative index can address.
pub fn joins(written: u64, group_base: i64, next: &SegmentView, segment_bytes: u64) -> bool {
    written + next.size_bytes <= segment_bytes && next.next_offset - group_base <= i32::MAX as i64
}

/// The cleaner's state of one log (file `cleaner`): the clean point and when
/// each wholly clean segment was first cleaned. Losing it only makes work:
/// everything counts as dirty again and delete markers wait a full
/// `delete.retention.ms` more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanerState {
    /// Records before this offset were cleaned against every newer key.
    pub cleaned_to: i64,
    /// Segment base → wall-clock ms it became wholly clean.
    pub cleaned_at: BTreeMap<i64, i64>,
}

const STATE_MAGIC: &[u8; 4] = b"RCS1";

impl CleanerState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + 16 * self.cleaned_at.len());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.cleaned_to.to_be_bytes());
        out.extend_from_slice(&(self.cleaned_at.len() as u32).to_be_bytes());
        for (base, at) in &self.cleaned_at {
            out.extend_from_slice(&base.to_be_bytes());
            out.extend_from_slice(&at.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// `None` for anything torn or foreign.
    pub fn decode(bytes: &[u8]) -> Option<CleanerState> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let rest = body.strip_prefix(STATE_MAGIC)?;
        let i64_at = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(rest.get(at..at + 8)?.try_into().ok()?))
        };
        let cleaned_to = i64_at(0)?;
        let n = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
        if rest.len() != 12 + 16 * n {
            return None;
        }
        let mut cleaned_at = BTreeMap::new();
        for i in 0..n {
            cleaned_at.insert(i64_at(12 + 16 * i)?, i64_at(20 + 16 * i)?);
        }
        Some(CleanerState {
            cleaned_to,
            cleaned_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base_offset: i64, next_offset: i64, size_bytes: u64, max_timestamp: i64) -> SegmentView {
        SegmentView {
            base_offset,
            next_offset,
            size_bytes,
            max_timestamp,
        }
    }

    #[test]
    fn the_map_stays_within_its_budget_and_keeps_the_newest_offset() {
        let mut m = OffsetMap::with_memory(64 * SLOT_BYTES);
        assert_eq!(m.capacity(), 56);
        for i in 0..56 {
            assert!(m.put(format!("k{i}").as_bytes(), i));
        }
        assert!(!m.put(b"one too many", 100));
        assert!(m.put(b"k3", 200), "a known key still updates");
        assert!(m.put(b"k3", 150));
        assert_eq!(m.get(b"k3"), Some(200));
        assert_eq!(m.get(b"never"), None);
        assert_eq!(OffsetMap::with_memory(0).capacity(), 1);
    }

    #[test]
    fn what_is_cleanable_and_when() {
        let config = CompactionConfig {
            min_compaction_lag_ms: 100,
            ..Default::default()
        };
        let closed = [
            seg(0, 10, 100, 50),
            seg(10, 20, 100, 60),
            seg(20, 30, 100, 950),
        ];
        // The third segment is younger than the lag.
        let c = cleanable(&closed, 0, 1000, &config);
        assert_eq!((c.end, c.first_dirty, c.dirty_ratio), (2, Some(0), 1.0));
        let c = cleanable(&closed, 10, 1000, &config);
        assert_eq!((c.first_dirty, c.dirty_ratio), (Some(1), 0.5));
        assert!(due(&c, 55, 1000, &config));
        let c = cleanable(&closed, 15, 1000, &config);
        assert_eq!(c.first_dirty, Some(1), "a partly clean segment is dirty");
        assert_eq!(cleanable(&closed, 20, 1000, &config).first_dirty, None);
        let lazy = CompactionConfig {
            min_cleanable_dirty_ratio: 0.9,
            max_compaction_lag_ms: 500,
            ..Default::default()
        };
        let c = cleanable(&closed, 10, 1000, &lazy);
        assert!(!due(&c, 600, 1000, &lazy));
        assert!(due(&c, 500, 1000, &lazy), "waited max.compaction.lag.ms");
    }

    #[test]
    fn records_and_delete_markers() {
        let mut m = OffsetMap::with_memory(1 << 10);
        m.put(b"a", 10);
        let rec = |offset, key: Option<&'static [u8]>, tombstone| KeyedRecord {
            offset,
            key,
            tombstone,
        };
        assert!(!keep(&rec(5, Some(b"a"), false), &m, false));
        assert!(keep(&rec(10, Some(b"a"), false), &m, false));
        assert!(
            keep(&rec(12, Some(b"a"), false), &m, false),
            "newer than the map"
        );
        assert!(
            keep(&rec(3, Some(b"b"), false), &m, false),
            "not mapped: nothing newer"
        );
        assert!(keep(&rec(10, Some(b"a"), true), &m, false));
        assert!(!keep(&rec(10, Some(b"a"), true), &m, true));
        assert!(!keep(&rec(3, None, false), &m, false));
        let config = CompactionConfig {
            delete_retention_ms: 100,
            ..Default::default()
        };
        assert!(!tombstones_expired(None, 1000, &config));
        assert!(!tombstones_expired(Some(950), 1000, &config));
        assert!(tombstones_expired(Some(900), 1000, &config));
        assert!(tombstones_due(Some(900), 1000, &config));
        assert!(!tombstones_due(Some(TOMBSTONE_FREE), 1000, &config));
    }

    #[test]
    fn the_pace_holds_the_rate() {
        use std::time::Duration;
        assert_eq!(io_pause(1000, Duration::ZERO, None), None);
        assert_eq!(io_pause(1000, Duration::from_secs(2), Some(1000)), None);
        assert_eq!(
            io_pause(3000, Duration::from_secs(1), Some(1000)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn small_segments_merge() {
        let next = seg(10, 20, 40, 0);
        assert!(joins(0, 0, &next, 100));
        assert!(joins(60, 0, &next, 100));
        assert!(!joins(61, 0, &next, 100));
        let far = seg(i32::MAX as i64, i32::MAX as i64 + 5, 1, 0);
        assert!(!joins(0, 0, &far, 1000));
        assert!(joins(0, 10, &far, 1000));
    }

    #[test]
    fn the_state_round_trips_and_damage_is_refused() {
        let mut s = CleanerState {
            cleaned_to: 42,
            ..Default::default()
        };
        s.cleaned_at.insert(0, 1000);
        s.cleaned_at.insert(20, 2000);
        let bytes = s.encode();
        assert_eq!(CleanerState::decode(&bytes), Some(s));
        for cut in 0..bytes.len() {
            assert_eq!(CleanerState::decode(&bytes[..cut]), None);
        }
        let mut bad = bytes.clone();
        bad[6] ^= 1;
        assert_eq!(CleanerState::decode(&bad), None);
    }
}
