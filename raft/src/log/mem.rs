//! [`MemStorage`]: the stored log in memory, for tests, benchmarks and the
//! core's own simulator. The driver writes it; the core reads it through
//! [`Storage`]. Clones share one log.

use std::cell::RefCell;
use std::rc::Rc;

use super::{Entry, Membership, Storage, Unavailable};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stored {
    start: u64,
    start_term: u64,
    start_conf: Option<Membership>,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    inner: Rc<RefCell<Stored>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// An independent copy (a disk image), not sharing this one.
    pub fn snapshot(&self) -> MemStorage {
        MemStorage {
            inner: Rc::new(RefCell::new(self.inner.borrow().clone())),
        }
    }

    pub fn last_term(&self) -> u64 {
        let s = self.inner.borrow();
        s.entries.last().map_or(s.start_term, |e| e.term)
    }

    /// Every stored entry, in order.
    pub fn all(&self) -> Vec<Entry> {
        self.inner.borrow().entries.clone()
    }

    /// Appends `entry` if it starts at the log end (a replayed entry is
    /// skipped); entries after its start are dropped first.
    pub fn append(&self, entry: Entry) {
        let mut s = self.inner.borrow_mut();
        let keep = s.entries.partition_point(|e| e.end <= entry.start);
        s.entries.truncate(keep);
        let end = s.entries.last().map_or(s.start, |e| e.end);
        assert_eq!(entry.start, end, "appends are contiguous");
        s.entries.push(entry);
    }

    /// Drops every entry ending after `end`.
    pub fn truncate_after(&self, end: u64) {
        let mut s = self.inner.borrow_mut();
        let keep = s.entries.partition_point(|e| e.end <= end);
        s.entries.truncate(keep);
    }

    /// Replaces everything with an empty log at (`end`, `term`).
    pub fn restore(&self, end: u64, term: u64, conf: Membership) {
        *self.inner.borrow_mut() = Stored {
            start: end,
            start_term: term,
            start_conf: Some(conf),
            entries: Vec::new(),
        };
    }

    /// Forgets the entries ending at or before `end` (an entry end).
    pub fn compact_to(&self, end: u64) {
        let mut s = self.inner.borrow_mut();
        if end <= s.start {
            return;
        }
        let drop = s.entries.partition_point(|e| e.end <= end);
        let Some(last) = drop.checked_sub(1).map(|i| s.entries[i].clone()) else {
            return;
        };
        assert_eq!(last.end, end, "compaction at an entry end");
        if let Some(conf) = s.entries[..drop].iter().rev().find_map(|e| e.conf.clone()) {
            s.start_conf = Some(conf);
        }
        s.entries.drain(..drop);
        s.start = end;
        s.start_term = last.term;
    }
}

impl Storage for MemStorage {
    fn first(&self) -> (u64, u64) {
        let s = self.inner.borrow();
        (s.start, s.start_term)
    }

    fn last_end(&self) -> u64 {
        let s = self.inner.borrow();
        s.entries.last().map_or(s.start, |e| e.end)
    }

    fn term_at(&self, end: u64) -> Option<u64> {
        let s = self.inner.borrow();
        if end == s.start {
            return Some(s.start_term);
        }
        let i = s.entries.binary_search_by_key(&end, |e| e.end).ok()?;
        Some(s.entries[i].term)
    }

    fn conflict_by_term(&self, end: u64, term: u64) -> u64 {
        let s = self.inner.borrow();
        let upto = s.entries.partition_point(|e| e.end <= end);
        s.entries[..upto]
            .iter()
            .rev()
            .find(|e| e.term <= term)
            .map_or(s.start, |e| e.end)
    }

    fn entries(&self, after: u64, max_bytes: usize) -> Result<Vec<Entry>, Unavailable> {
        let s = self.inner.borrow();
        let from = s.entries.partition_point(|e| e.end <= after);
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &s.entries[from..] {
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        Ok(out)
    }

    fn memberships(&self) -> (Option<Membership>, Vec<(u64, Membership)>) {
        let s = self.inner.borrow();
        let confs = s
            .entries
            .iter()
            .filter_map(|e| e.conf.clone().map(|c| (e.end, c)))
            .collect();
        (s.start_conf.clone(), confs)
    }
}
