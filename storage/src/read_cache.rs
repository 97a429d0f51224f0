//! A memory-bounded cache of the most recently appended batches, so tailing
//! readers are served from memory. It always covers a suffix of the log that
//! ends at the log end offset; batches not yet written to the device are
//! pinned (a reader cannot get them from disk yet) and never evicted.

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

use crate::batch;

/// Batches smaller than this are cached as copies. A produced batch is a
/// slice of its request, and one request carries batches of many
/// partitions: a cached slice kept the whole request in memory until every
/// one of its partitions had evicted its own. With a thousand partitions
/// written a record or two at a time, the cold ones, which evict only when
/// their budget fills, kept nearly every request alive (the broker's
/// resident memory grew to 3.2-4.9 GB within a minute; with copies it
/// levels off at 1.7 GB). Small batches are where this happens and cost
/// little to copy.
pub const OWN_COPY_BELOW: usize = 16 << 10;

/// Largest chunk that copies are packed into. A partition's chunks start at
/// its first batch's size and double while it keeps appending, so a cold
/// partition holds little. With one allocation per batch of about 1 KiB
/// (glibc keeps freed chunks of 1 KiB and more in size-sorted bins, walked
/// on each insertion), the cache's push and evict took 13 % of the shard's
/// CPU at 1,000 partitions once the caches had filled; in chunks, 5 %.
const CHUNK_MAX: usize = 64 << 10;

#[derive(Debug, Clone)]
struct CachedBatch {
    base_offset: i64,
    next_offset: i64,
    leader_epoch: i32,
    /// The batch; a copy (see [`CachedBatch::is_copy`]) has its offset and
    /// epoch set, the producer's own bytes get them on the way out.
    data: Bytes,
}

impl CachedBatch {
    /// Whether the cache holds its own copy, offset and epoch set.
    fn is_copy(&self) -> bool {
        self.data.len() < OWN_COPY_BELOW
    }
}

#[derive(Debug)]
pub struct ReadCache {
    entries: VecDeque<CachedBatch>,
    bytes: usize,
    bytes_max: usize,
    /// Room left in the chunk copies go into (empty: none open).
    chunk: BytesMut,
    /// Size of the last chunk made.
    chunk_bytes: usize,
}

impl ReadCache {
    pub fn new(bytes_max: usize) -> Self {
        ReadCache {
            entries: VecDeque::new(),
            bytes: 0,
            bytes_max,
            chunk: BytesMut::new(),
            chunk_bytes: 0,
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
        self.chunk = BytesMut::new();
        self.chunk_bytes = 0;
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

    /// Adds the batch just appended at `base_offset`. A batch smaller than
    /// [`OWN_COPY_BELOW`] is copied into memory of its own.
    pub fn push(&mut self, base_offset: i64, next_offset: i64, leader_epoch: i32, data: Bytes) {
        if let Some(last) = self.entries.back() {
            assert_eq!(last.next_offset, base_offset, "cache must stay contiguous");
        }
        let data = if data.len() < OWN_COPY_BELOW {
            self.copy(&data, base_offset, leader_epoch)
        } else {
            data
        };
        self.bytes += data.len();
        self.entries.push_back(CachedBatch {
            base_offset,
            next_offset,
            leader_epoch,
            data,
        });
    }

    /// `data` copied into the open chunk (a new one if it has no room),
    /// its offset and epoch set.
    fn copy(&mut self, data: &[u8], base_offset: i64, leader_epoch: i32) -> Bytes {
        if self.chunk.capacity() < data.len() {
            self.chunk_bytes = (self.chunk_bytes * 2).clamp(data.len(), CHUNK_MAX.max(data.len()));
            self.chunk = BytesMut::with_capacity(self.chunk_bytes);
        }
        self.chunk.extend_from_slice(data);
        batch::set_base_offset(&mut self.chunk, base_offset);
        batch::set_leader_epoch(&mut self.chunk, leader_epoch);
        self.chunk.split().freeze()
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
        let start = self.index_of(offset);
        // Sized first: grown batch by batch, the answer was reallocated and
        // copied again at every doubling.
        let (mut taken, mut total) = (0, 0);
        for e in self.entries.iter().skip(start) {
            if total > 0 && total + e.data.len() > max_bytes {
                break;
            }
            (taken, total) = (taken + 1, total + e.data.len());
        }
        if taken == 1 && self.entries[start].is_copy() {
            // As stored: no copy.
            return Some(self.entries[start].data.clone());
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

    /// The index of the batch containing `offset` (or the end). A tailing
    /// reader asks for one of the last few batches: those are looked at
    /// first, from the back (a binary search of a thousand partitions'
    /// caches, each cold in the CPU's cache, was 2.6 % of the shard's CPU
    /// at 1,000 partitions, a fifth of the fetch path's).
    fn index_of(&self, offset: i64) -> usize {
        const FROM_BACK: usize = 8;
        let n = self.entries.len();
        for (back, e) in self.entries.iter().rev().take(FROM_BACK).enumerate() {
            if e.next_offset <= offset {
                return n - back;
            }
            if e.base_offset <= offset {
                return n - back - 1;
            }
        }
        self.entries.partition_point(|e| e.next_offset <= offset)
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
    fn a_small_batch_does_not_keep_its_request_alive() {
        // Two partitions' batches in one request buffer.
        let request = Bytes::from([batch().to_vec(), batch().to_vec()].concat());
        let first = request.slice(..batch().len());
        let mut c = ReadCache::new(usize::MAX);
        // (The offset and epoch the batch already has, so it reads back equal.)
        c.push(0, 2, -1, first.clone());
        let held = &c.entries[0].data;
        assert_eq!(held, &first);
        assert!(!request.as_ptr_range().contains(&held.as_ptr()));
        // Served as stored.
        assert_eq!(c.read(0, usize::MAX).unwrap().as_ptr(), held.as_ptr());
        // A large batch is kept as it came (no copy).
        let big = Bytes::from(vec![0u8; OWN_COPY_BELOW]);
        c.push(2, 3, 0, big.clone());
        assert_eq!(c.entries[1].data.as_ptr(), big.as_ptr());
    }

    #[test]
    fn copies_are_packed_into_growing_chunks() {
        let mut c = ReadCache::new(usize::MAX);
        let len = batch().len();
        for i in 0..200 {
            c.push(i * 2, i * 2 + 2, 7, batch());
        }
        // The first chunk holds one batch, the next two, then four...
        let adjacent = (1..200)
            .filter(|&i| c.entries[i - 1].data.as_ptr_range().end == c.entries[i].data.as_ptr())
            .count();
        let chunks = 200 - adjacent;
        assert!(chunks < 200 * len / CHUNK_MAX + 10, "{chunks} chunks");
        // Several batches at once are patched like one.
        let out = c.read(10, 3 * len).unwrap();
        for (k, at) in (0..3 * len).step_by(len).enumerate() {
            let h = BatchHeader::parse(&out[at..]).unwrap();
            assert_eq!((h.base_offset, h.leader_epoch), (10 + 2 * k as i64, 7));
        }
    }

    #[test]
    fn finds_the_batch_of_any_offset() {
        let mut c = ReadCache::new(usize::MAX);
        // Twenty batches of two records: offsets 100..140.
        for i in 0..20 {
            c.push(100 + i * 2, 102 + i * 2, 0, batch());
        }
        for offset in 90..145 {
            let linear = c
                .entries
                .iter()
                .position(|e| e.next_offset > offset)
                .unwrap_or(c.entries.len());
            assert_eq!(c.index_of(offset), linear, "offset {offset}");
        }
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
