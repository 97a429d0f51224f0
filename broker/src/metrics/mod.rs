//! What the broker tells operators about itself: counters kept per shard
//! on the request path ([`counters`]), copied into a [`ShardSnapshot`]
//! when a scrape asks, summed and written in the Prometheus text format
//! ([`exposition`]). The admin listener ([`crate::admin`]) serves them.

pub mod counters;
pub mod errors;
pub mod exposition;
pub mod snapshot;

pub use counters::ShardCounters;
pub use snapshot::ShardSnapshot;
