//! The partition log: an ordered, offset-addressed sequence of record batches
//! stored as segments in one directory.
//!
//! Concurrency model: everything runs on one glommio executor (one shard).
//! Mutations of the active segment are serialized by an async mutex around
//! the [`Writer`]; reader-visible state lives in a `RefCell` that is never
//! borrowed across an `.await`.

mod batches;
mod clean;
mod epochs;
pub use clean::CleanOutcome;
mod maintenance;
pub use maintenance::{Park, RetentionOutcome};
mod open;
mod producers;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::appender::{Appender, AppenderConfig};
use crate::batch::{self, BatchHeader};
use crate::checkpoint::{Checkpoint, HardState, SLOT_BYTES};
use crate::compaction::CleanerState;
use crate::config::{FlushPolicy, LogConfig};
use crate::error::{Result, StorageError};
use crate::io::{Disk, DmaDisk, IoBuffer, SegmentFile};
use crate::journal::{Journal, JournalName, Pending};
use crate::leader_epochs::LeaderEpochs;
use crate::producer_state::{ProducerBatch, ProducerStates, Verdict};
use crate::read_ahead::{Prepared, ReadAhead};
use crate::read_cache::ReadCache;
use crate::segment::{self, Segment};
use crate::signal::Signal;

/// What `append` assigned to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// The batch repeats one its idempotent producer already stored (a
    /// retry): these are the original offsets and nothing was appended.
    pub duplicate: bool,
}

/// The whole batches at the start of `data` that fit in `max_bytes`, and at
/// least the first (a read returns one batch however large).
fn whole_batches_within(mut data: Bytes, max_bytes: usize) -> Bytes {
    if data.len() <= max_bytes {
        return data;
    }
    let mut end = 0;
    while let Ok(header) = BatchHeader::parse(&data[end..]) {
        let next = end + header.total_len();
        if next > data.len() || (end > 0 && next > max_bytes) {
            break;
        }
        end = next;
    }
    data.truncate(end);
    data
}

/// Answer of [`PartitionLog::offset_for_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// Bytes of batches a log keeps for its shard journal's next step.
pub const UNJOURNALED_BYTES_MAX: usize = 4 << 20;

/// How often a journaled log writes out its segment's buffer at most (a
/// full buffer is written at once regardless). Every 100 ms, a thousand
/// partitions rewrote their tail blocks 10,000 times a second, and the
/// journal's syncs waited behind those writes: `many-partitions-1000` went
/// 31 -> 46 MB/s at 1 s.
pub const WRITE_BEHIND_MS: i64 = 1000;

/// How far a log was written out before a sync: the offset after its
/// last batch, and where that ends in which segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WrittenOut {
    offset: i64,
    segment_base: i64,
    position: u64,
}

/// A partition's log on one shard, on the real disk unless told otherwise
/// (`D`: see [`crate::io`]). Cheap to clone (reference counted).
pub struct PartitionLog<D: Disk = DmaDisk> {
    inner: Rc<Inner<D>>,
}

