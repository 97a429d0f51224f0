//! Log compaction's I/O: a cleaning pass over the closed segments (the
//! decisions are [`crate::compaction`]'s) and the crash-safe swap of
//! rewritten segments.
//!
//! A group of old segments `[B, E)` (by base offset; `E` is the base of the
//! segment after them) becomes one new segment `B`:
//! 1. the new file is written as `B.cleaned` and synced;
//! 2. renamed to `B.E.swap` (the commit point: it names what it replaces);
//! 3. the old segments' files are removed;
//! 4. `B.E.swap` is renamed to `B.log` and its indexes are written.
//!
//! Each step is made durable (directory sync) before the next. Opening a
//! log deletes any `.cleaned` file (a pass that did not commit: the old
//! segments are intact) and finishes any `.swap` (steps 3 and 4), so a crash
//! at any instant leaves the old segments or the new one, never a mix.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::batches::BatchWalk;
use super::{appender_config, sync_dir, PartitionLog};
use crate::appender::Appender;
use crate::batch::compact::{self as records, Filtered};
use crate::batch::BatchHeader;
use crate::compaction::{self, CleanerLimits, CleanerState, OffsetMap, SegmentView};
use crate::config::CompactionConfig;
use crate::error::{Result, StorageError};
use crate::io::{Disk, SegmentFile};
use crate::producer_state::ProducerBatch;
use crate::segment::{self, Segment};

/// The cleaner's state file in a log directory.
pub(super) const STATE_FILE: &str = "cleaner";

fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.cleaned"))
}

fn swap_path(dir: &Path, base: i64, end: i64) -> PathBuf {
    dir.join(format!("{base:020}.{end:020}.swap"))
}

fn parse_swap(name: &str) -> Option<(i64, i64)> {
    let (base, end) = name.strip_suffix(".swap")?.split_once('.')?;
    let number = |s: &str| {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((number(base)?, number(end)?))
}

/// Opening a log: drops uncommitted cleaner output and finishes committed
/// swaps (steps 3 and 4 above), given the directory's `names`. Returns
/// whether it changed the directory.
pub(super) async fn recover_swaps(disk: &impl Disk, dir: &Path, names: &[String]) -> Result<bool> {
    let mut changed = false;
    for name in names {
        if name.ends_with(".cleaned") {
            tracing::info!(dir = %dir.display(), file = %name, "removing the output of an unfinished cleaning pass");
            let _ = disk.remove_file(&dir.join(name));
            changed = true;
        }
    }
    for name in names {
        let Some((base, end)) = parse_swap(name) else {
            continue;
        };
        tracing::info!(dir = %dir.display(), base, end, "finishing an interrupted segment swap");
        for old in names.iter().filter_map(|n| segment::parse_log_name(n)) {
            if (base..end).contains(&old) {
                remove_old_segment(disk, dir, old)?;
            }
        }
        sync_dir(disk, dir).await?;
        disk.rename(&dir.join(name), &segment::log_path(dir, base))
            .map_err(|e| StorageError::io("finishing a segment swap", e))?;
        changed = true;
    }
    if changed {
        sync_dir(disk, dir).await?;
    }
    Ok(changed)
}

/// Removes a replaced segment's files; unlike retention's removal, failing
/// is an error (a stale segment left beside its replacement would overlap it).
fn remove_old_segment(disk: &impl Disk, dir: &Path, base: i64) -> Result<()> {
    for path in [
        segment::index_path(dir, base),
        segment::time_index_path(dir, base),
        segment::log_path(dir, base),
    ] {
        match disk.remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("removing a cleaned segment", e)),
        }
    }
    Ok(())
}

pub(super) async fn load_state(disk: &impl Disk, dir: &Path) -> CleanerState {
    match segment::read_small_file(disk, &dir.join(STATE_FILE)).await {
        Ok(Some(bytes)) => CleanerState::decode(&bytes).unwrap_or_else(|| {
            tracing::warn!(dir = %dir.display(), "damaged cleaner state; the whole log counts as dirty");
            CleanerState::default()
        }),
        _ => CleanerState::default(),
    }
}

