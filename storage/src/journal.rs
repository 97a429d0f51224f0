//! A shard's journal: one durable step for every partition of the shard.
//!
//! Syncing each partition's segment for its own batches costs one
//! fdatasync per partition per step, and the device does a few thousand of
//! those a second: with a thousand partitions written at once a step took
//! 84 ms (`cargo bench -p rill-storage --bench durable_step`). Instead, a
//! step writes the batches appended since the last one — from every
//! partition that waits — into this one file, and syncs it once (13.6 ms
//! for the same thousand partitions; 6.1× the bytes made durable per
//! second, 4.4× at 16). The segments are written as before but synced
//! later, on their own schedule (the flush interval, or when a journal file
//! is retired); a file is deleted only once every partition it holds
//! batches of has synced its segment past them.
//!
//! Files are `<number>.wal`, zero-filled when made, so writing into them
//! changes no file-system metadata and a sync is a device flush. Their size
//! follows the write rate, between the configured first and largest sizes
//! (see [`JournalConfig::max_file_bytes`]); replay reads each as long as
//! it is. A step's
//! records are packed and padded with zeros to a 4 KiB boundary; the next
//! step starts there. Record: magic, body length, CRC-32C of what follows
//! it, the file's number, a sequence number (consecutive within a file),
//! the partition's name and 16-byte incarnation id (a topic deleted and
//! created again is another partition), and the batch as stored (its base
//! offset and leader epoch set). A record that is torn, from another file
//! (a reused one), or out of sequence ends the file.
//!
//! After a crash [`replay`] appends, in journal order, every batch a
//! partition's log lacks (its base offset is the log's end), then syncs the
//! partitions it touched; the files are then removed and a new journal
//! starts.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::appender::{align_up, ALIGN};
use crate::error::{Result, StorageError};
use crate::io::{Disk, IoBuffer, SegmentFile};
use crate::log::PartitionLog;
use crate::signal::Signal;

const MAGIC: u32 = 0x524a_4e31; // "RJN1"
/// magic, body length, CRC, file number, sequence, name length.
const HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 8 + 2;
const ID_BYTES: usize = 16;
const ZERO_CHUNK: usize = 1 << 20;
/// A log with at least this many bytes waiting syncs its own segment in
/// the step instead: writing them twice costs more than its one sync.
pub const DIRECT_SYNC_BYTES: usize = 128 << 10;
/// Filled files kept ready, so starting the next file is a rename.
const SPARES: usize = 2;
/// Segment syncs a retiring file runs at once.
const RETIRE_PARALLEL: usize = 32;
/// A file filled within this makes the next ones larger.
pub const GROW_WITHIN_MS: i64 = 1_000;
/// A file that took longer than this to fill makes the next ones smaller.
pub const SHRINK_AFTER_MS: i64 = 30_000;

/// A partition's identity in the journal: its directory relative to the
/// data directory, and its incarnation (the topic id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalName {
    pub name: String,
    pub id: [u8; ID_BYTES],
}

#[derive(Debug, Clone, Copy)]
pub struct JournalConfig {
    /// Size of the first journal file, and the least any file has.
    pub file_bytes: u64,
    /// Largest a journal file grows to. A file filled in under
    /// [`GROW_WITHIN_MS`] makes the next ones twice as large (up to this);
    /// one that took over [`SHRINK_AFTER_MS`] halves them (down to
    /// `file_bytes`). Each retirement writes out every partition with
    /// batches in the file, so at a high rate small files mean many small
    /// segment writes: many-partitions-1000 wrote out a thousand partitions
    /// every 0.25 s with 32 MiB files (7,800 device writes a second), and
    /// ran 19–34 % faster with 128 MiB ones. Small first files keep a
    /// broker that writes little (or a test's) from zero-filling large ones.
    pub max_file_bytes: u64,
    /// Steps whose writes and syncs may be in flight at once. A step's
    /// batches are acknowledged only after every earlier step's, in order;
    /// a second step in flight takes the batches appended while the first
    /// waits for the device, instead of leaving them for a step that
    /// starts once the first is done. One by default: on this project's
    /// machine (a virtual disk, two io_uring workers per shard) two steps
    /// only split the same device time (1,000 partitions: twice the steps,
    /// the same bytes per second, a longer produce); a device that serves
    /// writes in parallel may do better with two.
    pub steps_in_flight: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            file_bytes: 64 << 20,
            max_file_bytes: 64 << 20,
            steps_in_flight: 1,
        }
    }
}

/// A batch waiting for the next step: its first 16 bytes as stored (base
/// offset and leader epoch set), the rest as appended, and the offset after it.
pub(crate) struct Pending {
    pub head: [u8; 16],
    pub batch: Bytes,
    pub next_offset: i64,
}