impl<D: Disk> Clone for PartitionLog<D> {
    fn clone(&self) -> Self {
        PartitionLog {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: RefCell<LogConfig>,
    writer: async_lock::Mutex<Writer<D>>,
    /// Taken after the writer's lock where both are (never the other way
    /// round); a durable advance writes its checkpoint under this one
    /// alone, so appends do not wait for that write and its sync.
    checkpointer: async_lock::Mutex<Checkpointer<D>>,
    shared: RefCell<Shared<D>>,
    /// Notified when `durable_offset` moves, a sync ends or the log fails.
    durable: Signal,
    /// The shard's journal, when this log makes batches durable through it,
    /// and the log's name there.
    journal: RefCell<Option<(Journal<D>, JournalName)>>,
    /// Set when the open made the log's directory and files without syncing
    /// them (a new, empty log: any remnant of it a crash leaves opens as an
    /// empty log again). The names are synced, once, before the log itself
    /// claims anything durable (`PartitionLog::sync_names`) and before a
    /// close leaves its clean checkpoint for the next open to trust; a
    /// journal step needs no names (its replay makes the log again), and a
    /// filesystem sync covers them (a stop's, and the broker's at start).
    names_unsynced: std::cell::Cell<bool>,
}

/// The checkpoint file's two slots and what was last written to them.
struct Checkpointer<D: Disk> {
    file: D::File,
    seq: u64,
    last_ms: i64,
    /// The recovery point the newest checkpoint holds.
    recovery_point: i64,
}

/// State only the (serialized) writer touches.
struct Writer<D: Disk> {
    appender: Appender<D::File>,
    /// The files are as the newest checkpoint, a clean one, describes them:
    /// a close has nothing to write. Set by a clean open and by a close or
    /// park; cleared by an append and by an unclean checkpoint written
    /// under this lock (a durable advance writes its own only after an
    /// append, which cleared it already).
    clean_on_disk: bool,
    /// (position, offset) written out by [`PartitionLog::close_begin`] or
    /// [`PartitionLog::park_begin`], durable once the caller's filesystem
    /// sync returns; cleared by an append and by an unclean checkpoint.
    sealed_unsynced: Option<(u64, i64)>,
}

/// Reader-visible state.
struct Shared<D: Disk> {
    segments: BTreeMap<i64, Segment<D::File>>,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Every batch before this offset is on stable storage.
    durable_offset: i64,
    /// (segment base, position) of `durable_offset`.
    durable_position: (i64, u64),
    /// Every batch before this offset is in the shard's journal (synced):
    /// stored, though its segment may not be synced yet.
    journaled_offset: i64,
    /// Batches appended since the journal's last step took this log's.
    unjournaled: std::collections::VecDeque<Pending>,
    /// Their bytes: bounded by [`UNJOURNALED_BYTES_MAX`], since nothing
    /// takes them while no one asks for durability (acks=1 under a flush
    /// interval); past it they are dropped and the segment's own sync
    /// covers them.
    unjournaled_bytes: usize,
    /// Batches before this offset may be missing from `unjournaled`.
    unjournaled_from: i64,
    /// When the segment's buffer was last written behind a journal step.
    written_behind_ms: i64,
    /// In the journal's list of logs waiting for its next step.
    journal_waiting: bool,
    leader_epoch: i32,
    cache: ReadCache,
    /// Idempotent producers' sequences; changed only by the writer.
    producers: ProducerStates,
    /// Where compaction got to (compacted logs).
    cleaner: CleanerState,
    /// Leader epoch → first offset; see [`crate::leader_epochs`].
    epochs: LeaderEpochs,
    /// The replica's Raft state, kept in the checkpoint.
    hard_state: HardState,
    syncing: bool,
    /// An interval flusher task runs (only while something awaits a sync).
    flusher_running: bool,
    /// When the last batch was appended (the disk's clock).
    last_append_ms: i64,
    /// [`PartitionLog::release_idle`] gave back what the log held since.
    idle_released: bool,
    failed: Option<String>,
    closed: bool,
    /// Reads started ahead of their requests ([`crate::read_ahead`]).
    read_ahead: ReadAhead,
    /// Bumped when data a prepared read may hold changes under it
    /// (truncation, cleaning): such reads are then not used.
    layout: u64,
}

impl<D: Disk> Shared<D> {
    /// Whether a read at `offset` is at the log end (nothing to read); an
    /// error outside the log.
    fn at_end_or_out_of_range(&self, offset: i64) -> Result<bool> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        Ok(offset == self.log_end_offset)
    }

    fn active(&self) -> &Segment<D::File> {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment<D::File> {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Drops the batches queued for the journal: those before `until` are
    /// made durable by the segment's own sync instead.
    fn forget_unjournaled(&mut self, until: i64) {
        self.unjournaled_from = self.unjournaled_from.max(until);
        self.unjournaled.clear();
        self.unjournaled_bytes = 0;
    }

    fn usable(&self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        if self.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }
}

fn appender_config(config: &LogConfig) -> AppenderConfig {
    AppenderConfig {
        buffer_bytes: config.write_buffer_bytes,
        writes_in_flight_max: config.writes_in_flight_max,
        preallocate_bytes: config.preallocate_bytes,
    }
}

impl PartitionLog {
    /// Opens (recovering if needed) or creates the log in `dir`.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<PartitionLog> {
        let (log, _) = open::open(DmaDisk, dir.as_ref(), config, open::OnDamage::Refuse).await?;
        Ok(log)
    }
}

impl<D: Disk> PartitionLog<D> {
    /// [`PartitionLog::open`] on `disk` (a simulated one in tests).
    pub async fn open_on(disk: D, dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        let (log, _) = open::open(disk, dir.as_ref(), config, open::OnDamage::Refuse).await?;
        Ok(log)
    }

    /// Opens a replica's log: where [`PartitionLog::open_on`] refuses a log
    /// whose synced data is damaged ([`StorageError::CorruptFlushedData`]),
    /// this cuts the log at the first damaged batch and returns its offset.
    /// Only a replica may: what it lost (and may have acknowledged) is held
    /// by its group, and it must not vote until it has it back.
    pub async fn open_replica_on(
        disk: D,
        dir: impl AsRef<Path>,
        config: LogConfig,
    ) -> Result<(Self, Option<i64>)> {
        open::open(disk, dir.as_ref(), config, open::OnDamage::Truncate).await
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings in force now.
    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Changes settings of an open log. Retention, roll, flush and batch size
    /// limits apply from the next operation; buffer sizes from the next segment.
    pub fn reconfigure(&self, config: LogConfig) {
        open::validate_config(&config);
        let was_interval = matches!(self.inner.config.borrow().flush, FlushPolicy::Interval(_));
        let interval = match config.flush {
            FlushPolicy::Interval(every) if !was_interval => Some(every),
            _ => None,
        };
        self.inner
            .shared
            .borrow_mut()
            .cache
            .set_bytes_max(config.cache_bytes_max);
        *self.inner.config.borrow_mut() = config;
        if interval.is_some() {
            self.ensure_flusher();
        }
    }

    /// At open, when the whole log is one small segment: puts its batches
    /// in the cache of recent batches, so rebuilding the producers' state
    /// and the leader-epoch index reads memory, not the device again.
    /// `kept`: the batches as the open's scan of the segment read them
    /// (then nothing is read here: 100,000 partitions open with one segment
    /// read each instead of three); otherwise the segment is read once.
    async fn seed_cache(&self, kept: Option<Vec<(BatchHeader, Bytes)>>) {
        let (file, size, start, end) = {
            let s = self.inner.shared.borrow();
            let active = s.active();
            if s.segments.len() != 1
                || active.size_bytes == 0
                || active.size_bytes > open::SEED_BYTES_MAX
                || active.size_bytes > s.cache.bytes_max() as u64
                || s.log_start_offset != active.base_offset
            {
                return;
            }
            (
                active.file.clone(),
                active.size_bytes,
                s.log_start_offset,
                s.log_end_offset,
            )
        };
        let batches = match kept {
            Some(kept) => kept,
            None => {
                let Ok(data) = file
                    .read_at_aligned(0, crate::appender::align_up(size) as usize)
                    .await
                else {
                    return; // the reads that follow go to the device
                };
                if (data.len() as u64) < size {
                    return;
                }
                let data = Bytes::copy_from_slice(&data[..size as usize]);
                let mut at = 0usize;
                let mut batches = Vec::new();
                while at < data.len() {
                    let Ok(h) = BatchHeader::parse(&data[at..]) else {
                        return;
                    };
                    let len = h.total_len();
                    if at + len > data.len() {
                        return;
                    }
                    batches.push((h, data.slice(at..at + len)));
                    at += len;
                }
                batches
            }
        };
        if batches.first().map(|(h, _)| h.base_offset) != Some(start)
            || batches.last().map(|(h, _)| h.next_offset()) != Some(end)
        {
            return;
        }
        let mut s = self.inner.shared.borrow_mut();
        for (h, batch) in batches {
            s.cache
                .push(h.base_offset, h.next_offset(), h.leader_epoch, batch);
        }
    }

    /// Whether the flush-interval task runs for this log: only while it
    /// holds batches stored neither in its segment nor in the journal.
    pub fn flusher_running(&self) -> bool {
        self.inner.shared.borrow().flusher_running
    }

    /// Under a flush interval, starts the task that syncs every interval
    /// if it is not running and something is not durable yet. The task
    /// ends once everything is: an idle partition costs no timer.
    fn ensure_flusher(&self) {
        let FlushPolicy::Interval(every) = self.inner.config.borrow().flush else {
            return;
        };
        {
            let mut s = self.inner.shared.borrow_mut();
            if s.flusher_running || s.closed || s.durable_offset >= s.log_end_offset {
                return;
            }
            s.flusher_running = true;
        }
        open::spawn_interval_flusher(Rc::downgrade(&self.inner), every);
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.shared.borrow().log_start_offset
    }

    /// The replica's Raft hard state as last saved.
    pub fn hard_state(&self) -> HardState {
        self.inner.shared.borrow().hard_state
    }

    /// Saves the replica's Raft hard state durably (a checkpoint slot,
    /// synced) before it returns: a vote is sent only after this.
    pub async fn save_hard_state(&self, hard_state: HardState) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        self.inner.shared.borrow().usable()?;
        self.inner.shared.borrow_mut().hard_state = hard_state;
        self.write_checkpoint(&mut w, false).await
    }

    /// Whether [`close`](Self::close) has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.borrow().closed
    }

    pub fn log_end_offset(&self) -> i64 {
        self.inner.shared.borrow().log_end_offset
    }

    /// Offset before which every batch is synced in the log's segments
    /// (the recovery point to be).
    pub fn durable_offset(&self) -> i64 {
        self.inner.shared.borrow().durable_offset
    }

    /// Offset before which every batch is on stable storage: synced in the
    /// segments or in the shard's journal.
    pub fn stored_offset(&self) -> i64 {
        let s = self.inner.shared.borrow();
        s.durable_offset.max(s.journaled_offset)
    }

    /// Makes batches durable through the shard's `journal` from now on
    /// (see [`crate::journal`]), under `name`. Syncs what the log holds
    /// first, so the journal has everything after it.
    pub async fn attach_journal(&self, journal: Journal<D>, name: JournalName) -> Result<()> {
        self.sync().await?;
        *self.inner.journal.borrow_mut() = Some((journal, name));
        Ok(())
    }

    pub(crate) fn journal_name(&self) -> Option<JournalName> {
        self.inner.journal.borrow().as_ref().map(|(_, n)| n.clone())
    }

    /// The batches the journal's next step writes for this log (those
    /// already synced in the segment are dropped); the log no longer waits.
    pub(crate) fn take_unjournaled(&self) -> Vec<Pending> {
        let mut s = self.inner.shared.borrow_mut();
        let durable = s.durable_offset;
        s.unjournaled_bytes = 0;
        s.journal_waiting = false;
        s.unjournaled
            .drain(..)
            .filter(|p| p.next_offset > durable)
            .collect()
    }

    /// The journal synced this log's batches from `from` to `end`: stored
    /// up to `end` if nothing before `from` is missing.
    pub(crate) fn journaled_to(&self, from: i64, end: i64) {
        {
            let mut s = self.inner.shared.borrow_mut();
            if from <= s.durable_offset.max(s.journaled_offset) {
                s.journaled_offset = s.journaled_offset.max(end);
            }
        }
        self.inner.durable.notify_all();
    }

    /// Batches before this offset may be missing from the journal's queue.
    pub(crate) fn unjournaled_from(&self) -> i64 {
        self.inner.shared.borrow().unjournaled_from
    }

    /// The journal lost the batches it took from this log (a failed step).
    pub(crate) fn unjournaled_dropped(&self) {
        let mut s = self.inner.shared.borrow_mut();
        let end = s.log_end_offset;
        s.forget_unjournaled(end);
    }

    /// Marks the log as waiting for the journal's next step; false if it
    /// already was.
    pub(crate) fn mark_journal_waiting(&self) -> bool {
        !std::mem::replace(&mut self.inner.shared.borrow_mut().journal_waiting, true)
    }

    /// An identity for maps of logs (the shared state's address).
    pub(crate) fn key(&self) -> usize {
        Rc::as_ptr(&self.inner) as usize
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        self.inner.shared.borrow().usable()
    }

    /// Starts writing what the segment's buffer holds (padded to a block,
    /// not synced) if it was not done in the last [`WRITE_BEHIND_MS`], so a
    /// journaled log does not keep a full write buffer resident until its
    /// segment's next sync (a thousand partitions: a gigabyte), nor pay a
    /// small write at every step.
    pub(crate) fn write_behind(&self) {
        let now = self.inner.disk.now_ms();
        {
            let mut s = self.inner.shared.borrow_mut();
            if now - s.written_behind_ms < WRITE_BEHIND_MS {
                return;
            }
            s.written_behind_ms = now;
        }
        let log = self.clone();
        glommio::spawn_local(async move {
            let mut w = log.inner.writer.lock().await;
            if log.check_usable().is_ok() {
                // A failed write is the appender's failure: the next append
                // or sync reports it.
                let _ = w.appender.flush().await;
            }
        })
        .detach();
    }

    /// Bytes of batches across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .shared
            .borrow()
            .segments
            .values()
            .map(|s| s.size_bytes)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.shared.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.inner
            .shared
            .borrow()
            .segments
            .keys()
            .copied()
            .collect()
    }

