//! The driver: the one piece of code that turns the core's [`Ready`] into
//! log writes, hard-state saves, messages and commit notifications, in the
//! order the persistence contract demands (see [`node`](crate::node)).
//!
//! It is generic over where the log lives ([`LogStore`]: a partition's
//! segments in a broker, a simulated disk in the simulator), where the hard
//! state lives ([`HardStateStore`]), how messages leave ([`Transport`]) and
//! what time it is ([`Clock`]), and it needs no runtime: its one async call,
//! [`Driver::process`], awaits only the stores. The broker runs it on a
//! shard's executor; the simulator runs it to completion on a fake disk.
//!
//! Never acknowledged before persisted: votes and Append answers
//! (`persisted_messages`) leave only after the hard state is saved and the
//! log writes are durable under the [`Durability`] policy, and the core is
//! told what is persisted ([`Raft::persisted`]) only then, so a leader
//! counts its own copy only once it is durable.

use std::fmt;

use bytes::Bytes;

use crate::log::{Entry, Membership, Storage};
use crate::node::{Config, HardState, Message, ProposeError, Raft, Ready};

/// An error of a store. The driver stops at the first one: what was not
/// acknowledged stays unacknowledged, and the replica must be reopened
/// (its log recovered from what is on disk) before it takes part again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// The log the driver writes and the core reads.
#[allow(async_fn_in_trait)] // single-threaded executors: futures need not be Send
pub trait LogStore: Storage {
    /// Appends entries that continue the log end, without waiting for them
    /// to be durable.
    async fn append(&self, entries: &[Entry]) -> Result<(), StoreError>;
    /// Drops every entry ending after `end`.
    async fn truncate_after(&self, end: u64) -> Result<(), StoreError>;
    /// Empties the log and restarts it at (`end`, `term`), `conf` in force.
    async fn restore(&self, end: u64, term: u64, conf: &Membership) -> Result<(), StoreError>;
    /// Makes everything written so far durable.
    async fn sync(&self) -> Result<(), StoreError>;
    /// Loads the entries after `after` (up to about `max_bytes`) so that
    /// [`Storage::entries`] hands them over.
    async fn load(&self, after: u64, max_bytes: usize) -> Result<(), StoreError>;
}

/// Where the hard state (term, vote, commit) survives a crash.
#[allow(async_fn_in_trait)]
pub trait HardStateStore {
    /// Saves `hs` durably before it returns.
    async fn save(&self, hs: &HardState) -> Result<(), StoreError>;
}

/// How messages leave: queued for the peer, never awaited (a slow peer must
/// not stall the group).
pub trait Transport {
    fn send(&self, m: Message);
}

/// Milliseconds from any fixed point.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// When an appended entry counts as persisted (acknowledged, counted by a
/// leader toward a commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After `fdatasync`: survives power loss (Kafka `flush.messages=1`).
    Synced,
    /// Once written to the device (direct I/O, so not in a page cache):
    /// survives a killed process, not power loss — Kafka's default, which
    /// leaves power loss to replication. The hard state is synced always.
    Written,
}

/// Deliberate driver mistakes, to prove the simulator catches them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverBug {
    /// Votes and Append answers leave before the writes are durable.
    AckBeforePersist,
    /// A divergent suffix is not truncated: entries are appended only past
    /// the log end, as if what is there already matched the leader.
    KeepDivergentSuffix,
}

/// What one [`Driver::process`] did, for the caller's bookkeeping.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    /// The commit index (high watermark), if it moved.
    pub commit: Option<u64>,
    /// Entries written.
    pub appended: usize,
    /// Log syncs made.
    pub syncs: usize,
}

pub struct Driver<L, H, T, C> {
    node: Raft<L>,
    log: L,
    hard_state: H,
    transport: T,
    clock: C,
    durability: Durability,
    tick_ms: u64,
    last_tick_ms: u64,
    append_bytes_max: usize,
    saved: HardState,
    bug: Option<DriverBug>,
}

