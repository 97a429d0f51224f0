//! Replication core: Raft per partition as a sans-I/O state machine.
//!
//! No runtime, no clock, no sockets: [`node::Raft`] takes ticks, messages and
//! proposals and returns a [`node::Ready`] — state to persist, messages to
//! send (some only after the persist), and the commit index (the high
//! watermark). Log positions are Kafka offsets ([`log`]): an entry is a
//! record batch covering a range of offsets, so commit index = high
//! watermark and term = leader epoch. The core reads the stored log through
//! [`log::Storage`] and holds in memory only the entries not yet persisted. Every message names its Raft group
//! ([`node::GroupId`], a partition), so the traffic of many groups can share
//! one connection between two brokers.
//!
//! Proven in a deterministic simulator (`sim`, in tests) with a lossy,
//! reordering, partitioning network and crashing nodes whose unsynced
//! writes are lost. Not wired to sockets and disks yet.
//!
//! ```
//! use rill_raft::log::MemStorage;
//! use rill_raft::node::{Config, HardState, Raft, Role};
//!
//! // A group of one voter elects itself after an election timeout.
//! let disk = MemStorage::new();
//! let mut node = Raft::new(Config::new(1, [1]), HardState::default(), disk.clone());
//! for _ in 0..100 {
//!     node.tick();
//!     let ready = node.take_ready();
//!     for e in &ready.entries {
//!         disk.append(e.clone()); // the driver stores, then reports
//!     }
//!     if let Some(e) = ready.entries.last() {
//!         node.persisted(e.end, e.term);
//!     }
//! }
//! assert_eq!(node.role(), Role::Leader);
//! ```

pub mod driver;
pub mod log;
pub mod node;
#[cfg(test)]
mod sim;
