//! The Rill broker: thread-per-core shards speaking the Kafka protocol.
//!
//! - [`runtime`]: starts one pinned glommio executor (shard) per core, each
//!   with its own `SO_REUSEPORT` listener, and handles shutdown signals.
//! - [`shard`]: a shard's partitions and the cross-shard job channels.
//! - [`server`]: connections and request framing.
//! - [`api`]: one Kafka API handler per file.
//! - [`controller`], [`metadata`], [`topic_config`]: topics, placement and
//!   configs, persisted and applied on every shard.
//! - [`config`]: flags and the TOML config file.

pub mod api;
pub mod cluster;
pub mod config;
pub mod error;
pub mod error_code;
pub mod replication;
pub mod runtime;
pub mod server;
pub mod shard;

pub use config::BrokerConfig;
pub use error::{BrokerError, Result};
pub use runtime::{Broker, BrokerHandle};
