//! Opening a log: loading closed segments from their index files (rebuilding
//! damaged ones), and recovering the active segment after an unclean stop.
//!
//! The rule that separates a torn tail from lost data: every batch below the
//! checkpoint's recovery point was fdatasynced. Invalid data past the recovery
//! point is an unfinished write and is cut; a log that cannot reach the
//! recovery point has lost synced data, and opening fails loudly instead of
//! truncating it (DESIGN.md §4).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::{Rc, Weak};

use super::{appender_config, sync_dir, Checkpointer, Inner, PartitionLog, Shared, Writer};
use crate::appender::Appender;
use crate::batch::BatchHeader;
use crate::checkpoint::{Checkpoint, FILE_BYTES};
use crate::config::{FlushPolicy, LogConfig};
use crate::error::{Result, StorageError};
use crate::io::{Disk, SegmentFile};
use crate::read_cache::ReadCache;
use crate::scan::ScanStop;
use crate::segment::{self, Segment};
use crate::signal::Signal;
use bytes::Bytes;

pub(super) const CHECKPOINT_FILE: &str = "checkpoint";

/// An active segment up to this size is sealed without index files and a
/// log up to this size without a producer snapshot: a clean open rebuilds
/// them with one read, and a partition with little data costs three disk
/// blocks (segment, checkpoint, directory), not six.
pub(crate) const SMALL_SEGMENT_BYTES: u64 = 1 << 20;

/// A log of one segment up to this size is read into its cache of recent
/// batches at open (see [`PartitionLog::seed_cache`]).
pub(super) const SEED_BYTES_MAX: u64 = 64 << 10;

pub(super) fn validate_config(config: &LogConfig) {
    assert!(
        config.segment_bytes >= 4096 && config.segment_bytes < (1 << 31),
        "segment_bytes must fit 32-bit positions"
    );
    assert!(config.batch_bytes_max as u64 <= config.segment_bytes.max(1 << 20) * 2);
    assert!(config.write_buffer_bytes >= 8192 && config.write_buffer_bytes.is_multiple_of(4096));
    assert!(config.writes_in_flight_max >= 1);
    assert!(config.index_interval_bytes >= 1);
}

async fn file_size(file: &impl SegmentFile) -> Result<u64> {
    file.file_size()
        .await
        .map_err(|e| StorageError::io("sizing a segment", e))
}

/// Whether a segment file starts with something other than zeros (a
/// batch's first bytes are its base offset and length, never all zero). A
/// file that cannot be read counts as holding one: opening it reports why.
/// Only a reservation leaves a file of zeros, and reservations end on a
/// block: a size off the block holds data without a read (a segment cut
/// to its data at a clean stop mostly ends off the block).
async fn holds_a_batch(disk: &impl Disk, path: &Path) -> bool {
    match disk.file_len(path).unwrap_or(0) {
        0 => return false,
        size if !size.is_multiple_of(crate::appender::ALIGN) => return true,
        _ => {}
    }
    let Ok(file) = disk.open_read(path).await else {
        return true;
    };
    let start = file.read_at(0, crate::batch::LOG_OVERHEAD).await;
    let _ = file.close().await;
    match start {
        Ok(bytes) => bytes.iter().any(|&b| b != 0),
        Err(_) => true,
    }
}

/// A rebuilt segment, where its valid data stops, and — when it is small
/// enough to seed the cache ([`SEED_BYTES_MAX`]) — its batches as the scan
/// read them, so the cache is seeded without reading the file again.
type Rebuilt<F> = (Segment<F>, ScanStop, Option<Vec<(BatchHeader, Bytes)>>);

/// Scans a segment, rebuilding its indexes and summary from the batches.
async fn rebuild<F: SegmentFile>(
    base: i64,
    file: Rc<F>,
    size: u64,
    config: &LogConfig,
    now: i64,
) -> Result<Rebuilt<F>> {
    let mut seg = Segment::new(base, file.clone(), now);
    let interval = config.index_interval_bytes;
    let mut kept = (size <= SEED_BYTES_MAX).then(Vec::new);
    let stop = segment::scan_file(&*file, base, size, config.batch_bytes_max, |b, bytes| {
        seg.record_batch(b.position, &b.header, interval);
        if let Some(kept) = &mut kept {
            kept.push((b.header, Bytes::copy_from_slice(bytes)));
        }
    })
    .await?;
    Ok((seg, stop, kept))
}

