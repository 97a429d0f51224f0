//! Idempotent producers on one partition: who wrote what, so a retried batch
//! is answered instead of appended twice.
//!
//! A pure state machine (no I/O), with Kafka's rules (`ProducerStateManager`,
//! Kafka ≥ 2.5, KIP-360):
//!
//! - per producer id: its epoch and the first/last sequence and offsets of
//!   its last [`BATCHES_KEPT`] batches;
//! - a batch repeating one of those (same epoch, same first and last
//!   sequence) is a duplicate: answered with the original offsets, not stored;
//! - the next sequence (last + 1, wrapping after `i32::MAX` to 0) is appended;
//!   a gap or an older sequence is [`SequenceError::OutOfOrder`];
//! - an older epoch is [`SequenceError::StaleEpoch`]; a newer one starts
//!   again at sequence 0;
//! - a producer the partition does not know (new, expired, or its batches
//!   all removed by retention or DeleteRecords) may start at any sequence:
//!   there is nothing left to check against. Kafka answered
//!   UNKNOWN_PRODUCER_ID here before KIP-360; since, it accepts.
//!
//! The log drives it: [`ProducerStates::check`] under the writer's lock
//! before an append, [`ProducerStates::record`] after it (and for every
//! batch replayed at open). [`ProducerStates::encode`] is the snapshot
//! written at each segment roll and at a clean close.

use std::collections::{HashMap, VecDeque};

use crate::batch::{increment_sequence, BatchHeader};

/// Batches remembered per producer (Kafka's `max.in.flight` for idempotence).
pub const BATCHES_KEPT: usize = 5;

/// The producer fields of one batch, read from its header (zero-copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
    /// Records in the batch minus one (`lastOffsetDelta`).
    pub offset_delta: i32,
    pub max_timestamp: i64,
}

impl ProducerBatch {
    /// The producer fields of `header`, or `None` for a batch without a
    /// producer id (not idempotent: never checked).
    pub fn of(header: &BatchHeader) -> Option<ProducerBatch> {
        if !header.has_producer_id() || header.is_control() {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_seq: header.base_sequence,
            last_seq: increment_sequence(header.base_sequence, header.last_offset_delta),
            offset_delta: header.last_offset_delta,
            max_timestamp: header.max_timestamp,
        })
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == increment_sequence(last_seq, 1)
}

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSeq {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub offset_delta: i32,
}

impl BatchSeq {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.offset_delta as i64
    }
}

/// What the partition knows of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`BATCHES_KEPT`], all of `epoch`.
    pub batches: VecDeque<BatchSeq>,
    /// Newest batch timestamp, for expiry.
    pub last_timestamp: i64,
}

/// What to do with a checked batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already stored at these offsets: answer them, append nothing.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer {producer_id}: epoch {epoch} is older than the partition's epoch {current}")]
    StaleEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {first_seq} does not follow {}",
        match last_seq { Some(s) => format!("the last stored sequence {s}"), None => "a new epoch (must be 0)".to_string() }
    )]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: Option<i32>,
    },
    #[error("producer {producer_id}: negative epoch {epoch} or sequence {first_seq}")]
    Invalid {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
    },
}

