//! Consumer groups as pure state machines: no runtime, no clock, no I/O.
//! Within a group each partition (so each record) goes to one member — a
//! queue; every group reads everything — publish-subscribe.
//!
//! - [`group`]: one group under the classic protocol (JoinGroup, SyncGroup,
//!   Heartbeat, LeaveGroup, OffsetCommit): events in, replies and effects out.
//! - [`consumer`]: one group under the KIP-848 consumer protocol
//!   (ConsumerGroupHeartbeat), likewise; [`assignor`]: its server-side
//!   assignors (`uniform`, `range`).
//! - [`records`]: the `__consumer_offsets` records, in Kafka's layout.
//!
//! The broker (`rill-broker`'s `groups::coordinator`) does the I/O around
//! them: which shard coordinates a group, replaying the offsets topic,
//! waiting answers, durable appends. Seeded simulations of both protocols
//! (crashes, restarts, lost answers, fail-over) run in `cargo test`.

pub mod assignor;
pub mod consumer;
#[cfg(test)]
mod consumer_sim;
pub mod group;
pub mod records;
#[cfg(test)]
mod sim;
