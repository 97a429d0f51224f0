//! The real disk's files open on this thread, closed when idle and reopened
//! on demand, so a shard can own far more partitions than it has
//! descriptors (100,000 partitions under a hard limit of 20,000).
//!
//! A [`DmaSegment`](crate::io::DmaSegment) is a path and a mode; its
//! descriptor lives here, in a least-recently-used cache of this thread.
//! Every operation looks its descriptor up (a hash lookup next to an
//! io_uring submission) and reopens it if it was closed. Opening beyond this
//! thread's share of the process's budget
//! ([`descriptors`](crate::descriptors)) first closes the least recently
//! used descriptor that no operation is using. A hot partition's files stay
//! open; an idle one costs no descriptor.
//!
//! What reopening by path asks of the callers: a file is never renamed while
//! a handle to it is kept (the cleaner and the journal reopen after their
//! renames), and a file removed while a reader still holds its segment
//! fails that reader's next read once the descriptor was closed (retention
//! or a cleaner swap racing a slow fetch; the consumer's retry reads the
//! segments that are there now).

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use glommio::io::{DmaFile, OpenOptions};

use crate::descriptors;

/// An open descriptor and its place in the budget.
pub(crate) struct Opened {
    pub(crate) file: DmaFile,
    _slot: descriptors::Slot,
}

/// How a handle's file is reopened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    ReadWrite,
    Read,
}

impl Mode {
    fn options(self) -> OpenOptions {
        let mut o = OpenOptions::new();
        match self {
            Mode::ReadWrite => o.read(true).write(true),
            Mode::Read => o.read(true),
        };
        o
    }
}

/// Threads sharing the budget (shards); each may hold its share.
static SHARING_THREADS: AtomicUsize = AtomicUsize::new(1);

/// Splits the open-file budget between `threads` threads (the shards), each
/// closing its own idle files to stay within its share.
pub fn share_between(threads: usize) {
    SHARING_THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// Counts of this thread's cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFileStats {
    /// Descriptors open now.
    pub open: usize,
    /// Opens of a file whose descriptor had been closed.
    pub reopened: u64,
    /// Idle descriptors closed to make room.
    pub closed_idle: u64,
}

struct Cache {
    lru: lru::LruCache<u64, Rc<Opened>>,
    /// Descriptors being closed (their slots still taken).
    closing: usize,
    /// Descriptors of dropped handles, closed by the next open.
    dropped: Vec<Opened>,
    next_id: u64,
    stats: OpenFileStats,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        lru: lru::LruCache::unbounded(),
        closing: 0,
        dropped: Vec::new(),
        next_id: 0,
        stats: OpenFileStats::default(),
    });
}

/// This thread's counts.
pub fn stats() -> OpenFileStats {
    CACHE.with(|c| {
        let c = c.borrow();
        OpenFileStats {
            open: c.lru.len(),
            ..c.stats
        }
    })
}

/// Descriptors this thread may hold open (its share of the budget).
pub fn budget_share() -> usize {
    let threads = SHARING_THREADS.load(Ordering::Relaxed);
    (descriptors::budget() / threads).max(1)
}

/// A new handle's id.
pub(crate) fn next_id() -> u64 {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.next_id += 1;
        c.next_id
    })
}

/// The open descriptor of handle `id`, if it has one (and marks it used).
pub(crate) fn get(id: u64) -> Option<Lease> {
    CACHE.with(|c| c.borrow_mut().lru.get(&id).cloned().map(Lease))
}

/// Starts closing the least recently used descriptor no operation is
/// using; whether there was one. Its slot is given back once the close is
/// done (glommio's drop would close it on a later I/O cycle while the slot
/// was already free: under churn the process then holds more descriptors
/// than the budget and the kernel answers EMFILE).
fn close_one_idle(c: &mut Cache) -> bool {
    for _ in 0..c.lru.len() {
        let Some((id, opened)) = c.lru.pop_lru() else {
            return false;
        };
        match Rc::try_unwrap(opened) {
            Ok(opened) => {
                c.stats.closed_idle += 1;
                close_in_background(c, opened);
                return true;
            }
            Err(opened) => {
                c.lru.push(id, opened); // in use: now the most recent
            }
        }
    }
    false
}

/// Closes the descriptors of handles dropped since the last open (a drop
/// may happen outside an executor, so it only queues them), holding their
/// slots until closed.
fn close_dropped(c: &mut Cache) {
    for opened in std::mem::take(&mut c.dropped) {
        close_in_background(c, opened);
    }
}

