//! [`ReplicaLog`]: a [`PartitionLog`] as the raft core's [`Storage`], the
//! driver's [`LogStore`] and its [`HardStateStore`].
//!
//! Reads of metadata answer from memory: the log's offsets and its
//! leader-epoch index. Entry data the core asks for comes from a bounded
//! tail of recent writes or, after [`LogStore::load`], from what was read
//! from the segments.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use rill_raft::driver::{HardStateStore, LogStore, StoreError};
use rill_raft::log::{Entry, Membership, Storage, Unavailable};
use rill_raft::node::HardState;
use rill_record::header::BatchHeader;
use rill_storage::io::Disk;
use rill_storage::{LogConfig, PartitionLog};

use crate::control::{self, Control};

/// Recent writes kept to serve followers that are just behind.
const TAIL_BYTES_MAX: usize = 1 << 20;
/// Loads kept at once (one per follower catching up).
const LOADS_MAX: usize = 8;

fn store_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("{what}: {e}"))
}

fn epoch_of(term: u64) -> Result<i32, StoreError> {
    i32::try_from(term).map_err(|_| StoreError(format!("term {term} exceeds a Kafka leader epoch")))
}

struct Inner<D: Disk> {
    log: PartitionLog<D>,
    /// Entries written recently, oldest first, within [`TAIL_BYTES_MAX`].
    tail: RefCell<(VecDeque<Entry>, usize)>,
    /// Entries read back by recent loads, by the offset they were loaded
    /// after: several followers behind at different offsets are each served.
    loaded: RefCell<VecDeque<(u64, Vec<Entry>)>>,
    /// Membership entries in the log (end, membership).
    confs: RefCell<Vec<(u64, Membership)>>,
}

/// A partition log as a Raft replica's storage. Clones share the log.
pub struct ReplicaLog<D: Disk> {
    inner: Rc<Inner<D>>,
}

impl<D: Disk> Clone for ReplicaLog<D> {
    fn clone(&self) -> Self {
        ReplicaLog {
            inner: self.inner.clone(),
        }
    }
}

/// The entry a stored batch is.
fn entry_of(batch: Bytes) -> Result<Entry, StoreError> {
    let h = BatchHeader::parse(&batch).map_err(|e| store_error("a stored batch", e))?;
    let (term, start, end) = (
        h.leader_epoch.max(0) as u64,
        h.base_offset as u64,
        h.next_offset() as u64,
    );
    Ok(match control::decode(&batch) {
        Some(Control::LeaderChange) => Entry {
            term,
            start,
            end,
            data: Bytes::new(),
            conf: None,
        },
        Some(Control::Voters(conf)) => Entry {
            term,
            start,
            end,
            data: Bytes::new(),
            conf: Some(conf),
        },
        _ => Entry {
            term,
            start,
            end,
            data: batch,
            conf: None,
        },
    })
}

/// Splits `data` (whole batches from a read) into its batches.
fn batches(data: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(len) = data.get(at..).and_then(rill_record::header::peek_total_len) {
        let end = at + len as usize;
        if end > data.len() {
            break;
        }
        out.push(data.slice(at..end));
        at = end;
    }
    out
}

