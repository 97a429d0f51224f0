//! [`RaftLog`]: the log as the core uses it — the stored log read through
//! [`Storage`], and in front of it the unstable tail: entries this node
//! appended or received that the driver has not yet reported persisted.
//!
//! Offsets below `unstable_start` are read from storage, offsets above from
//! the tail. A truncation or a restore cuts the tail (and moves
//! `unstable_start` down); storage beyond the view is ignored until the
//! driver has applied the change. The core also tracks the log start (it
//! compacts and restores) and the membership entries of the log.

use super::{Entry, Membership, Storage, Unavailable};

pub struct RaftLog<S> {
    storage: S,
    /// Entries from `unstable_start` on, not yet reported persisted.
    unstable: Vec<Entry>,
    unstable_start: u64,
    /// Term of the entry ending at `unstable_start`.
    stable_term: u64,
    start: u64,
    start_term: u64,
    /// Membership in force at the log start, if the log says.
    start_conf: Option<Membership>,
    /// Membership entries after the log start: (end, membership).
    confs: Vec<(u64, Membership)>,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(storage: S) -> RaftLog<S> {
        let (start, start_term) = storage.first();
        let end = storage.last_end();
        let stable_term = storage.term_at(end).expect("the log end is an entry end");
        let (start_conf, confs) = storage.memberships();
        RaftLog {
            storage,
            unstable: Vec::new(),
            unstable_start: end,
            stable_term,
            start,
            start_term,
            start_conf,
            confs,
        }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Where the unstable tail begins: entries ending at or before it are
    /// read from storage.
    pub fn stable_end(&self) -> u64 {
        self.unstable_start
    }

    /// Entries not yet reported persisted.
    pub fn unstable(&self) -> &[Entry] {
        &self.unstable
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn start_term(&self) -> u64 {
        self.start_term
    }

    /// Offset after the last entry.
    pub fn last_end(&self) -> u64 {
        self.unstable.last().map_or(self.unstable_start, |e| e.end)
    }

    pub fn last_term(&self) -> u64 {
        self.unstable.last().map_or(self.stable_term, |e| e.term)
    }

    /// Term of the entry ending at `end` (the log start counts); `None` if no
    /// entry of this log ends there.
    pub fn term_at(&self, end: u64) -> Option<u64> {
        if end == self.start {
            return Some(self.start_term);
        }
        if end < self.start || end > self.last_end() {
            return None;
        }
        if end == self.unstable_start {
            return Some(self.stable_term);
        }
        if end > self.unstable_start {
            let i = self.unstable.binary_search_by_key(&end, |e| e.end).ok()?;
            return Some(self.unstable[i].term);
        }
        self.storage.term_at(end)
    }

    /// Entries after `end` (an entry end), up to about `max_bytes` (at least
    /// one), or [`Unavailable`] until storage has loaded them.
    pub fn entries_after(&self, end: u64, max_bytes: usize) -> Result<Vec<Entry>, Unavailable> {
        if end >= self.unstable_start {
            let from = self.unstable.partition_point(|e| e.end <= end);
            let mut out = Vec::new();
            let mut bytes = 0;
            for e in &self.unstable[from..] {
                if !out.is_empty() && bytes + e.data.len() > max_bytes {
                    break;
                }
                bytes += e.data.len();
                out.push(e.clone());
            }
            return Ok(out);
        }
        let mut out = self.storage.entries(end, max_bytes)?;
        out.retain(|e| e.end <= self.unstable_start);
        if let Some(first) = out.first() {
            assert_eq!(first.start, end, "storage answered from the wrong offset");
        }
        Ok(out)
    }

    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.start, self.last_end(), "appends are contiguous");
        assert!(entry.end > entry.start);
        if let Some(conf) = &entry.conf {
            self.confs.push((entry.end, conf.clone()));
        }
        self.unstable.push(entry);
    }

    /// Drops every entry ending after `end` (an entry end).
    pub fn truncate_after(&mut self, end: u64) {
        assert!(end >= self.start);
        let term = self.term_at(end).expect("truncation at an entry end");
        if end >= self.unstable_start {
            let keep = self.unstable.partition_point(|e| e.end <= end);
            self.unstable.truncate(keep);
        } else {
            self.unstable.clear();
            self.unstable_start = end;
            self.stable_term = term;
        }
        self.confs.retain(|(e, _)| *e <= end);
        assert_eq!(self.last_end(), end);
    }

    /// The driver made the log durable up to `end`, where its term is
    /// `term`: the tail up to there is now read from storage. A report
    /// superseded by a truncation since (another term there) is ignored.
    pub fn persisted(&mut self, end: u64, term: u64) -> bool {
        if end > self.last_end() || self.term_at(end) != Some(term) {
            return false;
        }
        if end > self.unstable_start {
            let drop = self.unstable.partition_point(|e| e.end <= end);
            self.unstable.drain(..drop);
            self.unstable_start = end;
            self.stable_term = term;
        }
        true
    }

