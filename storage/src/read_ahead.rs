//! Reading ahead for consumers that read a partition in order from disk (a
//! consumer catching up, a replay, a follower replica fetching a backlog).
//!
//! When a read from disk ends before the log does, the read that will follow
//! it — same size, starting where this one ended — is started at once, in
//! the background, and when that one ends the one after it, keeping
//! [`depth`] reads (about [`AHEAD_BYTES`]) ahead of the reader: the disk
//! works while the answer goes out and the client decodes it, and the next
//! fetch finds its bytes read. Each reader's reads form a stream; one log
//! follows a few streams at once (consumer groups catching up on the same
//! partition), and a shard holds a bounded number of bytes read ahead; a
//! read that matches nothing prepared is served as before and starts a new
//! stream. Measured: see the README's `catch-up-1kb-1p`.
//!
//! A prepared read is only used while the log's layout is the one it was
//! read from: truncation, retention, cleaning and closing bump the log's
//! layout, and a read prepared before is dropped unused.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;

use crate::error::Result;

/// Readers of one log followed at once.
pub const STREAMS_MAX: usize = 4;

/// Bytes a stream keeps read ahead of its reader, in reads of
/// [`read_bytes`]: a reader fetching 8 MiB has two reads ahead, one fetching
/// 1 MiB (librdkafka's default) four of 4 MiB, one fetching 64 KiB
/// [`DEPTH_MAX`] of 64 KiB.
pub const AHEAD_BYTES: usize = 16 << 20;

/// A stream whose reader asks at least [`STREAMING_FROM`] bytes a time
/// reads ahead at least this much at a time: a reader of librdkafka's 1 MiB
/// per partition gets its reads from 4 MiB reads of four pieces in flight,
/// instead of one 1 MiB read after another, and what one request leaves of
/// a read is kept for the next.
pub const READ_MIN: usize = 4 << 20;

/// See [`READ_MIN`]: smaller readers (a fetch of many partitions, a few
/// KiB each) read ahead only what they ask.
pub const STREAMING_FROM: usize = 512 << 10;

/// Bytes each read ahead of a reader asking `max_bytes` reads.
pub fn read_bytes(max_bytes: usize) -> usize {
    if max_bytes >= STREAMING_FROM {
        max_bytes.max(READ_MIN)
    } else {
        max_bytes
    }
}

/// Reads one stream keeps ahead at most.
pub const DEPTH_MAX: usize = 8;

/// Reads a stream of `read_bytes` reads keeps ahead of its reader.
pub fn depth(read_bytes: usize) -> usize {
    (AHEAD_BYTES / read_bytes.max(1)).clamp(2, DEPTH_MAX)
}

/// Bytes one shard holds read ahead at most, over all its logs: beyond it a
/// read is not prepared.
pub const SHARD_BYTES_MAX: usize = 64 << 20;

thread_local! {
    /// Bytes this shard's prepared reads may hold (their sizes asked for).
    static HELD: Cell<usize> = const { Cell::new(0) };
    /// What this shard's reads from disk found, since it started.
    static OUTCOMES: Cell<Outcomes> = const { Cell::new(Outcomes { ready: 0, waited: 0, missed: 0 }) };
}

/// Bytes this shard holds (or is reading) ahead now.
pub fn held_bytes() -> usize {
    HELD.with(Cell::get)
}

/// How this shard's reads past the cache were served, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// Taken from a read prepared ahead that had finished.
    pub ready: u64,
    /// Taken from a read prepared ahead that was still running (the fetch
    /// waited for its end).
    pub waited: u64,
    /// Read from disk when asked (nothing prepared at that offset).
    pub missed: u64,
}

/// This shard's [`Outcomes`].
pub fn outcomes() -> Outcomes {
    OUTCOMES.with(Cell::get)
}

pub(crate) fn count(f: impl FnOnce(&mut Outcomes)) {
    OUTCOMES.with(|o| {
        let mut v = o.get();
        f(&mut v);
        o.set(v);
    })
}