/// Counters of a journal since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub steps: u64,
    /// Steps started while another was still in flight.
    pub overlapped: u64,
    pub records: u64,
    pub bytes: u64,
    pub files_retired: u64,
    /// Files zero-filled after the start (spares, or a next file when none
    /// was ready); a retired file is reused instead whenever it can be.
    pub files_filled: u64,
    /// Steps whose big writers (at least [`DIRECT_SYNC_BYTES`] each) shared
    /// one filesystem sync.
    pub direct_shared_syncs: u64,
    /// The size new files are made at now (see
    /// [`JournalConfig::max_file_bytes`]).
    pub file_bytes: u64,
}

/// A shard's journal; cheap to clone.
pub struct Journal<D: Disk> {
    inner: Rc<Inner<D>>,
}

impl<D: Disk> Clone for Journal<D> {
    fn clone(&self) -> Self {
        Journal {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: JournalConfig,
    state: RefCell<State<D>>,
    /// Notified after every step.
    stepped: Signal,
    writer: async_lock::Mutex<Writer<D>>,
}

struct State<D: Disk> {
    /// Logs with batches waiting for the next step.
    waiting: Vec<PartitionLog<D>>,
    /// Steps started and not yet finished (at most `steps_in_flight`).
    in_flight: usize,
    /// A step was started and has not yet taken the waiting logs.
    starting: bool,
    /// Steps that took their logs, in order; and of those, how many have
    /// finished (they finish in that order).
    taken: u64,
    finished: u64,
    failed: Option<String>,
    stats: JournalStats,
    /// Filled files kept for reuse (retired ones by their old number,
    /// prepared ones by a number of their own), with their sizes.
    spares: Vec<(u64, u64)>,
    preparing: usize,
    /// Full files being retired: each becomes a spare when done, unless
    /// enough are ready by then.
    retiring: usize,
    /// The last number a prepared spare got.
    next_spare: u64,
}

struct Writer<D: Disk> {
    /// Shared with the steps whose writes to it are in flight.
    file: Rc<D::File>,
    number: u64,
    /// The file's size, and when it was started (the disk's clock).
    file_bytes: u64,
    started_ms: i64,
    position: u64,
    seq: u64,
    /// Logs with batches in the current file, and the end of the last one.
    in_file: HashMap<usize, (PartitionLog<D>, i64)>,
}

fn path_of(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.wal"))
}

fn spare_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.spare"))
}

fn numbers(disk: &impl Disk, dir: &Path) -> Result<Vec<u64>> {
    let mut out: Vec<u64> = disk
        .list_dir(dir)
        .map_err(|e| StorageError::io("listing the journal", e))?
        .iter()
        .filter_map(|n| n.strip_suffix(".wal")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

async fn zero_filled<D: Disk>(disk: &D, dir: &Path, path: &Path, bytes: u64) -> Result<D::File> {
    let file = disk
        .create_truncate(path)
        .await
        .map_err(|e| StorageError::io("creating a journal file", e))?;
    let mut at = 0;
    while at < bytes {
        let len = ZERO_CHUNK.min((bytes - at) as usize);
        let buf = file.alloc_buffer(len);
        file.write_at(buf, at)
            .await
            .map_err(|e| StorageError::io("zero-filling a journal file", e))?;
        at += len as u64;
    }
    file.fdatasync()
        .await
        .map_err(|e| StorageError::io("syncing a new journal file", e))?;
    disk.sync_dir(dir)
        .await
        .map_err(|e| StorageError::io("syncing the journal directory", e))?;
    Ok(file)
}

impl<D: Disk> Journal<D> {
    /// Starts a journal in `dir`, which must hold no journal files: what an
    /// earlier journal left is [`replay`]ed and removed first.
    pub async fn create(disk: D, dir: &Path, config: JournalConfig) -> Result<Journal<D>> {
        assert!(config.file_bytes >= 2 * ALIGN && config.file_bytes.is_multiple_of(ALIGN));
        let config = JournalConfig {
            // Aligned, and never below the first size (which is aligned).
            max_file_bytes: config.max_file_bytes.max(config.file_bytes) & !(ALIGN - 1),
            ..config
        };
        let fits = |len: u64| {
            (config.file_bytes..=config.max_file_bytes).contains(&len) && len.is_multiple_of(ALIGN)
        };
        disk.create_dir_all(dir)
            .await
            .map_err(|e| StorageError::io("creating the journal directory", e))?;
        // The directory's own name: without it a crash loses every file
        // in it, however synced (once per start, whether or not it was new).
        if let Some(parent) = dir.parent() {
            disk.sync_dir(parent)
                .await
                .map_err(|e| StorageError::io("syncing the journal directory's parent", e))?;
        }
        if let Some(n) = numbers(&disk, dir)?.first() {
            return Err(StorageError::Failed {
                reason: format!(
                    "journal file {} is still there: replay it before starting a new journal",
                    path_of(dir, *n).display()
                ),
            });
        }
        // Spares a former journal kept (of a size this one makes): the first
        // file is one of them if it can be, so a restart writes nothing.
        // Smallest first: a start may not write at the rate that grew them.
        let mut spares: Vec<(u64, u64)> = disk
            .list_dir(dir)
            .map_err(|e| StorageError::io("listing the journal", e))?
            .iter()
            .filter_map(|n| n.strip_suffix(".spare")?.parse().ok())
            .filter_map(|n| Some((n, disk.file_len(&spare_path(dir, n)).ok()?)))
            .filter(|&(_, len)| fits(len))
            .collect();
        spares.sort_unstable_by_key(|&(n, len)| (std::cmp::Reverse(len), n));
        let first = path_of(dir, 1);
        let first_bytes = spares.last().map_or(config.file_bytes, |s| s.1);
        let file = match spares.pop().map(|s| s.0) {
            Some(n) => {
                let reused = async {
                    disk.rename(&spare_path(dir, n), &first)?;
                    disk.sync_dir(dir).await?;
                    disk.open_rw(&first).await
                };
                reused
                    .await
                    .map_err(|e| StorageError::io("reusing a journal file", e))?
            }
            None => zero_filled(&disk, dir, &first, config.file_bytes).await?,
        };
        let now_ms = disk.now_ms();
        let journal = Journal {
            inner: Rc::new(Inner {
                disk,
                dir: dir.to_path_buf(),
                config,
                state: RefCell::new(State {
                    waiting: Vec::new(),
                    in_flight: 0,
                    starting: false,
                    taken: 0,
                    finished: 0,
                    failed: None,
                    stats: JournalStats {
                        file_bytes: config.file_bytes,
                        ..JournalStats::default()
                    },
                    next_spare: spares.iter().map(|s| s.0).max().unwrap_or(0).max(1 << 40),
                    spares,
                    preparing: 0,
                    retiring: 0,
                }),
                stepped: Signal::default(),
                writer: async_lock::Mutex::new(Writer {
                    file: Rc::new(file),
                    number: 1,
                    file_bytes: first_bytes,
                    started_ms: now_ms,
                    position: 0,
                    seq: 0,
                    in_file: HashMap::new(),
                }),
            }),
        };
        Ok(journal)
    }

    /// After every log using the journal was closed (its segments synced):
    /// removes the journal's files, so the next start has nothing to
    /// replay. Spares stay for the next journal.
    pub async fn close(&self) -> Result<()> {
        let inner = &*self.inner;
        let _w = inner.writer.lock().await;
        inner
            .state
            .borrow_mut()
            .failed
            .get_or_insert("closed".to_string());
        for n in numbers(&inner.disk, &inner.dir)? {
            match inner.disk.remove_file(&path_of(&inner.dir, n)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("removing a journal file", e)),
            }
        }
        inner
            .disk
            .sync_dir(&inner.dir)
            .await
            .map_err(|e| StorageError::io("syncing the journal directory", e))
    }

    pub fn stats(&self) -> JournalStats {
        self.inner.state.borrow().stats
    }

    /// Waits until every batch of `log` before `target` is durable, in
    /// this journal or in the log's own segments; starts a step if fewer
    /// than `steps_in_flight` are running (group commit across the shard's
    /// partitions).
    pub(crate) async fn make_durable(&self, log: &PartitionLog<D>, target: i64) -> Result<()> {
        let inner = &*self.inner;
        loop {
            if log.stored_offset() >= target {
                return Ok(());
            }
            log.check_usable()?;
            if log.unjournaled_from() > log.stored_offset() {
                // Batches the journal will never see (dropped from the
                // queue, or taken by a step that failed): the caller syncs
                // the segment instead.
                return Err(StorageError::Failed {
                    reason: "batches missing from the journal".to_string(),
                });
            }
            let steps = self.enqueue(log)?;
            inner
                .stepped
                .wait_until(|| {
                    let s = inner.state.borrow();
                    (s.finished != steps || s.failed.is_some()).then_some(())
                })
                .await;
        }
    }

    /// Queues `log` for the next step and starts one if it may; the
    /// number of steps finished so far. Idempotent while the log waits.
    fn enqueue(&self, log: &PartitionLog<D>) -> Result<u64> {
        let mut s = self.inner.state.borrow_mut();
        if let Some(reason) = &s.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        if log.mark_journal_waiting() {
            s.waiting.push(log.clone());
        }
        self.start_step(&mut s);
        Ok(s.finished)
    }

    /// [`make_durable`](Self::make_durable) without the wait: `log` is
    /// queued for the next step if its batches before `target` are not yet
    /// durable. Callers about to wait on several logs one after another
    /// call this for each first, so that one step takes them all.
    pub(crate) fn expect_durable(&self, log: &PartitionLog<D>, target: i64) {
        if log.stored_offset() < target && log.unjournaled_from() <= log.stored_offset() {
            // A failed journal is the later wait's to report.
            let _ = self.enqueue(log);
        }
    }

    /// Starts a step if logs wait, none is about to take them, and fewer
    /// than `steps_in_flight` run.
    fn start_step(&self, s: &mut State<D>) {
        if s.starting
            || s.waiting.is_empty()
            || s.in_flight >= self.inner.config.steps_in_flight.max(1)
            || s.failed.is_some()
        {
            return;
        }
        s.starting = true;
        if s.in_flight > 0 {
            s.stats.overlapped += 1;
        }
        s.in_flight += 1;
        let journal = self.clone();
        glommio::spawn_local(async move {
            // A failure is the waiters' to see (the journal is failed, or
            // the logs' batches are forgotten and they sync segments).
            let _ = journal.step().await;
            let inner = &*journal.inner;
            let mut s = inner.state.borrow_mut();
            s.in_flight -= 1;
            journal.start_step(&mut s);
            drop(s);
            inner.stepped.notify_all();
        })
        .detach();
    }

    /// One step: every waiting log's pending batches, written and synced,
    /// then made known to the logs once every earlier step's are.
    async fn step(&self) -> Result<()> {
        let inner = &*self.inner;
        // Let the tasks that are ready (appends of the same requests, other
        // connections' produces) join this step before it takes the list.
        futures_lite::future::yield_now().await;
        let started = std::time::Instant::now();
        // The list is taken under the writer's lock: steps write their
        // records into the file in the order they took their batches.
        let mut w = inner.writer.lock().await;
        let (logs, turn) = {
            let mut s = inner.state.borrow_mut();
            s.starting = false;
            s.taken += 1;
            (std::mem::take(&mut s.waiting), s.taken)
        };
        // Per log its name; per batch the log's index (no name copies).
        let mut names: Vec<Option<JournalName>> = Vec::with_capacity(logs.len());
        let mut records: Vec<(usize, Pending)> = Vec::new();
        let mut direct = Vec::new();
        for (i, log) in logs.iter().enumerate() {
            let pending = log.take_unjournaled();
            names.push(log.journal_name());
            if names[i].is_none() {
                continue;
            }
            let bytes: usize = pending.iter().map(|p| p.batch.len()).sum();
            if bytes >= DIRECT_SYNC_BYTES {
                direct.push((log.clone(), pending.last().map_or(0, |p| p.next_offset)));
                continue;
            }
            records.extend(pending.into_iter().map(|p| (i, p)));
        }
        let n_direct = direct.len();
        let direct =
            (!direct.is_empty()).then(|| glommio::spawn_local(self.clone().sync_direct(direct)));
        let name = |i: usize| names[i].as_ref().expect("records only of named logs");
        let total: usize = records.iter().map(|(i, p)| record_len(name(*i), p)).sum();
        let written = if align_up(total as u64) <= w.file_bytes - w.position {
            // The usual case: the whole step in the current file, written
            // and synced without the lock, while the next step encodes.
            let (buf, position) = self.encode_step(&mut w, &records, &name, &logs);
            let file = w.file.clone();
            drop(w);
            write_and_sync(&*file, buf, position).await
        } else {
            // The step fills the file: the steps before it finish their
            // writes first, since the full file is retired.
            self.wait_turn(turn).await;
            let result = self
                .write_across_files(&mut w, &records, &name, &logs)
                .await;
            drop(w);
            result
        };
        let journaled = started.elapsed();
        if let Some(task) = direct {
            task.await;
        }
        self.wait_turn(turn).await;
        let mut s = inner.state.borrow_mut();
        let outcome = match (written, &s.failed) {
            (Err((reason, fatal)), _) => {
                if fatal {
                    // After a failed write or sync the file's state is
                    // unknown: the journal stops, and its logs sync their
                    // own segments.
                    s.failed.get_or_insert(reason.clone());
                }
                Err(StorageError::Failed { reason })
            }
            // An earlier step failed: the journal may end before this
            // step's records, so they are not acknowledged from it.
            (Ok(()), Some(reason)) => Err(StorageError::Failed {
                reason: reason.clone(),
            }),
            (Ok(()), None) => Ok(()),
        };
        s.finished = turn;
        match outcome {
            Err(e) => {
                drop(s);
                Self::forget(&logs);
                Err(e)
            }
            Ok(()) => {
                s.stats.steps += 1;
                s.stats.records += records.len() as u64;
                s.stats.bytes += total as u64;
                drop(s);
                let mut ends: BTreeMap<usize, (i64, i64)> = BTreeMap::new();
                for (i, p) in &records {
                    let base = i64::from_be_bytes(p.head[..8].try_into().expect("8"));
                    ends.entry(*i).or_insert((base, 0)).1 = p.next_offset;
                }
                for (i, (from, end)) in ends {
                    logs[i].journaled_to(from, end);
                    logs[i].write_behind();
                }
                if started.elapsed() > std::time::Duration::from_millis(100) {
                    tracing::debug!(journal = %inner.dir.display(), logs = logs.len(), records = records.len(), direct = n_direct,
                        journaled_ms = journaled.as_millis() as u64, total_ms = started.elapsed().as_millis() as u64, "slow journal step");
                }
                Ok(())
            }
        }
    }

    /// Until the steps that took their logs before step `turn` finished.
    async fn wait_turn(&self, turn: u64) {
        let inner = &*self.inner;
        inner
            .stepped
            .wait_until(|| (inner.state.borrow().finished + 1 >= turn).then_some(()))
            .await;
    }

    /// Encodes `records` at the current position of the file (which has
    /// room for them) and notes their logs as held in it; returns the
    /// buffer (none without records) and where it goes.
    fn encode_step<'n>(
        &self,
        w: &mut Writer<D>,
        records: &[(usize, Pending)],
        name: &impl Fn(usize) -> &'n JournalName,
        logs: &[PartitionLog<D>],
    ) -> (Option<<D::File as SegmentFile>::Buffer>, u64) {
        let position = w.position;
        if records.is_empty() {
            return (None, position);
        }
        let bytes: usize = records.iter().map(|(i, p)| record_len(name(*i), p)).sum();
        let padded = align_up(bytes as u64) as usize;
        let mut buf = w.file.alloc_buffer(padded);
        let out = buf.as_bytes_mut();
        let mut at = 0;
        for (i, p) in records {
            w.seq += 1;
            at += encode(&mut out[at..], w.number, w.seq, name(*i), p);
        }
        out[at..].fill(0);
        w.position += padded as u64;
        if w.position > w.file_bytes / 2 {
            // The next file will be needed: have it filled by then.
            self.prepare_spare();
        }
        for (i, p) in records {
            let e = &mut w
                .in_file
                .entry(logs[*i].key())
                .or_insert_with(|| (logs[*i].clone(), p.next_offset))
                .1;
            *e = (*e).max(p.next_offset);
        }
        (Some(buf), position)
    }

    /// Writes `records` as one write and sync per file, starting the next
    /// file whenever one is full (no other step's writes are in flight).
    async fn write_across_files<'n>(
        &self,
        w: &mut Writer<D>,
        records: &[(usize, Pending)],
        name: &impl Fn(usize) -> &'n JournalName,
        logs: &[PartitionLog<D>],
    ) -> std::result::Result<(), (String, bool)> {
        let mut done = 0;
        while done < records.len() {
            // As many records as fit in the current file (at least one in a
            // fresh file); a full file is retired and the next one started.
            let room = w.file_bytes - w.position;
            let mut bytes = 0usize;
            let mut take = 0;
            for (i, p) in &records[done..] {
                let len = record_len(name(*i), p);
                if (align_up((bytes + len) as u64)) > room {
                    break;
                }
                bytes += len;
                take += 1;
            }
            if take == 0 {
                if w.position == 0 {
                    return Err((
                        format!(
                            "a batch of {} bytes does not fit in a journal file of {}",
                            records[done].1.batch.len(),
                            w.file_bytes
                        ),
                        false,
                    ));
                }
                self.next_file(w)
                    .await
                    .map_err(|e| (e.to_string(), false))?;
                continue;
            }
            let (buf, position) = self.encode_step(w, &records[done..done + take], name, logs);
            write_and_sync(&*w.file, buf, position).await?;
            done += take;
        }
        Ok(())
    }

