//! The Rill broker as a library: thread-per-core shards speaking the Kafka
//! protocol. [`Broker::start`] runs one inside any process and returns a
//! [`BrokerHandle`] (`addr()`, `shutdown().await`); the `rill` binary (the
//! `cli` crate) is that plus flags and signals.
//!
//! - [`runtime`]: one pinned glommio executor (shard) per core, each with its
//!   own `SO_REUSEPORT` listener; startup and clean shutdown.
//! - [`server`]: connections, request framing, pipelining, per-connection
//!   [`api::Connection`].
//! - [`api`]: one Kafka API handler per file, each given the request's
//!   [`api::Context`] (shard, connection, version, client id).
//! - [`shard`]: a shard's partitions, cross-shard jobs, and
//!   [`shard::Shard::on_partition`], the one way to reach a partition.
//! - [`cluster`]: the cluster state, the [`cluster::MetadataCommand`]s that
//!   change it (applied by one pure function), the controller that decides
//!   and publishes changes, and the store that keeps them.
//! - [`config`]: broker settings (each declared once), topic configs and
//!   dynamic broker configs.
//! - [`groups`]: consumer groups — the coordinator of each group, its
//!   classic-protocol state machine, `__consumer_offsets`.
//! - [`producer_ids`]: ids for idempotent producers, in blocks the
//!   controller allocates durably.
//! - [`error`]: the library's error type, [`BrokerError`].

pub mod admin;
pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod error_code;
pub mod file_limits;
pub mod groups;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod runtime;
pub mod server;
pub mod shard;

pub use config::BrokerConfig;
pub use error::{BrokerError, Result};
pub use runtime::{Broker, BrokerHandle};
