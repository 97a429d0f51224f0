//! One segment: a `.log` file of batches starting at `base_offset`, its sparse
//! offset and time indexes, and what the log knows about it. Also the small
//! file helpers segments need (index files are tiny and written whole).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::appender::{align_down, align_up, WriteProgress, ALIGN};
use crate::batch::BatchHeader;
use crate::error::{Result, StorageError};
use crate::index_file::{self, IndexKind, SegmentSummary};
use crate::io::{Disk, IoBuffer, SegmentFile};
use crate::offset_index::OffsetIndex;
use crate::scan::{self, ScanError, ScanStop};
use crate::time_index::TimeIndex;

pub fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

pub fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

pub fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct Segment<F> {
    pub base_offset: i64,
    pub file: Rc<F>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Offset after the last batch.
    pub next_offset: i64,
    /// Bytes of batches in the file (appended, not necessarily written yet).
    pub size_bytes: u64,
    /// Largest batch max timestamp, -1 when none was seen.
    pub max_timestamp: i64,
    /// Wall-clock time the segment was created or reopened (for `segment_ms`).
    pub created_ms: i64,
    last_indexed_position: Option<u64>,
    /// Set while the segment is active: how far its writes have completed.
    pub progress: Option<Rc<WriteProgress>>,
}

impl<F> Segment<F> {
    pub fn new(base_offset: i64, file: Rc<F>, created_ms: i64) -> Segment<F> {
        Segment {
            base_offset,
            file,
            index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            next_offset: base_offset,
            size_bytes: 0,
            max_timestamp: -1,
            created_ms,
            last_indexed_position: None,
            progress: None,
        }
    }

    /// A closed segment described by its index files.
    pub fn from_summary(
        base_offset: i64,
        file: Rc<F>,
        summary: SegmentSummary,
        index: OffsetIndex,
        time_index: TimeIndex,
        created_ms: i64,
    ) -> Segment<F> {
        Segment {
            base_offset,
            file,
            last_indexed_position: index.last().map(|e| e.position as u64),
            index,
            time_index,
            next_offset: summary.next_offset,
            size_bytes: summary.size_bytes,
            max_timestamp: summary.max_timestamp,
            created_ms,
            progress: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// File bytes a reader may read: up to completed writes while active.
    pub fn readable_end(&self) -> u64 {
        match &self.progress {
            Some(p) => p.written().0.min(self.size_bytes),
            None => self.size_bytes,
        }
    }

    /// Accounts for the batch that now occupies `position`..: indexes, sizes,
    /// offsets and timestamps. Used by appends and by index rebuilding alike.
    pub fn record_batch(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u64) {
        debug_assert_eq!(position, self.size_bytes);
        let relative = (header.base_offset - self.base_offset) as u32;
        let due = self
            .last_indexed_position
            .is_none_or(|p| position - p >= index_interval_bytes);
        if due {
            self.index.push(relative, position as u32);
            if self.max_timestamp >= 0 && relative > 0 {
                self.time_index.push(self.max_timestamp, relative);
            }
            self.last_indexed_position = Some(position);
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.next_offset();
        self.size_bytes = position + header.total_len() as u64;
    }

    pub fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            next_offset: self.next_offset,
            size_bytes: self.size_bytes,
            max_timestamp: self.max_timestamp,
        }
    }

    /// Forgets index entries for batches at or after `relative`.
    pub fn truncate_indexes_from(&mut self, relative: u32) {
        self.index.truncate_from(relative);
        self.time_index.truncate_from(relative);
        self.last_indexed_position = self.index.last().map(|e| e.position as u64);
    }

    /// Contents of `.index` and `.timeindex` for the segment as it is now.
    pub fn index_files(&self) -> (Vec<u8>, Vec<u8>) {
        let summary = self.summary();
        (
            index_file::encode(IndexKind::Offset, summary, &self.index.encode()),
            index_file::encode(IndexKind::Time, summary, &self.time_index.encode()),
        )
    }
}

/// Writes a segment's index files (from [`Segment::index_files`]).
pub async fn write_index_files(
    disk: &impl Disk,
    dir: &Path,
    base_offset: i64,
    index: &[u8],
    time_index: &[u8],
) -> Result<()> {
    write_small_file(disk, &index_path(dir, base_offset), index).await?;
    write_small_file(disk, &time_index_path(dir, base_offset), time_index).await
}

/// Loads a segment's index files if both are intact and agree with the log
/// file's size; `None` means they must be rebuilt.
pub async fn load_indexes(
    disk: &impl Disk,
    dir: &Path,
    base_offset: i64,
    log_size: u64,
) -> Option<(SegmentSummary, OffsetIndex, TimeIndex)> {
    let offset_file = read_small_file(disk, &index_path(dir, base_offset))
        .await
        .ok()??;
    let time_file = read_small_file(disk, &time_index_path(dir, base_offset))
        .await
        .ok()??;
    let (summary, body) = index_file::decode(IndexKind::Offset, &offset_file).ok()?;
    let (time_summary, time_body) = index_file::decode(IndexKind::Time, &time_file).ok()?;
    if summary != time_summary || summary.size_bytes != log_size {
        return None;
    }
    let index = OffsetIndex::decode(body).ok()?;
    let time_index = TimeIndex::decode(time_body).ok()?;
    if index.last().is_some_and(|e| e.position as u64 >= log_size) {
        return None;
    }
    Some((summary, index, time_index))
}

pub async fn open_rw<D: Disk>(disk: &D, path: &Path) -> Result<D::File> {
    disk.open_rw(path)
        .await
        .map_err(|e| StorageError::io("opening a segment", e))
}

/// Reads a whole small file; `Ok(None)` if it does not exist.
pub async fn read_small_file(disk: &impl Disk, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match disk.open_read(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("opening a small file", e)),
    };
    let size = file
        .file_size()
        .await
        .map_err(|e| StorageError::io("sizing a small file", e))?;
    let data = file
        .read_at(0, size as usize)
        .await
        .map_err(|e| StorageError::io("reading a small file", e))?;
    let out = data.to_vec();
    let _ = file.close().await;
    Ok(Some(out))
}