    /// A step that failed took these logs' batches: they are not in the
    /// journal, and their waiters sync the segments instead.
    fn forget(logs: &[PartitionLog<D>]) {
        for log in logs {
            log.unjournaled_dropped();
        }
    }

    /// Starts the next file and retires the full one in the background:
    /// once every log with batches in it has synced its segment past them,
    /// the file is removed.
    async fn next_file(&self, w: &mut Writer<D>) -> Result<()> {
        let inner = &*self.inner;
        let number = w.number + 1;
        let now_ms = inner.disk.now_ms();
        let target = {
            let mut s = inner.state.borrow_mut();
            let lived = now_ms - w.started_ms;
            let c = &inner.config;
            if lived < GROW_WITHIN_MS {
                s.stats.file_bytes = (s.stats.file_bytes * 2).min(c.max_file_bytes);
            } else if lived > SHRINK_AFTER_MS {
                s.stats.file_bytes = (s.stats.file_bytes / 2).max(c.file_bytes) & !(ALIGN - 1);
            }
            s.stats.file_bytes
        };
        // A retired file is already filled: its old records carry another
        // file's number, so they read as the end of the journal.
        let spare = inner.state.borrow_mut().spares.pop();
        let (file, file_bytes) = match spare {
            Some((old, bytes)) => {
                let path = path_of(&inner.dir, number);
                let reused = async {
                    inner.disk.rename(&spare_path(&inner.dir, old), &path)?;
                    inner.disk.sync_dir(&inner.dir).await?;
                    inner.disk.open_rw(&path).await
                };
                match reused.await {
                    Ok(f) => (f, bytes),
                    Err(e) => return Err(StorageError::io("reusing a journal file", e)),
                }
            }
            None => {
                let f = zero_filled(
                    &inner.disk,
                    &inner.dir,
                    &path_of(&inner.dir, number),
                    target,
                )
                .await?;
                inner.state.borrow_mut().stats.files_filled += 1;
                (f, target)
            }
        };
        let old = std::mem::replace(&mut w.file, Rc::new(file));
        let old_number = std::mem::replace(&mut w.number, number);
        let old_bytes = std::mem::replace(&mut w.file_bytes, file_bytes);
        w.started_ms = now_ms;
        w.position = 0;
        w.seq = 0;
        let logs: Vec<(PartitionLog<D>, i64)> =
            std::mem::take(&mut w.in_file).into_values().collect();
        let journal = self.clone();
        inner.state.borrow_mut().retiring += 1;
        glommio::spawn_local(async move {
            journal.retire(old, old_number, old_bytes, logs).await;
            journal.inner.state.borrow_mut().retiring -= 1;
        })
        .detach();
        self.prepare_spare();
        Ok(())
    }