/// What a cleaning pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanOutcome {
    /// Segments rewritten, and the segments they became.
    pub segments_read: usize,
    pub segments_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// The clean point after the pass.
    pub cleaned_to: i64,
}

/// A closed segment as the pass found it.
struct Member<F> {
    view: SegmentView,
    file: Rc<F>,
    cleaned_at: Option<i64>,
    /// Base of the segment after it.
    end: i64,
}

impl<D: Disk> PartitionLog<D> {
    /// The clean point: records before it were cleaned against every newer key.
    pub fn cleaned_to(&self) -> i64 {
        self.inner.shared.borrow().cleaner.cleaned_to
    }

    /// Runs one cleaning pass if the log is compacted and a pass is due,
    /// within `limits` (key map memory, I/O rate); `None` when nothing was
    /// due. Appends and reads go on meanwhile (only the swap of each
    /// rewritten group holds the writer, briefly); a retention or truncation
    /// that changes the segments being cleaned ends the pass early, keeping
    /// what it already swapped.
    pub async fn clean(&self, limits: CleanerLimits) -> Result<Option<CleanOutcome>> {
        let mut pace = Pace {
            started: std::time::Instant::now(),
            bytes: 0,
            rate: limits.io_bytes_per_second,
        };
        let inner = &*self.inner;
        let Some(config) = inner.config.borrow().compaction else {
            return Ok(None);
        };
        let now = inner.disk.now_ms();
        let (members, cleaned_to) = {
            let s = inner.shared.borrow();
            s.usable()?;
            let bases: Vec<i64> = s.segments.keys().copied().collect();
            let members: Vec<Member<D::File>> = s
                .segments
                .values()
                .zip(bases.iter().skip(1))
                .filter(|(seg, _)| seg.next_offset > s.log_start_offset)
                .map(|(seg, &end)| Member {
                    view: SegmentView {
                        base_offset: seg.base_offset,
                        next_offset: seg.next_offset,
                        size_bytes: seg.size_bytes,
                        max_timestamp: seg.max_timestamp,
                    },
                    file: seg.file.clone(),
                    cleaned_at: s.cleaner.cleaned_at.get(&seg.base_offset).copied(),
                    end,
                })
                .collect();
            (members, s.cleaner.cleaned_to)
        };
        let views: Vec<SegmentView> = members.iter().map(|m| m.view).collect();
        let c = compaction::cleanable(&views, cleaned_to, now, &config);
        let tombstones_due = members[..c.end]
            .iter()
            .any(|m| compaction::tombstones_due(m.cleaned_at, now, &config));
        let dirty = match c.first_dirty {
            Some(first) => {
                let from = cleaned_to
                    .max(views[first].base_offset)
                    .max(self.log_start_offset());
                let due = c.dirty_ratio >= config.min_cleanable_dirty_ratio
                    || compaction::due(&c, self.first_timestamp_at(from).await?, now, &config);
                due.then_some(from)
            }
            None => None,
        };
        let (map, mapped_to) = match dirty {
            Some(from) => {
                self.map_keys(from, members[c.end - 1].end, limits.map_bytes, &mut pace)
                    .await?
            }
            // Only delete markers to remove: nothing to map.
            None if tombstones_due => (OffsetMap::with_memory(0), cleaned_to),
            None => return Ok(None),
        };
        let touched = views[..c.end]
            .iter()
            .take_while(|v| v.base_offset < mapped_to)
            .count();
        let segment_bytes = inner.config.borrow().segment_bytes;
        let mut outcome = CleanOutcome {
            cleaned_to,
            ..Default::default()
        };
        let pass = Pass {
            map: &map,
            mapped_to,
            now,
            config: &config,
        };
        let mut next = 0;
        while next < touched {
            // With nothing mapped, only segments with expired markers change.
            if map.is_empty() && !compaction::tombstones_due(members[next].cleaned_at, now, &config)
            {
                next += 1;
                continue;
            }
            let rest = &members[next..touched];
            match self.rewrite(rest, &pass, segment_bytes, &mut pace).await? {
                Some(written) => {
                    let group = &rest[..written.segments];
                    outcome.segments_read += group.len();
                    outcome.segments_written += 1;
                    outcome.bytes_read += group.iter().map(|m| m.view.size_bytes).sum::<u64>();
                    outcome.bytes_written += written.bytes;
                    outcome.records_removed += written.records_removed;
                    next += written.segments;
                }
                None => {
                    tracing::info!(dir = %inner.dir.display(), "segments changed under the cleaner; pass ends early");
                    self.save_cleaner_state().await;
                    return Ok(Some(outcome));
                }
            }
        }
        {
            let mut s = inner.shared.borrow_mut();
            s.cleaner.cleaned_to = s.cleaner.cleaned_to.max(mapped_to);
            outcome.cleaned_to = s.cleaner.cleaned_to;
        }
        self.save_cleaner_state().await;
        tracing::debug!(dir = %inner.dir.display(), ?outcome, keys = map.len(), "cleaned");
        Ok(Some(outcome))
    }