    /// Bytes currently held by the read cache.
    pub fn cache_bytes(&self) -> usize {
        self.inner.shared.borrow().cache.bytes()
    }

    /// Leader epoch stamped into appended batches (`partitionLeaderEpoch`).
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.inner.shared.borrow_mut().leader_epoch = epoch;
    }

    /// Validates `batch`, assigns it the next offsets and appends it. With
    /// [`FlushPolicy::Always`] the future resolves once the batch is on stable
    /// storage; concurrent appends share one fdatasync.
    pub async fn append(&self, batch: Bytes) -> Result<AppendInfo> {
        let header = batch::validate(&batch, self.inner.config.borrow().batch_bytes_max)?;
        self.append_validated(batch, header).await
    }

    /// [`PartitionLog::append`] for a batch the caller already passed through
    /// [`batch::validate`] (with this log's `batch_bytes_max`), so a request
    /// carrying several batches can be checked whole before any is appended.
    pub async fn append_validated(&self, batch: Bytes, header: BatchHeader) -> Result<AppendInfo> {
        debug_assert!(batch::check_integrity(&batch).is_ok());
        let info = self.append_unsynced(batch, header).await?;
        if self.inner.config.borrow().flush == FlushPolicy::Always {
            self.make_durable(info.last_offset + 1).await?;
        }
        Ok(info)
    }

    /// Appends a validated batch without waiting for it to be durable, even
    /// under `flush = always`: the caller establishes the order of appends
    /// now and waits with [`PartitionLog::make_durable`] before it tells
    /// anyone the batch is stored (a broker pipelining produce requests).
    pub async fn append_validated_unsynced(
        &self,
        batch: Bytes,
        header: BatchHeader,
    ) -> Result<AppendInfo> {
        debug_assert!(batch::check_integrity(&batch).is_ok());
        self.append_unsynced(batch, header).await
    }

    /// Appends a leader's batch on a replica as it is: its base offset must
    /// be this log's end, and its offsets and leader epoch are kept (nothing
    /// is patched, so the CRC and the bytes match the leader's). Not
    /// durable until [`make_durable`](Self::make_durable).
    pub async fn append_replica(&self, batch: Bytes) -> Result<AppendInfo> {
        let header = batch::validate(&batch, self.inner.config.borrow().batch_bytes_max)?;
        self.append_at(batch, header, Stamp::Kept, true).await
    }

    /// Has the shard journal's next step take this log's batches before
    /// `offset` without waiting for it (see [`Journal::expect_durable`]);
    /// [`make_durable`](Self::make_durable) still waits. Nothing to do
    /// without a journal.
    pub fn expect_durable(&self, offset: i64) {
        if let Some((j, _)) = self.inner.journal.borrow().as_ref() {
            j.expect_durable(self, offset);
        }
    }

    /// Waits until every batch before `offset` is on stable storage, syncing
    /// if needed (acks=all under an interval flush policy): through the
    /// shard's journal if the log has one, else its own segment's sync.
    pub async fn make_durable(&self, offset: i64) -> Result<()> {
        let journal = self.inner.journal.borrow().as_ref().map(|(j, _)| j.clone());
        let Some(j) = journal else {
            return self.sync_to(offset).await;
        };
        // Batches dropped from the journal's queue: the segment's sync.
        let dropped_before = self.inner.shared.borrow().unjournaled_from;
        if dropped_before > self.stored_offset() {
            self.sync_to(dropped_before).await?;
        }
        match j.make_durable(self, offset).await {
            Ok(()) => Ok(()),
            // The journal could not take the step (no room for its next
            // file, say): the segment's own sync makes the batches durable.
            Err(e) => {
                self.check_usable()?;
                tracing::debug!(dir = %self.inner.dir.display(), error = %e, "journal step failed; syncing the segment instead");
                self.sync_to(offset).await
            }
        }
    }

    async fn append_unsynced(&self, batch: Bytes, header: BatchHeader) -> Result<AppendInfo> {
        self.append_at(batch, header, Stamp::Assigned, true).await
    }

    /// [`PartitionLog::append_validated_unsynced`] for a batch no one will
    /// wait on (acks=0 or 1 under a flush interval): not kept for the shard
    /// journal, whose queue would hold it (and the request it came in) until
    /// the segment's next sync; a later [`make_durable`](Self::make_durable)
    /// covering it syncs the segment instead.
    pub async fn append_validated_lazy(
        &self,
        batch: Bytes,
        header: BatchHeader,
    ) -> Result<AppendInfo> {
        debug_assert!(batch::check_integrity(&batch).is_ok());
        self.append_at(batch, header, Stamp::Assigned, false).await
    }

    async fn append_at(
        &self,
        batch: Bytes,
        header: BatchHeader,
        stamp: Stamp,
        for_journal: bool,
    ) -> Result<AppendInfo> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        inner.shared.borrow().usable()?;
        // Checked under the writer's lock, so no other append of the same
        // producer can come between the check and the append.
        let producer = ProducerBatch::of(&header);
        if let Some(b) = &producer {
            let verdict = inner.shared.borrow().producers.check(b);
            if let Verdict::Duplicate {
                base_offset,
                last_offset,
            } = verdict?
            {
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    max_timestamp: header.max_timestamp,
                    duplicate: true,
                });
            }
        }
        let len = batch.len() as u64;
        // No need to mark the checkpoint unclean first: a clean one holds
        // the active segment's exact size, which any write that lands
        // changes, and the next open then recovers from its recovery point.
        w.clean_on_disk = false;
        w.sealed_unsynced = None;
        if self.roll_due(len) {
            self.roll(&mut w, len).await?;
        }
        w.appender.reserve(len).await?;
        let (base_offset, epoch) = {
            let s = inner.shared.borrow();
            match stamp {
                Stamp::Assigned => (s.log_end_offset, s.leader_epoch),
                Stamp::Kept if header.base_offset == s.log_end_offset => {
                    (header.base_offset, header.leader_epoch)
                }
                Stamp::Kept => {
                    return Err(StorageError::NotContiguous {
                        base_offset: header.base_offset,
                        log_end_offset: s.log_end_offset,
                    })
                }
            }
        };
        // A new epoch is recorded before its first batch is written.
        let new_epoch = inner
            .shared
            .borrow_mut()
            .epochs
            .observe(epoch, base_offset)?;
        if new_epoch {
            self.save_epochs().await?;
        }
        let next_offset = base_offset + header.last_offset_delta as i64 + 1;
        let position = w.appender.position();
        let mut head = [0u8; 16];
        head.copy_from_slice(&batch[..16]);
        batch::set_base_offset(&mut head, base_offset);
        batch::set_leader_epoch(&mut head, epoch);
        if let Err(e) = w.appender.append(&[&head, &batch[16..]], next_offset).await {
            self.fail(&e);
            return Err(e);
        }
        let written_offset = w.appender.progress().written().1;
        let mut s = inner.shared.borrow_mut();
        let mut stored = header;
        stored.base_offset = base_offset;
        stored.leader_epoch = epoch;
        s.active_mut().record_batch(
            position,
            &stored,
            inner.config.borrow().index_interval_bytes,
        );
        s.log_end_offset = next_offset;
        if inner.journal.borrow().is_some() {
            s.unjournaled_bytes += batch.len();
            s.unjournaled.push_back(Pending {
                head,
                batch: batch.clone(),
                next_offset,
            });
            if !for_journal || s.unjournaled_bytes > UNJOURNALED_BYTES_MAX {
                s.forget_unjournaled(next_offset);
            }
        }
        s.cache.push(base_offset, next_offset, epoch, batch);
        s.cache.evict(written_offset);
        if let Some(b) = &producer {
            s.producers.record(b, base_offset);
        }
        s.last_append_ms = inner.disk.now_ms();
        s.idle_released = false;
        drop(s);
        self.ensure_flusher();
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp: header.max_timestamp,
            duplicate: false,
        })
    }

    fn roll_due(&self, incoming_bytes: u64) -> bool {
        let s = self.inner.shared.borrow();
        let config = self.inner.config.borrow();
        let active = s.active();
        // A compacted log also rolls by `max.compaction.lag.ms`: only closed
        // segments are cleaned.
        let age_max = match config.compaction {
            Some(c) => config.segment_ms.min(c.max_compaction_lag_ms),
            None => config.segment_ms,
        };
        !active.is_empty()
            && (active.size_bytes + incoming_bytes > config.segment_bytes
                || self.inner.disk.now_ms() - active.created_ms
                    >= age_max.min(i64::MAX as u64) as i64)
    }

    /// Records a fatal I/O failure: the log refuses further writes.
    fn fail(&self, e: &StorageError) {
        let reason = match e {
            StorageError::Failed { reason } => reason.clone(),
            other => other.to_string(),
        };
        tracing::error!(dir = %self.inner.dir.display(), %reason, "partition log failed");
        self.inner.shared.borrow_mut().failed.get_or_insert(reason);
        self.inner.durable.notify_all();
    }

    /// Makes every batch appended so far durable.
    pub async fn sync(&self) -> Result<()> {
        let target = self.log_end_offset();
        self.sync_to(target).await
    }

    /// Waits until every batch before `target` is durable, running the sync
    /// itself if no other task is (group commit: one sync covers everything
    /// appended before it started). The journal uses it for a retiring file
    /// and for big batches.
    pub(crate) async fn sync_to(&self, target: i64) -> Result<()> {
        let inner = &*self.inner;
        loop {
            let lead = {
                let mut s = inner.shared.borrow_mut();
                if s.durable_offset >= target {
                    return Ok(());
                }
                if let Some(reason) = &s.failed {
                    return Err(StorageError::Failed {
                        reason: reason.clone(),
                    });
                }
                let lead = !s.syncing;
                s.syncing = true;
                lead
            };
            if lead {
                let result = self.sync_once().await;
                inner.shared.borrow_mut().syncing = false;
                inner.durable.notify_all();
                result?;
                continue;
            }
            inner
                .durable
                .wait_until(|| {
                    let s = inner.shared.borrow();
                    (s.durable_offset >= target || !s.syncing || s.failed.is_some()).then_some(())
                })
                .await;
        }
    }

    async fn sync_once(&self) -> Result<()> {
        let (file, written) = self.write_out().await?;
        self.sync_names().await?;
        let started = std::time::Instant::now();
        let synced = file.fdatasync().await;
        crate::sync_stats::record(crate::sync_stats::SyncKind::Segment, started);
        if let Err(e) = synced {
            let e = StorageError::Failed {
                reason: format!("fdatasync failed: {e}"),
            };
            self.fail(&e);
            return Err(e);
        }
        self.mark_durable(written, true).await
    }

    /// Writes out what was appended and waits until the device has it;
    /// returns the active segment's file and what syncing it makes durable.
    async fn write_out(&self) -> Result<(Rc<D::File>, WrittenOut)> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        if inner.shared.borrow().closed {
            return Err(StorageError::Closed);
        }
        let (position, offset) = w.appender.flush().await?;
        let segment_base = inner.shared.borrow().active().base_offset;
        let (progress, file) = (w.appender.progress(), w.appender.file().clone());
        drop(w);
        progress.wait_written(position).await?;
        Ok((
            file,
            WrittenOut {
                offset,
                segment_base,
                position,
            },
        ))
    }

    /// For a sync of the whole filesystem (see [`Disk::sync_filesystem`]):
    /// writes out what was appended if the log is not durable up to
    /// `target`; the answer goes to [`mark_durable`](Self::mark_durable)
    /// once the filesystem is synced. `None`: nothing to do.
    pub(crate) async fn write_out_before_fs_sync(&self, target: i64) -> Result<Option<WrittenOut>> {
        {
            let s = self.inner.shared.borrow();
            if s.durable_offset >= target || s.closed {
                // A closed log synced itself when it closed.
                return Ok(None);
            }
            s.usable()?;
        }
        Ok(Some(self.write_out().await?.1))
    }

    /// What was written out is on stable storage: the log is durable up to
    /// it, and its checkpoint follows when due — synced, or left for the
    /// next filesystem sync (until then the slot before it stands).
    pub(crate) async fn mark_durable(
        &self,
        written: WrittenOut,
        sync_checkpoint: bool,
    ) -> Result<()> {
        let inner = &*self.inner;
        let WrittenOut {
            offset,
            segment_base,
            position,
        } = written;
        let advanced = {
            let mut s = inner.shared.borrow_mut();
            let advanced = offset > s.durable_offset;
            if advanced {
                s.durable_offset = offset;
                s.durable_position = (segment_base, position);
            }
            // Synced in the segment: the journal need not take them.
            while s
                .unjournaled
                .front()
                .is_some_and(|p| p.next_offset <= offset)
            {
                let p = s.unjournaled.pop_front().expect("front");
                s.unjournaled_bytes -= p.batch.len();
            }
            advanced
        };
        inner.durable.notify_all();
        if !advanced {
            return Ok(());
        }
        // Without the writer's lock: appends go on while the checkpoint is
        // written and synced (holding it, that write stalled every request
        // with a batch for this partition, and the requests behind them on
        // their connections: in many-partitions-1000, appends waited 0.4 s
        // of every 2 s for it with acks=all, 1.8 s with acks=1).
        let mut c = inner.checkpointer.lock().await;
        // Not if the newest checkpoint already holds this recovery point (a
        // park meanwhile left a clean one, which an unclean one would
        // replace).
        let due = inner.disk.now_ms() - c.last_ms
            >= inner.config.borrow().checkpoint_interval_ms as i64
            && inner.shared.borrow().durable_offset > c.recovery_point;
        if due {
            self.write_checkpoint_slot(&mut c, false, sync_checkpoint)
                .await?;
        }
        Ok(())
    }

    /// Persists the checkpoint (log start, recovery point, clean flag) in the
    /// next of its two slots.
    async fn write_checkpoint(&self, w: &mut Writer<D>, clean: bool) -> Result<()> {
        self.write_checkpoint_then(w, clean, true).await
    }

    /// Writes a checkpoint, synced unless a later filesystem sync covers it
    /// (closing many logs: see [`PartitionLog::close_begin`]).
    async fn write_checkpoint_then(
        &self,
        w: &mut Writer<D>,
        clean: bool,
        sync: bool,
    ) -> Result<()> {
        let mut c = self.inner.checkpointer.lock().await;
        self.write_checkpoint_slot(&mut c, clean, sync).await?;
        w.clean_on_disk = clean;
        if !clean {
            w.sealed_unsynced = None;
        }
        Ok(())
    }

    /// Writes the log's state as it is now into the next checkpoint slot.
    async fn write_checkpoint_slot(
        &self,
        c: &mut Checkpointer<D>,
        clean: bool,
        sync: bool,
    ) -> Result<()> {
        let inner = &*self.inner;
        let checkpoint = {
            let s = inner.shared.borrow();
            let active = s.active();
            Checkpoint {
                seq: c.seq + 1,
                clean,
                log_start_offset: s.log_start_offset,
                recovery_point: s.durable_offset,
                recovery_segment: s.durable_position.0,
                recovery_position: s.durable_position.1,
                log_end_offset: s.log_end_offset,
                active_size_bytes: active.size_bytes,
                hard_state: s.hard_state,
            }
        };
        if sync {
            self.sync_names().await?;
        }
        let mut buf = c.file.alloc_buffer(SLOT_BYTES);
        buf.as_bytes_mut().copy_from_slice(&checkpoint.encode());
        let at = (checkpoint.slot() * SLOT_BYTES) as u64;
        let result = match c.file.write_at(buf, at).await {
            Ok(_) if !sync => Ok(()),
            Ok(_) => c
                .file
                .fdatasync()
                .await
                .map_err(|e| format!("checkpoint fdatasync failed: {e}")),
            Err(e) => Err(format!("checkpoint write failed: {e}")),
        };
        if let Err(reason) = result {
            let e = StorageError::Failed { reason };
            self.fail(&e);
            return Err(e);
        }
        c.seq = checkpoint.seq;
        c.last_ms = inner.disk.now_ms();
        c.recovery_point = checkpoint.recovery_point;
        Ok(())
    }

    /// Writes out everything appended to the active segment, cuts its file
    /// to the exact data size (freeing space reserved ahead) and syncs it.
    /// Returns the (position, offset) it covers. A failure here fails the log.
    async fn seal_active_file(&self, w: &mut Writer<D>) -> Result<(u64, i64)> {
        self.seal_active_file_then(w, true).await
    }

    /// [`seal_active_file`](Self::seal_active_file), synced unless a later
    /// filesystem sync covers it ([`PartitionLog::close_begin`]).
    async fn seal_active_file_then(&self, w: &mut Writer<D>, sync: bool) -> Result<(u64, i64)> {
        let (position, offset) = w.appender.flush().await?;
        w.appender.progress().wait_written(position).await?;
        w.appender.finish_reserving().await;
        let file = w.appender.file().clone();
        if sync {
            self.sync_names().await?;
        }
        let sealed = async {
            file.truncate(position).await?;
            if sync {
                file.fdatasync().await?;
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = sealed {
            let e = StorageError::Failed {
                reason: format!("syncing the active segment failed: {e}"),
            };
            self.fail(&e);
            return Err(e);
        }
        Ok((position, offset))
    }

    /// Seals the active segment and starts a new one at the log end. The new
    /// file is created and reserved first, so a full disk leaves the current
    /// segment active and untouched.
    async fn roll(&self, w: &mut Writer<D>, incoming_bytes: u64) -> Result<()> {
        let inner = &*self.inner;
        let new_base = inner.shared.borrow().log_end_offset;
        let path = segment::log_path(&inner.dir, new_base);
        let file = Rc::new(segment::open_rw(&inner.disk, &path).await?);
        file.truncate(0)
            .await
            .map_err(|e| StorageError::io("preparing a new segment", e))?;
        let appender_cfg = appender_config(&inner.config.borrow());
        let mut appender = Appender::resume(file.clone(), 0, new_base, appender_cfg).await?;
        if let Err(e) = appender.reserve(incoming_bytes).await {
            drop(appender);
            let _ = file.remove().await;
            return Err(e);
        }
        sync_dir(&inner.disk, &inner.dir).await?;

        let (position, _) = self.seal_active_file(w).await?;
        {
            let mut s = inner.shared.borrow_mut();
            let old = s.active_mut();
            old.progress = None;
            debug_assert_eq!(old.size_bytes, position);
        }
        let (sealed_base, index, time_index) = {
            let s = inner.shared.borrow();
            let (index, time_index) = s.active().index_files();
            (s.active().base_offset, index, time_index)
        };
        // Indexes are rebuilt from the log if missing, so failing to write
        // them (a full disk) must not stop the roll half way.
        if let Err(e) =
            segment::write_index_files(&inner.disk, &inner.dir, sealed_base, &index, &time_index)
                .await
        {
            tracing::warn!(dir = %inner.dir.display(), segment = sealed_base, error = %e, "could not write segment indexes");
        }
        {
            let mut s = inner.shared.borrow_mut();
            let mut seg = Segment::new(new_base, file, inner.disk.now_ms());
            seg.progress = Some(appender.progress());
            s.segments.insert(new_base, seg);
            s.durable_offset = new_base;
            s.durable_position = (new_base, 0);
        }
        w.appender = appender;
        inner.durable.notify_all();
        self.snapshot_producers(w).await;
        self.write_checkpoint(w, false).await
    }

    /// What a consumer is sent for a fetch at `offset`: [`read`](Self::read),
    /// except that batches holding no records (the empty batches compaction
    /// leaves to keep a segment's end or a producer's state) are stepped
    /// over to the next segment while nothing else is found before the log
    /// end. A reply of empty batches alone gives a consumer nothing to take,
    /// and librdkafka before 2.1 treats ten such replies in a row as a
    /// record too large to fetch; Kafka never sends one while records follow.
    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let mut at = offset;
        loop {
            let data = self.read(at, max_bytes).await?;
            let Some(next) = rill_record::header::next_offset_after_empty(&data) else {
                return Ok(data);
            };
            if next >= self.log_end_offset() {
                return Ok(data);
            }
            at = next;
        }
    }

    /// Whole batches starting with the one that contains `offset`, up to
    /// `max_bytes` (at least one batch, however large, as Kafka does). Reading
    /// at the log end returns nothing; outside the log is an error.
    ///
    /// A read from disk that ends before the log does starts the read that
    /// will follow it ([`crate::read_ahead`]); a read that was started so is
    /// answered with what it read.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let (taken, stream, layout) = {
            let mut s = self.inner.shared.borrow_mut();
            if s.at_end_or_out_of_range(offset)? {
                return Ok(Bytes::new());
            }
            if let Some(hit) = s.cache.read(offset, max_bytes) {
                return Ok(hit);
            }
            let layout = s.layout;
            let taken = s.read_ahead.take(offset, layout);
            let stream = match &taken.hit {
                Some(p) => p.stream,
                None => s.read_ahead.new_stream(),
            };
            (taken, stream, layout)
        };
        drop(taken.stale);
        let prepared = match taken.hit {
            // A prepared read that failed (a closed file, say) is read again.
            Some(p) => {
                let finished = p.is_finished();
                crate::read_ahead::count(|o| {
                    if finished {
                        o.ready += 1
                    } else {
                        o.waited += 1
                    }
                });
                p.wait().await.ok().filter(|data| !data.is_empty())
            }
            None => {
                crate::read_ahead::count(|o| o.missed += 1);
                None
            }
        };
        let (data, rest) = match prepared {
            // Read larger than this request (a stream reads at least
            // `read_ahead::READ_MIN` at a time, a fetch of several partitions
            // shares its bytes among them): as much as this one may take,
            // and the rest kept for the stream's next read.
            Some(read) => {
                let data = whole_batches_within(read.clone(), max_bytes);
                let rest = (data.len() < read.len()).then(|| read.slice(data.len()..));
                (data, rest)
            }
            None => (self.read_from_disk(offset, max_bytes).await?, None),
        };
        let next = rill_record::header::next_offset_after(&data);
        if let (Some(next), Some(rest)) = (next, rest) {
            self.keep_rest(stream, (next, layout), rest);
        }
        self.read_ahead(stream, next.map(|next| (next, layout)), max_bytes);
        Ok(data)
    }

    /// Keeps `rest` (whole batches read ahead under `layout`, past what a
    /// request took) as a finished read of `stream` at `offset`, where the
    /// reader asks next, if the log's layout is still that one, nothing is
    /// prepared there and the shard has room for it.
    fn keep_rest(&self, stream: u64, (offset, layout): (i64, u64), rest: Bytes) {
        {
            let s = self.inner.shared.borrow();
            if s.layout != layout || s.closed || s.read_ahead.has(offset) {
                return;
            }
        }
        let Some(reservation) = Prepared::reserve(rest.len()) else {
            return;
        };
        let at = (offset, layout, self.inner.disk.now_ms(), stream);
        let kept = Prepared::start(at, reservation, |end| async move {
            end.set(Some(&rest));
            Ok(rest)
        });
        let evicted = self.inner.shared.borrow_mut().read_ahead.insert(kept);
        drop(evicted);
    }

    /// Tops `stream` up to its [`depth`](crate::read_ahead::depth) of reads
    /// prepared ahead, each of [`read_bytes`](crate::read_ahead::read_bytes)
    /// for a reader asking `max_bytes`: starts the read that follows the
    /// last one prepared (once that one has read), or, with none prepared,
    /// the read at `after` (where the batches just read end, and the layout
    /// they were read under: one changed since makes it mean nothing). Each
    /// prepared read tops its stream up again when it ends. Nothing is
    /// started past what is on disk, twice for one offset, on a closed log,
    /// or past the shard's bound.
    fn read_ahead(&self, stream: u64, after: Option<(i64, u64)>, max_bytes: usize) {
        let read_bytes = crate::read_ahead::read_bytes(max_bytes);
        let (next, layout, started_ms) = {
            let s = self.inner.shared.borrow();
            if s.read_ahead.starting
                || s.read_ahead.ahead(stream) >= crate::read_ahead::depth(read_bytes)
            {
                return;
            }
            let next = match s.read_ahead.last_of(stream) {
                // Read before truncation, retention or cleaning changed the
                // log: where it ends means nothing now (the reader's next
                // take drops it).
                Some(last) if last.layout != s.layout => return,
                // Still reading: its end tops the stream up.
                Some(last) if !last.is_finished() => return,
                Some(last) => last.follows(),
                None => after
                    .filter(|&(_, read_under)| read_under == s.layout)
                    .map(|(next, _)| next),
            };
            let Some(next) = next else { return };
            let on_disk_past = next < s.log_end_offset
                && s.cache.first_offset().is_none_or(|cached| next < cached);
            if !on_disk_past || s.closed || s.read_ahead.has(next) {
                return;
            }
            (next, s.layout, self.inner.disk.now_ms())
        };
        let Some(reservation) = Prepared::reserve(read_bytes) else {
            return;
        };
        let log = self.clone();
        let at = (next, layout, started_ms, stream);
        // glommio runs a new task at once, inside `spawn_local`, so the read
        // is submitted now; a read the disk answers at once ends inside it
        // too, and its end must not start the next one there (each inside
        // the last, to the log's end): it finds `starting` set and leaves
        // the stream to its reader.
        self.inner.shared.borrow_mut().read_ahead.starting = true;
        let prepared = Prepared::start(at, reservation, |end| async move {
            if log.is_closed() {
                end.set(None);
                return Err(StorageError::Closed);
            }
            let read = log.read_from_disk(next, read_bytes).await;
            end.set(read.as_deref().ok());
            log.read_ahead(stream, end.follows().map(|f| (f, layout)), max_bytes);
            read
        });
        let evicted = {
            let mut s = self.inner.shared.borrow_mut();
            s.read_ahead.starting = false;
            s.read_ahead.insert(prepared)
        };
        drop(evicted);
    }

    /// [`read`](Self::read) from the segment files, past the cache.
    async fn read_from_disk(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let inner = &*self.inner;
        let (file, base, position, end) = {
            let s = inner.shared.borrow();
            if s.at_end_or_out_of_range(offset)? {
                return Ok(Bytes::new());
            }
            let seg = s
                .segments
                .range(..=offset)
                .next_back()
                .map(|(_, seg)| seg)
                .expect("offset is in the log");
            let position = if offset < seg.next_offset {
                seg.index.lookup((offset - seg.base_offset) as u32) as u64
            } else {
                0
            };
            // Compaction removed the batches from `offset` to this segment's
            // end: the next batch is the first of the next segment.
            let seg = if offset < seg.next_offset {
                seg
            } else {
                s.segments
                    .range(offset + 1..)
                    .next()
                    .map(|(_, seg)| seg)
                    .expect("the active segment holds the log end")
            };
            (
                seg.file.clone(),
                seg.base_offset,
                position,
                seg.readable_end(),
            )
        };
        let batch_bytes_max = inner.config.borrow().batch_bytes_max;
        let found = segment::read_batches(
            &*file,
            base,
            position,
            end,
            offset,
            max_bytes,
            batch_bytes_max,
        )
        .await?;
        found.ok_or(StorageError::Corrupt {
            segment_base: base,
            position: end,
            cause: crate::scan::ScanError::Truncated,
        })
    }

    /// The first record whose timestamp is at or after `timestamp` (Kafka's
    /// ListOffsets by time), or `None` when every record is older. Exact for
    /// every codec: the batch holding the answer is decompressed.
    pub async fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>> {
        let mut offset = {
            let s = self.inner.shared.borrow();
            let Some(seg) = s
                .segments
                .values()
                .find(|seg| seg.max_timestamp >= timestamp)
            else {
                return Ok(None);
            };
            (seg.base_offset + seg.time_index.scan_start(timestamp) as i64).max(s.log_start_offset)
        };
        loop {
            if offset >= self.log_end_offset() {
                return Ok(None);
            }
            let data = self.read(offset, 256 << 10).await?;
            let mut at = 0;
            while at < data.len() {
                let header = BatchHeader::parse(&data[at..])?;
                let whole = &data[at..at + header.total_len()];
                at += header.total_len();
                if header.next_offset() <= offset {
                    continue;
                }
                // A compacted batch keeps its max timestamp even when the
                // record that had it is gone: no record here qualifies then.
                let found = (header.max_timestamp >= timestamp)
                    .then(|| batch::first_record_at_or_after(whole, timestamp))
                    .flatten()
                    .map(|(o, ts)| TimestampOffset {
                        offset: o,
                        timestamp: ts,
                    });
                if let Some(found) = found {
                    let start = self.log_start_offset();
                    return Ok(Some(TimestampOffset {
                        offset: found.offset.max(start),
                        ..found
                    }));
                }
                offset = header.next_offset();
            }
        }
    }
}

impl<D: Disk> PartitionLog<D> {
    /// Makes the names of a log its open made without syncing durable (see
    /// `Inner::names_unsynced`): its files' entries in its directory and
    /// the directory's in its parent.
    pub(super) async fn sync_names(&self) -> Result<()> {
        let inner = &*self.inner;
        if !inner.names_unsynced.get() {
            return Ok(());
        }
        sync_dir(&inner.disk, &inner.dir).await?;
        if let Some(parent) = inner.dir.parent() {
            sync_dir(&inner.disk, parent).await?;
        }
        inner.names_unsynced.set(false);
        Ok(())
    }
}

/// Makes directory entries (new or removed segment files) durable.
async fn sync_dir(disk: &impl Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir)
        .await
        .map_err(|e| StorageError::io("syncing the log directory", e))
}

/// How an append sets a batch's base offset and leader epoch.
#[derive(Clone, Copy)]
enum Stamp {
    /// The next offsets and this log's epoch (a leader, or a single broker).
    Assigned,
    /// As the batch has them (a replica copying its leader).
    Kept,
}