/// Replaces a small file's content (written padded, then cut to length).
pub async fn write_small_file(disk: &impl Disk, path: &Path, content: &[u8]) -> Result<()> {
    write_small(disk, path, content, false).await
}

/// [`write_small_file`], synced before it returns.
pub async fn write_small_file_synced(disk: &impl Disk, path: &Path, content: &[u8]) -> Result<()> {
    write_small(disk, path, content, true).await
}

async fn write_small(disk: &impl Disk, path: &Path, content: &[u8], sync: bool) -> Result<()> {
    let file = disk
        .create_truncate(path)
        .await
        .map_err(|e| StorageError::io("creating a small file", e))?;
    let padded = align_up(content.len() as u64).max(ALIGN) as usize;
    let mut buf = file.alloc_buffer(padded);
    buf.as_bytes_mut()[..content.len()].copy_from_slice(content);
    buf.as_bytes_mut()[content.len()..].fill(0);
    file.write_at(buf, 0)
        .await
        .map_err(|e| StorageError::io("writing a small file", e))?;
    file.truncate(content.len() as u64)
        .await
        .map_err(|e| StorageError::io("truncating a small file", e))?;
    if sync {
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("syncing a small file", e))?;
    }
    file.close()
        .await
        .map_err(|e| StorageError::io("closing a small file", e))?;
    Ok(())
}

/// What [`scan_range`] shows its visitor.
pub enum Seen<'a> {
    /// A whole batch whose CRC checks out, with its bytes.
    Batch(scan::ScannedBatch, &'a [u8]),
    /// The next batch needs `need` bytes from its start, more than were read;
    /// answering false stops the scan before they are read.
    NeedMore(usize),
}

/// How a [`scan_range`] ended.
#[derive(Debug)]
pub enum RangeScan {
    /// The visitor answered false.
    Stopped,
    /// Valid data stops here. `End { position: end }` is the end of the
    /// range; an `End` before it means only zeros follow; a `NeedMore` is a
    /// batch cut short by the end of the range; `Invalid` is damage.
    Until(ScanStop),
    /// The file holds no bytes at `position`, before the range's end.
    Unreadable { position: u64 },
}