    /// Timestamp of the first batch at or after `offset` (the age of the
    /// oldest dirty record, for `max.compaction.lag.ms`).
    async fn first_timestamp_at(&self, offset: i64) -> Result<i64> {
        let data = self.read(offset, 1).await?;
        Ok(match BatchHeader::parse(&data) {
            Ok(h) if h.is_log_append_time() => h.max_timestamp,
            Ok(h) => h.base_timestamp,
            Err(_) => i64::MAX,
        })
    }

    /// Maps the keys of records `from..to` to their newest offsets until the
    /// map is full; returns it and the offset after the last record mapped.
    async fn map_keys(
        &self,
        from: i64,
        to: i64,
        map_bytes: usize,
        pace: &mut Pace,
    ) -> Result<(OffsetMap, i64)> {
        let mut map = OffsetMap::with_memory(map_bytes);
        let mut mapped_to = from;
        let mut walk = BatchWalk::new(from, to);
        'read: while let Some((batches, read)) = walk.next(self).await? {
            for (header, batch) in batches {
                let mut full = false;
                records::for_each_record(&batch, |r| {
                    if full || r.offset < from {
                        return;
                    }
                    match r.key {
                        Some(key) if !map.put(key, r.offset) => full = true,
                        _ => mapped_to = r.offset + 1,
                    }
                })?;
                if full {
                    break 'read;
                }
                mapped_to = header.next_offset();
            }
            pace.account(read as u64).await;
        }
        Ok((map, mapped_to))
    }

    /// Whether the idempotent producer state still refers to this batch: it
    /// stays (empty if need be) so the state can be rebuilt from the log.
    fn producer_needs(&self, header: &BatchHeader) -> bool {
        ProducerBatch::of(header).is_some_and(|b| {
            self.inner
                .shared
                .borrow()
                .producers
                .get(b.producer_id)
                .is_some_and(|e| {
                    e.batches
                        .iter()
                        .any(|s| s.base_offset == header.base_offset)
                })
        })
    }

    /// Rewrites the first segments of `members` into one new segment (as
    /// many as [`compaction::joins`] lets in, at least one) and swaps it in;
    /// `None` if the segments changed meanwhile (nothing is swapped then).
    async fn rewrite(
        &self,
        members: &[Member<D::File>],
        pass: &Pass<'_>,
        segment_bytes: u64,
        pace: &mut Pace,
    ) -> Result<Option<Written>> {
        let Pass {
            mapped_to,
            now,
            config,
            ..
        } = *pass;
        let inner = &*self.inner;
        let base = members[0].view.base_offset;
        let path = cleaned_path(&inner.dir, base);
        let _ = inner.disk.remove_file(&path);
        let file = Rc::new(segment::open_rw(&inner.disk, &path).await?);
        let written = self
            .write_cleaned(members, segment_bytes, file.clone(), pass, pace)
            .await;
        let (seg, records_removed, taken) = match written {
            Ok(w) => w,
            Err(e) => {
                let _ = inner.disk.remove_file(&path);
                return Err(e);
            }
        };
        let group = &members[..taken];
        let end = group.last().expect("a group has segments").end;
        let bytes = seg.size_bytes;

        let _writer = inner.writer.lock().await;
        let unchanged = {
            let s = inner.shared.borrow();
            let active = *s.segments.keys().next_back().expect("active");
            s.usable().is_ok()
                && group.iter().all(|m| {
                    m.view.base_offset != active
                        && s.segments
                            .get(&m.view.base_offset)
                            .is_some_and(|seg| Rc::ptr_eq(&seg.file, &m.file))
                })
        };
        if !unchanged {
            let _ = inner.disk.remove_file(&path);
            return Ok(None);
        }
        if let Err(e) = self.swap(group, end, &path).await {
            // The swap is committed or not; either way the next open finishes
            // it. This process cannot tell which files are current.
            self.fail(&e);
            return Err(e);
        }
        let file =
            Rc::new(segment::open_rw(&inner.disk, &segment::log_path(&inner.dir, base)).await?);
        let mut seg = seg;
        seg.file = file;
        let (index, time_index) = seg.index_files();
        if let Err(e) =
            segment::write_index_files(&inner.disk, &inner.dir, base, &index, &time_index).await
        {
            tracing::warn!(dir = %inner.dir.display(), segment = base, error = %e, "could not write segment indexes");
        }
        let wholly_clean = group.iter().all(|m| m.view.next_offset <= mapped_to);
        let markers_gone = group
            .iter()
            .all(|m| compaction::tombstones_expired(m.cleaned_at, now, config));
        let cleaned_at = match (wholly_clean, markers_gone) {
            (false, _) => None,
            (true, true) => Some(compaction::TOMBSTONE_FREE),
            (true, false) => group.iter().map(|m| m.cleaned_at.unwrap_or(now)).max(),
        };
        let mut s = inner.shared.borrow_mut();
        // Reads prepared ahead from the segments replaced are not used.
        s.layout += 1;
        for m in group {
            s.segments.remove(&m.view.base_offset);
            s.cleaner.cleaned_at.remove(&m.view.base_offset);
        }
        s.segments.insert(base, seg);
        if let Some(t) = cleaned_at {
            s.cleaner.cleaned_at.insert(base, t);
        }
        s.cache.discard_before(end);
        Ok(Some(Written {
            segments: taken,
            bytes,
            records_removed,
        }))
    }

    /// Writes the kept batches of the first segments of `members` to `file`
    /// (segment after segment while [`compaction::joins`] lets the next one
    /// in) and syncs it; returns the new segment, how many records went and
    /// how many of the old segments it holds.
    async fn write_cleaned(
        &self,
        members: &[Member<D::File>],
        segment_bytes: u64,
        file: Rc<D::File>,
        pass: &Pass<'_>,
        pace: &mut Pace,
    ) -> Result<(Segment<D::File>, u64, usize)> {
        let Pass {
            map, now, config, ..
        } = *pass;
        let inner = &*self.inner;
        let base = members[0].view.base_offset;
        file.truncate(0)
            .await
            .map_err(|e| StorageError::io("preparing a cleaned segment", e))?;
        let log_config = inner.config.borrow().clone();
        let mut out = Output {
            appender: Appender::resume(file.clone(), 0, base, appender_config(&log_config)).await?,
            segment: Segment::new(base, file.clone(), now),
            interval: log_config.index_interval_bytes,
        };
        let mut removed = 0u64;
        let mut taken = 0;
        // A batch emptied at the end of the group: written only if nothing
        // follows it, so the segment still ends where the old ones ended.
        let mut tail: Option<Vec<u8>> = None;
        for (i, member) in members.iter().enumerate() {
            if i > 0
                && !compaction::joins(out.appender.position(), base, &member.view, segment_bytes)
            {
                break;
            }
            taken = i + 1;
            let drop_tombstones = compaction::tombstones_expired(member.cleaned_at, now, config);
            let from = member.view.base_offset.max(self.log_start_offset());
            let mut walk = BatchWalk::new(from, member.end);
            while let Some((batches, read)) = walk.next(self).await? {
                for (header, batch) in batches {
                    let filtered = records::filter_records(&batch, |r| {
                        let kept = compaction::keep(r, map, drop_tombstones);
                        removed += u64::from(!kept);
                        kept
                    })?;
                    match filtered {
                        Filtered::Unchanged => out.put(&batch).await?,
                        Filtered::Rewritten(b) => out.put(&b).await?,
                        Filtered::Emptied if self.producer_needs(&header) => {
                            out.put(&records::empty_batch(&batch)?).await?
                        }
                        Filtered::Emptied => {
                            tail = Some(records::empty_batch(&batch)?);
                            continue;
                        }
                    }
                    tail = None;
                }
                // What was read, and about as much written.
                pace.account(2 * read as u64).await;
            }
        }
        if let Some(t) = tail {
            out.put(&t).await?;
        }
        let (position, _) = out.appender.flush().await?;
        out.appender.progress().wait_written(position).await?;
        drop(out.appender);
        async {
            file.truncate(position).await?;
            file.fdatasync().await
        }
        .await
        .map_err(|e| StorageError::io("syncing a cleaned segment", e))?;
        let mut seg = out.segment;
        seg.progress = None;
        Ok((seg, removed, taken))
    }

    /// Steps 2–4 of the swap (module docs).
    async fn swap(&self, group: &[Member<D::File>], end: i64, cleaned: &Path) -> Result<()> {
        let inner = &*self.inner;
        let base = group[0].view.base_offset;
        sync_dir(&inner.disk, &inner.dir).await?;
        let swap = swap_path(&inner.dir, base, end);
        inner
            .disk
            .rename(cleaned, &swap)
            .map_err(|e| StorageError::io("committing a cleaned segment", e))?;
        sync_dir(&inner.disk, &inner.dir).await?;
        for m in group {
            remove_old_segment(&inner.disk, &inner.dir, m.view.base_offset)?;
        }
        sync_dir(&inner.disk, &inner.dir).await?;
        inner
            .disk
            .rename(&swap, &segment::log_path(&inner.dir, base))
            .map_err(|e| StorageError::io("installing a cleaned segment", e))?;
        sync_dir(&inner.disk, &inner.dir).await
    }

    /// Persists the cleaner state (synced, though losing it only costs work:
    /// see [`CleanerState`]).
    pub(super) async fn save_cleaner_state(&self) {
        let inner = &*self.inner;
        let bytes = {
            let mut s = inner.shared.borrow_mut();
            let bases: Vec<i64> = s.segments.keys().copied().collect();
            s.cleaner
                .cleaned_at
                .retain(|b, _| bases.binary_search(b).is_ok());
            s.cleaner.encode()
        };
        if let Err(e) =
            segment::write_small_file_synced(&inner.disk, &inner.dir.join(STATE_FILE), &bytes).await
        {
            tracing::warn!(dir = %inner.dir.display(), error = %e, "could not save the cleaner state");
        }
    }
}