    /// Fills a spare file in the background if fewer than [`SPARES`] are
    /// ready, being made or being retired (a retired file becomes a spare),
    /// or if none is ready or being made. Called once a file is half full,
    /// so a broker that writes little never fills spares.
    ///
    /// Counting the files being retired matters: without them, every new
    /// file started a zero-fill of another, and the retired one, finding
    /// the spares complete, was deleted. The journal's device writes were
    /// then twice its bytes, plus a file's blocks allocated and freed every
    /// 32 MiB for the filesystem syncs to commit.
    fn prepare_spare(&self) {
        let (id, bytes) = {
            let mut s = self.inner.state.borrow_mut();
            let coming = s.spares.len() + s.preparing;
            if coming > 0 && coming + s.retiring >= SPARES {
                return;
            }
            s.preparing += 1;
            s.next_spare += 1;
            (s.next_spare, s.stats.file_bytes)
        };
        let journal = self.clone();
        glommio::spawn_local(async move {
            let inner = &*journal.inner;
            let made = zero_filled(
                &inner.disk,
                &inner.dir,
                &spare_path(&inner.dir, id),
                bytes,
            )
            .await;
            let mut s = inner.state.borrow_mut();
            s.preparing -= 1;
            match made {
                Ok(file) => {
                    drop(file);
                    s.spares.push((id, bytes));
                    s.stats.files_filled += 1;
                }
                Err(e) => tracing::warn!(journal = %inner.dir.display(), error = %e, "could not prepare a journal file"),
            }
        })
        .detach();
    }

