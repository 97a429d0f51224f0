//! Rill's native Rust client: producer, consumer and admin over the Kafka
//! protocol. It speaks to Rill and to any Kafka-API broker (versions are
//! negotiated through ApiVersions).
//!
//! - [`Producer`]: `send` returns a [`Delivery`] to await; records are batched
//!   per partition by `linger` and `batch_size`, compressed (gzip, snappy,
//!   lz4, zstd), partitioned like the Java client (murmur2 of the key, sticky
//!   for keyless records), retried on retriable errors, and bounded in memory.
//! - [`Consumer`]: `assign`, `seek` (offset, beginning, end, timestamp),
//!   `poll` with the next fetch already in flight, or a `Stream`.
//! - [`GroupConsumer`]: a member of a consumer group — the KIP-848 consumer
//!   protocol (server-side assignment, incremental rebalances, patterns) or
//!   the classic one: `subscribe`, `poll`, `commit`, rebalance callbacks,
//!   static membership.
//! - [`Admin`]: topics, partitions, configs, offsets, consumer groups.
//! - [`Error`]: one error type; Kafka error codes are kept and
//!   [`Error::is_retriable`] says whether trying again can help.
//!
//! The protocol logic ([`protocol`]) does no I/O; the tokio transport lives in
//! [`transport`].
//!
//! # Example
//!
//! Runs against a broker on `RILL_BROKERS` (default `127.0.0.1:9092`), e.g.
//! `rill broker` in another terminal; see `examples/round_trip.rs`, which CI
//! runs.
//!
//! ```no_run
//! use rill_client::{Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset,
//!                   Producer, ProducerConfig, Record, TopicPartition};
//! use std::time::Duration;
//!
//! # async fn demo() -> rill_client::Result<()> {
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! Admin::new(client.clone()).create_topic(NewTopic::new("greetings", 3)).await?;
//!
//! let producer = Producer::new(client.clone(), ProducerConfig::default())?;
//! let delivery = producer.send(Record::new("greetings", "hello").key("k1")).await?;
//! let written = delivery.await?;
//! producer.close().await;
//!
//! let mut consumer = Consumer::new(client, ConsumerConfig::default());
//! let tp = TopicPartition::new("greetings", written.partition);
//! consumer.assign(&[tp.clone()]).await?;
//! consumer.seek(&tp, Offset::At(written.offset))?;
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

pub mod admin;
pub mod cluster;
pub mod consumer;
pub mod error;
pub mod group_consumer;
pub mod groups;
pub mod offsets;
pub mod producer;
pub mod protocol;
pub mod transport;

pub use admin::{Admin, ConfigChange, ConfigEntry, ConfigSource, NewTopic};
pub use cluster::{BrokerInfo, Client, ClientConfig, Metadata, PartitionMetadata, TopicMetadata};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, Offset, OffsetReset};
pub use error::{Error, Result};
pub use group_consumer::{GroupConfig, GroupConsumer, GroupProtocol, Rebalance, Subscription};
pub use groups::{GroupDescription, GroupListing, GroupMember};
pub use offsets::{OffsetSpec, TopicPartition};
pub use producer::{
    Acks, Delivery, Producer, ProducerConfig, ProducerMetrics, Record, RecordMetadata,
};
pub use protocol::records::{Compression, Header, TimestampType};
