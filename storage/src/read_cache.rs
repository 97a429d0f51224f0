//! A memory-bounded cache of the most recently appended batches, so tailing
//! readers are served from memory. It always covers a suffix of the log that
//! ends at the log end offset; batches not yet written to the device are
//! pinned (a reader cannot get them from disk yet) and never evicted.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

use crate::batch;

#[derive(Debug, Clone)]
struct CachedBatch {
    base_offset: i64,
    next_offset: i64,
    leader_epoch: i32,
    /// The batch as the producer sent it; offset and epoch are patched on the way out.
    data: Bytes,
}

#[derive(Debug)]
pub struct ReadCache {
    entries: VecDeque<CachedBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl ReadCache {
    pub fn new(bytes_max: usize) -> Self {
        ReadCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// Changes the budget; eviction catches up on the next append.
    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
    }

    /// Drops every batch (all written to the device) and the queue's memory.
    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }

    /// The budget.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes of batch data held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// First offset the cache can serve, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.entries.front().map(|e| e.base_offset)
    }

    /// Adds the batch just appended at `base_offset`.
    pub fn push(&mut self, base_offset: i64, next_offset: i64, leader_epoch: i32, data: Bytes) {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.next_offset, base_offset, "cache must stay contiguous");
        }
        self.bytes += data.len();
        self.entries.push_back(CachedBatch {
            base_offset,
            next_offset,
            leader_epoch,
            data,
        });
    }

    /// Evicts the oldest batches while over budget, but never one that ends
    /// after `written_offset` (not yet readable from the device).
    pub fn evict(&mut self, written_offset: i64) {
        while self.bytes > self.bytes_max {
            match self.entries.front() {
                Some(front) if front.next_offset <= written_offset => {
                    self.bytes -= front.data.len();
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Whole batches from the one containing `offset`, up to `max_bytes` (but
    /// at least one), with offsets and epochs patched. `None` if `offset` is
    /// before the cached range.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Option<Bytes> {
        let first = self.entries.front()?;
        if offset < first.base_offset {
            return None;
        }
        let start = self.entries.partition_point(|e| e.next_offset <= offset);
        // Sized first: grown batch by batch, the answer was reallocated and
        // copied again at every doubling.
        let (mut taken, mut total) = (0, 0);
        for e in self.entries.iter().skip(start) {
            if total > 0 && total + e.data.len() > max_bytes {
                break;
            }
            (taken, total) = (taken + 1, total + e.data.len());
        }
        let mut out = BytesMut::with_capacity(total);
        for e in self.entries.iter().skip(start).take(taken) {
            let at = out.len();
            out.extend_from_slice(&e.data);
            batch::set_base_offset(&mut out[at..], e.base_offset);
            batch::set_leader_epoch(&mut out[at..], e.leader_epoch);
        }
        Some(out.freeze())
    }

    /// Drops batches at or after `offset` (log truncation).
    pub fn truncate_from(&mut self, offset: i64) {
        while let Some(back) = self.entries.back() {
            if back.base_offset < offset {
                break;
            }
            self.bytes -= back.data.len();
            self.entries.pop_back();
        }
    }

    /// Drops batches that end at or before `offset` (log start moved).
    pub fn discard_before(&mut self, offset: i64) {
        while let Some(front) = self.entries.front() {
            if front.next_offset > offset {
                break;
            }
            self.bytes -= front.data.len();
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode_uncompressed, BatchHeader, RecordSpec};

    fn batch() -> Bytes {
        Bytes::from(encode_uncompressed(
            0,
            &[RecordSpec::default(), RecordSpec::default()],
        ))
    }

    #[test]
    fn serves_patched_batches_and_respects_pins() {
        let mut c = ReadCache::new(0);
        for i in 0..4 {
            c.push(i * 2, i * 2 + 2, 3, batch());
        }
        let out = c.read(3, 1).unwrap();
        let h = BatchHeader::parse(&out).unwrap();
        assert_eq!(
            (h.base_offset, h.leader_epoch, out.len()),
            (2, 3, batch().len())
        );
        let all = c.read(0, usize::MAX).unwrap();
        assert_eq!(all.len(), 4 * batch().len());
        // Budget 0, but only batches ending at or before offset 4 are written: two go.
        c.evict(4);
        assert_eq!(c.first_offset(), Some(4));
        assert!(c.read(3, 100).is_none());
        c.truncate_from(6);
        assert_eq!(c.read(4, usize::MAX).unwrap().len(), batch().len());
    }
}