    /// Makes the batches of a step's big writers durable in their own
    /// segments. One log syncs its file; several write out theirs and
    /// share one filesystem sync, instead of one `fdatasync` each (each a
    /// device cache flush of its own, queued behind the others: sixteen
    /// partitions' syncs took 2–25 ms where one took 2). If anything of
    /// that fails, each log syncs its own file, which fails the log if it
    /// cannot: its waiters see that.
    async fn sync_direct(self, logs: Vec<(PartitionLog<D>, i64)>) {
        if logs.len() > 1 {
            let outs = futures_util::future::join_all(
                logs.iter()
                    .map(|(log, end)| log.write_out_before_fs_sync(*end)),
            )
            .await;
            let ok = outs.iter().all(Result::is_ok);
            let written: Vec<_> = logs
                .iter()
                .zip(outs)
                .filter_map(|((log, _), out)| Some((log.clone(), out.ok()??)))
                .collect();
            if ok
                && self
                    .inner
                    .disk
                    .sync_filesystem(&self.inner.dir)
                    .await
                    .is_ok()
            {
                self.inner.state.borrow_mut().stats.direct_shared_syncs += 1;
                for (log, w) in written {
                    // The batches are durable; a checkpoint not written
                    // is made up at the next open by scanning.
                    let _ = log.mark_durable(w, true).await;
                }
            }
        }
        // Whatever is not durable yet (all of it for a single log).
        futures_util::future::join_all(logs.iter().map(|(log, end)| log.sync_to(*end))).await;
    }