/// What opening does with damaged data below the recovery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnDamage {
    /// Refuse to open: the only copy must not be cut.
    Refuse,
    /// Cut the log at the first damaged batch and say where: a replica
    /// gets the lost batches back from its group.
    Truncate,
}

pub(super) async fn open<D: Disk>(
    disk: D,
    dir: &Path,
    config: LogConfig,
    on_damage: OnDamage,
) -> Result<(PartitionLog<D>, Option<i64>)> {
    validate_config(&config);
    let now = disk.now_ms();
    // One listing answers which files exist: 100,000 partitions open
    // without a failed open (or a second listing) for each file a small
    // log does not have. A new log's directory is made when the listing
    // finds none.
    let mut made_dir = false;
    let mut names = match disk.list_dir(dir) {
        Ok(names) => names,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            disk.create_dir_all(dir)
                .await
                .map_err(|e| StorageError::io("creating the log directory", e))?;
            made_dir = true;
            Vec::new()
        }
        Err(e) => return Err(StorageError::io("listing the log directory", e)),
    };
    if super::clean::recover_swaps(&disk, dir, &names).await? {
        names = disk
            .list_dir(dir)
            .map_err(|e| StorageError::io("listing the log directory", e))?;
    }
    let listing = Listing::new(&names);
    // Opened once, read through the handle the log keeps writing with.
    let checkpoint_path = dir.join(CHECKPOINT_FILE);
    let checkpoint_file = segment::open_rw(&disk, &checkpoint_path).await?;
    let checkpoint_bytes = if listing.has(&checkpoint_path) {
        let read = checkpoint_file
            .read_at(0, FILE_BYTES)
            .await
            .map_err(|e| StorageError::io("reading the checkpoint", e))?;
        Some(read.to_vec())
    } else {
        None
    };
    let checkpoint = checkpoint_bytes.as_deref().and_then(Checkpoint::newest);

    let mut bases: Vec<i64> = names
        .iter()
        .filter_map(|name| segment::parse_log_name(name))
        .collect();
    bases.sort_unstable();

    let log_start = checkpoint
        .map(|c| c.log_start_offset)
        .or(bases.first().copied())
        .unwrap_or(0);
    let mut tidied = false;
    // Segments wholly below the log start: retention or DeleteRecords moved the
    // start and stopped before deleting the files.
    while bases.len() > 1 && bases[1] <= log_start {
        remove_segment_files(&disk, dir, bases.remove(0));
        tidied = true;
    }
    // Empty trailing segments hold nothing: a roll that stopped half way
    // (its new file may have its size reserved already: zeros from the
    // start, no batch).
    while bases.len() > 1 {
        let last = *bases.last().expect("non-empty");
        if holds_a_batch(&disk, &segment::log_path(dir, last)).await {
            break;
        }
        remove_segment_files(&disk, dir, last);
        bases.pop();
        tidied = true;
    }
    if bases.is_empty() {
        bases.push(log_start);
    }

    // The first offset of damaged synced data (with `OnDamage::Truncate`).
    let mut damaged_at: Option<i64> = None;
    let mut segments = BTreeMap::new();
    for (i, &base) in bases.iter().enumerate().take(bases.len() - 1) {
        let file = Rc::new(segment::open_rw(&disk, &segment::log_path(dir, base)).await?);
        let size = file_size(&*file).await?;
        let seg = match listing.load_indexes(&disk, dir, base, size).await {
            Some((summary, index, time_index)) => {
                Segment::from_summary(base, file, summary, index, time_index, now)
            }
            None => {
                tracing::warn!(dir = %dir.display(), segment = base, "index missing or damaged, rebuilding");
                let (mut seg, stop, _) = rebuild(base, file, size, &config, now).await?;
                if stop.position() < size {
                    // A sealed segment was synced: this is damage, not a torn
                    // write. Keep the bytes; reads of the bad batch fail.
                    tracing::error!(
                        dir = %dir.display(), segment = base, position = stop.position(), ?stop,
                        "corrupt data in a closed segment; batches from here are unreadable"
                    );
                    damaged_at = damaged_at.or(Some(seg.next_offset));
                    seg.next_offset = bases[i + 1];
                    seg.size_bytes = size;
                }
                let (index, time_index) = seg.index_files();
                segment::write_index_files(&disk, dir, base, &index, &time_index).await?;
                seg
            }
        };
        segments.insert(base, seg);
    }

    let active_base = *bases.last().expect("at least one segment");
    let file = Rc::new(segment::open_rw(&disk, &segment::log_path(dir, active_base)).await?);
    let size = file_size(&*file).await?;
    let clean = match checkpoint {
        Some(c) if c.clean && c.active_size_bytes == size => {
            match listing
                .load_indexes(&disk, dir, active_base, size)
                .await
                .filter(|(summary, _, _)| summary.next_offset == c.log_end_offset)
            {
                Some((summary, index, time_index)) => Some((
                    Segment::from_summary(
                        active_base,
                        file.clone(),
                        summary,
                        index,
                        time_index,
                        now,
                    ),
                    None,
                )),
                // A small active segment is sealed without index files:
                // one read rebuilds them (and seeds the cache).
                None if size <= SMALL_SEGMENT_BYTES => {
                    let (seg, stop, kept) =
                        rebuild(active_base, file.clone(), size, &config, now).await?;
                    (stop.position() == size && seg.next_offset == c.log_end_offset)
                        .then_some((seg, kept))
                }
                None => None,
            }
        }
        _ => None,
    };
    // A clean stop left every file as the checkpoint says, and nothing was
    // tidied away above: opening then writes and syncs nothing (100,000
    // partitions start in seconds), and the files stay as they are until
    // the first append.
    let opened_clean = clean.is_some() && !tidied;
    // A new partition: nothing to recover, and its empty files are clean.
    let fresh = checkpoint.is_none() && size == 0 && segments.is_empty() && !tidied;
    // Made by this open: nothing in it needs a sync now. A crash leaves
    // no directory, or empty files, or a checkpoint that is whole or
    // unreadable: each opens as this empty log again. Creating 100,000
    // partitions then costs no sync each (it took three: the segment, the
    // directory and the checkpoint).
    let made = made_dir && fresh;
    let (mut active, kept) = match clean {
        Some(seg_and_kept) => seg_and_kept,
        None => {
            let (seg, damaged, kept) = recover_active(
                dir,
                active_base,
                file.clone(),
                size,
                checkpoint,
                &config,
                now,
                on_damage,
            )
            .await?;
            damaged_at = damaged_at.or(damaged);
            (seg, kept)
        }
    };
    if !opened_clean && !made {
        let _ = disk.remove_file(&segment::index_path(dir, active_base));
        let _ = disk.remove_file(&segment::time_index_path(dir, active_base));
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing the recovered segment", e))?;
        sync_dir(&disk, dir).await?;
    }

    let log_end = active.next_offset;
    let appender =
        Appender::resume(file, active.size_bytes, log_end, appender_config(&config)).await?;
    active.progress = Some(appender.progress());
    let active_size = active.size_bytes;
    segments.insert(active_base, active);
    let first_base = *segments.keys().next().expect("non-empty");

    if checkpoint_bytes.as_ref().map_or(0, Vec::len) < FILE_BYTES {
        checkpoint_file
            .pre_allocate(FILE_BYTES as u64, false)
            .await
            .map_err(|e| StorageError::io("allocating the checkpoint", e))?;
    }
    let mut cleaner = if listing.has(&dir.join(super::clean::STATE_FILE)) {
        super::clean::load_state(&disk, dir).await
    } else {
        Default::default()
    };
    cleaner
        .cleaned_at
        .retain(|base, _| *base != active_base && segments.contains_key(base));
    let cache_bytes_max = config.cache_bytes_max;
    let log = PartitionLog {
        inner: Rc::new(Inner {
            disk,
            dir: dir.to_path_buf(),
            config: RefCell::new(config),
            writer: async_lock::Mutex::new(Writer {
                appender,
                clean_on_disk: false,
                sealed_unsynced: None,
            }),
            checkpointer: async_lock::Mutex::new(Checkpointer {
                file: checkpoint_file,
                seq: checkpoint.map(|c| c.seq).unwrap_or(0),
                last_ms: 0,
                recovery_point: checkpoint.map_or(i64::MIN, |c| c.recovery_point),
            }),
            shared: RefCell::new(Shared {
                segments,
                log_start_offset: log_start.max(first_base).min(log_end),
                log_end_offset: log_end,
                durable_offset: log_end,
                durable_position: (active_base, active_size),
                journaled_offset: log_end,
                unjournaled: Default::default(),
                unjournaled_bytes: 0,
                unjournaled_from: log_end,
                written_behind_ms: 0,
                journal_waiting: false,
                leader_epoch: 0,
                cache: ReadCache::new(cache_bytes_max),
                producers: Default::default(),
                cleaner,
                epochs: Default::default(),
                hard_state: checkpoint.map(|c| c.hard_state).unwrap_or_default(),
                syncing: false,
                flusher_running: false,
                last_append_ms: now,
                idle_released: false,
                failed: None,
                closed: false,
                read_ahead: Default::default(),
                layout: 0,
            }),
            durable: Signal::default(),
            journal: RefCell::new(None),
            names_unsynced: std::cell::Cell::new(made),
        }),
    };
    log.seed_cache(kept).await;
    let producers = log
        .rebuild_producers_from(log_end, super::producers::snapshot_offsets_in(&names))
        .await?;
    log.inner.shared.borrow_mut().producers = producers;
    let epochs = if listing.has(&dir.join(super::epochs::EPOCHS_FILE)) {
        super::epochs::load(&log.inner.disk, dir).await
    } else {
        None
    };
    log.settle_epochs(epochs).await?;
    {
        let mut w = log.inner.writer.lock().await;
        if opened_clean {
            w.clean_on_disk = true;
        } else if made {
            // Clean, as a new log's empty files are; synced with the names
            // (see `sync_names`).
            log.write_checkpoint_then(&mut w, true, false).await?;
        } else {
            // From here on a crash is an unclean stop — unless the log is
            // new: then its empty files are what a clean stop leaves, and a
            // stop or a park has nothing to write until its first append.
            log.write_checkpoint(&mut w, fresh).await?;
        }
    }
    match (damaged_at, on_damage) {
        (Some(at), OnDamage::Truncate) => {
            tracing::error!(dir = %log.inner.dir.display(), offset = at, "cutting damaged synced data; the group must supply it again");
            log.truncate_to(at.max(log.log_start_offset())).await?;
            Ok((log, Some(at)))
        }
        _ => Ok((log, None)),
    }
}

