//! The Raft log as the core sees it: entries addressed by Kafka offsets.
//!
//! An entry is one record batch: it covers offsets `start..end` and carries
//! the leader's term. Positions in the log are *end offsets*: "the log
//! matches up to 120" means the entries ending at or before offset 120 agree.
//! The commit index is therefore directly the high watermark.

use std::collections::BTreeSet;

use bytes::Bytes;

/// Who takes part in a Raft group: voters count for elections and commits,
/// learners only receive the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

/// One replicated entry: an opaque batch covering offsets `start..end`, or a
/// membership change (`conf`), which takes effect as soon as it is in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub start: u64,
    pub end: u64,
    pub data: Bytes,
    pub conf: Option<Membership>,
}

/// Entries after the log start, in memory. `start`/`start_term` describe the
/// point before the first entry (a snapshot or log-start boundary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftLog {
    entries: Vec<Entry>,
    start: u64,
    start_term: u64,
    /// Membership in force at the log start, once compaction or a restore
    /// moved past the entry that set it.
    start_conf: Option<Membership>,
}

impl RaftLog {
    pub fn new(start: u64, start_term: u64, entries: Vec<Entry>) -> RaftLog {
        let log = RaftLog {
            entries,
            start,
            start_term,
            start_conf: None,
        };
        log.check();
        log
    }

    fn check(&self) {
        let mut at = self.start;
        for e in &self.entries {
            assert!(
                e.start == at && e.end > e.start,
                "entries must be contiguous and non-empty"
            );
            at = e.end;
        }
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn start_term(&self) -> u64 {
        self.start_term
    }

    /// Offset after the last entry.
    pub fn last_end(&self) -> u64 {
        self.entries.last().map(|e| e.end).unwrap_or(self.start)
    }

    pub fn last_term(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.term)
            .unwrap_or(self.start_term)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Index of the entry ending exactly at `end`.
    fn position(&self, end: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&end, |e| e.end).ok()
    }

    /// Term of the entry ending at `end` (the log start counts); `None` if no
    /// entry boundary lies there.
    pub fn term_at(&self, end: u64) -> Option<u64> {
        if end == self.start {
            return Some(self.start_term);
        }
        self.position(end).map(|i| self.entries[i].term)
    }

    /// Entries after `end` (a boundary), up to about `max_bytes` (at least one).
    pub fn entries_after(&self, end: u64, max_bytes: usize) -> Vec<Entry> {
        let from = if end == self.start {
            0
        } else {
            self.position(end)
                .map(|i| i + 1)
                .unwrap_or(self.entries.len())
        };
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in &self.entries[from..] {
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        out
    }

    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.start, self.last_end(), "appends are contiguous");
        assert!(entry.end > entry.start);
        self.entries.push(entry);
    }

    /// Drops every entry ending after `end` (a boundary).
    pub fn truncate_after(&mut self, end: u64) {
        assert!(end >= self.start);
        let keep = self.entries.partition_point(|e| e.end <= end);
        self.entries.truncate(keep);
        assert_eq!(
            self.last_end(),
            end,
            "truncation must land on an entry boundary"
        );
    }

    /// The largest boundary at or below `end` whose term is at most `term`:
    /// where a follower that reported (`end`, `term`) can match at best.
    pub fn find_conflict_by_term(&self, end: u64, term: u64) -> u64 {
        let upto = self.entries.partition_point(|e| e.end <= end);
        for e in self.entries[..upto].iter().rev() {
            if e.term <= term {
                return e.end;
            }
        }
        self.start
    }

    /// Forgets entries ending at or before `end` (the log start moves up).
    pub fn compact_to(&mut self, end: u64) {
        if end <= self.start {
            return;
        }
        let term = self.term_at(end).expect("compaction at a boundary");
        let drop = self.entries.partition_point(|e| e.end <= end);
        if let Some(conf) = self.entries[..drop]
            .iter()
            .rev()
            .find_map(|e| e.conf.clone())
        {
            self.start_conf = Some(conf);
        }
        self.entries.drain(..drop);
        self.start = end;
        self.start_term = term;
    }

    /// Replaces everything with an empty log starting at (`end`, `term`),
    /// with `conf` in force there.
    pub fn restore(&mut self, end: u64, term: u64, conf: Option<Membership>) {
        self.entries.clear();
        self.start = end;
        self.start_term = term;
        self.start_conf = conf;
    }

    /// Membership in force at the log start, if compaction or a restore set it.
    pub fn start_conf(&self) -> Option<&Membership> {
        self.start_conf.as_ref()
    }

    /// The membership the log says is in force: its latest membership entry,
    /// else the one at the log start, if any.
    pub fn membership(&self) -> Option<&Membership> {
        self.entries
            .iter()
            .rev()
            .find_map(|e| e.conf.as_ref())
            .or(self.start_conf.as_ref())
    }

    /// Is a candidate whose log ends at (`end`, `term`) at least as up to date?
    pub fn is_up_to_date(&self, end: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && end >= self.last_end())
    }
}

#[cfg(test)]
mod tests {
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
    fn positions_are_end_offsets() {
        let mut log = RaftLog::new(0, 0, vec![e(1, 0, 3), e(1, 3, 4), e(2, 4, 9), e(3, 9, 10)]);
        assert_eq!((log.last_end(), log.last_term()), (10, 3));
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(4), Some(1));
        assert_eq!(log.term_at(5), None, "not a boundary");
        assert_eq!(log.entries_after(3, 0).len(), 1, "at least one entry");
        assert_eq!(log.entries_after(3, usize::MAX).len(), 3);
        // Largest boundary at or below 9 with term <= 1 is 4.
        assert_eq!(log.find_conflict_by_term(9, 1), 4);
        assert_eq!(log.find_conflict_by_term(10, 0), 0);
        assert!(log.is_up_to_date(10, 3) && log.is_up_to_date(1, 4) && !log.is_up_to_date(11, 2));
        log.truncate_after(4);
        assert_eq!(log.last_end(), 4);
        log.compact_to(3);
        assert_eq!(
            (log.start(), log.start_term(), log.entries().len()),
            (3, 1, 1)
        );
        log.restore(20, 5, None);
        assert_eq!((log.last_end(), log.last_term()), (20, 5));
    }
}
