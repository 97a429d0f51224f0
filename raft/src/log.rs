//! The Raft log as the core sees it: entries addressed by Kafka offsets.
//!
//! An entry is one record batch: it covers offsets `start..end` and carries
//! the leader's term. Positions in the log are *end offsets*: "the log
//! matches up to 120" means the entries ending at or before offset 120 agree.
//! The commit index is therefore directly the high watermark.
//!
//! The core does not own the log. It reads what is stored through
//! [`Storage`] (a partition's segments in a broker, [`MemStorage`] in
//! tests) and keeps in memory only the entries it produced or received that
//! the driver has not yet reported persisted ([`RaftLog`], the view).

use std::collections::BTreeSet;

use bytes::Bytes;

mod mem;
mod view;

pub use mem::MemStorage;
pub use view::RaftLog;

/// Who takes part in a Raft group: voters count for elections and commits,
/// learners only receive the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

/// One replicated entry: an opaque batch covering offsets `start..end`, or a
/// control entry with empty `data` — a membership change (`conf`), which
/// takes effect as soon as it is in a log, or a new leader's first entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub term: u64,
    pub start: u64,
    pub end: u64,
    pub data: Bytes,
    pub conf: Option<Membership>,
}

/// The stored entries are not at hand now (they must be read from disk):
/// the core asks for them in [`Ready::fetch`](crate::node::Ready) and tries
/// again when the driver calls [`Raft::entries_loaded`](crate::node::Raft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// What the core reads of the stored log. Everything but entry data must
/// answer at once from memory (a partition answers from its leader-epoch
/// index: the term of the entry ending at `end` is the epoch of offset
/// `end - 1`, and every epoch starts on an entry boundary).
pub trait Storage {
    /// (end, term) of the point before the first stored entry.
    fn first(&self) -> (u64, u64);
    /// End of the last stored entry.
    fn last_end(&self) -> u64;
    /// Term of the entry ending at `end` (the first point counts), if `end`
    /// lies within the stored log.
    fn term_at(&self, end: u64) -> Option<u64>;
    /// The largest entry end at or below `end` whose term is at most `term`,
    /// or the first point if there is none.
    fn conflict_by_term(&self, end: u64, term: u64) -> u64;
    /// Entries after the entry end `after`, up to about `max_bytes` (at least
    /// one if any), or [`Unavailable`] until they are loaded.
    fn entries(&self, after: u64, max_bytes: usize) -> Result<Vec<Entry>, Unavailable>;
    /// Membership in force at the first point, and the membership entries
    /// stored after it (end, membership): read once, when a node starts.
    fn memberships(&self) -> (Option<Membership>, Vec<(u64, Membership)>);
}
