//! Rill's native Rust client: producer, consumer and admin over the Kafka
//! protocol.
//!
//! Nothing is implemented here yet; it arrives after the single-node broker.