/// Scans the active segment after an unclean stop: keeps every valid batch,
/// cuts a torn tail, and refuses to lose anything below the recovery point
/// (or, with `OnDamage::Truncate`, cuts it too and returns where).
#[allow(clippy::too_many_arguments)]
async fn recover_active<F: SegmentFile>(
    dir: &Path,
    base: i64,
    file: Rc<F>,
    size: u64,
    checkpoint: Option<Checkpoint>,
    config: &LogConfig,
    now: i64,
    on_damage: OnDamage,
) -> Result<(Segment<F>, Option<i64>, Option<Vec<(BatchHeader, Bytes)>>)> {
    let (seg, stop, kept) = rebuild(base, file.clone(), size, config, now).await?;
    let recovery_point = checkpoint.map(|c| c.recovery_point).unwrap_or(base);
    let damaged = seg.next_offset < recovery_point;
    if damaged && on_damage == OnDamage::Refuse {
        let (recovery_segment, recovery_position) = checkpoint
            .map(|c| (c.recovery_segment, c.recovery_position))
            .unwrap_or((base, 0));
        let cause = match &stop {
            ScanStop::Invalid { error, .. } => error.to_string(),
            ScanStop::NeedMore { .. } => "batch cut short".to_string(),
            ScanStop::End { .. } => "data ends early".to_string(),
        };
        tracing::error!(
            dir = %dir.display(), segment = base, position = stop.position(), recovery_point, %cause,
            "synced data is damaged or missing; refusing to truncate it"
        );
        return Err(StorageError::CorruptFlushedData {
            segment_base: base,
            position: stop.position(),
            recovery_point,
            recovery_position: if recovery_segment == base {
                recovery_position
            } else {
                0
            },
            cause,
        });
    }
    let valid_end = stop.position();
    if valid_end < size {
        if matches!(stop, ScanStop::End { .. }) {
            // Only zeros follow the data: space reserved ahead.
            tracing::debug!(
                dir = %dir.display(), segment = base, position = valid_end, cut_bytes = size - valid_end,
                "giving back the space reserved past the data"
            );
        } else {
            tracing::warn!(
                dir = %dir.display(), segment = base, position = valid_end, cut_bytes = size - valid_end, ?stop,
                "truncating the torn tail of an unclean stop"
            );
        }
        file.truncate(valid_end)
            .await
            .map_err(|e| StorageError::io("truncating a torn tail", e))?;
    }
    let damaged_at = damaged.then_some(seg.next_offset);
    Ok((seg, damaged_at, kept))
}