impl<L, H, T, C> Driver<L, H, T, C>
where
    L: LogStore + Clone,
    H: HardStateStore,
    T: Transport,
    C: Clock,
{
    /// A replica started from its stores: `log` as recovered from disk and
    /// `hs` the hard state last saved.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        log: L,
        hs: HardState,
        hard_state: H,
        transport: T,
        clock: C,
        durability: Durability,
        tick_ms: u64,
    ) -> Self {
        let last_tick_ms = clock.now_ms();
        let append_bytes_max = cfg.append_bytes_max;
        Driver {
            append_bytes_max,
            node: Raft::new(cfg, hs.clone(), log.clone()),
            log,
            hard_state,
            transport,
            clock,
            durability,
            tick_ms: tick_ms.max(1),
            last_tick_ms,
            saved: hs,
            bug: None,
        }
    }

    #[doc(hidden)]
    pub fn with_bug(mut self, bug: Option<DriverBug>) -> Self {
        self.bug = bug;
        self
    }

    pub fn node(&self) -> &Raft<L> {
        &self.node
    }

    /// For calls the driver does not wrap (membership changes, leadership
    /// transfer, compaction); run [`process`](Self::process) after.
    pub fn node_mut(&mut self) -> &mut Raft<L> {
        &mut self.node
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    /// Ticks the core once per `tick_ms` elapsed on the clock.
    pub fn advance_clock(&mut self) {
        let now = self.clock.now_ms();
        while now >= self.last_tick_ms + self.tick_ms {
            self.last_tick_ms += self.tick_ms;
            self.node.tick();
        }
    }

    pub fn step(&mut self, m: Message) {
        self.node.step(m);
    }

    /// Appends a batch covering `offsets` offsets (leader only); it is
    /// stored at the next [`process`](Self::process) and committed when a
    /// majority holds it.
    pub fn propose(&mut self, data: Bytes, offsets: u64) -> Result<(u64, u64), ProposeError> {
        self.node.propose(data, offsets)
    }

    /// Carries out everything the core asked for, until it asks for nothing.
    pub async fn process(&mut self) -> Result<Processed, StoreError> {
        let mut done = Processed::default();
        loop {
            let ready = self.node.take_ready();
            if ready.is_empty() {
                return Ok(done);
            }
            self.carry_out(ready, &mut done).await?;
        }
    }

    async fn carry_out(
        &mut self,
        mut ready: Ready,
        done: &mut Processed,
    ) -> Result<(), StoreError> {
        for m in ready.messages.drain(..) {
            self.transport.send(m);
        }
        if self.bug == Some(DriverBug::AckBeforePersist) {
            for m in ready.persisted_messages.drain(..) {
                self.transport.send(m);
            }
        }
        let mut wrote = false;
        if let Some((end, term, conf)) = &ready.restore {
            self.log.restore(*end, *term, conf).await?;
            wrote = true;
        }
        let keep_divergent = self.bug == Some(DriverBug::KeepDivergentSuffix);
        if let Some(end) = ready.truncate_after {
            if !keep_divergent {
                self.log.truncate_after(end).await?;
                wrote = true;
            }
        }
        if !ready.entries.is_empty() {
            let entries: &[Entry] = if keep_divergent {
                let log_end = self.log.last_end();
                let from = ready.entries.partition_point(|e| e.start < log_end);
                &ready.entries[from..]
            } else {
                &ready.entries
            };
            if !entries.is_empty() {
                self.log.append(entries).await?;
                done.appended += entries.len();
                wrote = true;
            }
        }
        if wrote && self.durability == Durability::Synced {
            self.log.sync().await?;
            done.syncs += 1;
        }
        // The hard state after the log: its commit index may cover entries
        // of this same Ready, and a restart takes the saved commit as
        // committed, so those entries must be durable first (the simulator
        // found a restarted follower holding an older batch under a commit
        // saved ahead of its log). Term and vote are durable before any
        // message that depends on them: those leave below.
        if let Some(hs) = &ready.hard_state {
            if *hs != self.saved {
                self.hard_state.save(hs).await?;
                self.saved = hs.clone();
            }
        }
        if wrote {
            let end = self.log.last_end();
            if let Some(term) = self.log.term_at(end) {
                self.node.persisted(end, term);
            }
        }
        for m in ready.persisted_messages.drain(..) {
            self.transport.send(m);
        }
        if let Some(c) = ready.commit {
            done.commit = Some(c);
        }
        if !ready.fetch.is_empty() {
            for after in ready.fetch {
                self.log.load(after, self.append_bytes_max).await?;
            }
            self.node.entries_loaded();
        }
        Ok(())
    }
}