    async fn retire(
        &self,
        file: Rc<D::File>,
        number: u64,
        bytes: u64,
        logs: Vec<(PartitionLog<D>, i64)>,
    ) {
        let inner = &*self.inner;
        // Every log writes out what it has (a closed one synced when it
        // closed), one filesystem sync makes all of it durable, and then
        // the logs learn so: one sync for the file instead of one
        // `fdatasync` per partition (a thousand partitions: ~1 s of syncs
        // per file, competing with the steps for the device).
        let written = RefCell::new(Vec::with_capacity(logs.len()));
        let failed = RefCell::new(None);
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(&logs),
            RETIRE_PARALLEL,
            |(log, end)| {
                let (written, failed) = (&written, &failed);
                async move {
                    match log.write_out_before_fs_sync(*end).await {
                        Ok(Some(w)) => written.borrow_mut().push((log.clone(), w)),
                        Ok(None) => {}
                        Err(e) => {
                            failed.borrow_mut().get_or_insert(e);
                        }
                    }
                }
            },
        )
        .await;
        let synced = match failed.into_inner() {
            Some(e) => Err(e),
            None => inner.disk.sync_filesystem(&inner.dir).await.map_err(|e| {
                StorageError::io("syncing the filesystem for a retiring journal file", e)
            }),
        };
        if let Err(e) = synced {
            // A failed log keeps its journal file for the next start's replay.
            tracing::error!(journal = %inner.dir.display(), file = number, error = %e,
                "partitions could not make their segments durable; keeping the journal file for replay");
            return;
        }
        // Their checkpoints are written side by side too (one after another,
        // a retirement outlasted the filling of the next file now and then).
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(written.into_inner()),
            RETIRE_PARALLEL,
            |(log, w)| async move {
                if let Err(e) = log.mark_durable(w, false).await {
                    // The batches are durable; a checkpoint not written is
                    // made up at the next open by scanning.
                    tracing::debug!(journal = %inner.dir.display(), error = %e, "a checkpoint after a journal file's sync failed");
                }
            },
        )
        .await;
        // No step writes to it any more: the last reference.
        if let Ok(file) = Rc::try_unwrap(file) {
            let _ = file.close().await;
        }
        // Spares larger than files are made at now (made before they
        // shrank) give way, so the disk holds no stale ones. Smaller ones
        // stay to be used once: while files grow, a next file taken from
        // them costs nothing, where a zero-fill would hold up the step
        // that needs it.
        let stale: Vec<(u64, u64)> = {
            let mut s = inner.state.borrow_mut();
            let now = s.stats.file_bytes;
            let (fit, stale) = s.spares.drain(..).partition(|&(_, b)| b <= now);
            s.spares = fit;
            stale
        };
        for (n, _) in stale {
            if let Err(e) = inner.disk.remove_file(&spare_path(&inner.dir, n)) {
                tracing::warn!(journal = %inner.dir.display(), spare = n, error = %e, "removing a journal spare failed");
            }
        }
        // Kept as a spare for a next file (up to SPARES, and only of the
        // size files are made at now; others are removed).
        let keep = {
            let s = inner.state.borrow();
            s.spares.len() + s.preparing < SPARES && bytes == s.stats.file_bytes
        };
        let done = if keep {
            inner.disk.rename(
                &path_of(&inner.dir, number),
                &spare_path(&inner.dir, number),
            )
        } else {
            inner.disk.remove_file(&path_of(&inner.dir, number))
        };
        if let Err(e) = done {
            tracing::warn!(journal = %inner.dir.display(), file = number, error = %e, "retiring a journal file failed");
            return;
        }
        let mut s = inner.state.borrow_mut();
        if keep {
            s.spares.push((number, bytes));
        }
        s.stats.files_retired += 1;
    }
}