    /// The largest entry end at or below `end` whose term is at most `term`:
    /// where a follower that reported (`end`, `term`) can match at best.
    pub fn find_conflict_by_term(&self, end: u64, term: u64) -> u64 {
        let end = end.min(self.last_end());
        let upto = self.unstable.partition_point(|e| e.end <= end);
        if let Some(e) = self.unstable[..upto].iter().rev().find(|e| e.term <= term) {
            return e.end;
        }
        let below = end.min(self.unstable_start);
        if below == self.unstable_start && self.stable_term <= term {
            return below;
        }
        self.storage.conflict_by_term(below, term).max(self.start)
    }

    /// Forgets entries ending at or before `end` (the log start moves up);
    /// `end` is a persisted entry end.
    pub fn compact_to(&mut self, end: u64) {
        if end <= self.start {
            return;
        }
        assert!(
            end <= self.unstable_start,
            "compaction of persisted entries only"
        );
        let term = self.term_at(end).expect("compaction at an entry end");
        if let Some(i) = self.confs.iter().rposition(|(e, _)| *e <= end) {
            self.start_conf = Some(self.confs[i].1.clone());
            self.confs.drain(..=i);
        }
        self.start = end;
        self.start_term = term;
    }

    /// Replaces everything with an empty log starting at (`end`, `term`),
    /// with `conf` in force there.
    pub fn restore(&mut self, end: u64, term: u64, conf: Membership) {
        self.unstable.clear();
        self.unstable_start = end;
        self.stable_term = term;
        self.start = end;
        self.start_term = term;
        self.start_conf = Some(conf);
        self.confs.clear();
    }

    /// Membership in force at the log start, if compaction or a restore set it.
    pub fn start_conf(&self) -> Option<&Membership> {
        self.start_conf.as_ref()
    }

    /// The membership the log says is in force: its latest membership entry,
    /// else the one at the log start, if any.
    pub fn membership(&self) -> Option<&Membership> {
        self.confs
            .last()
            .map(|(_, c)| c)
            .or(self.start_conf.as_ref())
    }

    /// End of the latest membership entry after the log start.
    pub fn last_conf_end(&self) -> Option<u64> {
        self.confs.last().map(|(e, _)| *e)
    }

    /// Is a candidate whose log ends at (`end`, `term`) at least as up to date?
    pub fn is_up_to_date(&self, end: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && end >= self.last_end())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::MemStorage;
    use super::*;

    fn e(term: u64, start: u64, end: u64) -> Entry {
        Entry {
            term,
            start,
            end,
            data: Bytes::from_static(b"x"),
            conf: None,
        }
    }

    #[test]
    fn positions_are_end_offsets_across_storage_and_the_unstable_tail() {
        let storage = MemStorage::new();
        storage.append(e(1, 0, 3));
        storage.append(e(1, 3, 4));
        let mut log = RaftLog::new(storage.clone());
        log.append(e(2, 4, 9));
        log.append(e(3, 9, 10));
        assert_eq!((log.last_end(), log.last_term()), (10, 3));
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(4), Some(1));
        assert_eq!(log.term_at(9), Some(2));
        assert_eq!(log.term_at(5), None, "not an entry end");
        assert_eq!(
            log.entries_after(0, 0).unwrap().len(),
            1,
            "at least one entry"
        );
        assert_eq!(
            log.entries_after(0, usize::MAX).unwrap().len(),
            2,
            "storage up to the tail"
        );
        assert_eq!(log.entries_after(4, usize::MAX).unwrap().len(), 2);
        // Largest end at or below 9 with term <= 1 is 4.
        assert_eq!(log.find_conflict_by_term(9, 1), 4);
        assert_eq!(log.find_conflict_by_term(10, 0), 0);
        assert_eq!(log.find_conflict_by_term(3, 5), 3);
        assert!(log.is_up_to_date(10, 3) && log.is_up_to_date(1, 4) && !log.is_up_to_date(11, 2));

        // The driver stores the tail and reports it: it is read from storage.
        for x in log.unstable().to_vec() {
            storage.append(x);
        }
        assert!(log.persisted(10, 3));
        assert!(log.unstable().is_empty());
        assert_eq!((log.last_end(), log.term_at(9)), (10, Some(2)));

        // A truncation below the stored end hides storage beyond it at once.
        log.truncate_after(4);
        assert_eq!((log.last_end(), log.last_term()), (4, 1));
        assert_eq!(log.term_at(9), None);
        assert!(!log.persisted(10, 3), "a report from before the truncation");
        log.append(e(4, 4, 6));
        assert_eq!(log.entries_after(4, usize::MAX).unwrap(), vec![e(4, 4, 6)]);

        log.compact_to(3);
        assert_eq!((log.start(), log.start_term()), (3, 1));
        log.restore(20, 5, Membership::default());
        assert_eq!((log.last_end(), log.last_term()), (20, 5));
        assert_eq!(log.term_at(4), None);
    }
}