impl<D: Disk> ReplicaLog<D> {
    /// Opens (recovering) the log in `dir` and returns it with the hard
    /// state last saved. If recovery found synced batches damaged, the log is
    /// cut before them and the replica abstains from elections until its
    /// group has given them back (`HardState::abstain_through`), saved
    /// before this returns so a second crash cannot forget it.
    ///
    /// Damage is found where recovery scans: the active segment up to the
    /// recovery point. A replica's log must therefore checkpoint at every
    /// sync (`checkpoint_interval_ms: 0`), so that nothing it acknowledged
    /// lies above the recovery point, where damage looks like a torn write.
    pub async fn open(
        disk: D,
        dir: &str,
        config: LogConfig,
    ) -> Result<(ReplicaLog<D>, HardState), StoreError> {
        let (log, cut) = PartitionLog::open_replica_on(disk, dir, config)
            .await
            .map_err(|e| store_error("open", e))?;
        let mut saved = log.hard_state();
        if cut.is_some() {
            // The current term, even if already abstaining through an older
            // one: what it acknowledged since may be what was just cut.
            saved.abstain_through = Some(saved.term);
            log.save_hard_state(saved)
                .await
                .map_err(|e| store_error("save hard state", e))?;
        }
        let replica = ReplicaLog {
            inner: Rc::new(Inner {
                log,
                tail: RefCell::new((VecDeque::new(), 0)),
                loaded: RefCell::new(VecDeque::new()),
                confs: RefCell::new(Vec::new()),
            }),
        };
        // Membership entries are few; one pass over the log finds them.
        let mut confs = Vec::new();
        let mut at = replica.log().log_start_offset();
        while at < replica.log().log_end_offset() {
            let data = replica
                .log()
                .read(at, 1 << 20)
                .await
                .map_err(|e| store_error("read", e))?;
            let before = at;
            for b in batches(&data) {
                let e = entry_of(b)?;
                if e.end as i64 > at {
                    at = e.end as i64;
                    if let Some(c) = e.conf {
                        confs.push((e.end, c));
                    }
                }
            }
            if at == before {
                return Err(StoreError(format!("no batch readable at offset {at}")));
            }
        }
        *replica.inner.confs.borrow_mut() = confs;
        let hs = HardState {
            term: saved.term,
            vote: saved.vote,
            commit: saved.commit.max(0) as u64,
            abstain_through: saved.abstain_through,
        };
        Ok((replica, hs))
    }

    pub fn log(&self) -> &PartitionLog<D> {
        &self.inner.log
    }

    fn start(&self) -> u64 {
        self.log().log_start_offset().max(0) as u64
    }

    fn end(&self) -> u64 {
        self.log().log_end_offset().max(0) as u64
    }

    /// Entries from `after` on, contiguous, within `max_bytes` (at least one).
    fn take_from(entries: impl Iterator<Item = Entry>, after: u64, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut at = after;
        for e in entries.skip_while(|e| e.start < after) {
            if e.start != at || (!out.is_empty() && bytes + e.data.len() > max_bytes) {
                break;
            }
            bytes += e.data.len();
            at = e.end;
            out.push(e);
        }
        out
    }

    fn forget_after(&self, end: u64) {
        let mut tail = self.inner.tail.borrow_mut();
        while tail.0.back().is_some_and(|e| e.end > end) {
            let e = tail.0.pop_back().expect("back");
            tail.1 -= e.data.len();
        }
        drop(tail);
        for (_, entries) in self.inner.loaded.borrow_mut().iter_mut() {
            entries.retain(|e| e.end <= end);
        }
        self.inner.confs.borrow_mut().retain(|(e, _)| *e <= end);
    }
}

impl<D: Disk> Storage for ReplicaLog<D> {
    fn first(&self) -> (u64, u64) {
        let start = self.start();
        // The term at the log start is known only at 0 (replica logs start
        // there until retention and snapshots come to replicated topics).
        let term = if start == 0 {
            0
        } else {
            self.log()
                .epoch_at(start as i64)
                .map_or(0, |e| e.max(0) as u64)
        };
        (start, term)
    }

    fn last_end(&self) -> u64 {
        self.end()
    }

    fn term_at(&self, end: u64) -> Option<u64> {
        let (start, start_term) = self.first();
        if end == start {
            return Some(start_term);
        }
        if end < start || end > self.end() {
            return None;
        }
        self.log().epoch_at(end as i64 - 1).map(|e| e.max(0) as u64)
    }

    fn conflict_by_term(&self, end: u64, term: u64) -> u64 {
        let start = self.start();
        let end = end.min(self.end());
        if end <= start {
            return start;
        }
        if self.term_at(end).is_some_and(|t| t <= term) {
            return end;
        }
        let epoch = i32::try_from(term).unwrap_or(i32::MAX);
        match self.log().end_of_epoch(epoch) {
            Some((e, off)) if e as u64 <= term => (off.max(0) as u64).clamp(start, end),
            _ => start,
        }
    }