/// A read started ahead of its request.
pub(crate) struct Prepared {
    /// The offset the read starts at.
    pub offset: i64,
    /// The log's layout when it was started.
    pub layout: u64,
    /// When it was started (the disk's clock).
    pub started_ms: i64,
    /// The reader's stream it belongs to.
    pub stream: u64,
    task: glommio::Task<Result<Bytes>>,
    end: Rc<End>,
    /// Its share of the shard's bound, held until it is taken or dropped.
    _reservation: Reservation,
}

/// How a prepared read ended, once it has.
#[derive(Default)]
pub(crate) struct End {
    finished: Cell<bool>,
    /// The offset after the batches it read (none when it read nothing).
    follows: Cell<Option<i64>>,
}

impl End {
    /// Records the end of a read (of `data`, when it read some).
    pub fn set(&self, data: Option<&[u8]>) {
        self.follows
            .set(data.and_then(rill_record::header::next_offset_after));
        self.finished.set(true);
    }

    /// The offset the read after this one starts at, once this one has read.
    pub fn follows(&self) -> Option<i64> {
        self.follows.get()
    }
}

impl Prepared {
    /// Counts `max_bytes` against the shard's bound; `None` when there is no
    /// room (the caller then does not start the read).
    pub fn reserve(max_bytes: usize) -> Option<Reservation> {
        HELD.with(|held| {
            let now = held.get();
            (now + max_bytes <= SHARD_BYTES_MAX).then(|| {
                held.set(now + max_bytes);
                Reservation(max_bytes)
            })
        })
    }

    /// Starts `read` in the background on this shard; it is given the
    /// [`End`] to set when it has read.
    pub fn start<F: Future<Output = Result<Bytes>> + 'static>(
        (offset, layout, started_ms, stream): (i64, u64, i64, u64),
        reservation: Reservation,
        read: impl FnOnce(Rc<End>) -> F,
    ) -> Prepared {
        let end = Rc::new(End::default());
        let task = glommio::spawn_local(read(end.clone()));
        Prepared {
            offset,
            layout,
            started_ms,
            stream,
            task,
            end,
            _reservation: reservation,
        }
    }

    /// The bytes it read (the read's own error if it failed).
    pub async fn wait(self) -> Result<Bytes> {
        self.task.await
    }

    /// Whether its read has ended.
    pub fn is_finished(&self) -> bool {
        self.end.finished.get()
    }

    /// The offset the read after this one starts at, once this one has read.
    pub fn follows(&self) -> Option<i64> {
        self.end.follows()
    }
}

/// A share of [`SHARD_BYTES_MAX`], given back when dropped. The prepared
/// read owns it, so the bytes count until the read is taken or dropped
/// (not only while the disk reads them).
pub(crate) struct Reservation(usize);

impl Drop for Reservation {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get() - self.0));
    }
}

/// A log's prepared reads, oldest first.
#[derive(Default)]
pub(crate) struct ReadAhead {
    prepared: Vec<Prepared>,
    streams_started: u64,
    /// Set while a read is being started (its task runs at once).
    pub starting: bool,
}

impl ReadAhead {
    /// The prepared read starting at `offset` under `layout`, if any (its
    /// size may differ from the request's: the caller cuts what is more). Reads prepared under another layout are removed too; they
    /// are returned for the caller to drop once it holds no borrow (dropping
    /// a task cancels its read).
    pub fn take(&mut self, offset: i64, layout: u64) -> Taken {
        let stale: Vec<Prepared> = if self.prepared.iter().any(|p| p.layout != layout) {
            let (stale, kept) = std::mem::take(&mut self.prepared)
                .into_iter()
                .partition(|p| p.layout != layout);
            self.prepared = kept;
            stale
        } else {
            Vec::new()
        };
        let hit = self
            .prepared
            .iter()
            .position(|p| p.offset == offset)
            .map(|i| self.prepared.remove(i));
        Taken { hit, stale }
    }

    /// Whether a read of `offset` is prepared already.
    pub fn has(&self, offset: i64) -> bool {
        self.prepared.iter().any(|p| p.offset == offset)
    }

    /// A stream for a reader whose read matched nothing prepared.
    pub fn new_stream(&mut self) -> u64 {
        self.streams_started += 1;
        self.streams_started
    }

