//! Replication core: Raft per partition as a sans-I/O state machine.
//!
//! [`raft::Raft`] takes ticks, messages and proposals and returns a
//! [`raft::Ready`]: state to persist, messages to send (some only after the
//! persist), and the commit index (the high watermark). Log positions are
//! Kafka offsets ([`log`]): an entry is a record batch covering a range of
//! offsets, so commit index = high watermark and term = leader epoch.
//!
//! Proven in a deterministic simulator (`sim`, in tests) with a lossy,
//! reordering, partitioning network and crashing nodes whose unsynced writes
//! are lost. Not wired to sockets and disks yet.

pub mod log;
pub mod raft;
#[cfg(test)]
mod sim;