    fn entries(&self, after: u64, max_bytes: usize) -> Result<Vec<Entry>, Unavailable> {
        if after >= self.end() {
            return Ok(Vec::new());
        }
        let tail = self.inner.tail.borrow();
        if tail.0.front().is_some_and(|e| e.start <= after) {
            let out = Self::take_from(tail.0.iter().cloned(), after, max_bytes);
            if !out.is_empty() {
                return Ok(out);
            }
        }
        drop(tail);
        for (_, entries) in self.inner.loaded.borrow().iter().rev() {
            if entries.first().is_some_and(|e| e.start <= after) {
                let out = Self::take_from(entries.iter().cloned(), after, max_bytes);
                if !out.is_empty() {
                    return Ok(out);
                }
            }
        }
        Err(Unavailable)
    }

    fn memberships(&self) -> (Option<Membership>, Vec<(u64, Membership)>) {
        (None, self.inner.confs.borrow().clone())
    }
}

impl<D: Disk> LogStore for ReplicaLog<D> {
    async fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        for e in entries {
            if e.start != self.end() {
                return Err(StoreError(format!(
                    "entry {}..{} does not continue the log end {}",
                    e.start,
                    e.end,
                    self.end()
                )));
            }
            let raw = if e.data.is_empty() {
                control::encode(e.conf.as_ref())
            } else {
                e.data.clone()
            };
            let batch = control::stamped(&raw, e.start as i64, epoch_of(e.term)?);
            let h = BatchHeader::parse(&batch).map_err(|x| store_error("entry", x))?;
            if h.next_offset() as u64 != e.end {
                return Err(StoreError(format!(
                    "entry {}..{} holds a batch of {} offsets",
                    e.start,
                    e.end,
                    h.last_offset_delta as i64 + 1
                )));
            }
            self.log()
                .append_replica(batch)
                .await
                .map_err(|x| store_error("append", x))?;
            if let Some(conf) = &e.conf {
                self.inner.confs.borrow_mut().push((e.end, conf.clone()));
            }
            let mut tail = self.inner.tail.borrow_mut();
            tail.1 += e.data.len();
            tail.0.push_back(e.clone());
            while tail.1 > TAIL_BYTES_MAX && tail.0.len() > 1 {
                let old = tail.0.pop_front().expect("front");
                tail.1 -= old.data.len();
            }
        }
        Ok(())
    }

    async fn truncate_after(&self, end: u64) -> Result<(), StoreError> {
        if end >= self.end() {
            return Ok(());
        }
        self.log()
            .truncate_to(end as i64)
            .await
            .map_err(|e| store_error("truncate", e))?;
        self.forget_after(end);
        Ok(())
    }

    async fn restore(&self, end: u64, term: u64, _conf: &Membership) -> Result<(), StoreError> {
        Err(StoreError(format!(
            "restarting a replica log at a leader's log start ({end}, term {term}) is not supported yet"
        )))
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let end = self.log().log_end_offset();
        self.log()
            .make_durable(end)
            .await
            .map_err(|e| store_error("sync", e))
    }

    async fn load(&self, after: u64, max_bytes: usize) -> Result<(), StoreError> {
        if after >= self.end() {
            return Ok(());
        }
        let data = self
            .log()
            .read(after as i64, max_bytes.max(1))
            .await
            .map_err(|e| store_error("read", e))?;
        let mut out = Vec::new();
        for b in batches(&data) {
            let e = entry_of(b)?;
            if e.start >= after {
                out.push(e);
            }
        }
        let mut loaded = self.inner.loaded.borrow_mut();
        loaded.retain(|(a, _)| *a != after);
        if loaded.len() == LOADS_MAX {
            loaded.pop_front();
        }
        loaded.push_back((after, out));
        Ok(())
    }
}

impl<D: Disk> HardStateStore for ReplicaLog<D> {
    async fn save(&self, hs: &HardState) -> Result<(), StoreError> {
        self.log()
            .save_hard_state(rill_storage::HardState {
                term: hs.term,
                vote: hs.vote,
                commit: hs.commit as i64,
                abstain_through: hs.abstain_through,
            })
            .await
            .map_err(|e| store_error("save hard state", e))
    }
}