/// Writes a step's records and syncs them; nothing for a step whose logs
/// all sync their own segments. An error fails the journal (the `true`).
async fn write_and_sync<F: SegmentFile>(
    file: &F,
    buf: Option<F::Buffer>,
    position: u64,
) -> std::result::Result<(), (String, bool)> {
    let Some(buf) = buf else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let written = async {
        file.write_at(buf, position).await?;
        file.fdatasync().await
    };
    written
        .await
        .map_err(|e| (format!("journal write failed: {e}"), true))?;
    crate::sync_stats::record(crate::sync_stats::SyncKind::Journal, started);
    Ok(())
}

fn record_len(name: &JournalName, p: &Pending) -> usize {
    HEADER_BYTES + name.name.len() + ID_BYTES + p.batch.len()
}

fn encode(out: &mut [u8], file: u64, seq: u64, name: &JournalName, p: &Pending) -> usize {
    let len = record_len(name, p);
    let out = &mut out[..len];
    out[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&((len - 12) as u32).to_be_bytes());
    out[12..20].copy_from_slice(&file.to_be_bytes());
    out[20..28].copy_from_slice(&seq.to_be_bytes());
    out[28..30].copy_from_slice(&(name.name.len() as u16).to_be_bytes());
    let mut at = HEADER_BYTES;
    out[at..at + name.name.len()].copy_from_slice(name.name.as_bytes());
    at += name.name.len();
    out[at..at + ID_BYTES].copy_from_slice(&name.id);
    at += ID_BYTES;
    out[at..at + 16].copy_from_slice(&p.head);
    out[at + 16..].copy_from_slice(&p.batch[16..]);
    let crc = crc32c::crc32c(&out[12..]);
    out[8..12].copy_from_slice(&crc.to_be_bytes());
    len
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: JournalName,
    pub batch: Bytes,
}

