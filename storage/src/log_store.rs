//! What replication needs of a partition's log, as a trait: [`PartitionLog`]
//! (segments on disk) and [`MemLog`] (memory, for the simulator) both
//! implement it, so the replication driver can be written once and run over
//! the real log in a broker and over a fake disk — one that loses unsynced
//! writes at a crash and tears the last of them — in the simulator.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader};
use crate::error::{Result, StorageError};
use crate::io::Disk;
use crate::log::{AppendInfo, PartitionLog};

/// An offset-addressed log of record batches with explicit durability.
#[allow(async_fn_in_trait)] // single-threaded executors: futures need not be Send
pub trait LogStore {
    fn log_start_offset(&self) -> i64;
    fn log_end_offset(&self) -> i64;
    /// Every batch before this offset is on stable storage.
    fn durable_offset(&self) -> i64;
    /// Leader epoch stamped into batches appended from now on.
    fn set_leader_epoch(&self, epoch: i32);
    /// Appends a batch already passed through [`batch::validate`], giving it
    /// the next offsets, without waiting for it to be durable.
    async fn append_unsynced(&self, batch: Bytes, header: BatchHeader) -> Result<AppendInfo>;
    /// Waits until every batch before `offset` is durable.
    async fn make_durable(&self, offset: i64) -> Result<()>;
    /// Whole batches from the one holding `offset`, up to `max_bytes` (at
    /// least one); empty at the log end; outside the log is an error.
    async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes>;
    /// Drops every batch at or after `offset` (a batch start, not below the
    /// log start); durable before it returns.
    async fn truncate_to(&self, offset: i64) -> Result<()>;
}

impl<D: Disk> LogStore for PartitionLog<D> {
    fn log_start_offset(&self) -> i64 {
        PartitionLog::log_start_offset(self)
    }
    fn log_end_offset(&self) -> i64 {
        PartitionLog::log_end_offset(self)
    }
    fn durable_offset(&self) -> i64 {
        PartitionLog::durable_offset(self)
    }
    fn set_leader_epoch(&self, epoch: i32) {
        PartitionLog::set_leader_epoch(self, epoch)
    }
    async fn append_unsynced(&self, batch: Bytes, header: BatchHeader) -> Result<AppendInfo> {
        self.append_validated_unsynced(batch, header).await
    }
    async fn make_durable(&self, offset: i64) -> Result<()> {
        PartitionLog::make_durable(self, offset).await
    }
    async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        PartitionLog::read(self, offset, max_bytes).await
    }
    async fn truncate_to(&self, offset: i64) -> Result<()> {
        PartitionLog::truncate_to(self, offset).await
    }
}

/// A log in memory whose "disk" is the durable prefix of its batches.
#[derive(Debug, Default)]
pub struct MemLog {
    state: RefCell<MemState>,
}

#[derive(Debug, Default, Clone)]
struct MemState {
    start: i64,
    /// (base offset, next offset, stored bytes), in offset order.
    batches: Vec<(i64, i64, Bytes)>,
    /// Batches `..durable` are on "disk".
    durable: usize,
    epoch: i32,
}

impl MemState {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.start, |b| b.1)
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start_offset: self.start,
            log_end_offset: self.end(),
        }
    }
}

impl MemLog {
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// The log a restart finds after a crash: every durable batch, then the
    /// first `reached_disk` unsynced ones (writes that happened to land, in
    /// order); the one after those is torn and, like everything later, gone
    /// (recovery cuts a torn tail).
    pub fn after_crash(&self, reached_disk: usize) -> MemLog {
        let mut s = self.state.borrow().clone();
        let kept = (s.durable + reached_disk).min(s.batches.len());
        s.batches.truncate(kept);
        s.durable = kept;
        MemLog {
            state: RefCell::new(s),
        }
    }

    /// Batches not yet durable.
    pub fn unsynced(&self) -> usize {
        let s = self.state.borrow();
        s.batches.len() - s.durable
    }
}

impl LogStore for MemLog {
    fn log_start_offset(&self) -> i64 {
        self.state.borrow().start
    }
    fn log_end_offset(&self) -> i64 {
        self.state.borrow().end()
    }
    fn durable_offset(&self) -> i64 {
        let s = self.state.borrow();
        s.batches[..s.durable].last().map_or(s.start, |b| b.1)
    }
    fn set_leader_epoch(&self, epoch: i32) {
        self.state.borrow_mut().epoch = epoch;
    }
    async fn append_unsynced(&self, batch: Bytes, header: BatchHeader) -> Result<AppendInfo> {
        let mut s = self.state.borrow_mut();
        let base = s.end();
        let next = base + header.last_offset_delta as i64 + 1;
        let mut stored = BytesMut::from(&batch[..]);
        batch::set_base_offset(&mut stored, base);
        batch::set_leader_epoch(&mut stored, s.epoch);
        s.batches.push((base, next, stored.freeze()));
        Ok(AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            max_timestamp: header.max_timestamp,
            duplicate: false,
        })
    }
    async fn make_durable(&self, offset: i64) -> Result<()> {
        let mut s = self.state.borrow_mut();
        let covering = s.batches.partition_point(|b| b.0 < offset);
        s.durable = s.durable.max(covering);
        Ok(())
    }
    async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let s = self.state.borrow();
        if offset < s.start || offset > s.end() {
            return Err(s.out_of_range(offset));
        }
        let first = s.batches.partition_point(|b| b.1 <= offset);
        let mut out = BytesMut::new();
        for (_, _, bytes) in &s.batches[first..] {
            if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(bytes);
        }
        Ok(out.freeze())
    }
    async fn truncate_to(&self, offset: i64) -> Result<()> {
        let mut s = self.state.borrow_mut();
        if offset >= s.end() {
            return Ok(());
        }
        if offset < s.start {
            return Err(s.out_of_range(offset));
        }
        let keep = s.batches.partition_point(|b| b.0 < offset);
        if s.batches[keep].0 != offset {
            return Err(StorageError::NotBatchBoundary { offset });
        }
        s.batches.truncate(keep);
        s.durable = s.durable.min(keep);
        Ok(())
    }
}