/// Every producer one partition knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides what a batch from a client gets. Changes nothing.
    pub fn check(&self, b: &ProducerBatch) -> Result<Verdict, SequenceError> {
        if b.epoch < 0 || b.first_seq < 0 {
            return Err(SequenceError::Invalid {
                producer_id: b.producer_id,
                epoch: b.epoch,
                first_seq: b.first_seq,
            });
        }
        let Some(entry) = self.producers.get(&b.producer_id) else {
            return Ok(Verdict::Append);
        };
        if b.epoch < entry.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id: b.producer_id,
                epoch: b.epoch,
                current: entry.epoch,
            });
        }
        if b.epoch > entry.epoch {
            return if b.first_seq == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id: b.producer_id,
                    epoch: b.epoch,
                    first_seq: b.first_seq,
                    last_seq: None,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|s| s.first_seq == b.first_seq && s.last_seq == b.last_seq)
        {
            return Ok(Verdict::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset(),
            });
        }
        match entry.batches.back() {
            Some(last) if !in_sequence(last.last_seq, b.first_seq) => {
                Err(SequenceError::OutOfOrder {
                    producer_id: b.producer_id,
                    epoch: b.epoch,
                    first_seq: b.first_seq,
                    last_seq: Some(last.last_seq),
                })
            }
            _ => Ok(Verdict::Append),
        }
    }

    /// Remembers a batch stored at `base_offset` (appended now, or found in
    /// the log while rebuilding: then unchecked, as the log is the truth).
    pub fn record(&mut self, b: &ProducerBatch, base_offset: i64) {
        let entry = self
            .producers
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: b.epoch,
                batches: VecDeque::with_capacity(BATCHES_KEPT),
                last_timestamp: b.max_timestamp,
            });
        if b.epoch != entry.epoch {
            entry.epoch = b.epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchSeq {
            first_seq: b.first_seq,
            last_seq: b.last_seq,
            base_offset,
            offset_delta: b.offset_delta,
        });
        entry.last_timestamp = entry.last_timestamp.max(b.max_timestamp);
    }

    /// Forgets producers whose every remembered batch is below `log_start`
    /// (retention or DeleteRecords removed them), as Kafka does.
    pub fn evict_before(&mut self, log_start: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.batches
                .back()
                .is_some_and(|b| b.last_offset() >= log_start)
        });
        before - self.producers.len()
    }

    /// Forgets producers idle for `expiration_ms` (`producer.id.expiration.ms`).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: u64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) < expiration_ms as i64);
        before - self.producers.len()
    }

    /// The snapshot file's bytes: the state as of log offset `offset`.
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.producers.len() * ENTRY_MAX_BYTES);
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[id];
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.offset_delta.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(HEAD_BYTES + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads a snapshot: its offset and state, or `None` if it is damaged
    /// (a torn write: the caller falls back to an older one).
    pub fn decode(bytes: &[u8]) -> Option<(i64, ProducerStates)> {
        let head = bytes.get(..HEAD_BYTES)?;
        if &head[..4] != SNAPSHOT_MAGIC {
            return None;
        }
        let offset = i64::from_be_bytes(head[4..12].try_into().ok()?);
        let count = u32::from_be_bytes(head[12..16].try_into().ok()?) as usize;
        let body_len = u32::from_be_bytes(head[16..20].try_into().ok()?) as usize;
        let crc = u32::from_be_bytes(head[20..24].try_into().ok()?);
        let body = bytes.get(HEAD_BYTES..HEAD_BYTES.checked_add(body_len)?)?;
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let mut r = Reader(body);
        let mut producers = HashMap::with_capacity(count.min(body.len() / ENTRY_MIN_BYTES));
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let n = r.u8()? as usize;
            if n == 0 || n > BATCHES_KEPT {
                return None;
            }
            let mut batches = VecDeque::with_capacity(BATCHES_KEPT);
            for _ in 0..n {
                batches.push_back(BatchSeq {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    base_offset: r.i64()?,
                    offset_delta: r.i32()?,
                });
            }
            producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    batches,
                    last_timestamp,
                },
            );
        }
        if !r.0.is_empty() {
            return None;
        }
        Some((offset, ProducerStates { producers }))
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"RPS1";
const HEAD_BYTES: usize = 4 + 8 + 4 + 4 + 4;
const ENTRY_MIN_BYTES: usize = 8 + 2 + 8 + 1 + 20;
const ENTRY_MAX_BYTES: usize = 8 + 2 + 8 + 1 + 20 * BATCHES_KEPT;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, first: i32, n: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: pid,
            epoch,
            first_seq: first,
            last_seq: increment_sequence(first, n - 1),
            offset_delta: n - 1,
            max_timestamp: 1_000,
        }
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, i32::MIN));
    }

    #[test]
    fn next_duplicate_gap_and_stale_epoch() {
        let mut s = ProducerStates::default();
        let b0 = batch(7, 0, 0, 3);
        assert_eq!(s.check(&b0), Ok(Verdict::Append));
        s.record(&b0, 100);
        assert_eq!(
            s.check(&b0),
            Ok(Verdict::Duplicate {
                base_offset: 100,
                last_offset: 102
            })
        );
        let b1 = batch(7, 0, 3, 2);
        assert_eq!(s.check(&b1), Ok(Verdict::Append));
        assert!(matches!(
            s.check(&batch(7, 0, 6, 1)),
            Err(SequenceError::OutOfOrder {
                last_seq: Some(2),
                ..
            })
        ));
        s.record(&b1, 103);
        // A newer epoch starts at 0; an older one is fenced.
        assert!(matches!(
            s.check(&batch(7, 1, 5, 1)),
            Err(SequenceError::OutOfOrder { last_seq: None, .. })
        ));
        s.record(&batch(7, 1, 0, 1), 105);
        assert!(matches!(
            s.check(&b1),
            Err(SequenceError::StaleEpoch { current: 1, .. })
        ));
        // An unknown producer may start anywhere.
        assert_eq!(s.check(&batch(8, 3, 42, 1)), Ok(Verdict::Append));
        assert!(matches!(
            s.check(&batch(8, 0, -1, 1)),
            Err(SequenceError::Invalid { .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&batch(1, 0, i, 1), 10 + i as i64);
        }
        assert_eq!(s.get(1).unwrap().batches.len(), BATCHES_KEPT);
        assert!(matches!(
            s.check(&batch(1, 0, 1, 1)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(
            s.check(&batch(1, 0, 2, 1)),
            Ok(Verdict::Duplicate {
                base_offset: 12,
                last_offset: 12
            })
        );
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let mut s = ProducerStates::default();
        for pid in 0..20 {
            for i in 0..(pid % 7 + 1) {
                s.record(
                    &batch(pid, (pid % 3) as i16, i as i32 * 2, 2),
                    pid * 100 + i,
                );
            }
        }
        let bytes = s.encode(4242);
        assert_eq!(ProducerStates::decode(&bytes), Some((4242, s.clone())));
        for cut in [0, 10, bytes.len() - 1] {
            assert_eq!(ProducerStates::decode(&bytes[..cut]), None);
        }
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(ProducerStates::decode(&flipped), None);
        // Trailing zeros (a padded direct-I/O write) are ignored.
        let mut padded = bytes;
        padded.resize(padded.len() + 100, 0);
        assert_eq!(ProducerStates::decode(&padded), Some((4242, s)));
    }

    #[test]
    fn eviction_and_expiry() {
        let mut s = ProducerStates::default();
        s.record(&batch(1, 0, 0, 1), 5);
        s.record(&batch(2, 0, 0, 1), 50);
        assert_eq!(s.evict_before(6), 1);
        assert!(s.get(1).is_none());
        let mut late = batch(3, 0, 0, 1);
        late.max_timestamp = 90_000;
        s.record(&late, 60);
        assert_eq!(s.expire(91_000, 10_000), 1); // pid 2 (ts 1000) idle too long
        assert!(s.get(3).is_some());
    }
}
