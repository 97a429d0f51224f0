//! Operations that reshape the log: truncation (for replication), moving the
//! log start (DeleteRecords, retention) and clean shutdown.

use std::rc::Rc;

use super::open::remove_segment_files as remove_files;
use super::{appender_config, sync_dir, PartitionLog};
use crate::appender::Appender;
use crate::error::{Result, StorageError};
use crate::io::{Disk, SegmentFile};
use crate::retention::{self, SegmentFacts};
use crate::scan::ScanStop;
use crate::segment::{self, RangeScan, Seen};

/// What a retention pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub log_start_offset: i64,
}

/// What [`PartitionLog::park_begin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Park {
    /// Appended to within the idle time, parked already, or with writes
    /// still in flight: nothing done.
    NotIdle,
    /// Parked; it was clean on disk already.
    Parked,
    /// Parked, its active segment written out but not synced:
    /// [`PartitionLog::park_end`] after a sync of its filesystem.
    AwaitsSync,
}

impl<D: Disk> PartitionLog<D> {
    /// Removes every batch at or after `offset`, which must be the start of a
    /// batch (or the log end). Durable before it returns. Replication uses it
    /// to drop a divergent suffix; it never goes below the log start.
    pub async fn truncate_to(&self, offset: i64) -> Result<()> {
        let inner = &*self.inner;
        if inner.journal.borrow().is_some() {
            // A replay would give back batches the journal holds from before
            // the cut: a journaled log would need a cut record first.
            return Err(StorageError::Failed {
                reason: "truncating a log that writes through a shard journal is not supported"
                    .to_string(),
            });
        }
        let mut w = inner.writer.lock().await;
        let (log_start, log_end) = {
            let s = inner.shared.borrow();
            s.usable()?;
            (s.log_start_offset, s.log_end_offset)
        };
        if offset >= log_end {
            return Ok(());
        }
        if offset < log_start {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: log_start,
                log_end_offset: log_end,
            });
        }
        // Let every write land so the files are stable before cutting them.
        let (position, _) = w.appender.flush().await?;
        w.appender.progress().wait_written(position).await?;

        let (base, file, hint, end) = {
            let s = inner.shared.borrow();
            let seg = s
                .segments
                .range(..=offset)
                .next_back()
                .map(|(_, seg)| seg)
                .expect("offset is in the log");
            let hint = seg.index.floor((offset - seg.base_offset) as u32);
            (seg.base_offset, seg.file.clone(), hint, seg.size_bytes)
        };
        let (hint_offset, hint_position) = hint
            .map(|e| (base + e.relative_offset as i64, e.position as u64))
            .unwrap_or((base, 0));
        let batch_bytes_max = inner.config.borrow().batch_bytes_max;
        let cut = find_batch_start(
            &file,
            base,
            hint_position,
            hint_offset,
            end,
            offset,
            batch_bytes_max,
        )
        .await?;

        // Destructive part: later segments go, this one is cut and becomes active.
        let removed: Vec<i64> = {
            let mut s = inner.shared.borrow_mut();
            // Reads prepared ahead may hold what is cut.
            s.layout += 1;
            let later: Vec<i64> = s.segments.range(base + 1..).map(|(b, _)| *b).collect();
            for b in &later {
                s.segments.remove(b);
            }
            later
        };
        for b in &removed {
            remove_files(&inner.disk, &inner.dir, *b);
        }
        let _ = inner
            .disk
            .remove_file(&segment::index_path(&inner.dir, base));
        let _ = inner
            .disk
            .remove_file(&segment::time_index_path(&inner.dir, base));
        let cut_result = async {
            file.truncate(cut).await?;
            file.fdatasync().await
        }
        .await;
        if let Err(e) = cut_result {
            let e = StorageError::Failed {
                reason: format!("truncating a segment failed: {e}"),
            };
            self.fail(&e);
            return Err(e);
        }
        sync_dir(&inner.disk, &inner.dir).await?;

        let max_timestamp = recompute_max_timestamp(self, base, cut).await?;
        let appender_cfg = appender_config(&inner.config.borrow());
        let appender = Appender::resume(file, cut, offset, appender_cfg).await?;
        {
            let mut s = inner.shared.borrow_mut();
            let seg = s.segments.get_mut(&base).expect("segment kept");
            seg.truncate_indexes_from((offset - base) as u32);
            seg.size_bytes = cut;
            seg.next_offset = offset;
            seg.max_timestamp = max_timestamp;
            seg.progress = Some(appender.progress());
            s.log_end_offset = offset;
            s.durable_offset = offset;
            s.durable_position = (base, cut);
            s.cache.truncate_from(offset);
            // The cut segment is active again: nothing in it is clean.
            s.cleaner.cleaned_to = s.cleaner.cleaned_to.min(offset);
            s.cleaner.cleaned_at.remove(&base);
        }
        w.appender = appender;
        self.save_cleaner_state().await;
        // The producers' last batches may be among those cut: the state as
        // of the new end, from a snapshot and the log (Kafka does the same).
        let producers = self.rebuild_producers(offset).await?;
        inner.shared.borrow_mut().producers = producers;
        let cut_epochs = inner.shared.borrow_mut().epochs.truncate_end(offset);
        if cut_epochs {
            self.save_epochs().await?;
        }
        self.write_checkpoint(&mut w, false).await
    }

    /// Moves the log start to `offset` (Kafka DeleteRecords): earlier records
    /// are no longer served and whole segments below it are deleted. Returns
    /// the new log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        {
            let s = inner.shared.borrow();
            s.usable()?;
            if offset > s.log_end_offset || offset < 0 {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: s.log_start_offset,
                    log_end_offset: s.log_end_offset,
                });
            }
            if offset <= s.log_start_offset {
                return Ok(s.log_start_offset);
            }
        }
        self.move_log_start(&mut w, offset).await?;
        Ok(offset)
    }

    /// Deletes closed segments past `retention_ms` (by their newest record)
    /// or beyond `retention_bytes`; never the active segment.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        let new_start = {
            let s = inner.shared.borrow();
            s.usable()?;
            let closed: Vec<(i64, SegmentFacts)> = s
                .segments
                .values()
                .take(s.segments.len() - 1)
                .map(|seg| {
                    (
                        seg.base_offset,
                        SegmentFacts {
                            size_bytes: seg.size_bytes,
                            max_timestamp: seg.max_timestamp,
                        },
                    )
                })
                .collect();
            let facts: Vec<SegmentFacts> = closed.iter().map(|(_, f)| *f).collect();
            let n = retention::segments_to_delete(
                &facts,
                s.active().size_bytes,
                now_ms,
                inner.config.borrow().retention_ms,
                inner.config.borrow().retention_bytes,
            );
            if n == 0 {
                return Ok(RetentionOutcome {
                    segments_deleted: 0,
                    log_start_offset: s.log_start_offset,
                });
            }
            let first_kept = s
                .segments
                .keys()
                .nth(n)
                .copied()
                .expect("the active segment is kept");
            first_kept.max(s.log_start_offset)
        };
        let deleted = self.move_log_start(&mut w, new_start).await?;
        Ok(RetentionOutcome {
            segments_deleted: deleted,
            log_start_offset: new_start,
        })
    }

    /// Records the new log start durably, then deletes segments wholly below it.
    async fn move_log_start(&self, w: &mut super::Writer<D>, offset: i64) -> Result<usize> {
        let inner = &*self.inner;
        {
            let mut s = inner.shared.borrow_mut();
            s.log_start_offset = offset;
            s.cache.discard_before(offset);
            s.producers.evict_before(offset);
        }
        self.write_checkpoint(w, false).await?;
        // Derived data: a crash before this only leaves older epochs that
        // the next open cuts.
        let moved = inner.shared.borrow_mut().epochs.truncate_start(offset);
        if moved {
            self.save_epochs().await?;
        }
        let doomed: Vec<i64> = {
            let mut s = inner.shared.borrow_mut();
            let last = *s.segments.keys().next_back().expect("active");
            let doomed: Vec<i64> = s
                .segments
                .values()
                .filter(|seg| seg.base_offset != last && seg.next_offset <= offset)
                .map(|seg| seg.base_offset)
                .collect();
            for b in &doomed {
                s.segments.remove(b);
            }
            doomed
        };
        for b in &doomed {
            remove_files(&inner.disk, &inner.dir, *b);
        }
        if !doomed.is_empty() {
            sync_dir(&inner.disk, &inner.dir).await?;
            tracing::info!(dir = %inner.dir.display(), segments = doomed.len(), log_start = offset, "deleted segments");
        }
        Ok(doomed.len())
    }

    /// Clean shutdown: everything written and synced, the active segment cut
    /// to its exact size with its indexes on disk, and a clean checkpoint, so
    /// the next open skips recovery. Further operations fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        {
            let s = inner.shared.borrow();
            if s.closed {
                return Ok(());
            }
            s.usable()?;
        }
        if !w.clean_on_disk {
            self.seal(&mut w).await?;
        }
        // A log this process made and never synced: its next open must not
        // take an unsynced clean checkpoint for a durable one.
        self.sync_names().await?;
        let prepared = {
            let mut s = inner.shared.borrow_mut();
            s.closed = true;
            s.read_ahead.take_all()
        };
        drop(prepared);
        inner.durable.notify_all();
        Ok(())
    }

    /// The active segment's index files and the producers' snapshot, unless
    /// small enough for a clean open to rebuild with one read
    /// ([`SMALL_SEGMENT_BYTES`](super::open::SMALL_SEGMENT_BYTES)).
    async fn write_sealed_files(&self, w: &super::Writer<D>) {
        let inner = &*self.inner;
        let small = super::open::SMALL_SEGMENT_BYTES;
        let (base, files) = {
            let s = inner.shared.borrow();
            let active = s.active();
            (
                active.base_offset,
                (active.size_bytes > small).then(|| active.index_files()),
            )
        };
        if let Some((index, time_index)) = files {
            if let Err(e) =
                segment::write_index_files(&inner.disk, &inner.dir, base, &index, &time_index).await
            {
                // The next open rebuilds them by scanning; not worth failing the close.
                tracing::warn!(dir = %inner.dir.display(), segment = base, error = %e, "could not write segment indexes");
            }
        }
        if self.size_bytes() > small {
            self.snapshot_producers(w).await;
        }
    }

    /// Parks an idle log: writes what a clean stop writes (so a stop or a
    /// restart has nothing to do for it) and gives back what it holds — its
    /// write buffer, its cache of recent batches, the disk reserved past its
    /// data — if nothing was appended in the last `idle_ms` (and it was not
    /// parked since). Returns whether it did. The next append allocates a
    /// small buffer and reads the tail block back; readers read from the
    /// segment. One log on its own: [`park_begin`](Self::park_begin), a
    /// sync of the filesystem, [`park_end`](Self::park_end).
    pub async fn release_idle(&self, idle_ms: i64) -> Result<bool> {
        match self.park_begin(idle_ms).await? {
            Park::NotIdle => Ok(false),
            Park::Parked => Ok(true),
            Park::AwaitsSync => {
                let synced = self.inner.disk.sync_filesystem(&self.inner.dir).await;
                synced.map_err(|e| StorageError::io("syncing a parked log", e))?;
                self.park_end().await?;
                Ok(true)
            }
        }
    }

    /// First step of parking many idle logs with two filesystem syncs in
    /// all instead of two `fdatasync`s each (see [`release_idle`](Self::release_idle)):
    /// gives back what the log holds and, unless it is clean on disk
    /// already, writes out its active segment cut to its size, syncing
    /// nothing. The log stays open for appends throughout.
    pub async fn park_begin(&self, idle_ms: i64) -> Result<Park> {
        let now = self.inner.disk.now_ms();
        // Reads prepared for a reader that did not come back.
        let unused = self
            .inner
            .shared
            .borrow_mut()
            .read_ahead
            .take_older_than(now - idle_ms);
        drop(unused);
        {
            let s = self.inner.shared.borrow();
            if s.idle_released || now - s.last_append_ms < idle_ms || s.closed {
                return Ok(Park::NotIdle);
            }
        }
        let mut w = self.inner.writer.lock().await;
        self.check_usable()?;
        if self.inner.shared.borrow().last_append_ms > now - idle_ms {
            return Ok(Park::NotIdle); // appended while this waited for the lock
        }
        let seal = !w.clean_on_disk;
        if !w.appender.release_idle(seal).await? {
            return Ok(Park::NotIdle);
        }
        let park = if !seal {
            Park::Parked
        } else {
            self.seal_unsynced(&mut w).await?;
            Park::AwaitsSync
        };
        let mut s = self.inner.shared.borrow_mut();
        s.cache.clear();
        s.idle_released = true;
        Ok(park)
    }

    /// Second step of parking, after a sync of the log's filesystem: what
    /// [`park_begin`](Self::park_begin) wrote out is durable, and a clean
    /// checkpoint is written (not synced: until the next filesystem sync,
    /// the slot before it stands and an open recovers, as after a crash).
    /// Does nothing if the log was appended to in between (an append
    /// clears what the first step wrote out), nor once it is closing (the
    /// stop's own second step finishes it).
    pub async fn park_end(&self) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        // The filesystem sync before this made the names durable too.
        self.inner.names_unsynced.set(false);
        if self.inner.shared.borrow().closed {
            return Ok(());
        }
        self.mark_sealed_clean(&mut w).await
    }

    /// First step of closing many logs with two filesystem syncs in all
    /// instead of two `fdatasync`s each (a broker stopping with 100,000
    /// partitions): writes out what was appended, cuts the active segment
    /// to its size and writes its small files, syncing nothing; the log is
    /// closed. Returns whether [`close_end`](Self::close_end) must follow
    /// (after a `syncfs` of the log's filesystem); a log left there is
    /// recovered at its next open, as after a crash.
    pub async fn close_begin(&self) -> Result<bool> {
        let inner = &*self.inner;
        let mut w = inner.writer.lock().await;
        {
            let s = inner.shared.borrow();
            if s.closed {
                return Ok(false);
            }
            s.usable()?;
        }
        // A log this process made and never synced has nothing to write
        // but needs the filesystem sync too (see `sync_names`).
        let needs_end = !w.clean_on_disk || inner.names_unsynced.get();
        if !w.clean_on_disk {
            self.seal_unsynced(&mut w).await?;
        }
        let prepared = {
            let mut s = inner.shared.borrow_mut();
            s.closed = true;
            s.read_ahead.take_all()
        };
        drop(prepared);
        inner.durable.notify_all();
        Ok(needs_end)
    }

    /// Second step (after a `syncfs`): the clean checkpoint, not synced —
    /// one more `syncfs` makes every log's durable.
    pub async fn close_end(&self) -> Result<()> {
        let mut w = self.inner.writer.lock().await;
        self.inner.names_unsynced.set(false);
        self.mark_sealed_clean(&mut w).await
    }

    /// The first step of a close or park: writes out what was appended,
    /// cuts the active segment to its size and writes its small files,
    /// syncing nothing; [`mark_sealed_clean`](Self::mark_sealed_clean)
    /// follows a sync of the filesystem.
    async fn seal_unsynced(&self, w: &mut super::Writer<D>) -> Result<()> {
        let sealed = self.seal_active_file_then(w, false).await?;
        self.write_sealed_files(w).await;
        w.sealed_unsynced = Some(sealed);
        Ok(())
    }

    /// The second step, after the filesystem sync: what
    /// [`seal_unsynced`](Self::seal_unsynced) wrote out (unless an append or
    /// an unclean checkpoint came since) is durable, and a clean checkpoint
    /// says so, not synced — one more filesystem sync makes it durable.
    async fn mark_sealed_clean(&self, w: &mut super::Writer<D>) -> Result<()> {
        let inner = &*self.inner;
        let Some((position, offset)) = w.sealed_unsynced.take() else {
            return Ok(());
        };
        {
            let mut s = inner.shared.borrow_mut();
            if offset > s.durable_offset {
                s.durable_offset = offset;
                let base = s.active().base_offset;
                s.durable_position = (base, position);
            }
        }
        inner.durable.notify_all();
        self.write_checkpoint_then(w, true, false).await
    }

    /// Writes what a clean open needs: the active segment written, cut to
    /// its size and synced, its indexes, the producers' state and a clean
    /// checkpoint.
    pub(super) async fn seal(&self, w: &mut super::Writer<D>) -> Result<()> {
        let inner = &*self.inner;
        let (position, offset) = self.seal_active_file(w).await?;
        {
            let mut s = inner.shared.borrow_mut();
            s.durable_offset = offset;
            let base = s.active().base_offset;
            s.durable_position = (base, position);
        }
        self.write_sealed_files(w).await;
        self.write_checkpoint(w, true).await?;
        inner.durable.notify_all();
        Ok(())
    }
}