/// The one "read a chunk, scan it, advance" loop over a segment file: reads
/// positions `position..end` about `chunk` bytes at a time (more when one
/// batch needs it), scans them (`expected`, `batch_bytes_max`, `verify_from`
/// as in [`scan::scan`]), and shows each batch to `visit` until it answers
/// false.
#[allow(clippy::too_many_arguments)]
pub async fn scan_range(
    file: &impl SegmentFile,
    mut position: u64,
    end: u64,
    chunk: u64,
    expected: &mut Option<i64>,
    batch_bytes_max: usize,
    verify_from: i64,
    mut visit: impl FnMut(Seen<'_>) -> bool,
) -> Result<RangeScan> {
    let mut want = chunk;
    loop {
        if position >= end {
            return Ok(RangeScan::Until(ScanStop::End { position }));
        }
        let aligned = align_down(position);
        let skip = (position - aligned) as usize;
        let len = (skip as u64 + want).min(end - aligned);
        let data = file
            .read_at_aligned(aligned, align_up(len) as usize)
            .await
            .map_err(|e| StorageError::io("reading a segment", e))?;
        let avail = data.len().min(len as usize);
        if avail <= skip {
            return Ok(RangeScan::Unreadable { position });
        }
        let buf = &data[skip..avail];
        let mut stopped = false;
        let stop = scan::scan(buf, position, expected, batch_bytes_max, verify_from, |b| {
            if !stopped {
                let at = (b.position - position) as usize;
                let bytes = &buf[at..at + b.header.total_len()];
                stopped = !visit(Seen::Batch(b, bytes));
            }
        });
        if stopped {
            return Ok(RangeScan::Stopped);
        }
        let buffer_end = aligned + avail as u64;
        match stop {
            ScanStop::NeedMore { position: p, need } if buffer_end < end => {
                if !visit(Seen::NeedMore(need)) {
                    return Ok(RangeScan::Stopped);
                }
                position = p;
                want = chunk.max(need as u64);
            }
            ScanStop::End { position: p } if p == buffer_end && buffer_end < end => {
                position = p;
                want = chunk;
            }
            other => return Ok(RangeScan::Until(other)),
        }
    }
}

/// Scans a segment file from position 0 to `end`, CRC-checking every batch
/// and calling `found` for each, with its bytes; returns where valid data
/// stops and why.
pub async fn scan_file(
    file: &impl SegmentFile,
    base_offset: i64,
    end: u64,
    batch_bytes_max: usize,
    mut found: impl FnMut(scan::ScannedBatch, &[u8]),
) -> Result<ScanStop> {
    let scanned = scan_range(
        file,
        0,
        end,
        1 << 20,
        &mut Some(base_offset),
        batch_bytes_max,
        i64::MIN,
        |seen| {
            if let Seen::Batch(b, bytes) = seen {
                found(b, bytes);
            }
            true
        },
    )
    .await?;
    Ok(match scanned {
        RangeScan::Until(stop) => stop,
        RangeScan::Unreadable { position } => ScanStop::End { position },
        RangeScan::Stopped => unreachable!("the visitor never stops"),
    })
}

/// The size of each of the reads a large read is split into, all in flight
/// at once, for devices that need reads in flight to reach their bandwidth
/// (NVMe). This project's virtual disk reads about as fast either way
/// (`dd iflag=direct`: 1,111 MB/s one 8 MiB read at a time, 1,086 with
/// eight 1 MiB reads at once).
pub const READ_PIECE: usize = 1 << 20;

/// `len` bytes of `file` from `aligned` (fewer at its end), read as pieces of
/// [`READ_PIECE`] all in flight at once and joined in one buffer (the one
/// copy a read from disk makes).
async fn read_in_pieces(file: &impl SegmentFile, aligned: u64, len: usize) -> Result<BytesMut> {
    let total = align_up(len as u64) as usize;
    let reads = (0..total)
        .step_by(READ_PIECE)
        .map(|at| file.read_at_aligned(aligned + at as u64, READ_PIECE.min(total - at)));
    let pieces = futures_util::future::try_join_all(reads)
        .await
        .map_err(|e| StorageError::io("reading a segment", e))?;
    let mut joined = BytesMut::with_capacity(len);
    for (i, piece) in pieces.iter().enumerate() {
        let asked = READ_PIECE.min(total - i * READ_PIECE);
        joined.extend_from_slice(&piece[..piece.len().min(len - joined.len())]);
        // The file ends within this piece.
        if piece.len() < asked || joined.len() == len {
            break;
        }
    }
    Ok(joined)
}

/// [`read_batches`] for a large `max_bytes`: the range is read at once in
/// pieces ([`read_in_pieces`]) and the whole batches from `offset` that it
/// holds are returned as a slice of that read. `None` when it holds none
/// whole (the caller reads on).
async fn read_batches_in_pieces(
    file: &impl SegmentFile,
    std::ops::Range {
        start: position,
        end,
    }: std::ops::Range<u64>,
    (offset, max_bytes): (i64, usize),
    batch_bytes_max: usize,
) -> Result<Option<Bytes>> {
    if position >= end {
        return Ok(None);
    }
    let aligned = align_down(position);
    let skip = (position - aligned) as usize;
    let len = (skip as u64 + max_bytes as u64).min(end - aligned) as usize;
    let joined = read_in_pieces(file, aligned, len).await?;
    if joined.len() <= skip {
        return Ok(None);
    }
    // At most `max_bytes` from `position`: every whole batch in it fits.
    let mut kept: Option<(usize, usize)> = None;
    scan::scan(
        &joined[skip..],
        position,
        &mut None,
        batch_bytes_max,
        offset,
        |b| {
            if b.header.next_offset() <= offset {
                return;
            }
            let at = (b.position - position) as usize;
            let to = at + b.header.total_len();
            kept = Some((kept.map_or(at, |(from, _)| from), to));
        },
    );
    Ok(kept.map(|(from, to)| joined.freeze().slice(skip + from..skip + to)))
}

/// Reads whole batches from a segment file, starting from the batch that
/// contains `offset`, scanning from `position` (an index hint at or before
/// it) up to `end`. Returns `None` if no batch at or after `offset` lies
/// before `end`. At least one batch is returned even if larger than
/// `max_bytes`. A batch that fails its CRC is never returned: if it is the
/// first one wanted, the read fails with [`StorageError::Corrupt`].
pub async fn read_batches(
    file: &impl SegmentFile,
    segment_base: i64,
    position: u64,
    end: u64,
    offset: i64,
    max_bytes: usize,
    batch_bytes_max: usize,
) -> Result<Option<Bytes>> {
    if max_bytes >= 2 * READ_PIECE {
        let found =
            read_batches_in_pieces(file, position..end, (offset, max_bytes), batch_bytes_max)
                .await?;
        if found.is_some() {
            return Ok(found);
        }
        // Nothing whole in the range (a first batch larger than it, zeros,
        // damage): the chunked read below reads on or says why.
    }
    let chunk = (max_bytes as u64).clamp(64 << 10, 16 << 20);
    // Sized once: growing by doubling copied a large read several times.
    let mut out = BytesMut::with_capacity(
        max_bytes
            .min(end.saturating_sub(position) as usize)
            .min(16 << 20),
    );
    let corrupt = |position, cause| StorageError::Corrupt {
        segment_base,
        position,
        cause,
    };
    let scanned = scan_range(
        file,
        position,
        end,
        chunk,
        &mut None,
        batch_bytes_max,
        offset,
        |seen| match seen {
            Seen::Batch(b, _) if b.header.next_offset() <= offset => true,
            Seen::Batch(_, bytes) => {
                if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                    return false;
                }
                out.extend_from_slice(bytes);
                out.len() < max_bytes
            }
            // Do not read a batch that will not fit anyway.
            Seen::NeedMore(need) => out.is_empty() || out.len() + need <= max_bytes,
        },
    )
    .await?;
    if out.is_empty() {
        match scanned {
            RangeScan::Until(ScanStop::Invalid { position, error }) => {
                return Err(corrupt(position, error))
            }
            // A batch cut short by the end of readable data.
            RangeScan::Until(ScanStop::NeedMore { position, .. }) => {
                return Err(corrupt(position, ScanError::Truncated))
            }
            // Zeros where batches should be.
            RangeScan::Until(ScanStop::End { position }) if position < end => {
                return Err(corrupt(position, ScanError::Zeroed))
            }
            _ => {}
        }
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(out.freeze())
    })
}
