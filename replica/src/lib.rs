//! A partition's log as a Raft replica.
//!
//! [`ReplicaLog`] puts rill-storage's [`PartitionLog`](rill_storage::PartitionLog)
//! behind the raft core's [`Storage`](rill_raft::log::Storage) and the
//! driver's [`LogStore`](rill_raft::driver::LogStore): an entry is one
//! record batch whose base offset is the entry's start and whose
//! `partitionLeaderEpoch` is its term, so the term of the entry ending at
//! `end` is the epoch of offset `end - 1` (the log's leader-epoch index
//! answers without reading), and a leader's batches land on its followers
//! byte for byte. A new leader's first entry and membership changes are
//! control batches ([`control`]), which Kafka consumers skip.
//!
//! The whole-system simulation (`tests/cluster_sim.rs`) runs brokers ×
//! partitions, each replica a `ReplicaLog` on a simulated disk, through the
//! same [`Driver`](rill_raft::driver::Driver) a broker will run.

pub mod control;
mod replica_log;

pub use replica_log::ReplicaLog;
