//! The Rill broker: shards, listeners, partition placement, replication,
//! controller, consumer groups, and the `rill` binary.
//!
//! Nothing is implemented here yet; the single-node broker work fills it.