    /// Reads of `stream` prepared and not taken.
    pub fn ahead(&self, stream: u64) -> usize {
        self.prepared.iter().filter(|p| p.stream == stream).count()
    }

    /// The read of `stream` started last, if one is prepared.
    pub fn last_of(&self, stream: u64) -> Option<&Prepared> {
        self.prepared.iter().rev().find(|p| p.stream == stream)
    }

    /// Keeps `p`; past [`STREAMS_MAX`] × [`DEPTH_MAX`] reads the oldest is
    /// returned to be dropped.
    #[must_use]
    pub fn insert(&mut self, p: Prepared) -> Option<Prepared> {
        let evicted =
            (self.prepared.len() >= STREAMS_MAX * DEPTH_MAX).then(|| self.prepared.remove(0));
        self.prepared.push(p);
        evicted
    }

    /// Reads started before `ms` (their reader did not come back), to be
    /// dropped by the caller.
    pub fn take_older_than(&mut self, ms: i64) -> Vec<Prepared> {
        if self.prepared.iter().all(|p| p.started_ms >= ms) {
            return Vec::new();
        }
        let (old, kept) = std::mem::take(&mut self.prepared)
            .into_iter()
            .partition(|p| p.started_ms < ms);
        self.prepared = kept;
        old
    }

    /// Everything prepared, to be dropped by the caller.
    pub fn take_all(&mut self) -> Vec<Prepared> {
        std::mem::take(&mut self.prepared)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.prepared.len()
    }
}

/// What [`ReadAhead::take`] found.
pub(crate) struct Taken {
    pub hit: Option<Prepared>,
    pub stale: Vec<Prepared>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T, F>(f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    fn prepared(offset: i64, layout: u64, data: &'static [u8]) -> Prepared {
        let reservation = Prepared::reserve(1 << 20).expect("room");
        Prepared::start((offset, layout, offset, 1), reservation, |end| async move {
            end.set(None);
            Ok(Bytes::from_static(data))
        })
    }

    #[test]
    fn a_read_is_taken_once_by_its_offset_under_its_layout() {
        run(|| async {
            let mut ra = ReadAhead::default();
            assert!(ra.insert(prepared(100, 1, b"a")).is_none());
            assert!(ra.insert(prepared(200, 1, b"b")).is_none());
            assert!(ra.has(100) && ra.has(200));
            let t = ra.take(100, 1);
            assert_eq!(t.hit.unwrap().wait().await.unwrap(), &b"a"[..]);
            assert!(ra.take(100, 1).hit.is_none(), "taken once");
            // The layout changed: what was prepared is stale.
            let t = ra.take(200, 2);
            assert!(t.hit.is_none());
            assert_eq!(t.stale.len(), 1);
            assert_eq!(ra.len(), 0);
        });
    }

    #[test]
    fn the_oldest_of_too_many_readers_and_the_shard_bound_give_way() {
        run(|| async {
            let mut ra = ReadAhead::default();
            for i in 0..(STREAMS_MAX * DEPTH_MAX) as i64 {
                assert!(ra.insert(prepared(i, 1, b"x")).is_none());
            }
            let evicted = ra.insert(prepared(99, 1, b"y")).expect("one too many");
            assert_eq!(evicted.offset, 0);
            drop(evicted);
            assert_eq!(ra.len(), STREAMS_MAX * DEPTH_MAX);
            let all = ra.take_all();
            for p in all {
                p.wait().await.unwrap();
            }
            // A dropped task's future is dropped when the executor next runs it.
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            // Every reservation was given back with its task.
            assert_eq!(held_bytes(), 0);
            assert!(ra.insert(prepared(5, 1, b"x")).is_none());
            assert!(ra.insert(prepared(9, 1, b"x")).is_none());
            let old = ra.take_older_than(9);
            assert_eq!(old.iter().map(|p| p.offset).collect::<Vec<_>>(), [5]);
            drop(old);
            drop(ra.take_all());
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            let big: Vec<Reservation> = std::iter::from_fn(|| Prepared::reserve(16 << 20))
                .take(100)
                .collect();
            assert_eq!(big.len(), SHARD_BYTES_MAX / (16 << 20));
            drop(big);
            assert_eq!(held_bytes(), 0);
        });
    }
}