/// Read size that always holds at least one whole batch.
fn chunk(batch_bytes_max: usize) -> u64 {
    (1u64 << 20).max(2 * batch_bytes_max as u64)
}

/// File position of the batch that starts at `offset`, scanning from an
/// index hint; an offset inside a batch is refused.
async fn find_batch_start(
    file: &Rc<impl SegmentFile>,
    base: i64,
    position: u64,
    hint_offset: i64,
    end: u64,
    offset: i64,
    batch_bytes_max: usize,
) -> Result<u64> {
    let mut expected = Some(hint_offset);
    let mut found = None;
    let scanned = segment::scan_range(
        &**file,
        position,
        end,
        chunk(batch_bytes_max),
        &mut expected,
        batch_bytes_max,
        i64::MIN,
        |seen| match seen {
            Seen::Batch(b, _) if b.header.base_offset == offset => {
                found = Some(b.position);
                false
            }
            // Past it: `offset` is inside a batch.
            Seen::Batch(b, _) => b.header.next_offset() <= offset,
            Seen::NeedMore(_) => true,
        },
    )
    .await?;
    match (found, scanned) {
        (Some(p), _) => Ok(p),
        (None, RangeScan::Until(ScanStop::Invalid { position, error })) => {
            Err(StorageError::Corrupt {
                segment_base: base,
                position,
                cause: error,
            })
        }
        _ => Err(StorageError::NotBatchBoundary { offset }),
    }
}