/// Closes `opened` on this executor, its slot given back (and one waiting
/// open woken) once the descriptor is really closed.
fn close_in_background(c: &mut Cache, opened: Opened) {
    c.closing += 1;
    glommio::spawn_local(async move {
        let Opened { file, _slot } = opened;
        let _ = file.close().await;
        drop(_slot);
        let _ = CACHE.try_with(|c| c.borrow_mut().closing -= 1);
        note_released();
    })
    .detach();
}

/// A slot in the budget for one more descriptor of this thread; `Err` to
/// wait: a close was started to make room, or every descriptor is in use.
fn try_take_slot() -> Result<descriptors::Slot, descriptors::BudgetExhausted> {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        close_dropped(&mut c);
        let held = c.lru.len() + c.closing + c.dropped.len();
        if held < budget_share() {
            if let Ok(slot) = descriptors::PROCESS.take() {
                return Ok(slot);
            }
        }
        // Room is made one close at a time per waiting open.
        close_one_idle(&mut c);
        Err(descriptors::BudgetExhausted {
            budget: descriptors::budget(),
        })
    })
}

/// How long an open waits for a descriptor when every one is in use (as
/// many operations in flight as the budget has descriptors) before it
/// fails with the budget's error.
pub const WAIT_FOR_DESCRIPTOR_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// [`try_take_slot`], waiting while every descriptor is in use: an
/// operation finishing makes its descriptor idle, and so closable, and
/// wakes one waiting open. (Other threads' releases are not signalled
/// here: a wait also ends after 50 ms.)
async fn take_slot() -> io::Result<descriptors::Slot> {
    let started = std::time::Instant::now();
    loop {
        let listener = RELEASED.with(|r| r.listen());
        match try_take_slot() {
            Ok(slot) => return Ok(slot),
            Err(e) if started.elapsed() >= WAIT_FOR_DESCRIPTOR_MAX => return Err(e.into()),
            Err(_) => {
                futures_lite::future::or(
                    listener,
                    glommio::timer::sleep(std::time::Duration::from_millis(50)),
                )
                .await;
            }
        }
    }
}

thread_local! {
    /// A descriptor of this thread went idle or closed.
    static RELEASED: event_listener::Event = const { event_listener::Event::new() };
}

fn note_released() {
    let _ = RELEASED.try_with(|r| r.notify(1));
}

/// A descriptor in use by one operation; dropping it makes the descriptor
/// idle (closable) again.
pub(crate) struct Lease(Rc<Opened>);

impl std::ops::Deref for Lease {
    type Target = Opened;
    fn deref(&self) -> &Opened {
        &self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        note_released();
    }
}

/// Opens `path` for handle `id` (the first open, or a reopen) and caches
/// the descriptor.
pub(crate) async fn open(
    id: u64,
    path: &Path,
    options: &OpenOptions,
    reopen: bool,
) -> io::Result<Lease> {
    let slot = take_slot().await?;
    let file = options.dma_open(path).await?;
    let opened = Rc::new(Opened { file, _slot: slot });
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if reopen {
            c.stats.reopened += 1;
        }
        // A concurrent reopen of the same handle may have put one already:
        // this one replaces it, and the other closes once its user is done.
        c.lru.put(id, opened.clone());
    });
    Ok(Lease(opened))
}

/// Reopens handle `id`'s file at `path` in `mode`.
pub(crate) async fn reopen(id: u64, path: &Path, mode: Mode) -> io::Result<Lease> {
    open(id, path, &mode.options(), true).await
}

/// Forgets handle `id`'s descriptor; returns it if it was cached.
pub(crate) fn forget(id: u64) -> Option<Rc<Opened>> {
    let opened = CACHE
        .try_with(|c| c.borrow_mut().lru.pop(&id))
        .ok()
        .flatten();
    if opened.is_some() {
        note_released();
    }
    opened
}

/// A dropped handle's descriptor: closed by the next open on this thread
/// (its slot held until then).
pub(crate) fn drop_later(opened: Rc<Opened>) {
    if let Ok(opened) = Rc::try_unwrap(opened) {
        let _ = CACHE.try_with(|c| c.borrow_mut().dropped.push(opened));
    }
}

impl Opened {
    /// Closes the descriptor now if nothing else uses it (otherwise its
    /// last user's drop closes it).
    pub(crate) async fn close(self: Rc<Self>) -> io::Result<()> {
        match Rc::try_unwrap(self) {
            Ok(Opened { file, _slot }) => Ok(file.close().await?),
            Err(_) => Ok(()),
        }
    }
}
