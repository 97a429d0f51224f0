//! Host probe and tuner (`rill tune`): disk, CPU and network measurements and
//! the `io-properties.toml` the broker reads.
//!
//! Nothing is implemented here yet.