/// Largest batch timestamp of a segment cut at `end`: the time index bounds
/// everything before its last entry, so only the batches after it are read.
async fn recompute_max_timestamp<D: Disk>(
    log: &PartitionLog<D>,
    base: i64,
    end: u64,
) -> Result<i64> {
    let (file, mut max_ts, start) = {
        let s = log.inner.shared.borrow();
        let seg = &s.segments[&base];
        let last_time = seg.time_index.entries().last().copied();
        let (ts, rel) = last_time
            .map(|e| (e.timestamp, e.relative_offset))
            .unwrap_or((-1, 0));
        let entry = seg.index.floor(rel);
        let start = entry
            .map(|e| (e.position as u64, base + e.relative_offset as i64))
            .unwrap_or((0, base));
        (seg.file.clone(), ts, start)
    };
    let (position, offset) = start;
    let batch_bytes_max = log.inner.config.borrow().batch_bytes_max;
    segment::scan_range(
        &*file,
        position,
        end,
        chunk(batch_bytes_max),
        &mut Some(offset),
        batch_bytes_max,
        i64::MIN,
        |seen| {
            if let Seen::Batch(b, _) = seen {
                max_ts = max_ts.max(b.header.max_timestamp);
            }
            true
        },
    )
    .await?;
    Ok(max_ts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{encode_uncompressed, RecordSpec};
    use crate::sim_disk::SimDisk;
    use crate::{FlushPolicy, LogConfig};

    fn one_record(value: &[u8]) -> bytes::Bytes {
        let spec = RecordSpec {
            timestamp_delta: 0,
            key: None,
            value: Some(value),
            headers: &[],
        };
        bytes::Bytes::from(encode_uncompressed(1_000, &[spec]))
    }

    /// A retiring journal file writes a log out, syncs the filesystem and
    /// then marks the log durable; a park that comes in between leaves a
    /// clean checkpoint, which the late mark must not replace with an
    /// unclean one (100,000 parked partitions were sealed again at stop).
    #[test]
    fn a_park_between_a_write_out_and_its_mark_stays_clean() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let disk = SimDisk::new();
                let config = LogConfig {
                    flush: FlushPolicy::Interval(std::time::Duration::from_secs(3600)),
                    checkpoint_interval_ms: 0,
                    ..LogConfig::default()
                };
                let log = PartitionLog::open_on(disk.clone(), "/p", config)
                    .await
                    .unwrap();
                let b = one_record(b"v");
                let header = crate::batch::validate(&b, 1 << 20).unwrap();
                let info = log.append_validated_unsynced(b, header).await.unwrap();
                let written = log
                    .write_out_before_fs_sync(info.last_offset + 1)
                    .await
                    .unwrap()
                    .expect("not durable yet");
                assert!(log.release_idle(0).await.unwrap(), "parked");
                assert!(log.inner.writer.lock().await.clean_on_disk);
                log.mark_durable(written, false).await.unwrap();
                assert!(
                    log.inner.writer.lock().await.clean_on_disk,
                    "the park's clean checkpoint was replaced"
                );
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