/// What one pass decided: the key map, how far it reaches, its clock and settings.
#[derive(Clone, Copy)]
struct Pass<'a> {
    map: &'a OffsetMap,
    mapped_to: i64,
    now: i64,
    config: &'a CompactionConfig,
}

/// Keeps a pass within its I/O rate, and yields to other tasks between chunks.
struct Pace {
    started: std::time::Instant,
    bytes: u64,
    rate: Option<u64>,
}

impl Pace {
    async fn account(&mut self, bytes: u64) {
        self.bytes += bytes;
        match compaction::io_pause(self.bytes, self.started.elapsed(), self.rate) {
            Some(wait) => glommio::timer::sleep(wait).await,
            None => glommio::yield_if_needed().await,
        }
    }
}

struct Written {
    /// How many of the old segments the new one replaced.
    segments: usize,
    bytes: u64,
    records_removed: u64,
}

/// The new segment being written.
struct Output<F: SegmentFile> {
    appender: Appender<F>,
    segment: Segment<F>,
    interval: u64,
}

impl<F: SegmentFile> Output<F> {
    async fn put(&mut self, batch: &[u8]) -> Result<()> {
        let header = BatchHeader::parse(batch)?;
        self.appender.reserve(batch.len() as u64).await?;
        let position = self.appender.position();
        self.appender.append(&[batch], header.next_offset()).await?;
        self.segment.record_batch(position, &header, self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_round_trip() {
        let p = swap_path(Path::new("/d"), 5, 1234);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_swap(name), Some((5, 1234)));
        assert_eq!(parse_swap("00000000000000000005.log"), None);
        assert_eq!(parse_swap("5.6.swap"), None);
    }
}