/// The valid records of one file image, in order (see the module docs for
/// what ends a file).
pub fn decode_file(data: &[u8], number: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let (mut at, mut seq) = (0usize, 0u64);
    while let Some(head) = data.get(at..at + HEADER_BYTES) {
        let magic = u32::from_be_bytes(head[0..4].try_into().expect("4"));
        if magic != MAGIC {
            // Padding to the end of a step, or the end of the journal.
            let next = align_up(at as u64) as usize;
            if next == at {
                break;
            }
            at = next;
            continue;
        }
        let body = u32::from_be_bytes(head[4..8].try_into().expect("4")) as usize;
        let Some(record) = data.get(at..at + 12 + body) else {
            break;
        };
        let crc = u32::from_be_bytes(head[8..12].try_into().expect("4"));
        if crc32c::crc32c(&record[12..]) != crc {
            break;
        }
        let file = u64::from_be_bytes(head[12..20].try_into().expect("8"));
        let s = u64::from_be_bytes(head[20..28].try_into().expect("8"));
        if file != number || s != seq + 1 {
            break;
        }
        let name_len = u16::from_be_bytes(head[28..30].try_into().expect("2")) as usize;
        let rest = &record[HEADER_BYTES..];
        if rest.len() < name_len + ID_BYTES + 61 {
            break;
        }
        let Ok(name) = std::str::from_utf8(&rest[..name_len]) else {
            break;
        };
        let mut id = [0u8; ID_BYTES];
        id.copy_from_slice(&rest[name_len..name_len + ID_BYTES]);
        out.push(Record {
            name: JournalName {
                name: name.to_string(),
                id,
            },
            batch: Bytes::copy_from_slice(&rest[name_len + ID_BYTES..]),
        });
        seq = s;
        at += 12 + body;
    }
    out
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub files: usize,
    pub records: usize,
    /// Batches the logs lacked and got back.
    pub appended: usize,
    /// Records of partitions that no longer exist (or another incarnation).
    pub orphaned: usize,
}

/// Gives back to each partition's log the batches the journal in `dir`
/// holds and the log lacks, syncs the logs it touched, and removes the
/// journal files. `open` finds a partition's log by its journal name
/// (`None`: the partition is gone; its records are skipped).
pub async fn replay<D, F, Fut>(disk: &D, dir: &Path, mut open: F) -> Result<ReplayReport>
where
    D: Disk,
    F: FnMut(JournalName) -> Fut,
    Fut: std::future::Future<Output = Result<Option<PartitionLog<D>>>>,
{
    let mut report = ReplayReport::default();
    let Ok(files) = numbers(disk, dir) else {
        return Ok(report);
    };
    let mut logs: BTreeMap<JournalName, Option<PartitionLog<D>>> = BTreeMap::new();
    let mut broken: BTreeSet<JournalName> = BTreeSet::new();
    for &number in &files {
        let path = path_of(dir, number);
        let Some(data) = crate::segment::read_small_file(disk, &path).await? else {
            continue;
        };
        report.files += 1;
        for r in decode_file(&data, number) {
            report.records += 1;
            if !logs.contains_key(&r.name) {
                let log = open(r.name.clone()).await?;
                logs.insert(r.name.clone(), log);
            }
            let Some(log) = logs.get(&r.name).and_then(|l| l.clone()) else {
                report.orphaned += 1;
                continue;
            };
            if broken.contains(&r.name) {
                continue;
            }
            let header = crate::batch::BatchHeader::parse(&r.batch).map_err(|e| {
                StorageError::io(
                    "parsing a journal batch",
                    std::io::Error::other(e.to_string()),
                )
            })?;
            let end = log.log_end_offset();
            if header.base_offset < end {
                continue;
            }
            if header.base_offset > end {
                tracing::error!(journal = %dir.display(), partition = %r.name.name, base_offset = header.base_offset, log_end = end,
                    "the journal's next batch for a partition is past its log's end; not replaying the rest of it");
                broken.insert(r.name.clone());
                continue;
            }
            log.append_replica(r.batch).await?;
            report.appended += 1;
        }
    }
    for log in logs.values().flatten() {
        log.sync().await?;
    }
    for number in files {
        disk.remove_file(&path_of(dir, number))
            .map_err(|e| StorageError::io("removing a replayed journal file", e))?;
    }
    disk.sync_dir(dir)
        .await
        .map_err(|e| StorageError::io("syncing the journal directory", e))?;
    Ok(report)
}