pub(super) fn remove_segment_files(disk: &impl Disk, dir: &Path, base: i64) {
    for path in [
        segment::log_path(dir, base),
        segment::index_path(dir, base),
        segment::time_index_path(dir, base),
    ] {
        if let Err(e) = disk.remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a segment file");
            }
        }
    }
}

/// The task behind [`PartitionLog::ensure_flusher`]: syncs every interval
/// while something appended is not durable, then ends.
pub(super) fn spawn_interval_flusher<D: Disk>(inner: Weak<Inner<D>>, first: std::time::Duration) {
    glommio::spawn_local(async move {
        let mut every = first;
        loop {
            glommio::timer::sleep(every).await;
            let Some(inner) = inner.upgrade() else { break };
            let log = PartitionLog { inner };
            let (stop, target) = {
                let s = log.inner.shared.borrow();
                (s.closed || s.failed.is_some(), s.log_end_offset)
            };
            let go_on = match log.inner.config.borrow().flush {
                FlushPolicy::Interval(d) if !stop => {
                    every = d;
                    true
                }
                // Closed, failed, or switched to flush-always: this task is done.
                _ => false,
            };
            if go_on {
                // Through the shard journal if the log has one: what it
                // journaled is durable already (its segment is synced when
                // the journal file retires, with one `syncfs` for all), so
                // only batches the journal never saw (acks=0/1) cost this
                // log a sync of its own. A thousand busy partitions each
                // syncing every second would otherwise flood the device.
                match log.make_durable(target).await {
                    Ok(_) | Err(StorageError::Closed) => {}
                    Err(e) => {
                        tracing::error!(dir = %log.inner.dir.display(), error = %e, "interval flush failed")
                    }
                }
            }
            let mut s = log.inner.shared.borrow_mut();
            // Stored in the segment or in the journal: nothing left for
            // this task (100,000 partitions written once would otherwise
            // each keep a timer until they are parked).
            let stored = s.durable_offset.max(s.journaled_offset);
            let done = !go_on || stored >= s.log_end_offset || s.failed.is_some();
            if done {
                s.flusher_running = false;
                break;
            }
        }
    })
    .detach();
}

/// The names a log directory held when its open listed it.
struct Listing<'a>(std::collections::HashSet<&'a str>);

impl<'a> Listing<'a> {
    fn new(names: &'a [String]) -> Self {
        Listing(names.iter().map(String::as_str).collect())
    }

    /// Whether the file at `path` (in the listed directory) was there.
    fn has(&self, path: &Path) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| self.0.contains(n))
    }

    /// A segment's index files, if both were there and are whole.
    async fn load_indexes<D: Disk>(
        &self,
        disk: &D,
        dir: &Path,
        base: i64,
        size: u64,
    ) -> Option<(
        crate::index_file::SegmentSummary,
        crate::offset_index::OffsetIndex,
        crate::time_index::TimeIndex,
    )> {
        if !self.has(&segment::index_path(dir, base))
            || !self.has(&segment::time_index_path(dir, base))
        {
            return None;
        }
        segment::load_indexes(disk, dir, base, size).await
    }
}
